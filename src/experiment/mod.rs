//! One cell, phase by phase (docs/EXPERIMENT.md "Phases of one cell"). This file holds what the phases
//! share and their sequence; each phase is a file named after it and returns a typed outcome,
//! and record.rs turns the outcomes into the row. A cell always ends in exactly one row and
//! one `CellFinished` event: a verdict, or an error naming the phase it happened in. The lab
//! guard tears down on every exit path, and the cell's tasks (stream tails, probes) are owned
//! by it, so dropping the cell (a signal) ends them too.

pub(crate) mod fault;
pub(crate) mod loadproto;
pub mod provision;
pub mod storm;

mod diagnose;
mod disconnect;
mod hold;
mod observe;
mod preflight;
mod prepare;
mod probes;
mod ramp;
mod record;
mod ring;
mod snapshot;
mod timeseries;
mod traffic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;

use crate::host::provenance::Versions;
use crate::host::HostInfo;
use crate::lab::accel::AccelChoice;
use crate::lab::image::Image;
use crate::lab::{self, LabSpec, Role};
use crate::matrix::plan::{Cell, Plan, Sizes};
use crate::model::names::RunId;
use crate::model::phase::Phase;
use crate::progress::{CellEnd, Event, Reporter, Step, Warning};
use crate::results::row::{RowEnd, RowIdentity};
use crate::results::CellRow;
use provision::Ready;

use preflight::not_applicable;
pub(crate) use preflight::HostFacts;

/// Everything a cell needs from the run around it.
pub(crate) struct CellContext<'a> {
    pub(crate) run_id: &'a RunId,
    pub(crate) plan: &'a Plan,
    pub(crate) cell: &'a Cell,
    pub(crate) repetition: u32,
    pub(crate) accel: &'a AccelChoice,
    pub(crate) image: &'a Image,
    pub(crate) storm_load: &'a Path,
    /// The QEMU binary of the cell's emulator and its environment.
    pub(crate) emulator: &'a crate::lab::emulator::Emulator,
    /// The passt of passt-mode cells (None when the run has none).
    pub(crate) passt: Option<&'a crate::lab::passt::Program>,
    pub(crate) cell_dir: PathBuf,
    pub(crate) versions: &'a Versions,
    pub(crate) host: &'a HostInfo,
    pub(crate) rep: &'a dyn Reporter,
    /// The phase the cell is in and when each began (for a panic's row: the runner reads
    /// it after unwinding; for phases.csv and what is placed in the phases later).
    pub(crate) phase: PhaseClock,
    /// How the lab came up, once provisioning ended (for a panic's row, as `phase` is: the
    /// cell's own outcomes are gone with its future).
    pub(crate) provisioned: std::sync::Mutex<Option<provision::Timings>>,
    /// `cell.resolve(accel, ..)`, resolved once by the runner.
    pub(crate) sizes: Sizes,
    /// The cell's search step, when it is one (the cell is then `Cell::at` the step's count).
    pub(crate) search_step: Option<u32>,
    /// Whether this host has /dev/vhost-net.
    pub(crate) vhost_net: bool,
}
/// The phases a cell entered, each with the host's wall clock (UNIX seconds) when it began.
#[derive(Debug)]
pub(crate) struct PhaseClock(std::sync::Mutex<Vec<(Phase, f64)>>);

impl Default for PhaseClock {
    fn default() -> Self {
        PhaseClock(std::sync::Mutex::new(vec![(Phase::Preflight, now_epoch())]))
    }
}

impl PhaseClock {
    fn marks(&self) -> std::sync::MutexGuard<'_, Vec<(Phase, f64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, phase: Phase) {
        let mut m = self.marks();
        if m.last().map(|(p, _)| *p) != Some(phase) {
            m.push((phase, now_epoch()));
        }
    }

    fn current(&self) -> Phase {
        self.marks().last().map_or(Phase::Preflight, |(p, _)| *p)
    }

    /// The phase the cell was in at `t` (host clock, UNIX seconds): the last one begun by
    /// then (preflight before the first mark).
    pub(crate) fn at(&self, t: f64) -> Phase {
        self.marks()
            .iter()
            .take_while(|(_, began)| *began <= t)
            .last()
            .map_or(Phase::Preflight, |(p, _)| *p)
    }

    /// When `phase` began, if the cell entered it.
    pub(crate) fn began(&self, phase: Phase) -> Option<f64> {
        self.marks()
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, t)| *t)
    }

    /// phases.csv: each phase the cell entered and when (UNIX seconds, host clock).
    pub(crate) fn csv(&self) -> String {
        let mut out = String::from("phase,started_at\n");
        for (p, t) in self.marks().iter() {
            out.push_str(&format!("{p},{t:.3}\n"));
        }
        out
    }
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl CellContext<'_> {
    /// Enters `step`'s phase: remembers it, says so, and gives the test-only fault hook its
    /// chance.
    pub(crate) fn enter(&self, step: Step) {
        self.mark(step.phase());
        self.rep.event(&Event::Phase(step));
    }

    /// Enters `phase` without an event of its own (provision sends its own).
    pub(crate) fn mark(&self, phase: Phase) {
        self.phase.enter(phase);
        crate::experiment::fault::hook(phase);
    }

    pub(crate) fn current_phase(&self) -> Phase {
        self.phase.current()
    }

    /// The row's identity and provenance, for a cell that started at `started` and ends now.
    fn identity(&self, started: chrono::DateTime<chrono::Utc>) -> record::Identity<'_> {
        record::Identity {
            row: RowIdentity {
                run_id: self.run_id.as_str(),
                cell: self.cell,
                repetition: self.repetition,
                search_step: self.search_step,
                accel: self.accel.accel,
                sizes: self.sizes,
            },
            started_at: started.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            versions: self.versions,
            emulator: self.emulator,
            passt: (self.cell.mode == crate::matrix::plan::NetMode::Passt)
                .then_some(self.passt)
                .flatten(),
            host: self.host,
            frames: self.plan.settings.frames,
        }
    }

    /// The cell's row (record.rs) and its one `CellFinished` event.
    fn finish(
        &self,
        started: chrono::DateTime<chrono::Utc>,
        out: &Outcomes,
        end: RowEnd,
        reason: &str,
    ) -> CellRow {
        let row = record::row(&self.identity(started), out, &end);
        self.rep.event(&Event::CellFinished {
            label: self.cell.label(),
            cell_id: self.cell.id.clone(),
            repetition: self.repetition,
            end: record::end_event(&end, &row, reason),
        });
        row
    }
}

/// Why a cell ended without a result: the harness failed in `phase`.
#[derive(Debug, thiserror::Error)]
#[error("{phase}: {source:#}")]
pub(crate) struct CellError {
    pub(crate) phase: Phase,
    #[source]
    pub(crate) source: anyhow::Error,
}

/// A guest's network died before observe: SSH to it fails while its domain runs. A result
/// about the NIC model, not a harness error: the cell ends with `client_dropped` (a client),
/// or `ssh_dropped` / `hung` (the server, by whether its heartbeat still flows).
#[derive(Debug, thiserror::Error)]
#[error("{role} lost its network: {reason}")]
pub(crate) struct NetworkLost {
    pub(crate) role: Role,
    pub(crate) reason: String,
    /// The guest's serial heartbeat arrived within the last hang_gap (server only).
    pub(crate) heartbeat_alive: bool,
}

/// Whether a guest that failed an SSH command has lost its network: its domain runs but a new
/// SSH connection to it fails too. Returns the error to end the cell with.
pub(crate) async fn network_lost(
    ready: &Ready,
    role: Role,
    failure: &anyhow::Error,
    hang_gap: Duration,
) -> Option<NetworkLost> {
    let vm = ready.lab.vm(role);
    if vm.check_running().is_err() {
        return None;
    }
    let ep = crate::lab::guest::Endpoint::of(vm, &ready.lab.key);
    let probe = crate::lab::guest::probe_new_connection(&ep, Duration::from_secs(20)).await;
    if probe.ok {
        return None;
    }
    // Its heartbeat log: a line within hang_gap means the guest itself still runs.
    let heartbeat_alive = std::fs::metadata(&vm.heartbeat_log)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < hang_gap);
    // passt mode: a passt that exited took the guest's network with it, whatever its NIC did.
    let passt = match ready.lab.passt_exit(role) {
        Some(status) => format!("; its passt had exited ({status}; see {role}.passt.log)"),
        None => String::new(),
    };
    Some(NetworkLost {
        role,
        reason: format!(
            "{failure:#}; a new SSH connection to it failed too (its domain runs, its heartbeat {}){passt}",
            if heartbeat_alive { "flows" } else { "stopped" }
        ),
        heartbeat_alive,
    })
}

/// Tags an error with the phase it happened in.
pub(crate) trait InPhase<T> {
    fn in_phase(self, phase: Phase) -> Result<T, CellError>;
}

impl<T, E: Into<anyhow::Error>> InPhase<T> for Result<T, E> {
    fn in_phase(self, phase: Phase) -> Result<T, CellError> {
        self.map_err(|e| CellError {
            phase,
            source: e.into(),
        })
    }
}

/// What the phases that ran returned; record.rs makes the row from it.
#[derive(Default)]
pub(crate) struct Outcomes {
    pub(crate) guest_kernel: Option<String>,
    pub(crate) provision: Option<provision::Timings>,
    /// vhost as the server's QEMU runs it (`Some(None)`: vhost does not apply).
    pub(crate) vhost_effective: Option<Option<crate::matrix::plan::Vhost>>,
    pub(crate) host_conntrack_max: Option<u64>,
    pub(crate) ramp: Option<ramp::RampOutcome>,
    pub(crate) hold: Option<hold::HoldOutcome>,
    pub(crate) disconnect: Option<disconnect::DisconnectOutcome>,
    pub(crate) observe: Option<observe::ObserveOutcome>,
    pub(crate) diagnosis: Option<diagnose::Diagnosis>,
    /// A guest lost its network in this phase, before observe.
    pub(crate) lost: Option<(Role, Phase)>,
    /// What the VMs' logs say, read after teardown.
    pub(crate) evidence: Option<Evidence>,
}

/// What the logs of a cell's VMs say about it: the guests' kernel signatures and the vmnet
/// model's account (read from files in the cell directory after teardown).
#[derive(Debug, Clone, Default)]
pub(crate) struct Evidence {
    /// `role:signature=count`, empty when no signature was seen.
    pub(crate) signatures: String,
    /// Signature lines in the server's console log; None when it could not be read.
    pub(crate) server_signature_lines: Option<u64>,
    /// The model's totals per VM before teardown (None: no model in that VM's QEMU).
    pub(crate) vmnet: Vec<(Role, Option<crate::host::vmnet::ModelTotals>)>,
    /// The phase the first refusal of any VM fell in.
    pub(crate) first_refusal_phase: Option<Phase>,
    /// The phase the server's first refusal fell in.
    pub(crate) server_first_refusal_phase: Option<Phase>,
}

/// Runs the cell and returns its row; sends its one `CellFinished` event. A cell this host
/// cannot run as asked is not run: its row says why.
pub(crate) async fn run_cell(ctx: &CellContext<'_>) -> CellRow {
    let started = chrono::Utc::now();
    if let Some(reason) = not_applicable(ctx.cell, ctx.accel.accel, ctx.vhost_net) {
        let end = RowEnd::NotApplicable { reason };
        return ctx.finish(started, &Outcomes::default(), end, "");
    }
    let sizes = ctx.sizes;
    let mut out = Outcomes::default();
    // The host's kernel log from here on (None: it cannot be read; the cell goes on).
    let mut host_log = crate::host::kmsg::KernelLog::open_at_end()
        .map_err(|e| {
            tracing::warn!("{e:#}: the host's kernel log is not read for this cell");
        })
        .ok();
    // A restored lab's names are the saved one's (sequence sets them): libvirt restores a
    // domain under the name it was saved with.
    let mut lab_id = RunId::new();
    let mut end = sequence(ctx, &sizes, &mut lab_id, &mut out).await;
    // Whatever way the lab ended (a provisioning failure included), what its VMs logged.
    if ctx.cell_dir.is_dir() {
        keep_qemu_logs(ctx, &lab_id);
        keep_signatures(ctx, &mut out, host_log.as_mut());
    }
    // The lab (inside `sequence`) is gone by now; anything left with its prefix is a bug.
    match lab::survivors(&lab_id) {
        Ok(left) if left.is_empty() => {}
        Ok(left) if end.is_ok() => {
            end = Err(CellError {
                phase: Phase::Teardown,
                source: anyhow::anyhow!("teardown left {}", left.join(", ")),
            })
        }
        Ok(left) => ctx
            .rep
            .event(&Event::Warning(Warning::TeardownLeft { resources: left })),
        Err(e) => ctx
            .rep
            .event(&Event::Warning(Warning::LeftoverCheck((&e).into()))),
    }
    let (end, reason) = match end {
        Ok(v) => (
            RowEnd::Measured {
                verdict: v.verdict,
                recovery_seconds: v.recovery_seconds,
            },
            v.reason,
        ),
        Err(e) => (
            RowEnd::Failed {
                phase: e.phase,
                message: format!("{:#}", e.source),
            },
            String::new(),
        ),
    };
    ctx.finish(started, &out, end, &reason)
}

/// The row of a cell whose future panicked (the runner catches it): a panic inside a phase is
/// a bug, but it must not lose the run. The lab's guard tore the lab down while the panic
/// unwound; the cell becomes an error row naming the phase, with how its lab came up (if
/// provisioning ended) and its one end event.
pub(crate) fn panicked(ctx: &CellContext<'_>, panic: Box<dyn std::any::Any + Send>) -> CellRow {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into());
    let phase = ctx.current_phase();
    let message =
        format!("nicstorm panicked in {phase}: {what} (a bug: please report it with nicstorm.log)");
    let end = RowEnd::Failed { phase, message };
    // What the runner still knows: how the lab came up, if provisioning ended.
    let out = Outcomes {
        provision: ctx
            .provisioned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        ..Outcomes::default()
    };
    let row = record::row(&ctx.identity(chrono::Utc::now()), &out, &end);
    ctx.rep.event(&Event::CellFinished {
        label: ctx.cell.label(),
        cell_id: ctx.cell.id.clone(),
        repetition: ctx.repetition,
        end: CellEnd::Panicked { phase, panic: what },
    });
    row
}

/// The end of a cell that a signal interrupted (its future was dropped, which tore its lab
/// down): its one end event, and no row: the cell did not finish, and a rerun runs it.
pub(crate) fn interrupted(ctx: &CellContext<'_>, signal: &'static str) {
    ctx.rep.event(&Event::CellFinished {
        label: ctx.cell.label(),
        cell_id: ctx.cell.id.clone(),
        repetition: ctx.repetition,
        end: CellEnd::Interrupted { signal },
    });
}

/// The phases in order. Errors carry their phase; the lab is torn down on every path.
async fn sequence(
    ctx: &CellContext<'_>,
    sizes: &Sizes,
    lab_id: &mut RunId,
    out: &mut Outcomes,
) -> Result<crate::model::verdict::Outcome, CellError> {
    let s = &ctx.plan.settings;
    let cell = ctx.cell;
    let accel = ctx.accel.accel;
    ctx.enter(Step::Preflight {
        target: sizes.target,
        accel: accel.to_string(),
    });
    preflight::check(cell, sizes, s, &HostFacts::read())
        .map_err(anyhow::Error::msg)
        .in_phase(Phase::Preflight)?;
    std::fs::create_dir_all(&ctx.cell_dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", ctx.cell_dir.display()))
        .in_phase(Phase::Preflight)?;

    let spec = LabSpec {
        nic: cell.nic,
        vhost: cell.vhost,
        mode: cell.mode,
        accel,
        vcpus: sizes.vcpus,
        server_mib: sizes.server_mib,
        client_mib: sizes.client_mib,
        ports: s.ports,
        log_dir: ctx.cell_dir.clone(),
        emulator: ctx.emulator.binary.clone(),
        qemu_env: ctx.emulator.env.clone(),
        frames: s.frames,
        passt: ctx.passt.cloned(),
        lab_start: s.lab_start,
        storm_load: ctx.storm_load.to_path_buf(),
    };
    if s.lab_start == crate::matrix::plan::LabStart::Restore {
        *lab_id = lab::saved::lab_id(&spec, ctx.image).in_phase(Phase::Provision)?;
    }
    let lab_id: &RunId = lab_id;
    ctx.mark(Phase::Provision);
    let mut ready = provision::provision(lab_id, &spec, ctx.image, s.boot_timeout, ctx.rep)
        .await
        .in_phase(Phase::Provision)?;
    out.guest_kernel = ready.guest_kernel.clone();
    out.provision = Some(ready.timings.clone());
    *ctx.provisioned.lock().unwrap_or_else(|p| p.into_inner()) = out.provision.clone();
    out.vhost_effective = Some(
        preflight::verify_running(cell, &ready, ctx.emulator)
            .map_err(anyhow::Error::msg)
            .in_phase(Phase::Provision)?,
    );
    let guest_side = preflight::verify_frames(s.frames, &ready)
        .map_err(anyhow::Error::msg)
        .in_phase(Phase::Provision)?;
    prepare::segmentation_off(&ready, &guest_side)
        .await
        .in_phase(Phase::Provision)?;
    // The setting, or the accelerator's default (off under TCG, on-loss under KVM).
    let when = s.capture.when(accel);
    if let Some(why) = ring::unavailable(when, cell.mode) {
        let _ = std::fs::write(ctx.cell_dir.join("capture.txt"), why);
    }
    // Declared after `ready`, so on an early return it stops before the lab is torn down.
    let capture = ring::start(when, s.capture, cell.mode, &ready)
        .await
        .map_err(|e| {
            e.context("the packet ring of the server's tap (settings.capture: off runs none)")
        })
        .in_phase(Phase::Provision)?;

    let result = measure(ctx, sizes, &mut ready, out).await;
    let verdict = result.as_ref().ok().map(|o| o.verdict);
    ring::finish(ctx, capture, ring::keep(when, verdict, out.lost.is_some()));
    keep_dmesg(ctx, &ready).await;
    ctx.enter(Step::Teardown { lab: lab_id.tag() });
    let Ready {
        mut lab, guests, ..
    } = ready;
    drop(guests);
    let torn = lab.teardown().in_phase(Phase::Teardown);
    let verdict = result?;
    torn?;
    Ok(verdict)
}

/// prepare, ramp, hold, disconnect, observe.
async fn measure(
    ctx: &CellContext<'_>,
    sizes: &Sizes,
    ready: &mut Ready,
    out: &mut Outcomes,
) -> Result<crate::model::verdict::Outcome, CellError> {
    let mut prepared = match prepare::run(ctx, sizes, ready).await {
        Ok(p) => p,
        Err(e) => {
            // A guest whose network died while the server was set up is a result too (a
            // refusing backend can take it down this early), not a harness error.
            for role in Role::ALL {
                if let Some(lost) = network_lost(ready, role, &e, ctx.plan.settings.hang_gap).await
                {
                    out.lost = Some((lost.role, Phase::Prepare));
                    return Ok(lost_verdict(&lost, Phase::Prepare));
                }
            }
            return Err(CellError {
                phase: Phase::Prepare,
                source: e,
            });
        }
    };
    out.host_conntrack_max = prepared.host_conntrack_max;
    let early =
        |e: anyhow::Error, phase: Phase, out: &mut Outcomes| match e.downcast::<NetworkLost>() {
            Ok(lost) => {
                let verdict = lost_verdict(&lost, phase);
                out.lost = Some((lost.role, phase));
                Ok(verdict)
            }
            Err(e) => Err(CellError { phase, source: e }),
        };
    let verdict = 'measured: {
        let ramp = match ramp::run(ctx, sizes, ready, &mut prepared).await {
            Ok(r) => r,
            Err(e) => break 'measured early(e, Phase::Ramp, out)?,
        };
        out.ramp = Some(ramp.clone());
        let hold = match hold::run(ctx, ready, &mut prepared).await {
            Ok(h) => h,
            Err(e) => break 'measured early(e, Phase::Hold, out)?,
        };
        out.hold = Some(hold.clone());
        let disc = match disconnect::run(ctx, ready, &mut prepared).await {
            Ok(d) => d,
            Err(e) => break 'measured early(e, Phase::Disconnect, out)?,
        };
        out.disconnect = Some(disc.clone());
        let observed = observe::run(ctx, sizes, ready, &mut prepared, &ramp, &hold, &disc)
            .await
            .in_phase(Phase::Observe)?;
        let verdict = observed.outcome.clone();
        out.observe = Some(observed);
        verdict
    };
    // A network-only failure still there at the end: what it looks like, and what revives it.
    // (The server, or the client whose network died before observe.)
    let stalled = match (verdict.verdict, out.lost) {
        (crate::model::verdict::Verdict::SshDropped, _) if verdict.recovery_seconds.is_none() => {
            Some(Role::Server)
        }
        (crate::model::verdict::Verdict::ClientDropped, Some((role, _))) => Some(role),
        _ => None,
    };
    if let Some(role) = stalled {
        ctx.enter(Step::StallDiagnostics {
            role: role.to_string(),
        });
        match diagnose::run(ready, role, &ctx.cell_dir).await {
            Ok(d) => out.diagnosis = Some(d),
            Err(e) => ctx
                .rep
                .event(&Event::Warning(Warning::StallDiagnostics((&e).into()))),
        }
    }
    std::fs::write(
        ctx.cell_dir.join("verdict.txt"),
        format!("{}\n{}\n", verdict.verdict, verdict.reason),
    )
    .map_err(|e| anyhow::anyhow!("writing verdict.txt: {e}"))
    .in_phase(Phase::Observe)?;
    Ok(verdict)
}

/// The verdict of a guest that lost its network before observe, in `phase` (the run's phase
/// when a command to it failed: a guest lost at the disconnect says so, not "before" it).
fn lost_verdict(lost: &NetworkLost, phase: Phase) -> crate::model::verdict::Outcome {
    use crate::model::verdict::Verdict;
    let verdict = match (lost.role, lost.heartbeat_alive) {
        (Role::Client(_), _) => Verdict::ClientDropped,
        (Role::Server, true) => Verdict::SshDropped,
        (Role::Server, false) => Verdict::Hung,
    };
    crate::model::verdict::Outcome {
        verdict,
        recovery_seconds: None,
        max_heartbeat_gap: None,
        ssh_max: None,
        probe_failures: 0,
        reason: format!("in the {phase} phase, {lost}"),
    }
}

/// QEMU's own log of each VM (stderr through libvirt), into the cell directory as
/// `<role>.qemu.log`: an emulator recipe reports there (the vmnet model's refusals and totals).
/// Only the last QEMU's part: libvirt appends every start of a domain name to one file, and
/// restored labs of one kind (and the lab saved for them) share their names.
fn keep_qemu_logs(ctx: &CellContext<'_>, lab_id: &RunId) {
    for role in Role::ALL {
        let log = Path::new("/var/log/libvirt/qemu")
            .join(format!("{}.log", lab_id.domain(&role.to_string())));
        if let Ok(text) = std::fs::read(&log) {
            let _ = std::fs::write(
                ctx.cell_dir.join(format!("{role}.qemu.log")),
                last_qemu_start(&text),
            );
        }
    }
}

/// The part of a libvirt QEMU log from its last "starting up" header on (all of it when it
/// has none).
fn last_qemu_start(log: &[u8]) -> &[u8] {
    const HEADER: &[u8] = b": starting up libvirt version:";
    let Some(at) = log.windows(HEADER.len()).rposition(|w| w == HEADER) else {
        return log;
    };
    // From the start of the header's line.
    let line = log[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    &log[line..]
}

/// The kernel log signatures (host/signatures.rs): the guests', read from their console logs,
/// which a dead network does not stop, and the host's, read from its kernel log over the cell
/// (role `host`; its matching lines are kept in host.kmsg.txt). signatures.csv has the first
/// line of each placed relative to the disconnect (through a guest's heartbeat clock, or the
/// host's own clocks); and phases.csv.
fn keep_signatures(
    ctx: &CellContext<'_>,
    out: &mut Outcomes,
    host_log: Option<&mut crate::host::kmsg::KernelLog>,
) {
    let dir = &ctx.cell_dir;
    let mut seen = vec![];
    let mut offsets = std::collections::BTreeMap::new();
    for role in Role::ALL {
        let name = role.to_string();
        let console = dir.join(format!("{name}.console.log"));
        if let Some(off) = heartbeat_offset(&dir.join(format!("{name}.heartbeat.log"))) {
            offsets.insert(name.clone(), off);
        }
        seen.push((name, crate::host::signatures::scan_file(&console, false)));
    }
    let host = host_log.and_then(|log| match log.read_new() {
        Ok(since) => Some(since),
        Err(e) => {
            tracing::warn!("{e:#}: the host's kernel log is not read for this cell");
            None
        }
    });
    if let Some(since) = &host {
        offsets.insert("host".to_string(), crate::host::kmsg::wall_minus_kernel());
        let lines: String = since
            .text
            .lines()
            .filter(|l| crate::host::signatures::classify(l, true).is_some())
            .map(|l| format!("{l}\n"))
            .collect();
        let note = if since.overrun {
            "# the kernel's buffer overran the reader: records of this cell were lost before they were read\n"
        } else {
            ""
        };
        if !lines.is_empty() || since.overrun {
            let _ = std::fs::write(dir.join("host.kmsg.txt"), format!("{note}{lines}"));
        }
    }
    seen.push((
        "host".to_string(),
        host.map(|since| crate::host::signatures::scan(&since.text, true)),
    ));
    let table = crate::host::signatures::table(&seen, &offsets, ctx.phase.began(Phase::Disconnect));
    let _ = std::fs::write(dir.join("signatures.csv"), table);
    let _ = std::fs::write(dir.join("phases.csv"), ctx.phase.csv());
    // The model's account up to the teardown (the teardown itself flushes and closes).
    let until = ctx.phase.began(Phase::Teardown).unwrap_or(f64::INFINITY);
    let vmnet: Vec<_> = Role::ALL
        .iter()
        .map(|r| {
            let log = dir.join(format!("{r}.qemu.log"));
            (*r, crate::host::vmnet::parse_file_until(&log, until))
        })
        .collect();
    let first = vmnet
        .iter()
        .filter_map(|(_, m)| m.and_then(|m| m.first_refusal))
        .reduce(f64::min);
    let server_first = vmnet
        .iter()
        .find(|(r, _)| *r == Role::Server)
        .and_then(|(_, m)| m.and_then(|m| m.first_refusal));
    out.evidence = Some(Evidence {
        signatures: crate::host::signatures::summary(&seen),
        server_signature_lines: seen
            .first()
            .and_then(|(_, s)| s.as_ref())
            .map(|s| s.counts.values().map(|f| f.count).sum()),
        vmnet,
        first_refusal_phase: first.map(|t| ctx.phase.at(t)),
        server_first_refusal_phase: server_first.map(|t| ctx.phase.at(t)),
    });
}

/// The guest's wall clock minus its kernel's uptime, from its last heartbeat line (both are
/// in every line), so a kernel timestamp can be placed on the host's clock.
fn heartbeat_offset(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find_map(|l| crate::host::heartbeat::parse(l)?.ok())
        .map(|b| b.t - b.up)
}

/// Keeps what each guest's kernel said, while SSH may still answer (bounded, in parallel).
async fn keep_dmesg(ctx: &CellContext<'_>, ready: &Ready) {
    let gone = disconnect::unreachable_after(ctx.cell);
    let dmesgs = join_all(ready.guests.iter().filter(|g| !gone.contains(&g.role)).map(
        |g| async move {
            let text =
                tokio::time::timeout(Duration::from_secs(15), g.sh("dmesg | tail -n 300")).await;
            (g.role, text)
        },
    ))
    .await;
    for (role, text) in dmesgs {
        if let Ok(Ok(text)) = text {
            let _ = std::fs::write(ctx.cell_dir.join(format!("{role}.dmesg.txt")), text);
        }
    }
}

/// The clients a cell disconnects.
pub(crate) fn disconnected(scope: crate::matrix::plan::Scope) -> Vec<Role> {
    match scope {
        crate::matrix::plan::Scope::One => vec![Role::Client(1)],
        crate::matrix::plan::Scope::All => vec![Role::Client(1), Role::Client(2), Role::Client(3)],
    }
}

#[cfg(test)]
mod qemu_log_tests {
    #[test]
    fn only_the_last_qemu_start_is_kept() {
        let log = b"2026-12-07 14:48:52.471+0000: starting up libvirt version: 9.0.0\nfinal=1 refused=7\n2026-12-07 14:50:01.002+0000: starting up libvirt version: 9.0.0\nthis cell\n";
        assert_eq!(
            super::last_qemu_start(log),
            b"2026-12-07 14:50:01.002+0000: starting up libvirt version: 9.0.0\nthis cell\n"
        );
        assert_eq!(super::last_qemu_start(b"no header\n"), b"no header\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Event;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);
    impl Reporter for Recorder {
        fn event(&self, e: &Event) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    /// A cell that fails (here: preflight refuses 4096 vCPUs per VM on any real host) ends in
    /// one row with the phase, and exactly one end event carrying the same.
    #[tokio::test]
    async fn a_failed_cell_has_one_end_event_and_its_phase() {
        let plan = crate::matrix::plan::parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000], vcpus: [4096]}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let image = Image {
            dir: "/nonexistent".into(),
            kernel: "/nonexistent/vmlinuz".into(),
            initrd: "/nonexistent/initrd.img".into(),
            rootfs: "/nonexistent/rootfs.qcow2".into(),
            guest_kernel: None,
            recipe_hash: None,
        };
        let rec = Recorder::default();
        let dir = std::env::temp_dir().join(format!("nicstorm-cell-test-{}", std::process::id()));
        let ctx = CellContext {
            run_id: &RunId::parse("a1b2c3").unwrap(),
            plan: &plan,
            cell: &plan.cells[0],
            repetition: 1,
            accel: &AccelChoice {
                accel: crate::matrix::plan::Accel::Kvm,
                reason: "test".into(),
            },
            image: &image,
            storm_load: Path::new("/nonexistent/storm-load"),
            emulator: &crate::lab::emulator::Emulator::system(),
            passt: None,
            cell_dir: dir.clone(),
            versions: &Versions::default(),
            host: &HostInfo::read(),
            rep: &rec,
            phase: PhaseClock::default(),
            provisioned: Default::default(),
            sizes: plan.cells[0].resolve(crate::matrix::plan::Accel::Kvm, &plan.settings),
            search_step: None,
            vhost_net: false,
        };
        let row = run_cell(&ctx).await;
        assert_eq!(row.verdict, crate::model::verdict::Verdict::Error);
        assert_eq!(row.error_phase, Some(Phase::Preflight.into()));
        assert!(
            row.error.as_deref().unwrap().contains("4096 vCPUs per VM"),
            "{row:?}"
        );
        let ends: Vec<CellEnd> = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::CellFinished { end, .. } => Some(end.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert!(
            matches!(&ends[0], CellEnd::Error { phase: Phase::Preflight, error } if error.to_string().contains("4096")),
            "{ends:?}"
        );
        assert!(!dir.exists(), "nothing created before preflight passed");

        // A panic after provisioning: its row keeps how the lab came up (the fault suite's
        // panic test reads `lab_start` from such a row).
        *ctx.provisioned.lock().unwrap() = Some(provision::Timings {
            vms: vec![],
            boot_to_ssh: 9.5,
            domain_start_max: 0.3,
            restored_from: Some("0123456789abcdef".into()),
        });
        ctx.mark(Phase::Hold);
        let row = panicked(&ctx, Box::new("boom"));
        assert_eq!(row.error_phase, Some(Phase::Hold.into()));
        assert!(row.error.as_deref().unwrap().contains("boom"), "{row:?}");
        assert_eq!(row.lab_start.as_deref(), Some("restored"));
        assert_eq!(row.lab_key.as_deref(), Some("0123456789abcdef"));
        assert_eq!(row.boot_to_ssh_seconds, Some(9.5));
    }
}
