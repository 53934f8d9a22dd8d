//! `nicstorm compare`: the command's side of a comparison (compare/ does the work): which
//! inputs the arguments name, what is printed and written, the exit code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::exit;
use crate::compare::{self, AxisChoice, GateRules, Inputs, Outcome};
use crate::model::verdict::Verdict;

/// What goes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// The markdown table (also compare.md with --out).
    Md,
    /// The comparison as JSON, schema nicstorm-compare/1 (docs/compare.md).
    Json,
}

/// The arguments of `nicstorm compare`, as parsed.
pub(crate) struct Args {
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) axis: Option<AxisChoice>,
    pub(crate) baseline: Option<PathBuf>,
    pub(crate) fail_on: Vec<Outcome>,
    pub(crate) fail_on_verdict: Vec<Verdict>,
    pub(crate) format: Format,
    pub(crate) out: Option<PathBuf>,
}

/// `--fail-on`: a cell line that fails the gate.
pub(crate) fn parse_fail_on(s: &str) -> Result<Outcome, String> {
    match s {
        "worse" => Ok(Outcome::Worse),
        "undecided" => Ok(Outcome::Undecided),
        _ => Err(format!("{s:?}: allowed values are worse, undecided")),
    }
}

/// `--fail-on-verdict`: a verdict that fails the gate when a NEW repetition ended in it.
pub(crate) fn parse_verdict(s: &str) -> Result<Verdict, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?}: unknown verdict; allowed: {}",
            Verdict::ALL.map(|v| v.as_str()).join(", ")
        )
    })
}

fn inputs(a: &Args) -> Result<Inputs> {
    let usage =
        "give BASE NEW (two results directories), DIR --axis NAME=BASE,NEW, or --baseline FILE NEW";
    Ok(match (&a.baseline, &a.axis, &a.dirs[..]) {
        (Some(file), None, [new]) => Inputs::Baseline {
            file: file.clone(),
            new: new.clone(),
        },
        (None, Some(choice), [dir]) => Inputs::Axis {
            dir: dir.clone(),
            choice: choice.clone(),
        },
        (None, None, [base, new]) => Inputs::Dirs {
            base: base.clone(),
            new: new.clone(),
        },
        (_, _, dirs) => bail!(
            "{} director{} given with{}{}: {usage}",
            dirs.len(),
            if dirs.len() == 1 { "y" } else { "ies" },
            if a.baseline.is_some() {
                " --baseline"
            } else {
                ""
            },
            if a.axis.is_some() {
                " --axis"
            } else {
                "out --axis or --baseline"
            },
        ),
    })
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    crate::results::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Compares, prints, writes; the exit code: OK, or GATE_FAILED when the gate failed.
pub(crate) fn run(a: Args) -> Result<u8> {
    let inputs = inputs(&a)?;
    let rules = GateRules {
        fail_on: a.fail_on.clone(),
        fail_on_verdict: a.fail_on_verdict.clone(),
    };
    let c = compare::compare(&inputs, &rules)?;
    let md = compare::markdown(&c);
    let json = serde_json::to_string_pretty(&c).context("serializing the comparison")? + "\n";
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write(dir, "compare.md", &md)?;
        write(dir, "compare.html", &compare::html(&c))?;
        write(dir, "compare.json", &json)?;
    }
    match a.format {
        Format::Md => print!("{md}"),
        Format::Json => print!("{json}"),
    }
    if c.gate.failed {
        eprintln!(
            "nicstorm compare: the gate failed ({} reason{}); exit {}",
            c.gate.reasons.len(),
            if c.gate.reasons.len() == 1 { "" } else { "s" },
            exit::GATE_FAILED
        );
        return Ok(exit::GATE_FAILED);
    }
    Ok(exit::OK)
}
