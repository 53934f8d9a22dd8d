//! Cell ids are the identity of results (resume, merge, shards), so no change to how a matrix
//! is parsed may move them. tests/fixtures/cell-ids.txt holds the id of every cell of every
//! shipped matrix (matrix/, tests/matrices/, docs/measurements/*/) and of a few inline
//! matrices that exercise the value syntax (sizes, durations), as the code computed them when
//! the fixture was recorded; this test recomputes them and wants the same.
//!
//! A new matrix file fails the test until its ids are added: run it once with
//! `NICSTORM_RECORD_CELL_IDS=1` and commit the fixture (only when no existing line changes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nicstorm::matrix::plan::load_plan;

const FIXTURE: &str = "tests/fixtures/cell-ids.txt";

/// Matrices that exercise the value syntax shipped files do not use (fixed memory in every
/// unit, durations in every unit). Memory in MiB is part of the id.
const INLINE: &[(&str, &str)] = &[
    (
        "fixed-memory",
        "axes:\n  nic: [vmxnet3]\n  mode: [bridge]\n  connections: [30000]\n  memory: [auto, 6GiB, 1536MiB, 512MiB, 1TiB, 262145KiB]\n",
    ),
    (
        "durations",
        "axes:\n  nic: [e1000]\n  mode: [nat]\n  connections: [3000]\nsettings:\n  hold: 500ms\n  observe: 2m\n  ramp_timeout: 1h\n  boot_timeout: 90s\n  hang_gap: 1s\n  ssh_slow_min: 0s\n",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every shipped matrix, relative to the repository, sorted.
fn shipped() -> Vec<String> {
    let root = repo();
    let yaml_in = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect()
    };
    let mut files = yaml_in(&root.join("matrix"));
    files.extend(yaml_in(&root.join("tests/matrices")));
    for d in std::fs::read_dir(root.join("docs/measurements"))
        .unwrap()
        .flatten()
    {
        if d.path().is_dir() {
            files.extend(yaml_in(&d.path()));
        }
    }
    let mut names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

/// "SOURCE INDEX ID" per cell, in plan order.
fn current() -> String {
    let mut out = String::new();
    for name in shipped() {
        let plan = load_plan(&repo().join(&name)).unwrap_or_else(|e| panic!("{e}"));
        for (i, c) in plan.cells.iter().enumerate() {
            writeln!(out, "{name} {} {}", i + 1, c.id).unwrap();
        }
    }
    let dir = std::env::temp_dir().join(format!("nicstorm-cell-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in INLINE {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let plan = load_plan(&path).unwrap_or_else(|e| panic!("{e}"));
        for (i, c) in plan.cells.iter().enumerate() {
            writeln!(out, "inline:{name} {} {}", i + 1, c.id).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn cell_ids_of_every_shipped_matrix_are_unchanged() {
    let now = current();
    let path = repo().join(FIXTURE);
    if std::env::var_os("NICSTORM_RECORD_CELL_IDS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{FIXTURE}: {e} (record it with NICSTORM_RECORD_CELL_IDS=1)"));
    let changed: Vec<String> = recorded
        .lines()
        .filter(|l| !now.lines().any(|n| n == *l))
        .map(|l| format!("recorded, now different or gone: {l}"))
        .chain(
            now.lines()
                .filter(|n| !recorded.lines().any(|l| l == *n))
                .map(|n| format!("not recorded: {n}")),
        )
        .collect();
    assert!(changed.is_empty(), "{}", changed.join("\n"));
}
