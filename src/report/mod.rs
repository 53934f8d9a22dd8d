//! The report: one self-contained HTML page (inline CSS and SVG, no script, nothing fetched)
//! made from a results directory as a run leaves it: cells.csv and, per cell and repetition,
//! `<run_id>/<cell_id>-r<rep>/timeseries.csv` and `counters.csv` when they exist. It reads,
//! never writes, everything but report.html, so it can be rebuilt from any results directory
//! (including docs/measurements/, whose cells.csv have older headers and no time series).

mod counters_file;
mod html;
/// The report's style sheet, which `nicstorm compare`'s page shares.
pub(crate) use html::CSS;
pub mod plots;
mod seed;
pub(crate) mod timeseries;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::results::host_class;
use crate::results::{read_csv, write_atomic, Axes, CellRow};

use counters_file::CounterLine;
use timeseries::TimeSeries;

/// The report's file name inside a results directory.
pub const REPORT_FILE: &str = "report.html";

/// Writes `<dir>/report.html` from the results directory `dir` (the one holding cells.csv,
/// read under its shared lock); returns its path. Nothing else in `dir` changes.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    let rows = Results::read_rows(dir)?;
    write_report_of(dir, &rows)
}

/// Writes `<dir>/report.html` from `rows`, the rows of `dir`'s cells.csv as a caller that
/// holds its lock read them (the runner at the end of a run, a merge); returns its path.
pub(crate) fn write_report_of(dir: &Path, rows: &[CellRow]) -> Result<PathBuf> {
    let path = dir.join(REPORT_FILE);
    write_atomic(&path, html::page(&Results::of_rows(dir, rows))?.as_bytes())?;
    Ok(path)
}

/// The report page of the results directory `dir`, as text.
pub fn render_report(dir: &Path) -> Result<String> {
    let rows = Results::read_rows(dir)?;
    html::page(&Results::of_rows(dir, &rows))
}

/// The results directory a `nicstorm report` argument names: a directory holding cells.csv is
/// itself; anything else is a matrix file whose results are `<results_root>/<file stem>/`.
pub fn results_dir(arg: &Path, results_root: &Path) -> Result<PathBuf> {
    if arg.is_dir() {
        if arg.join("cells.csv").is_file() {
            return Ok(arg.to_path_buf());
        }
        bail!(
            "{}: a directory without cells.csv; give a results directory (e.g. results/nic-modes) or a matrix file",
            arg.display()
        );
    }
    let stem = arg
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: not a matrix file name", arg.display()))?;
    Ok(results_root.join(stem))
}

/// One repetition of a cell: its row and what its directory holds.
pub(crate) struct Rep {
    pub(crate) row: CellRow,
    pub(crate) series: Option<TimeSeries>,
    pub(crate) counters: Option<Vec<CounterLine>>,
    /// Files that were there but could not be read.
    pub(crate) problems: Vec<String>,
}

/// The repetitions of one cell at one target on one kind of host: the unit every statistic
/// is made over (never pooled across host classes or accelerators).
pub(crate) struct Group {
    pub(crate) class: String,
    /// Ascending repetition.
    pub(crate) reps: Vec<Rep>,
}

impl Group {
    /// The first repetition's row: the cell's settings are the same in every one.
    pub(crate) fn row(&self) -> &CellRow {
        &self.reps[0].row
    }

    /// Id of the cell's section on the page.
    pub(crate) fn anchor(&self, class_index: usize) -> String {
        let r = self.row();
        format!(
            "cell-{}-{}-h{class_index}{}",
            r.cell_id,
            r.target.map_or("x".into(), |t| t.to_string()),
            r.search_step.map_or(String::new(), |s| format!("-s{s}"))
        )
    }

    /// Repetitions that measured something (verdict other than `error`).
    pub(crate) fn measured(&self) -> impl Iterator<Item = &Rep> {
        self.reps
            .iter()
            .filter(|r| r.row.verdict != crate::model::verdict::Verdict::Error)
    }

    pub(crate) fn is_search(&self) -> bool {
        self.row().search_id.is_some()
    }
}

/// Everything the page is made of.
pub(crate) struct Results {
    pub(crate) dir: PathBuf,
    /// Rows in cells.csv, and how many of them the page shows.
    pub(crate) rows_read: usize,
    /// Host classes in the order their groups are listed.
    pub(crate) classes: Vec<String>,
    pub(crate) groups: Vec<Group>,
}

impl Results {
    /// The rows of `dir`'s cells.csv.
    fn read_rows(dir: &Path) -> Result<Vec<CellRow>> {
        let csv = dir.join("cells.csv");
        if !csv.is_file() {
            bail!(
                "{}: no cells.csv here; a report is made from a results directory such as results/nic-modes",
                dir.display()
            );
        }
        read_csv(&csv)
    }

    /// The page's data: `rows` (of `dir`'s cells.csv) and what their cell directories hold.
    fn of_rows(dir: &Path, rows: &[CellRow]) -> Results {
        let chosen = crate::results::select::select_rows(rows);
        // Host classes in the order they first appear in the file.
        let mut classes: Vec<String> = vec![];
        for r in &chosen {
            let c = host_class(r);
            if !classes.contains(&c) {
                classes.push(c);
            }
        }
        let mut by_key: BTreeMap<GroupKey, Vec<&CellRow>> = BTreeMap::new();
        for r in chosen {
            let class = host_class(r);
            let pos = classes.iter().position(|c| *c == class).expect("listed");
            by_key.entry(GroupKey::of(pos, r)).or_default().push(r);
        }
        let groups = by_key
            .into_iter()
            .map(|(k, mut rows)| {
                rows.sort_by_key(|r| r.repetition);
                Group {
                    class: k.class,
                    reps: rows.into_iter().map(|r| Rep::load(dir, r)).collect(),
                }
            })
            .collect();
        Results {
            dir: dir.to_path_buf(),
            rows_read: rows.len(),
            classes,
            groups,
        }
    }

    /// Groups of one host class.
    pub(crate) fn in_class<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups.iter().filter(move |g| g.class == class)
    }

    pub(crate) fn class_index(&self, class: &str) -> usize {
        self.classes.iter().position(|c| c == class).unwrap_or(0)
    }
}

impl Rep {
    fn load(dir: &Path, row: &CellRow) -> Rep {
        let cell_dir = dir.join(&row.run_id).join(row.cell_dir_name());
        let mut problems = vec![];
        let series = TimeSeries::read(&cell_dir.join("timeseries.csv")).unwrap_or_else(|e| {
            problems.push(format!("{e:#}"));
            None
        });
        // Results directories kept in docs/measurements/ hold counters-<cell>-r<rep>.csv
        // beside cells.csv instead of the run's cell directories.
        let counters = [
            cell_dir.join("counters.csv"),
            dir.join(format!("counters-{}-r{}.csv", row.cell_id, row.repetition)),
        ]
        .iter()
        .find_map(|p| counters_file::read(p).transpose())
        .and_then(|r| r.map_err(|e| problems.push(format!("{e:#}"))).ok());
        Rep {
            row: row.clone(),
            series,
            counters,
            problems,
        }
    }
}

/// How groups are told apart and ordered: host class first, then the search, the cell's axes
/// as the summary orders them, the target, and the search step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    class_pos: usize,
    class: String,
    search: Option<String>,
    axes: Axes,
    target: Option<u64>,
    search_step: Option<u32>,
    vcpus: Option<u32>,
    cell_id: String,
}

impl GroupKey {
    fn of(class_pos: usize, r: &CellRow) -> GroupKey {
        GroupKey {
            class_pos,
            class: host_class(r),
            search: r.search_id.clone(),
            axes: r.axes(),
            target: r.target,
            search_step: r.search_step,
            vcpus: r.vcpus,
            cell_id: r.cell_id.clone(),
        }
    }
}
