//! Test helpers of the merge tests: scratch results directories, run directories, and
//! snapshots of a tree to compare its states.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

pub(crate) use crate::support::testing::TempDir;

impl TempDir {
    /// A results directory `name` holding `csv` (a file of the repo) as its cells.csv.
    pub(crate) fn results_from(&self, name: &str, csv: &str) -> PathBuf {
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

/// Measurements of two earlier builds (two older headers) and the orphan follow-ups.
pub(crate) const V1: &str = "docs/measurements/2026-11-22-tcg-2core/cells.csv";
pub(crate) const V2: &str = "docs/measurements/2026-11-22-tcg-2core-counters/cells.csv";
pub(crate) const DEFAULT_ORPHANS: &str =
    "docs/measurements/2026-11-22-orphan-drain/default-orphans.cells.csv";
pub(crate) const RAISED_ORPHANS: &str =
    "docs/measurements/2026-11-22-orphan-drain/raised-orphans.cells.csv";

/// Every file under `dir` (relative path -> contents), to compare states of a tree.
#[derive(PartialEq)]
pub(crate) struct Tree(pub(crate) BTreeMap<PathBuf, Vec<u8>>);
impl fmt::Debug for Tree {
    /// Paths and sizes: the contents of a cells.csv are too long to read in a failure.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(p, b)| (p, b.len())))
            .finish()
    }
}
pub(crate) fn tree(dir: &Path) -> Tree {
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
pub(crate) fn run_dir(results: &Path, run_id: &str, log: &str) {
    let cell = results.join(run_id).join("ad8a7eda5994-r1");
    fs::create_dir_all(&cell).unwrap();
    fs::write(
        results.join(run_id).join("run.json"),
        format!("{{\"run_id\":\"{run_id}\"}}\n"),
    )
    .unwrap();
    fs::write(cell.join("server.serial.log"), log).unwrap();
}
