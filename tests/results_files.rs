//! The commands that only read results (summary, report, plan) leave a results directory as
//! they found it: an older header is not migrated, a torn last line not set aside, nothing is
//! created (report writes its report.html and nothing else). docs/measurements/ is tracked and
//! read by tests; reading it must not change it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("results-files-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every file under `dir`, with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn nicstorm(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nicstorm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nicstorm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn summary_report_and_plan_change_nothing_in_a_results_directory() {
    let tmp = scratch("readonly");
    std::fs::write(
        tmp.join("m.yaml"),
        "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000]}\n",
    )
    .unwrap();
    // An earlier build's cells.csv (a run would migrate it) with a torn last line (a run
    // would set it aside).
    let dir = tmp.join("results/m");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = std::fs::read_to_string(
        Path::new(REPO).join("docs/measurements/2026-11-22-tcg-2core/cells.csv"),
    )
    .unwrap();
    text.push_str("c1947c,ad8a7eda5994,2,2026-11-2");
    std::fs::write(dir.join("cells.csv"), &text).unwrap();
    let before = tree(&tmp);

    let summary = nicstorm(
        &[
            "summary",
            "m.yaml",
            "--results",
            "results",
            "--format",
            "text",
        ],
        &tmp,
    );
    assert!(
        summary.lines().any(|l| l.starts_with("vmxnet3 ")),
        "{summary}"
    );
    let markdown = nicstorm(
        &[
            "summary",
            "m.yaml",
            "--results",
            "results",
            "--format",
            "markdown",
        ],
        &tmp,
    );
    assert!(markdown.contains("| vmxnet3 |"), "{markdown}");
    nicstorm(&["plan", "m.yaml"], &tmp);
    assert_eq!(tree(&tmp), before, "summary and plan wrote nothing");

    nicstorm(&["report", "--dir", "results/m"], &tmp);
    let mut after = tree(&tmp);
    assert!(after.remove(Path::new("results/m/report.html")).is_some());
    assert_eq!(after, before, "report wrote report.html and nothing else");

    // A matrix without results: nothing to read, and nothing is created.
    let none = nicstorm(&["summary", "m.yaml", "--results", "elsewhere"], &tmp);
    assert_eq!(none, "No results yet.\n");
    assert!(!tmp.join("elsewhere").exists());
}
