//! Build script: the git revision `nicstorm --version` reports (NICSTORM_GIT_REVISION).
//!
//! From `git` when the source is a checkout; `NICSTORM_GIT_REVISION` in the build's environment
//! when it is set (a tarball made with `git archive` can pass its commit that way); otherwise
//! "unknown", so a tarball without .git still builds.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=NICSTORM_GIT_REVISION");
    let revision = match std::env::var("NICSTORM_GIT_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=NICSTORM_GIT_REVISION={revision}");
}

/// `abcdef123456`, with `-dirty` when tracked files differ from it; None outside a checkout.
fn from_git() -> Option<String> {
    // Only a checkout of this repository counts, not one the source tree happens to sit in.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&here).ok()? {
        return None;
    }
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rerun when HEAD moves (a commit, a checkout) and when the sources change (dirty or not).
    // Only files that exist: cargo reruns a script on every build for one that does not (a
    // branch's ref may live in packed-refs only).
    let mut watched = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in &watched {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    // Everything compiled in: the sources and the domain XML templates (include_str!).
    for p in [
        "src",
        "proto",
        "vm-templates",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    // `status` refreshes the index's stat data in memory (diff-index would call a touched
    // but unchanged file dirty); untracked files do not count.
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|out| !out.trim().is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}
