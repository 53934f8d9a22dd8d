//! The breaking-point searches section: per search (and host class) the bracket its steps
//! found and a table of the steps.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::text::{esc, opt, opt_secs, verdict_class};
use crate::matrix::plan::Accel;
use crate::matrix::search::{bracket, OkSide, Outcome, Searched};
use crate::report::{Group, Results};
use crate::results::CellRow;

pub(crate) fn section(h: &mut String, data: &Results) {
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
        "<p class=\"note\">A search runs one cell at growing connection counts (or at values of \
         one variable of QEMU's environment, the count fixed, from the side the matrix names \
         ok): ok = verdict \
         <code>ok</code>; every other verdict but <code>error</code> fails that count; an \
         <code>error</code> row is the harness failing and does not count. The bracket is the \
         largest ok count below the smallest failing one (mirrored for a search ok above: the \
         smallest ok value above the largest failing one). Counts are the targets that ran: under \
         TCG a target is min(connections, tcg_connections), so the upper end of a TCG search over \
         connections is capped by tcg_connections; a search over QEMU's environment is not.</p>\n",
    );
    for ((ci, id), mut groups) in by_search {
        groups.sort_by_key(|g| (g.row().search_step, g.row().target));
        let rows: Vec<&CellRow> = groups
            .iter()
            .flat_map(|g| g.reps.iter().map(|r| &r.row))
            .collect();
        let results: Vec<(u64, Outcome)> = rows.iter().filter_map(|r| r.search_step()).collect();
        let r = rows[0];
        let param = r.searched().unwrap_or(Searched::Connections);
        let b = bracket(&results, param.ok_side());
        let env = param != Searched::Connections;
        let above = param.ok_side() == OkSide::Above;
        let under_tcg = |r: &CellRow| r.accel.as_ref().is_some_and(|a| *a == Accel::Tcg);
        let capped = rows
            .iter()
            .any(|r| under_tcg(r) && r.target.is_some_and(|t| t < r.connections));
        let tcg = rows.iter().any(|r| under_tcg(r));
        let found = match (b.last_ok, b.first_fail) {
            (Some(lo), Some(hi)) => format!("last ok <b>{lo}</b>, first failing <b>{hi}</b>"),
            (None, Some(hi)) if env => {
                format!("failed already at <b>{hi}</b>, the end expected ok")
            }
            (Some(lo), None) if above => format!("none failed down to <b>{lo}</b>"),
            (None, Some(hi)) => {
                format!("failed already at <b>{hi}</b>, the smallest count that ran")
            }
            (Some(lo), None) if env => format!("none failed up to <b>{lo}</b>"),
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
        let what = match r.search_setting(&param) {
            s if s.is_empty() => String::new(),
            s => format!("{}: ", esc(&s)),
        };
        let _ = write!(
            h,
            "<h3>Search {} — {}/{}{} · {}</h3>\n<p>{what}{found}; {} steps{}.</p>\n",
            esc(id),
            esc(r.nic.as_str()),
            esc(r.mode.as_str()),
            if r.vhost_applies() {
                format!(" vhost={}", esc(r.vhost.as_str()))
            } else {
                String::new()
            },
            esc(&data.classes[ci]),
            b.steps,
            if b.flapping.is_empty() {
                String::new()
            } else {
                format!(
                    "; ok again at or {} a failure at {} (the boundary is not sharp)",
                    if above { "below" } else { "above" },
                    b.flapping
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = writeln!(
            h,
            "<table class=\"search\"><thead><tr><th>step</th>{}<th>connections asked</th>\
             <th>target run</th><th>verdict</th><th>drain</th><th>slowest SSH probe</th></tr></thead><tbody>",
            if env {
                format!("<th>{}</th>", esc(param.short_name()))
            } else {
                String::new()
            }
        );
        for g in &groups {
            for rep in &g.reps {
                let r = &rep.row;
                let _ = writeln!(
                    h,
                    "<tr><td class=\"num\">{}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td><span class=\"mark {}\"></span><a href=\"#{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    opt(r.search_step),
                    if env {
                        format!(
                            "<td class=\"num\">{}</td>",
                            opt(r.search_step().map(|(v, _)| v))
                        )
                    } else {
                        String::new()
                    },
                    r.connections,
                    opt(r.target),
                    verdict_class(&r.verdict),
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
