//! The host side of killed runs: links, iptables rules and host sysctls left by other runs,
//! found by name and removed, and the host's conntrack entries of the lab range flushed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Restore;
use crate::host::metrics::write_sysctl;
use crate::model::names::{run_of_link, run_of_tag, RunId};
use crate::support::cmd::{run, run_ok};

/// What the host side of a sweep did.
#[derive(Debug, Default)]
pub(crate) struct HostSwept {
    /// What was removed or put back.
    pub(crate) removed: Vec<String>,
    /// Lab directories whose restore file could not be read or applied: kept.
    pub(crate) kept: Vec<PathBuf>,
    /// Why each was kept.
    pub(crate) warnings: Vec<Kept>,
}

/// A restore file a sweep kept, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub file: PathBuf,
    pub why: String,
}

/// Removes links, iptables rules and sysctl changes left by runs other than `keep`.
pub(crate) fn sweep(labs: &Path, keep: Option<&RunId>) -> Result<HostSwept> {
    let mut swept = HostSwept::default();
    let foreign = |r: Option<RunId>| r.is_some_and(|r| Some(&r) != keep);
    for table in ["filter", "nat"] {
        let rules = run("iptables", &["-w", "10", "-t", table, "-S"])?;
        for line in rules.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(i) = words.iter().position(|w| *w == "--comment") else {
                continue;
            };
            let Some(tag) = words.get(i + 1) else {
                continue;
            };
            if words.first() == Some(&"-A") && foreign(run_of_tag(tag)) {
                let mut args = vec!["-w", "10", "-t", table, "-D"];
                args.extend(&words[1..]);
                if run_ok("iptables", &args)? {
                    swept.removed.push(format!("iptables -t {table} {line}"));
                }
            }
        }
    }
    // Under the run lock no lab of ours is alive, and entries can outlive everything else.
    flush_conntrack()?;
    let links = run("ip", &["-o", "link", "show"])?;
    for line in links.lines() {
        // "7: nsta1b2c3b0: <BROADCAST..." or "8: nsta1b2c3s@if2: ..."
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if foreign(run_of_link(name)) && run_ok("ip", &["link", "del", name])? {
            swept.removed.push(format!("link {name}"));
        }
    }
    // passt mode's namespaces (their passt processes are stopped before this).
    for name in netns_names(&run("ip", &["netns", "list"])?) {
        if foreign(run_of_link(&name)) && run_ok("ip", &["netns", "del", &name])? {
            swept.removed.push(format!("network namespace {name}"));
        }
    }
    if let Ok(entries) = std::fs::read_dir(labs) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if foreign(run_of_tag(&name)) {
                restore(&e.path(), &crate::host::boot_id(), &mut swept);
            }
        }
    }
    Ok(swept)
}

/// The names `ip netns list` prints ("nsta1b2c3ns (id: 3)", or the bare name).
fn netns_names(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Puts back the host sysctls a killed lab changed, from its restore file. A file that
/// cannot be read, was written by someone else, or names a value that cannot be written now
/// is kept and named; a file from another boot is reported and not applied.
pub(crate) fn restore(lab_dir: &Path, boot: &str, swept: &mut HostSwept) {
    let file = lab_dir.join("sysctl-restore.json");
    let keep = |why: String, swept: &mut HostSwept| {
        swept.warnings.push(Kept {
            file: file.clone(),
            why,
        });
        swept.kept.push(lab_dir.to_path_buf());
    };
    let bytes = match crate::support::trust::read(&file) {
        Ok(None) => return,
        Ok(Some(b)) => b,
        Err(e) => return keep(format!("{e:#}"), swept),
    };
    let restore: Restore = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            match serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&bytes) {
                // An earlier version's file (a plain map, no boot id): which boot wrote it is not
                // known, so it is reported below and not applied.
                Ok(sysctls) => Restore {
                    boot_id: String::new(),
                    sysctls,
                },
                Err(_) => {
                    return keep(format!("not a restore file nicstorm can read ({e})"), swept)
                }
            }
        }
    };
    // Reported, not applied: after a reboot the kernel's values are its boot values, and an
    // earlier version's file does not say which boot wrote it.
    if restore.boot_id != boot {
        swept.removed.push(format!(
            "restore file {} not applied: written in boot {}, this is boot {boot}, and a reboot put every sysctl back to its boot value",
            file.display(),
            if restore.boot_id.is_empty() { "?" } else { &restore.boot_id },
        ));
        return;
    }
    let mut failed = vec![];
    for (k, v) in &restore.sysctls {
        match write_sysctl(k, v) {
            Ok(()) => swept
                .removed
                .push(format!("sysctl {k} restored to {}", v.trim())),
            Err(e) => failed.push(format!("{k}={}: {e}", v.trim())),
        }
    }
    if !failed.is_empty() {
        keep(format!("could not restore {}", failed.join(", ")), swept);
    }
}

/// Deletes the host's conntrack entries of the lab range. They outlive the bridges (an
/// established entry times out after 5 days), so without this every NAT cell would leave its
/// flows in the table and a later cell could find it full of our own leftovers.
/// One lab runs at a time (the run lock), so the whole range is ours to clear.
pub(super) fn flush_conntrack() -> Result<()> {
    if crate::host::metrics::conntrack().is_none() {
        return Ok(()); // nf_conntrack not loaded: nothing was tracked
    }
    let out = std::process::Command::new("conntrack")
        .args(["-D", "-f", "ipv4", "-s", "10.213.0.0/16"])
        .output()
        .context("running conntrack to flush the lab's host entries (is the conntrack package installed?)")?;
    // It exits 1 when nothing matched; its summary line says how many were deleted either way.
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !said.contains("flow entries have been deleted") {
        bail!(
            "`conntrack -D -s 10.213.0.0/16` failed ({}): {}",
            out.status,
            said.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_read_from_ip_netns_list() {
        let names = netns_names("nsta1b2c3ns (id: 3)\nnstest-passt1\nnspasst42 (id: 0)\n");
        assert_eq!(names, ["nsta1b2c3ns", "nstest-passt1", "nspasst42"]);
        let ours: Vec<_> = names
            .iter()
            .filter_map(|n| run_of_link(n))
            .map(|r| r.as_str().to_owned())
            .collect();
        assert_eq!(ours, ["a1b2c3"], "only a lab's namespace is ours");
    }

    /// Files that say another boot, or no boot at all (an earlier version's plain map), are
    /// reported and not applied; a file nicstorm cannot read is kept and named.
    #[test]
    fn restore_files_of_another_boot_or_version_are_not_applied() {
        let dir = std::env::temp_dir().join(format!("nicstorm-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::support::trust::private_dir(&dir).unwrap();
        let file = dir.join("sysctl-restore.json");
        // A key that cannot exist: writing it would fail, so "not applied" is not luck.
        let cases = [
            r#"{"net.nicstorm.no_such_key":"1"}"#.to_string(),
            r#"{"boot_id":"another-boot","sysctls":{"net.nicstorm.no_such_key":"1"}}"#.to_string(),
        ];
        for text in cases {
            crate::support::trust::write(&file, text.as_bytes()).unwrap();
            let mut swept = HostSwept::default();
            restore(&dir, "this-boot", &mut swept);
            assert!(
                swept.kept.is_empty() && swept.warnings.is_empty(),
                "{swept:?}"
            );
            assert_eq!(swept.removed.len(), 1, "{swept:?}");
            assert!(swept.removed[0].contains("not applied"), "{swept:?}");
        }
        // This boot's file with a key that does not exist: a warning, the file kept.
        crate::support::trust::write(
            &file,
            br#"{"boot_id":"this-boot","sysctls":{"net.nicstorm.no_such_key":"1"}}"#,
        )
        .unwrap();
        let mut swept = HostSwept::default();
        restore(&dir, "this-boot", &mut swept);
        assert_eq!(swept.kept, vec![dir.clone()]);
        assert!(swept.warnings[0]
            .why
            .contains("could not restore net.nicstorm.no_such_key"));
        // Garbage: kept, named.
        crate::support::trust::write(&file, b"not json").unwrap();
        let mut swept = HostSwept::default();
        restore(&dir, "this-boot", &mut swept);
        assert_eq!(swept.kept, vec![dir.clone()]);
        assert!(swept.warnings[0].why.contains("not a restore file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
