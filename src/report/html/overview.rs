//! The overview section: per host class a matrix of NIC by network mode, each entry one
//! verdict square per repetition, linking to the cell; search steps are left out.

use std::fmt::Write as _;

use super::text::{axes, counts, esc, marks, verdict_class};
use crate::model::named::Named;
use crate::model::verdict::Verdict;
use crate::report::{Group, Results};

fn legend(h: &mut String) {
    h.push_str("<p class=\"legend\">");
    for v in Verdict::ALL {
        let _ = write!(
            h,
            "<span class=\"item\"><span class=\"mark {}\" title=\"{v}\"></span><code>{v}</code> {}</span>",
            verdict_class(&Named::Known(v)),
            esc(v.meaning())
        );
    }
    h.push_str(
        "</p>\n<p class=\"note\">One square per repetition, in repetition order; hover for \
        its verdict and run.</p>\n",
    );
}

/// For each group, the "axis=value" labels of the axes that differ among `groups`, or the
/// cell id where nothing in the row tells two apart (settings outside the row, such as
/// guest_sysctls).
fn labels(groups: &[&Group]) -> Vec<String> {
    let values: Vec<Vec<(&str, String)>> = groups.iter().map(|g| axes(g.row())).collect();
    // vhost is left out of a label where it does not apply.
    let applies = |g: &Group, axis: &str| axis != "vhost" || g.row().vhost_applies();
    let differing: Vec<usize> = (0..values.first().map_or(0, Vec::len))
        .filter(|&i| values.iter().any(|v| v[i].1 != values[0][i].1))
        .collect();
    let mut out: Vec<String> = values
        .iter()
        .zip(groups)
        .map(|(v, g)| {
            differing
                .iter()
                .filter(|&&i| applies(g, v[i].0))
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

pub(crate) fn section(h: &mut String, data: &Results) {
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
        let mut modes: Vec<&Named<crate::matrix::plan::NetMode>> =
            groups.iter().map(|g| &g.row().mode).collect();
        modes.sort();
        modes.dedup();
        let mut nics: Vec<&Named<crate::matrix::plan::NicModel>> =
            groups.iter().map(|g| &g.row().nic).collect();
        nics.sort();
        nics.dedup();
        h.push_str("<table class=\"overview\"><thead><tr><th>NIC</th>");
        for m in &modes {
            let _ = write!(h, "<th>{}</th>", esc(m.as_str()));
        }
        h.push_str("</tr></thead><tbody>\n");
        for nic in &nics {
            let _ = write!(h, "<tr><th class=\"nic\">{}</th>", esc(nic.as_str()));
            for mode in &modes {
                h.push_str("<td>");
                let mut any = false;
                for (g, label) in groups.iter().zip(&labels) {
                    let r = g.row();
                    if r.nic != **nic || r.mode != **mode {
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
