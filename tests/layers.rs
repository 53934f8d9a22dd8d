//! The layering of src/ (docs/ARCHITECTURE.md draws it): each top-level folder of src/ is a
//! layer, and a module may name (`crate::…`) only its own layer or one below it. A new
//! folder must be given a place here, and src/ holds no more than the crate's roots.

use std::path::{Path, PathBuf};

/// Top to bottom. A layer may import any layer after it in this list.
const LAYERS: &[&str] = &[
    "cli",
    "experiment",
    "merge",
    "compare",
    "report",
    "lab",
    "host",
    "results",
    "matrix",
    "progress",
    "model",
    "support",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `crate::NAME` in `text`, with its line number.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` names several layers at once: refuse it, so none hides.
            refs.push((n + 1, if name.is_empty() { "{".into() } else { name }));
            rest = after;
        }
    }
    refs
}

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let mut parts = rel.components();
        let first = parts
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        if parts.next().is_none() {
            continue; // lib.rs, main.rs: the roots
        }
        let Some(mine) = layer_of(&first) else {
            wrong.push(format!("src/{first}/ is not a layer: give it a place in tests/layers.rs and docs/ARCHITECTURE.md"));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (line, name) in crate_refs(&text) {
            match layer_of(&name) {
                Some(theirs) if theirs >= mine => {}
                Some(_) => wrong.push(format!(
                    "src/{}:{line}: {first} imports crate::{name}, a layer above it",
                    rel.display()
                )),
                None => wrong.push(format!(
                    "src/{}:{line}: crate::{name} is not a layer (name the layer's folder first)",
                    rel.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn src_holds_only_the_roots_and_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut top_files = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            assert!(
                layer_of(&name).is_some(),
                "src/{name}/ is not a layer in tests/layers.rs"
            );
        } else if name.ends_with(".rs") {
            top_files.push(name);
        }
    }
    top_files.sort();
    assert!(
        top_files.len() <= 6,
        "too many files directly in src/: {top_files:?}"
    );
    for l in LAYERS {
        assert!(src.join(l).is_dir(), "layer {l} has no folder src/{l}/");
    }
}

#[test]
fn the_check_finds_an_upward_import() {
    // The scanner itself: a use line, an inline path, a grouped import, a comment.
    let text = "use crate::cli::exit;\nlet x = crate::model::verdict::Verdict::Ok; // crate::report\nuse crate::{a, b};\n";
    let refs = crate_refs(text);
    assert_eq!(
        refs,
        vec![
            (1, "cli".to_string()),
            (2, "model".to_string()),
            (3, "{".to_string())
        ]
    );
    assert!(layer_of("cli") < layer_of("support"));
}
