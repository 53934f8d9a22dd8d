//! The statistics section: per host class and cell the spread and median interval of each
//! metric, and exact Mann-Whitney comparisons between cells that differ in one axis.

use std::fmt::Write as _;

use super::text::{axes, cell_title, esc};
use crate::report::{Group, Results};
use crate::results::metrics::METRICS;
use crate::results::stats::{mann_whitney, mann_whitney_min_p, median_ci, spread, MEDIAN_CI_MIN_N};
use crate::results::CellRow;

pub(crate) fn section(h: &mut String, data: &Results) {
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
            for (i, m) in METRICS.iter().enumerate() {
                let (col, what, unit, get) = (m.column, m.what, m.unit, m.get);
                if i > 0 {
                    h.push_str("<tr>");
                }
                let values: Vec<Option<f64>> = measured.iter().map(|r| get(r)).collect();
                let _ = write!(
                    h,
                    "<td>{} <span class=\"note\">{col}; {} is better</span></td>",
                    esc(what),
                    m.better.as_str()
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
                                unit.format(m.low),
                                unit.format(m.high),
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
                            unit.format(s.min),
                            unit.format(s.median),
                            unit.format(s.max),
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
    let vhost_na = !a.vhost_applies() || !b.vhost_applies();
    let mut diffs = va
        .iter()
        .zip(&vb)
        .filter(|((name, x), (_, y))| x != y && !(*name == "vhost" && nic_differs && vhost_na));
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
    let mut v = vec![("nic", r.nic.to_string()), ("mode", r.mode.to_string())];
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
            for (i, m) in METRICS.iter().enumerate() {
                let (col, what, unit, get) = (m.column, m.what, m.unit, m.get);
                let head = if i == 0 { head.as_str() } else { "" };
                let va: Vec<f64> = xa.iter().filter_map(|r| get(r)).collect();
                let vb: Vec<f64> = xb.iter().filter_map(|r| get(r)).collect();
                let n = format!("{} vs {}", va.len(), vb.len());
                let min_p = mann_whitney_min_p(va.len(), vb.len());
                let result = match mann_whitney(&va, &vb) {
                    Some(mw) if min_p < 0.05 => {
                        let med = |v: &[f64]| {
                            spread(&v.iter().map(|x| Some(*x)).collect::<Vec<_>>())
                                .map_or("–".into(), |s| unit.format(s.median))
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
}
