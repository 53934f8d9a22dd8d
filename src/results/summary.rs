//! Summary table made from cells.csv rows: rows NIC, columns network mode, like the seed's table;
//! repetitions of a cell summed up as verdict counts and the spread of their key figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::matrix::plan::{NetMode, NicModel};
use crate::matrix::search::{bracket, Bracket, OkSide, Outcome, Searched};
use crate::model::named::Named;
use crate::model::verdict::Verdict;
use crate::results::host_class;
use crate::results::select::select_rows;
use crate::results::stats::spread;
use crate::results::{write_atomic, Axes, CellRow};
use crate::support::markup::or_dash;

/// A table cell of the summary: a NIC (row) and a network mode (column).
type NicAndMode<'a> = (&'a Named<NicModel>, &'a Named<NetMode>);

/// The rows that count, grouped as every form of the summary shows them: per NIC and mode,
/// the cells there (each the repetitions of one cell on one kind of host at one target), with
/// the axis values that tell them apart; and the steps of breaking-point searches.
struct Grouped<'r> {
    chosen: Vec<&'r CellRow>,
    modes: Vec<&'r Named<NetMode>>,
    /// Per NIC, per mode in `modes` order, its entries (empty: nothing measured there).
    nics: Vec<(&'r Named<NicModel>, Vec<Vec<Entry<'r>>>)>,
    searches: Vec<&'r CellRow>,
}

/// One cell's repetitions in a table cell, and what tells it apart from its neighbours there.
struct Entry<'r> {
    which: Vec<String>,
    reps: Vec<&'r CellRow>,
}

fn grouped(rows: &[CellRow]) -> Grouped<'_> {
    let chosen = select_rows(rows);
    let (searches, cells): (Vec<&CellRow>, Vec<&CellRow>) =
        chosen.iter().partition(|r| r.search_id.is_some());

    // Repetitions of one cell on one kind of host at one target.
    let mut cell_reps: BTreeMap<(String, &str, Option<u64>), Vec<&CellRow>> = BTreeMap::new();
    for r in &cells {
        cell_reps
            .entry((host_class(r), r.cell_id.as_str(), r.target))
            .or_default()
            .push(r);
    }
    let mut groups: BTreeMap<NicAndMode, Vec<Vec<&CellRow>>> = BTreeMap::new();
    for reps in cell_reps.into_values() {
        let r = reps[0];
        groups.entry((&r.nic, &r.mode)).or_default().push(reps);
    }
    let mut nic_names: Vec<&Named<NicModel>> = groups.keys().map(|k| k.0).collect();
    let mut modes: Vec<&Named<NetMode>> = groups.keys().map(|k| k.1).collect();
    nic_names.dedup();
    modes.sort();
    modes.dedup();
    let nics = nic_names
        .into_iter()
        .map(|nic| {
            let per_mode = modes
                .iter()
                .map(|mode| match groups.remove(&(nic, *mode)) {
                    None => vec![],
                    Some(mut entries) => {
                        entries.sort_by_key(|reps| sort_key(reps[0]));
                        entries_of(entries)
                    }
                })
                .collect();
            (nic, per_mode)
        })
        .collect();
    Grouped {
        chosen,
        modes,
        nics,
        searches,
    }
}

/// Markdown summary of `rows` (in file order; see [`select_rows`] for which row of a
/// repetition counts): summary.md. Cells sharing a NIC and mode are listed one per line, each
/// prefixed with the axis values that tell them apart; a cell with several repetitions is one
/// line with its verdict counts and the spread of its key figures. Steps of breaking-point
/// searches are listed below the table, one line per search. [`summarize_terminal`] is the
/// same for a terminal, [`summary_json`] for a program.
pub(crate) fn summarize(rows: &[CellRow]) -> String {
    let g = grouped(rows);
    if g.chosen.is_empty() {
        return "No results yet.\n".to_owned();
    }
    let mut out = String::new();
    if !g.nics.is_empty() {
        out.push_str("| NIC |");
        for m in &g.modes {
            out.push_str(&format!(" {m} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(g.modes.len()));
        out.push('\n');
    }
    for (nic, per_mode) in &g.nics {
        out.push_str(&format!("| {nic} |"));
        for entries in per_mode {
            let text = if entries.is_empty() {
                "-".to_owned()
            } else {
                entries
                    .iter()
                    .map(|e| {
                        // Markdown table cells cannot hold a pipe or a line break.
                        let text = cell_text(&e.reps, Some(SHORT))
                            .replace('|', "\\|")
                            .replace('\n', " ");
                        if e.which.is_empty() {
                            text
                        } else {
                            format!("{}: {text}", e.which.join(" "))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            out.push_str(&format!(" {} |", text));
        }
        out.push('\n');
    }
    if !g.searches.is_empty() {
        out.push_str(&search_lines(&g.searches));
    }
    out.push_str(&format!("\n{}\n", footnote(&g.chosen)));
    out
}

/// How long a message may be in a markdown table cell before it is cut (at a word).
const SHORT: usize = 60;

fn footnote(chosen: &[&CellRow]) -> String {
    let mut runs: Vec<&str> = chosen.iter().map(|r| r.run_id.as_str()).collect();
    runs.sort();
    runs.dedup();
    format!(
        "{} results (latest per cell, repetition and host) from run{} {}. \
         Entry: verdict, connections established at the peak / target (accelerator, seconds until the \
         disconnected connections drained or how many never did); for a failure also the seconds until \
         it recovered (`-` = never or not measured). A cell with several repetitions shows how many \
         ended in each verdict, then each figure's median, range and n over the repetitions that \
         measured it (`missing` = not measured; `error` repetitions measured nothing).",
        chosen.len(),
        if runs.len() == 1 { "" } else { "s" },
        runs.join(", ")
    )
}

/// The summary as a terminal table, at most `width` columns wide: one line per cell (NIC,
/// mode, the axis values that tell it apart from its neighbours, and its result, wrapped at
/// words, never cut), then the searches. With `color`, verdicts are coloured (ok green, error
/// and hangs red, the rest yellow); the caller decides (a terminal, NO_COLOR unset).
pub(crate) fn summarize_terminal(rows: &[CellRow], width: usize, color: bool) -> String {
    let g = grouped(rows);
    if g.chosen.is_empty() {
        return "No results yet.\n".to_owned();
    }
    let mut lines: Vec<[String; 4]> = vec![["NIC", "mode", "cell", "result"].map(String::from)];
    for (nic, per_mode) in &g.nics {
        for (mode, entries) in g.modes.iter().zip(per_mode) {
            for e in entries {
                let which = if e.which.is_empty() {
                    "-".to_owned()
                } else {
                    e.which.join(" ")
                };
                lines.push([
                    nic.to_string(),
                    mode.to_string(),
                    which,
                    cell_text(&e.reps, None),
                ]);
            }
        }
    }
    let w: Vec<usize> = (0..3)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let indent = w.iter().sum::<usize>() + 3 * 2;
    let room = width.saturating_sub(indent).max(30);
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let wrapped = if i == 0 {
            vec![l[3].clone()]
        } else {
            wrap(&l[3], room)
        };
        for (j, part) in wrapped.iter().enumerate() {
            let part = if color && i > 0 {
                colored(part)
            } else {
                part.clone()
            };
            let lead = if j == 0 {
                format!(
                    "{:<a$}  {:<b$}  {:<c$}  ",
                    l[0],
                    l[1],
                    l[2],
                    a = w[0],
                    b = w[1],
                    c = w[2]
                )
            } else {
                " ".repeat(indent)
            };
            out.push_str(format!("{lead}{part}").trim_end());
            out.push('\n');
        }
    }
    if !g.searches.is_empty() {
        out.push_str(&search_lines(&g.searches));
    }
    out.push('\n');
    for line in wrap(&footnote(&g.chosen), width.max(30)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces; a word longer than a line
/// is a line of its own, whole.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Each verdict's name in `line` in its colour.
fn colored(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([',', ':', ';']);
            let style = match bare.parse::<Verdict>() {
                Ok(Verdict::Ok) => console::Style::new().green(),
                Ok(Verdict::Error | Verdict::Hung | Verdict::Crashed) => {
                    console::Style::new().red().bold()
                }
                Ok(Verdict::NotApplicable) => console::Style::new().dim(),
                Ok(_) => console::Style::new().yellow(),
                Err(_) => return word.to_owned(),
            };
            format!(
                "{}{}",
                style.force_styling(true).apply_to(bare),
                &word[bare.len()..]
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The summary as data (`nicstorm summary --json`; docs/schemas/summary.schema.json): the
/// same cells and searches as the tables, with the figures as numbers.
pub(crate) fn summary_json(matrix: &str, rows: &[CellRow]) -> serde_json::Value {
    use serde_json::json;
    let g = grouped(rows);
    let mut runs: Vec<&str> = g.chosen.iter().map(|r| r.run_id.as_str()).collect();
    runs.sort();
    runs.dedup();
    let figure = |reps: &[&CellRow], f: &dyn Fn(&CellRow) -> Option<f64>| {
        let measured: Vec<Option<f64>> = reps
            .iter()
            .filter(|r| r.verdict != Verdict::Error)
            .map(|r| f(r))
            .collect();
        match spread(&measured) {
            None => serde_json::Value::Null,
            Some(s) => {
                json!({"n": s.n, "missing": s.missing, "min": s.min, "median": s.median, "max": s.max})
            }
        }
    };
    let mut cells = vec![];
    for (nic, per_mode) in &g.nics {
        for (mode, entries) in g.modes.iter().zip(per_mode) {
            for e in entries {
                let r = e.reps[0];
                let mut verdicts = serde_json::Map::new();
                for rep in &e.reps {
                    let n = verdicts.entry(rep.verdict.to_string()).or_insert(json!(0));
                    *n = json!(n.as_u64().unwrap_or(0) + 1);
                }
                let axes: serde_json::Map<String, serde_json::Value> = r
                    .named_axes()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect();
                cells.push(json!({
                    "cell_id": r.cell_id,
                    "nic": nic.to_string(),
                    "mode": mode.to_string(),
                    "axes": axes,
                    "which": e.which,
                    "connections": r.connections,
                    "target": r.target,
                    "accel": r.accel.as_ref().map(|a| a.to_string()),
                    "host_class": host_class(r),
                    "repetitions": e.reps.iter().map(|r| json!({
                        "run_id": r.run_id, "repetition": r.repetition, "verdict": r.verdict.to_string(),
                        "error": r.error,
                    })).collect::<Vec<_>>(),
                    "verdicts": verdicts,
                    "figures": {
                        "peak_established": figure(&e.reps, &|r| r.peak_established.map(|v| v as f64)),
                        "drain_seconds": figure(&e.reps, &|r| r.drain_seconds),
                        "undrained_connections": figure(&e.reps, &|r| r.undrained_connections.map(|v| v as f64)),
                        "ssh_max_seconds": figure(&e.reps, &|r| r.ssh_max_seconds),
                        "recovery_seconds": figure(&e.reps, &|r| r.recovery_seconds),
                    },
                    "text": cell_text(&e.reps, None),
                }));
            }
        }
    }
    let searches: Vec<serde_json::Value> = searches(&g.searches)
        .into_iter()
        .map(
            |Search {
                 class,
                 id,
                 param,
                 steps,
                 bracket: b,
             }| {
                let r = steps[0].0;
                json!({
                    "search_id": id,
                    "cell_id": r.cell_id,
                    "nic": r.nic.to_string(),
                    "mode": r.mode.to_string(),
                    "host_class": class,
                    "param": param.column(),
                    "ok": param.ok_side().as_str(),
                    "last_ok": b.last_ok,
                    "first_fail": b.first_fail,
                    "flapping": b.flapping,
                    "steps": steps.iter().map(|(r, value)| json!({
                        "step": r.search_step, "repetition": r.repetition,
                        "target": r.target, "value": value, "verdict": r.verdict.to_string(),
                    })).collect::<Vec<_>>(),
                })
            },
        )
        .collect();
    json!({
        "v": 1,
        "matrix": matrix,
        "results": g.chosen.len(),
        "runs": runs,
        "modes": g.modes.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "cells": cells,
        "searches": searches,
    })
}

/// One search's steps (of one kind of host, in step order) and the bracket they show.
struct Search<'r> {
    class: String,
    id: &'r str,
    /// What the search varies (of its first step; every step of one search id agrees).
    param: Searched,
    /// Each step with the value it ran (None: unreadable, left out of the bracket).
    steps: Vec<(&'r CellRow, Option<u64>)>,
    bracket: Bracket,
}

/// The searches among `rows`, per kind of host and search id.
fn searches<'r>(rows: &[&'r CellRow]) -> Vec<Search<'r>> {
    let mut by_search: BTreeMap<(String, &str), Vec<&CellRow>> = BTreeMap::new();
    for r in rows {
        by_search
            .entry((host_class(r), r.search_id.as_deref().unwrap_or("")))
            .or_default()
            .push(r);
    }
    by_search
        .into_iter()
        .map(|((class, id), mut steps)| {
            steps.sort_by_key(|r| (r.search_step, r.repetition));
            let param = steps[0].searched().unwrap_or(Searched::Connections);
            let read: Vec<Option<(u64, Outcome)>> = steps.iter().map(|r| r.search_step()).collect();
            let results: Vec<(u64, Outcome)> = read.iter().flatten().copied().collect();
            let steps: Vec<(&CellRow, Option<u64>)> = steps
                .into_iter()
                .zip(read)
                .map(|(r, step)| (r, step.map(|(v, _)| v)))
                .collect();
            Search {
                class,
                id,
                bracket: bracket(&results, param.ok_side()),
                param,
                steps,
            }
        })
        .collect()
}

/// One line per breaking-point search: its cell, the bracket its steps show, and the counts.
fn search_lines(rows: &[&CellRow]) -> String {
    let mut out = String::from("\nBreaking-point searches:\n\n");
    for Search {
        class,
        id,
        param,
        steps,
        bracket: b,
    } in searches(rows)
    {
        let r = steps[0].0;
        let vhost = match r.vhost.known() {
            Some(None) => String::new(),
            _ => format!("/vhost-{}", r.vhost),
        };
        // A search over connections reads as before; one over a variable names it, the rest
        // of the emulator's environment (a sweep's other variables tell searches apart), the
        // count that ran and the side it is ok on.
        let what = match r.search_setting(&param) {
            s if s.is_empty() => String::new(),
            s => format!("{s}: "),
        };
        let found = match (b.last_ok, b.first_fail) {
            (lo, Some(hi)) => format!("last ok {}, first failing {}", or_dash(lo), hi),
            (Some(lo), None) => match param.ok_side() {
                OkSide::Below => format!("none failed up to {lo}"),
                OkSide::Above => format!("none failed down to {lo}"),
            },
            (None, None) => "no result yet".to_owned(),
        };
        let flapping = if b.flapping.is_empty() {
            String::new()
        } else {
            format!(
                "; ok again {} a failure at {}",
                match param.ok_side() {
                    OkSide::Below => "above",
                    OkSide::Above => "below",
                },
                b.flapping
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.push_str(&format!(
            "- {id} {}/{}{vhost}/{}/{} ({class}): {what}{found}{flapping} ({} steps: {})\n",
            r.nic,
            r.mode,
            r.disconnect,
            r.scope,
            b.steps,
            steps
                .iter()
                .map(|(r, v)| format!("{} {}", or_dash(*v), r.verdict))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// Writes `dir`/summary.md (the results of matrix `matrix`) from `rows`, the rows of its
/// cells.csv as the caller read them; returns its path.
pub(crate) fn write_summary(dir: &Path, matrix: &str, rows: &[CellRow]) -> Result<PathBuf> {
    let path = dir.join("summary.md");
    let text = format!("# nicstorm results: {matrix}\n\n{}", summarize(rows));
    write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Orders entries of one table cell: by the axes (each in its vocabulary's order, names a
/// newer build wrote after the known ones), then what ran and where.
fn sort_key(r: &CellRow) -> (Axes, Option<u32>, Option<u64>, String) {
    (r.axes(), r.vcpus, r.server_memory_mib, host_class(r))
}

/// The axis values of a row that can tell cells with the same NIC and mode apart.
fn axis_values(r: &CellRow) -> Vec<(&'static str, String)> {
    let mut v = r.named_axes();
    v.extend([
        ("connections", r.connections.to_string()),
        ("target", or_dash(r.target)),
        ("vcpus", or_dash(r.vcpus)),
        (
            "memory",
            r.server_memory_mib
                .map_or("-".into(), |m| format!("{m}MiB")),
        ),
        ("host", host_class(r)),
    ]);
    v
}

/// The entries of one table cell, each with the axis values that tell it apart there.
fn entries_of(entries: Vec<Vec<&CellRow>>) -> Vec<Entry<'_>> {
    let values: Vec<Vec<(&str, String)>> =
        entries.iter().map(|reps| axis_values(reps[0])).collect();
    let differing: Vec<usize> = (0..values[0].len())
        .filter(|&i| values.iter().any(|v| v[i].1 != values[0][i].1))
        .collect();
    let prefixes: Vec<Vec<String>> = values
        .iter()
        .map(|v| {
            differing
                .iter()
                .map(|&i| format!("{}={}", v[i].0, v[i].1))
                .collect()
        })
        .collect();
    entries
        .into_iter()
        .zip(&prefixes)
        .map(|(reps, prefix)| {
            let mut which = prefix.clone();
            // Cells the row's axes do not tell apart (settings outside the row, such as
            // guest_sysctls, are in the cell id).
            if prefixes.iter().filter(|p| **p == which).count() > 1 {
                which.push(format!("cell {}", reps[0].cell_id));
            }
            Entry { which, reps }
        })
        .collect()
}

/// One cell's entry: a single repetition as [`entry_text`]; several as verdict counts,
/// "ok 2/3, ssh_dropped 1/3 @ 30000/30000 (tcg; drain median 6.7s, 5.1-8.9s, n=3; ...)".
/// Messages are cut at a word after `short` characters when given, else kept whole (their
/// first line).
fn cell_text(reps: &[&CellRow], short: Option<usize>) -> String {
    if let [r] = reps {
        return entry_text(r, short);
    }
    format!("{}{}", verdict_counts(reps), figures_text(reps, short))
}

/// "ok 2/3, ssh_dropped 1/3": most frequent first, then in verdict order.
pub(crate) fn verdict_counts(reps: &[&CellRow]) -> String {
    let mut counts: Vec<(&Named<Verdict>, usize)> = vec![];
    for r in reps {
        match counts.iter_mut().find(|(v, _)| **v == r.verdict) {
            Some((_, n)) => *n += 1,
            None => counts.push((&r.verdict, 1)),
        }
    }
    counts.sort_by_key(|(v, n)| (std::cmp::Reverse(*n), *v));
    counts
        .iter()
        .map(|(v, n)| format!("{v} {n}/{}", reps.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// " @ 2990-3000/3000 (tcg; drain median ...; ...)" over the repetitions that measured
/// something; ": <first error>" when none did.
fn figures_text(reps: &[&CellRow], short: Option<usize>) -> String {
    let measured: Vec<&CellRow> = reps
        .iter()
        .copied()
        .filter(|r| r.verdict != Verdict::Error)
        .collect();
    let Some(first) = measured.first() else {
        let msg = reps[0].error.as_deref().unwrap_or("no message");
        return format!(": {}", shorten(msg, short));
    };
    let peaks = spread(
        &measured
            .iter()
            .map(|r| r.peak_established.map(|v| v as f64))
            .collect::<Vec<_>>(),
    );
    let peak = match peaks {
        None => "-".to_owned(),
        Some(s) if s.min == s.max => format!("{}", s.min),
        Some(s) => format!("{}-{}", s.min, s.max),
    };
    let mut figs = vec![or_dash(first.accel.as_ref())];
    let secs_of =
        |f: fn(&CellRow) -> Option<f64>| measured.iter().map(|r| f(r)).collect::<Vec<_>>();
    figs.push(figure("drain", &secs_of(|r| r.drain_seconds), |v| {
        secs(Some(v))
    }));
    let undrained: Vec<Option<f64>> = measured
        .iter()
        .map(|r| r.undrained_connections.map(|v| v as f64))
        .collect();
    if undrained.iter().flatten().any(|v| *v > 0.0) {
        figs.push(figure("undrained", &undrained, |v| format!("{v}")));
    }
    figs.push(figure("ssh max", &secs_of(|r| r.ssh_max_seconds), |v| {
        secs(Some(v))
    }));
    if measured.iter().any(|r| r.verdict != Verdict::Ok) {
        figs.push(figure("rec", &secs_of(|r| r.recovery_seconds), |v| {
            secs(Some(v))
        }));
    }
    format!(" @ {peak}/{} ({})", or_dash(first.target), figs.join("; "))
}

/// "drain median 6.7s, 5.1-8.9s, n=3, 1 missing"; one value: "drain 6.7s (n=1, 2 missing)";
/// none: "drain -".
fn figure(name: &str, values: &[Option<f64>], fmt: impl Fn(f64) -> String) -> String {
    let Some(s) = spread(values) else {
        return format!("{name} -");
    };
    let missing = if s.missing > 0 {
        format!(", {} missing", s.missing)
    } else {
        String::new()
    };
    if s.n == 1 {
        format!("{name} {} (n=1{missing})", fmt(s.median))
    } else {
        format!(
            "{name} median {}, {}-{}, n={}{missing}",
            fmt(s.median),
            fmt(s.min),
            fmt(s.max),
            s.n
        )
    }
}

/// "ok 30000/30000 (tcg, drain 6.7s)", "hung @ 2100/30000 (tcg, 434 undrained, rec 35s)", "error: ...".
fn entry_text(r: &CellRow, short: Option<usize>) -> String {
    let accel = or_dash(r.accel.as_ref());
    let reached = format!("{}/{}", or_dash(r.peak_established), or_dash(r.target));
    // How the disconnected connections went away: in time, or how many never did.
    let drain = match (r.drain_seconds, r.undrained_connections) {
        (Some(d), _) => format!("drain {}", secs(Some(d))),
        (None, Some(n)) if n > 0 => format!("{n} undrained"),
        _ => "drain -".into(),
    };
    let text = match r.verdict.known() {
        Some(Verdict::Ok) => format!("ok {reached} ({accel}, {drain})"),
        Some(Verdict::NotApplicable) => format!(
            "not applicable: {}",
            shorten(r.error.as_deref().unwrap_or("no reason given"), short)
        ),
        Some(Verdict::Error) => {
            let msg = r.error.as_deref().unwrap_or("no message");
            format!("error: {}", shorten(msg, short))
        }
        _ => format!(
            "{} @ {reached} ({accel}, {drain}, rec {})",
            r.verdict,
            secs(r.recovery_seconds)
        ),
    };
    text
}

/// Seconds with at most one decimal: "35s", "2.5s"; "-" when missing.
fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) => {
            let t = format!("{s:.1}");
            format!("{}s", t.strip_suffix(".0").unwrap_or(&t))
        }
    }
}

/// The first line of `s`; with `max`, cut after the last whole word that fits in `max`
/// characters ("..." marks the cut; a first word longer than `max` is kept whole).
fn shorten(s: &str, max: Option<usize>) -> String {
    let line = s.lines().next().unwrap_or_default();
    let Some(max) = max else {
        return line.to_owned();
    };
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut kept = String::new();
    for word in line.split(' ') {
        let len = kept.chars().count() + usize::from(!kept.is_empty()) + word.chars().count();
        if len > max && !kept.is_empty() {
            break;
        }
        if !kept.is_empty() {
            kept.push(' ');
        }
        kept.push_str(word);
    }
    format!("{}...", kept.trim_end_matches([',', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, cell: &str, nic: &str, mode: &str, verdict: &str) -> CellRow {
        CellRow {
            run_id: run.into(),
            nic: nic.into(),
            mode: mode.into(),
            error: None,
            ..CellRow::example(cell, 1, verdict)
        }
    }

    fn handmade() -> Vec<CellRow> {
        let mut rows = vec![
            // Superseded by the later run of the same cell below.
            CellRow {
                error: Some("lab: libvirtd not reachable".into()),
                ..row("aaaaaa", "c-vmx-br", "vmxnet3", "bridge", "error")
            },
            row("aaaaaa", "c-vmx-nat", "vmxnet3", "nat", "ssh_dropped"),
            CellRow {
                vhost: "on".into(),
                ..row("aaaaaa", "c-vio-br-on", "virtio-net", "bridge", "ok")
            },
            CellRow {
                vhost: "off".into(),
                peak_established: Some(2100),
                drain_seconds: None,
                recovery_seconds: Some(35.0),
                ..row("aaaaaa", "c-vio-br-off", "virtio-net", "bridge", "hung")
            },
            CellRow {
                error: Some("guest: ssh root@10.77.0.2: connection | refused\nmore".into()),
                peak_established: None,
                ..row("bbbbbb", "c-e1000-user", "e1000", "user", "error")
            },
            row("bbbbbb", "c-vmx-br", "vmxnet3", "bridge", "ok"),
            CellRow {
                repetition: 2,
                ssh_max_seconds: Some(31.0),
                drain_seconds: Some(2.5),
                recovery_seconds: Some(31.04),
                ..row("bbbbbb", "c-vmx-br", "vmxnet3", "bridge", "ssh_slow")
            },
        ];
        rows[1].drain_seconds = Some(4.0);
        rows[1].recovery_seconds = None;
        // A hang that left part of the disconnected client's connections on the server.
        for r in rows.iter_mut().filter(|r| r.verdict == Verdict::Hung) {
            r.undrained_connections = Some(434);
        }
        rows
    }

    #[test]
    fn summary_snapshot() {
        insta::assert_snapshot!(summarize(&handmade()));
    }

    #[test]
    fn latest_row_wins_and_empty_input() {
        let s = summarize(&handmade());
        assert!(!s.contains("libvirtd"), "superseded error row shown:\n{s}");
        assert!(
            s.contains("| vmxnet3 | ok 1/2, ssh_slow 1/2 @ 30000/30000 (tcg; drain 2.5s (n=1, 1 missing); ssh max 31s (n=1, 1 missing); rec 31s (n=1, 1 missing)) |"),
            "{s}"
        );
        assert!(
            s.contains("hung @ 2100/30000 (tcg, 434 undrained, rec 35s)"),
            "{s}"
        );
        assert_eq!(summarize(&[]), "No results yet.\n");
        assert_eq!(secs(Some(35.0)), "35s");
        assert_eq!(secs(Some(2.54)), "2.5s");
    }

    /// Three repetitions of one cell with mixed verdicts, one of them missing its drain.
    fn three_reps() -> Vec<CellRow> {
        let rep = |n: u32, verdict: &str, drain: Option<f64>, ssh: f64, rec: Option<f64>| CellRow {
            drain_seconds: drain,
            ssh_max_seconds: Some(ssh),
            recovery_seconds: rec,
            undrained_connections: Some(if drain.is_some() { 0 } else { 410 }),
            ..CellRow::example("c-e1000-nat", n, verdict)
        };
        vec![
            rep(1, "ok", Some(6.7), 2.5, Some(0.5)),
            rep(2, "ssh_dropped", None, 31.0, Some(40.0)),
            rep(3, "ok", Some(5.1), 1.6, Some(0.4)),
        ]
    }

    #[test]
    fn repetitions_give_verdict_counts_and_spread() {
        let s = summarize(&three_reps());
        assert!(
            s.contains("ok 2/3, ssh_dropped 1/3 @ 30000/30000 (tcg; drain median 5.9s, 5.1s-6.7s, n=2, 1 missing; undrained median 0, 0-410, n=3; ssh max median 2.5s, 1.6s-31s, n=3; rec median 0.5s, 0.4s-40s, n=3)"),
            "{s}"
        );
        // An error repetition is counted among the verdicts but measured nothing.
        let mut rows = three_reps();
        rows.push(CellRow::example("c-e1000-nat", 4, "error"));
        let s = summarize(&rows);
        assert!(s.contains("ok 2/4, ssh_dropped 1/4, error 1/4 @"), "{s}");
        assert!(s.contains("ssh max median 2.5s, 1.6s-31s, n=3;"), "{s}");
        let only_errors = [
            CellRow::example("c1", 1, "error"),
            CellRow::example("c1", 2, "error"),
        ];
        assert!(
            summarize(&only_errors).contains("error 2/2: lab: domain failed to start"),
            "{}",
            summarize(&only_errors)
        );
    }

    #[test]
    fn selection_keeps_results_over_later_errors_and_hosts_apart() {
        let mut other_host = CellRow::example("c1", 1, "hung");
        other_host.host_cpu = Some("EPYC".into());
        other_host.host_cores = Some(2);
        other_host.host_memory_mib = Some(24_000);
        let early_error = CellRow {
            accel: None,
            target: None,
            ..CellRow::example("c1", 1, "error")
        };
        let rows = vec![
            early_error.clone(),
            CellRow::example("c1", 1, "ok"),
            CellRow::example("c1", 1, "error"),
            other_host.clone(),
            CellRow::example("c2", 1, "error"),
            CellRow::example("c2", 1, "ssh_slow"),
        ];
        let got: Vec<(&str, &str, String)> = select_rows(&rows)
            .iter()
            .map(|r| (r.cell_id.as_str(), r.verdict.as_str(), host_class(r)))
            .collect();
        assert_eq!(
            got,
            [
                ("c1", "ok", "tcg, unknown host".to_owned()),
                ("c1", "hung", "tcg, EPYC, 2 CPUs, 23 GiB".to_owned()),
                ("c2", "ssh_slow", "tcg, unknown host".to_owned()),
            ]
        );
        // Two kinds of host are two entries, told apart by their host.
        let s = summarize(&rows);
        assert!(
            s.contains("host=tcg, unknown host cell c1: ok 30000/30000"),
            "{s}"
        );
        assert!(s.contains("host=tcg, EPYC, 2 CPUs, 23 GiB: hung @"), "{s}");
        assert_eq!(select_rows(std::slice::from_ref(&early_error)).len(), 1);
    }

    /// The rows of search "s1" of cell c-search: (step, count, verdict) each.
    fn search_steps(steps: &[(u32, u64, &str)]) -> Vec<CellRow> {
        steps
            .iter()
            .map(|&(step, target, verdict)| CellRow {
                search_id: Some("s1".into()),
                search_step: Some(step),
                connections: target,
                target: Some(target),
                ..CellRow::example("c-search", 1, verdict)
            })
            .collect()
    }

    #[test]
    fn summary_snapshot_with_repetitions_and_a_search() {
        let mut rows = three_reps();
        rows.extend(handmade());
        rows.extend(search_steps(&[
            (1, 2_000, "ok"),
            (2, 30_000, "hung"),
            (3, 7_750, "ok"),
        ]));
        insta::assert_snapshot!(summarize(&rows));
    }

    #[test]
    fn searches_are_one_line_each() {
        let step = |n: u32, target: u64, verdict: &str| CellRow {
            search_id: Some("s1".into()),
            search_step: Some(n),
            connections: target,
            target: Some(target),
            ..CellRow::example("c-search", 1, verdict)
        };
        let rows = vec![
            CellRow::example("c-plain", 1, "ok"),
            step(1, 2_000, "ok"),
            step(2, 30_000, "ssh_dropped"),
            step(3, 7_750, "ok"),
            step(4, 15_200, "error"),
        ];
        let s = summarize(&rows);
        assert!(
            s.contains("- s1 vmxnet3/bridge/fin/one (tcg, unknown host): last ok 7750, first failing 30000 (3 steps: 2000 ok, 30000 ssh_dropped, 7750 ok, 15200 error)"),
            "{s}"
        );
        assert!(
            !s.contains("connections="),
            "search steps stay out of the table:\n{s}"
        );
    }

    /// A search over a variable of QEMU's environment, ok above: its values come from the
    /// rows' qemu_env, its bracket is mirrored, and its line names the variable.
    #[test]
    fn a_search_over_qemu_env_reads_its_values_from_the_rows() {
        let step = |n: u32, burst: u64, verdict: &str| CellRow {
            search_id: Some("s2".into()),
            search_step: Some(n),
            search_param: Some("qemu_env.NICSTORM_VMNET_BURST:ok_above".into()),
            qemu: Named::parse("vmnet-flow-control/p"),
            qemu_env: Some(format!(
                "NICSTORM_VMNET_BURST={burst};NICSTORM_VMNET_PPMS=4"
            )),
            connections: 3_000,
            target: Some(3_000),
            ..CellRow::example("c-env", 1, verdict)
        };
        let rows = vec![
            step(1, 4_096, "ok"),
            step(2, 16, "hung"),
            step(3, 256, "ok"),
            step(4, 64, "ssh_dropped"),
            step(5, 128, "ok"),
        ];
        let s = summarize(&rows);
        assert!(
            s.contains("- s2 vmxnet3/bridge/fin/one (tcg, unknown host): vmnet-flow-control/p [PPMS=4], BURST at 3000 connections, ok above: last ok 128, first failing 64 (5 steps: 4096 ok, 16 hung, 256 ok, 64 ssh_dropped, 128 ok)"),
            "{s}"
        );
        let j = summary_json("m", &rows);
        let search = &j["searches"][0];
        assert_eq!(search["param"], "qemu_env.NICSTORM_VMNET_BURST:ok_above");
        assert_eq!(
            (search["last_ok"].as_u64(), search["first_fail"].as_u64()),
            (Some(128), Some(64))
        );
        assert_eq!(search["steps"][1]["value"], 16);
    }

    /// The terminal table: a line per cell, no markup, results wrapped at words within the
    /// width and never cut; colours only when asked.
    #[test]
    fn terminal_table_wraps_and_never_cuts() {
        let mut rows = handmade();
        let reason = "vhost on needs KVM and /dev/vhost-net: libvirt gives a non-KVM domain no vhost-net without a word, whatever its XML asks";
        rows.push(CellRow {
            error: Some(reason.into()),
            vhost: "on".into(),
            ..row(
                "cccccc",
                "c-vio-nat-on",
                "virtio-net",
                "nat",
                "not_applicable",
            )
        });
        let t = summarize_terminal(&rows, 80, false);
        assert!(!t.contains("<br>") && !t.contains("| "), "{t}");
        assert!(t.starts_with("NIC "), "{t}");
        for line in t.lines() {
            // A line is longer than the width only by a word that cannot be broken.
            assert!(
                line.chars().count() <= 80 || !line.trim().contains(' '),
                "{line:?} in\n{t}"
            );
        }
        // The whole reason, word for word, across its wrapped lines.
        let words: Vec<&str> = t.split_whitespace().collect();
        let want: Vec<&str> = reason.split_whitespace().collect();
        assert!(
            words.windows(want.len()).any(|w| w == want.as_slice()),
            "{t}"
        );
        assert!(t.contains("virtio-net  nat"), "{t}");
        let colored = summarize_terminal(&rows, 80, true);
        assert!(colored.contains("\u{1b}["), "{colored}");
        assert!(!t.contains('\u{1b}'));
        // The markdown cuts a long reason at a word, not inside one.
        let md = summarize(&rows);
        assert!(
            md.contains(
                "not applicable: vhost on needs KVM and /dev/vhost-net: libvirt gives a..."
            ) || md.contains(
                "not applicable: vhost on needs KVM and /dev/vhost-net: libvirt gives..."
            ),
            "{md}"
        );
    }

    #[test]
    fn shorten_cuts_at_words() {
        assert_eq!(shorten("abc def ghi", Some(7)), "abc def...");
        assert_eq!(shorten("abc def ghi", Some(6)), "abc...");
        assert_eq!(shorten("abcdefghij klm", Some(4)), "abcdefghij...");
        assert_eq!(shorten("abc: def\nsecond", None), "abc: def");
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
    }

    #[test]
    fn summary_json_matches_its_schema() {
        let mut rows = three_reps();
        rows.extend(handmade());
        rows.extend(search_steps(&[(1, 2_000, "ok"), (2, 30_000, "hung")]));
        let doc = summary_json("t", &rows);
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas/summary.schema.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        let cell = doc["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cell_id"] == "c-e1000-nat")
            .unwrap();
        assert_eq!(cell["verdicts"]["ok"], 2);
        assert_eq!(cell["figures"]["drain_seconds"]["n"], 2);
        assert_eq!(cell["figures"]["drain_seconds"]["missing"], 1);
        assert_eq!(doc["searches"][0]["first_fail"], 30_000);
    }
}
