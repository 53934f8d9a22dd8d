//! Pure: how a cell ended and the outcomes of the phases that ran -> the cell's row, for every
//! ending (measured, harness error, panic, not applicable; an interrupted cell has no row).
//! The only place a row is filled, so what each column means is read here, once: the row's
//! identity, axes and verdict come from `CellRow::new` (results), the provenance and the
//! measurements from here.

use super::Outcomes;
use crate::host::provenance::Versions;
use crate::host::HostInfo;
use crate::lab::emulator::Emulator;
use crate::model::named::Named;
use crate::progress::{CellEnd, ErrorChain};
use crate::results::row::{RowEnd, RowIdentity};
use crate::results::CellRow;

/// Who and what the row is about, independent of how the cell went.
pub(crate) struct Identity<'a> {
    pub(crate) row: RowIdentity<'a>,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
    pub(crate) versions: &'a Versions,
    pub(crate) emulator: &'a Emulator,
    /// The passt of a passt-mode cell.
    pub(crate) passt: Option<&'a crate::lab::passt::Program>,
    pub(crate) host: &'a HostInfo,
    /// `settings.frames` of the run.
    pub(crate) frames: crate::matrix::plan::Frames,
}

/// The row of a cell that ended as `end`, after the phases that returned `out` (none for a
/// cell that did not run: not applicable, or panicked).
pub(crate) fn row(id: &Identity, out: &Outcomes, end: &RowEnd) -> CellRow {
    let mut row = CellRow::new(&id.row, end);
    row.started_at = id.started_at.clone();
    row.finished_at = id.finished_at.clone();
    // Provenance, in every ending: a row on an emulator recipe names it and its QEMU.
    row.nicstorm_version = id.versions.nicstorm.clone();
    row.qemu_version = id.emulator.version.clone().or(id.versions.qemu.clone());
    row.emulator_recipe_hash = id.emulator.recipe_hash.clone();
    row.libvirt_version = id.versions.libvirt.clone();
    row.host_kernel = id.versions.host_kernel.clone();
    id.host.stamp(&mut row);
    row.frames = Some(id.frames.into());
    row.passt = id.passt.map(crate::lab::passt::Program::describe);

    row.guest_kernel = out.guest_kernel.clone();
    if let Some(t) = &out.provision {
        row.domain_start_max_seconds = Some(t.domain_start_max);
        row.boot_to_ssh_seconds = Some(t.boot_to_ssh);
        row.lab_start = Some(
            if t.restored_from.is_some() {
                "restored"
            } else {
                "booted"
            }
            .to_owned(),
        );
        row.lab_key = t.restored_from.clone();
    }
    row.vhost_effective = out.vhost_effective.map(Named::from);
    row.host_conntrack_max = out.host_conntrack_max;
    if let Some(r) = &out.ramp {
        row.peak_established = r.peak;
        row.ramp_seconds = Some(r.secs);
        row.ramp_rate = r.peak.map(|p| p as f64 / r.secs);
        row.client_ramp_rate = r.client_rate;
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
    let (lost_phase, lost_role) = lost(out, end);
    row.lost_phase = lost_phase.map(Named::from);
    row.lost_role = lost_role;
    if let Some(e) = &out.evidence {
        row.kernel_signatures = Some(e.signatures.clone());
        row.server_signature_lines = e.server_signature_lines;
        let model = |r: &crate::lab::Role| {
            e.vmnet
                .iter()
                .find(|(role, _)| role == r)
                .and_then(|(_, m)| *m)
        };
        if let Some(server) = model(&crate::lab::Role::Server) {
            row.vmnet_refused_server = Some(server.refused);
            row.vmnet_flushes_server = Some(server.flushes);
        }
        let clients: Vec<_> = e
            .vmnet
            .iter()
            .filter(|(r, _)| *r != crate::lab::Role::Server)
            .filter_map(|(_, m)| *m)
            .collect();
        if !clients.is_empty() {
            row.vmnet_refused_clients = Some(clients.iter().map(|m| m.refused).sum());
        }
        row.vmnet_largest_frame = e
            .vmnet
            .iter()
            .filter_map(|(_, m)| m.map(|m| m.largest))
            .max();
        row.vmnet_first_refusal_phase = e.first_refusal_phase.map(Named::from);
        row.vmnet_server_first_refusal_phase = e.server_first_refusal_phase.map(Named::from);
    }
    row
}

/// Where the run first saw a guest's network lost: the phase before observe that found it
/// (with its guest), or observe, for a verdict about the network decided after the
/// disconnect (the server's for ssh_dropped, hung and crashed).
fn lost(out: &Outcomes, end: &RowEnd) -> (Option<crate::model::phase::Phase>, Option<String>) {
    use crate::model::verdict::Verdict;
    if let Some((role, phase)) = out.lost {
        return (Some(phase), Some(role.to_string()));
    }
    match end {
        RowEnd::Measured { verdict, .. } if out.observe.is_some() => match verdict {
            Verdict::SshDropped | Verdict::Hung | Verdict::Crashed => (
                Some(crate::model::phase::Phase::Observe),
                Some(crate::lab::Role::Server.to_string()),
            ),
            Verdict::ClientDropped => (Some(crate::model::phase::Phase::Observe), None),
            _ => (None, None),
        },
        _ => (None, None),
    }
}

/// The one end event of a cell that ended as `end` with `row`; `reason` says why a measured
/// cell got its verdict.
pub(crate) fn end_event(end: &RowEnd, row: &CellRow, reason: &str) -> CellEnd {
    match end {
        RowEnd::Measured { verdict, .. } => CellEnd::Verdict {
            verdict: *verdict,
            peak: row.peak_established,
            target: row.target,
            drain_seconds: row.drain_seconds,
            reason: reason.to_owned(),
        },
        RowEnd::Failed { phase, message } => CellEnd::Error {
            phase: *phase,
            error: ErrorChain(vec![message.clone()]),
        },
        RowEnd::NotApplicable { reason } => CellEnd::NotApplicable {
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::disconnect::DisconnectOutcome;
    use super::super::hold::HoldOutcome;
    use super::super::observe::ObserveOutcome;
    use super::super::ramp::{RampOutcome, Stop};
    use super::super::snapshot::CounterColumns;
    use super::*;
    use crate::matrix::plan::{parse_plan, Accel};
    use crate::model::phase::Phase;
    use crate::model::verdict::{Outcome, Verdict};

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
                restored_from: Some("0123456789abcdef".into()),
            }),
            vhost_effective: Some(None),
            host_conntrack_max: Some(2_000_000),
            ramp: Some(RampOutcome {
                peak: Some(3000),
                secs: 1.5,
                client_rate: Some(2250.5),
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
            evidence: Some(crate::experiment::Evidence {
                signatures: "server:virtio_tx_timeout=2".into(),
                server_signature_lines: Some(2),
                vmnet: vec![
                    (
                        crate::lab::Role::Server,
                        Some(crate::host::vmnet::ModelTotals {
                            accepted: 1316,
                            refused: 1,
                            flushes: 0,
                            largest: 5858,
                            first_refusal: Some(1.0),
                            final_seen: false,
                        }),
                    ),
                    (crate::lab::Role::Client(1), None),
                ],
                first_refusal_phase: Some(crate::model::phase::Phase::Ramp),
                server_first_refusal_phase: Some(crate::model::phase::Phase::Hold),
            }),
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
            row: RowIdentity {
                run_id: "a1b2c3",
                cell,
                repetition: 2,
                search_step: None,
                accel: Accel::Tcg,
                sizes: cell.resolve(Accel::Tcg, &p.settings),
            },
            started_at: "s".into(),
            finished_at: "f".into(),
            versions: &versions,
            emulator: &emulator,
            passt: None,
            host: &host,
            frames: crate::matrix::plan::Frames::Tso,
        };
        let measured = |verdict| RowEnd::Measured {
            verdict,
            recovery_seconds: Some(3.5),
        };

        // A cell that ran through.
        let r = row(&id, &full(), &measured(Verdict::Ok));
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!((r.target, r.peak_established), (Some(30_000), Some(3000)));
        assert_eq!(r.ramp_rate, Some(2000.0));
        assert_eq!(r.client_ramp_rate, Some(2250.5));
        assert_eq!(r.ssh_dropped, Some(false));
        assert_eq!(r.server_tap_tx_dropped, Some(12));
        assert_eq!(r.server_device_lost, None, "missing stays missing");
        assert_eq!(r.boot_to_ssh_seconds, Some(14.5));
        assert_eq!(
            (r.lab_start.as_deref(), r.lab_key.as_deref()),
            (Some("restored"), Some("0123456789abcdef"))
        );
        assert_eq!((r.error, r.error_phase), (None, None));
        assert_eq!(r.host_cpu.as_deref(), Some("EPYC"));
        assert_eq!(r.qemu.as_str(), "system");
        assert_eq!(r.recovery_seconds, Some(3.5));
        assert_eq!((r.search_id, r.search_step), (None, None));
        // The evidence: the model's account on the server, none on a client without it.
        assert_eq!(
            (
                r.vmnet_refused_server,
                r.vmnet_flushes_server,
                r.vmnet_refused_clients
            ),
            (Some(1), Some(0), None)
        );
        assert_eq!(r.vmnet_largest_frame, Some(5858));
        assert_eq!(r.vmnet_first_refusal_phase, Some(Phase::Ramp.into()));
        assert_eq!(r.vmnet_server_first_refusal_phase, Some(Phase::Hold.into()));
        assert_eq!(
            r.kernel_signatures.as_deref(),
            Some("server:virtio_tx_timeout=2")
        );
        assert_eq!(r.server_signature_lines, Some(2));
        assert_eq!((r.lost_phase, r.lost_role), (None, None), "ok lost nothing");

        // Where a network was lost: found before observe, or decided by observe.
        let mut o = full();
        o.lost = Some((crate::lab::Role::Server, Phase::Ramp));
        let r = row(&id, &o, &measured(Verdict::SshDropped));
        assert_eq!(r.lost_phase, Some(Phase::Ramp.into()));
        assert_eq!(r.lost_role.as_deref(), Some("server"));
        let r = row(&id, &full(), &measured(Verdict::Hung));
        assert_eq!(
            (r.lost_phase, r.lost_role.as_deref()),
            (Some(Phase::Observe.into()), Some("server"))
        );

        // A session drop alone counts as ssh_dropped.
        let mut o = full();
        o.observe.as_mut().unwrap().session_dropped = true;
        assert_eq!(
            row(&id, &o, &measured(Verdict::SshDropped)).ssh_dropped,
            Some(true)
        );

        // Failed in hold: what ran is kept, what did not is missing, the phase is named.
        let mut o = full();
        o.disconnect = None;
        o.observe = None;
        let failed = |phase, message: &str| RowEnd::Failed {
            phase,
            message: message.into(),
        };
        let r = row(
            &id,
            &o,
            &failed(Phase::Hold, "the load generator died in server during hold"),
        );
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
        let r = row(
            &id,
            &Outcomes::default(),
            &failed(Phase::Preflight, "server memory too small"),
        );
        assert_eq!(r.error_phase, Some(Phase::Preflight.into()));
        assert_eq!(
            (r.peak_established, r.boot_to_ssh_seconds, r.guest_kernel),
            (None, None, None)
        );
        assert_eq!(r.target, Some(30_000), "what would have run is still said");
    }

    /// Every ending of a cell on an emulator recipe keeps its provenance: the recipe's hash
    /// and its QEMU's version (the host's QEMU version when the recipe's is unknown); a
    /// search step carries its search and step.
    #[test]
    fn every_ending_keeps_the_emulator_and_the_search_step() {
        let p = parse_plan(
            "axes: {nic: [virtio-net], mode: [bridge], vhost: [on]}\nsearch:\n  connections: {from: 2000, to: 1000000, resolution: 10%}\n",
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        let cell = p.cells[0].at(2000);
        let versions = Versions {
            nicstorm: "0.1.0".into(),
            qemu: Some("7.2.0 (host)".into()),
            ..Versions::default()
        };
        let recipe = Emulator {
            name: "vmxnet3-b32".into(),
            binary: "/cache/qemu".into(),
            env: vec![],
            version: Some("9.1.0 (recipe)".into()),
            recipe_hash: Some("abc123".into()),
        };
        let unversioned = Emulator {
            version: None,
            ..recipe.clone()
        };
        let host = HostInfo::default();
        for (emulator, qemu) in [(&recipe, "9.1.0 (recipe)"), (&unversioned, "7.2.0 (host)")] {
            let id = Identity {
                row: RowIdentity {
                    run_id: "a1b2c3",
                    cell: &cell,
                    repetition: 1,
                    search_step: Some(3),
                    accel: Accel::Kvm,
                    sizes: cell.resolve(Accel::Kvm, &p.settings),
                },
                started_at: "s".into(),
                finished_at: "f".into(),
                versions: &versions,
                emulator,
                passt: None,
                host: &host,
                frames: crate::matrix::plan::Frames::Mtu,
            };
            for end in [
                RowEnd::Measured {
                    verdict: Verdict::Hung,
                    recovery_seconds: None,
                },
                RowEnd::Failed {
                    phase: Phase::Ramp,
                    message: "nicstorm panicked in ramp: x".into(),
                },
                RowEnd::NotApplicable {
                    reason: "vhost on under TCG".into(),
                },
            ] {
                let r = row(&id, &Outcomes::default(), &end);
                assert_eq!(r.verdict, end.verdict());
                assert_eq!(r.emulator_recipe_hash.as_deref(), Some("abc123"), "{end:?}");
                assert_eq!(r.qemu_version.as_deref(), Some(qemu), "{end:?}");
                assert_eq!(
                    (r.search_id.as_deref(), r.search_step, r.target),
                    (Some(cell.id.as_str()), Some(3), Some(2000))
                );
            }
        }
    }
}
