//! The metrics whose spread over repetitions is compared: the report's statistics and
//! `nicstorm compare` take this one list, each metric with its column, unit, the direction
//! that is better, and how a row gives its value.

use crate::results::CellRow;
use crate::support::markup::sig;

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    Lower,
    Higher,
}

impl Better {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Seconds,
    Count,
    Percent,
    PerSecond,
}

impl Unit {
    /// A value with its unit, as the report and compare print it.
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Unit::Seconds => format!("{} s", sig(v)),
            // A median of two counts can end in .5.
            Unit::Count if v.fract() != 0.0 => format!("{v:.1}"),
            Unit::Count => format!("{v:.0}"),
            Unit::Percent => format!("{v:.1} %"),
            Unit::PerSecond => format!("{v:.0}/s"),
        }
    }
}

/// A metric of a row: its column, what it is, its unit, which way is better, its value.
pub(crate) struct Metric {
    pub(crate) column: &'static str,
    pub(crate) what: &'static str,
    pub(crate) unit: Unit,
    pub(crate) better: Better,
    pub(crate) get: fn(&CellRow) -> Option<f64>,
}

/// The metrics with statistics, in the order they are shown.
pub(crate) const METRICS: &[Metric] = &[
    Metric {
        column: "drain_seconds",
        what: "drain",
        unit: Unit::Seconds,
        better: Better::Lower,
        get: |r| r.drain_seconds,
    },
    Metric {
        column: "undrained_connections",
        what: "undrained connections",
        unit: Unit::Count,
        better: Better::Lower,
        get: |r| r.undrained_connections.map(|v| v as f64),
    },
    Metric {
        column: "ssh_max_seconds",
        what: "slowest SSH probe",
        unit: Unit::Seconds,
        better: Better::Lower,
        get: |r| r.ssh_max_seconds,
    },
    Metric {
        column: "recovery_seconds",
        what: "recovery",
        unit: Unit::Seconds,
        better: Better::Lower,
        get: |r| r.recovery_seconds,
    },
    // Time the guest spends in softirq at the peak: less is more headroom.
    Metric {
        column: "peak_softirq_pct",
        what: "peak softirq",
        unit: Unit::Percent,
        better: Better::Lower,
        get: |r| r.peak_softirq_pct,
    },
    Metric {
        column: "ramp_rate",
        what: "ramp rate",
        unit: Unit::PerSecond,
        better: Better::Higher,
        get: |r| r.ramp_rate,
    },
    // A client's own rate to its share: not stepped by the host's 250 ms polling.
    Metric {
        column: "client_ramp_rate",
        what: "client ramp rate",
        unit: Unit::PerSecond,
        better: Better::Higher,
        get: |r| r.client_ramp_rate,
    },
    Metric {
        column: "server_tap_tx_dropped",
        what: "server tap drops",
        unit: Unit::Count,
        better: Better::Lower,
        get: |r| r.server_tap_tx_dropped.map(|v| v as f64),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_directions() {
        assert_eq!(Unit::Seconds.format(6.678968811), "6.68 s");
        assert_eq!(Unit::Count.format(2.5), "2.5");
        assert_eq!(Unit::Count.format(3.0), "3");
        assert_eq!(Unit::Percent.format(12.34), "12.3 %");
        assert_eq!(Unit::PerSecond.format(4800.4), "4800/s");
        let ramp = METRICS.iter().find(|m| m.column == "ramp_rate").unwrap();
        assert_eq!(ramp.better, Better::Higher);
    }
}
