//! The report page: overview matrix, the seed beside us, breaking-point searches, statistics
//! by host class, and per cell its repetitions, plots and counters. Plain HTML with inline
//! CSS; the plots are plotters' SVG documents inlined as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;

use super::counters_file::CounterLine;
use super::plots::{self, css, rep_color, Metric, RepTrace};
use super::seed::{self, Reading, SEED};
use super::{Group, Rep, Results};
use crate::results::CellRow;
use crate::search::{bracket, Outcome};
use crate::stats::{mann_whitney, mann_whitney_min_p, median_ci, spread, MEDIAN_CI_MIN_N};
use crate::summary::verdict_counts;
use crate::verdict::Verdict;

/// Verdicts and what they mean (README "Verdicts"); their colours are the `.v-*` rules in CSS.
const VERDICTS: &[(&str, &str)] = &[
    ("ok", "none of the below"),
    ("ssh_slow", "SSH probes far slower than during hold"),
    (
        "ssh_dropped",
        "an SSH probe failed or the session broke; heartbeat alive",
    ),
    (
        "hung",
        "the serial heartbeat stopped for hang_gap or longer",
    ),
    ("crashed", "the server domain left the running state"),
    ("not_reached", "the ramp fell short of the target"),
    ("error", "the harness failed; nothing measured"),
    (
        "not_applicable",
        "this host cannot run the cell as asked (e.g. vhost-net under TCG); not run",
    ),
];

/// Metrics with statistics: (column, what it is, unit, value of a row).
type Getter = fn(&CellRow) -> Option<f64>;
const METRICS: &[(&str, &str, Unit, Getter)] = &[
    ("drain_seconds", "drain", Unit::Seconds, |r| r.drain_seconds),
    (
        "undrained_connections",
        "undrained connections",
        Unit::Count,
        |r| r.undrained_connections.map(|v| v as f64),
    ),
    ("ssh_max_seconds", "slowest SSH probe", Unit::Seconds, |r| {
        r.ssh_max_seconds
    }),
    ("recovery_seconds", "recovery", Unit::Seconds, |r| {
        r.recovery_seconds
    }),
    ("peak_softirq_pct", "peak softirq", Unit::Percent, |r| {
        r.peak_softirq_pct
    }),
    ("ramp_rate", "ramp rate", Unit::PerSecond, |r| r.ramp_rate),
    (
        "server_tap_tx_dropped",
        "server tap drops",
        Unit::Count,
        |r| r.server_tap_tx_dropped.map(|v| v as f64),
    ),
];

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Count,
    Percent,
    PerSecond,
}

fn fmt_unit(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Seconds => format!("{} s", sig(v)),
        // A median of two counts can end in .5.
        Unit::Count if v.fract() != 0.0 => format!("{v:.1}"),
        Unit::Count => format!("{v:.0}"),
        Unit::Percent => format!("{v:.1} %"),
        Unit::PerSecond => format!("{v:.0}/s"),
    }
}

/// Up to 3 significant digits, at most 2 decimals: 6.68, 35.2, 120, 0.47.
fn sig(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `code` spans for text in backticks.
fn md_code(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn verdict_class(v: &str) -> &'static str {
    VERDICTS
        .iter()
        .find(|(name, _)| *name == v)
        .map_or("v-other", |(name, _)| match *name {
            "ok" => "v-ok",
            "ssh_slow" => "v-ssh_slow",
            "ssh_dropped" => "v-ssh_dropped",
            "hung" => "v-hung",
            "crashed" => "v-crashed",
            "not_reached" => "v-not_reached",
            "not_applicable" => "v-not_applicable",
            _ => "v-error",
        })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

fn opt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{} s", sig(v)))
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1240px;padding:0 18px 40px;color:#1d1d1d;line-height:1.4;font-size:15px}
h1{font-size:1.6em;margin:18px 0 4px}h2{margin-top:34px;border-bottom:2px solid #ddd;padding-bottom:3px}
h3{margin:22px 0 6px}h4{margin:14px 0 4px}
code{background:#f2f2f2;padding:0 3px;border-radius:3px;font-size:.92em}
nav a{margin-right:14px}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{border:1px solid #d6d6d6;padding:4px 7px;vertical-align:top;text-align:left}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.ci{white-space:nowrap}
table.reps{font-size:.86em}table.reps td:nth-child(-n+3){white-space:nowrap}
table.overview td{min-width:220px}
table.overview th.nic{font-size:1.05em}
.entry{margin:2px 0 6px}.entry .axes{color:#555;font-size:.9em;display:block}
.marks{white-space:nowrap;margin-right:6px}
.mark{display:inline-block;width:15px;height:15px;margin-right:3px;border-radius:2px;vertical-align:-3px;border:1px solid rgba(0,0,0,.25)}
.v-ok{background:#2e7d32}.v-ssh_slow{background:#f9a825}.v-ssh_dropped{background:#ef6c00}
.v-hung{background:#c62828}.v-crashed{background:#6a1b9a}.v-not_reached{background:#607d8b}
.v-error{background:repeating-linear-gradient(45deg,#d0d0d0 0 3px,#f4f4f4 3px 6px)}.v-not_applicable{background:#ffffff;outline:1px dashed #9e9e9e}.v-other{background:#ff00ff}
.counts{font-size:.92em}
.legend span.item{margin-right:16px;white-space:nowrap;display:inline-block}
.note{color:#555;font-size:.92em}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:10px}
figure.plot{margin:0;border:1px solid #e3e3e3}
figure.plot svg{display:block;width:100%;height:auto}
.swatch{display:inline-block;width:22px;height:4px;vertical-align:middle;margin-right:4px}
section.cell{border-top:1px solid #e5e5e5;margin-top:22px}
details{margin:6px 0}summary{cursor:pointer;color:#234}
.small{font-size:.88em}.p-low{font-weight:bold}
"#;

pub(crate) fn page(data: &Results) -> Result<String> {
    let mut h = String::new();
    let name = data.dir.file_name().map_or_else(
        || data.dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>nicstorm report: {}</title><style>{CSS}</style></head><body>\n",
        esc(&name)
    );
    header(&mut h, data, &name);
    overview(&mut h, data);
    seed_section(&mut h, data);
    searches(&mut h, data);
    statistics(&mut h, data);
    cells(&mut h, data)?;
    h.push_str("</body></html>\n");
    Ok(h)
}

fn header(h: &mut String, data: &Results, name: &str) {
    let shown: usize = data.groups.iter().map(|g| g.reps.len()).sum();
    let mut runs: Vec<&str> = data
        .groups
        .iter()
        .flat_map(|g| g.reps.iter().map(|r| r.row.run_id.as_str()))
        .collect();
    runs.sort();
    runs.dedup();
    let first = data
        .groups
        .iter()
        .flat_map(|g| g.reps.iter().map(|r| r.row.started_at.as_str()))
        .filter(|s| !s.is_empty())
        .min()
        .unwrap_or("");
    let last = data
        .groups
        .iter()
        .flat_map(|g| g.reps.iter().map(|r| r.row.finished_at.as_str()))
        .max()
        .unwrap_or("");
    let _ = write!(
        h,
        "<h1>nicstorm report: {}</h1>\n<p class=\"note\">Made from <code>{}</code>: {} row{} in \
         cells.csv, {} shown (per cell, repetition and host the latest row with a result; an \
         <code>error</code> row only where there is none), from run{} {}, {} to {}.</p>\n",
        esc(name),
        esc(&data.dir.join("cells.csv").display().to_string()),
        data.rows_read,
        if data.rows_read == 1 { "" } else { "s" },
        shown,
        if runs.len() == 1 { "" } else { "s" },
        esc(&runs.join(", ")),
        esc(first.get(..19).unwrap_or(first)),
        esc(last.get(..19).unwrap_or(last)),
    );
    let _ = write!(
        h,
        "<p class=\"note\">Host classes (accelerator, CPU, cores, memory); \
        figures of different classes are never pooled: "
    );
    for (i, c) in data.classes.iter().enumerate() {
        let n: usize = data.in_class(c).map(|g| g.reps.len()).sum();
        let _ = write!(
            h,
            "{}<b>{}</b> ({n} row{})",
            if i > 0 { "; " } else { "" },
            esc(c),
            if n == 1 { "" } else { "s" }
        );
    }
    h.push_str(
        ".</p>\n<nav><a href=\"#overview\">Overview</a><a href=\"#seed\">The seed beside us</a>\
        <a href=\"#searches\">Breaking-point searches</a><a href=\"#statistics\">Statistics</a>\
        <a href=\"#cells\">Cells</a></nav>\n",
    );
}

fn legend(h: &mut String) {
    h.push_str("<p class=\"legend\">");
    for (v, meaning) in VERDICTS {
        let _ = write!(
            h,
            "<span class=\"item\"><span class=\"mark {}\" title=\"{v}\"></span><code>{v}</code> {}</span>",
            verdict_class(v),
            esc(meaning)
        );
    }
    h.push_str(
        "</p>\n<p class=\"note\">One square per repetition, in repetition order; hover for \
        its verdict and run.</p>\n",
    );
}

fn marks(h: &mut String, g: &Group) {
    h.push_str("<span class=\"marks\">");
    for rep in &g.reps {
        let r = &rep.row;
        let _ = write!(
            h,
            "<span class=\"mark {}\" role=\"img\" aria-label=\"{v}\" title=\"rep {}: {v} (run {})\"></span>",
            verdict_class(r.verdict.as_str()),
            r.repetition,
            esc(&r.run_id),
            v = esc(r.verdict.as_str()),
        );
    }
    h.push_str("</span>");
}

fn counts(g: &Group) -> String {
    let rows: Vec<&CellRow> = g.reps.iter().map(|r| &r.row).collect();
    verdict_counts(&rows)
}

/// The axes that tell cells of one table apart, as (name, value) pairs.
fn axes(r: &CellRow) -> Vec<(&'static str, String)> {
    vec![
        ("vhost", r.vhost.clone()),
        ("qemu", r.qemu.clone()),
        ("traffic", r.traffic.clone()),
        ("disconnect", r.disconnect.clone()),
        ("scope", r.scope.clone()),
        ("connections", plots::compact(r.connections as f64)),
        (
            "target",
            r.target.map_or("–".into(), |t| plots::compact(t as f64)),
        ),
        ("vcpus", opt(r.vcpus)),
    ]
}

/// For each group, the "axis=value" labels of the axes that differ among `groups`, or the
/// cell id where nothing in the row tells two apart (settings outside the row, such as
/// guest_sysctls).
fn labels(groups: &[&Group]) -> Vec<String> {
    let values: Vec<Vec<(&str, String)>> = groups.iter().map(|g| axes(g.row())).collect();
    let differing: Vec<usize> = (0..values.first().map_or(0, Vec::len))
        .filter(|&i| values.iter().any(|v| v[i].1 != values[0][i].1))
        .collect();
    let mut out: Vec<String> = values
        .iter()
        .map(|v| {
            differing
                .iter()
                .filter(|&&i| v[i].1 != "n/a")
                .map(|&i| format!("{}={}", v[i].0, v[i].1))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for i in 0..out.len() {
        let same = (0..out.len())
            .filter(|&j| {
                let (a, b) = (groups[j].row(), groups[i].row());
                out[j] == out[i] && a.nic == b.nic && a.mode == b.mode
            })
            .count();
        if same > 1 {
            out[i] = format!("{} cell {}", out[i], groups[i].row().cell_id)
                .trim()
                .to_owned();
        }
    }
    out
}

fn overview(h: &mut String, data: &Results) {
    h.push_str("<section id=\"overview\"><h2>Overview</h2>\n");
    legend(h);
    for class in &data.classes {
        let ci = data.class_index(class);
        let groups: Vec<&Group> = data.in_class(class).filter(|g| !g.is_search()).collect();
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(class));
        let labels = labels(&groups);
        let mut modes: Vec<crate::summary::Rank> = groups
            .iter()
            .map(|g| crate::summary::mode_rank(&g.row().mode))
            .collect();
        modes.sort();
        modes.dedup();
        let mut nics: Vec<crate::summary::Rank> = groups
            .iter()
            .map(|g| crate::summary::nic_rank(&g.row().nic))
            .collect();
        nics.sort();
        nics.dedup();
        h.push_str("<table class=\"overview\"><thead><tr><th>NIC</th>");
        for m in &modes {
            let _ = write!(h, "<th>{}</th>", esc(&m.1));
        }
        h.push_str("</tr></thead><tbody>\n");
        for nic in &nics {
            let _ = write!(h, "<tr><th class=\"nic\">{}</th>", esc(&nic.1));
            for mode in &modes {
                h.push_str("<td>");
                let mut any = false;
                for (g, label) in groups.iter().zip(&labels) {
                    let r = g.row();
                    if r.nic != nic.1 || r.mode != mode.1 {
                        continue;
                    }
                    any = true;
                    let _ = write!(h, "<div class=\"entry\">");
                    if !label.is_empty() {
                        let _ = write!(h, "<span class=\"axes\">{}</span>", esc(label));
                    }
                    marks(h, g);
                    let _ = write!(
                        h,
                        "<a class=\"counts\" href=\"#{}\">{}</a></div>",
                        g.anchor(ci),
                        esc(&counts(g))
                    );
                }
                if !any {
                    h.push_str("<span class=\"note\">not run</span>");
                }
                h.push_str("</td>");
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table>\n");
    }
    if data.groups.iter().any(Group::is_search) {
        h.push_str(
            "<p class=\"note\">Steps of breaking-point searches are not in this table; see \
            <a href=\"#searches\">Breaking-point searches</a>.</p>\n",
        );
    }
    h.push_str("</section>\n");
}

fn seed_section(h: &mut String, data: &Results) {
    h.push_str(
        "<section id=\"seed\"><h2>The seed beside us</h2>\n<p class=\"note\">The seed ran UTM on \
         macOS, whose QEMU runs virtio-net in user space. On Linux, virtio-net with vhost off is \
         the closer analogue; vhost on moves the device into the host kernel. From inside an SSH \
         session a network that stalls for good and a hung guest look the same, and the seed \
         could not tell them apart: its \"hung\" is our <code>hung</code> or an \
         <code>ssh_dropped</code> that never recovered (empty recovery_seconds); the table shows \
         which of the two we saw. Rows here match on NIC and mode only; the seed disconnected one \
         client with Ctrl-C (disconnect <code>fin</code>, scope <code>one</code>).</p>\n",
    );
    h.push_str(
        "<table class=\"seed\"><thead><tr><th>seed NIC</th><th>seed mode</th>\
         <th>seed's result (UTM, macOS)</th><th>in our verdicts</th>\
         <th>measured here (same NIC and mode)</th></tr></thead><tbody>\n",
    );
    for s in SEED {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(s.seed_nic),
            esc(s.seed_mode),
            esc(s.result),
            md_code(s.in_verdicts)
        );
        let (Some(nic), Some(mode)) = (s.nic, s.mode) else {
            h.push_str(
                "<span class=\"note\">no counterpart: nicstorm runs QEMU (KVM or TCG), \
                not VMware</span></td></tr>\n",
            );
            continue;
        };
        let mut matching: Vec<&Group> = data
            .groups
            .iter()
            .filter(|g| !g.is_search() && g.row().nic == nic && g.row().mode == mode)
            .collect();
        // vhost off first: the closer analogue of UTM's user-space virtio.
        matching.sort_by_key(|g| (g.row().vhost != "off", data.class_index(&g.class)));
        if matching.is_empty() {
            h.push_str("<span class=\"note\">not run</span>");
        }
        for g in matching {
            seed_entry(h, data, s, g);
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn seed_entry(h: &mut String, data: &Results, s: &seed::SeedRow, g: &Group) {
    let r = g.row();
    let mut setup = vec![];
    match r.vhost.as_str() {
        "off" => setup.push("vhost off (closer analogue of UTM's user-space virtio)".to_owned()),
        "on" => {
            let ran = match (r.vhost_effective.as_deref(), r.accel.as_deref()) {
                (Some(e), _) if e != "on" => format!(" (ran: {e})"),
                (None, Some("tcg")) => {
                    " (under TCG libvirt gives no vhost-net: user-space virtio ran)".to_owned()
                }
                _ => String::new(),
            };
            setup.push(format!("vhost on{ran}"));
        }
        _ => {}
    }
    if r.disconnect != "fin" || r.scope != "one" {
        setup.push(format!("disconnect {} on {}", r.disconnect, r.scope));
    }
    if r.qemu != "system" && !r.qemu.is_empty() {
        setup.push(format!("qemu {}", r.qemu));
    }
    if r.traffic != "none" && !r.traffic.is_empty() {
        setup.push(format!("traffic {}", r.traffic));
    }
    let _ = write!(
        h,
        "<div class=\"entry\"><span class=\"axes\">{}{}accel <b>{}</b>, target <b>{}</b> of {} \
         connections; {}</span>",
        esc(&setup.join("; ")),
        if setup.is_empty() { "" } else { "; " },
        esc(r.accel.as_deref().unwrap_or("?")),
        esc(&opt(r.target)),
        r.connections,
        esc(&g.class),
    );
    marks(h, g);
    let _ = write!(
        h,
        "<a class=\"counts\" href=\"#{}\">{}</a>",
        g.anchor(data.class_index(&g.class)),
        esc(&counts(g))
    );
    let measured: Vec<&CellRow> = g.measured().map(|r| &r.row).collect();
    let n = measured.len();
    let count = |f: &dyn Fn(&CellRow) -> bool| measured.iter().filter(|r| f(r)).count();
    let never = count(&|r| r.verdict == Verdict::SshDropped && r.recovery_seconds.is_none());
    let recovered = count(&|r| r.verdict == Verdict::SshDropped && r.recovery_seconds.is_some());
    let reading = match s.reading {
        Reading::Hung => format!(
            "the seed's \"hung\": <code>hung</code> {}/{n}, <code>ssh_dropped</code> never recovered \
             {never}/{n}; <code>ssh_dropped</code> that recovered {recovered}/{n}",
            count(&|r| r.verdict == Verdict::Hung)
        ),
        Reading::Lag => {
            let vcpu = spread(&measured.iter().map(|r| r.peak_vcpu_pct).collect::<Vec<_>>());
            format!(
                "<code>ssh_slow</code> {}/{n}; slowest probe median {}; busiest vCPU thread at \
                 disconnect median {}",
                count(&|r| r.verdict == Verdict::SshSlow),
                opt_secs(
                    spread(&measured.iter().map(|r| r.ssh_max_seconds).collect::<Vec<_>>())
                        .map(|s| s.median)
                ),
                vcpu.map_or("–".into(), |s| format!("{:.0} %", s.median)),
            )
        }
        Reading::DropRecovered => format!(
            "<code>ssh_dropped</code> that recovered {recovered}/{n}, never recovered {never}/{n}"
        ),
        Reading::NoCounterpart => String::new(),
    };
    let _ = write!(
        h,
        "<br><span class=\"small\">{reading}{}{}</span></div>",
        if n < g.reps.len() {
            format!(" ({} error repetition(s) left out)", g.reps.len() - n)
        } else {
            String::new()
        },
        match seed::comparability(s, r.target) {
            c if c.is_empty() => String::new(),
            c => format!("; {}", esc(&c)),
        }
    );
}

fn searches(h: &mut String, data: &Results) {
    h.push_str("<section id=\"searches\"><h2>Breaking-point searches</h2>\n");
    let mut by_search: BTreeMap<(usize, &str), Vec<&Group>> = BTreeMap::new();
    for g in data.groups.iter().filter(|g| g.is_search()) {
        by_search
            .entry((
                data.class_index(&g.class),
                g.row().search_id.as_deref().unwrap_or(""),
            ))
            .or_default()
            .push(g);
    }
    if by_search.is_empty() {
        h.push_str(
            "<p class=\"note\">No breaking-point searches in these results.</p></section>\n",
        );
        return;
    }
    h.push_str(
        "<p class=\"note\">A search runs one cell at growing connection counts: ok = verdict \
         <code>ok</code>; every other verdict but <code>error</code> fails that count; an \
         <code>error</code> row is the harness failing and does not count. The bracket is the \
         largest ok count below the smallest failing one. Counts are the targets that ran: under \
         TCG a target is min(connections, tcg_connections), so the upper end of a TCG search is \
         capped by tcg_connections.</p>\n",
    );
    for ((ci, id), mut groups) in by_search {
        groups.sort_by_key(|g| (g.row().search_step, g.row().target));
        let rows: Vec<&CellRow> = groups
            .iter()
            .flat_map(|g| g.reps.iter().map(|r| &r.row))
            .collect();
        let results: Vec<(u64, Outcome)> = rows
            .iter()
            .map(|r| {
                (
                    r.target.unwrap_or(r.connections),
                    Outcome::of_verdict(r.verdict),
                )
            })
            .collect();
        let b = bracket(&results);
        let r = rows[0];
        let capped = rows.iter().any(|r| {
            r.accel.as_deref() == Some("tcg") && r.target.is_some_and(|t| t < r.connections)
        });
        let tcg = rows.iter().any(|r| r.accel.as_deref() == Some("tcg"));
        let found = match (b.last_ok, b.first_fail) {
            (Some(lo), Some(hi)) => format!("last ok <b>{lo}</b>, first failing <b>{hi}</b>"),
            (None, Some(hi)) => {
                format!("failed already at <b>{hi}</b>, the smallest count that ran")
            }
            (Some(lo), None) => format!(
                "none failed up to <b>{lo}</b>{}",
                if capped {
                    " (capped by tcg_connections under TCG)"
                } else if tcg {
                    " (under TCG: a search cannot go above tcg_connections)"
                } else {
                    ""
                }
            ),
            (None, None) => "no result yet".into(),
        };
        let _ = write!(
            h,
            "<h3>Search {} — {}/{}{} · {}</h3>\n<p>{found}; {} steps{}.</p>\n",
            esc(id),
            esc(&r.nic),
            esc(&r.mode),
            if r.vhost == "n/a" {
                String::new()
            } else {
                format!(" vhost={}", esc(&r.vhost))
            },
            esc(&data.classes[ci]),
            b.steps,
            if b.flapping.is_empty() {
                String::new()
            } else {
                format!(
                    "; ok again at or above a failure at {} (the boundary is not sharp)",
                    b.flapping
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        h.push_str("<table class=\"search\"><thead><tr><th>step</th><th>connections asked</th>\
            <th>target run</th><th>verdict</th><th>drain</th><th>slowest SSH probe</th></tr></thead><tbody>\n");
        for g in &groups {
            for rep in &g.reps {
                let r = &rep.row;
                let _ = writeln!(
                    h,
                    "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td><span class=\"mark {}\"></span><a href=\"#{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    opt(r.search_step),
                    r.connections,
                    opt(r.target),
                    verdict_class(r.verdict.as_str()),
                    g.anchor(ci),
                    esc(r.verdict.as_str()),
                    opt_secs(r.drain_seconds),
                    opt_secs(r.ssh_max_seconds),
                );
            }
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</section>\n");
}

/// "virtio-net / bridge · vhost=on · fin on one · 30000 of 1000000"
fn cell_title(r: &CellRow) -> String {
    let mut parts = vec![format!("{} / {}", r.nic, r.mode)];
    if r.vhost != "n/a" {
        parts.push(format!("vhost={}", r.vhost));
    }
    if !r.qemu.is_empty() && r.qemu != "system" {
        parts.push(format!("qemu={}", r.qemu));
    }
    if !r.traffic.is_empty() && r.traffic != "none" {
        parts.push(format!("traffic={}", r.traffic));
    }
    parts.push(format!("{} on {}", r.disconnect, r.scope));
    parts.push(format!(
        "{} of {} connections",
        opt(r.target),
        r.connections
    ));
    if let (Some(id), Some(step)) = (&r.search_id, r.search_step) {
        parts.push(format!("search {id} step {step}"));
    }
    parts.join(" · ")
}

fn statistics(h: &mut String, data: &Results) {
    let _ = write!(
        h,
        "<section id=\"statistics\"><h2>Statistics</h2>\n<p class=\"note\">Per cell and host \
         class, over the repetitions that measured something (<code>error</code> repetitions are \
         left out). Empty fields are missing values: left out and counted (\"n=3, 1 missing\"), \
         never taken as 0. An empty drain_seconds means the connections did not drain within \
         the observe window (see undrained connections), so its median is over the repetitions \
         that drained. <b>Median interval</b>: distribution-free 95% confidence interval of the \
         median from order statistics [x<sub>(k)</sub>, x<sub>(n+1−k)</sub>] (binomial, p = ½), \
         which needs n ≥ {MEDIAN_CI_MIN_N}; below that \"n too small\". <b>Comparisons</b>: \
         exact two-sided Mann–Whitney U between two cells of one host class that differ in \
         exactly one axis (a NIC compared with virtio-net at either vhost setting), made only \
         where the smallest p the two sample sizes can reach, 2 / C(n₁+n₂, n₁), is below 0.05 \
         (n₁ = n₂ = 4 is the first equal pair: 2/70 = 0.029); otherwise \"n too small\". \
         p-values are not corrected for the number of comparisons.</p>\n"
    );
    for class in &data.classes {
        let ci = data.class_index(class);
        let groups: Vec<&Group> = data.in_class(class).filter(|g| !g.is_search()).collect();
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(class));
        h.push_str("<table class=\"stats\"><thead><tr><th>cell</th><th>metric</th><th>n</th>\
            <th>min</th><th>median</th><th>max</th><th>95% interval of the median</th></tr></thead><tbody>\n");
        for g in &groups {
            let measured: Vec<&CellRow> = g.measured().map(|r| &r.row).collect();
            let errors = g.reps.len() - measured.len();
            let _ = write!(
                h,
                "<tr><th rowspan=\"{}\"><a href=\"#{}\">{}</a>{}</th>",
                METRICS.len(),
                g.anchor(ci),
                esc(&cell_title(g.row())),
                if errors > 0 {
                    format!("<br><span class=\"note\">{errors} error repetition(s) left out</span>")
                } else {
                    String::new()
                }
            );
            for (i, (col, what, unit, get)) in METRICS.iter().enumerate() {
                if i > 0 {
                    h.push_str("<tr>");
                }
                let values: Vec<Option<f64>> = measured.iter().map(|r| get(r)).collect();
                let _ = write!(
                    h,
                    "<td>{} <span class=\"note\">{col}</span></td>",
                    esc(what)
                );
                match spread(&values) {
                    None => {
                        let _ = writeln!(
                            h,
                            "<td class=\"num\">n=0{}</td><td colspan=\"4\" class=\"note\">not measured</td></tr>",
                            if values.is_empty() {
                                String::new()
                            } else {
                                format!(", {} missing", values.len())
                            }
                        );
                    }
                    Some(s) => {
                        let ci_text = match median_ci(&s.sorted, 0.95) {
                            Some(m) => format!(
                                "{} – {} (coverage {:.1}%)",
                                fmt_unit(m.low, *unit),
                                fmt_unit(m.high, *unit),
                                m.coverage * 100.0
                            ),
                            None => format!(
                                "<span class=\"note\">n too small (n &lt; {MEDIAN_CI_MIN_N})</span>"
                            ),
                        };
                        let _ = writeln!(
                            h,
                            "<td class=\"num\">n={}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                             <td class=\"num\">{}</td><td class=\"ci\">{ci_text}</td></tr>",
                            s.n,
                            if s.missing > 0 {
                                format!(", {} missing", s.missing)
                            } else {
                                String::new()
                            },
                            fmt_unit(s.min, *unit),
                            fmt_unit(s.median, *unit),
                            fmt_unit(s.max, *unit),
                        );
                    }
                }
            }
        }
        h.push_str("</tbody></table>\n");
        comparisons(h, &groups, ci);
    }
    h.push_str("</section>\n");
}

/// The one axis two cells differ in, if exactly one: (axis, value a, value b). vhost "n/a"
/// matches any vhost when the NICs differ (vmxnet3 against virtio-net at either setting).
fn one_difference(a: &CellRow, b: &CellRow) -> Option<(&'static str, String, String)> {
    let va = axes_with_nic(a);
    let vb = axes_with_nic(b);
    let nic_differs = a.nic != b.nic;
    let mut diffs = va.iter().zip(&vb).filter(|((name, x), (_, y))| {
        x != y && !(*name == "vhost" && nic_differs && (x == "n/a" || y == "n/a"))
    });
    let first = diffs.next();
    if diffs.next().is_some() {
        return None;
    }
    match first {
        Some(((name, x), (_, y))) => Some((name, x.clone(), y.clone())),
        // Same axes, other settings (guest_sysctls, ports, memory) in the cell id.
        None if a.cell_id != b.cell_id => Some((
            "settings outside the row",
            a.cell_id.clone(),
            b.cell_id.clone(),
        )),
        None => None,
    }
}

fn axes_with_nic(r: &CellRow) -> Vec<(&'static str, String)> {
    let mut v = vec![("nic", r.nic.clone()), ("mode", r.mode.clone())];
    v.extend(axes(r));
    v
}

fn comparisons(h: &mut String, groups: &[&Group], ci: usize) {
    // Pairs with enough repetitions for a test, one row per metric; and those without.
    let mut rows = String::new();
    let mut small = String::new();
    let (mut pairs, mut tested) = (0, 0);
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[i + 1..] {
            let Some((axis, va, vb)) = one_difference(a.row(), b.row()) else {
                continue;
            };
            pairs += 1;
            let xa: Vec<&CellRow> = a.measured().map(|r| &r.row).collect();
            let xb: Vec<&CellRow> = b.measured().map(|r| &r.row).collect();
            let min_p = mann_whitney_min_p(xa.len(), xb.len());
            let head = format!(
                "<td rowspan=\"{span}\"><a href=\"#{}\">{}</a><br>vs <a href=\"#{}\">{}</a></td>\
                 <td rowspan=\"{span}\">{} ({} vs {})</td>",
                a.anchor(ci),
                esc(&cell_title(a.row())),
                b.anchor(ci),
                esc(&cell_title(b.row())),
                esc(axis),
                esc(&va),
                esc(&vb),
                span = if min_p >= 0.05 { 1 } else { METRICS.len() },
            );
            if min_p >= 0.05 {
                let _ = writeln!(
                    small,
                    "<tr>{head}<td class=\"num\">{} vs {}</td><td class=\"note\">n too \
                     small: the smallest two-sided p these sizes can reach is {:.3}</td></tr>",
                    xa.len(),
                    xb.len(),
                    min_p
                );
                continue;
            }
            tested += 1;
            for (m, (col, what, unit, get)) in METRICS.iter().enumerate() {
                let head = if m == 0 { head.as_str() } else { "" };
                let va: Vec<f64> = xa.iter().filter_map(|r| get(r)).collect();
                let vb: Vec<f64> = xb.iter().filter_map(|r| get(r)).collect();
                let n = format!("{} vs {}", va.len(), vb.len());
                let min_p = mann_whitney_min_p(va.len(), vb.len());
                let result = match mann_whitney(&va, &vb) {
                    Some(mw) if min_p < 0.05 => {
                        let med = |v: &[f64]| {
                            spread(&v.iter().map(|x| Some(*x)).collect::<Vec<_>>())
                                .map_or("–".into(), |s| fmt_unit(s.median, *unit))
                        };
                        format!(
                            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                             <td class=\"num{}\">{:.4}</td>",
                            med(&va),
                            med(&vb),
                            mw.u,
                            if mw.p < 0.05 { " p-low" } else { "" },
                            mw.p
                        )
                    }
                    _ => format!(
                        "<td colspan=\"4\" class=\"note\">n too small once missing values are left \
                         out (smallest p {:.3})</td>",
                        min_p
                    ),
                };
                let _ = writeln!(
                    rows,
                    "<tr>{head}<td class=\"num\">{n}</td><td>{} <span class=\"note\">{col}</span></td>{result}</tr>",
                    esc(what)
                );
            }
        }
    }
    h.push_str("<h4>Comparisons between cells that differ in one axis</h4>\n");
    if pairs == 0 {
        h.push_str("<p class=\"note\">No two cells here differ in exactly one axis.</p>\n");
        return;
    }
    if tested > 0 {
        let _ = write!(
            h,
            "<table class=\"comparisons\"><thead><tr><th>cells</th><th>differ in</th><th>n</th>\
             <th>metric</th><th>median A</th><th>median B</th><th>U</th><th>p</th></tr></thead>\
             <tbody>\n{rows}</tbody></table>\n"
        );
    } else {
        h.push_str("<p class=\"note\">None can be tested: no pair has enough repetitions.</p>\n");
    }
    if tested < pairs {
        let _ = write!(
            h,
            "<details><summary>{} pair(s) with too few repetitions for a test</summary>\
             <table class=\"comparisons small\"><thead><tr><th>cells</th><th>differ in</th>\
             <th>n</th><th>why not</th></tr></thead><tbody>\n{small}</tbody></table></details>\n",
            pairs - tested
        );
    }
}

fn cells(h: &mut String, data: &Results) -> Result<()> {
    h.push_str("<section id=\"cells\"><h2>Cells</h2>\n<p class=\"note\">Each cell's repetitions, \
        overlaid in the plots (one colour each). t = 0 is the disconnect; the grey band is the time \
        it took (kill_spread_seconds, the longest of the repetitions); the dashed line in a \
        repetition's colour is where its hold began. Axis units are in the axis titles.</p>\n");
    for g in &data.groups {
        cell(h, g, data.class_index(&g.class))?;
    }
    h.push_str("</section>\n");
    Ok(())
}

fn cell(h: &mut String, g: &Group, ci: usize) -> Result<()> {
    let r = g.row();
    let _ = write!(
        h,
        "<section class=\"cell\" id=\"{}\" data-cell=\"{}\"><h3>{}</h3>\n<p class=\"note\">cell \
         <code>{}</code> · {} · {} vCPU(s) · server {} MiB, clients {} MiB{}</p>\n",
        g.anchor(ci),
        esc(&r.cell_id),
        esc(&cell_title(r)),
        esc(&r.cell_id),
        esc(&g.class),
        opt(r.vcpus),
        opt(r.server_memory_mib),
        opt(r.client_memory_mib),
        match (&r.vhost_effective, r.vhost.as_str()) {
            (Some(e), v) if e != v => format!(" · vhost as run: {}", esc(e)),
            _ => String::new(),
        }
    );
    reps_table(h, g);

    let traces: Vec<RepTrace> = g
        .reps
        .iter()
        .enumerate()
        .filter_map(|(i, rep)| {
            rep.series.as_ref().map(|ts| RepTrace {
                label: format!("rep {}", rep.row.repetition),
                color: rep_color(i),
                ts,
                kill_spread: rep.row.kill_spread_seconds,
            })
        })
        .collect();
    if traces.is_empty() {
        h.push_str(
            "<p class=\"note noplot\">No time series here: this results directory keeps \
            cells.csv only (or the cell ended before observing).</p>\n",
        );
    } else {
        if traces.len() < g.reps.len() {
            let _ = writeln!(
                h,
                "<p class=\"note\">{} of {} repetitions have a time series.</p>",
                traces.len(),
                g.reps.len()
            );
        }
        if !traces.iter().any(|t| t.ts.has_phases()) {
            h.push_str(
                "<p class=\"note\">These time series start at the disconnect: they were \
                written before the runner recorded the ramp and hold.</p>\n",
            );
        }
        h.push_str("<div class=\"plots\">\n");
        let mut absent = vec![];
        for m in Metric::ALL {
            match plots::render(m, &traces)? {
                Some(svg) => {
                    let _ = writeln!(
                        h,
                        "<figure class=\"plot\" data-metric=\"{}\">{svg}</figure>",
                        m.id()
                    );
                }
                None => absent.push(m.title()),
            }
        }
        h.push_str("</div>\n");
        if !absent.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"note\">Not in these time series (not recorded by the version that \
                 wrote them, or never measured): {}.</p>",
                esc(&absent.join("; "))
            );
        }
    }
    for rep in &g.reps {
        for p in &rep.problems {
            let _ = writeln!(
                h,
                "<p class=\"note\">rep {}: could not read: {}</p>",
                rep.row.repetition,
                esc(p)
            );
        }
    }
    counters(h, g);
    h.push_str("</section>\n");
    Ok(())
}

fn reps_table(h: &mut String, g: &Group) {
    h.push_str(
        "<table class=\"reps\"><thead><tr><th>rep</th><th>run</th><th>verdict</th>\
        <th>peak / target</th><th>ramp</th><th>kill spread</th><th>drain</th><th>undrained</th>\
        <th>SSH baseline / slowest</th><th>probe failures</th><th>heartbeat max gap</th>\
        <th>peak softirq / vCPU</th><th>tap drops</th><th>recovery</th></tr></thead><tbody>\n",
    );
    for (i, rep) in g.reps.iter().enumerate() {
        let r = &rep.row;
        let _ = writeln!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td>\
             <td><span class=\"mark {}\"></span>{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            css(rep_color(i)),
            r.repetition,
            esc(&r.run_id),
            verdict_class(r.verdict.as_str()),
            esc(r.verdict.as_str()),
            opt(r.peak_established),
            opt(r.target),
            match (r.ramp_seconds, r.ramp_rate) {
                (Some(s), Some(rate)) => format!("{} s, {:.0}/s", sig(s), rate),
                (s, _) => opt_secs(s),
            },
            opt_secs(r.kill_spread_seconds),
            opt_secs(r.drain_seconds),
            opt(r.undrained_connections),
            opt_secs(r.ssh_baseline_seconds),
            opt_secs(r.ssh_max_seconds),
            opt(r.ssh_probe_failures),
            opt_secs(r.heartbeat_max_gap_seconds),
            r.peak_softirq_pct.map_or("–".into(), |v| format!("{v:.1} %")),
            r.peak_vcpu_pct.map_or("–".into(), |v| format!("{v:.0} %")),
            opt(r.server_tap_tx_dropped),
            opt_secs(r.recovery_seconds),
        );
        if let Some(e) = &r.error {
            let _ = writeln!(
                h,
                "<tr><td></td><td colspan=\"13\" class=\"note\">error{}: {}</td></tr>",
                r.error_phase
                    .as_deref()
                    .map_or(String::new(), |p| format!(" in {}", esc(p))),
                esc(e)
            );
        }
    }
    h.push_str("</tbody></table>\n");
}

/// Counters that explain a ramp or a drain, shown first.
const KEY_COUNTERS: &[(&str, &str)] = &[
    (
        "TcpExtTCPAbortOnMemory",
        "sockets killed with one RST (orphan or memory limit)",
    ),
    ("TcpExtListenOverflows", "accept queue full"),
    ("TcpExtListenDrops", "SYNs dropped at a listener"),
    (
        "TcpExtTCPAbortOnTimeout",
        "connections given up after retransmissions",
    ),
    ("TcpRetransSegs", "segments retransmitted"),
    (
        "tap.tx_dropped",
        "host dropped frames on the way into the VM",
    ),
    (
        "eth0.rx_dropped",
        "the guest's driver dropped frames on receive",
    ),
    ("conntrack.drop", "host conntrack drops"),
    ("conntrack.early_drop", "host conntrack early drops"),
    ("conntrack.insert_failed", "host conntrack insert failures"),
];

fn counters(h: &mut String, g: &Group) {
    let with: Vec<(usize, &Rep, &Vec<CounterLine>)> = g
        .reps
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.counters.as_ref().map(|c| (i, r, c)))
        .collect();
    if with.is_empty() {
        return;
    }
    // (window, scope, counter) -> delta per repetition with a file.
    type Key = (usize, String, String);
    let window_rank = |w: &str| match w {
        "ramp" => 0,
        "observe" => 1,
        _ => 2,
    };
    let mut table: BTreeMap<Key, (String, Vec<Option<i128>>)> = BTreeMap::new();
    // Scopes missing at an end of a window: message -> repetitions.
    let mut missing: Vec<(String, Vec<u32>)> = vec![];
    for (k, (_, rep, lines)) in with.iter().enumerate() {
        for l in lines.iter() {
            if l.counter.is_empty() {
                let msg = format!(
                    "{} in the {} window: {} at its start, {} at its end",
                    l.scope, l.window, l.before, l.after
                );
                match missing.iter_mut().find(|(m, _)| *m == msg) {
                    Some((_, reps)) => reps.push(rep.row.repetition),
                    None => missing.push((msg, vec![rep.row.repetition])),
                }
                continue;
            }
            let e = table
                .entry((window_rank(&l.window), l.scope.clone(), l.counter.clone()))
                .or_insert_with(|| (l.window.clone(), vec![None; with.len()]));
            e.1[k] = l.delta;
        }
    }
    let head = |h: &mut String| {
        h.push_str("<thead><tr><th>window</th><th>scope</th><th>counter</th>");
        for (i, rep, _) in &with {
            let _ = write!(
                h,
                "<th><span class=\"swatch\" style=\"background:{}\"></span>rep {}</th>",
                css(rep_color(*i)),
                rep.row.repetition
            );
        }
        h.push_str("</tr></thead><tbody>\n");
    };
    let row = |h: &mut String, k: &Key, window: &str, deltas: &[Option<i128>], what: &str| {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code>{}</td>",
            esc(window),
            esc(&k.1),
            esc(&k.2),
            if what.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"note\">{}</span>", esc(what))
            }
        );
        for d in deltas {
            let _ = write!(h, "<td class=\"num\">{}</td>", opt(*d));
        }
        h.push_str("</tr>\n");
    };
    h.push_str("<details class=\"counters\"><summary>Counters (growth per window; counters.csv)</summary>\n");
    h.push_str(
        "<p class=\"note\">ramp = clients started until the end of hold; observe = end of \
        hold until the end of observe. Empty: the counter did not move in that repetition, or its \
        file lacks it.</p>\n<table class=\"small\">",
    );
    head(h);
    for (k, (window, deltas)) in &table {
        if let Some((_, what)) = KEY_COUNTERS.iter().find(|(c, _)| *c == k.2) {
            row(h, k, window, deltas, what);
        }
    }
    h.push_str("</tbody></table>\n<details><summary>every counter that moved</summary><table class=\"small\">");
    head(h);
    for (k, (window, deltas)) in &table {
        row(h, k, window, deltas, "");
    }
    h.push_str("</tbody></table></details>\n");
    for (msg, reps) in missing {
        let reps: Vec<String> = reps.iter().map(u32::to_string).collect();
        let _ = writeln!(
            h,
            "<p class=\"note\">Counters of {} (rep {}).</p>",
            esc(&msg),
            reps.join(", ")
        );
    }
    h.push_str("</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_axis_differences() {
        let a = CellRow {
            nic: "virtio-net".into(),
            vhost: "off".into(),
            ..CellRow::example("a", 1, "ok")
        };
        let vmx = CellRow::example("b", 1, "ok");
        assert_eq!(
            one_difference(&a, &vmx),
            Some(("nic", "virtio-net".into(), "vmxnet3".into())),
            "vhost n/a matches either setting when the NIC differs"
        );
        let on = CellRow {
            vhost: "on".into(),
            ..a.clone()
        };
        assert_eq!(
            one_difference(&a, &on),
            Some(("vhost", "off".into(), "on".into()))
        );
        let nat_on = CellRow {
            mode: "nat".into(),
            ..on.clone()
        };
        assert_eq!(one_difference(&a, &nat_on), None, "two axes");
        let sysctl = CellRow {
            cell_id: "c".into(),
            ..vmx.clone()
        };
        assert_eq!(
            one_difference(&vmx, &sysctl).map(|d| d.0),
            Some("settings outside the row")
        );
        assert_eq!(one_difference(&vmx, &vmx), None);
    }

    #[test]
    fn text_helpers() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(md_code("`hung` or <b>"), "<code>hung</code> or &lt;b&gt;");
        assert_eq!(sig(6.678968811), "6.68");
        assert_eq!(sig(35.04), "35");
        assert_eq!(sig(120.4), "120");
        assert_eq!(verdict_class("weird"), "v-other");
        assert_eq!(verdict_class("ssh_dropped"), "v-ssh_dropped");
        let listed: Vec<crate::verdict::Verdict> =
            VERDICTS.iter().map(|(v, _)| v.parse().unwrap()).collect();
        assert_eq!(
            listed,
            crate::verdict::Verdict::ALL,
            "every verdict, in order"
        );
    }
}
