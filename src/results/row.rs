//! The row: one cell x repetition of cells.csv (`CellRow`), typed; the axes of its cell
//! (`Axes`), the host class it ran on, and its CSV text (the header, one line).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::matrix::plan::{
    Accel, Cell, DisconnectMethod, EmulatorName, NetMode, NicModel, Scope, Sizes, Traffic, Vhost,
};
use crate::model::named::Named;
use crate::model::phase::Phase;
use crate::model::verdict::Verdict;

/// One cell x repetition. Columns are the field names, in this order; every
/// measurement is an `Option` so a failed one is an empty field, never 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellRow {
    pub run_id: String,
    pub cell_id: String,
    /// 1-based.
    pub repetition: u32,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    pub nic: Named<NicModel>,
    pub mode: Named<NetMode>,
    /// "on", "off" or "n/a" (`None`).
    pub vhost: Named<Option<Vhost>>,
    /// Emulator axis: "system" (the host's qemu-system-x86_64) or an emulators/ recipe name.
    /// Empty in rows migrated from builds before the axis, which all ran "system".
    pub qemu: Named<EmulatorName>,
    /// What else flows during the disconnect besides the storm ("none" by default; empty in
    /// migrated rows, which had none).
    pub traffic: Named<Traffic>,
    pub disconnect: Named<DisconnectMethod>,
    pub scope: Named<Scope>,
    /// Requested connections (the cell's KVM target).
    pub connections: u64,
    /// The breaking-point search this row is a step of (empty: not a search step).
    pub search_id: Option<String>,
    /// 1-based step of that search.
    pub search_step: Option<u32>,
    /// "kvm" or "tcg"; empty when the run failed before the probe decided.
    pub accel: Option<Named<Accel>>,
    /// Connections actually aimed for under `accel`.
    pub target: Option<u64>,
    pub vcpus: Option<u32>,
    pub server_memory_mib: Option<u64>,
    pub client_memory_mib: Option<u64>,
    /// vhost as read from the running server QEMU ("on", "off"; "n/a" where it does not apply).
    pub vhost_effective: Option<Named<Option<Vhost>>>,
    /// Slowest of the four domains' libvirt define+start call (seconds).
    pub domain_start_max_seconds: Option<f64>,
    /// From the first domain start until all four guests answered SSH (seconds).
    pub boot_to_ssh_seconds: Option<f64>,
    pub peak_established: Option<u64>,
    pub ramp_seconds: Option<f64>,
    pub ramp_rate: Option<f64>,
    pub connect_errors: Option<u64>,
    /// "ECONNREFUSED=3;ETIMEDOUT=1".
    pub errors_by_errno: Option<String>,
    pub kill_spread_seconds: Option<f64>,
    pub drain_seconds: Option<f64>,
    /// Connections of the disconnected client(s) still established on the server when the
    /// observe window ended (0 = fully drained).
    pub undrained_connections: Option<u64>,
    pub ssh_baseline_seconds: Option<f64>,
    pub ssh_max_seconds: Option<f64>,
    pub ssh_probe_failures: Option<u64>,
    pub ssh_dropped: Option<bool>,
    pub session_dropped: Option<bool>,
    pub heartbeat_max_gap_seconds: Option<f64>,
    pub peak_softirq_pct: Option<f64>,
    pub peak_load1: Option<f64>,
    pub min_memavail_mib: Option<u64>,
    pub peak_vcpu_pct: Option<f64>,
    pub host_conntrack_max: Option<u64>,
    pub host_conntrack_peak: Option<u64>,
    /// This and the next four: growth from the end of hold to the end of observe of five
    /// counters that explain connections that do not drain (counters.rs; every counter that
    /// moved is in the cell's counters.csv). Sockets the disconnected clients' kernels
    /// killed with a single RST (orphan or memory limit).
    pub clients_tcp_abort_on_memory: Option<u64>,
    /// Frames the host dropped on the server's tap (the device model did not take them).
    pub server_tap_tx_dropped: Option<u64>,
    /// Frames the server's device model took from its tap but its driver never counted:
    /// tap tx_packets - guest eth0 rx_packets (a few frames of read skew either way).
    pub server_device_lost: Option<u64>,
    /// Frames the server's NIC driver dropped on receive.
    pub server_eth0_rx_dropped: Option<u64>,
    /// Host conntrack drop + early_drop + insert_failed.
    pub host_conntrack_drops: Option<u64>,
    /// Where a network-only stall sat, from the device's state over QMP: rx, tx or none.
    pub stall_side: Option<String>,
    /// The recovery action after which SSH answered again (stall diagnostics), or "none".
    pub recovered_by: Option<String>,
    /// ok, ssh_slow, ssh_dropped, hung, crashed, not_reached, error, not_applicable
    /// (verdict.rs owns the set). An `error` row does not complete its cell: a rerun retries it.
    pub verdict: Named<Verdict>,
    pub recovery_seconds: Option<f64>,
    /// Infrastructure error message; empty when none.
    pub error: Option<String>,
    /// The phase an `error` row failed in (preflight, provision, prepare, ramp, hold,
    /// disconnect, observe, teardown).
    pub error_phase: Option<Named<Phase>>,
    pub nicstorm_version: String,
    pub qemu_version: Option<String>,
    pub libvirt_version: Option<String>,
    pub host_kernel: Option<String>,
    pub guest_kernel: Option<String>,
    /// Hash of the emulators/ recipe the cell ran on (empty for the system QEMU).
    pub emulator_recipe_hash: Option<String>,
    /// Where the row was measured: host name, CPU model, online CPUs, memory.
    pub host_name: Option<String>,
    pub host_cpu: Option<String>,
    pub host_cores: Option<u32>,
    pub host_memory_mib: Option<u64>,
    // 2026-12-07: when and where a network was lost, the vmnet model's own account, the
    // guests' kernel log signatures.
    /// The phase in which the run first saw a guest's network lost (ramp, hold, disconnect,
    /// or observe: at or after the disconnect); empty when none was.
    pub lost_phase: Option<Named<Phase>>,
    /// Whose network: server or clientN (empty when the observe phase did not say which).
    pub lost_role: Option<String>,
    /// The vmnet model's refusals before teardown: on the server, and summed over the clients
    /// (empty when the cell's emulator has no model).
    pub vmnet_refused_server: Option<u64>,
    pub vmnet_refused_clients: Option<u64>,
    /// The phase of the first refusal on any VM.
    pub vmnet_first_refusal_phase: Option<Named<Phase>>,
    /// Flushes of the server's queue after a refusal, before teardown (by the retry timer,
    /// or in disable mode by net core): 0 means it never received again.
    pub vmnet_flushes_server: Option<u64>,
    /// The largest frame any VM's backend accepted, bytes (a TSO super-frame when > 1514).
    pub vmnet_largest_frame: Option<u64>,
    /// The guests' kernel log signatures, `role:signature=count` (signatures.csv has times).
    pub kernel_signatures: Option<String>,
    /// How many signature lines the server's kernel printed (0 when its console log was read
    /// and had none).
    pub server_signature_lines: Option<u64>,
    /// `settings.frames`: `tso` (as libvirt sets the NIC up) or `mtu` (offloads off).
    pub frames: Option<Named<crate::matrix::plan::Frames>>,
    /// QEMU's environment (settings.qemu_env of the cell's `qemu` value; of a sweep, the
    /// cell's point) as `NAME=value;NAME=value`; empty when QEMU had none.
    pub qemu_env: Option<String>,
    /// The phase of the server's first refusal (the seed's signature is a first refusal of
    /// the server at the disconnect; `vmnet_first_refusal_phase` may be a client's).
    pub vmnet_server_first_refusal_phase: Option<Named<Phase>>,
    /// What the row's search varies: `connections`, or `qemu_env.NAME:ok_above` (or
    /// `:ok_below`); empty when the row is no search step (and in search steps written before
    /// the column, which all varied connections).
    pub search_param: Option<String>,
    /// passt mode: the passt the VMs' NICs were on, `NAME VERSION` (`system
    /// 0.0~git20230309.7c7625d-1`, `trixie 0.0~git20250503.587980c-2+deb13u1`); empty in
    /// other modes and in rows written before the column.
    pub passt: Option<String>,
    /// How the cell's lab came up: `booted`, or `restored` from a saved lab
    /// (`settings.lab_start: restore`); empty when provisioning did not get that far and in
    /// rows written before the column (which all booted).
    pub lab_start: Option<String>,
    /// The key of the saved lab a restored lab came from (lab/saved.rs); empty when booted.
    pub lab_key: Option<String>,
    /// A client's ramp rate as it timed it: its connections over its own seconds to its
    /// share (storm-load's `reached` line), the mean over the clients. `ramp_rate` is the
    /// server's peak over the host's ramp time, which moves in 250 ms steps; this does not,
    /// but it is no share of the server's rate (the clients start one after another). Empty
    /// unless every client reached its share, and in rows written before the column.
    pub client_ramp_rate: Option<f64>,
}

impl CellRow {
    /// What this row's search varies (None: no search step, or a `search_param` this build
    /// cannot read).
    pub(crate) fn searched(&self) -> Option<crate::matrix::search::Searched> {
        self.search_id.as_ref()?;
        crate::matrix::search::Searched::parse_column(self.search_param.as_deref())
    }

    /// This row as a step of its search: the value that ran and how it counts (None when the
    /// row is no step or the value cannot be read). See [`CellRow::search_step_of`].
    pub(crate) fn search_step(&self) -> Option<(u64, crate::matrix::search::Outcome)> {
        self.search_step_of(&self.searched()?)
    }

    /// This row as a step of a search over `param`: the value that ran (for connections its
    /// target, or the connections asked for when an older row lacks it; for a variable of
    /// QEMU's environment, its value in `qemu_env`) and how it counts. None when the value
    /// cannot be read.
    pub(crate) fn search_step_of(
        &self,
        param: &crate::matrix::search::Searched,
    ) -> Option<(u64, crate::matrix::search::Outcome)> {
        use crate::matrix::search::Searched;
        let value = match param {
            Searched::Connections => self.target.unwrap_or(self.connections),
            Searched::Env { name, .. } => env_pairs(self.qemu_env.as_deref())
                .into_iter()
                .find(|(k, _)| k == name)?
                .1
                .parse()
                .ok()?,
        };
        Some((
            value,
            crate::matrix::search::Outcome::of_verdict(&self.verdict),
        ))
    }
}

/// The axes of a cell, typed: what the row says about its cell, and what summary and report
/// sort and group by (each axis in its vocabulary's order, names of newer builds after).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Axes {
    pub(crate) nic: Named<NicModel>,
    pub(crate) mode: Named<NetMode>,
    pub(crate) vhost: Named<Option<Vhost>>,
    pub(crate) qemu: Named<EmulatorName>,
    pub(crate) traffic: Named<Traffic>,
    pub(crate) disconnect: Named<DisconnectMethod>,
    pub(crate) scope: Named<Scope>,
    pub(crate) connections: u64,
    /// QEMU's environment (a sweep's cells differ only here), ordered by its values.
    pub(crate) qemu_env: EnvPoint,
}

/// A QEMU environment as the row's `qemu_env` column writes it (`NAME=value;...`), ordered
/// variable by variable with numbers as numbers, so a sweep's points sort 32, 256, 2048 and
/// not as text (2048, 256, 32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvPoint(pub(crate) Option<String>);

impl EnvPoint {
    /// Each (name, value) with the value as a number where it reads as one.
    fn key(&self) -> Vec<(String, Result<f64, String>)> {
        env_pairs(self.0.as_deref())
            .into_iter()
            .map(|(k, v)| (k, v.parse::<f64>().map_err(|_| v)))
            .collect()
    }
}

impl Ord for EnvPoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (a, b) = (self.key(), other.key());
        for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
            let by = ka.cmp(kb).then_with(|| match (va, vb) {
                (Ok(x), Ok(y)) => x.total_cmp(y),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                (Err(x), Err(y)) => x.cmp(y),
            });
            if by != Ordering::Equal {
                return by;
            }
        }
        a.len().cmp(&b.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for EnvPoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Axes {
    /// The axes of a plan's cell.
    pub(crate) fn of_cell(cell: &Cell) -> Axes {
        Axes {
            nic: cell.nic.into(),
            mode: cell.mode.into(),
            vhost: cell.vhost.into(),
            qemu: cell.qemu.clone().into(),
            traffic: cell.traffic.into(),
            disconnect: cell.disconnect.into(),
            scope: cell.scope.into(),
            connections: cell.connections,
            qemu_env: EnvPoint(env_text(&cell.qemu_env)),
        }
    }
}

/// A QEMU environment as the row's `qemu_env` column writes it: `NAME=value;NAME=value`,
/// None when empty.
pub(crate) fn env_text(env: &[(String, String)]) -> Option<String> {
    (!env.is_empty()).then(|| {
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    })
}

/// The `qemu_env` column parsed back into (name, value) pairs; pieces without `=` are skipped.
pub(crate) fn env_pairs(text: Option<&str>) -> Vec<(String, String)> {
    text.into_iter()
        .flat_map(|t| t.split(';'))
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl CellRow {
    /// The named axes besides NIC and mode, as (name, value) pairs, in the order the summary
    /// and the report show them (each adds the counts and sizes in its own format).
    pub(crate) fn named_axes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("vhost", self.vhost.to_string()),
            ("qemu", self.qemu_shown()),
            ("traffic", self.traffic.to_string()),
            (
                "frames",
                self.frames.as_ref().map_or("tso".into(), |f| f.to_string()),
            ),
            ("disconnect", self.disconnect.to_string()),
            ("scope", self.scope.to_string()),
        ]
    }

    /// The `qemu` axis value with QEMU's environment, as summary and report show it:
    /// `vmnet-flow-control/grid [BURST=16,PPMS=5]` (names without the recipe's prefix).
    pub(crate) fn qemu_shown(&self) -> String {
        let env = env_pairs(self.qemu_env.as_deref());
        if env.is_empty() {
            return self.qemu.to_string();
        }
        let parts: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{}={v}", crate::matrix::plan::short_env_name(k)))
            .collect();
        format!("{} [{}]", self.qemu, parts.join(","))
    }

    /// What a search step ran at besides the searched value, for telling searches apart:
    /// for a search over QEMU's environment, the emulator with the rest of its environment and
    /// the count that ran (`vmnet-flow-control/depth [MODE=disable,PPMS=4], BURST at 3000
    /// connections, ok above`); for a search over connections, the emulator unless it is
    /// `system`. Empty when there is nothing to add.
    pub(crate) fn search_setting(&self, param: &crate::matrix::search::Searched) -> String {
        use crate::matrix::search::Searched;
        let name = match param {
            Searched::Env { name, .. } => Some(name.as_str()),
            Searched::Connections => None,
        };
        let rest: Vec<String> = env_pairs(self.qemu_env.as_deref())
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != name)
            .map(|(k, v)| format!("{}={v}", crate::matrix::plan::short_env_name(k)))
            .collect();
        let qemu = match (self.runs_system_qemu(), rest.is_empty()) {
            (true, _) => String::new(),
            (false, true) => self.qemu.to_string(),
            (false, false) => format!("{} [{}]", self.qemu, rest.join(",")),
        };
        match name {
            None => qemu,
            Some(_) => {
                let ran = self.target.unwrap_or(self.connections);
                let asked = if ran == self.connections {
                    String::new()
                } else {
                    format!(" (of {} asked)", self.connections)
                };
                let sep = if qemu.is_empty() { "" } else { ", " };
                format!(
                    "{qemu}{sep}{} at {ran} connections{asked}, ok {}",
                    param.short_name(),
                    param.ok_side().as_str()
                )
            }
        }
    }

    /// The row's cell's axes.
    pub(crate) fn axes(&self) -> Axes {
        Axes {
            nic: self.nic.clone(),
            mode: self.mode.clone(),
            vhost: self.vhost.clone(),
            qemu: self.qemu.clone(),
            traffic: self.traffic.clone(),
            disconnect: self.disconnect.clone(),
            scope: self.scope.clone(),
            connections: self.connections,
            qemu_env: EnvPoint(self.qemu_env.clone()),
        }
    }

    /// Whether vhost applies to the cell (virtio-net on a tap): its column is not "n/a".
    pub(crate) fn vhost_applies(&self) -> bool {
        !matches!(self.vhost.known(), Some(None))
    }

    /// The cell ran the host's own QEMU (rows from before the `qemu` axis did).
    pub(crate) fn runs_system_qemu(&self) -> bool {
        self.qemu.is_unrecorded() || self.qemu.known().is_some_and(EmulatorName::is_system)
    }

    /// Nothing flowed besides the storm (rows from before the `traffic` axis had nothing).
    pub(crate) fn has_no_traffic(&self) -> bool {
        self.traffic.is_unrecorded() || self.traffic == Traffic::None
    }
}

/// How a row's cell ended, which alone decides the row's verdict, error and error_phase.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowEnd {
    /// It ran to a verdict (a hang is a result).
    Measured {
        verdict: Verdict,
        recovery_seconds: Option<f64>,
    },
    /// The harness failed (or nicstorm panicked) in `phase`: verdict `error`, which a rerun
    /// retries.
    Failed { phase: Phase, message: String },
    /// This host cannot run the cell as asked: verdict `not_applicable`, the reason in the
    /// error column; a rerun does not retry it.
    NotApplicable { reason: String },
}

impl RowEnd {
    /// The row's verdict: the one place it is decided.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            RowEnd::Measured { verdict, .. } => *verdict,
            RowEnd::Failed { .. } => Verdict::Error,
            RowEnd::NotApplicable { .. } => Verdict::NotApplicable,
        }
    }
}

/// Who and what a row is about, whatever the cell's end: the run, the cell (a search step:
/// the cell at the step's count), the repetition, the search step, and what it ran as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowIdentity<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) cell: &'a Cell,
    pub(crate) repetition: u32,
    /// 1-based step of the cell's search (None: not a search).
    pub(crate) search_step: Option<u32>,
    pub(crate) accel: Accel,
    /// `cell.resolve(accel, ..)`: target, vCPUs and memory that ran.
    pub(crate) sizes: Sizes,
}

impl CellRow {
    /// The row of a cell that ended as `end`: identity, the cell's axes, what it ran as, its
    /// verdict, error and error_phase; every measurement missing (experiment/record.rs, the
    /// one caller outside tests, fills them in). Rows are made here and nowhere else, so each
    /// row has its key (run, cell, repetition, search step) and its verdict the same way.
    pub(crate) fn new(id: &RowIdentity, end: &RowEnd) -> CellRow {
        let Axes {
            nic,
            mode,
            vhost,
            qemu,
            traffic,
            disconnect,
            scope,
            connections,
            qemu_env: EnvPoint(qemu_env),
        } = Axes::of_cell(id.cell);
        let (error, error_phase, recovery_seconds) = match end {
            RowEnd::Measured {
                recovery_seconds, ..
            } => (None, None, *recovery_seconds),
            RowEnd::Failed { phase, message } => {
                (Some(message.clone()), Some((*phase).into()), None)
            }
            RowEnd::NotApplicable { reason } => (Some(reason.clone()), None, None),
        };
        CellRow {
            run_id: id.run_id.to_owned(),
            cell_id: id.cell.id.clone(),
            repetition: id.repetition,
            nic,
            mode,
            vhost,
            disconnect,
            scope,
            qemu,
            traffic,
            connections,
            qemu_env,
            search_id: id.search_step.map(|_| id.cell.id.clone()),
            search_step: id.search_step,
            search_param: id
                .search_step
                .and(id.cell.search.as_ref())
                .map(|sp| sp.param.column()),
            accel: Some(id.accel.into()),
            target: Some(id.sizes.target),
            vcpus: Some(id.sizes.vcpus),
            server_memory_mib: Some(id.sizes.server_mib),
            client_memory_mib: Some(id.sizes.client_mib),
            verdict: end.verdict().into(),
            recovery_seconds,
            error,
            error_phase,
            nicstorm_version: env!("CARGO_PKG_VERSION").to_owned(),
            ..CellRow::default()
        }
    }
}

/// The directory of one cell x repetition (x search step) inside its run directory:
/// `<cell_id>-r<rep>[-s<step>]`. The runner writes it, the report reads it.
pub(crate) fn cell_dir_name(cell_id: &str, repetition: u32, search_step: Option<u32>) -> String {
    let step = search_step.map(|s| format!("-s{s}")).unwrap_or_default();
    format!("{cell_id}-r{repetition}{step}")
}

impl CellRow {
    /// This row's cell directory inside `<run_id>/` (`cell_dir_name`).
    pub(crate) fn cell_dir_name(&self) -> String {
        cell_dir_name(&self.cell_id, self.repetition, self.search_step)
    }
}

/// The kind of host a row ran on: accelerator, CPU model, cores and memory (rounded to GiB,
/// since MemTotal differs by a few MiB between kernels). Rows of one class may be pooled;
/// rows of different classes are not comparable figures. Hosts of older rows are "unknown".
pub(crate) fn host_class(row: &CellRow) -> String {
    let accel = row.accel.as_ref().map_or("?", Named::as_str);
    match (&row.host_cpu, row.host_cores, row.host_memory_mib) {
        (Some(cpu), Some(cores), Some(mib)) => {
            format!("{accel}, {cpu}, {cores} CPUs, {} GiB", (mib + 512) / 1024)
        }
        _ => format!("{accel}, unknown host"),
    }
}

#[cfg(test)]
impl CellRow {
    /// A finished TCG row with plausible values, for tests.
    pub(crate) fn example(cell: &str, rep: u32, verdict: &str) -> CellRow {
        CellRow {
            run_id: "a1b2c3".into(),
            cell_id: cell.into(),
            repetition: rep,
            started_at: "2026-11-22T00:00:00Z".into(),
            finished_at: "2026-11-22T00:10:00Z".into(),
            nic: "vmxnet3".into(),
            mode: "bridge".into(),
            vhost: "n/a".into(),
            disconnect: "fin".into(),
            scope: "one".into(),
            connections: 1_000_000,
            accel: Some(Accel::Tcg.into()),
            target: Some(30_000),
            vcpus: Some(1),
            server_memory_mib: Some(1024),
            peak_established: Some(30_000),
            ramp_seconds: Some(6.25),
            errors_by_errno: Some("ECONNREFUSED=3;ETIMEDOUT=1".into()),
            ssh_dropped: Some(false),
            verdict: Named::parse(verdict),
            error: (verdict == "error").then(|| "lab: domain failed to start, \"quoted\"".into()),
            nicstorm_version: "0.1.0".into(),
            ..CellRow::default()
        }
    }
}

/// The CSV header this build writes, without the newline.
pub fn header_line() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Serializing any row makes csv emit the header from the serde field names, so
    // the header can never drift from the struct.
    w.serialize(CellRow::default())
        .expect("serializing a default row into memory cannot fail");
    let bytes = w.into_inner().expect("flushing into a Vec cannot fail");
    let text = String::from_utf8(bytes).expect("csv of UTF-8 strings is UTF-8");
    text.lines().next().unwrap_or_default().to_owned()
}

/// One row as a complete CSV line ending in '\n'.
pub(crate) fn row_line(row: &CellRow) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.serialize(row)
        .with_context(|| format!("serializing result row of cell {}", row.cell_id))?;
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("flushing result row of cell {}: {e}", row.cell_id))
}

/// The row with line breaks in its free-text fields replaced by " / ". CSV could quote
/// them, but then one physical line is no longer one row, and a torn write inside a
/// quoted field would swallow every row appended after it.
pub(crate) fn one_line(row: &CellRow) -> CellRow {
    let flat = |s: &str| s.replace("\r\n", "\n").replace(['\n', '\r'], " / ");
    let flat_opt = |s: &Option<String>| s.as_deref().map(flat);
    CellRow {
        error: flat_opt(&row.error),
        errors_by_errno: flat_opt(&row.errors_by_errno),
        qemu_version: flat_opt(&row.qemu_version),
        libvirt_version: flat_opt(&row.libvirt_version),
        host_kernel: flat_opt(&row.host_kernel),
        guest_kernel: flat_opt(&row.guest_kernel),
        ..row.clone()
    }
}

#[cfg(test)]
mod env_point_tests {
    use super::EnvPoint;

    /// A sweep's points sort by value, numbers as numbers, variable by variable.
    #[test]
    fn points_sort_numerically_variable_by_variable() {
        let p = |s: &str| EnvPoint((!s.is_empty()).then(|| s.to_owned()));
        let mut points = [
            p("B=2048;M=retry;P=4"),
            p("B=256;M=disable;P=16"),
            p("B=32;M=disable;P=4"),
            p("B=256;M=disable;P=4"),
            p("B=256;M=retry;P=4"),
            p(""),
        ];
        points.sort();
        let texts: Vec<&str> = points
            .iter()
            .map(|e| e.0.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            texts,
            [
                "",
                "B=32;M=disable;P=4",
                "B=256;M=disable;P=4",
                "B=256;M=disable;P=16",
                "B=256;M=retry;P=4",
                "B=2048;M=retry;P=4"
            ]
        );
    }
}
