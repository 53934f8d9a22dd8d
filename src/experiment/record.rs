//! Pure: the outcomes of the phases that ran -> the cell's row. The only place a row is filled,
//! so what each column means is read here, once.

use super::{CellError, Outcomes};
use crate::host::provenance::Versions;
use crate::host::HostInfo;
use crate::lab::emulator::Emulator;
use crate::matrix::plan::{Accel, Cell, Settings, Sizes};
use crate::model::named::Named;
use crate::model::verdict::{Outcome, Verdict};
use crate::results::CellRow;
use crate::support::markup::or_dash;

/// Who and what the row is about, independent of how the cell went.
pub(crate) struct Identity<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) cell: &'a Cell,
    pub(crate) repetition: u32,
    pub(crate) accel: Accel,
    pub(crate) settings: &'a Settings,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) versions: &'a Versions,
    pub(crate) emulator: &'a Emulator,
    pub(crate) host: &'a HostInfo,
}

pub(crate) fn row(
    id: &Identity,
    sizes: &Sizes,
    out: &Outcomes,
    end: &Result<Outcome, CellError>,
) -> CellRow {
    let mut row = CellRow::for_cell(
        id.run_id,
        id.cell,
        id.repetition,
        Some(id.accel),
        id.settings,
    );
    debug_assert_eq!(row.target, Some(sizes.target));
    row.started_at = id.started_at.clone();
    row.finished_at = id.finished_at.clone();
    row.nicstorm_version = id.versions.nicstorm.clone();
    row.qemu_version = id.emulator.version.clone().or(id.versions.qemu.clone());
    row.emulator_recipe_hash = id.emulator.recipe_hash.clone();
    row.libvirt_version = id.versions.libvirt.clone();
    row.host_kernel = id.versions.host_kernel.clone();
    id.host.stamp(&mut row);

    row.guest_kernel = out.guest_kernel.clone();
    if let Some(t) = &out.provision {
        row.domain_start_max_seconds = Some(t.domain_start_max);
        row.boot_to_ssh_seconds = Some(t.boot_to_ssh);
    }
    row.vhost_effective = out.vhost_effective.map(Named::from);
    row.host_conntrack_max = out.host_conntrack_max;
    if let Some(r) = &out.ramp {
        row.peak_established = r.peak;
        row.ramp_seconds = Some(r.secs);
        row.ramp_rate = r.peak.map(|p| p as f64 / r.secs);
        row.connect_errors = Some(r.connect_errors);
        row.errors_by_errno = Some(r.errors_by_errno.clone());
    }
    if let Some(h) = &out.hold {
        row.ssh_baseline_seconds = h.ssh_baseline;
    }
    if let Some(d) = &out.disconnect {
        row.kill_spread_seconds = Some(d.kill_spread);
    }
    if let Some(o) = &out.observe {
        row.drain_seconds = o.drain_seconds;
        row.undrained_connections = o.undrained;
        row.ssh_max_seconds = o.outcome.ssh_max;
        row.ssh_probe_failures = Some(u64::from(o.outcome.probe_failures));
        row.ssh_dropped = Some(o.outcome.probe_failures > 0 || o.session_dropped);
        row.session_dropped = Some(o.session_dropped);
        row.heartbeat_max_gap_seconds = o.outcome.max_heartbeat_gap;
        row.peak_softirq_pct = o.peak_softirq;
        row.peak_load1 = o.peak_load1;
        row.min_memavail_mib = o.min_memavail_mib;
        row.peak_vcpu_pct = o.vcpu_peak;
        row.host_conntrack_peak = o.conntrack_peak;
        row.clients_tcp_abort_on_memory = o.counters.clients_tcp_abort_on_memory;
        row.server_tap_tx_dropped = o.counters.server_tap_tx_dropped;
        row.server_device_lost = o.counters.server_device_lost;
        row.server_eth0_rx_dropped = o.counters.server_eth0_rx_dropped;
        row.host_conntrack_drops = o.counters.host_conntrack_drops;
    }
    if let Some((role, _)) = out.lost {
        // SSH to the server failed before observe (a client's loss is the verdict's alone).
        row.ssh_dropped = Some(role == crate::lab::Role::Server);
    }
    if let Some(d) = &out.diagnosis {
        row.stall_side = d.stall_side.clone();
        row.recovered_by = d.recovered_by.clone();
    }
    match end {
        Ok(v) => {
            row.verdict = v.verdict.into();
            row.recovery_seconds = v.recovery_seconds;
        }
        Err(e) => {
            row.verdict = Verdict::Error.into();
            row.error = Some(format!("{:#}", e.source));
            row.error_phase = Some(e.phase.into());
        }
    }
    row
}

/// The one line shown with a finished cell's verdict.
pub(crate) fn detail(row: &CellRow, v: &Outcome) -> String {
    format!(
        "(peak {}/{}, drain {}, {})",
        or_dash(row.peak_established),
        or_dash(row.target),
        row.drain_seconds
            .map(|d| format!("{d:.1}s"))
            .unwrap_or_else(|| "-".into()),
        v.reason
    )
}

#[cfg(test)]
mod tests {
    use super::super::disconnect::DisconnectOutcome;
    use super::super::hold::HoldOutcome;
    use super::super::observe::ObserveOutcome;
    use super::super::ramp::{RampOutcome, Stop};
    use super::super::snapshot::CounterColumns;
    use super::*;
    use crate::matrix::plan::parse_plan;
    use crate::model::phase::Phase;

    fn outcome(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            recovery_seconds: Some(3.5),
            max_heartbeat_gap: Some(0.4),
            ssh_max: Some(2.5),
            probe_failures: 0,
            reason: "fine".into(),
        }
    }

    fn full() -> Outcomes {
        Outcomes {
            guest_kernel: Some("6.1.0-56-amd64".into()),
            provision: Some(crate::experiment::provision::Timings {
                vms: vec![],
                boot_to_ssh: 14.5,
                domain_start_max: 0.35,
            }),
            vhost_effective: Some(None),
            host_conntrack_max: Some(2_000_000),
            ramp: Some(RampOutcome {
                peak: Some(3000),
                secs: 1.5,
                connect_errors: 0,
                errors_by_errno: String::new(),
                stop: Stop::Reached,
            }),
            hold: Some(HoldOutcome {
                ssh_baseline: Some(1.2),
                probe_limit: std::time::Duration::from_secs(30),
            }),
            disconnect: Some(DisconnectOutcome {
                targets: vec![crate::lab::Role::Client(1)],
                remaining: 2000,
                kill_spread: 0.8,
                t0: std::time::Instant::now(),
                before: Default::default(),
            }),
            observe: Some(ObserveOutcome {
                outcome: outcome(Verdict::Ok),
                session_dropped: false,
                drain_seconds: Some(4.0),
                undrained: Some(0),
                peak_softirq: Some(40.0),
                peak_load1: Some(1.0),
                min_memavail_mib: Some(700),
                vcpu_peak: Some(99.0),
                conntrack_peak: Some(3100),
                counters: CounterColumns {
                    server_tap_tx_dropped: Some(12),
                    ..Default::default()
                },
            }),
            diagnosis: None,
            lost: None,
        }
    }

    #[test]
    fn rows_from_outcomes() {
        let p = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], connections: [1000000]}\n",
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        let cell = &p.cells[0];
        let (versions, emulator) = (Versions::default(), Emulator::system());
        let host = HostInfo {
            name: Some("h".into()),
            cpu: Some("EPYC".into()),
            cores: Some(2),
            memory_mib: Some(24_000),
        };
        let id = Identity {
            run_id: "a1b2c3",
            cell,
            repetition: 2,
            accel: Accel::Tcg,
            settings: &p.settings,
            started_at: "s".into(),
            finished_at: "f".into(),
            versions: &versions,
            emulator: &emulator,
            host: &host,
        };
        let sizes = cell.resolve(Accel::Tcg, &p.settings);

        // A cell that ran through.
        let r = row(&id, &sizes, &full(), &Ok(outcome(Verdict::Ok)));
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!((r.target, r.peak_established), (Some(30_000), Some(3000)));
        assert_eq!(r.ramp_rate, Some(2000.0));
        assert_eq!(r.ssh_dropped, Some(false));
        assert_eq!(r.server_tap_tx_dropped, Some(12));
        assert_eq!(r.server_device_lost, None, "missing stays missing");
        assert_eq!(r.boot_to_ssh_seconds, Some(14.5));
        assert_eq!((r.error, r.error_phase), (None, None));
        assert_eq!(r.host_cpu.as_deref(), Some("EPYC"));
        assert_eq!(r.qemu.as_str(), "system");
        assert_eq!(r.recovery_seconds, Some(3.5));

        // A session drop alone counts as ssh_dropped.
        let mut o = full();
        o.observe.as_mut().unwrap().session_dropped = true;
        assert_eq!(
            row(&id, &sizes, &o, &Ok(outcome(Verdict::SshDropped))).ssh_dropped,
            Some(true)
        );

        // Failed in hold: what ran is kept, what did not is missing, the phase is named.
        let mut o = full();
        o.disconnect = None;
        o.observe = None;
        let err = CellError {
            phase: Phase::Hold,
            source: anyhow::anyhow!("the load generator died in server during hold"),
        };
        let r = row(&id, &sizes, &o, &Err(err));
        assert_eq!(r.verdict, Verdict::Error);
        assert_eq!(r.error_phase, Some(Phase::Hold.into()));
        assert!(r.error.unwrap().contains("load generator died"));
        assert_eq!(r.peak_established, Some(3000));
        assert_eq!(r.ssh_baseline_seconds, Some(1.2));
        assert_eq!(
            (r.kill_spread_seconds, r.drain_seconds, r.ssh_dropped),
            (None, None, None)
        );
        assert_eq!(r.recovery_seconds, None);

        // Failed in preflight: nothing measured at all.
        let err = CellError {
            phase: Phase::Preflight,
            source: anyhow::anyhow!("server memory too small"),
        };
        let r = row(&id, &sizes, &Outcomes::default(), &Err(err));
        assert_eq!(r.error_phase, Some(Phase::Preflight.into()));
        assert_eq!(
            (r.peak_established, r.boot_to_ssh_seconds, r.guest_kernel),
            (None, None, None)
        );
        assert_eq!(r.target, Some(30_000), "what would have run is still said");
    }
}
