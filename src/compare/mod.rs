//! `nicstorm compare`: two sets of repetitions of the same cells, BASE and NEW (two results
//! directories, two values of one axis in one directory, or a stored baseline and a results
//! directory), set side by side cell by cell: verdict counts, each metric's spread and an
//! exact test where the repetitions allow one, a line per cell (better, worse, same,
//! undecided), whether the two sides ran interleaved, and the gate (`--fail-on`,
//! `--fail-on-verdict`) that decides the exit code. docs/compare.md documents the rules, the
//! baseline file and the JSON schema.
//!
//! matching.rs pairs the cells, classify.rs judges a metric and a cell, interleave.rs reads
//! the order in time, baseline.rs and tolerances.rs the tolerances, render.rs writes the
//! markdown and the HTML page. This file reads the inputs and assembles the comparison.

mod baseline;
mod classify;
mod interleave;
mod matching;
mod render;
mod tolerances;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

pub(crate) use classify::Outcome;
use classify::{Centre, Summary, Test, Tolerance};
use interleave::Order;
use matching::{CellKey, Pair};
pub(crate) use render::{html, markdown};
use tolerances::{Tolerances, VERDICT};

use crate::model::verdict::Verdict;
use crate::results::metrics::{Better, Unit, METRICS};
use crate::results::select::select_rows;
use crate::results::{host_class, read_csv, CellRow};

/// The JSON output's schema name and version (docs/compare.md).
pub(crate) const SCHEMA: &str = "nicstorm-compare/1";

/// Two values of one axis, `--axis NAME=BASE,NEW`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AxisChoice {
    pub(crate) axis: &'static str,
    pub(crate) base: String,
    pub(crate) new: String,
}

impl std::str::FromStr for AxisChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let allowed = matching::COMPARABLE_AXES.join(", ");
        let Some((name, values)) = s.split_once('=') else {
            return Err(format!(
                "{s:?}: expected NAME=BASE,NEW (e.g. qemu=system,plain); NAME one of {allowed}"
            ));
        };
        let Some(axis) = matching::COMPARABLE_AXES.iter().find(|a| **a == name) else {
            return Err(format!("{s:?}: unknown axis {name:?}; allowed: {allowed}"));
        };
        match values.split(',').collect::<Vec<_>>()[..] {
            [b, n] if !b.is_empty() && !n.is_empty() && b != n => Ok(AxisChoice {
                axis,
                base: b.to_owned(),
                new: n.to_owned(),
            }),
            _ => Err(format!(
                "{s:?}: expected two different values of {name}, BASE,NEW (e.g. {name}=A,B)"
            )),
        }
    }
}

/// What is compared with what.
#[derive(Debug, Clone)]
pub(crate) enum Inputs {
    /// Two results directories (or cells.csv files).
    Dirs { base: PathBuf, new: PathBuf },
    /// Two values of one axis in one results directory.
    Axis { dir: PathBuf, choice: AxisChoice },
    /// A baseline file (its results, its tolerances) and a results directory.
    Baseline { file: PathBuf, new: PathBuf },
}

/// What fails the gate.
#[derive(Debug, Clone, Default)]
pub(crate) struct GateRules {
    /// Cell lines that fail it (worse, undecided).
    pub(crate) fail_on: Vec<Outcome>,
    /// Verdicts that fail it when any repetition on NEW ended in one.
    pub(crate) fail_on_verdict: Vec<Verdict>,
}

/// One side of the comparison.
#[derive(Debug, Serialize)]
pub(crate) struct Side {
    /// Where its rows came from, as given.
    pub(crate) source: String,
    /// `axis=value` when the sides are two values of one axis.
    pub(crate) selection: Option<String>,
    /// Rows that count (per cell, repetition and host the latest with a result; search steps
    /// left out).
    pub(crate) rows: usize,
}

/// One metric of one cell on both sides.
#[derive(Debug, Serialize)]
pub(crate) struct MetricComparison {
    /// The cells.csv column, or `verdict` (the share of repetitions not `ok`).
    pub(crate) metric: &'static str,
    pub(crate) what: &'static str,
    pub(crate) better: Better,
    pub(crate) base: Option<Summary>,
    pub(crate) new: Option<Summary>,
    /// NEW's centre minus BASE's (median; for `verdict` the share).
    pub(crate) delta: Option<f64>,
    pub(crate) tolerance: Tolerance,
    /// The tolerance in the metric's unit, from BASE's centre.
    pub(crate) allowed: Option<f64>,
    pub(crate) test: Test,
    /// None: not measured on both sides.
    pub(crate) outcome: Option<Outcome>,
    pub(crate) why: String,
    #[serde(skip)]
    pub(crate) unit: Option<Unit>,
}

/// One cell on both sides.
#[derive(Debug, Serialize)]
pub(crate) struct CellComparison {
    pub(crate) title: String,
    pub(crate) host_class: String,
    pub(crate) axes: BTreeMap<&'static str, String>,
    pub(crate) base_cell_ids: Vec<String>,
    pub(crate) new_cell_ids: Vec<String>,
    pub(crate) base_verdicts: BTreeMap<String, usize>,
    pub(crate) new_verdicts: BTreeMap<String, usize>,
    pub(crate) outcome: Outcome,
    pub(crate) why: String,
    pub(crate) order: Order,
    pub(crate) metrics: Vec<MetricComparison>,
    /// What a reader must know about this cell (pooled cell ids, other settings).
    pub(crate) notes: Vec<String>,
}

/// A cell on one side only.
#[derive(Debug, Serialize)]
pub(crate) struct Unmatched {
    pub(crate) title: String,
    pub(crate) host_class: String,
    pub(crate) repetitions: usize,
}

/// The gate's decision.
#[derive(Debug, Serialize)]
pub(crate) struct Gate {
    pub(crate) fail_on: Vec<Outcome>,
    pub(crate) fail_on_verdict: Vec<String>,
    pub(crate) failed: bool,
    pub(crate) reasons: Vec<String>,
}

/// The whole comparison: what the markdown, the page and the JSON show.
#[derive(Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) schema: &'static str,
    pub(crate) base: Side,
    pub(crate) new: Side,
    /// The compared axis, when the sides are two values of one.
    pub(crate) axis: Option<&'static str>,
    pub(crate) alpha: f64,
    /// Over every compared repetition of both sides.
    pub(crate) order: Order,
    /// Cells per line: better, worse, same, undecided.
    pub(crate) counts: BTreeMap<&'static str, usize>,
    pub(crate) cells: Vec<CellComparison>,
    pub(crate) only_base: Vec<Unmatched>,
    pub(crate) only_new: Vec<Unmatched>,
    pub(crate) gate: Gate,
}

/// The rows of a results directory (its cells.csv) or of a cells.csv file.
fn read_side(path: &Path) -> Result<Vec<CellRow>> {
    if path.is_file() {
        return read_csv(path);
    }
    let csv = path.join("cells.csv");
    if !csv.is_file() {
        bail!(
            "{}: not a results directory: it has no cells.csv (give results/<matrix>/, or a cells.csv file)",
            path.display()
        );
    }
    read_csv(&csv)
}

/// The rows that count: `select_rows`, search steps left out (a search is compared by its
/// bracket, which compare does not do).
fn counted(rows: &[CellRow]) -> Vec<&CellRow> {
    select_rows(rows)
        .into_iter()
        .filter(|r| r.search_id.is_none())
        .collect()
}

/// Reads the inputs and compares them.
pub(crate) fn compare(inputs: &Inputs, rules: &GateRules) -> Result<Comparison> {
    match inputs {
        Inputs::Dirs { base, new } => {
            let (b, n) = (read_side(base)?, read_side(new)?);
            Ok(assemble(
                side(base, None, &b),
                side(new, None, &n),
                &counted(&b),
                &counted(&n),
                None,
                &Tolerances::default(),
                rules,
            ))
        }
        Inputs::Baseline { file, new } => {
            let bl = baseline::read(file)?;
            let (b, n) = (read_side(&bl.results)?, read_side(new)?);
            let mut base_side = side(&bl.results, None, &b);
            base_side.source = format!("{} (baseline {})", bl.results.display(), file.display());
            Ok(assemble(
                base_side,
                side(new, None, &n),
                &counted(&b),
                &counted(&n),
                None,
                &bl.tolerances,
                rules,
            ))
        }
        Inputs::Axis { dir, choice } => {
            let rows = read_side(dir)?;
            let all = counted(&rows);
            let pick = |v: &str| -> Vec<&CellRow> {
                all.iter()
                    .copied()
                    .filter(|r| matching::axis_value(r, choice.axis) == v)
                    .collect()
            };
            let (b, n) = (pick(&choice.base), pick(&choice.new));
            for (v, got) in [(&choice.base, &b), (&choice.new, &n)] {
                if got.is_empty() {
                    let mut present: Vec<String> = all
                        .iter()
                        .map(|r| matching::axis_value(r, choice.axis))
                        .collect();
                    present.sort();
                    present.dedup();
                    bail!(
                        "--axis {}={},{}: no row of {} has {}={v}; values there: {}",
                        choice.axis,
                        choice.base,
                        choice.new,
                        dir.display(),
                        choice.axis,
                        present.join(", ")
                    );
                }
            }
            let sel = |v: &str| Some(format!("{}={v}", choice.axis));
            let mut base_side = side(dir, sel(&choice.base), &[]);
            base_side.rows = b.len();
            let mut new_side = side(dir, sel(&choice.new), &[]);
            new_side.rows = n.len();
            Ok(assemble(
                base_side,
                new_side,
                &b,
                &n,
                Some(choice.axis),
                &Tolerances::default(),
                rules,
            ))
        }
    }
}

fn side(path: &Path, selection: Option<String>, rows: &[CellRow]) -> Side {
    Side {
        source: path.display().to_string(),
        selection,
        rows: counted(rows).len(),
    }
}

/// Repetitions that measured something: not `error`, not `not_applicable`.
fn measured<'a>(rows: &[&'a CellRow]) -> Vec<&'a CellRow> {
    rows.iter()
        .copied()
        .filter(|r| r.verdict != Verdict::Error && r.verdict != Verdict::NotApplicable)
        .collect()
}

fn verdict_counts(rows: &[&CellRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.verdict.to_string()).or_default() += 1;
    }
    m
}

fn cell_ids(rows: &[&CellRow]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|r| r.cell_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One cell's comparison, from its repetitions on both sides.
fn compare_cell(p: &Pair, tol: &Tolerances, axis: Option<&str>) -> CellComparison {
    let (mb, mn) = (measured(&p.base), measured(&p.new));
    let mut metrics = vec![];
    // The verdict first: 1 for a repetition that did not end ok, 0 for one that did.
    let not_ok = |rows: &[&CellRow]| -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| Some(if r.verdict == Verdict::Ok { 0.0 } else { 1.0 }))
            .collect()
    };
    let vt = tol.get(VERDICT).expect("verdict has a tolerance");
    let f = classify::metric(&not_ok(&mb), &not_ok(&mn), Better::Lower, vt, Centre::Mean);
    metrics.push(MetricComparison {
        metric: VERDICT,
        what: "repetitions not ok",
        better: Better::Lower,
        base: Summary::of(&not_ok(&mb)),
        new: Summary::of(&not_ok(&mn)),
        delta: f.delta,
        tolerance: vt,
        allowed: f.allowed,
        test: f.test,
        outcome: f.outcome,
        why: f.why,
        unit: None,
    });
    for m in METRICS {
        let vb: Vec<Option<f64>> = mb.iter().map(|r| (m.get)(r)).collect();
        let vn: Vec<Option<f64>> = mn.iter().map(|r| (m.get)(r)).collect();
        let t = tol.get(m.column).expect("every metric has a tolerance");
        let f = classify::metric(&vb, &vn, m.better, t, Centre::Median);
        metrics.push(MetricComparison {
            metric: m.column,
            what: m.what,
            better: m.better,
            base: Summary::of(&vb),
            new: Summary::of(&vn),
            delta: f.delta,
            tolerance: t,
            allowed: f.allowed,
            test: f.test,
            outcome: f.outcome,
            why: f.why,
            unit: Some(m.unit),
        });
    }
    let findings: Vec<(&str, Option<Outcome>)> =
        metrics.iter().map(|m| (m.metric, m.outcome)).collect();
    let (outcome, mut why) = classify::cell(&findings);
    // Undecided only because no test was possible: say that, with the sizes, once.
    let small: Vec<&Test> = metrics
        .iter()
        .filter(|m| m.outcome.is_some())
        .map(|m| &m.test)
        .collect();
    if outcome == Outcome::Undecided
        && !small.is_empty()
        && small.iter().all(|t| matches!(t, Test::NTooSmall { .. }))
    {
        if let Test::NTooSmall {
            n_base,
            n_new,
            min_p,
        } = small[0]
        {
            why = format!(
                "too few repetitions: {n_base} vs {n_new} can reach p = {min_p:.3} at best, not < {}",
                classify::ALPHA
            );
        }
    }
    let starts =
        |rows: &[&CellRow]| -> Vec<String> { rows.iter().map(|r| r.started_at.clone()).collect() };
    let (sb, sn) = (starts(&mb), starts(&mn));
    let order = interleave::order(
        &sb.iter().map(String::as_str).collect::<Vec<_>>(),
        &sn.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (base_cell_ids, new_cell_ids) = (cell_ids(&p.base), cell_ids(&p.new));
    let mut notes = vec![];
    for (name, ids) in [("BASE", &base_cell_ids), ("NEW", &new_cell_ids)] {
        if ids.len() > 1 {
            notes.push(format!(
                "{name} holds {} cells with these axes ({}): settings outside the row differ, and their repetitions are pooled here",
                ids.len(),
                ids.join(", ")
            ));
        }
    }
    let key = |r: &&CellRow| (r.run_id.clone(), r.cell_id.clone(), r.repetition);
    let base_keys: std::collections::BTreeSet<_> = p.base.iter().map(key).collect();
    let shared = p.new.iter().filter(|r| base_keys.contains(&key(r))).count();
    if shared > 0 {
        notes.push(format!(
            "BASE and NEW share {shared} row(s) (same run, cell and repetition): a repetition compared with itself"
        ));
    }
    // Two values of an axis are two cell ids anyway; two directories should share the id.
    if axis.is_none()
        && base_cell_ids.len() == 1
        && new_cell_ids.len() == 1
        && base_cell_ids != new_cell_ids
    {
        notes.push(format!(
            "cell ids differ ({} vs {}): settings outside the row differ (guest sysctls, ports, memory, a variant's environment)",
            base_cell_ids[0], new_cell_ids[0]
        ));
    }
    CellComparison {
        title: p.key.title(),
        host_class: p.key.class.clone(),
        axes: p.key.axes.iter().cloned().collect(),
        base_cell_ids,
        new_cell_ids,
        base_verdicts: verdict_counts(&p.base),
        new_verdicts: verdict_counts(&p.new),
        outcome,
        why,
        order,
        metrics,
        notes,
    }
}

fn assemble(
    base: Side,
    new: Side,
    base_rows: &[&CellRow],
    new_rows: &[&CellRow],
    axis: Option<&'static str>,
    tol: &Tolerances,
    rules: &GateRules,
) -> Comparison {
    let m = matching::pair(base_rows, new_rows, axis);
    let cells: Vec<CellComparison> = m.pairs.iter().map(|p| compare_cell(p, tol, axis)).collect();
    let mut counts: BTreeMap<&'static str, usize> = [
        Outcome::Better,
        Outcome::Worse,
        Outcome::Same,
        Outcome::Undecided,
    ]
    .iter()
    .map(|o| (o.as_str(), 0))
    .collect();
    for c in &cells {
        *counts.entry(c.outcome.as_str()).or_default() += 1;
    }
    let (mut sb, mut sn) = (vec![], vec![]);
    for p in &m.pairs {
        sb.extend(measured(&p.base).iter().map(|r| r.started_at.clone()));
        sn.extend(measured(&p.new).iter().map(|r| r.started_at.clone()));
    }
    let order = interleave::order(
        &sb.iter().map(String::as_str).collect::<Vec<_>>(),
        &sn.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let unmatched = |v: &[(CellKey, usize)]| -> Vec<Unmatched> {
        v.iter()
            .map(|(k, n)| Unmatched {
                title: k.title(),
                host_class: k.class.clone(),
                repetitions: *n,
            })
            .collect()
    };
    let gate = gate(&cells, new_rows, axis, rules);
    Comparison {
        schema: SCHEMA,
        base,
        new,
        axis,
        alpha: classify::ALPHA,
        order,
        counts,
        cells,
        only_base: unmatched(&m.only_base),
        only_new: unmatched(&m.only_new),
        gate,
    }
}

/// The gate: a cell whose line is in `fail_on`, or a repetition on NEW (of any cell, matched
/// or not) that ended in a verdict of `fail_on_verdict`, fails it; so does `fail_on` when no
/// cell was on both sides.
fn gate(
    cells: &[CellComparison],
    new_rows: &[&CellRow],
    axis: Option<&str>,
    rules: &GateRules,
) -> Gate {
    let mut reasons = vec![];
    // A gate over nothing would pass whatever NEW did.
    if !rules.fail_on.is_empty() && cells.is_empty() {
        reasons.push(
            "no cell is on both sides, so nothing was compared (other axes, targets or host classes)"
                .to_owned(),
        );
    }
    for c in cells {
        if rules.fail_on.contains(&c.outcome) {
            reasons.push(format!("{} ({}): {}", c.title, c.host_class, c.why));
        }
    }
    for r in new_rows {
        if let Some(v) = r.verdict.known() {
            if rules.fail_on_verdict.contains(v) {
                reasons.push(format!(
                    "{} ({}): NEW repetition {} of run {} ended {v}",
                    CellKey::of(r, axis).title(),
                    host_class(r),
                    r.repetition,
                    r.run_id
                ));
            }
        }
    }
    Gate {
        fail_on: rules.fail_on.clone(),
        fail_on_verdict: rules
            .fail_on_verdict
            .iter()
            .map(|v| v.to_string())
            .collect(),
        failed: !reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_choices() {
        let c: AxisChoice = "qemu=system,vmnet-flow-control/retry".parse().unwrap();
        assert_eq!(
            (c.axis, c.base.as_str(), c.new.as_str()),
            ("qemu", "system", "vmnet-flow-control/retry")
        );
        // (argument, what the error must say)
        let table: &[(&str, &[&str])] = &[
            (
                "qemu",
                &["\"qemu\"", "expected NAME=BASE,NEW", "one of nic, mode"],
            ),
            (
                "emulator=a,b",
                &[
                    "unknown axis \"emulator\"",
                    "allowed: nic, mode, vhost, qemu",
                ],
            ),
            ("qemu=a", &["two different values of qemu"]),
            ("qemu=a,a", &["two different values"]),
            ("qemu=a,b,c", &["two different values"]),
            ("target=1,2", &["unknown axis \"target\""]),
        ];
        for (arg, want) in table {
            let err = arg.parse::<AxisChoice>().unwrap_err();
            for w in *want {
                assert!(err.contains(w), "{arg}: {err}");
            }
        }
    }

    fn rows(cell: &str, verdicts: &[&str], drain: &[f64], minute0: u32) -> Vec<CellRow> {
        verdicts
            .iter()
            .zip(drain)
            .enumerate()
            .map(|(i, (v, d))| CellRow {
                started_at: format!("2026-11-24T03:{:02}:00Z", minute0 + 2 * i as u32),
                drain_seconds: Some(*d),
                ..CellRow::example(cell, i as u32 + 1, v)
            })
            .collect()
    }

    fn refs(v: &[CellRow]) -> Vec<&CellRow> {
        v.iter().collect()
    }

    #[test]
    fn a_planted_regression_is_worse_and_fails_the_gate() {
        let base = rows("c", &["ok"; 5], &[1.0, 1.1, 0.9, 1.05, 0.95], 0);
        let slow = rows("c", &["ok"; 5], &[3.0, 3.1, 2.9, 3.05, 2.95], 1);
        let rules = GateRules {
            fail_on: vec![Outcome::Worse],
            fail_on_verdict: vec![Verdict::Hung],
        };
        let c = assemble(
            side(Path::new("b"), None, &base),
            side(Path::new("n"), None, &slow),
            &refs(&base),
            &refs(&slow),
            None,
            &Tolerances::default(),
            &rules,
        );
        assert_eq!(c.cells.len(), 1);
        assert_eq!(c.cells[0].outcome, Outcome::Worse, "{}", c.cells[0].why);
        assert_eq!(
            c.cells[0].order.interleaving,
            interleave::Interleaving::Interleaved
        );
        assert!(c.gate.failed);
        let same = assemble(
            side(Path::new("b"), None, &base),
            side(Path::new("n"), None, &base),
            &refs(&base),
            &refs(&base),
            None,
            &Tolerances::default(),
            &rules,
        );
        assert_eq!(
            same.cells[0].outcome,
            Outcome::Same,
            "{}",
            same.cells[0].why
        );
        assert!(!same.gate.failed);
        // A hang on NEW fails the verdict rule, whatever the statistics say.
        let hung = rows("c", &["ok", "hung"], &[1.0, 1.0], 0);
        let g = assemble(
            side(Path::new("b"), None, &base),
            side(Path::new("n"), None, &hung),
            &refs(&base),
            &refs(&hung),
            None,
            &Tolerances::default(),
            &rules,
        );
        assert!(g.gate.failed);
        assert!(
            g.gate.reasons[0].contains("ended hung"),
            "{:?}",
            g.gate.reasons
        );
    }
}
