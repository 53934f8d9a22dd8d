//! The report page: overview matrix, the seed beside us, breaking-point searches, statistics
//! by host class, and per cell its repetitions, plots and counters. Plain HTML with inline
//! CSS; the plots are plotters' SVG documents inlined as they are. This file holds the page's
//! frame (head, CSS, the header and its navigation); each section is a file named after it,
//! and text.rs what the sections share.

mod cells;
mod overview;
mod searches;
mod seed_comparison;
mod statistics;
mod sweeps;
mod text;

use std::fmt::Write as _;

use anyhow::Result;

use super::Results;
use text::esc;

pub(crate) const CSS: &str = r#"
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
.v-hung{background:#c62828}.v-crashed{background:#6a1b9a}.v-not_reached{background:#607d8b}.v-client_dropped{background:#ad1457}
.v-error{background:repeating-linear-gradient(45deg,#d0d0d0 0 3px,#f4f4f4 3px 6px)}.v-not_applicable{background:#ffffff;outline:1px dashed #9e9e9e}.v-other{background:#ff00ff}
.counts{font-size:.92em}
.legend span.item{margin-right:16px;white-space:nowrap;display:inline-block}
.note{color:#555;font-size:.92em}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:10px}
figure.plot{margin:0;border:1px solid #e3e3e3}
figure.plot svg{display:block;width:100%;height:auto}
.swatch{display:inline-block;width:22px;height:4px;vertical-align:middle;margin-right:4px}
section.cell{border-top:1px solid #e5e5e5;margin-top:22px}
.diagrams{display:flex;flex-wrap:wrap;gap:18px}
table.diagram caption{font-weight:bold;text-align:left;padding:2px 0}
table.diagram td{min-width:60px;text-align:center}
table.signatures caption{text-align:left;padding:2px 0}
.mark.sq.srv{outline:3px solid #000;outline-offset:0}
.mark.sq{width:18px;height:18px;color:#fff;font-size:12px;font-weight:bold;text-align:center;line-height:18px;vertical-align:middle}
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
    overview::section(&mut h, data);
    seed_comparison::section(&mut h, data);
    searches::section(&mut h, data);
    sweeps::section(&mut h, data);
    statistics::section(&mut h, data);
    cells::section(&mut h, data)?;
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
        <a href=\"#searches\">Breaking-point searches</a><a href=\"#sweeps\">Sweeps</a>\
        <a href=\"#statistics\">Statistics</a>\
        <a href=\"#cells\">Cells</a></nav>\n",
    );
}
