//! Text files written a line at a time (cells.csv, timeseries.csv): the complete lines, and a
//! last line without its newline (torn by a crash mid-write), which is not a line yet.

/// `text` split into its complete lines (up to and including the last newline) and the torn
/// tail after them, if any.
pub(crate) fn complete_lines(text: &str) -> (&str, Option<&str>) {
    let keep = text.rfind('\n').map_or(0, |i| i + 1);
    let (complete, tail) = text.split_at(keep);
    (complete, (!tail.is_empty()).then_some(tail))
}

#[cfg(test)]
mod tests {
    use super::complete_lines;

    #[test]
    fn torn_tail_is_split_off() {
        assert_eq!(complete_lines("a\nb\n"), ("a\nb\n", None));
        assert_eq!(complete_lines("a\nb"), ("a\n", Some("b")));
        assert_eq!(complete_lines("ab"), ("", Some("ab")));
        assert_eq!(complete_lines(""), ("", None));
    }
}
