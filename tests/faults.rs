//! Every way a run can end (issue 9): a fault injected at a named phase, then the same checks
//! each time: nothing of ours left on the host (domains, links, rules, lab dirs), the host
//! sysctl restored, cells.csv valid with no row lost or half-written, the documented exit code.
//! Real VMs (TCG here); `make test-faults` runs them serially, built with `--features faults`
//! (the panic test needs its hook). Each prints a `FAULT` line; README's reliability table is
//! made from them. Their labs are restored from a saved lab (`lab_start: restore` in
//! tests/matrices/fault.yaml, issue 19); the boot-timeout test boots. The first test to run on
//! a host with no saved lab interrupts the save itself.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nicstorm::model::phase::Phase;

const MATRIX: &str = "tests/matrices/fault.yaml";
const MINUTES: Duration = Duration::from_secs(60);

fn results(name: &str) -> (std::path::PathBuf, String) {
    let dir = scratch(name);
    let s = dir.to_string_lossy().into_owned();
    (dir, s)
}

/// Cells the runner said it finished (its `=> label: verdict` lines; an interrupted cell
/// writes no row) that have no row in cells.csv.
fn rows_lost(lines: &[String], rows: usize) -> usize {
    let ended = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("=> ") && !l.contains(": interrupted"))
        .count();
    ended.saturating_sub(rows)
}

/// One line of the reliability table, every figure counted: leftovers on the host, rows the
/// runner reported but did not write, and the exit code. Lost rows fail the test.
fn report(fault: &str, phase: &str, code: Option<i32>, lines: &[String], rows: usize) {
    let lost = rows_lost(lines, rows);
    eprintln!(
        "FAULT | {fault} | {phase} | leftovers {} | rows lost {lost} ({rows} in cells.csv) | exit {} |",
        anything_of_ours().len(),
        code.map_or("-".into(), |c| c.to_string())
    );
    assert_eq!(lost, 0, "cells reported finished without a row: {lines:?}");
}

#[test]
fn rows_lost_counts_finished_cells_without_a_row() {
    let lines: Vec<String> = [
        "  => c1 virtio-net/bridge: ok ramp 3000/3000",
        "  => c2 virtio-net/nat: error: provision: boot",
        "  => c3 e1000/bridge: interrupted by SIGINT",
        "  provision: 4/4 up",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(rows_lost(&lines, 2), 0);
    assert_eq!(rows_lost(&lines, 1), 1);
    assert_eq!(rows_lost(&[], 0), 0);
}

/// The cell's lab was restored from the saved lab (fault.yaml's `lab_start: restore`), so the
/// fault met a restored lab, not a booted one.
fn assert_restored(row: &nicstorm::results::CellRow) {
    assert_eq!(
        row.lab_start.as_deref(),
        Some("restored"),
        "the lab was restored (key {:?})",
        row.lab_key
    );
    // The saved lab's key: 16 hex digits of the SHA-256 of its key text (lab::saved::key_of).
    let key = row.lab_key.as_deref().unwrap_or_default();
    assert!(
        key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key:?}"
    );
}

fn conntrack_max() -> String {
    sysctl("net.netfilter.nf_conntrack_max")
}

#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn sigterm_during_observe() {
    let before = conntrack_max();
    let (dir, res) = results("sigterm");
    let mut run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    run.wait_for("disconnect:", 10 * MINUTES);
    assert_eq!(conntrack_max(), "300001", "the run set the host sysctl");
    std::thread::sleep(Duration::from_secs(3)); // inside observe
    run.signal(libc::SIGTERM);
    let (code, lines) = run.finish(2 * MINUTES);
    assert_eq!(code, Some(130));
    assert!(
        lines.iter().any(|l| l.contains("interrupted by SIGTERM")),
        "one end event says so"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("provision: 4 guests restored from saved lab")),
        "the signal met a restored lab"
    );
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert!(rows.is_empty(), "the interrupted cell has no row");
    assert_clean(&before);
    report("SIGTERM", "observe", code, &lines, rows.len());
}

#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn sigint_during_provision() {
    let before = conntrack_max();
    let (dir, res) = results("sigint-provision");
    let mut run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    run.wait_for("provision:", 5 * MINUTES);
    // Domains restoring or releasing (a save booting, on a host with no saved lab).
    std::thread::sleep(Duration::from_secs(2));
    run.signal(libc::SIGINT);
    let (code, lines) = run.finish(2 * MINUTES);
    assert_eq!(code, Some(130));
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert!(rows.is_empty());
    assert_clean(&before);
    report("SIGINT", "provision", code, &lines, rows.len());
}

/// kill -9 leaves everything behind (no handler runs); a plain rerun sweeps it, restores the
/// host sysctl from the lab's restore file, and runs the cell to a result.
#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn kill9_during_ramp_then_rerun_sweeps_and_resumes() {
    let before = conntrack_max();
    let (dir, res) = results("kill9");
    let mut run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    run.wait_for("ramp:", 10 * MINUTES);
    run.signal(libc::SIGKILL);
    let (code, _) = run.finish(MINUTES);
    assert_eq!(code, None, "killed by a signal");
    assert!(!anything_of_ours().is_empty(), "kill -9 leaves the lab");
    assert_eq!(conntrack_max(), "300001");

    let rerun = Run::start(&["run", MATRIX, "--results", &res], &[]);
    let (code, lines) = rerun.finish(10 * MINUTES);
    assert_eq!(code, Some(0));
    assert!(lines
        .iter()
        .any(|l| l.contains("removed leftover of an earlier run: domain nicstorm-")));
    assert!(lines
        .iter()
        .any(|l| l.contains("sysctl net.netfilter.nf_conntrack_max restored")));
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert_eq!(rows.len(), 1, "the rerun ran the cell");
    assert_eq!(
        rows[0].verdict,
        nicstorm::model::verdict::Verdict::Ok,
        "{:?}",
        rows[0].error
    );
    assert_restored(&rows[0]);
    assert_clean(&before);
    report("kill -9, then a rerun", "ramp", code, &lines, rows.len());
}

#[test]
#[ignore = "boots VMs; run by `make test-faults` (needs --features faults)"]
fn panic_inside_a_phase_is_an_error_row() {
    if !cfg!(feature = "faults") {
        panic!(
            "build with --features faults (make test-faults): the panic hook is not compiled in"
        );
    }
    let before = conntrack_max();
    let (dir, res) = results("panic");
    let run = Run::start(
        &["run", MATRIX, "--results", &res],
        &[("NICSTORM_FAULT", "panic@hold")],
    );
    let (code, lines) = run.finish(10 * MINUTES);
    assert_eq!(code, Some(3), "a cell ended in error");
    assert!(lines
        .iter()
        .any(|l| l.contains("error in hold: nicstorm panicked in hold")));
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].verdict, nicstorm::model::verdict::Verdict::Error);
    assert_eq!(rows[0].error_phase, Some(Phase::Hold.into()));
    assert!(rows[0].error.as_deref().unwrap().contains("injected fault"));
    assert_restored(&rows[0]);
    assert_clean(&before);
    report("panic inside a phase", "hold", code, &lines, rows.len());
}

/// libvirtd (started by scripts/setup-host.sh, so ours to stop, by PID) goes away mid-cell:
/// the cell ends `error` with its phase, and the run says what to do. Restarting libvirtd and
/// `nicstorm lab down` then leave nothing.
#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn libvirtd_killed_mid_cell() {
    let before = conntrack_max();
    let (dir, res) = results("libvirtd");
    let mut run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    run.wait_for("disconnect:", 10 * MINUTES);
    let pid: i32 = std::fs::read_to_string("/run/libvirtd.pid")
        .expect("libvirtd's pid file (started by scripts/setup-host.sh)")
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the libvirtd this test suite's set-up started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (code, lines) = run.finish(5 * MINUTES);
    let setup = std::process::Command::new(repo().join("scripts/setup-host.sh"))
        .status()
        .unwrap();
    assert!(setup.success(), "libvirtd restarted");
    assert_eq!(code, Some(3));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("libvirtd does not answer") && l.contains("rerun to resume")),
        "the run says what to do"
    );
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].verdict, nicstorm::model::verdict::Verdict::Error);
    let phase = rows[0].error_phase.clone().expect("the phase is named");
    assert_restored(&rows[0]);
    // What libvirtd left running is swept once it is back.
    let down = nicstorm_bin().args(["lab", "down"]).status().unwrap();
    assert!(down.success());
    assert_clean(&before);
    report("libvirtd killed", phase.as_str(), code, &lines, rows.len());
}

/// storm-load dies inside the server guest during hold: an error row naming the phase,
/// never a verdict about the NIC.
#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn storm_load_killed_in_the_server_during_hold() {
    let before = conntrack_max();
    let (dir, res) = results("stormload");
    let mut run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    run.wait_for("hold:", 10 * MINUTES);
    let lab = std::fs::read_dir(nicstorm::lab::state_root().join("labs"))
        .unwrap()
        .flatten()
        .next()
        .expect("the running lab's state dir")
        .path();
    let killed = ssh(
        &lab.join("id_ed25519"),
        "10.213.0.10",
        "kill -9 $(cat /run/storm-load.pid)",
    );
    assert!(killed.success(), "storm-load killed in the server");
    let (code, lines) = run.finish(5 * MINUTES);
    assert_eq!(code, Some(3));
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].verdict,
        nicstorm::model::verdict::Verdict::Error,
        "not a verdict about the NIC"
    );
    assert_eq!(rows[0].error_phase, Some(Phase::Hold.into()));
    assert!(rows[0]
        .error
        .as_deref()
        .unwrap()
        .contains("load generator died in server"));
    assert_restored(&rows[0]);
    assert_clean(&before);
    report(
        "storm-load killed in the server",
        "hold",
        code,
        &lines,
        rows.len(),
    );
}

#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn guest_never_reaches_ssh_then_the_next_cell_runs() {
    let before = conntrack_max();
    let (dir, res) = results("noboot");
    let run = Run::start(
        &["run", "tests/matrices/fault-boot.yaml", "--results", &res],
        &[],
    );
    let (code, lines) = run.finish(10 * MINUTES);
    assert_eq!(code, Some(3));
    let rows = valid_rows(&dir.join("fault-boot/cells.csv"));
    assert_eq!(rows.len(), 2, "the second cell ran after the first failed");
    for r in &rows {
        assert_eq!(r.verdict, nicstorm::model::verdict::Verdict::Error);
        assert_eq!(r.error_phase, Some(Phase::Provision.into()));
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("timed out after 3s waiting for SSH"),
            "{:?}",
            r.error
        );
    }
    assert_clean(&before);
    report(
        "a guest never reaches SSH",
        "provision",
        code,
        &lines,
        rows.len(),
    );
}

#[test]
#[ignore = "needs root; run by `make test-faults`"]
fn unwritable_results_are_refused_before_any_vm_boots() {
    let before = conntrack_max();
    let (dir, res) = results("readonly");
    let csv = dir.join("fault/cells.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    std::fs::write(&csv, nicstorm::results::header_line() + "\n").unwrap();
    // As root a read-only mode does not stop writes; the immutable flag does.
    let chattr = |flag: &str| {
        assert!(std::process::Command::new("chattr")
            .arg(flag)
            .arg(&csv)
            .status()
            .unwrap()
            .success());
    };
    chattr("+i");
    let t = Instant::now();
    let run = Run::start(&["run", MATRIX, "--results", &res], &[]);
    let (code, lines) = run.finish(MINUTES);
    chattr("-i");
    assert_eq!(code, Some(1));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cells.csv is not writable")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("provision:")),
        "no VM booted"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    let rows = valid_rows(&csv);
    assert_clean(&before);
    report(
        "results cannot be written",
        "before preflight",
        code,
        &lines,
        rows.len(),
    );
}

#[test]
#[ignore = "boots VMs; run by `make test-faults`"]
fn a_second_run_is_refused_naming_the_holder() {
    let before = conntrack_max();
    let (dir, res) = results("second");
    let mut first = Run::start(&["run", MATRIX, "--results", &res], &[]);
    first.wait_for("provision:", 5 * MINUTES);
    let (dir2, res2) = results("second-b");
    let second = Run::start(&["run", MATRIX, "--results", &res2], &[]);
    let (code2, lines) = second.finish(MINUTES);
    assert_eq!(code2, Some(1));
    let holder = format!("pid {}", first.child.id());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("another nicstorm run holds") && l.contains(&holder)),
        "{lines:?}"
    );
    // Refused before the results directory is touched: no cells.csv at all.
    assert!(!dir2.join("fault/cells.csv").exists());
    first.signal(libc::SIGINT);
    let (code, first_lines) = first.finish(2 * MINUTES);
    assert_eq!(code, Some(130));
    let rows = valid_rows(&dir.join("fault/cells.csv"));
    assert_clean(&before);
    report(
        "a second run while one runs",
        "provision (of the first)",
        code2,
        &first_lines,
        rows.len(),
    );
}
