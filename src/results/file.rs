//! The one reader of cells.csv, for every command: the torn tail, the header (this build's,
//! or an earlier one migrated), the rows, and the lines that are not rows. Reading changes
//! nothing; the writers (store.rs for a run, merge/) act on what it found: they set a torn
//! tail aside, keep the pre-migration copy (`keep_pre_migration`), and replace the file
//! (`replace`). Readers hold the shared lock (lock.rs) while they read.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::support::atomic;

use anyhow::{bail, Context, Result};

use super::lock::CsvLock;
use super::row::{header_line, CellRow};
use crate::support::lines::complete_lines;

/// What a cells.csv holds, as this build reads it.
#[derive(Debug, Default)]
pub(crate) struct CsvText {
    /// Its rows, in file order, under this build's columns.
    pub(crate) rows: Vec<CellRow>,
    /// The complete lines, as they are in the file.
    pub(crate) complete: String,
    /// A last line without its newline (a crash mid-write): not a row.
    pub(crate) torn: Option<String>,
    /// The file's text under this build's header, when it had an earlier build's (`None`: it
    /// has this build's header, or no header at all).
    pub(crate) migrated: Option<String>,
    /// Lines that are not rows nicstorm can read, skipped (each with a warning).
    pub(crate) unreadable: usize,
}

impl CsvText {
    /// Reads the text of a cells.csv (`path` names it in messages). Refuses a header that no
    /// nicstorm wrote.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<CsvText> {
        let (complete, torn) = complete_lines(text);
        let mut out = CsvText {
            complete: complete.to_owned(),
            torn: torn.map(str::to_owned),
            ..CsvText::default()
        };
        let Some(found) = complete.lines().next() else {
            return Ok(out);
        };
        let want = header_line();
        if found != want {
            if !migratable(found, &want) {
                bail!(
                    "{}: header does not match this nicstorm's columns (the header is not one nicstorm ever wrote); move the file aside to start a new one (rows are never rewritten)\n  found:    {found}\n  expected: {want}",
                    path.display()
                );
            }
            let migrated = migrate_text(complete, found, &want)
                .with_context(|| format!("migrating {}", path.display()))?;
            out.migrated = Some(migrated);
        }
        let text = out.migrated.as_deref().unwrap_or(complete);
        (out.rows, out.unreadable) = read_rows(path, text);
        Ok(out)
    }
}

/// Reads any cells.csv this build can read (its own header, or an earlier one, migrated in
/// memory only), under the shared lock, changing nothing: for reports, summaries and merges.
pub(crate) fn read(path: &Path) -> Result<CsvText> {
    let lock = CsvLock::shared(path)?;
    CsvText::parse(path, &lock.read_to_string()?)
}

/// The rows of a cells.csv (see `read`): a torn last line and malformed lines are not rows.
pub fn read_csv(path: &Path) -> Result<Vec<CellRow>> {
    Ok(read(path)?.rows)
}

/// The rows of the results directory `dir`'s cells.csv; none when it has none. Creates
/// nothing.
pub(crate) fn read_dir_rows(dir: &Path) -> Result<Vec<CellRow>> {
    let path = dir.join("cells.csv");
    if !path.exists() {
        return Ok(vec![]);
    }
    read_csv(&path)
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
    // 2026-12-07: loss phase and role, the vmnet model's totals, kernel log signatures.
    "lost_phase",
    "lost_role",
    "vmnet_refused_server",
    "vmnet_refused_clients",
    "vmnet_first_refusal_phase",
    "vmnet_flushes_server",
    "vmnet_largest_frame",
    "kernel_signatures",
    "server_signature_lines",
    "frames",
    // 2026-12-07 (later): QEMU's environment, a sweep's point.
    "qemu_env",
    "vmnet_server_first_refusal_phase",
    // 2026-12-07 (third): searches over a variable of QEMU's environment.
    "search_param",
    // 2026-12-07 (fourth): the passt of a passt-mode cell.
    "passt",
    // 2026-12-07 (fifth): booted or restored labs.
    "lab_start",
    "lab_key",
    // 2026-12-07 (sixth): a client's ramp rate as it timed it.
    "client_ramp_rate",
];

/// Whether header `found` is `want` minus some of `ADDED_COLUMNS`, in `want`'s order.
pub(crate) fn migratable(found: &str, want: &str) -> bool {
    let found: Vec<&str> = found.split(',').collect();
    let expect: Vec<&str> = want
        .split(',')
        .filter(|c| !ADDED_COLUMNS.contains(c) || found.contains(c))
        .collect();
    expect == found
}

/// Values that migrated rows get in columns added since they were written, where empty would
/// be wrong: the axes added later had one implicit value before.
const MIGRATION_DEFAULTS: &[(&str, &str)] =
    &[("qemu", "system"), ("traffic", "none"), ("frames", "tso")];

/// `text` (a cells.csv with header `found`) under header `want`: new columns empty or at their
/// `MIGRATION_DEFAULTS`.
fn migrate_text(text: &str, found: &str, want: &str) -> Result<String> {
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
    tracing::debug!(rows, "migrated in memory");
    Ok(String::from_utf8(writer.into_inner().context("flushing")?)?)
}

/// Keeps `bytes` (a cells.csv before its migration) beside `csv` as cells.csv.pre-migration;
/// when that exists already (an earlier migration's), as .pre-migration.1, .2, ... (never
/// overwriting one). Returns the path written.
pub(crate) fn keep_pre_migration(csv: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let base = csv.with_extension("csv.pre-migration");
    for n in 0.. {
        let path = match n {
            0 => base.clone(),
            n => PathBuf::from(format!("{}.{n}", base.display())),
        };
        let mut f = match File::options().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(path);
    }
    unreachable!("some numbered name is free")
}

/// Appends a torn last line `tail` to cells.csv.torn beside `csv`.
pub(crate) fn set_aside_torn(csv: &Path, tail: &str) -> Result<PathBuf> {
    let torn = csv.with_extension("csv.torn");
    let mut t = File::options()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&torn)
        .with_context(|| format!("opening {}", torn.display()))?;
    t.write_all(format!("{tail}\n").as_bytes())
        .and_then(|()| t.sync_all())
        .with_context(|| format!("writing {}", torn.display()))?;
    Ok(torn)
}

/// Writes `path` via a temp file of its own and a rename (a reader never sees half a file;
/// two writers never share a temp file), syncing the data and the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic::write(path, bytes, 0o666)
}

/// Replaces the cells.csv at `path` with `bytes` as `write_atomic` does, the new file locked
/// exclusively before the rename; returns its lock. The caller holds the old file's exclusive
/// lock, so nobody appends to the old file meanwhile, and nobody locks the new one first.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> Result<CsvLock> {
    let tmp = atomic::write_temp(path, bytes, 0o666)?;
    let lock = CsvLock::new_file(&tmp, path)?;
    atomic::rename_synced(&tmp, path)?;
    Ok(lock)
}

/// Parses the rows of a cells.csv whose header was already checked. A malformed row
/// is skipped with a warning (and counted): one bad line must not hide every other result.
fn read_rows(path: &Path, text: &str) -> (Vec<CellRow>, usize) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let (mut rows, mut bad) = (Vec::new(), 0);
    for (i, rec) in reader.deserialize::<CellRow>().enumerate() {
        match rec {
            Ok(row) => rows.push(row),
            Err(e) => {
                bad += 1;
                tracing::warn!(
                file = %path.display(),
                "skipping unreadable row {} (line {}): {e}",
                i + 1,
                    e.position().map_or(0, |p| p.line())
                )
            }
        }
    }
    (rows, bad)
}
