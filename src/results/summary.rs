//! Summary table made from cells.csv rows: rows NIC, columns network mode, like the seed's table;
//! repetitions of a cell summed up as verdict counts and the spread of their key figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::matrix::plan::{NetMode, NicModel};
use crate::matrix::search::{bracket, Outcome};
use crate::model::named::Named;
use crate::model::verdict::Verdict;
use crate::results::host_class;
use crate::results::select::select_rows;
use crate::results::stats::spread;
use crate::results::{write_atomic, Axes, CellRow};
use crate::support::markup::or_dash;

/// A table cell of the summary: a NIC (row) and a network mode (column).
type NicAndMode<'a> = (&'a Named<NicModel>, &'a Named<NetMode>);

/// Markdown summary of `rows` (in file order; see [`select_rows`] for which row of a
/// repetition counts). Cells sharing a NIC and mode are listed one per line, each prefixed
/// with the axis values that tell them apart; a cell with several repetitions is one line
/// with its verdict counts and the spread of its key figures. Steps of breaking-point
/// searches are listed below the table, one line per search.
pub(crate) fn summarize(rows: &[CellRow]) -> String {
    let chosen = select_rows(rows);
    if chosen.is_empty() {
        return "No results yet.\n".to_owned();
    }
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
    let mut nics: Vec<&Named<NicModel>> = groups.keys().map(|k| k.0).collect();
    let mut modes: Vec<&Named<NetMode>> = groups.keys().map(|k| k.1).collect();
    nics.dedup();
    modes.sort();
    modes.dedup();

    let mut out = String::new();
    if !groups.is_empty() {
        out.push_str("| NIC |");
        for m in &modes {
            out.push_str(&format!(" {m} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(modes.len()));
        out.push('\n');
    }
    for nic in &nics {
        out.push_str(&format!("| {nic} |"));
        for mode in &modes {
            let text = match groups.get_mut(&(*nic, *mode)) {
                None => "-".to_owned(),
                Some(entries) => {
                    entries.sort_by_key(|reps| sort_key(reps[0]));
                    group_text(entries)
                }
            };
            out.push_str(&format!(" {} |", text));
        }
        out.push('\n');
    }
    if !searches.is_empty() {
        out.push_str(&search_lines(&searches));
    }

    let mut runs: Vec<&str> = chosen.iter().map(|r| r.run_id.as_str()).collect();
    runs.sort();
    runs.dedup();
    out.push_str(&format!(
        "\n{} results (latest per cell, repetition and host) from run{} {}. \
         Entry: verdict, connections established at the peak / target (accelerator, seconds until the \
         disconnected connections drained or how many never did); for a failure also the seconds until \
         it recovered (`-` = never or not measured). A cell with several repetitions shows how many \
         ended in each verdict, then each figure's median, range and n over the repetitions that \
         measured it (`missing` = not measured; `error` repetitions measured nothing).\n",
        chosen.len(),
        if runs.len() == 1 { "" } else { "s" },
        runs.join(", ")
    ));
    out
}

/// One line per breaking-point search: its cell, the bracket its steps show, and the counts.
fn search_lines(rows: &[&CellRow]) -> String {
    let mut by_search: BTreeMap<(String, &str), Vec<&CellRow>> = BTreeMap::new();
    for r in rows {
        by_search
            .entry((host_class(r), r.search_id.as_deref().unwrap_or("")))
            .or_default()
            .push(r);
    }
    let mut out = String::from("\nBreaking-point searches:\n\n");
    for ((class, id), mut steps) in by_search {
        steps.sort_by_key(|r| (r.search_step, r.repetition));
        let results: Vec<(u64, Outcome)> = steps.iter().map(|r| r.search_step()).collect();
        let b = bracket(&results);
        let r = steps[0];
        let vhost = match r.vhost.known() {
            Some(None) => String::new(),
            _ => format!("/vhost-{}", r.vhost),
        };
        let found = match (b.last_ok, b.first_fail) {
            (lo, Some(hi)) => format!("last ok {}, first failing {}", or_dash(lo), hi),
            (Some(lo), None) => format!("none failed up to {lo}"),
            (None, None) => "no result yet".to_owned(),
        };
        let flapping = if b.flapping.is_empty() {
            String::new()
        } else {
            format!(
                "; ok again above a failure at {}",
                b.flapping
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        out.push_str(&format!(
            "- {id} {}/{}{vhost}/{}/{} ({class}): {found}{flapping} ({} steps: {})\n",
            r.nic,
            r.mode,
            r.disconnect,
            r.scope,
            b.steps,
            steps
                .iter()
                .map(|r| format!("{} {}", or_dash(r.target), r.verdict))
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

fn group_text(entries: &[Vec<&CellRow>]) -> String {
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
        .iter()
        .zip(&prefixes)
        .map(|(reps, prefix)| {
            let mut prefix = prefix.clone();
            // Cells the row's axes do not tell apart (settings outside the row, such as
            // guest_sysctls, are in the cell id).
            if prefixes.iter().filter(|p| **p == prefix).count() > 1 {
                prefix.push(format!("cell {}", reps[0].cell_id));
            }
            let text = cell_text(reps);
            if prefix.is_empty() {
                text
            } else {
                format!("{}: {}", prefix.join(" "), text)
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// One cell's entry: a single repetition as [`entry_text`]; several as verdict counts,
/// "ok 2/3, ssh_dropped 1/3 @ 30000/30000 (tcg; drain median 6.7s, 5.1-8.9s, n=3; ...)".
fn cell_text(reps: &[&CellRow]) -> String {
    if let [r] = reps {
        return entry_text(r);
    }
    let text = format!("{}{}", verdict_counts(reps), figures_text(reps));
    text.replace('|', "\\|").replace('\n', " ")
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
fn figures_text(reps: &[&CellRow]) -> String {
    let measured: Vec<&CellRow> = reps
        .iter()
        .copied()
        .filter(|r| r.verdict != Verdict::Error)
        .collect();
    let Some(first) = measured.first() else {
        let msg = reps[0].error.as_deref().unwrap_or("no message");
        return format!(": {}", shorten(msg, 60));
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
fn entry_text(r: &CellRow) -> String {
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
            shorten(r.error.as_deref().unwrap_or("no reason given"), 60)
        ),
        Some(Verdict::Error) => {
            let msg = r.error.as_deref().unwrap_or("no message");
            format!("error: {}", shorten(msg, 60))
        }
        _ => format!(
            "{} @ {reached} ({accel}, {drain}, rec {})",
            r.verdict,
            secs(r.recovery_seconds)
        ),
    };
    // Markdown table cells cannot hold a pipe or a line break.
    text.replace('|', "\\|").replace('\n', " ")
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

fn shorten(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        format!("{}...", line.chars().take(max).collect::<String>())
    }
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

    #[test]
    fn summary_snapshot_with_repetitions_and_a_search() {
        let mut rows = three_reps();
        rows.extend(handmade());
        for (step, target, verdict) in [(1, 2_000, "ok"), (2, 30_000, "hung"), (3, 7_750, "ok")] {
            rows.push(CellRow {
                search_id: Some("s1".into()),
                search_step: Some(step),
                connections: target,
                target: Some(target),
                ..CellRow::example("c-search", 1, verdict)
            });
        }
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
}
