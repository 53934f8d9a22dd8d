//! The state directory trial of the hardening issue, repeated: a directory a local user made
//! first, holding a restore file that would make root write a sysctl. nicstorm must refuse it,
//! say why, and leave the host's value as it was. Runs `nicstorm lab down` for real.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const KEY: &str = "net.ipv4.tcp_fin_timeout";

/// A restore file as nicstorm writes it, for this boot, naming a value other than the
/// host's: applying it would show.
fn plant(lab_dir: &Path) -> String {
    std::fs::create_dir_all(lab_dir).unwrap();
    let now: u32 = sysctl(KEY).parse().unwrap();
    let other = (now + 1).to_string();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(
        lab_dir.join("sysctl-restore.json"),
        format!(
            r#"{{"boot_id":"{}","sysctls":{{"{KEY}":"{other}"}}}}"#,
            boot.trim()
        ),
    )
    .unwrap();
    other
}

/// `lab down` takes the host's run lock: one at a time in this file.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lab_down(state: &Path) -> (Option<i32>, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = nicstorm_bin()
        .args(["lab", "down"])
        .env("NICSTORM_STATE", state)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_state_directory_planted_by_another_user_is_refused() {
    let dir = scratch("planted-state");
    let state = dir.join("nicstorm");
    let before = sysctl(KEY);
    plant(&state.join("labs/nicstorm-abcdef"));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let (code, err) = lab_down(&state);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: it is owned by uid 65534, not by root",
            state.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("only trusts a path that only root can write"),
        "{err}"
    );
    assert_eq!(sysctl(KEY), before, "the planted value was not applied");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "sweeps the host through libvirt; run by `make test`"]
fn a_restore_file_another_user_wrote_is_kept_not_applied() {
    let dir = scratch("planted-restore");
    let state = dir.join("nicstorm");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let lab = state.join("labs/nicstorm-abcdef");
    let before = sysctl(KEY);
    plant(&lab);
    let file = lab.join("sysctl-restore.json");
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let (code, err) = lab_down(&state);
    assert_eq!(sysctl(KEY), before, "the planted value was not applied");
    assert_eq!(code, Some(1), "a kept file is not a clean sweep: {err}");
    assert!(
        err.contains(&format!("kept {}", file.display())) && err.contains("owned by uid 65534"),
        "{err}"
    );
    assert!(file.exists(), "kept, not deleted");
    // Root's own file for this boot is applied, and then gone with its lab.
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    let other = plant(&lab);
    let (code, err) = lab_down(&state);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("sysctl {KEY} restored to {other}")),
        "{err}"
    );
    assert_eq!(sysctl(KEY), other);
    assert!(!lab.exists());
    // Put the host back as it was.
    std::fs::write(format!("/proc/sys/{}", KEY.replace('.', "/")), &before).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A results directory another user can write is refused before anything is written there:
/// root would otherwise write through what that user planted (here a `cells.csv.torn`
/// symlink to a file the user wants root to create).
#[test]
fn a_results_directory_another_user_can_write_is_refused() {
    let dir = scratch("planted-results");
    let results = dir.join("results");
    let matrix_dir = results.join("ci-smoke");
    std::fs::create_dir_all(&matrix_dir).unwrap();
    // A torn cells.csv makes a run set its last line aside into cells.csv.torn.
    std::fs::write(matrix_dir.join("cells.csv"), "run_id,cell_id").unwrap();
    let target = dir.join("created-by-root");
    std::os::unix::fs::symlink(&target, matrix_dir.join("cells.csv.torn")).unwrap();
    for d in [&results, &matrix_dir] {
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = nicstorm_bin()
        .args(["run", "matrix/ci-smoke.yaml", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("owned by uid 65534, not by root"), "{err}");
    assert!(err.contains("--results"), "says what to do: {err}");
    assert!(
        !target.exists(),
        "nothing was written through the planted link"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
