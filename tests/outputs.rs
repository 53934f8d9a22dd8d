//! Issue 21's machine-readable outputs and CLI conventions, through the binary: plan and
//! summary JSON against their schemas (docs/schemas/), `--cell` with an unknown id, the
//! terminal summary, completions, the man page and `--version`. No VM boots here: events,
//! JUnit and errors_by_errno.csv of a real run are checked in tests/vm.rs, their writers in
//! the unit tests of progress/json.rs, results/junit.rs and results/tidy.rs.

mod common;

use std::path::Path;

use common::*;

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("docs/schemas").join(name)).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn assert_valid(schema: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = schema.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{doc:#}");
}

/// stdout of `nicstorm ARGS`, which must succeed.
fn stdout_of(args: &[&str]) -> String {
    let out = nicstorm_bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "nicstorm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn matrices() -> Vec<String> {
    let mut files = vec![];
    // The measurements' matrices too: they use sweeps and the later settings.
    let mut dirs = vec!["matrix".to_owned(), "tests/matrices".to_owned()];
    for e in std::fs::read_dir(repo().join("docs/measurements")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            dirs.push(format!(
                "docs/measurements/{}",
                p.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    for dir in &dirs {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(format!(
                    "{dir}/{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    files.sort();
    files
}

/// Every shipped matrix's plan as JSON matches the schema and lists the cells and ids the
/// text plan shows; `--shard` lists the shard's cells and says which shard.
#[test]
fn plan_json_matches_its_schema_and_the_text_plan() {
    let schema = schema("plan.schema.json");
    for m in matrices() {
        let doc: serde_json::Value =
            serde_json::from_str(&stdout_of(&["plan", &m, "--json"])).unwrap();
        assert_valid(&schema, &doc, &m);
        let same: serde_json::Value =
            serde_json::from_str(&stdout_of(&["plan", &m, "--format", "json"])).unwrap();
        assert_eq!(doc, same, "{m}: --json is --format json");
        let text = stdout_of(&["plan", &m]);
        let plan = nicstorm::matrix::plan::load_plan(&repo().join(&m)).unwrap();
        let ids: Vec<&str> = doc["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, want, "{m}");
        for id in &ids {
            assert!(text.contains(id), "{m}: {id} not in the text plan");
        }
        assert_eq!(doc["total_cells"], want.len());
    }
    let doc: serde_json::Value = serde_json::from_str(&stdout_of(&[
        "plan",
        "matrix/nic-modes.yaml",
        "--shard",
        "2/4",
        "--json",
    ]))
    .unwrap();
    assert_valid(&schema, &doc, "shard 2/4");
    assert_eq!(doc["shard"], "2/4");
    assert!(doc["cells"].as_array().unwrap().len() < doc["total_cells"].as_u64().unwrap() as usize);
}

/// `run --cell` with an id the matrix does not have fails before anything is set up (no root,
/// no libvirt needed), naming the id and how to find the valid ones.
#[test]
fn unknown_cell_id_is_a_clear_error() {
    let out = nicstorm_bin()
        .args([
            "run",
            "tests/matrices/shard-pair.yaml",
            "--cell",
            "0123456789ab",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let plan =
        nicstorm::matrix::plan::load_plan(&repo().join("tests/matrices/shard-pair.yaml")).unwrap();
    assert!(err.contains("--cell \"0123456789ab\""), "{err}");
    assert!(
        err.contains("tests/matrices/shard-pair.yaml has no cell with this id"),
        "{err}"
    );
    assert!(
        err.contains("nicstorm plan tests/matrices/shard-pair.yaml --json"),
        "{err}"
    );
    for c in &plan.cells {
        assert!(err.contains(&c.id), "{err}");
    }
    // --cell and --shard choose cells two ways: refused together.
    let out = nicstorm_bin()
        .args([
            "run",
            "tests/matrices/shard-pair.yaml",
            "--cell",
            "x",
            "--shard",
            "1/2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}

/// The summary of a results directory as JSON matches its schema; as text it is a terminal
/// table (no markdown); as markdown it is summary.md's table.
#[test]
fn summary_formats() {
    let args = [
        "summary",
        "matrix/ci-smoke.yaml",
        "--results",
        "tests/fixtures/results",
    ];
    let json = stdout_of(&[&args[..], &["--json"]].concat());
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_valid(&schema("summary.schema.json"), &doc, "ci-smoke fixture");
    let rows = read_rows(&repo().join("tests/fixtures/results/ci-smoke/cells.csv"));
    assert_eq!(doc["results"], rows.len());
    assert_eq!(doc["cells"][0]["cell_id"], "9548db1d503b");

    // Not a terminal here: the default is markdown, as `summary > x.md` wants.
    let default = stdout_of(&args);
    assert!(default.starts_with("| NIC |"), "{default}");
    let text = stdout_of(&[&args[..], &["--format", "text"]].concat());
    assert!(text.starts_with("NIC "), "{text}");
    assert!(!text.contains("<br>") && !text.contains("|---"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "not a terminal: no colours\n{text}"
    );
    let md = stdout_of(&[&args[..], &["--format", "markdown"]].concat());
    assert!(md.starts_with("| NIC |"), "{md}");
}

/// Completions for each shell and the man pages come from the clap definitions, so they
/// know every subcommand and flag.
#[test]
fn completions_and_man_pages() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("events-json"), "{shell}");
        assert!(script.contains("fail-on-verdict"), "{shell}");
    }
    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH nicstorm"),
        "{man}"
    );
    assert!(man.contains("NO_COLOR"), "the environment is in the page");
    let dir = scratch("man");
    stdout_of(&["man", "--dir", dir.to_str().unwrap()]);
    for page in [
        "nicstorm.1",
        "nicstorm-run.1",
        "nicstorm-plan.1",
        "nicstorm-summary.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    assert!(std::fs::read_to_string(dir.join("nicstorm-run.1"))
        .unwrap()
        .contains("junit"));
}

/// `--version` names the git revision it was built from (or says it is unknown).
#[test]
fn version_names_the_git_revision() {
    let v = stdout_of(&["--version"]);
    let rest = v
        .trim()
        .strip_prefix(&format!("nicstorm {} (git ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{v}"));
    let rev = rest.strip_suffix(')').unwrap();
    let in_checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists();
    if in_checkout && std::env::var_os("NICSTORM_GIT_REVISION").is_none() {
        let hex = rev.trim_end_matches("-dirty");
        assert!(
            hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{v}"
        );
    } else {
        assert!(!rev.is_empty(), "{v}");
    }
}

/// -q and -v are global and refuse each other.
#[test]
fn verbosity_flags() {
    stdout_of(&["-q", "plan", "matrix/ci-smoke.yaml"]);
    stdout_of(&["plan", "matrix/ci-smoke.yaml", "-vv"]);
    let out = nicstorm_bin()
        .args(["-q", "-v", "plan", "matrix/ci-smoke.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
