//! Leftovers of killed runs (domains, links, rules, lab directories, captures, passt processes
//! and their namespaces), found by name (docs/ARCHITECTURE.md "Names") and removed; and the
//! check that a lab left nothing behind.

use anyhow::{Context, Result};
use virt::connect::Connect;

use super::{state_root, LIBVIRT_URI};
use crate::lab::hostnet;
use crate::model::names::{run_of_tag, RunId};
use crate::support::cmd::run;

/// What a sweep did: what it removed, and what it kept and why (a restore file that could
/// not be read or applied stays, with its lab directory, until someone looks at it).
#[derive(Debug, Default)]
pub struct Swept {
    pub removed: Vec<String>,
    pub kept: Vec<hostnet::Kept>,
}

/// Removes every domain, link, rule and lab directory of runs other than `keep`. Run at
/// start (after taking the run lock) and by `nicstorm lab down`.
pub(crate) fn sweep(keep: Option<&RunId>) -> Result<Swept> {
    super::quiet_libvirt();
    let mut removed = vec![];
    let conn = Connect::open(Some(LIBVIRT_URI))
        .with_context(|| format!("connecting to libvirt at {LIBVIRT_URI}"))?;
    for dom in conn
        .list_all_domains(0)
        .context("listing libvirt domains")?
    {
        let name = dom.name().unwrap_or_default();
        if run_of_tag(&name).is_some_and(|r| Some(&r) != keep) {
            // Ask before destroying: a transient domain is gone once destroyed.
            let persistent = dom.is_persistent().unwrap_or(false);
            super::destroy(&dom, &name)
                .map_err(|e| anyhow::anyhow!("leftover domain: {e}; its network is left"))?;
            if persistent {
                dom.undefine()
                    .with_context(|| format!("undefining leftover domain {name}"))?;
            }
            removed.push(format!("domain {name}"));
        }
    }
    // A capture writes into its lab's directory and holds its tap: stopped before either goes.
    for c in super::capture::running() {
        if Some(&c.run) != keep {
            super::capture::kill_leftover(&c)?;
            removed.push(format!("capture tcpdump pid {} on {}", c.pid, c.iface));
        }
    }
    let root = super::state::labs_dir()?;
    // A lab's passt processes (each exits once its QEMU is gone; a recorded one that has not
    // is stopped by its PID) before their namespace goes.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if run_of_tag(&name).is_some_and(|r| Some(&r) != keep) {
                removed.extend(super::passt::kill_recorded(&e.path())?);
            }
        }
    }
    let host = hostnet::sweep(&root, keep)?;
    removed.extend(host.removed);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if host.kept.contains(&e.path()) {
                continue;
            }
            if run_of_tag(&name).is_some_and(|r| Some(&r) != keep) {
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
                removed.push(format!("lab dir {}", e.path().display()));
            }
        }
    }
    Ok(Swept {
        removed,
        kept: host.warnings,
    })
}

/// Everything with `run`'s prefix that still exists (should be nothing after teardown).
pub fn survivors(run_id: &RunId) -> Result<Vec<String>> {
    super::quiet_libvirt();
    let mut left = vec![];
    let conn = Connect::open(Some(LIBVIRT_URI))
        .with_context(|| format!("connecting to libvirt at {LIBVIRT_URI}"))?;
    for dom in conn.list_all_domains(0)? {
        let name = dom.name().unwrap_or_default();
        if run_of_tag(&name).as_ref() == Some(run_id) {
            left.push(format!("domain {name}"));
        }
    }
    for line in run("ip", &["-o", "link", "show"])?.lines() {
        if let Some(name) = line.split(": ").nth(1) {
            if name.starts_with(&run_id.link("")) {
                left.push(format!("link {name}"));
            }
        }
    }
    for table in ["filter", "nat"] {
        for line in run("iptables", &["-w", "10", "-t", table, "-S"])?.lines() {
            if line.contains(&run_id.tag()) {
                left.push(format!("iptables -t {table} {line}"));
            }
        }
    }
    for c in super::capture::running() {
        if &c.run == run_id {
            left.push(format!("capture tcpdump pid {} on {}", c.pid, c.iface));
        }
    }
    for p in super::passt::running() {
        if &p.run == run_id {
            left.push(format!("passt pid {}", p.pid));
        }
    }
    let netns = std::path::Path::new("/run/netns").join(run_id.netns());
    if netns.exists() {
        left.push(format!("network namespace {}", run_id.netns()));
    }
    let dir = state_root().join("labs").join(run_id.tag());
    if dir.exists() {
        left.push(format!("lab dir {}", dir.display()));
    }
    Ok(left)
}
