//! What the page's sections share: HTML escaping, number formatting, the verdict colours and
//! marks, and the names of a cell (its axes, its title).

use std::fmt::Write as _;

use crate::model::named::Named;
use crate::model::verdict::Verdict;
use crate::report::{plots, Group};
use crate::results::summary::verdict_counts;
use crate::results::CellRow;

pub(crate) use crate::support::markup::sig;

pub(crate) fn esc(s: &str) -> String {
    crate::support::markup::escape(s)
}

/// `code` spans for text in backticks.
pub(crate) fn md_code(s: &str) -> String {
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

/// The CSS class of a verdict's mark: `v-<verdict>` (the `.v-*` rules in `CSS`, mod.rs), and
/// `v-other` for a verdict this build does not know.
pub(crate) fn verdict_class(v: &Named<Verdict>) -> String {
    match v.known() {
        Some(v) => format!("v-{v}"),
        None => "v-other".to_owned(),
    }
}

pub(crate) fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

pub(crate) fn opt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{} s", sig(v)))
}

pub(crate) fn marks(h: &mut String, g: &Group) {
    h.push_str("<span class=\"marks\">");
    for rep in &g.reps {
        let r = &rep.row;
        let _ = write!(
            h,
            "<span class=\"mark {}\" role=\"img\" aria-label=\"{v}\" title=\"rep {}: {v} (run {})\"></span>",
            verdict_class(&r.verdict),
            r.repetition,
            esc(&r.run_id),
            v = esc(r.verdict.as_str()),
        );
    }
    h.push_str("</span>");
}

pub(crate) fn counts(g: &Group) -> String {
    let rows: Vec<&CellRow> = g.reps.iter().map(|r| &r.row).collect();
    verdict_counts(&rows)
}

/// The axes that tell cells of one table apart, as (name, value) pairs.
pub(crate) fn axes(r: &CellRow) -> Vec<(&'static str, String)> {
    let mut v = r.named_axes();
    v.extend([
        ("connections", plots::compact(r.connections as f64)),
        (
            "target",
            r.target.map_or("–".into(), |t| plots::compact(t as f64)),
        ),
        ("vcpus", opt(r.vcpus)),
    ]);
    v
}

/// "virtio-net / bridge · vhost=on · fin on one · 30000 of 1000000"
pub(crate) fn cell_title(r: &CellRow) -> String {
    let mut parts = vec![format!("{} / {}", r.nic, r.mode)];
    if r.vhost_applies() {
        parts.push(format!("vhost={}", r.vhost));
    }
    if !r.runs_system_qemu() {
        parts.push(format!("qemu={}", r.qemu));
    }
    if !r.has_no_traffic() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(verdict_class(&Named::parse("weird")), "v-other");
        assert_eq!(verdict_class(&Named::parse("ssh_dropped")), "v-ssh_dropped");
        assert_eq!(verdict_class(&Named::parse("error")), "v-error");
    }
}
