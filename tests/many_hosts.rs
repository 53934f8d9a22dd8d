//! Beyond one host, without VMs: `plan --shard`, `merge` as a user calls it, and
//! scripts/fan-out.sh driven through a stand-in for ssh (which runs the "remote" command
//! locally, in a home directory per host) and for `make matrix` (which copies prepared
//! results instead of booting anything). tests/vm.rs has the real thing.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nicstorm-many-hosts-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn nicstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nicstorm"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Cell ids in a rendered plan table: the second column of rows that start with a number.
fn ids_in_plan(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn plan_shards_cover_the_matrix_once() {
    let all = nicstorm(&["plan", "matrix/nic-modes.yaml"]);
    assert!(all.status.success());
    let all: BTreeSet<String> = ids_in_plan(&text(&all.stdout)).into_iter().collect();
    assert_eq!(all.len(), 8);
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let out = nicstorm(&[
            "plan",
            "matrix/nic-modes.yaml",
            "--shard",
            &format!("{k}/3"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let ids = ids_in_plan(&stdout);
        assert!(
            stdout.starts_with(&format!("shard {k}/3: {} of 8 cells\n", ids.len())),
            "{stdout}"
        );
        assert!((2..=3).contains(&ids.len()));
        for id in ids {
            assert!(seen.insert(id), "a cell in two shards");
        }
    }
    assert_eq!(seen, all);

    for (bad, problem) in [
        ("4/3", "K is greater than N"),
        ("0/3", "K is 0"),
        ("2", "no '/'"),
    ] {
        let out = nicstorm(&["plan", "matrix/nic-modes.yaml", "--shard", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("shard \"{bad}\": {problem}")) && err.contains("1 <= K <= N"),
            "{err}"
        );
    }
}

#[test]
fn merge_command_reports_and_refuses_conflicts() {
    let tmp = scratch("merge-cli");
    let measurements = repo().join("docs/measurements");
    let dir = |name: &str, csv: &str| {
        let d = tmp.join(name).join("nic-modes");
        fs::create_dir_all(&d).unwrap();
        fs::copy(measurements.join(csv), d.join("cells.csv")).unwrap();
        d.to_string_lossy().into_owned()
    };
    let a = dir("a", "2026-11-22-tcg-2core/cells.csv");
    let b = dir("b", "2026-11-22-tcg-2core-counters/cells.csv");
    let out = tmp.join("results/nic-modes");
    let out_s = out.to_string_lossy().into_owned();
    let merged = nicstorm(&["merge", &out_s, &a, &b, &a]);
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let stdout = text(&merged.stdout);
    assert!(
        stdout.starts_with(&format!(
            "merged 2 results directories into {out_s}: 16 rows (16 new, 0 identical duplicates dropped), 0 run directories copied\n"
        )),
        "{stdout}"
    );
    assert!(out.join("summary.md").is_file());

    // The same run of one cell with another verdict: refused, and OUT keeps what it had.
    let before = fs::read(out.join("cells.csv")).unwrap();
    let c = dir("c", "2026-11-22-tcg-2core/cells.csv");
    let csv = Path::new(&c).join("cells.csv");
    let edited = fs::read_to_string(&csv)
        .unwrap()
        .replacen(",ok,", ",hung,", 1);
    fs::write(&csv, edited).unwrap();
    let refused = nicstorm(&["merge", &out_s, &c]);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(
        err.contains("conflict: row (run c1947c, cell 50bdd3ffd9cd, repetition 1) differs in column verdict: \"ok\" in ")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(fs::read(out.join("cells.csv")).unwrap(), before);

    let usage = nicstorm(&["merge", &out_s]);
    assert_eq!(usage.status.code(), Some(2), "IN_DIR is required");
    let _ = fs::remove_dir_all(&tmp);
}

/// The stand-ins for ssh and make, and the results the fake shards "produce".
struct FakeHosts {
    root: PathBuf,
}

impl FakeHosts {
    fn new(tag: &str) -> FakeHosts {
        let root = scratch(tag);
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let script = |name: &str, body: &str| {
            let p = bin.join(name);
            fs::write(&p, body).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        // ssh HOST COMMAND: the command runs here, in hosts/HOST as its home. Hosts named
        // down* cannot be reached.
        script(
            "fake-ssh",
            r#"#!/usr/bin/env bash
h=$1; shift
case $h in down*) echo "ssh: connect to host $h port 22: Connection refused" >&2; exit 255;; esac
mkdir -p "$FAKE_ROOT/hosts/$h" && cd "$FAKE_ROOT/hosts/$h" || exit 255
HOME=$PWD PATH="$FAKE_ROOT/bin:$PATH" exec bash -c "$*"
"#,
        );
        // make matrix MATRIX=M NICSTORM_RUN_ARGS="--shard K/N --results DIR": holds a lock per
        // host as nicstorm does, and leaves data/K as the shard's results/<matrix>/.
        script(
            "make",
            r#"#!/usr/bin/env bash
set -eu
[ "$1" = matrix ] || { echo "fake make: unexpected target $1" >&2; exit 9; }
for a in "${@:2}"; do
    case $a in MATRIX=*) m=${a#MATRIX=} ;; NICSTORM_RUN_ARGS=*) args=${a#NICSTORM_RUN_ARGS=} ;; esac
done
read -r flag shard rflag results <<<"$args"
[ "$flag $rflag" = "--shard --results" ] || { echo "fake make: bad args $args" >&2; exit 9; }
[ -f "$m" ] || { echo "fake make: no matrix $m in $PWD" >&2; exit 9; }
mkdir "$HOME/run.lock" || { echo "fake make: another run holds the lock" >&2; exit 1; }
trap 'rmdir "$HOME/run.lock"' EXIT
k=${shard%/*}
echo "running $m shard $shard"
echo "$(basename "$HOME") $shard" >>"$FAKE_ROOT/started.log"
trap 'echo "$(basename "$HOME") $shard" >>"$FAKE_ROOT/interrupted.log"; exit 143' TERM
sleep "$(cat "$FAKE_ROOT/data/$k.sleep" 2>/dev/null || echo 0.5)" &
wait $!
name=$(basename "$m"); name=${name%.*}
if [ -d "$FAKE_ROOT/data/$k" ]; then
    mkdir -p "$results/$name"
    cp -r "$FAKE_ROOT/data/$k/." "$results/$name/"
fi
echo "$(basename "$HOME") $shard" >>"$FAKE_ROOT/runs.log"
echo "done shard $shard" >&2
exit "$(cat "$FAKE_ROOT/data/$k.exit" 2>/dev/null || echo 0)"
"#,
        );
        FakeHosts { root }
    }

    /// Shard `k` leaves the rows of `csv` (a file in docs/measurements) and a run directory.
    fn shard_leaves(&self, k: u32, csv: &str, run_id: &str, exit: u8) {
        let d = self.root.join("data").join(k.to_string());
        fs::create_dir_all(d.join(run_id).join("cell-r1")).unwrap();
        fs::copy(
            repo().join("docs/measurements").join(csv),
            d.join("cells.csv"),
        )
        .unwrap();
        fs::write(
            d.join(run_id).join("run.json"),
            format!("{{\"run_id\":\"{run_id}\"}}\n"),
        )
        .unwrap();
        fs::write(d.join(run_id).join("cell-r1/server.serial.log"), "boot\n").unwrap();
        fs::write(
            self.root.join("data").join(format!("{k}.exit")),
            exit.to_string(),
        )
        .unwrap();
    }

    fn fan_out(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(repo().join("scripts/fan-out.sh"))
            .args(args)
            .current_dir(&self.root)
            .env("FANOUT_SSH", self.root.join("bin/fake-ssh"))
            .env("FAKE_ROOT", &self.root)
            .env("NICSTORM", env!("CARGO_BIN_EXE_nicstorm"))
            .output()
            .unwrap()
    }
}

impl Drop for FakeHosts {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn fan_out_runs_each_hosts_shards_in_turn_and_merges() {
    let f = FakeHosts::new("fanout");
    // An untracked matrix outside the checkout: shipped as it is here.
    let matrix = f.root.join("pair.yaml");
    fs::copy(repo().join("matrix/ci-smoke.yaml"), &matrix).unwrap();
    f.shard_leaves(1, "2026-11-22-tcg-2core/cells.csv", "c1947c", 0);
    f.shard_leaves(2, "2026-11-22-tcg-2core-counters/cells.csv", "c69198", 0);
    f.shard_leaves(
        3,
        "2026-11-22-orphan-drain/default-orphans.cells.csv",
        "19350d",
        3,
    );

    let out = f.fan_out(&[
        "--results",
        "res",
        "hostA",
        "hostB",
        "hostA",
        "--",
        "pair.yaml",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(3), "cells in error, nothing worse");
    assert!(
        stderr.contains("shard 3/3 on hostA: some cells ended in error (exit 3)"),
        "{stderr}"
    );
    // Progress arrives prefixed by host and shard, stdout and stderr alike.
    for line in [
        "[hostA 1/3] running fanout-matrix/pair.yaml shard 1/3",
        "[hostB 2/3] done shard 2/3",
        "[hostA 3/3] done shard 3/3",
    ] {
        assert!(stdout.contains(line), "{line:?} missing");
    }
    // hostA's two shards ran one after the other: the lock never refused.
    assert!(!stdout.contains("holds the lock"));
    let runs = fs::read_to_string(f.root.join("runs.log")).unwrap();
    let mut runs: Vec<&str> = runs.lines().collect();
    runs.sort();
    assert_eq!(runs, ["hostA 1/3", "hostA 3/3", "hostB 2/3"]);

    // Merged into res/pair/: every shard's rows and run directories.
    let merged = f.root.join("res/pair");
    let csv = fs::read_to_string(merged.join("cells.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8 + 8 + 1);
    for run in ["c1947c", "c69198", "19350d"] {
        assert!(merged.join(run).join("run.json").is_file(), "{run}");
    }
    assert!(merged.join("summary.md").is_file());

    // Again: the hosts still hold their results, and merging them again changes nothing.
    fs::write(f.root.join("data/3.exit"), "0").unwrap();
    let again = f.fan_out(&[
        "--results",
        "res",
        "hostA",
        "hostB",
        "hostA",
        "--",
        "pair.yaml",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(fs::read_to_string(merged.join("cells.csv")).unwrap(), csv);
}

#[test]
fn fan_out_names_the_shard_of_an_unreachable_host() {
    let f = FakeHosts::new("fanout-down");
    f.shard_leaves(1, "2026-11-22-tcg-2core/cells.csv", "c1947c", 0);
    let matrix = repo().join("matrix/ci-smoke.yaml");
    let out = f.fan_out(&[
        "--results",
        "res",
        "hostA",
        "down1",
        "--",
        matrix.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("shard 2/2 on down1: copying the checkout to the host failed"),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("[down1] ssh: connect to host down1 port 22"));
    // What came back is merged all the same.
    let csv = fs::read_to_string(f.root.join("res/ci-smoke/cells.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8);
}

#[test]
fn fan_out_interrupted_interrupts_the_remote_runs() {
    let f = FakeHosts::new("fanout-term");
    for k in 1..=2 {
        fs::create_dir_all(f.root.join("data")).unwrap();
        fs::write(f.root.join(format!("data/{k}.sleep")), "60").unwrap();
    }
    let matrix = repo().join("matrix/ci-smoke.yaml");
    let mut child = Command::new("bash")
        .arg(repo().join("scripts/fan-out.sh"))
        .args(["--results", "res", "hostA", "hostB", "--"])
        .arg(&matrix)
        .current_dir(&f.root)
        .env("FANOUT_SSH", f.root.join("bin/fake-ssh"))
        .env("FAKE_ROOT", &f.root)
        .env("NICSTORM", env!("CARGO_BIN_EXE_nicstorm"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_to_string(f.root.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let wait_for = |name: &str, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while lines(name).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "{what} within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_for("started.log", "both shards started");
    // SAFETY: kill(2) on our own child's PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // The remote side notices within one poll of the watcher (2 s) and interrupts its run.
    wait_for("interrupted.log", "both remote runs interrupted");
    assert_eq!(lines("interrupted.log"), ["hostA 1/2", "hostB 2/2"]);
    assert!(
        !f.root.join("runs.log").exists(),
        "no run went on to its end"
    );
}

#[test]
fn fan_out_argument_errors() {
    let script = repo().join("scripts/fan-out.sh");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));
    let cases: &[(&[&str], &str)] = &[
        (&[], "no '--' before the matrix"),
        (&["h1", "matrix/ci-smoke.yaml"], "no '--' before the matrix"),
        (&["--", "matrix/ci-smoke.yaml"], "no hosts before '--'"),
        (&["h1", "--"], "expected one matrix file after '--', got 0"),
        (
            &["h1", "--", "matrix/ci-smoke.yaml", "matrix/nic-modes.yaml"],
            "expected one matrix file after '--', got 2",
        ),
        (
            &["h1", "--", "matrix/nope.yaml"],
            "matrix/nope.yaml: no such matrix file",
        ),
        (
            &["-x", "h1", "--", "matrix/ci-smoke.yaml"],
            "unknown option -x",
        ),
        (&["--results"], "--results needs a directory"),
    ];
    for (args, want) in cases {
        let out = Command::new("bash")
            .arg(&script)
            .args(*args)
            .current_dir(repo())
            // Never reached: every case fails before any ssh.
            .env("FANOUT_SSH", "false")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(err.contains("usage: scripts/fan-out.sh"), "{err}");
    }
    let help = Command::new("bash")
        .arg(&script)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(text(&help.stdout).starts_with("usage: scripts/fan-out.sh"));
}
