//! What commands print for a terminal or a program: the summary in the format asked, at the
//! terminal's width.

use anyhow::Result;

use crate::cli::SummaryFormat;

/// The summary of `rows` as `format` says, for stdout: the terminal table at the terminal's
/// width, coloured when stdout is a terminal and NO_COLOR is unset.
pub(crate) fn summary_text(
    matrix: &str,
    rows: &[crate::results::CellRow],
    format: SummaryFormat,
) -> Result<String> {
    use crate::results::summary;
    Ok(match format {
        SummaryFormat::Markdown => summary::summarize(rows),
        SummaryFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&summary::summary_json(matrix, rows))?
        ),
        SummaryFormat::Text => {
            let term = console::Term::stdout();
            summary::summarize_terminal(rows, terminal_width(&term), console::colors_enabled())
        }
    })
}

/// The width of `term` when it is a terminal, else COLUMNS, else 100.
pub(crate) fn terminal_width(term: &console::Term) -> usize {
    term.size_checked()
        .map(|(_, w)| usize::from(w))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(100)
}
