//! What the engine tells its reporters: each event is what happened, with its data. No event
//! carries a line of text made for one display; text.rs words them, and each reporter decides
//! what to show (plain lines, bars, or anything else that reads the data).
//!
//! Free text appears in two kinds of field only: names and values (a cell's label, a VM's
//! name, a resource the sweep removed, an accelerator), and texts the run records verbatim
//! elsewhere (a verdict's reason and a not-applicable reason are the row's `reason`/`error`,
//! the accelerator's reason is run.json's `accel_reason`, the summary table is the one
//! `nicstorm summary` prints, made by results/summary.rs for the terminal's width).
//! An error is an [`ErrorChain`]: the error and its causes, not a sentence.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use crate::model::phase::Phase;
use crate::model::verdict::Verdict;

/// Every event also serializes (`run --events-json`, json.rs), tagged by its kind in snake
/// case: `{"event": "cell_finished", "label": ..., "end": {"kind": "verdict", ...}}`.
/// docs/schemas/events.schema.json is the schema; durations are seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `nicstorm lab up` chose its accelerator.
    LabAccelerator {
        accel: String,
        reason: String,
    },
    /// `--shard K/N` selected `selected` of the plan's `total` cells.
    ShardSelected {
        /// The shard as written, `K/N`.
        shard: String,
        selected: usize,
        total: usize,
    },
    /// A run over a matrix begins: everything is ready and the first cell is next.
    RunStarted(RunStart),
    CellStarted {
        index: usize,
        total: usize,
        label: String,
        cell_id: String,
        repetition: u32,
    },
    /// The cell x repetition already has a row at `target` connections in cells.csv.
    CellSkipped {
        label: String,
        cell_id: String,
        target: u64,
    },
    /// A cell enters a phase (or a new step of one).
    Phase(Step),
    GuestReady {
        vm: String,
        secs: f64,
    },
    /// Per-client established counts and the total, with the total's rate.
    Ramp {
        clients: Vec<u64>,
        target: u64,
        rate: f64,
    },
    RampEnded {
        peak: u64,
        target: u64,
        secs: f64,
        why: RampStop,
    },
    Observe {
        at: f64,
        window: f64,
        ssh_ok: Option<bool>,
        established: Option<u64>,
        hb_gap: Option<f64>,
    },
    /// Exactly one per cell x repetition that started, on every path.
    CellFinished {
        label: String,
        cell_id: String,
        repetition: u32,
        end: CellEnd,
    },
    /// A breaking-point search of one cell and repetition ended.
    SearchDone(SearchDone),
    /// The run ended; where its results are.
    RunFinished {
        /// The summary as a terminal table (results/summary.rs `summarize_terminal`).
        /// Made for a terminal's width; not in the JSON (`nicstorm summary --json` has it).
        #[serde(skip)]
        summary_table: String,
        results: PathBuf,
        summary: PathBuf,
        /// report.html, or why it was not written.
        #[serde(serialize_with = "report_written")]
        report: Result<PathBuf, ErrorChain>,
    },
    /// A signal ended the run and everything of it is torn down.
    RunTornDown,
    Warning(Warning),
}

/// What a run is about to do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunStart {
    pub run_id: String,
    pub matrix: PathBuf,
    /// `K/N` when the run is one shard.
    pub shard: Option<String>,
    pub cells: usize,
    pub repetitions: u32,
    /// `kvm` or `tcg`, and why the probe chose it.
    pub accel: String,
    pub accel_reason: String,
    /// Under TCG: the caps every cell runs under.
    pub tcg: Option<TcgCaps>,
}

/// What TCG caps: connections at min(cell, `connections`), `vcpus` per VM.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TcgCaps {
    pub connections: u64,
    pub vcpus: u32,
}

/// How a breaking-point search ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchDone {
    pub label: String,
    pub repetition: u32,
    /// What the search varied: `connections`, or `qemu_env.NAME:ok_above` / `:ok_below`.
    pub param: String,
    /// The side of the breaking point the cell is ok on: `below` (connections) or `above`.
    pub ok: &'static str,
    /// The bottom of the search.
    pub from: u64,
    /// The top of the search (after the TCG cap).
    pub to: u64,
    pub last_ok: Option<u64>,
    pub first_fail: Option<u64>,
    /// Values that were ok at or beyond the first failure.
    pub flapping: Vec<u64>,
    /// Why it stopped, if it did: `resolved`, `step_limit`, `none_failed`, `failed_at_start`
    /// (the end expected ok failed), `retries`.
    pub stop: Option<String>,
    pub steps: u32,
}

/// The step a cell enters; each belongs to one phase ([`Step::phase`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The capacity check before anything boots.
    Preflight { target: u64, accel: String },
    /// Four domains of `nic` in a `mode` network, lab `lab`, are being created.
    Provision {
        nic: String,
        mode: String,
        accel: String,
        lab: String,
    },
    /// A lab of this cell's kind was booted to its hold point and saved (`lab_start:
    /// restore`, the first cell of its kind): cells of this kind restore it.
    LabSaved { key: String, seconds: f64 },
    /// Every guest answered SSH, its driver checked and storm-load in place.
    Provisioned {
        /// The saved lab the guests were restored from; None: they booted.
        restored_from: Option<String>,
        guests: usize,
        boot_to_ssh: f64,
        slowest_domain_start: f64,
        driver: String,
        /// storm-load came with the saved lab (checked before the save) instead of a push.
        storm_load_saved: bool,
        /// Seconds from the start of provisioning until every guest was ready.
        ready_after: f64,
    },
    /// The storm-load server starts on these ports.
    Prepare { ports: RangeInclusive<u16> },
    /// The clients open `target` connections to the server.
    Ramp {
        target: u64,
        addr: String,
        ports: RangeInclusive<u16>,
    },
    /// The baseline window with every connection up.
    Hold {
        #[serde(serialize_with = "seconds")]
        baseline: Duration,
    },
    /// `method` on these clients.
    Disconnect {
        method: String,
        clients: Vec<String>,
    },
    /// SSH to `role` is still down while its heartbeat flows: stall diagnostics run.
    StallDiagnostics { role: String },
    /// The lab is torn down.
    Teardown { lab: String },
}

impl Step {
    pub fn phase(&self) -> Phase {
        match self {
            Step::Preflight { .. } => Phase::Preflight,
            Step::Provision { .. } | Step::LabSaved { .. } | Step::Provisioned { .. } => {
                Phase::Provision
            }
            Step::Prepare { .. } => Phase::Prepare,
            Step::Ramp { .. } => Phase::Ramp,
            Step::Hold { .. } => Phase::Hold,
            Step::Disconnect { .. } => Phase::Disconnect,
            Step::StallDiagnostics { .. } => Phase::Observe,
            Step::Teardown { .. } => Phase::Teardown,
        }
    }
}

/// Why a ramp ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RampStop {
    Reached,
    /// The total did not grow for this long.
    Stalled(Duration),
    Timeout(Duration),
    /// The server's domain stopped.
    ServerDown {
        domain: String,
    },
}

/// How a cell x repetition ended: the one thing its `CellFinished` event carries.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellEnd {
    /// It ran; the verdict is a result (a hang included), with the row's figures.
    Verdict {
        verdict: Verdict,
        peak: Option<u64>,
        target: Option<u64>,
        drain_seconds: Option<f64>,
        /// The verdict's reason, as the row records it.
        reason: String,
    },
    /// The harness failed in `phase`.
    Error { phase: Phase, error: ErrorChain },
    /// nicstorm panicked in `phase` (a bug); `panic` is the panic's message.
    Panicked { phase: Phase, panic: String },
    /// A signal ended the run during this cell; it was torn down and has no row.
    Interrupted { signal: &'static str },
    /// This host cannot run the cell as asked; recorded, not run. `reason` is the row's.
    NotApplicable { reason: String },
}

/// Something a human should know that does not stop the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// A sweep removed something of nicstorm's.
    Removed { resource: String, sweep: Sweep },
    /// A sweep kept a lab's restore file it could not read or apply, and says why.
    Kept {
        file: std::path::PathBuf,
        why: String,
    },
    /// A libvirt domain start took `secs`.
    SlowDomainStart { secs: f64, cause: SlowStart },
    /// Every domain start of the run will be slow.
    SlowStartsAhead { cause: SlowStart },
    /// A cell failed and libvirtd does not answer.
    LibvirtGone,
    /// A signal interrupts run `run_id`.
    RunInterrupted {
        signal: &'static str,
        run_id: String,
    },
    /// A signal interrupts `lab up`.
    LabInterrupted { signal: &'static str },
    /// provision.csv could not be written.
    ProvisionCsv(ErrorChain),
    /// A cell that failed left these resources after its teardown.
    TeardownLeft { resources: Vec<String> },
    /// Whether a cell's teardown left anything could not be checked.
    LeftoverCheck(ErrorChain),
    /// Stall diagnostics failed.
    StallDiagnostics(ErrorChain),
    /// The packet ring of the server's tap could not be stopped or kept.
    Capture(ErrorChain),
    /// `role`'s SSH session broke while storm-load stopped, yet it answers a new connection.
    SessionBroke { role: String, error: ErrorChain },
}

/// When a sweep ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sweep {
    /// At the start of a run: leftovers of an earlier one.
    RunStart,
    /// At `lab up`.
    LabUp,
    /// After a signal ended a run.
    Interrupted,
}

/// The likely cause of slow libvirt domain starts (libvirt re-probing QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowStart {
    /// /dev/kvm has this mode, without group access.
    KvmMode(u32),
    /// No cause known on this host.
    Unknown,
}

/// An error and its causes, outermost first: what failed, as data.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorChain(pub Vec<String>);

impl From<&anyhow::Error> for ErrorChain {
    fn from(e: &anyhow::Error) -> Self {
        ErrorChain(e.chain().map(|c| c.to_string()).collect())
    }
}

/// `{"why": "stalled", "seconds": 60.0}`: a tuple variant has no field to carry the tag beside.
impl Serialize for RampStop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (why, seconds, domain) = match self {
            RampStop::Reached => ("reached", None, None),
            RampStop::Stalled(d) => ("stalled", Some(d.as_secs_f64()), None),
            RampStop::Timeout(d) => ("timeout", Some(d.as_secs_f64()), None),
            RampStop::ServerDown { domain } => ("server_down", None, Some(domain)),
        };
        let mut st = s.serialize_struct("RampStop", 3)?;
        st.serialize_field("why", why)?;
        if let Some(secs) = seconds {
            st.serialize_field("seconds", &secs)?;
        }
        if let Some(d) = domain {
            st.serialize_field("domain", d)?;
        }
        st.end()
    }
}

/// `{"message": "outer: cause", "chain": ["outer", "cause"]}`: the causes as data, and the
/// sentence a log would show.
impl Serialize for ErrorChain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ErrorChain", 2)?;
        st.serialize_field("message", &self.0.join(": "))?;
        st.serialize_field("chain", &self.0)?;
        st.end()
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// `{"path": ...}` or `{"error": ErrorChain}`.
fn report_written<S: Serializer>(r: &Result<PathBuf, ErrorChain>, s: S) -> Result<S::Ok, S::Error> {
    let mut st = s.serialize_struct("Report", 1)?;
    match r {
        Ok(p) => st.serialize_field("path", p)?,
        Err(e) => st.serialize_field("error", e)?,
    }
    st.end()
}
