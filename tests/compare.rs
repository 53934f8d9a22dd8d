//! `nicstorm compare` end to end, the built binary on the fixture results in
//! tests/fixtures/compare/ (real rows of docs/measurements, see its README): identical inputs
//! pass the gate, a planted regression and a planted hang fail it with exit 4, a baseline
//! file gives the same answers, bad arguments are exit 1 or 2 with a message naming them, and
//! the comparisons committed in docs/measurements are what this build writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `nicstorm compare ARGS` in the repository (paths relative to it).
fn compare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nicstorm"))
        .arg("compare")
        .args(args)
        .current_dir(REPO)
        .output()
        .expect("run nicstorm")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const BASE: &str = "tests/fixtures/compare/base";
const REGRESSED: &str = "tests/fixtures/compare/regressed";
const HUNG: &str = "tests/fixtures/compare/hung";
const GATE: &[&str] = &[
    "--fail-on",
    "worse",
    "--fail-on-verdict",
    "hung,ssh_dropped",
];

#[test]
fn identical_inputs_pass_the_gate() {
    let o = compare(&[&[BASE, BASE][..], GATE].concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("2 same, 0 undecided"), "{out}");
    assert!(out.contains("Gate: passed"), "{out}");
    // The same rows on both sides: said, so "same" is not taken for a finding.
    assert!(out.contains("a repetition compared with itself"), "{out}");
}

#[test]
fn a_planted_regression_fails_the_gate() {
    let o = compare(&[&[BASE, REGRESSED][..], GATE].concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}{err}");
    assert!(out.contains("1 worse"), "{out}");
    assert!(
        out.contains("worse: drain_seconds, recovery_seconds"),
        "{out}"
    );
    assert!(err.contains("the gate failed"), "{err}");
    // Back to back: the page says so.
    assert!(out.contains("back to back"), "{out}");
    // Without a gate the same comparison is a result, not a failure.
    let o = compare(&[BASE, REGRESSED]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_planted_hang_fails_the_verdict_rule() {
    let o = compare(&[&[BASE, HUNG][..], GATE].concat());
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("NEW repetition 2 of run 0e1e56 ended hung"),
        "{out}"
    );
    // Statistically one hang in five is undecided: only the verdict rule catches it.
    assert!(out.contains("0 worse"), "{out}");
    let o = compare(&[BASE, HUNG, "--fail-on", "worse"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_baseline_file_gates_the_same_way() {
    let bl = "tests/fixtures/compare/baseline.yaml";
    let o = compare(&["--baseline", bl, BASE, "--fail-on", "worse"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = compare(&["--baseline", bl, REGRESSED, "--fail-on", "worse"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("(baseline tests/fixtures/compare/baseline.yaml)"),
        "{out}"
    );
    // The file's tolerance is the one used: 20% of the base's median drain.
    let json = compare(&["--baseline", bl, REGRESSED, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let drain = v["cells"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "drain_seconds")
        .unwrap();
    assert_eq!(drain["tolerance"]["relative"], 0.2);
}

#[test]
fn json_follows_its_schema() {
    let o = compare(&[BASE, REGRESSED, "--format", "json", "--fail-on", "worse"]);
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    assert_eq!(v["schema"], "nicstorm-compare/1");
    assert_eq!(v["base"]["source"], BASE);
    assert_eq!(v["counts"]["worse"], 1);
    assert_eq!(v["gate"]["failed"], true);
    assert_eq!(v["order"]["interleaving"], "back_to_back");
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        for key in [
            "title",
            "host_class",
            "axes",
            "base_verdicts",
            "new_verdicts",
            "outcome",
            "why",
            "order",
            "metrics",
        ] {
            assert!(!c[key].is_null(), "{key} in {c}");
        }
        let m = &c["metrics"][1];
        assert_eq!(m["metric"], "drain_seconds");
        assert_eq!(m["better"], "lower");
        assert_eq!(m["test"]["kind"], "mann_whitney");
        assert!(m["base"]["median"].is_number());
    }
}

#[test]
fn out_writes_markdown_html_and_json() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-out");
    let _ = std::fs::remove_dir_all(&dir);
    let o = compare(&[BASE, REGRESSED, "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
    assert_eq!(md, String::from_utf8(o.stdout).unwrap());
    let html = std::fs::read_to_string(dir.join("compare.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("class=\"o-worse\""));
    assert!(!html.contains("<script"));
    let json = std::fs::read_to_string(dir.join("compare.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&json).unwrap();
}

#[test]
fn bad_arguments_name_what_is_allowed() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-bad");
    std::fs::create_dir_all(&tmp).unwrap();
    let bl = tmp.join("baseline.yaml");
    std::fs::write(
        &bl,
        "version: 1\nresults: x\ntolerances:\n  drain: {relative: 0.1}\n",
    )
    .unwrap();
    let bl = bl.to_str().unwrap().to_owned();
    // (arguments, exit code, what stderr must say)
    let table: &[(&[&str], i32, &[&str])] = &[
        (
            &["--baseline", &bl, BASE],
            1,
            &[
                "baseline.yaml:4",
                "tolerances.drain",
                "unknown metric \"drain\"",
                "allowed: verdict, drain_seconds",
            ],
        ),
        (
            &[BASE, "--axis", "emulator=a,b"],
            2,
            &[
                "unknown axis \"emulator\"",
                "allowed: nic, mode, vhost, qemu",
            ],
        ),
        (
            &[BASE, BASE, "--fail-on", "better"],
            2,
            &["\"better\"", "allowed values are worse, undecided"],
        ),
        (
            &[BASE, BASE, "--fail-on-verdict", "hang"],
            2,
            &["\"hang\"", "unknown verdict", "allowed: ok, ssh_slow"],
        ),
        (
            &[BASE, "--axis", "qemu=system,nosuch"],
            1,
            &[
                "no row of tests/fixtures/compare/base has qemu=nosuch",
                "values there: system",
            ],
        ),
        (&[BASE], 1, &["give BASE NEW"]),
        (
            &["tests/fixtures/compare", BASE],
            1,
            &["tests/fixtures/compare: not a results directory"],
        ),
    ];
    for (args, code, want) in table {
        let o = compare(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        for w in *want {
            assert!(err.contains(w), "{args:?}: {err}");
        }
    }
}

/// The comparisons kept in docs/measurements, each with the command that made it (its
/// compare.md says it): what this build writes for the same inputs.
#[test]
fn committed_comparisons_are_what_this_build_writes() {
    let kept: &[(&str, &[&str])] = &[
        (
            "docs/measurements/2026-11-24-qemu-builds/compare-system-vs-b32",
            &[
                "docs/measurements/2026-11-24-qemu-builds",
                "--axis",
                "qemu=system,vmnet-flow-control/b32",
            ],
        ),
        (
            "docs/measurements/2026-11-22-tcg-2core-counters/compare-with-tcg-2core",
            &[
                "docs/measurements/2026-11-22-tcg-2core",
                "docs/measurements/2026-11-22-tcg-2core-counters",
            ],
        ),
        (
            "docs/measurements/2026-12-07-freeze-study/repeat/compare-retry-vs-disable",
            &[
                "docs/measurements/2026-12-07-freeze-study/repeat",
                "--axis",
                "qemu_env=NICSTORM_VMNET_BURST=256;NICSTORM_VMNET_MODE=retry;NICSTORM_VMNET_PPMS=4,NICSTORM_VMNET_BURST=256;NICSTORM_VMNET_MODE=disable;NICSTORM_VMNET_PPMS=4",
            ],
        ),
    ];
    for (dir, args) in kept {
        let o = compare(args);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let dir = PathBuf::from(REPO).join(dir);
        let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
        assert_eq!(
            String::from_utf8(o.stdout).unwrap(),
            md,
            "{}: rerun the command in its README",
            dir.display()
        );
        assert!(dir.join("compare.html").is_file() && dir.join("compare.json").is_file());
    }
}

#[test]
fn a_gate_over_nothing_fails() {
    // Two directories without a cell in common: the 2026-11-22 runs (30000 connections, an
    // unknown host) and the fixture (10000, a known host).
    let o = compare(&[
        BASE,
        "docs/measurements/2026-11-22-tcg-2core",
        "--fail-on",
        "worse",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("no cell is on both sides"), "{out}");
    assert!(out.contains("Host classes of BASE: tcg, AMD EPYC"), "{out}");
    assert!(out.contains("Of NEW: tcg, unknown host."), "{out}");
    let o = compare(&[BASE, "docs/measurements/2026-11-22-tcg-2core"]);
    assert_eq!(o.status.code(), Some(0));
}
