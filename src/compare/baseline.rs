//! The baseline file of `nicstorm compare --baseline FILE NEW` (docs/compare.md): a stored
//! results directory to compare against, and the tolerance of each metric.
//!
//! ```yaml
//! version: 1                     # required; the only version
//! results: baseline              # a results directory (holding cells.csv) or a cells.csv,
//!                                # relative to this file
//! tolerances:                    # optional; a metric not named keeps its default
//!   drain_seconds: {relative: 0.2, absolute: 0.5}
//!   verdict: {absolute: 0.25}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::tolerances::{Tolerances, VERDICT};
use crate::results::metrics::METRICS;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    results: PathBuf,
    #[serde(default)]
    tolerances: BTreeMap<String, RawTolerance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTolerance {
    relative: Option<f64>,
    absolute: Option<f64>,
}

/// A checked baseline file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Baseline {
    /// The results to compare against (a directory holding cells.csv, or a cells.csv).
    pub(crate) results: PathBuf,
    pub(crate) tolerances: Tolerances,
}

/// The metrics a tolerance may name.
fn allowed_keys() -> String {
    std::iter::once(VERDICT)
        .chain(METRICS.iter().map(|m| m.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 1-based line of the first `key:` in `text`, for an error's location.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))
        .map(|i| i + 1)
}

/// Parses the baseline file `path` holding `text`; `results` is resolved against its directory.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Baseline> {
    let raw: Raw = serde_yaml_ng::from_str(text).with_context(|| {
        format!(
            "{}: not a baseline file (keys: version, results, tolerances; docs/compare.md)",
            path.display()
        )
    })?;
    let at = |key: &str| {
        line_of(text, key).map_or_else(
            || path.display().to_string(),
            |l| format!("{}:{l}", path.display()),
        )
    };
    if raw.version != 1 {
        bail!(
            "{}: version: {} is not a baseline version this build reads; allowed: 1",
            at("version"),
            raw.version
        );
    }
    let mut tolerances = Tolerances::default();
    for (key, t) in &raw.tolerances {
        let Some(mut tol) = tolerances.get(key) else {
            bail!(
                "{}: tolerances.{key}: unknown metric {key:?}; allowed: {}",
                at(key),
                allowed_keys()
            );
        };
        for (field, value, slot) in [
            ("relative", t.relative, &mut tol.relative),
            ("absolute", t.absolute, &mut tol.absolute),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    bail!(
                        "{}: tolerances.{key}.{field}: {v} is not allowed; allowed: a number >= 0 \
                         ({})",
                        at(key),
                        if field == "relative" {
                            "a share of the base's centre: 0.1 is 10%"
                        } else {
                            "in the metric's own unit"
                        }
                    );
                }
                *slot = v;
            }
        }
        tolerances.set(key, tol);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(Baseline {
        results: dir.join(raw.results),
        tolerances,
    })
}

/// Reads and checks the baseline file `path`.
pub(crate) fn read(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading baseline file {}", path.display()))?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Baseline> {
        parse(Path::new("ci/baseline.yaml"), text)
    }

    #[test]
    fn a_baseline_with_tolerances() {
        let b = parse_str(
            "version: 1\nresults: stored\ntolerances:\n  drain_seconds: {relative: 0.2}\n  verdict: {absolute: 0.25}\n",
        )
        .unwrap();
        assert_eq!(b.results, Path::new("ci/stored"));
        let d = b.tolerances.get("drain_seconds").unwrap();
        assert_eq!(
            (d.relative, d.absolute),
            (0.2, 0.1),
            "absolute keeps its default"
        );
        assert_eq!(b.tolerances.get("verdict").unwrap().absolute, 0.25);
        assert_eq!(
            b.tolerances.get("ramp_rate"),
            Tolerances::default().get("ramp_rate")
        );
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        // (file, what the error must say)
        let table: &[(&str, &[&str])] = &[
            (
                "version: 1\nresults: r\ntolerances:\n  drain_secs: {relative: 0.2}\n",
                &[
                    "ci/baseline.yaml:4",
                    "tolerances.drain_secs",
                    "unknown metric \"drain_secs\"",
                    "allowed: verdict, drain_seconds, undrained_connections",
                ],
            ),
            (
                "version: 1\nresults: r\ntolerances:\n  ramp_rate: {relative: -1}\n",
                &[
                    "tolerances.ramp_rate.relative",
                    "-1 is not allowed",
                    "a number >= 0",
                ],
            ),
            (
                "version: 2\nresults: r\n",
                &["ci/baseline.yaml:1", "version: 2", "allowed: 1"],
            ),
            (
                "version: 1\nresults: r\ntolerances:\n  ramp_rate: {rel: 0.1}\n",
                &["unknown field `rel`", "relative", "absolute"],
            ),
            (
                "version: 1\nresult: r\n",
                &["unknown field `result`", "results"],
            ),
        ];
        for (text, want) in table {
            let err = format!("{:#}", parse_str(text).unwrap_err());
            for w in *want {
                assert!(err.contains(w), "{text:?}: {err}");
            }
        }
    }
}
