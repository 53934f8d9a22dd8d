//! Escaping text for markup: the five characters special in XML and HTML. The domain XML
//! (lab/domain.rs) and report.html (report/html/) both use it.

/// `s` with `& < > " '` replaced by entities that XML and HTML both read.
pub(crate) fn escape(s: &str) -> String {
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

/// How a missing measurement is shown on the terminal and in summary.md ("-"; the CSV
/// leaves the field empty).
pub(crate) fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_five_and_nothing_else() {
        assert_eq!(
            super::escape("a<b & 'c' > \"d\" /e"),
            "a&lt;b &amp; &#39;c&#39; &gt; &quot;d&quot; /e"
        );
    }
}
