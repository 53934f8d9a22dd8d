//! Provision phase: a lab whose four guests answer SSH with the run's key, whose NIC driver is
//! verified to be the requested model, with storm-load pushed (checksum verified).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::future::try_join_all;

use crate::events::{Event, Reporter};
use crate::guest::Guest;
use crate::image::Image;
use crate::lab::{Lab, LabSpec};
use crate::names::RunId;

/// Where storm-load lives in the guest.
pub const GUEST_LOAD: &str = "/usr/local/bin/storm-load";

/// The static storm-load binary built by `make load` (load/ is its own cargo workspace).
pub fn storm_load_binary(repo_root: &Path) -> Result<PathBuf> {
    let p = repo_root.join("load/target/x86_64-unknown-linux-gnu/release/storm-load");
    if !p.is_file() {
        bail!("{} not found; build it with `make load`", p.display());
    }
    Ok(p)
}

/// A provisioned lab: the guard plus one session per guest (server first).
pub struct Ready {
    pub lab: Lab,
    pub guests: Vec<Guest>,
    /// Seconds from domain start until every guest answered SSH.
    pub boot_to_ssh: f64,
    pub storm_load_sha256: String,
    pub guest_kernel: Option<String>,
}

pub async fn provision(
    run_id: &RunId,
    spec: &LabSpec,
    image: &Image,
    storm_load: &Path,
    boot_timeout: Duration,
    rep: &dyn Reporter,
) -> Result<Ready> {
    rep.event(&Event::Phase {
        name: "provision",
        detail: format!(
            "{} x4, {:?} network, {} ({})",
            spec.nic.qemu_model(),
            spec.mode,
            spec.accel,
            run_id.tag()
        ),
    });
    let t0 = Instant::now();
    let lab = Lab::create(run_id, spec, image)?;
    let guests = try_join_all(lab.vms.iter().map(|vm| async {
        let g = Guest::wait_ready(vm, &lab.key, boot_timeout).await?;
        rep.event(&Event::GuestReady {
            vm: vm.name.clone(),
            secs: t0.elapsed().as_secs_f64(),
        });
        Ok::<_, anyhow::Error>(g)
    }))
    .await?;
    let boot_to_ssh = t0.elapsed().as_secs_f64();

    // The NIC driver bound to eth0 must be the model the cell names, or the row would lie.
    let want = spec.nic.guest_drivers();
    let drivers = try_join_all(
        guests
            .iter()
            .map(|g| g.sh("ethtool -i eth0 | sed -n 's/^driver: //p'")),
    )
    .await?;
    for (g, d) in guests.iter().zip(&drivers) {
        if !want.contains(&d.trim()) {
            bail!(
                "{}: eth0 is driven by {:?}, but the cell asks for {} (driver {})",
                g.ep.name,
                d.trim(),
                spec.nic.qemu_model(),
                want.join("/")
            );
        }
    }
    let guest_kernel = guests[0]
        .sh("uname -r")
        .await
        .ok()
        .map(|s| s.trim().to_string());
    let shas = try_join_all(guests.iter().map(|g| g.push(storm_load, GUEST_LOAD))).await?;
    rep.event(&Event::Phase {
        name: "provision",
        detail: format!(
            "4 guests up in {boot_to_ssh:.0}s, eth0 driver {} verified, storm-load pushed",
            drivers[0].trim()
        ),
    });
    Ok(Ready {
        lab,
        guests,
        boot_to_ssh,
        storm_load_sha256: shas[0].clone(),
        guest_kernel,
    })
}

/// Starts `storm-load server ARGS` in the guest, detached (setsid, all fds redirected, so the
/// SSH command returns at once), output in `{base}.out`, pid in `{base}.pid`; returns once it
/// printed its `start` line (bounded: 10 s), or fails quoting its output.
pub async fn start_server(guest: &Guest, args: &str, base: &str) -> Result<()> {
    guest
        .sh(&format!(
            "setsid {GUEST_LOAD} server {args} > {base}.out 2>&1 < /dev/null & echo $! > {base}.pid; \
             for i in $(seq 100); do grep -q '\"kind\":\"start\"' {base}.out && exit 0; sleep 0.1; done; \
             cat {base}.out; exit 1"
        ))
        .await
        .map(|_| ())
}

/// Proves clients reach the server's ports in this mode: a server on all ports and each
/// client opening one connection per port through the mode's path (bridge, host NAT, slirp).
pub async fn check_reachability(ready: &Ready) -> Result<()> {
    let target = ready.lab.target();
    let ports = &ready.lab.spec.ports;
    let server = &ready.guests[0];
    start_server(server, &format!("--ports {ports}"), "/run/reach-server")
        .await
        .context("starting storm-load server for the reachability check")?;
    let n = ports.count();
    let result = try_join_all(ready.guests[1..].iter().map(|c| async move {
        // grep exits at `reached`; the client then dies on its next write (EPIPE) or at the timeout.
        c.sh(&format!(
            "timeout -s INT 30 {GUEST_LOAD} client --target {}:{} --count {n} --concurrency {n} | grep -m1 -q '\"kind\":\"reached\"'",
            target.addr, target.ports
        ))
        .await
        .with_context(|| format!("{} could not open {n} connections to {}:{}", c.ep.name, target.addr, target.ports))
    }))
    .await;
    server
        .sh("kill -TERM $(cat /run/reach-server.pid) 2>/dev/null; true")
        .await?;
    result.map(|_| ())
}
