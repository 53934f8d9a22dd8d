//! Provision: a lab whose four guests answer SSH with the run's key, whose NIC driver is
//! verified to be the requested model (and in passt mode its netdev, a stream to passt), with
//! storm-load in place: pushed (checksum verified) to booted guests; a restored lab's guests
//! hold it already, and their driver was checked before the save (lab/saved.rs). Used by the
//! experiment's provision phase and by `nicstorm lab up`.
//!
//! Every step is timed per VM (provision.csv in the lab's log directory), so the next slowdown
//! shows without a debugger: the libvirt start call, the guest's own uptime when its init ran
//! and when sshd started (read off the serial console), when SSH first accepted a TCP
//! connection and a login, and when storm-load was in place.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::future::try_join_all;

use crate::experiment::storm;
use crate::lab::guest::{self, Guest};
use crate::lab::image::Image;
use crate::lab::{saved, Lab, LabSpec, Start};
use crate::matrix::plan::LabStart;
use crate::model::names::RunId;
use crate::progress::{Event, Reporter, SlowStart, Step, Warning};

/// A libvirt domain start slower than this means libvirt is re-probing QEMU (see
/// `slow_start_cause`), not that the guest is slow.
pub(crate) const SLOW_DOMAIN_START: Duration = Duration::from_secs(5);

/// A provisioned lab: the guard plus one session per guest (server first).
pub struct Ready {
    pub lab: Lab,
    pub guests: Vec<Guest>,
    pub(crate) timings: Timings,
    pub(crate) guest_kernel: Option<String>,
}

/// Seconds since provisioning began, per VM, plus what the guest's console says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VmTimings {
    pub(crate) vm: String,
    /// Duration of the libvirt define+start call.
    pub(crate) domain_start: f64,
    /// nicstorm-init and sshd announced on the serial console (host clock; the guest's own
    /// uptime is not host time under TCG).
    pub(crate) init_seen: Option<f64>,
    pub(crate) sshd_seen: Option<f64>,
    /// First TCP connection to port 22 accepted, first login with the run's key.
    pub(crate) ssh_tcp: Option<f64>,
    pub(crate) ssh_login: f64,
    /// storm-load copied and its checksum verified; None for a restored guest (its saved
    /// lab holds it).
    pub(crate) pushed: Option<f64>,
    /// Ready for the experiment: logged in, driver checked, storm-load in place.
    pub(crate) ready: f64,
    /// A restored guest: its release had answered (nicstorm-release had set its clock,
    /// reseeded its random pool and taken its identity, from the host's line over ttyS2).
    /// None for a booted guest.
    pub(crate) released: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Timings {
    pub(crate) vms: Vec<VmTimings>,
    /// From the start of provisioning until every guest answered SSH.
    pub(crate) boot_to_ssh: f64,
    /// The slowest libvirt start (or restore) call.
    pub(crate) domain_start_max: f64,
    /// The saved lab the guests were restored from (its key); None: they booted.
    pub(crate) restored_from: Option<String>,
}

impl Timings {
    /// provision.csv: one line per VM.
    pub(crate) fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w =
            csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
        w.write_record([
            "vm",
            "domain_start_s",
            "init_seen_s",
            "sshd_seen_s",
            "ssh_tcp_s",
            "ssh_login_s",
            "storm_load_pushed_s",
            "released_s",
            "ready_s",
        ])?;
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
        for t in &self.vms {
            w.write_record([
                t.vm.clone(),
                format!("{:.3}", t.domain_start),
                f(t.init_seen),
                f(t.sshd_seen),
                f(t.ssh_tcp),
                format!("{:.2}", t.ssh_login),
                f(t.pushed),
                f(t.released),
                format!("{:.2}", t.ready),
            ])?;
        }
        w.flush()?;
        Ok(())
    }
}

/// What a slow libvirt start most likely means on this host.
pub(crate) fn slow_start_cause() -> SlowStart {
    let kvm = std::fs::metadata("/dev/kvm").ok().map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    match kvm {
        Some(mode) if mode & 0o060 == 0 => SlowStart::KvmMode(mode),
        _ => SlowStart::Unknown,
    }
}

/// How often provisioning looks whether a passt has exited.
const PASST_WATCH: Duration = Duration::from_millis(500);

pub async fn provision(
    run_id: &RunId,
    spec: &LabSpec,
    image: &Image,
    boot_timeout: Duration,
    rep: &dyn Reporter,
) -> Result<Ready> {
    rep.event(&Event::Phase(Step::Provision {
        nic: spec.nic.qemu_model().to_string(),
        mode: spec.mode.to_string(),
        accel: spec.accel.to_string(),
        lab: run_id.tag(),
    }));
    // `lab_start: restore`: the saved lab of this kind, saved now by the first cell that needs
    // it (its boot and save are not this cell's boot: `t0` starts after them).
    let saved = match spec.lab_start {
        LabStart::Boot => None,
        LabStart::Restore => {
            let key_text = saved::key_text(spec, image)?;
            let key = saved::key_of(&key_text);
            if saved::run_id_of(&key) != *run_id {
                bail!("a restored lab runs under its saved lab's id (lab::saved::lab_id), not {run_id}");
            }
            // Every lab of this kind has these names: one left by an earlier lab (a teardown
            // that failed keeps its network for the sweep) must go first, or this one would
            // stumble over it (or take over its files).
            let left = crate::lab::survivors(run_id)?;
            if !left.is_empty() {
                bail!(
                    "an earlier lab of this kind (run id {run_id}, which every restored lab of its kind shares) left {}; remove it with `nicstorm lab down`",
                    left.join(", ")
                );
            }
            match saved::find(&key)? {
                Some(found) => Some(found),
                None => {
                    let (made, secs) = saved::make(
                        spec,
                        image,
                        &key_text,
                        &spec.log_dir.join("saved-lab"),
                        run_id,
                        boot_timeout,
                    )
                    .await
                    .context("saving a lab to restore")?;
                    rep.event(&Event::Phase(Step::LabSaved {
                        key: made.key.clone(),
                        seconds: secs,
                    }));
                    Some(made)
                }
            }
        }
    };
    let t0 = Instant::now();
    let start = saved.as_ref().map_or(Start::Boot, Start::Restore);
    let lab = Lab::create(run_id, spec, image, start)?;
    // A restored guest waits at its hold point for its clock, entropy and identity.
    let released: Vec<Option<f64>> = match &saved {
        None => vec![None; lab.vms.len()],
        Some(_) => try_join_all(lab.vms.iter().map(|vm| async {
            saved::release(vm).await?;
            Ok::<_, anyhow::Error>(Some(t0.elapsed().as_secs_f64()))
        }))
        .await
        .context("releasing the restored guests")?,
    };
    let domain_start_max = lab
        .vms
        .iter()
        .map(|vm| vm.start_seconds)
        .fold(0.0, f64::max);
    if domain_start_max > SLOW_DOMAIN_START.as_secs_f64() {
        rep.event(&Event::Warning(Warning::SlowDomainStart {
            secs: domain_start_max,
            cause: slow_start_cause(),
        }));
    }
    // Each guest on its own: ready, its driver checked, storm-load in place; the slowest
    // guest alone decides when provisioning ends.
    let ready = try_join_all(lab.vms.iter().map(|vm| async {
        let (g, times) = Guest::wait_ready(vm, &lab.key, boot_timeout, t0).await?;
        rep.event(&Event::GuestReady {
            vm: vm.name.clone(),
            secs: times.login,
        });
        // A restored guest holds storm-load, and its driver and kernel were read before the
        // save (the key covers storm-load's content, the NIC and the image).
        let (driver, kernel, pushed) = match &saved {
            Some(s) => (s.driver.clone(), Some(s.kernel.clone()), None),
            None => {
                // The driver and kernel asked while storm-load goes up (two channels of one
                // session).
                let (about, push) = tokio::join!(
                    g.sh(guest::ABOUT),
                    g.push(&spec.storm_load, storm::GUEST_BIN)
                );
                push?;
                let about = about?;
                (
                    guest::said(&about, "driver").unwrap_or_default().to_owned(),
                    guest::said(&about, "kernel").map(str::to_owned),
                    Some(t0.elapsed().as_secs_f64()),
                )
            }
        };
        guest::check_driver(&g.ep.name, spec.nic, &driver)?;
        let ready = t0.elapsed().as_secs_f64();
        Ok::<_, anyhow::Error>((g, times, driver, pushed, kernel, ready))
    }));
    // passt mode: a guest whose passt exited can never answer; say so now, with passt's own
    // words, rather than after the boot timeout.
    let passt_watch = async {
        loop {
            if let Some(gone) = lab.passt_gone() {
                return gone;
            }
            tokio::time::sleep(PASST_WATCH).await;
        }
    };
    let ready = tokio::select! {
        ready = ready => ready?,
        gone = passt_watch, if !lab.passt.is_empty() => bail!("provisioning: {gone}"),
    };
    // passt mode: the NIC is on a stream netdev to passt, as the running QEMU says.
    if spec.mode == crate::matrix::plan::NetMode::Passt {
        lab.verify_passt()?;
    }
    let boot_to_ssh = ready.iter().map(|(_, t, ..)| t.login).fold(0.0, f64::max);
    let driver = ready[0].2.clone();
    let timings = Timings {
        vms: lab
            .vms
            .iter()
            .zip(&ready)
            .map(|(vm, (_, t, _, pushed, _, ready))| VmTimings {
                vm: vm.name.clone(),
                domain_start: vm.start_seconds,
                init_seen: t.init_seen,
                sshd_seen: t.sshd_seen,
                ssh_tcp: t.tcp,
                ssh_login: t.login,
                pushed: *pushed,
                released: released[vm.role.index()],
                ready: *ready,
            })
            .collect(),
        boot_to_ssh,
        domain_start_max,
        restored_from: saved.as_ref().map(|s| s.key.clone()),
    };
    // The server's kernel (the guests share one image).
    let guest_kernel = ready[0].4.clone();
    let guests: Vec<Guest> = ready.into_iter().map(|(g, ..)| g).collect();
    let csv = spec.log_dir.join("provision.csv");
    if let Err(e) = timings.write_csv(&csv) {
        rep.event(&Event::Warning(Warning::ProvisionCsv((&e).into())));
    }
    rep.event(&Event::Phase(Step::Provisioned {
        restored_from: timings.restored_from.clone(),
        guests: guests.len(),
        boot_to_ssh,
        slowest_domain_start: domain_start_max,
        driver,
        storm_load_saved: saved.is_some(),
        ready_after: t0.elapsed().as_secs_f64(),
    }));
    Ok(Ready {
        lab,
        guests,
        timings,
        guest_kernel,
    })
}

/// Proves clients reach the server's ports in this mode: a server on all ports and each
/// client opening one connection per port through the mode's path (bridge, host NAT, slirp).
pub async fn check_reachability(ready: &Ready) -> Result<()> {
    let target = ready.lab.target();
    let ports = &ready.lab.spec.ports;
    let server = &ready.guests[0];
    storm::start_server(server, &format!("--ports {ports}"), "/run/reach-server")
        .await
        .context("starting storm-load server for the reachability check")?;
    let n = ports.count();
    let result = try_join_all(ready.guests[1..].iter().map(|c| async move {
        // The client holds its connections until told to stop (it ignores a closed stdout:
        // behind `| grep -m1` it ran on until a 30-s timeout). Its stream goes to a file, which
        // is read until `reached` (about 30 s at most), then the client is stopped by its PID.
        // `reached` means the ramp ended, failed connects included: every one must be
        // established.
        c.sh(&format!(
            ": >/run/reach-client.out; {bin} client --target {}:{} --count {n} --concurrency {n} >/run/reach-client.out 2>&1 </dev/null & pid=$!; \
             for i in $(seq 300); do grep -q '\"kind\":\"reached\"' /run/reach-client.out && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done; \
             kill -INT $pid 2>/dev/null; wait $pid; grep '\"kind\":\"reached\"' /run/reach-client.out | grep -q '\"established\":{n},' || {{ tail -n 5 /run/reach-client.out >&2; exit 1; }}",
            target.addr,
            target.ports,
            bin = storm::GUEST_BIN,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_csv() {
        let dir = std::env::temp_dir().join(format!("nicstorm-prov-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Timings {
            vms: vec![VmTimings {
                vm: "nicstorm-a1b2c3-server".into(),
                domain_start: 0.3412,
                init_seen: Some(2.29),
                sshd_seen: None,
                ssh_tcp: Some(7.0),
                ssh_login: 8.456,
                pushed: None,
                released: Some(3.5),
                ready: 8.5,
            }],
            boot_to_ssh: 9.0,
            domain_start_max: 0.3412,
            restored_from: None,
        };
        t.write_csv(&dir.join("p.csv")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("p.csv")).unwrap(),
            "vm,domain_start_s,init_seen_s,sshd_seen_s,ssh_tcp_s,ssh_login_s,storm_load_pushed_s,released_s,ready_s\nnicstorm-a1b2c3-server,0.341,2.29,,7.00,8.46,,3.50,8.50\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
