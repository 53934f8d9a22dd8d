//! Why a matrix file cannot become a plan, located: [`Ctx`] turns a key path into
//! `file:line:col: key.path: message`, and serde's own messages are reworded to match.

use std::fmt;
use std::path::PathBuf;

use crate::matrix::config::{locate, path_text, Seg};

/// Why a matrix file cannot become a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: cannot read matrix file: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    /// Any syntax, type, value or combination error. `detail` starts with the key path.
    #[error("{file}{}: {detail}", fmt_location(location))]
    Invalid {
        file: String,
        /// 1-based line and column, when the YAML parser knows them.
        location: Option<(usize, usize)>,
        detail: String,
    },
}

fn fmt_location(location: &Option<(usize, usize)>) -> String {
    location.map_or(String::new(), |(l, c)| format!(":{l}:{c}"))
}

/// The file being checked, for turning a key path into a located error.
pub(super) struct Ctx<'a> {
    pub(super) file: String,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, path: &[Seg], msg: impl fmt::Display) -> PlanError {
        PlanError::Invalid {
            file: self.file.clone(),
            location: locate(self.text, path),
            detail: format!("{}: {msg}", path_text(path)),
        }
    }

    /// serde_yaml_ng already puts "key.path: message" first and the position last;
    /// move the position to the front so every error reads `file:line:col: key: ...`.
    pub(super) fn yaml_err(&self, e: serde_yaml_ng::Error) -> PlanError {
        let location = e.location().map(|l| (l.line(), l.column()));
        let text = e.to_string();
        let detail = match location {
            Some((l, c)) => text
                .strip_suffix(&format!(" at line {l} column {c}"))
                .map(str::to_owned)
                .unwrap_or(text),
            None => text,
        };
        PlanError::Invalid {
            file: self.file.clone(),
            location,
            detail: reword_serde(&detail),
        }
    }
}

/// Rewords serde's derive messages into the wording of our own errors:
/// "unknown field `x`, expected one of `a`, `b`" -> "unknown key \"x\"; allowed: a, b".
fn reword_serde(detail: &str) -> String {
    let (prefix, msg) = match detail
        .find("unknown field `")
        .or_else(|| detail.find("missing field `"))
    {
        Some(at) => detail.split_at(at),
        None => return detail.to_owned(),
    };
    let ticked =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (key, allowed) = rest.split_once(", ").unwrap_or((rest, ""));
        let key = key.trim_matches('`');
        let allowed = ticked(allowed);
        let allowed = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        return format!("{prefix}unknown key {key:?}; allowed: {allowed}");
    }
    let key = msg.trim_start_matches("missing field ").trim_matches('`');
    format!("{prefix}missing required key {key:?}")
}

#[cfg(test)]
mod tests {
    use crate::matrix::plan::testing::err;

    #[test]
    fn errors_point_at_the_offending_line() {
        let text = "axes:\n  nic: [vmxnet3]\n  mode: [bridge]\n  connections:\n    - 10\n    - 0\n";
        assert_eq!(
            err(text),
            "matrix/t.yaml:6:7: axes.connections[1]: 0 connections; must be >= 1"
        );
    }
}
