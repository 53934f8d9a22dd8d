//! The comparison as markdown (a table of cells, then each cell's metrics) and as one
//! self-contained HTML page in the report's style (its style sheet, no script).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::classify::{Outcome, Summary, Test};
use super::interleave::Interleaving;
use super::{CellComparison, Comparison, MetricComparison, Side};
use crate::support::markup::escape as esc;

/// The host classes of each side's unmatched cells: cells of different host classes never
/// match, and that is the usual reason for nothing to match.
fn classes_hint(c: &Comparison) -> String {
    let classes = |v: &[super::Unmatched]| {
        let mut x: Vec<&str> = v.iter().map(|u| u.host_class.as_str()).collect();
        x.sort();
        x.dedup();
        if x.is_empty() {
            "none".to_owned()
        } else {
            x.join("; ")
        }
    };
    format!(
        "Host classes of BASE: {}. Of NEW: {}.",
        classes(&c.only_base),
        classes(&c.only_new)
    )
}

fn rows(n: usize) -> String {
    format!("{n} row{}", if n == 1 { "" } else { "s" })
}

/// `text` escaped for HTML, with `backticked` parts as code.
fn code_spans(text: &str) -> String {
    esc(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_owned()
            }
        })
        .collect()
}

fn side_text(s: &Side) -> String {
    match &s.selection {
        Some(sel) => format!("{} with {sel}", s.source),
        None => s.source.clone(),
    }
}

fn counts_text(m: &BTreeMap<String, usize>) -> String {
    let total: usize = m.values().sum();
    let mut v: Vec<(&String, &usize)> = m.iter().collect();
    v.sort_by_key(|(name, n)| (std::cmp::Reverse(**n), (*name).clone()));
    v.iter()
        .map(|(name, n)| format!("{name} {n}/{total}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value of metric `m` in its unit; a verdict share as "k/n".
fn value(m: &MetricComparison, v: f64, n: usize) -> String {
    match m.unit {
        Some(u) => u.format(v),
        None => format!("{}/{n}", (v * n as f64).round()),
    }
}

fn summary_text(m: &MetricComparison, s: &Option<Summary>) -> String {
    let Some(s) = s else {
        return "–".into();
    };
    let missing = if s.missing > 0 {
        format!(", {} missing", s.missing)
    } else {
        String::new()
    };
    match m.unit {
        Some(u) => format!(
            "{} ({}–{}, n={}{missing})",
            u.format(s.median),
            u.format(s.min),
            u.format(s.max),
            s.n
        ),
        None => format!("{} not ok", value(m, s.mean, s.n)),
    }
}

fn delta_text(m: &MetricComparison) -> String {
    let Some(d) = m.delta else {
        return "–".into();
    };
    let sign = if d > 0.0 { "+" } else { "" };
    let tol = m.allowed.map_or(String::new(), |a| match m.unit {
        Some(u) => format!(" (±{})", u.format(a)),
        None => format!(" (±{:.0}%)", a * 100.0),
    });
    match m.unit {
        Some(u) => format!("{sign}{}{tol}", u.format(d)),
        None => format!("{sign}{:.0}%{tol}", d * 100.0),
    }
}

fn test_text(t: &Test) -> String {
    match t {
        Test::NotMeasured => "not measured".into(),
        Test::NTooSmall {
            n_base,
            n_new,
            min_p,
        } => format!("n too small ({n_base} vs {n_new}, smallest p {min_p:.3})"),
        Test::TooLarge { n_base, n_new } => {
            format!("not made: {n_base} vs {n_new}, more than the exact test counts")
        }
        Test::MannWhitney { u, p } => format!("U = {u}, p = {p:.4}"),
        Test::FisherExact {
            ones_base,
            ones_new,
            p,
        } => format!("Fisher's exact, {ones_new} against {ones_base}, p = {p:.4}"),
    }
}

fn outcome_text(o: Option<Outcome>) -> &'static str {
    o.map_or("–", Outcome::as_str)
}

fn order_sentence(c: &Comparison) -> String {
    let o = &c.order;
    let what = match o.interleaving {
        Interleaving::Interleaved => "interleaved: each side's repetitions are spread over the other's time span, so a drift over the run (host load, temperature) reaches both",
        Interleaving::Partly => "partly interleaved: some repetitions of one side ran in a block, so a drift over the run can reach one side more than the other",
        Interleaving::BackToBack => "back to back: all of one side ran before the other, so whatever drifted over the run (host load, temperature, a neighbour) is mixed up with the change",
        Interleaving::Unknown => "unknown (a start time is missing or does not parse)",
    };
    let per_cell: BTreeMap<&str, usize> = c.cells.iter().fold(BTreeMap::new(), |mut m, cell| {
        *m.entry(cell.order.interleaving.as_str()).or_default() += 1;
        m
    });
    let per_cell = per_cell
        .iter()
        .map(|(k, n)| format!("{k} in {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{what} ({} runs of one side in a row over {} BASE and {} NEW repetitions; per cell: {})",
        o.runs,
        o.n_base,
        o.n_new,
        if per_cell.is_empty() {
            "no cell".into()
        } else {
            per_cell
        }
    )
}

fn counts_line(c: &Comparison) -> String {
    ["better", "worse", "same", "undecided"]
        .iter()
        .map(|k| format!("{} {k}", c.counts.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gate_line(c: &Comparison) -> String {
    let g = &c.gate;
    if g.fail_on.is_empty() && g.fail_on_verdict.is_empty() {
        return "none set (`--fail-on`, `--fail-on-verdict`): exit 0".into();
    }
    let rules: Vec<String> = g
        .fail_on
        .iter()
        .map(|o| format!("--fail-on {}", o.as_str()))
        .chain(
            (!g.fail_on_verdict.is_empty())
                .then(|| format!("--fail-on-verdict {}", g.fail_on_verdict.join(","))),
        )
        .collect();
    if g.failed {
        format!("FAILED ({}): exit 4", rules.join(", "))
    } else {
        format!("passed ({}): exit 0", rules.join(", "))
    }
}

const RULES: &str = "Rules (docs/compare.md): per metric, an exact two-sided Mann–Whitney U \
test over the repetitions that measured it, made only where the two sample sizes can reach \
p < 0.05 at all (2 / C(n₁+n₂, n₁) < 0.05: 4 and 4 is the first equal pair), else \"n too small\" \
and undecided; for the verdict (0 ok, 1 not ok) Fisher's exact test on the counts, gated by its own \
smallest p. p < 0.05 is better or worse by the metric's direction. \"same\" needs a test that \
could have found a difference, p ≥ 0.05, and centres (medians; for the verdict, the share not ok) \
within the tolerance: it says no difference larger than the tolerance was seen, not that there \
is none. A cell is worse if any metric is worse, else better if any is better, else same if all \
measured are same, else undecided. p-values are not corrected for the number of metrics and \
cells. Missing values are left out and counted, never taken as 0.";

/// The comparison as markdown.
pub(crate) fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# nicstorm compare\n");
    let _ = writeln!(s, "- BASE: `{}`, {}", side_text(&c.base), rows(c.base.rows));
    let _ = writeln!(s, "- NEW: `{}`, {}", side_text(&c.new), rows(c.new.rows));
    let _ = writeln!(s, "- Order in time: {}", order_sentence(c));
    let _ = writeln!(
        s,
        "- Cells compared: {} ({})",
        c.cells.len(),
        counts_line(c)
    );
    let _ = writeln!(s, "- Gate: {}", gate_line(c));
    for r in &c.gate.reasons {
        let _ = writeln!(s, "  - {r}");
    }
    s.push('\n');
    if c.cells.is_empty() {
        let _ = writeln!(s, "No cell is on both sides. {}", classes_hint(c));
    } else {
        s.push_str("| cell | host | BASE verdicts | NEW verdicts | order | result | why |\n|---|---|---|---|---|---|---|\n");
        for cell in &c.cells {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | **{}** | {} |",
                cell.title,
                cell.host_class,
                counts_text(&cell.base_verdicts),
                counts_text(&cell.new_verdicts),
                cell.order.interleaving.as_str(),
                cell.outcome.as_str(),
                cell.why
            );
        }
    }
    for (name, list) in [("BASE", &c.only_base), ("NEW", &c.only_new)] {
        if !list.is_empty() {
            let _ = writeln!(s, "\nOnly in {name} (not compared):\n");
            for u in list {
                let _ = writeln!(
                    s,
                    "- {} ({}): {} repetition(s)",
                    u.title, u.host_class, u.repetitions
                );
            }
        }
    }
    for cell in &c.cells {
        cell_markdown(&mut s, cell);
    }
    let _ = writeln!(s, "\n{RULES}");
    s
}

fn cell_markdown(s: &mut String, cell: &CellComparison) {
    let _ = writeln!(
        s,
        "\n## {} ({}): {}\n",
        cell.title,
        cell.host_class,
        cell.outcome.as_str()
    );
    let _ = writeln!(
        s,
        "BASE cell {}, NEW cell {}; {} ({} runs).",
        cell.base_cell_ids.join(", "),
        cell.new_cell_ids.join(", "),
        cell.order.interleaving.as_str(),
        cell.order.runs
    );
    for n in &cell.notes {
        let _ = writeln!(s, "Note: {n}.");
    }
    s.push_str("\n| metric | better | BASE | NEW | Δ (tolerance) | test | result |\n|---|---|---|---|---|---|---|\n");
    for m in &cell.metrics {
        let _ = writeln!(
            s,
            "| {} `{}` | {} | {} | {} | {} | {} | {} |",
            m.what,
            m.metric,
            m.better.as_str(),
            summary_text(m, &m.base),
            summary_text(m, &m.new),
            delta_text(m),
            test_text(&m.test),
            outcome_text(m.outcome)
        );
    }
}

const EXTRA_CSS: &str = ".o-better{background:#c8e6c9}.o-worse{background:#ffcdd2}\
.o-same{background:#e3e3e3}.o-undecided{background:#fff3cd}.fail{color:#b71c1c;font-weight:bold}";

fn o_class(o: Option<Outcome>) -> String {
    o.map_or(String::new(), |o| format!(" class=\"o-{}\"", o.as_str()))
}

/// The comparison as one self-contained HTML page in the report's style.
pub(crate) fn html(c: &Comparison) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>nicstorm compare</title><style>{}{EXTRA_CSS}</style></head><body>\n\
         <h1>nicstorm compare</h1>\n<ul>",
        crate::report::CSS
    );
    let _ = write!(
        h,
        "<li>BASE: <code>{}</code>, {}</li><li>NEW: <code>{}</code>, {}</li>\
         <li>Order in time: {}</li><li>Cells compared: {} ({})</li><li>Gate: <span{}>{}</span>",
        esc(&side_text(&c.base)),
        rows(c.base.rows),
        esc(&side_text(&c.new)),
        rows(c.new.rows),
        esc(&order_sentence(c)),
        c.cells.len(),
        esc(&counts_line(c)),
        if c.gate.failed { " class=\"fail\"" } else { "" },
        code_spans(&gate_line(c)),
    );
    if !c.gate.reasons.is_empty() {
        h.push_str("<ul>");
        for r in &c.gate.reasons {
            let _ = write!(h, "<li>{}</li>", esc(r));
        }
        h.push_str("</ul>");
    }
    h.push_str("</li></ul>\n<h2>Cells</h2>\n");
    if c.cells.is_empty() {
        let _ = writeln!(
            h,
            "<p>No cell is on both sides. {}</p>",
            esc(&classes_hint(c))
        );
    } else {
        h.push_str(
            "<table><thead><tr><th>cell</th><th>host</th><th>BASE verdicts</th>\
            <th>NEW verdicts</th><th>order</th><th>result</th><th>why</th></tr></thead><tbody>\n",
        );
        for (i, cell) in c.cells.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td><a href=\"#c{i}\">{}</a></td><td class=\"note\">{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td{}><b>{}</b></td><td>{}</td></tr>",
                esc(&cell.title),
                esc(&cell.host_class),
                esc(&counts_text(&cell.base_verdicts)),
                esc(&counts_text(&cell.new_verdicts)),
                esc(cell.order.interleaving.as_str()),
                o_class(Some(cell.outcome)),
                cell.outcome.as_str(),
                esc(&cell.why)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    for (name, list) in [("BASE", &c.only_base), ("NEW", &c.only_new)] {
        if !list.is_empty() {
            let _ = write!(h, "<h3>Only in {name} (not compared)</h3>\n<ul>");
            for u in list {
                let _ = write!(
                    h,
                    "<li>{} <span class=\"note\">({})</span>: {} repetition(s)</li>",
                    esc(&u.title),
                    esc(&u.host_class),
                    u.repetitions
                );
            }
            h.push_str("</ul>\n");
        }
    }
    h.push_str("<h2>Metrics per cell</h2>\n");
    for (i, cell) in c.cells.iter().enumerate() {
        let _ = write!(
            h,
            "<section class=\"cell\" id=\"c{i}\"><h3>{} <span class=\"note\">({})</span>: \
             <span{}>{}</span></h3>\n<p class=\"note\">BASE cell {}, NEW cell {}; {} ({} runs).</p>\n",
            esc(&cell.title),
            esc(&cell.host_class),
            o_class(Some(cell.outcome)),
            cell.outcome.as_str(),
            esc(&cell.base_cell_ids.join(", ")),
            esc(&cell.new_cell_ids.join(", ")),
            esc(cell.order.interleaving.as_str()),
            cell.order.runs
        );
        for n in &cell.notes {
            let _ = writeln!(h, "<p class=\"note\">Note: {}.</p>", esc(n));
        }
        h.push_str(
            "<table class=\"stats\"><thead><tr><th>metric</th><th>better</th><th>BASE</th>\
            <th>NEW</th><th>Δ (tolerance)</th><th>test</th><th>result</th></tr></thead><tbody>\n",
        );
        for m in &cell.metrics {
            let _ = writeln!(
                h,
                "<tr><td>{} <span class=\"note\">{}</span></td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td{} title=\"{}\">{}</td></tr>",
                esc(m.what),
                esc(m.metric),
                m.better.as_str(),
                esc(&summary_text(m, &m.base)),
                esc(&summary_text(m, &m.new)),
                esc(&delta_text(m)),
                esc(&test_text(&m.test)),
                o_class(m.outcome),
                esc(&m.why),
                outcome_text(m.outcome)
            );
        }
        h.push_str("</tbody></table></section>\n");
    }
    let _ = writeln!(h, "<p class=\"note\">{}</p>\n</body></html>", esc(RULES));
    h
}
