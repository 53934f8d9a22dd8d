//! What the page's sections share: HTML escaping, number formatting, the verdict colours and
//! marks, and the names of a cell (its axes, its title).

use std::fmt::Write as _;

use crate::report::{plots, Group};
use crate::results::summary::verdict_counts;
use crate::results::CellRow;

/// Verdicts and what they mean (README "Verdicts"); their colours are the `.v-*` rules in
/// `CSS` (mod.rs).
pub(crate) const VERDICTS: &[(&str, &str)] = &[
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
    (
        "client_dropped",
        "a client lost its network before the observe window (SSH to it failed; its VM ran)",
    ),
    ("error", "the harness failed; nothing measured"),
    (
        "not_applicable",
        "this host cannot run the cell as asked (e.g. vhost-net under TCG); not run",
    ),
];

/// Up to 3 significant digits, at most 2 decimals: 6.68, 35.2, 120, 0.47.
pub(crate) fn sig(v: f64) -> String {
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

pub(crate) fn verdict_class(v: &str) -> &'static str {
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
            "client_dropped" => "v-client_dropped",
            "not_applicable" => "v-not_applicable",
            _ => "v-error",
        })
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
            verdict_class(r.verdict.as_str()),
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

/// "virtio-net / bridge · vhost=on · fin on one · 30000 of 1000000"
pub(crate) fn cell_title(r: &CellRow) -> String {
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
        assert_eq!(verdict_class("weird"), "v-other");
        assert_eq!(verdict_class("ssh_dropped"), "v-ssh_dropped");
        let listed: Vec<crate::model::verdict::Verdict> =
            VERDICTS.iter().map(|(v, _)| v.parse().unwrap()).collect();
        assert_eq!(
            listed,
            crate::model::verdict::Verdict::ALL,
            "every verdict, in order"
        );
    }
}
