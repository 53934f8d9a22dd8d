//! Results on disk: the typed CSV row, the append-only cells.csv, resume state, run.json.
//!
//! Layout (docs/EXPERIMENT.md "Results"): results/<matrix>/cells.csv accumulates across runs,
//! results/<matrix>/<run-id>/run.json describes one run, results/<matrix>/summary.md.

pub(crate) mod stats;
pub(crate) mod summary;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::matrix::plan::{
    Accel, Cell, DisconnectMethod, EmulatorName, NetMode, NicModel, Scope, Settings, Traffic, Vhost,
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
}

impl CellRow {
    /// This row as a step of its search: the count that ran (its target; the connections
    /// asked for when an older row lacks it) and how it counts.
    pub(crate) fn search_step(&self) -> (u64, crate::matrix::search::Outcome) {
        (
            self.target.unwrap_or(self.connections),
            crate::matrix::search::Outcome::of_verdict(&self.verdict),
        )
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
        }
    }
}

impl CellRow {
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

impl CellRow {
    /// A row with the cell's settings filled in and every measurement missing.
    /// `accel` is None when the cell failed before the accelerator was known.
    pub(crate) fn for_cell(
        run_id: &str,
        cell: &Cell,
        repetition: u32,
        accel: Option<Accel>,
        settings: &Settings,
    ) -> CellRow {
        let target = accel.map(|a| cell.target(a, settings));
        let memory = target.map(|t| cell.memory_mib(t));
        let Axes {
            nic,
            mode,
            vhost,
            qemu,
            traffic,
            disconnect,
            scope,
            connections,
        } = Axes::of_cell(cell);
        CellRow {
            run_id: run_id.to_owned(),
            cell_id: cell.id.clone(),
            repetition,
            nic,
            mode,
            vhost,
            disconnect,
            scope,
            qemu,
            traffic,
            connections,
            accel: accel.map(Named::from),
            target,
            vcpus: accel.map(|a| cell.vcpus_for(a, settings)),
            server_memory_mib: memory.map(|m| m.0),
            client_memory_mib: memory.map(|m| m.1),
            nicstorm_version: env!("CARGO_PKG_VERSION").to_owned(),
            ..CellRow::default()
        }
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

/// Columns added since the first cells.csv format, oldest first. A file whose header is this
/// build's without some of them is migrated on open; a column that is renamed or removed is
/// a new format and must not be listed here.
const ADDED_COLUMNS: &[&str] = &[
    "undrained_connections",
    "clients_tcp_abort_on_memory",
    "server_tap_tx_dropped",
    "server_device_lost",
    "server_eth0_rx_dropped",
    "host_conntrack_drops",
    // 2026-11-24: emulator and traffic axes, search steps, what ran, error phase, host.
    "qemu",
    "traffic",
    "search_id",
    "search_step",
    "vhost_effective",
    "domain_start_max_seconds",
    "boot_to_ssh_seconds",
    "stall_side",
    "recovered_by",
    "error_phase",
    "emulator_recipe_hash",
    "host_name",
    "host_cpu",
    "host_cores",
    "host_memory_mib",
];

/// Whether header `found` is `want` minus some of `ADDED_COLUMNS`, in `want`'s order.
fn migratable(found: &str, want: &str) -> bool {
    let found: Vec<&str> = found.split(',').collect();
    let expect: Vec<&str> = want
        .split(',')
        .filter(|c| !ADDED_COLUMNS.contains(c) || found.contains(c))
        .collect();
    expect == found
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

/// results/<matrix>/: cells.csv (append only), run directories, summary.md.
#[derive(Debug)]
pub struct ResultsStore {
    dir: PathBuf,
    matrix: String,
    csv_path: PathBuf,
    rows: Vec<CellRow>,
}

impl ResultsStore {
    /// Opens (creating if needed) results/<matrix_name>/ and reads existing rows.
    ///
    /// An existing cells.csv must have this build's header, or be a file of an earlier
    /// build that lacks only columns added since (`ADDED_COLUMNS`): that one is migrated
    /// once (its rows kept, the new columns empty, the original kept beside it as
    /// cells.csv.pre-migration). Any other header is refused, never mixed. A last line
    /// without its newline (a crash mid-write in an older version) is moved to
    /// cells.csv.torn so the next row starts on a line of its own.
    pub fn open(results_root: &Path, matrix_name: &str) -> Result<Self> {
        let dir = results_root.join(matrix_name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let csv_path = dir.join("cells.csv");
        let mut store = ResultsStore {
            dir,
            matrix: matrix_name.to_owned(),
            csv_path,
            rows: Vec::new(),
        };
        if !store.csv_path.exists() {
            store.create_csv()?;
            return Ok(store);
        }
        let mut text = String::new();
        File::open(&store.csv_path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("reading {}", store.csv_path.display()))?;
        if text.is_empty() {
            store.create_csv()?;
            return Ok(store);
        }
        if !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            store.set_aside_torn_tail(&text[keep..], keep as u64)?;
            text.truncate(keep);
            if text.is_empty() {
                store.create_csv()?;
                return Ok(store);
            }
        }
        let found = text.lines().next().unwrap_or_default().to_owned();
        let want = header_line();
        if found != want && migratable(&found, &want) {
            text = store.migrate(&text, &found, &want)?;
        } else if found != want {
            bail!(
                "{}: header does not match this nicstorm's columns; move the file aside to start a new one (rows are never rewritten)\n  found:    {found}\n  expected: {want}",
                store.csv_path.display()
            );
        }
        store.rows = read_rows(&store.csv_path, &text);
        // Rows are appended as cells end: a file that cannot take them must refuse the run
        // now, before anything boots, not after the first cell's hour of work.
        OpenOptions::new()
            .append(true)
            .open(&store.csv_path)
            .with_context(|| format!("{} is not writable", store.csv_path.display()))?;
        Ok(store)
    }

    /// Rewrites a cells.csv of an earlier build under this build's header (see `open`).
    fn migrate(&self, text: &str, found: &str, want: &str) -> Result<String> {
        let (new, rows) = migrate_text(text, found, want)
            .with_context(|| format!("migrating {}", self.csv_path.display()))?;
        let keep = self.dir.join("cells.csv.pre-migration");
        fs::copy(&self.csv_path, &keep).with_context(|| {
            format!("keeping {} as {}", self.csv_path.display(), keep.display())
        })?;
        write_atomic(&self.csv_path, new.as_bytes())?;
        tracing::warn!(
            file = %self.csv_path.display(),
            rows,
            "migrated to this build's columns (new columns empty); the original is {}",
            keep.display()
        );
        Ok(new)
    }

    fn create_csv(&self) -> Result<()> {
        let mut f = File::create(&self.csv_path)
            .with_context(|| format!("creating {}", self.csv_path.display()))?;
        f.write_all(format!("{}\n", header_line()).as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing header of {}", self.csv_path.display()))
    }

    fn set_aside_torn_tail(&self, tail: &str, keep: u64) -> Result<()> {
        let torn = self.dir.join("cells.csv.torn");
        tracing::warn!(
            file = %self.csv_path.display(),
            "last line is incomplete (crash while writing?); ignoring it and moving it to {}",
            torn.display()
        );
        let mut t = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&torn)
            .with_context(|| format!("opening {}", torn.display()))?;
        t.write_all(format!("{tail}\n").as_bytes())
            .and_then(|()| t.sync_all())
            .with_context(|| format!("writing {}", torn.display()))?;
        let f = OpenOptions::new()
            .write(true)
            .open(&self.csv_path)
            .with_context(|| format!("opening {}", self.csv_path.display()))?;
        f.set_len(keep)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cutting the torn line off {}", self.csv_path.display()))
    }

    /// Appends one row and syncs it to disk before returning, so an interrupt after
    /// this leaves a valid CSV holding the row. The line is built in memory and handed
    /// to the kernel in one write on an O_APPEND file, so a crash cannot interleave a
    /// half row with the next one.
    pub fn append(&mut self, row: &CellRow) -> Result<()> {
        let row = &one_line(row);
        let line = row_line(row)?;
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.csv_path)
            .with_context(|| format!("opening {}", self.csv_path.display()))?;
        f.write_all(&line)
            .and_then(|()| f.sync_data())
            .with_context(|| {
                format!(
                    "appending cell {} to {}",
                    row.cell_id,
                    self.csv_path.display()
                )
            })?;
        self.rows.push(row.clone());
        Ok(())
    }

    /// Every row, in file order (later rows are later results).
    pub(crate) fn rows(&self) -> &[CellRow] {
        &self.rows
    }

    /// (cell_id, repetition, target) -> verdict of the latest row under `accel` that is not
    /// `error`; those are complete and a resumed run skips them (a `not_applicable` row too:
    /// the host cannot run that cell). A row completes a cell only
    /// at the connection count it ran: a TCG row does not complete a cell on a KVM host, and
    /// a changed `tcg_connections` reruns the cells.
    pub(crate) fn completed(&self, accel: Accel) -> BTreeMap<(String, u32, u64), Named<Verdict>> {
        let mut done = BTreeMap::new();
        for r in self
            .rows
            .iter()
            .filter(|r| r.verdict != Verdict::Error && r.accel == Some(Named::Known(accel)))
        {
            if let Some(target) = r.target {
                done.insert((r.cell_id.clone(), r.repetition, target), r.verdict.clone());
            }
        }
        done
    }

    pub(crate) fn matrix_name(&self) -> &str {
        &self.matrix
    }

    /// results/<matrix>/.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    /// results/<matrix>/<run_id>/ (not created here).
    pub(crate) fn run_dir(&self, run_id: &str) -> PathBuf {
        self.dir.join(run_id)
    }

    /// Writes results/<matrix>/<run_id>/run.json atomically (temp file + rename), so
    /// a reader never sees half a document.
    pub(crate) fn write_run_json(
        &self,
        run_id: &str,
        value: &serde_json::Value,
    ) -> Result<PathBuf> {
        let dir = self.run_dir(run_id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("run.json");
        let mut text = serde_json::to_string_pretty(value).context("serializing run.json")?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// Values that migrated rows get in columns added since they were written, where empty would
/// be wrong: the axes added later had one implicit value before.
const MIGRATION_DEFAULTS: &[(&str, &str)] = &[("qemu", "system"), ("traffic", "none")];

/// `text` (a cells.csv with header `found`) under header `want`: new columns empty or at their
/// `MIGRATION_DEFAULTS`; returns the text and the number of rows.
fn migrate_text(text: &str, found: &str, want: &str) -> Result<(String, usize)> {
    let old: Vec<&str> = found.split(',').collect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer.write_record(want.split(','))?;
    let mut rows = 0;
    for record in reader.records() {
        let record = record?;
        writer.write_record(want.split(',').map(|col| {
            match old.iter().position(|c| *c == col) {
                Some(i) => record.get(i).unwrap_or(""),
                None => MIGRATION_DEFAULTS
                    .iter()
                    .find(|(c, _)| *c == col)
                    .map_or("", |(_, v)| v),
            }
        }))?;
        rows += 1;
    }
    let new = String::from_utf8(writer.into_inner().context("flushing")?)?;
    Ok((new, rows))
}

/// Reads any cells.csv this build can read (its own header, or an earlier one, migrated in
/// memory only): for reports and merges of results directories that must not be modified.
pub fn read_csv(path: &Path) -> Result<Vec<CellRow>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // A torn last line (crash mid-write in an older version) is not a row.
    let text = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let Some(found) = text.lines().next() else {
        return Ok(vec![]);
    };
    let want = header_line();
    if found == want {
        return Ok(read_rows(path, text));
    }
    if !migratable(found, &want) {
        bail!(
            "{}: header is not one nicstorm ever wrote\n  found:    {found}\n  expected: {want}",
            path.display()
        );
    }
    let (text, _) =
        migrate_text(text, found, &want).with_context(|| format!("reading {}", path.display()))?;
    Ok(read_rows(path, &text))
}

/// Writes `path` via a sibling temp file and rename, syncing the data first.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Parses the rows of a cells.csv whose header was already checked. A malformed row
/// is skipped with a warning: one bad line must not hide every other result.
fn read_rows(path: &Path, text: &str) -> Vec<CellRow> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, rec) in reader.deserialize::<CellRow>().enumerate() {
        match rec {
            Ok(row) => rows.push(row),
            Err(e) => tracing::warn!(
                file = %path.display(),
                "skipping unreadable row {} (line {}): {e}",
                i + 1,
                e.position().map_or(0, |p| p.line())
            ),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::matrix::plan::parse_plan;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "nicstorm-results-test-{tag}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn header_snapshot() {
        insta::assert_snapshot!(header_line());
    }

    #[test]
    fn missing_measurements_are_empty_fields_not_zero() {
        let line = String::from_utf8(row_line(&CellRow::example("c1", 1, "ok")).unwrap()).unwrap();
        let fields: Vec<&str> = line.trim_end().split(',').collect();
        let header = header_line();
        let names: Vec<&str> = header.split(',').collect();
        assert_eq!(fields.len(), names.len(), "{line}");
        let col = |n: &str| fields[names.iter().position(|h| *h == n).unwrap()];
        assert_eq!(col("drain_seconds"), "");
        assert_eq!(col("peak_softirq_pct"), "");
        assert_eq!(col("ssh_dropped"), "false");
        assert_eq!(col("peak_established"), "30000");
        assert_eq!(col("error"), "");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn append_reopen_and_resume() {
        let tmp = TempDir::new("resume");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert!(store.completed(Accel::Tcg).is_empty());
        let rows = [
            CellRow::example("c1", 1, "ok"),
            CellRow::example("c2", 1, "error"),
            CellRow::example("c3", 1, "hung"),
            CellRow::example("c3", 2, "error"),
            // A later error does not undo an earlier complete result.
            CellRow::example("c1", 1, "error"),
        ];
        for r in &rows {
            store.append(r).unwrap();
        }
        drop(store);

        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(
            store.rows(),
            &rows[..],
            "rows survive a round trip, Options included"
        );
        let done: Vec<((String, u32, u64), Named<Verdict>)> =
            store.completed(Accel::Tcg).into_iter().collect();
        assert_eq!(
            done,
            [
                (("c1".to_owned(), 1, 30000), Verdict::Ok.into()),
                (("c3".to_owned(), 1, 30000), Verdict::Hung.into())
            ]
        );
        assert!(
            store.completed(Accel::Kvm).is_empty(),
            "tcg rows do not complete kvm cells"
        );
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().count(), 1 + rows.len());
        assert_eq!(text.lines().next().unwrap(), header_line());
    }

    #[test]
    fn torn_last_line_is_set_aside_not_fatal() {
        let tmp = TempDir::new("torn");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        store.append(&CellRow::example("c1", 1, "ok")).unwrap();
        let path = store.csv_path().to_owned();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"a1b2c3,c2,1,2026-11-22T00:20:00Z,2026")
            .unwrap();
        drop(f);

        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(store.rows().len(), 1);
        store.append(&CellRow::example("c2", 1, "ok")).unwrap();
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let ids: Vec<&str> = store.rows().iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
        let torn = fs::read_to_string(tmp.0.join("m/cells.csv.torn")).unwrap();
        assert_eq!(torn, "a1b2c3,c2,1,2026-11-22T00:20:00Z,2026\n");
    }

    #[test]
    fn multi_line_error_is_stored_on_one_line() {
        let tmp = TempDir::new("oneline");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        let mut row = CellRow::example("c1", 1, "error");
        row.error = Some("ssh failed:\nPermission denied\r\n(publickey)".into());
        store.append(&row).unwrap();
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(
            store.rows()[0].error.as_deref(),
            Some("ssh failed: / Permission denied / (publickey)")
        );
    }

    #[test]
    fn measurements_of_earlier_builds_read_without_touching_them() {
        // Two earlier headers: before the counters, and before the axes added on 2026-11-24.
        for csv in [
            "docs/measurements/2026-11-22-tcg-2core/cells.csv",
            "docs/measurements/2026-11-22-tcg-2core-counters/cells.csv",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(csv);
            let before = fs::read(&path).unwrap();
            let rows = read_csv(&path).unwrap();
            assert_eq!(rows.len(), 8, "{csv}");
            for r in &rows {
                assert_eq!(
                    (r.qemu.as_str(), r.traffic.known()),
                    ("system", Some(&Traffic::None))
                );
                assert!(r.host_cpu.is_none() && r.error_phase.is_none());
                assert!(r.peak_established.is_some(), "{csv}: measured values kept");
            }
            assert_eq!(fs::read(&path).unwrap(), before, "{csv} untouched");
        }
        let tmp = TempDir::new("readcsv");
        fs::write(tmp.0.join("x.csv"), "run_id,cell_id,verdict\nx,y,ok\n").unwrap();
        let err = read_csv(&tmp.0.join("x.csv")).unwrap_err().to_string();
        assert!(
            err.contains("header is not one nicstorm ever wrote"),
            "{err}"
        );
    }

    /// Every cells.csv kept in the repository, of every header this build reads.
    fn kept_csvs() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = vec![root.join("tests/fixtures/results/ci-smoke/cells.csv")];
        for dir in fs::read_dir(root.join("docs/measurements")).unwrap() {
            for f in fs::read_dir(dir.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.to_string_lossy().ends_with("cells.csv") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// `text` (a cells.csv under this build's header) with only the columns of `header`.
    fn project(text: &str, header: &str) -> String {
        let want: Vec<&str> = header.split(',').collect();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let have: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
        let cols: Vec<usize> = want
            .iter()
            .map(|c| have.iter().position(|h| h == c).unwrap())
            .collect();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(vec![]);
        w.write_record(&want).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            w.write_record(cols.iter().map(|&i| &rec[i])).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    /// Typed rows write what they read: every kept cells.csv, read and written back, gives its
    /// own bytes (older headers: the columns they have, byte for byte), and names this build
    /// does not know survive as they were.
    #[test]
    fn rows_read_and_written_back_are_the_same_bytes() {
        let csvs = kept_csvs();
        assert!(csvs.len() >= 7, "{csvs:?}");
        for path in csvs {
            let original = fs::read_to_string(&path).unwrap();
            let rows = read_csv(&path).unwrap();
            assert_eq!(
                rows.len(),
                original.lines().count() - 1,
                "{}",
                path.display()
            );
            let mut written = format!("{}\n", header_line());
            for r in &rows {
                written.push_str(std::str::from_utf8(&row_line(r).unwrap()).unwrap());
            }
            let header = original.lines().next().unwrap();
            assert_eq!(project(&written, header), original, "{}", path.display());
        }

        let mut newer = CellRow::example("c1", 1, "melted");
        newer.nic = "virtio-net-pci-v2".into();
        newer.mode = "passt".into();
        newer.vhost = "auto".into();
        newer.accel = Some("hvf".into());
        newer.error_phase = Some("boot".into());
        newer.vhost_effective = Some("n/a".into());
        let line = row_line(&newer).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_slice());
        let back: CellRow = r.deserialize().next().unwrap().unwrap();
        assert_eq!(back, newer);
        assert_eq!(row_line(&back).unwrap(), line);
        assert_eq!(back.verdict, Named::Other("melted".into()));
        assert_eq!(back.vhost_effective, Some(Named::Known(None)));
        assert!(
            back.verdict != Verdict::Error,
            "an unknown verdict is no error"
        );
    }

    #[test]
    fn foreign_header_is_refused_and_kept() {
        let tmp = TempDir::new("header");
        fs::create_dir_all(tmp.0.join("m")).unwrap();
        let old = "run_id,cell_id,verdict\nx,y,ok\n";
        fs::write(tmp.0.join("m/cells.csv"), old).unwrap();
        let err = ResultsStore::open(&tmp.0, "m").unwrap_err().to_string();
        assert!(err.contains("header does not match"), "{err}");
        assert!(err.contains("found:    run_id,cell_id,verdict"), "{err}");
        assert_eq!(fs::read_to_string(tmp.0.join("m/cells.csv")).unwrap(), old);
    }

    #[test]
    fn earlier_header_is_migrated_and_kept() {
        let tmp = TempDir::new("migrate");
        fs::create_dir_all(tmp.0.join("m")).unwrap();
        let want = header_line();
        let dropped = ["undrained_connections", "server_tap_tx_dropped"];
        let old_cols: Vec<&str> = want.split(',').filter(|c| !dropped.contains(c)).collect();
        // A row of the current format, with the dropped columns cut out.
        let mut row = CellRow::example("c1", 1, "ok");
        row.error = Some("a, quoted \"error\"".into());
        row.undrained_connections = Some(5);
        row.server_tap_tx_dropped = Some(2);
        row.host_conntrack_drops = Some(7);
        let line = row_line(&row).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_slice());
        let full = r.records().next().unwrap().unwrap();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(vec![]);
        w.write_record(&old_cols).unwrap();
        w.write_record(
            want.split(',')
                .zip(full.iter())
                .filter(|(c, _)| !dropped.contains(c))
                .map(|(_, v)| v),
        )
        .unwrap();
        let old = String::from_utf8(w.into_inner().unwrap()).unwrap();
        fs::write(tmp.0.join("m/cells.csv"), &old).unwrap();

        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let mut expect = row.clone();
        expect.undrained_connections = None;
        expect.server_tap_tx_dropped = None;
        assert_eq!(store.rows(), &[expect]);
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().next().unwrap(), want);
        assert_eq!(
            fs::read_to_string(tmp.0.join("m/cells.csv.pre-migration")).unwrap(),
            old
        );
        // Opened again, it is this build's file: nothing more happens.
        let again = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(again.rows(), store.rows());
        assert_eq!(fs::read_to_string(store.csv_path()).unwrap(), text);
    }

    #[test]
    fn only_added_columns_may_be_missing() {
        let want = "a,undrained_connections,b,host_conntrack_drops";
        assert!(migratable("a,b", want));
        assert!(migratable("a,undrained_connections,b", want));
        assert!(!migratable("a", want), "b is not an added column");
        assert!(!migratable("b,a", want), "order matters");
        assert!(!migratable("a,b,x", want), "unknown column");
    }

    #[test]
    fn malformed_middle_row_is_skipped() {
        let tmp = TempDir::new("malformed");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        store.append(&CellRow::example("c1", 1, "ok")).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.csv_path())
            .unwrap();
        f.write_all(b"garbage,with,too,few,fields\n").unwrap();
        drop(f);
        store.append(&CellRow::example("c2", 1, "ok")).unwrap();
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let ids: Vec<&str> = store.rows().iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
    }

    #[test]
    fn row_for_cell_and_run_json() {
        let p = parse_plan(
            "axes: {nic: [virtio-net], mode: [nat], vhost: [off], connections: [1000000]}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let c = &p.cells[0];
        let row = CellRow::for_cell("a1b2c3", c, 2, Some(Accel::Tcg), &p.settings);
        assert_eq!(
            (
                row.vhost.known().copied(),
                row.target,
                row.vcpus,
                row.server_memory_mib,
                row.client_memory_mib
            ),
            (
                Some(Some(Vhost::Off)),
                Some(30_000),
                Some(1),
                Some(1024),
                Some(768)
            )
        );
        assert_eq!(row.cell_id, c.id);
        assert_eq!(row.peak_established, None);
        let early = CellRow::for_cell("a1b2c3", c, 1, None, &p.settings);
        assert_eq!((early.accel, early.target), (None, None));

        let tmp = TempDir::new("runjson");
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let path = store
            .write_run_json("a1b2c3", &serde_json::json!({"qemu": "7.2"}))
            .unwrap();
        assert_eq!(path, tmp.0.join("m/a1b2c3/run.json"));
        let back: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["qemu"], "7.2");
    }
}
