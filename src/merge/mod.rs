//! `nicstorm merge OUT IN...`: results directories of several hosts or runs (each a
//! results/<matrix>/ with cells.csv and run directories) combined into one.
//!
//! Rows are keyed by (run_id, cell_id, repetition, search_step): a run id is drawn once per
//! run, and within a run a cell runs once per repetition (a search: once per step), so the
//! same key in two inputs is the same measurement, copied twice. Identical copies merge into
//! one; copies that differ are a conflict, and a conflict writes nothing: every input is read
//! and every run directory compared before the first byte is written. OUT, when it already
//! holds results, is one more input, so merging again changes nothing.
//!
//! The output is an ordinary results directory (this build's header, rows in time order),
//! which `nicstorm run --results` appends to as usual.
//!
//! This file holds the errors, the sequence (read and check everything, then write) and the
//! output; rows.rs makes the union of the rows, rundirs.rs checks and copies run directories.

mod rows;
mod rundirs;
#[cfg(test)]
mod test_dirs;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::results::file::{keep_pre_migration, replace, CsvText};
use crate::results::lock::CsvLock;
use crate::results::summary;
use crate::results::{header_line, row_line, CellRow};

use rows::RowConflict;

/// Why a merge failed. All but `Io` are found before anything is written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
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

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MergeReport {
    /// Results directories read, OUT included when it held results.
    pub(crate) inputs: usize,
    /// Rows in the merged cells.csv.
    pub(crate) rows: usize,
    /// Of those, rows OUT did not hold before.
    pub(crate) new_rows: usize,
    /// Identical copies of a row dropped.
    pub(crate) duplicates: usize,
    /// Run directories copied into OUT.
    pub(crate) copied_runs: Vec<String>,
    /// Directories in inputs that are not run directories (name not a run id); not copied.
    pub(crate) skipped: Vec<PathBuf>,
    /// summary.md, rebuilt.
    pub(crate) summary: PathBuf,
}

/// One results directory taking part.
pub(crate) struct Source {
    dir: PathBuf,
    csv: PathBuf,
    is_out: bool,
}

/// Merges the results directories `inputs` into `out` (see the module header).
pub(crate) fn merge(out: &Path, inputs: &[PathBuf]) -> Result<MergeReport, MergeError> {
    let sources = sources(out, inputs)?;
    let mut rows_of = rows::read_sources(&sources)?;
    rows::union(&sources, &rows_of)?;
    let run_dirs = rundirs::check(&sources)?;

    // Everything is checked: write, holding OUT's cells.csv exclusively, so a run appending
    // to it or another merge waits, and nothing is lost between reading it and replacing it.
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let csv = out.join("cells.csv");
    let created = match fs::File::options().write(true).create_new(true).open(&csv) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("creating {}", csv.display()))
                .into())
        }
    };
    let lock = CsvLock::exclusive(&csv)?;
    // OUT as it is now that it is held (rows appended or merged since it was read above).
    let out_now = CsvText::parse(&csv, &lock.read_to_string()?)?;
    rows_of[0] = rows::read_all(&csv, &out_now)?;
    let union = match rows::union(&sources, &rows_of) {
        Ok(u) => u,
        Err(e) => {
            if created && out_now.complete.is_empty() {
                let _ = fs::remove_file(&csv);
            }
            return Err(e);
        }
    };
    // Run directories first, so cells.csv never names a run whose directory is missing.
    let copied_runs = rundirs::copy_missing(&run_dirs.runs, out)?;
    let new_lock = write_csv(&csv, &out_now, &union.rows)?;
    let summary = rebuild_outputs(out, &union.rows)?;
    drop((new_lock, lock));
    Ok(MergeReport {
        inputs: sources.len() - usize::from(created),
        rows: union.rows.len(),
        new_rows: union.new_rows,
        duplicates: union.duplicates,
        copied_runs,
        skipped: run_dirs.skipped,
        summary,
    })
}

/// OUT first (its rows empty while it has no cells.csv), then each input, each directory once.
fn sources(out: &Path, inputs: &[PathBuf]) -> Result<Vec<Source>, MergeError> {
    let mut sources = vec![Source {
        dir: out.to_owned(),
        csv: out.join("cells.csv"),
        is_out: true,
    }];
    let mut seen = Vec::new();
    if out.exists() {
        let canon = out
            .canonicalize()
            .with_context(|| format!("resolving {}", out.display()))?;
        seen.push(canon);
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

/// Replaces OUT/cells.csv (`csv`, held; `old` as read under its lock) with this build's
/// header and `rows`, unless it already holds exactly that; returns the new file's lock. An
/// earlier build's file is kept beside it (`keep_pre_migration`), as a run keeps one when it
/// migrates.
fn write_csv(csv: &Path, old: &CsvText, rows: &[CellRow]) -> anyhow::Result<Option<CsvLock>> {
    let mut bytes = format!("{}\n", header_line()).into_bytes();
    for r in rows {
        bytes.extend(row_line(r)?);
    }
    if old.complete.as_bytes() == bytes.as_slice() && old.torn.is_none() {
        return Ok(None);
    }
    if old.migrated.is_some() {
        keep_pre_migration(csv, old.complete.as_bytes())?;
    }
    Ok(Some(replace(csv, &bytes)?))
}

/// Rebuilds what is derived from OUT/cells.csv, whose rows are `rows` (its lock is held, so
/// neither reads it again); returns the summary's path.
fn rebuild_outputs(out: &Path, rows: &[CellRow]) -> anyhow::Result<PathBuf> {
    let canon = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let Some(name) = canon.file_name() else {
        anyhow::bail!("{}: cannot be a results directory", out.display());
    };
    let summary = summary::write_summary(out, &name.to_string_lossy(), rows)?;
    crate::results::tidy::write_errno_csv(out, rows)?;
    // The report too, so a merged directory never shows a report of the rows before it.
    crate::report::write_report_of(out, rows)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ResultsStore;
    use std::collections::BTreeMap;
    use test_dirs::{run_dir, tree, TempDir, DEFAULT_ORPHANS, RAISED_ORPHANS, V1, V2};

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

    /// A results directory holding one breaking-point search, its rows made as the runner
    /// makes them: `next_search_step` picks each count and step, `CellRow::new` makes the row
    /// (the cell at that count, its step; the cell id and repetition those of the searched
    /// cell), one `error` step retried. Counts up to 7000 are ok, above hung.
    fn searched(root: &Path, name: &str, run_id: &str) -> PathBuf {
        use crate::matrix::plan::{parse_plan, Accel};
        use crate::model::phase::Phase;
        use crate::model::verdict::Verdict;
        use crate::results::row::{RowEnd, RowIdentity};
        use crate::results::select::{next_search_step, SearchStep};
        let plan = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge]}\nsearch:\n  connections: {from: 2000, to: 30000, resolution: 10%}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let cell = &plan.cells[0];
        let mut store = ResultsStore::open(root, name).unwrap();
        let mut errored = false;
        while let Some(SearchStep::Run { count, step }) =
            next_search_step(store.rows(), cell, 1, Accel::Kvm, &plan.settings, None)
        {
            let at = cell.at(count);
            let end = if count > 2000 && !errored {
                errored = true;
                RowEnd::Failed {
                    phase: Phase::Provision,
                    message: "ssh did not answer".into(),
                }
            } else {
                RowEnd::Measured {
                    verdict: if count <= 7000 {
                        Verdict::Ok
                    } else {
                        Verdict::Hung
                    },
                    recovery_seconds: None,
                }
            };
            let id = RowIdentity {
                run_id,
                cell: &at,
                repetition: 1,
                search_step: Some(step),
                accel: Accel::Kvm,
                sizes: at.resolve(Accel::Kvm, &plan.settings),
            };
            let mut row = CellRow::new(&id, &end);
            row.started_at = format!("2026-11-25T00:{step:02}:00Z");
            store.append(&row).unwrap();
        }
        let rows = store.rows();
        assert!(rows.len() >= 5, "a real search: {rows:?}");
        assert!(rows
            .iter()
            .all(|r| r.cell_id == cell.id && r.repetition == 1));
        store.dir().to_owned()
    }

    /// Every step of a search keeps its cell's id and repetition; merging a directory holding
    /// one (into itself, into another directory, again) works and changes nothing the second
    /// time.
    #[test]
    fn a_search_merges_into_itself_and_elsewhere() {
        let tmp = TempDir::new("search");
        let a = searched(&tmp.0, "a", "5e1f00");
        let steps = crate::results::read_csv(&a.join("cells.csv")).unwrap();
        let r = merge(&a, std::slice::from_ref(&a)).unwrap();
        assert_eq!((r.rows, r.new_rows, r.duplicates), (steps.len(), 0, 0));
        let once = tree(&a);
        merge(&a, std::slice::from_ref(&a)).unwrap();
        assert_eq!(tree(&a), once, "into itself again: unchanged");

        // Into a directory of another host's run of the same search, and again.
        let b = searched(&tmp.0, "b", "c0ffee");
        let r = merge(&b, std::slice::from_ref(&a)).unwrap();
        assert_eq!((r.rows, r.new_rows), (2 * steps.len(), steps.len()));
        let merged = tree(&b);
        let r = merge(&b, &[a.clone(), b.clone()]).unwrap();
        assert_eq!((r.new_rows, r.duplicates), (0, steps.len()));
        assert_eq!(tree(&b), merged);
        let rows = crate::results::read_csv(&b.join("cells.csv")).unwrap();
        let summary = fs::read_to_string(b.join("summary.md")).unwrap();
        assert!(summary.contains("last ok"), "{summary}");
        assert_eq!(
            rows.iter().filter(|r| r.run_id == "5e1f00").count(),
            steps.len()
        );
    }

    /// A merge into a directory whose cells.csv a writer holds (a run appending) waits for
    /// it, and the row appended meanwhile is in the result: none is lost.
    #[test]
    fn a_merge_waits_for_the_writer_lock() {
        let tmp = TempDir::new("locked");
        let a = tmp.results_from("a", V2);
        let mut store = ResultsStore::open(&tmp.0, "out").unwrap();
        store.append(&CellRow::example("c1", 1, "ok")).unwrap();
        let out = store.dir().to_owned();
        let lock = CsvLock::exclusive(&out.join("cells.csv")).unwrap();
        let merging = {
            let (out, a) = (out.clone(), a.clone());
            std::thread::spawn(move || merge(&out, &[a]))
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(!merging.is_finished(), "the merge waits for the lock");
        let late = CellRow {
            started_at: "2026-11-25T00:00:00Z".into(),
            ..CellRow::example("c-late", 1, "ok")
        };
        lock.append(&row_line(&late).unwrap()).unwrap();
        drop(lock);
        let r = merging.join().unwrap().unwrap();
        assert_eq!((r.rows, r.new_rows), (10, 8));
        let rows = crate::results::read_csv(&out.join("cells.csv")).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!((ids[0], ids[9]), ("c1", "c-late"), "{ids:?}");
        // The run goes on appending: to the merged file, whose rows it reads again first.
        store.append(&CellRow::example("c-after", 1, "ok")).unwrap();
        assert_eq!(store.rows().len(), 11);
        let rows = crate::results::read_csv(&out.join("cells.csv")).unwrap();
        assert_eq!(rows.as_slice(), store.rows());
    }

    /// Two merges into one OUT at once: both land, whichever takes the lock first.
    #[test]
    fn two_concurrent_merges_both_land() {
        let tmp = TempDir::new("concurrent");
        let a = tmp.results_from("a", V1);
        let b = tmp.results_from("b", V2);
        run_dir(&a, "c1947c", "a\n");
        run_dir(&b, "c69198", "b\n");
        for round in 0..3 {
            let out = tmp.0.join(format!("out{round}"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            let merges: Vec<_> = [a.clone(), b.clone()]
                .into_iter()
                .map(|input| {
                    let (out, start) = (out.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        merge(&out, &[input])
                    })
                })
                .collect();
            for m in merges {
                m.join().unwrap().unwrap();
            }
            let rows = crate::results::read_csv(&out.join("cells.csv")).unwrap();
            assert_eq!(rows.len(), 16, "round {round}");
            assert!(out.join("c1947c").is_dir() && out.join("c69198").is_dir());
            let stray: Vec<_> = fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp"))
                .collect();
            assert!(stray.is_empty(), "temp files left: {stray:?}");
        }
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
}
