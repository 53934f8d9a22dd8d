//! `nicstorm merge OUT IN...`: results directories of several hosts or runs (each a
//! results/<matrix>/ with cells.csv and run directories) combined into one.
//!
//! Rows are keyed by (run_id, cell_id, repetition): a run id is drawn once per run, so the
//! same key in two inputs is the same measurement, copied twice. Identical copies merge into
//! one; copies that differ are a conflict, and a conflict writes nothing: every input is read
//! and every run directory compared before the first byte is written. OUT, when it already
//! holds results, is one more input, so merging again changes nothing.
//!
//! The output is an ordinary results directory (this build's header, rows in time order),
//! which `nicstorm run --results` appends to as usual.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use crate::exit;
use crate::names::RunId;
use crate::results::{self, header_line, one_line, row_line, write_atomic, CellRow, ResultsStore};
use crate::summary;

/// Why a merge failed. All but `Io` are found before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: not a results directory: it has no cells.csv (give results/<matrix>/, the directory that holds cells.csv)", .0.display())]
    NotResults(PathBuf),
    #[error("{}: {lines} line(s) are not rows nicstorm can read (a torn last line or a malformed row), and a merge would drop them; fix or remove them first", file.display())]
    Unreadable { file: PathBuf, lines: usize },
    /// One key, two different rows (boxed: it is the largest variant by far).
    #[error(transparent)]
    RowConflict(Box<RowConflict>),
    /// One run directory in two inputs, not identical file by file.
    #[error(
        "conflict: run directory {run_id} differs at {}: {what} ({} vs {}); nothing was written",
        path.display(),
        first.display(),
        second.display()
    )]
    RunDirConflict {
        run_id: String,
        /// The first differing path, relative to the run directory.
        path: PathBuf,
        what: &'static str,
        first: PathBuf,
        second: PathBuf,
    },
    /// Reading or writing failed; the message names the file.
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// Two rows with one key that differ.
#[derive(Debug, thiserror::Error)]
#[error(
    "conflict: {key} differs in column {column}: {first_value:?} in {} but {second_value:?} in {}; nothing was written",
    first.display(),
    second.display()
)]
pub struct RowConflict {
    pub key: RowKey,
    /// The first column, in header order, whose values differ.
    pub column: String,
    pub first_value: String,
    pub second_value: String,
    /// The cells.csv each row came from.
    pub first: PathBuf,
    pub second: PathBuf,
}

/// What identifies a row across inputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub run_id: String,
    pub cell_id: String,
    pub repetition: u32,
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "row (run {}, cell {}, repetition {})",
            self.run_id, self.cell_id, self.repetition
        )
    }
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeReport {
    /// Results directories read, OUT included when it held results.
    pub inputs: usize,
    /// Rows in the merged cells.csv.
    pub rows: usize,
    /// Of those, rows OUT did not hold before.
    pub new_rows: usize,
    /// Identical copies of a row dropped.
    pub duplicates: usize,
    /// Run directories copied into OUT.
    pub copied_runs: Vec<String>,
    /// Directories in inputs that are not run directories (name not a run id); not copied.
    pub skipped: Vec<PathBuf>,
    /// summary.md, rebuilt.
    pub summary: PathBuf,
}

/// `nicstorm merge OUT IN...`: merges and prints what it did.
pub fn run(out: &Path, inputs: &[PathBuf]) -> anyhow::Result<u8> {
    crate::logging::init(None);
    let r = merge(out, inputs)?;
    println!(
        "merged {} results director{} into {}: {} rows ({} new, {} identical duplicate{} dropped), {} run director{} copied",
        r.inputs,
        if r.inputs == 1 { "y" } else { "ies" },
        out.display(),
        r.rows,
        r.new_rows,
        r.duplicates,
        if r.duplicates == 1 { "" } else { "s" },
        r.copied_runs.len(),
        if r.copied_runs.len() == 1 { "y" } else { "ies" },
    );
    for s in &r.skipped {
        eprintln!(
            "nicstorm merge: not copied (not a run directory): {}",
            s.display()
        );
    }
    println!("summary: {}", r.summary.display());
    Ok(exit::OK)
}

/// One results directory taking part.
struct Source {
    dir: PathBuf,
    csv: PathBuf,
    is_out: bool,
}

/// Merges the results directories `inputs` into `out` (see the module header).
pub fn merge(out: &Path, inputs: &[PathBuf]) -> Result<MergeReport, MergeError> {
    let sources = sources(out, inputs)?;

    // Rows: read and check every input.
    let mut rows: BTreeMap<RowKey, (Vec<String>, CellRow, PathBuf)> = BTreeMap::new();
    let mut out_keys = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    let columns: Vec<String> = header_line().split(',').map(str::to_owned).collect();
    for src in &sources {
        if src.is_out && !src.csv.exists() {
            continue;
        }
        for row in read_all(&src.csv)? {
            let row = one_line(&row);
            let key = RowKey {
                run_id: row.run_id.clone(),
                cell_id: row.cell_id.clone(),
                repetition: row.repetition,
            };
            let fields = fields(&row)?;
            if src.is_out {
                out_keys.insert(key.clone());
            }
            match rows.get(&key) {
                None => {
                    rows.insert(key, (fields, row, src.csv.clone()));
                }
                Some((seen, _, _)) if *seen == fields => duplicates += 1,
                Some((seen, _, first)) => {
                    let i = (0..columns.len())
                        .find(|&i| seen.get(i) != fields.get(i))
                        .unwrap_or(0);
                    return Err(MergeError::RowConflict(Box::new(RowConflict {
                        key,
                        column: columns[i].clone(),
                        first_value: seen.get(i).cloned().unwrap_or_default(),
                        second_value: fields.get(i).cloned().unwrap_or_default(),
                        first: first.clone(),
                        second: src.csv.clone(),
                    })));
                }
            }
        }
    }

    // Run directories: one copy of each, identical wherever it appears.
    let mut runs: BTreeMap<String, &Source> = BTreeMap::new();
    let mut skipped = Vec::new();
    for src in &sources {
        for (name, path) in subdirs(&src.dir)? {
            if RunId::parse(&name).is_none() {
                if !src.is_out {
                    skipped.push(path);
                }
                continue;
            }
            match runs.get(&name) {
                None => {
                    runs.insert(name, src);
                }
                Some(first) => {
                    let a = first.dir.join(&name);
                    if let Some((rel, what)) = first_difference(&a, &path, Path::new(""))? {
                        return Err(MergeError::RunDirConflict {
                            run_id: name,
                            path: rel,
                            what,
                            first: a,
                            second: path,
                        });
                    }
                }
            }
        }
    }

    // Everything is checked: write. Run directories first, so cells.csv never names a run
    // whose directory is missing.
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut copied_runs = Vec::new();
    for (run_id, src) in &runs {
        if !src.is_out && !out.join(run_id).exists() {
            copy_run_dir(&src.dir.join(run_id), out, run_id)?;
            copied_runs.push(run_id.clone());
        }
    }
    let new_rows = rows.len() - out_keys.len();
    let mut merged: Vec<CellRow> = rows.into_values().map(|(_, row, _)| row).collect();
    merged.sort_by_cached_key(|r| {
        (
            chrono::DateTime::parse_from_rfc3339(&r.started_at).ok(),
            r.started_at.clone(),
            r.run_id.clone(),
            r.cell_id.clone(),
            r.repetition,
        )
    });
    write_csv(out, &merged)?;
    let summary = rebuild_outputs(out)?;
    Ok(MergeReport {
        inputs: sources
            .iter()
            .filter(|s| !s.is_out || s.csv.exists())
            .count(),
        rows: merged.len(),
        new_rows,
        duplicates,
        copied_runs,
        skipped,
        summary,
    })
}

/// OUT (when it exists) and then each input, each directory once.
fn sources(out: &Path, inputs: &[PathBuf]) -> Result<Vec<Source>, MergeError> {
    let mut sources = Vec::new();
    let mut seen = Vec::new();
    if out.exists() {
        let canon = out
            .canonicalize()
            .with_context(|| format!("resolving {}", out.display()))?;
        seen.push(canon);
        sources.push(Source {
            dir: out.to_owned(),
            csv: out.join("cells.csv"),
            is_out: true,
        });
    }
    for dir in inputs {
        let csv = dir.join("cells.csv");
        if !csv.is_file() {
            return Err(MergeError::NotResults(dir.clone()));
        }
        let canon = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        sources.push(Source {
            dir: dir.clone(),
            csv,
            is_out: false,
        });
    }
    Ok(sources)
}

/// Every row of a cells.csv (an earlier header migrated in memory), refusing a file with
/// lines that are not rows, which a merge would otherwise silently drop.
fn read_all(csv: &Path) -> Result<Vec<CellRow>, MergeError> {
    let rows = results::read_csv(csv)?;
    let text = fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    let torn = usize::from(complete.len() < text.len());
    let lines = torn
        + complete
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
    if lines != rows.len() {
        return Err(MergeError::Unreadable {
            file: csv.to_owned(),
            lines: lines.abs_diff(rows.len()),
        });
    }
    Ok(rows)
}

/// A row's fields as cells.csv holds them, in header order.
fn fields(row: &CellRow) -> Result<Vec<String>, MergeError> {
    let line = row_line(row)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_slice());
    let record = reader
        .records()
        .next()
        .ok_or_else(|| anyhow!("row of cell {} serialized to nothing", row.cell_id))?
        .with_context(|| format!("re-reading row of cell {}", row.cell_id))?;
    Ok(record.iter().map(str::to_owned).collect())
}

/// Subdirectories of `dir` as (name, path), sorted by name.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, MergeError> {
    if !dir.exists() {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let ty = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if ty.is_dir() {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// The entries of a directory, sorted by name.
fn entries(dir: &Path) -> anyhow::Result<Vec<(std::ffi::OsString, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let ty = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        out.push((entry.file_name(), ty));
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(out)
}

/// The first path (relative to the roots `a` and `b`) where two trees differ, and how.
fn first_difference(
    a: &Path,
    b: &Path,
    rel: &Path,
) -> anyhow::Result<Option<(PathBuf, &'static str)>> {
    let (ea, eb) = (entries(&a.join(rel))?, entries(&b.join(rel))?);
    let names: std::collections::BTreeSet<&std::ffi::OsString> =
        ea.iter().chain(&eb).map(|(n, _)| n).collect();
    for name in names {
        let path = rel.join(name);
        let ta = ea.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let tb = eb.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let (ta, tb) = match (ta, tb) {
            (Some(ta), Some(tb)) => (ta, tb),
            (Some(_), None) => return Ok(Some((path, "only in the first"))),
            _ => return Ok(Some((path, "only in the second"))),
        };
        let diff = if ta.is_dir() && tb.is_dir() {
            match first_difference(a, b, &path)? {
                Some(d) => return Ok(Some(d)),
                None => None,
            }
        } else if ta.is_file() && tb.is_file() {
            (!same_contents(&a.join(&path), &b.join(&path))?).then_some("contents differ")
        } else if ta.is_symlink() && tb.is_symlink() {
            let target = |p: PathBuf| {
                fs::read_link(&p).with_context(|| format!("reading link {}", p.display()))
            };
            (target(a.join(&path))? != target(b.join(&path))?).then_some("link targets differ")
        } else {
            Some("not the same kind of file")
        };
        if let Some(what) = diff {
            return Ok(Some((path, what)));
        }
    }
    Ok(None)
}

fn same_contents(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let open = |p: &Path| {
        fs::File::open(p)
            .map(BufReader::new)
            .with_context(|| format!("opening {}", p.display()))
    };
    let (len_a, len_b) = (
        fs::metadata(a).with_context(|| format!("reading {}", a.display()))?,
        fs::metadata(b).with_context(|| format!("reading {}", b.display()))?,
    );
    if len_a.len() != len_b.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut ra, &mut ba).with_context(|| format!("reading {}", a.display()))?;
        let nb = read_full(&mut rb, &mut bb).with_context(|| format!("reading {}", b.display()))?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Copies a run directory into `out` under a hidden temporary name, then renames it into
/// place, so an interrupted merge never leaves half a run directory behind.
fn copy_run_dir(src: &Path, out: &Path, run_id: &str) -> anyhow::Result<()> {
    let tmp = out.join(format!(".merge-{run_id}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    copy_tree(src, &tmp)?;
    let dst = out.join(run_id);
    fs::rename(&tmp, &dst)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))
}

fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    fs::create_dir(dst).with_context(|| format!("creating {}", dst.display()))?;
    for (name, ty) in entries(src)? {
        let (from, to) = (src.join(&name), dst.join(&name));
        if ty.is_dir() {
            copy_tree(&from, &to)?;
        } else if ty.is_symlink() {
            let target =
                fs::read_link(&from).with_context(|| format!("reading link {}", from.display()))?;
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("creating link {}", to.display()))?;
        } else {
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}

/// Writes OUT/cells.csv (this build's header, then `rows`) atomically, unless it already
/// holds exactly that. An earlier build's file is kept beside it as cells.csv.pre-migration,
/// as `ResultsStore::open` does when it migrates.
fn write_csv(out: &Path, rows: &[CellRow]) -> anyhow::Result<()> {
    let path = out.join("cells.csv");
    let mut bytes = format!("{}\n", header_line()).into_bytes();
    for r in rows {
        bytes.extend(row_line(r)?);
    }
    let old = match fs::read(&path) {
        Ok(old) => Some(old),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if old.as_deref() == Some(bytes.as_slice()) {
        return Ok(());
    }
    if let Some(old) = &old {
        let old_header = old.split(|&b| b == b'\n').next().unwrap_or_default();
        if old_header != header_line().as_bytes() {
            let keep = out.join("cells.csv.pre-migration");
            fs::copy(&path, &keep)
                .with_context(|| format!("keeping {} as {}", path.display(), keep.display()))?;
        }
    }
    write_atomic(&path, &bytes)
}

/// Rebuilds what is derived from OUT/cells.csv; returns the summary's path.
fn rebuild_outputs(out: &Path) -> anyhow::Result<PathBuf> {
    let canon = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let (Some(root), Some(name)) = (canon.parent(), canon.file_name()) else {
        anyhow::bail!("{}: cannot be a results directory", out.display());
    };
    let store = ResultsStore::open(root, &name.to_string_lossy())?;
    let summary = summary::write_summary(&store)?;
    // The report too, so a merged directory never shows a report of the rows before it.
    crate::report::write_report(store.dir())?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("nicstorm-merge-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        /// A results directory `name` holding `csv` (a file of the repo) as its cells.csv.
        fn results_from(&self, name: &str, csv: &str) -> PathBuf {
            let dir = self.0.join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(csv),
                dir.join("cells.csv"),
            )
            .unwrap();
            dir
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Measurements of two earlier builds (two older headers) and the orphan follow-ups.
    const V1: &str = "docs/measurements/2026-11-22-tcg-2core/cells.csv";
    const V2: &str = "docs/measurements/2026-11-22-tcg-2core-counters/cells.csv";
    const DEFAULT_ORPHANS: &str =
        "docs/measurements/2026-11-22-orphan-drain/default-orphans.cells.csv";
    const RAISED_ORPHANS: &str =
        "docs/measurements/2026-11-22-orphan-drain/raised-orphans.cells.csv";

    /// Every file under `dir` (relative path -> contents), to compare states of a tree.
    #[derive(PartialEq)]
    struct Tree(BTreeMap<PathBuf, Vec<u8>>);
    impl fmt::Debug for Tree {
        /// Paths and sizes: the contents of a cells.csv are too long to read in a failure.
        fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.debug_map()
                .entries(self.0.iter().map(|(p, b)| (p, b.len())))
                .finish()
        }
    }
    fn tree(dir: &Path) -> Tree {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.insert(
                        p.strip_prefix(root).unwrap().to_owned(),
                        fs::read(&p).unwrap(),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        if dir.exists() {
            walk(dir, dir, &mut out);
        }
        Tree(out)
    }

    /// A run directory with a run.json and one cell directory.
    fn run_dir(results: &Path, run_id: &str, log: &str) {
        let cell = results.join(run_id).join("ad8a7eda5994-r1");
        fs::create_dir_all(&cell).unwrap();
        fs::write(
            results.join(run_id).join("run.json"),
            format!("{{\"run_id\":\"{run_id}\"}}\n"),
        )
        .unwrap();
        fs::write(cell.join("server.serial.log"), log).unwrap();
    }

    #[test]
    fn union_of_older_headers_deduplicated_in_time_order() {
        let tmp = TempDir::new("union");
        let v1 = tmp.results_from("v1", V1);
        let v2 = tmp.results_from("v2", V2);
        let default = tmp.results_from("default", DEFAULT_ORPHANS);
        let raised = tmp.results_from("raised", RAISED_ORPHANS);
        // The same rows again, from a copy of the directory (an identical duplicate).
        let v1_again = tmp.results_from("v1-again", V1);
        // And a directory of this build, with one row older than all the others.
        let mut store = ResultsStore::open(&tmp.0, "current").unwrap();
        store.append(&CellRow::example("c9", 1, "ok")).unwrap();
        let current = store.dir().to_owned();
        let out = tmp.0.join("out/m");
        let inputs = [raised, v2.clone(), v1.clone(), current, default, v1_again];
        let before: Vec<_> = inputs.iter().map(|d| tree(d)).collect();

        let r = merge(&out, &inputs).unwrap();
        assert_eq!((r.inputs, r.rows, r.new_rows, r.duplicates), (6, 19, 19, 8));
        let text = fs::read_to_string(out.join("cells.csv")).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            header_line(),
            "this build's header"
        );
        let rows = results::read_csv(&out.join("cells.csv")).unwrap();
        let runs: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        let want: Vec<&str> = [
            ["a1b2c3"].as_slice(),
            &["c1947c"; 8],
            &["19350d", "12ae54"],
            &["c69198"; 8],
        ]
        .concat();
        assert_eq!(runs, want, "rows in started_at order");
        // Older rows keep their values; the columns they lack are empty or at their defaults.
        let v1_rows = results::read_csv(&v1.join("cells.csv")).unwrap();
        assert_eq!(rows[0], CellRow::example("c9", 1, "ok"));
        assert_eq!(&rows[1..9], &v1_rows[..]);
        assert!(rows[1..9]
            .iter()
            .all(|r| r.undrained_connections.is_none() && r.qemu == "system"));
        assert!(rows[11..].iter().all(|r| r.undrained_connections.is_some()));
        assert!(out.join("summary.md").is_file());
        assert!(
            !out.join("cells.csv.pre-migration").exists(),
            "nothing to migrate in a new OUT"
        );
        let after: Vec<_> = inputs.iter().map(|d| tree(d)).collect();
        assert_eq!(before, after, "inputs untouched");
    }

    #[test]
    fn conflicting_rows_write_nothing() {
        let tmp = TempDir::new("conflict");
        let v2 = tmp.results_from("v2", V2);
        let edited = tmp.results_from("edited", V2);
        let text = fs::read_to_string(edited.join("cells.csv")).unwrap();
        // The first row with a drain time gets another one.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let drain = header.iter().position(|c| *c == "drain_seconds").unwrap();
        let at = (1..lines.len())
            .find(|&i| !lines[i].split(',').nth(drain).unwrap().is_empty())
            .unwrap();
        let mut fields: Vec<String> = lines[at].split(',').map(str::to_owned).collect();
        fields[drain] = "99.5".into();
        lines[at] = fields.join(",");
        fs::write(edited.join("cells.csv"), lines.join("\n") + "\n").unwrap();
        run_dir(&edited, "c69198", "boot\n");

        // Into a new OUT: not even the directory is created.
        let out = tmp.0.join("out");
        let err = merge(&out, &[v2.clone(), edited.clone()]).unwrap_err();
        let MergeError::RowConflict(c) = &err else {
            panic!("not a row conflict: {err}");
        };
        let RowConflict {
            key,
            column,
            first,
            second,
            second_value,
            ..
        } = c.as_ref();
        assert_eq!((key.run_id.as_str(), key.repetition), ("c69198", 1));
        assert_eq!(key.cell_id, fields[1]);
        assert_eq!(column, "drain_seconds");
        assert_eq!(
            (first, second),
            (&v2.join("cells.csv"), &edited.join("cells.csv"))
        );
        assert_eq!(second_value, "99.5");
        let msg = err.to_string();
        for needle in [
            "c69198",
            &fields[1],
            "drain_seconds",
            "v2/cells.csv",
            "edited/cells.csv",
            "nothing was written",
        ] {
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
        assert!(!out.exists());

        // Into an OUT holding results: it stays as it was, byte for byte.
        merge(&out, std::slice::from_ref(&v2)).unwrap();
        let before = tree(&out);
        assert!(matches!(
            merge(&out, &[edited]),
            Err(MergeError::RowConflict(_))
        ));
        assert_eq!(tree(&out), before);
    }

    #[test]
    fn run_dirs_are_copied_once_and_must_agree() {
        let tmp = TempDir::new("rundirs");
        let a = tmp.results_from("a", V1);
        let b = tmp.results_from("b", DEFAULT_ORPHANS);
        let a2 = tmp.results_from("a2", V1);
        run_dir(&a, "c1947c", "boot\nNSHB v=1 seq=1\n");
        run_dir(&a2, "c1947c", "boot\nNSHB v=1 seq=1\n");
        run_dir(&b, "19350d", "other\n");
        fs::create_dir_all(b.join("notes")).unwrap();
        let out = tmp.0.join("out");
        let r = merge(&out, &[a.clone(), b.clone(), a2.clone()]).unwrap();
        assert_eq!(r.copied_runs, ["19350d", "c1947c"]);
        assert_eq!(r.skipped, [b.join("notes")], "not a run id: not copied");
        assert_eq!(tree(&out.join("c1947c")), tree(&a.join("c1947c")));
        assert_eq!(tree(&out.join("19350d")), tree(&b.join("19350d")));
        assert!(!out.join("notes").exists());
        let leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // The same run directory with one file changed, and with one file more.
        let before = tree(&out);
        let c = tmp.results_from("c", V1);
        run_dir(&c, "c1947c", "boot\nNSHB v=1 seq=2\n");
        let err = merge(&out, std::slice::from_ref(&c)).unwrap_err();
        let MergeError::RunDirConflict {
            run_id,
            path,
            what,
            first,
            second,
        } = &err
        else {
            panic!("not a run dir conflict: {err}");
        };
        assert_eq!(run_id, "c1947c");
        assert_eq!(path, Path::new("ad8a7eda5994-r1/server.serial.log"));
        assert_eq!(*what, "contents differ");
        assert_eq!((first, second), (&out.join("c1947c"), &c.join("c1947c")));
        run_dir(&c, "c1947c", "boot\nNSHB v=1 seq=1\n");
        fs::write(c.join("c1947c/nicstorm.log"), "late\n").unwrap();
        let err = merge(&out, &[c]).unwrap_err();
        assert!(
            err.to_string()
                .contains("differs at nicstorm.log: only in the second"),
            "{err}"
        );
        assert_eq!(tree(&out), before, "nothing written");
    }

    #[test]
    fn merging_again_changes_nothing() {
        let tmp = TempDir::new("idem");
        let a = tmp.results_from("a", V1);
        let b = tmp.results_from("b", V2);
        run_dir(&a, "c1947c", "a\n");
        run_dir(&b, "c69198", "b\n");
        let out = tmp.0.join("out");
        merge(&out, &[a.clone(), b.clone()]).unwrap();
        let once = tree(&out);
        // The inputs again, and the output into itself.
        let r = merge(&out, &[b, a]).unwrap();
        assert_eq!((r.new_rows, r.duplicates, r.copied_runs.len()), (0, 16, 0));
        assert_eq!(tree(&out), once);
        let copy = tmp.0.join("copy");
        merge(&copy, std::slice::from_ref(&out)).unwrap();
        merge(&out, &[out.clone(), copy.clone()]).unwrap();
        assert_eq!(tree(&out), once);
        // The copy holds the same, except that its summary and report name their directory.
        let (mut copied, mut once) = (tree(&copy).0, once.0);
        let text = |t: &mut BTreeMap<PathBuf, Vec<u8>>, f: &str| {
            String::from_utf8(t.remove(Path::new(f)).unwrap()).unwrap()
        };
        assert_eq!(
            text(&mut copied, "summary.md"),
            text(&mut once, "summary.md").replace("results: out", "results: copy")
        );
        let (report_copy, report_once) = (
            text(&mut copied, "report.html"),
            text(&mut once, "report.html"),
        );
        assert!(
            report_once.contains("<title>nicstorm report: out</title>"),
            "report rebuilt"
        );
        assert_eq!(
            report_copy,
            report_once
                .replace("nicstorm report: out", "nicstorm report: copy")
                .replace("/out/cells.csv", "/copy/cells.csv")
        );
        assert_eq!(copied, once);
    }

    #[test]
    fn output_is_an_ordinary_results_directory() {
        let tmp = TempDir::new("ordinary");
        let a = tmp.results_from("a", RAISED_ORPHANS);
        // OUT already holds results of an earlier build: kept, migrated, original beside it.
        let out = tmp.results_from("m", DEFAULT_ORPHANS);
        let original = fs::read(out.join("cells.csv")).unwrap();
        let r = merge(&out, &[a]).unwrap();
        assert_eq!((r.inputs, r.rows, r.new_rows), (2, 2, 1));
        assert_eq!(
            fs::read(out.join("cells.csv.pre-migration")).unwrap(),
            original
        );
        // A later run appends to it as to any results directory.
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(store.rows().len(), 2);
        store.append(&CellRow::example("c9", 1, "ok")).unwrap();
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let ids: Vec<&str> = store.rows().iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!(ids, ["ad8a7eda5994", "46a36b5c2fd6", "c9"]);
    }

    #[test]
    fn refuses_what_it_cannot_read_without_writing() {
        let tmp = TempDir::new("refuse");
        let good = tmp.results_from("good", V2);
        let out = tmp.0.join("out");

        let foreign = tmp.0.join("foreign");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(
            foreign.join("cells.csv"),
            "run_id,cell_id,verdict\nx,y,ok\n",
        )
        .unwrap();
        let err = merge(&out, &[good.clone(), foreign.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("foreign/cells.csv"), "{err}");
        assert!(
            err.contains("header is not one nicstorm ever wrote"),
            "{err}"
        );

        let torn = tmp.results_from("torn", V2);
        let mut text = fs::read_to_string(torn.join("cells.csv")).unwrap();
        text.push_str("c69198,abc,1,2026");
        fs::write(torn.join("cells.csv"), text).unwrap();
        let err = merge(&out, &[good.clone(), torn.clone()]).unwrap_err();
        assert!(
            matches!(&err, MergeError::Unreadable { lines: 1, file } if *file == torn.join("cells.csv")),
            "{err}"
        );

        let bad_row = tmp.results_from("badrow", V2);
        let mut text = fs::read_to_string(bad_row.join("cells.csv")).unwrap();
        text.push_str("garbage,with,too,few,fields\n");
        fs::write(bad_row.join("cells.csv"), text).unwrap();
        assert!(matches!(
            merge(&out, &[bad_row]),
            Err(MergeError::Unreadable { lines: 1, .. })
        ));

        let run_dir_by_mistake = tmp.0.join("good/c69198");
        fs::create_dir_all(&run_dir_by_mistake).unwrap();
        let err = merge(&out, &[run_dir_by_mistake]).unwrap_err();
        assert!(matches!(&err, MergeError::NotResults(_)), "{err}");
        assert!(
            err.to_string()
                .contains("good/c69198: not a results directory"),
            "{err}"
        );
        assert!(!out.exists(), "nothing written");
    }
}
