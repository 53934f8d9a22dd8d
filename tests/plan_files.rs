//! Matrix files end to end: the shipped matrices load, and bad files fail with the exact,
//! located message a user sees (snapshotted).

use std::path::Path;

use nicstorm::matrix::plan::{load_plan, render_plan, Accel, NetMode, NicModel, PlanError, Vhost};

/// Each bad fixture, listed by name so a missing file fails the test instead of
/// silently shrinking it.
const BAD: &[&str] = &[
    "unknown-top-key",
    "unknown-axis-key",
    "bad-nic",
    "bad-duration",
    "empty-axis",
    "bad-only-key",
    "bad-only-value",
    "impossible-connections",
    "filters-leave-nothing",
    "vhost-off-without-virtio",
    "bad-memory",
    "tiny-hang-gap",
    "missing-axis",
    "bad-yaml",
    "bad-guest-sysctl",
    "bad-emulator",
    "passt-link-down",
    "passt-tap-recipe",
];

#[test]
fn bad_files_fail_with_located_messages() {
    let mut report = String::new();
    for name in BAD {
        let path = format!("tests/fixtures/{name}.yaml");
        let err = match load_plan(Path::new(&path)) {
            Ok(p) => panic!("{path} accepted with {} cells", p.cells.len()),
            Err(e) => e,
        };
        let PlanError::Invalid { location, .. } = &err else {
            panic!("{path}: not a validation error: {err}");
        };
        let (line, col) = location.unwrap_or_else(|| panic!("{path}: no line/column: {err}"));
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{path}:{line}:{col}: ")), "{msg}");
        report.push_str(&format!("{msg}\n"));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn missing_file_names_the_path() {
    let err = load_plan(Path::new("tests/fixtures/no-such.yaml")).unwrap_err();
    assert!(matches!(err, PlanError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("tests/fixtures/no-such.yaml: cannot read matrix file: "),
        "{err}"
    );
}

#[test]
fn shipped_default_matrix() {
    let p = load_plan(Path::new("matrix/nic-modes.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "nic-modes");
    let nics: Vec<_> = p.cells.iter().map(|c| (c.nic, c.mode, c.vhost)).collect();
    // The seed's 3 NICs x 2 modes; virtio-net once per vhost backend.
    assert_eq!(
        nics,
        [
            (NicModel::VirtioNet, NetMode::Bridge, Some(Vhost::On)),
            (NicModel::VirtioNet, NetMode::Bridge, Some(Vhost::Off)),
            (NicModel::VirtioNet, NetMode::Nat, Some(Vhost::On)),
            (NicModel::VirtioNet, NetMode::Nat, Some(Vhost::Off)),
            (NicModel::Vmxnet3, NetMode::Bridge, None),
            (NicModel::Vmxnet3, NetMode::Nat, None),
            (NicModel::E1000, NetMode::Bridge, None),
            (NicModel::E1000, NetMode::Nat, None),
        ]
    );
    for c in &p.cells {
        assert_eq!(c.connections, 1_000_000);
        assert_eq!(c.target(Accel::Tcg, &p.settings), 30_000);
    }
    assert_eq!(p.settings.ports.count(), 20);
    insta::assert_snapshot!(render_plan(&p));
}

#[test]
fn shipped_ci_smoke_matrix() {
    let p = load_plan(Path::new("matrix/ci-smoke.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.cells.len(), 1);
    let c = &p.cells[0];
    assert_eq!(c.label(), "vmxnet3/bridge/fin/one/3000");
    assert_eq!(c.target(Accel::Tcg, &p.settings), 3000);
    assert_eq!(c.target(Accel::Kvm, &p.settings), 3000);
    assert!(p.settings.observe.as_secs() <= 60);
}

/// Every shipped matrix (matrix/, tests/matrices/) still plans through the command a user runs,
/// under the checks of what a matrix may do to the host (README, "A matrix is root
/// configuration").
#[test]
fn every_shipped_matrix_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["matrix", "tests/matrices"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");
    for f in files {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nicstorm"))
            .current_dir(root)
            .arg("plan")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
