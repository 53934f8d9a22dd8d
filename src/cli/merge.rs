//! `nicstorm merge OUT IN...`: the command's side of a merge (merge/ does the work): logging,
//! what it prints, the exit code.

use std::path::{Path, PathBuf};

use crate::cli::exit;

/// `nicstorm merge OUT IN...`: merges and prints what it did.
pub(crate) fn run(out: &Path, inputs: &[PathBuf]) -> anyhow::Result<u8> {
    crate::cli::logging::init(None);
    let r = crate::merge::merge(out, inputs)?;
    println!(
        "merged {} results director{} into {}: {} rows ({} new, {} identical duplicate{} dropped), {} run director{} copied",
        r.inputs,
        if r.inputs == 1 { "y" } else { "ies" },
        out.display(),
        r.rows,
        r.new_rows,
        r.duplicates,
        if r.duplicates == 1 { "" } else { "s" },
        r.copied_runs.len(),
        if r.copied_runs.len() == 1 { "y" } else { "ies" },
    );
    for s in &r.skipped {
        eprintln!(
            "nicstorm merge: not copied (not a run directory): {}",
            s.display()
        );
    }
    println!("summary: {}", r.summary.display());
    Ok(exit::OK)
}
