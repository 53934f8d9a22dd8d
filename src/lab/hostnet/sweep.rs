//! The host side of killed runs: links, iptables rules and host sysctls left by other runs,
//! found by name and removed, and the host's conntrack entries of the lab range flushed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::host::metrics::write_sysctl;
use crate::model::names::{run_of_link, run_of_tag, RunId};
use crate::support::cmd::{run, run_ok};

/// Removes links, iptables rules and sysctl changes left by runs other than `keep`.
/// Returns a description of each thing removed.
pub(crate) fn sweep(state_root: &Path, keep: Option<&RunId>) -> Result<Vec<String>> {
    let mut removed = vec![];
    let foreign = |r: Option<RunId>| r.is_some_and(|r| Some(&r) != keep);
    for table in ["filter", "nat"] {
        let rules = run("iptables", &["-w", "-t", table, "-S"])?;
        for line in rules.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(i) = words.iter().position(|w| *w == "--comment") else {
                continue;
            };
            let Some(tag) = words.get(i + 1) else {
                continue;
            };
            if words.first() == Some(&"-A") && foreign(run_of_tag(tag)) {
                let mut args = vec!["-w", "-t", table, "-D"];
                args.extend(&words[1..]);
                if run_ok("iptables", &args)? {
                    removed.push(format!("iptables -t {table} {line}"));
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
            removed.push(format!("link {name}"));
        }
    }
    if let Ok(entries) = std::fs::read_dir(state_root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !foreign(run_of_tag(&name)) {
                continue;
            }
            let restore = e.path().join("sysctl-restore.json");
            if let Ok(bytes) = std::fs::read(&restore) {
                let old: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).unwrap_or_default();
                for (k, v) in old {
                    write_sysctl(&k, &v)?;
                    removed.push(format!("sysctl {k} restored to {}", v.trim()));
                }
            }
        }
    }
    Ok(removed)
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
