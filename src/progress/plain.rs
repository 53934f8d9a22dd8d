//! Plain lines (CI, pipes, files): one line per event, ramp and observe updates thinned to one
//! every 5 s. Phase lines end with the seconds since the run began, so a log shows where time
//! went.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::text;
use super::{Event, Reporter, Verbosity};

pub struct Plain {
    out: Mutex<Box<dyn Write + Send>>,
    last_update: Mutex<Option<Instant>>,
    started: Instant,
    verbosity: Verbosity,
}

impl Plain {
    /// Lines on stderr.
    pub fn stderr() -> Plain {
        Plain::to(Box::new(std::io::stderr()))
    }

    /// Lines on `out`.
    pub fn to(out: Box<dyn Write + Send>) -> Plain {
        Plain {
            out: Mutex::new(out),
            last_update: Mutex::new(None),
            started: Instant::now(),
            verbosity: Verbosity::Normal,
        }
    }

    /// Quiet: only what ends something, and warnings; verbose: every update.
    pub fn with_verbosity(self, verbosity: Verbosity) -> Plain {
        Plain { verbosity, ..self }
    }

    /// Whether `-q` hides `e`: progress within a cell and its start.
    fn hidden(&self, e: &Event) -> bool {
        self.verbosity == Verbosity::Quiet
            && matches!(
                e,
                Event::CellStarted { .. }
                    | Event::Phase(_)
                    | Event::GuestReady { .. }
                    | Event::Ramp { .. }
                    | Event::RampEnded { .. }
                    | Event::Observe { .. }
                    | Event::CellSkipped { .. }
            )
    }

    /// Whether an update comes too soon after the last one shown (never, with `-v`).
    fn thinned(&self) -> bool {
        if matches!(self.verbosity, Verbosity::Verbose(_)) {
            return false;
        }
        let mut last = self.last_update.lock().unwrap();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return true;
        }
        *last = Some(Instant::now());
        false
    }
}

impl Reporter for Plain {
    fn event(&self, e: &Event) {
        if self.hidden(e) {
            return;
        }
        let line = match e {
            Event::Ramp { .. } | Event::Observe { .. } if self.thinned() => return,
            Event::Phase(_) => format!(
                "{} [t+{:.1}s]",
                text::line(e),
                self.started.elapsed().as_secs_f64()
            ),
            other => text::line(other),
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::model::phase::Phase;
    use crate::model::verdict::Verdict;
    use crate::progress::{
        CellEnd, ErrorChain, RampStop, RunStart, SearchDone, SlowStart, Step, Sweep, TcgCaps,
        Warning,
    };

    /// What a `Plain` wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a fresh plain reporter prints for `e`.
    fn shown(e: &Event) -> String {
        let out = Captured::default();
        Plain::to(Box::new(out.clone())).event(e);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.strip_suffix('\n').expect("one line, ended").to_owned()
    }

    fn chain(parts: &[&str]) -> ErrorChain {
        ErrorChain(parts.iter().map(|s| s.to_string()).collect())
    }

    fn warning(w: Warning) -> Event {
        Event::Warning(w)
    }

    /// Every kind of event, with the line the terminal shows for it (the lines nicstorm has
    /// always printed: logs and the VM tests wait for them).
    #[test]
    fn plain_lines_of_every_event() {
        for (e, want) in &every_event() {
            assert_eq!(shown(e), *want, "{e:?}");
        }
    }

    /// Every kind of event (each step is in [`every_step`]), with its plain line; json.rs
    /// checks the same events against the schema of `--events-json`.
    pub(in crate::progress) fn every_event() -> Vec<(Event, &'static str)> {
        let label = "vmxnet3/bridge/fin/one/3000".to_owned();
        let finished = |end| Event::CellFinished {
            label: label.clone(),
            cell_id: "9548db1d503b".into(),
            repetition: 1,
            end,
        };
        let search = SearchDone {
            label: label.clone(),
            repetition: 2,
            param: "connections".into(),
            ok: "below",
            from: 2000,
            to: 30000,
            last_ok: Some(27000),
            first_fail: Some(30000),
            flapping: vec![],
            stop: Some("resolved".into()),
            steps: 6,
        };
        let cases: Vec<(Event, &'static str)> = vec![
            (
                Event::LabAccelerator { accel: "tcg".into(), reason: "no /dev/kvm".into() },
                "accelerator: tcg (no /dev/kvm)",
            ),
            (
                Event::ShardSelected { shard: "2/3".into(), selected: 3, total: 8 },
                "shard 2/3: 3 of 8 cells",
            ),
            (
                Event::RunStarted(RunStart {
                    run_id: "a1b2c3".into(),
                    matrix: PathBuf::from("matrix/ci-smoke.yaml"),
                    shard: Some("1/2".into()),
                    cells: 1,
                    repetitions: 1,
                    accel: "kvm".into(),
                    accel_reason: "probe boot ok".into(),
                    tcg: None,
                }),
                "nicstorm run a1b2c3: matrix matrix/ci-smoke.yaml shard 1/2 (1 cells x 1 repetitions), accelerator kvm: probe boot ok",
            ),
            (
                Event::RunStarted(RunStart {
                    run_id: "a1b2c3".into(),
                    matrix: PathBuf::from("m.yaml"),
                    shard: None,
                    cells: 2,
                    repetitions: 3,
                    accel: "tcg".into(),
                    accel_reason: "no kvm".into(),
                    tcg: Some(TcgCaps { connections: 30000, vcpus: 1 }),
                }),
                "nicstorm run a1b2c3: matrix m.yaml (2 cells x 3 repetitions), accelerator tcg: no kvm\n*** TCG: software emulation. Cells run at min(connections, tcg_connections = 30000) with 1 vCPU(s) per VM;\n*** rows say accel=tcg. Run on a KVM host for the full connection counts.",
            ),
            (
                Event::CellStarted {
                    index: 0,
                    total: 4,
                    label: label.clone(),
                    cell_id: "9548db1d503b".into(),
                    repetition: 1,
                },
                "[1/4] cell 9548db1d503b vmxnet3/bridge/fin/one/3000 (repetition 1)",
            ),
            (
                Event::CellSkipped { label: label.clone(), cell_id: "9548db1d503b".into(), target: 3000 },
                "skip cell 9548db1d503b vmxnet3/bridge/fin/one/3000: already in cells.csv at 3000 connections (use --force to rerun)",
            ),
            (
                Event::GuestReady { vm: "nicstorm-a1b2c3-server".into(), secs: 14.4 },
                "  nicstorm-a1b2c3-server ready after 14s",
            ),
            (
                Event::Ramp { clients: vec![1000, 900, 800], target: 3000, rate: 1234.4 },
                "  ramp 2700/3000 (1234/s) per client [1000, 900, 800]",
            ),
            (
                Event::RampEnded { peak: 3000, target: 3000, secs: 2.25, why: RampStop::Reached },
                "  ramp ended: 3000/3000 in 2.2s (target reached)",
            ),
            (
                Event::RampEnded {
                    peak: 10,
                    target: 3000,
                    secs: 61.0,
                    why: RampStop::Stalled(Duration::from_secs(60)),
                },
                "  ramp ended: 10/3000 in 61.0s (no progress for 60s)",
            ),
            (
                Event::RampEnded {
                    peak: 10,
                    target: 3000,
                    secs: 1800.0,
                    why: RampStop::Timeout(Duration::from_secs(1800)),
                },
                "  ramp ended: 10/3000 in 1800.0s (ramp timeout 1800s)",
            ),
            (
                Event::RampEnded {
                    peak: 0,
                    target: 3000,
                    secs: 1.0,
                    why: RampStop::ServerDown { domain: "nicstorm-a1b2c3-server".into() },
                },
                "  ramp ended: 0/3000 in 1.0s (domain nicstorm-a1b2c3-server stopped)",
            ),
            (
                Event::Observe {
                    at: 12.4,
                    window: 120.0,
                    ssh_ok: Some(false),
                    established: None,
                    hb_gap: Some(0.25),
                },
                "  observe 12/120s ssh=FAIL established=- heartbeat_gap=0.2s",
            ),
            (
                finished(CellEnd::Verdict {
                    verdict: Verdict::Ok,
                    peak: Some(3000),
                    target: Some(3000),
                    drain_seconds: Some(1.25),
                    reason: "recovered".into(),
                }),
                "  => vmxnet3/bridge/fin/one/3000: ok (peak 3000/3000, drain 1.2s, recovered)",
            ),
            (
                finished(CellEnd::Verdict {
                    verdict: Verdict::Hung,
                    peak: None,
                    target: Some(3000),
                    drain_seconds: None,
                    reason: "no heartbeat".into(),
                }),
                "  => vmxnet3/bridge/fin/one/3000: hung (peak -/3000, drain -, no heartbeat)",
            ),
            (
                finished(CellEnd::Error {
                    phase: Phase::Ramp,
                    error: chain(&["starting storm-load client on c1", "ssh: timeout"]),
                }),
                "  => vmxnet3/bridge/fin/one/3000: error in ramp: starting storm-load client on c1: ssh: timeout",
            ),
            (
                finished(CellEnd::Panicked { phase: Phase::Hold, panic: "boom".into() }),
                "  => vmxnet3/bridge/fin/one/3000: error in hold: nicstorm panicked in hold: boom (a bug: please report it with nicstorm.log)",
            ),
            (
                finished(CellEnd::Interrupted { signal: "SIGINT" }),
                "  => vmxnet3/bridge/fin/one/3000: interrupted by SIGINT",
            ),
            (
                finished(CellEnd::NotApplicable { reason: "vhost on: no vhost-net".into() }),
                "  => vmxnet3/bridge/fin/one/3000: not_applicable: vhost on: no vhost-net",
            ),
            (
                Event::SearchDone(search.clone()),
                "search vmxnet3/bridge/fin/one/3000 r2: ok up to 27000, failed at 30000 (stopped: resolved, after 6 steps)",
            ),
            (
                Event::SearchDone(SearchDone {
                    last_ok: None,
                    first_fail: None,
                    flapping: vec![5000],
                    stop: None,
                    ..search.clone()
                }),
                "search vmxnet3/bridge/fin/one/3000 r2: nothing ok, none failed up to 30000; ok again at [5000] (stopped: -, after 6 steps)",
            ),
            (
                Event::SearchDone(SearchDone {
                    param: "qemu_env.NICSTORM_VMNET_BURST:ok_above".into(),
                    ok: "above",
                    from: 16,
                    to: 4096,
                    last_ok: Some(256),
                    first_fail: Some(128),
                    ..search.clone()
                }),
                "search vmxnet3/bridge/fin/one/3000 r2: ok down to 256, failed at 128 (stopped: resolved, after 6 steps)",
            ),
            (
                Event::SearchDone(SearchDone {
                    param: "qemu_env.NICSTORM_VMNET_BURST:ok_above".into(),
                    ok: "above",
                    from: 16,
                    to: 4096,
                    last_ok: Some(16),
                    first_fail: None,
                    stop: Some("none_failed".into()),
                    ..search.clone()
                }),
                "search vmxnet3/bridge/fin/one/3000 r2: ok down to 16, none failed down to 16 (stopped: none_failed, after 6 steps)",
            ),
            (
                // Its far end ended in `error` again and again: nothing is known above 500.
                Event::SearchDone(SearchDone {
                    last_ok: Some(500),
                    first_fail: None,
                    stop: Some("retries".into()),
                    steps: 1,
                    ..search.clone()
                }),
                "search vmxnet3/bridge/fin/one/3000 r2: ok up to 500, no failure before it stopped (stopped: retries, after 1 steps)",
            ),
            (
                Event::RunFinished {
                    summary_table: "| table |".into(),
                    results: PathBuf::from("results/x/cells.csv"),
                    summary: PathBuf::from("results/x/summary.md"),
                    report: Err(chain(&["reading cells.csv", "gone"])),
                },
                "\n| table |\nresults: results/x/cells.csv\nsummary: results/x/summary.md\nreport:  not written: reading cells.csv: gone",
            ),
            (
                Event::RunTornDown,
                "interrupted: everything torn down; cells.csv holds the cells that finished; rerun to resume",
            ),
            (
                warning(Warning::Removed { resource: "domain nicstorm-a1b2c3-server".into(), sweep: Sweep::RunStart }),
                "  warning: removed leftover of an earlier run: domain nicstorm-a1b2c3-server",
            ),
            (
                warning(Warning::Removed { resource: "link nsta1b2c3b0".into(), sweep: Sweep::LabUp }),
                "  warning: removed leftover link nsta1b2c3b0",
            ),
            (
                warning(Warning::Removed { resource: "link nsta1b2c3b0".into(), sweep: Sweep::Interrupted }),
                "  warning: removed link nsta1b2c3b0",
            ),
            (
                warning(Warning::SlowDomainStart { secs: 45.0, cause: SlowStart::KvmMode(0o600) }),
                "  warning: starting a domain took 45.0s (expected well under 1 s); likely cause: /dev/kvm is mode 600 without group access, so libvirt distrusts its QEMU capability cache and re-probes QEMU on every start; scripts/setup-host.sh sets root:kvm 0660 as Debian's udev rule does",
            ),
            (
                warning(Warning::SlowStartsAhead { cause: SlowStart::Unknown }),
                "  warning: domain starts will take about a minute each: libvirt re-probing QEMU on every start (see `virt-admin daemon-log-filters 1:qemu.qemu_capabilities` and libvirtd's log)",
            ),
            (
                warning(Warning::LibvirtGone),
                "  warning: libvirtd does not answer (virsh -c qemu:///system version): start it (scripts/setup-host.sh), then rerun to resume; the cells that finished are kept",
            ),
            (
                warning(Warning::RunInterrupted { signal: "SIGTERM", run_id: "a1b2c3".into() }),
                "  warning: SIGTERM: run a1b2c3 interrupted; tearing down",
            ),
            (
                warning(Warning::LabInterrupted { signal: "SIGINT" }),
                "  warning: SIGINT: tearing the lab down",
            ),
            (
                warning(Warning::ProvisionCsv(chain(&["creating p.csv", "denied"]))),
                "  warning: creating p.csv: denied",
            ),
            (
                warning(Warning::TeardownLeft { resources: vec!["a".into(), "b".into()] }),
                "  warning: teardown after the error left a, b",
            ),
            (
                warning(Warning::LeftoverCheck(chain(&["libvirt gone"]))),
                "  warning: could not check for leftovers: libvirt gone",
            ),
            (
                warning(Warning::StallDiagnostics(chain(&["qmp", "eof"]))),
                "  warning: stall diagnostics: qmp: eof",
            ),
            (
                warning(Warning::SessionBroke { role: "client1".into(), error: chain(&["ssh", "eof"]) }),
                "  warning: client1: its SSH session broke while storm-load stopped (ssh: eof); it answers a new connection, so asking again over a new session",
            ),
        ];
        cases
    }

    /// Phase lines carry the seconds since the run began; each step has its words.
    #[test]
    fn plain_phase_lines() {
        for (step, want) in every_step() {
            let line = shown(&Event::Phase(step));
            let (words, t) = line.rsplit_once(" [t+").unwrap();
            assert_eq!(words, want);
            assert!(
                t.ends_with("s]") && t.trim_end_matches("s]").parse::<f64>().is_ok(),
                "{line}"
            );
        }
    }

    /// Every step of a phase, with its words.
    pub(in crate::progress) fn every_step() -> Vec<(Step, &'static str)> {
        let steps: Vec<(Step, &'static str)> = vec![
            (
                Step::Preflight { target: 3000, accel: "tcg".into() },
                "  preflight: target 3000 connections (tcg)",
            ),
            (
                Step::Provision {
                    nic: "vmxnet3".into(),
                    mode: "bridge".into(),
                    accel: "kvm".into(),
                    lab: "nicstorm-a1b2c3".into(),
                },
                "  provision: vmxnet3 x4, bridge network, kvm (nicstorm-a1b2c3)",
            ),
            (
                Step::Provisioned {
                    restored_from: None,
                    guests: 4,
                    boot_to_ssh: 14.44,
                    slowest_domain_start: 0.345,
                    driver: "vmxnet3".into(),
                    storm_load_saved: false,
                    ready_after: 15.06,
                },
                "  provision: 4 guests answered SSH 14.4s after provisioning began (slowest domain start 0.34s), eth0 driver vmxnet3 verified, storm-load pushed, ready 15.1s after",
            ),
            (
                Step::LabSaved { key: "0123456789abcdef".into(), seconds: 41.25 },
                "  provision: saved lab 0123456789abcdef: four guests booted to their hold point and saved in 41.2s; cells of this kind restore it",
            ),
            (
                Step::Provisioned {
                    restored_from: Some("0123456789abcdef".into()),
                    guests: 4,
                    boot_to_ssh: 4.5,
                    slowest_domain_start: 1.25,
                    driver: "vmxnet3".into(),
                    storm_load_saved: true,
                    ready_after: 4.56,
                },
                "  provision: 4 guests restored from saved lab 0123456789abcdef answered SSH 4.5s after provisioning began (slowest restore 1.25s), eth0 driver vmxnet3 and storm-load checked at the save, ready 4.6s after",
            ),
            (
                Step::Prepare { ports: 20000..=20019 },
                "  prepare: storm-load server on 20000-20019",
            ),
            (
                Step::Ramp { target: 3000, addr: "10.77.0.2".into(), ports: 20000..=20019 },
                "  ramp: 3000 connections to 10.77.0.2:20000-20019",
            ),
            (
                Step::Hold { baseline: Duration::from_secs(20) },
                "  hold: 20s baseline",
            ),
            (
                Step::Disconnect { method: "fin".into(), clients: vec!["client1".into(), "client2".into()] },
                "  disconnect: fin on client1,client2",
            ),
            (
                Step::StallDiagnostics { role: "server".into() },
                "  observe: SSH to server still down with its heartbeat alive: stall diagnostics",
            ),
            (
                Step::Teardown { lab: "nicstorm-a1b2c3".into() },
                "  teardown: nicstorm-a1b2c3",
            ),
        ];
        steps
    }

    /// Ramp and observe updates are thinned: the second within 5 s is not shown.
    #[test]
    fn plain_thins_updates() {
        let out = Captured::default();
        let plain = Plain::to(Box::new(out.clone()));
        let ramp = Event::Ramp {
            clients: vec![1, 2, 3],
            target: 9,
            rate: 1.0,
        };
        plain.event(&ramp);
        plain.event(&ramp);
        plain.event(&Event::RunTornDown);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    /// `-v` shows every update; `-q` hides a cell's progress and keeps how it ended.
    #[test]
    fn verbosity_shows_more_or_less() {
        let lines = |v: Verbosity, events: &[Event]| {
            let out = Captured::default();
            let plain = Plain::to(Box::new(out.clone())).with_verbosity(v);
            for e in events {
                plain.event(e);
            }
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            text.lines().count()
        };
        let ramp = Event::Ramp {
            clients: vec![1, 2, 3],
            target: 9,
            rate: 1.0,
        };
        assert_eq!(
            lines(Verbosity::Verbose(1), &[ramp.clone(), ramp.clone()]),
            2
        );
        let all: Vec<Event> = every_event().into_iter().map(|(e, _)| e).collect();
        let quiet = lines(Verbosity::Quiet, &all);
        let shown = all
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    Event::CellStarted { .. }
                        | Event::CellSkipped { .. }
                        | Event::GuestReady { .. }
                        | Event::Ramp { .. }
                        | Event::RampEnded { .. }
                        | Event::Observe { .. }
                )
            })
            .count();
        assert!(quiet < lines(Verbosity::Normal, &all));
        assert_eq!(
            lines(Verbosity::Quiet, &[Event::Phase(every_step().remove(0).0)]),
            0
        );
        assert!(quiet >= shown, "{quiet} < {shown}");
    }
}
