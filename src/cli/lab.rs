//! `nicstorm lab up` and `nicstorm lab down`: a lab brought up by hand, left running to poke
//! at, and everything of nicstorm's on this host removed.

use anyhow::{Context, Result};

use crate::cli::lock::RunLock;
use crate::cli::{exit, signals};
use crate::experiment::{provision, storm};
use crate::lab::image::Image;
use crate::lab::{checked_state_root, sweep, LabSpec, SYSTEM_EMULATOR};
use crate::matrix::plan::{LabStart, NetMode, NicModel, PortRange, Vhost};
use crate::model::names::RunId;
use crate::progress::{reporter, Event, Sweep, Warning};

/// What `lab up` boots.
pub(crate) struct UpOptions {
    pub(crate) nic: NicModel,
    pub(crate) mode: NetMode,
    pub(crate) vhost: Option<Vhost>,
    pub(crate) vcpus: u32,
    /// Memory per VM in MiB.
    pub(crate) memory: u64,
    /// Restore from a saved lab instead of booting.
    pub(crate) restore: bool,
}

/// Boots 1 server + 3 clients, proves the clients reach the server, prints how to SSH in and
/// leaves the lab running (the next `lab down` or run sweeps it by name).
pub(crate) async fn up(o: UpOptions) -> Result<u8> {
    crate::cli::logging::init(None);
    let rep = reporter();
    let root = crate::support::repo::root();
    // The state directory first: refusing a planted one needs no lock.
    checked_state_root()?;
    let _lock = RunLock::host()?;
    crate::cli::runner::report_sweep(sweep(None)?, Sweep::LabUp, rep.as_ref());
    let image = Image::ensure(&root)?;
    let storm_load = storm::binary(&root)?;
    let accel = crate::lab::accel::choose(&image, &checked_state_root()?).await?;
    rep.event(&Event::LabAccelerator {
        accel: accel.accel.to_string(),
        reason: accel.reason.clone(),
    });
    let mut run_id = RunId::new();
    let spec = LabSpec {
        nic: o.nic,
        vhost: if o.nic == NicModel::VirtioNet && o.mode.has_tap() {
            o.vhost.or(Some(Vhost::On))
        } else {
            None
        },
        mode: o.mode,
        accel: accel.accel,
        vcpus: o.vcpus,
        server_mib: o.memory,
        client_mib: o.memory,
        ports: PortRange {
            first: 20000,
            last: 20019,
        },
        // Set below, once the run id is known (a restored lab's is its saved lab's).
        log_dir: std::path::PathBuf::new(),
        emulator: SYSTEM_EMULATOR.into(),
        qemu_env: vec![],
        frames: crate::matrix::plan::Frames::Tso,
        passt: (o.mode == crate::matrix::plan::NetMode::Passt)
            .then(crate::lab::passt::Program::system),
        lab_start: if o.restore {
            LabStart::Restore
        } else {
            LabStart::Boot
        },
        storm_load,
    };
    if o.restore {
        run_id = crate::lab::saved::lab_id(&spec, &image)?;
    }
    let spec = LabSpec {
        log_dir: checked_state_root()?.join("manual").join(run_id.tag()),
        ..spec
    };
    // On a signal the future is dropped, and with it the lab guard, which tears down.
    let up = async {
        let ready = provision::provision(
            &run_id,
            &spec,
            &image,
            crate::lab::default_boot_timeout(accel.accel),
            rep.as_ref(),
        )
        .await?;
        provision::check_reachability(&ready)
            .await
            .context("reachability check")?;
        Ok::<_, anyhow::Error>(ready)
    };
    let ready = tokio::select! {
        r = up => r?,
        sig = signals::signalled() => {
            rep.event(&Event::Warning(Warning::LabInterrupted { signal: sig }));
            return Ok(exit::INTERRUPTED);
        }
    };
    // Ready: every guest answered SSH and has storm-load (pushed, or in its saved lab).
    let ready_after = ready
        .timings
        .vms
        .iter()
        .map(|v| v.ready)
        .fold(0.0, f64::max);
    println!(
        "lab {} is up ({} x4, {}); boot to SSH {:.1}s, ready with storm-load {:.1}s ({})",
        run_id.tag(),
        o.nic.qemu_model(),
        o.mode,
        ready.timings.boot_to_ssh,
        ready_after,
        if ready.timings.restored_from.is_some() {
            "in the saved lab"
        } else {
            "pushed"
        }
    );
    for g in &ready.guests {
        println!(
            "  {:8} ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@{}",
            g.role.to_string(),
            g.ep.key.display(),
            g.ep.port,
            g.ep.host
        );
    }
    println!(
        "  clients reach the server at {}:{}",
        ready.lab.target().addr,
        ready.lab.target().ports
    );
    println!(
        "  serial logs and provision.csv: {}",
        spec.log_dir.display()
    );
    println!("tear down with: nicstorm lab down");
    // The lab must outlive this process: hand it over instead of tearing it down.
    ready.lab.detach();
    Ok(exit::OK)
}

/// Destroys every nicstorm domain, bridge, tap, rule and overlay on this host.
pub(crate) fn down() -> Result<u8> {
    // The state directory first: refusing a planted one needs no lock.
    checked_state_root()?;
    let _lock = RunLock::host()?;
    let swept = sweep(None)?;
    for r in &swept.removed {
        eprintln!("removed {r}");
    }
    for k in &swept.kept {
        eprintln!("{}", crate::progress::text::kept(&k.file, &k.why));
    }
    eprintln!("{} nicstorm resources removed", swept.removed.len());
    if !swept.kept.is_empty() {
        eprintln!("{} kept: see above", swept.kept.len());
        return Ok(exit::HARNESS);
    }
    Ok(exit::OK)
}
