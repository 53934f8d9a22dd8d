//! The tolerance of each compared metric (how far two centres may be apart and still be
//! `same`), with its default; a baseline file may change them.

use std::collections::BTreeMap;

use super::classify::Tolerance;
use crate::results::metrics::{Unit, METRICS};

/// The name of the verdict "metric": the share of repetitions that did not end `ok`.
pub(crate) const VERDICT: &str = "verdict";

/// The default tolerance of a metric of `unit`: 10% of the base's median, and at least 0.1 s
/// for times and 1 point for percentages (below that TCG timings jitter anyway).
fn default_for(unit: Unit) -> Tolerance {
    let absolute = match unit {
        Unit::Seconds => 0.1,
        Unit::Percent => 1.0,
        Unit::Count | Unit::PerSecond => 0.0,
    };
    Tolerance {
        relative: 0.1,
        absolute,
    }
}

/// A tolerance per metric (`verdict` and the columns of `METRICS`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tolerances(BTreeMap<&'static str, Tolerance>);

impl Default for Tolerances {
    /// Defaults: the verdict share must be equal (tolerance 0); a metric see `default_for`.
    fn default() -> Self {
        let mut m = BTreeMap::new();
        m.insert(
            VERDICT,
            Tolerance {
                relative: 0.0,
                absolute: 0.0,
            },
        );
        for metric in METRICS {
            m.insert(metric.column, default_for(metric.unit));
        }
        Tolerances(m)
    }
}

impl Tolerances {
    /// The tolerance of `name`; None when it names no compared metric.
    pub(crate) fn get(&self, name: &str) -> Option<Tolerance> {
        self.0.get(name).copied()
    }

    /// Sets the tolerance of `name`, a metric `get` knows.
    pub(crate) fn set(&mut self, name: &str, t: Tolerance) {
        if let Some(slot) = self.0.get_mut(name) {
            *slot = t;
        }
    }
}
