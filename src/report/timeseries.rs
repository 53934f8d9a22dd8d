//! A cell's timeseries.csv, read by column name so that both versions the runner has written
//! (and later ones with more columns) read the same way:
//!
//! - old: `t,server_established,hb_est,hb_max_gap,softirq_pct,load1,memavail_kb,vcpu_pct,
//!   conntrack,probe_at,probe_ok,probe_latency`, the observe window only (t >= 0);
//! - new: adds `phase` (ramp|hold|observe), `hb_age`, `busy_pct` and `tap_tx_dropped`, from the
//!   start of the ramp (t < 0 before the disconnect).
//!
//! t is seconds since the disconnect. Unknown columns are ignored; any field may be empty
//! (missing), and a missing value stays missing.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

/// Phase of a sample (new files only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Ramp,
    Hold,
    Observe,
}

impl Phase {
    fn parse(s: &str) -> Option<Phase> {
        match s {
            "ramp" => Some(Phase::Ramp),
            "hold" => Some(Phase::Hold),
            "observe" => Some(Phase::Observe),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Hold => "hold",
            Phase::Observe => "observe",
        }
    }
}

/// One SSH probe (a new connection), as the samples after it repeat it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbePoint {
    /// Seconds since the disconnect at which it started.
    pub(crate) at: f64,
    pub(crate) ok: bool,
    /// Seconds, when ok.
    pub(crate) latency: Option<f64>,
}

/// The samples of one repetition.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeSeries {
    /// Seconds since the disconnect, one per sample.
    pub(crate) t: Vec<f64>,
    /// Per sample; all None in files without a `phase` column.
    pub(crate) phase: Vec<Option<Phase>>,
    /// Numeric columns by name ("true"/"false" read as 1/0), one value per sample.
    columns: BTreeMap<String, Vec<Option<f64>>>,
}

impl TimeSeries {
    /// Reads `path`; None when the file does not exist.
    pub(crate) fn read(path: &Path) -> Result<Option<TimeSeries>> {
        match std::fs::read_to_string(path) {
            Ok(text) => TimeSeries::parse(&text)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Parses the text of a timeseries.csv. A line without a readable `t` is skipped (a torn
    /// last line of a cell that was killed).
    pub(crate) fn parse(text: &str) -> Result<TimeSeries> {
        // A torn last line is not a sample; a file of one unterminated line is its header.
        let text = match crate::support::lines::complete_lines(text) {
            ("", _) => text,
            (complete, _) => complete,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .context("no header line")?
            .iter()
            .map(str::to_owned)
            .collect();
        let t_col = header
            .iter()
            .position(|h| h == "t")
            .context("no column `t`")?;
        let phase_col = header.iter().position(|h| h == "phase");
        let mut ts = TimeSeries::default();
        let numeric: Vec<(usize, &String)> = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != t_col && Some(*i) != phase_col)
            .collect();
        for (_, name) in &numeric {
            ts.columns.insert((*name).clone(), vec![]);
        }
        for record in reader.records() {
            let Ok(record) = record else { continue };
            let Some(t) = record.get(t_col).and_then(number) else {
                continue;
            };
            ts.t.push(t);
            ts.phase
                .push(phase_col.and_then(|i| record.get(i)).and_then(Phase::parse));
            for (i, name) in &numeric {
                let v = record.get(*i).and_then(number);
                ts.columns.get_mut(*name).expect("inserted").push(v);
            }
        }
        Ok(ts)
    }

    /// Whether the file has `name` as a column (even if every value is missing). Only the unit
    /// tests ask (issue 11: kept for them, compiled only for them).
    #[cfg(test)]
    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.columns.contains_key(name)
    }

    /// (t, value) for every sample where `name` has a value.
    pub(crate) fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(col) = self.columns.get(name) else {
            return vec![];
        };
        self.t
            .iter()
            .zip(col)
            .filter_map(|(t, v)| v.map(|v| (*t, v)))
            .collect()
    }

    /// Whether the file records phases (new format).
    pub(crate) fn has_phases(&self) -> bool {
        self.phase.iter().any(Option::is_some)
    }

    /// The first sample time of each phase, in the order they occur.
    pub(crate) fn phase_starts(&self) -> Vec<(Phase, f64)> {
        let mut out: Vec<(Phase, f64)> = vec![];
        for (t, p) in self.t.iter().zip(&self.phase) {
            if let Some(p) = p {
                if out.last().is_none_or(|(last, _)| last != p) && !out.iter().any(|(q, _)| q == p)
                {
                    out.push((*p, *t));
                }
            }
        }
        out
    }

    /// The SSH probes, each once: every sample repeats the latest probe, told apart by its
    /// start time.
    pub(crate) fn probes(&self) -> Vec<ProbePoint> {
        let (Some(at), Some(ok)) = (self.columns.get("probe_at"), self.columns.get("probe_ok"))
        else {
            return vec![];
        };
        let latency = self.columns.get("probe_latency");
        let mut seen = BTreeMap::new();
        for i in 0..self.t.len() {
            let (Some(a), Some(o)) = (at[i], ok[i]) else {
                continue;
            };
            seen.entry((a * 1000.0).round() as i64)
                .or_insert(ProbePoint {
                    at: a,
                    ok: o != 0.0,
                    latency: latency.and_then(|l| l[i]),
                });
        }
        seen.into_values().collect()
    }

    /// The time range of the samples, or None when there are none.
    pub(crate) fn t_range(&self) -> Option<(f64, f64)> {
        let min = self.t.iter().copied().reduce(f64::min)?;
        let max = self.t.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }
}

fn number(s: &str) -> Option<f64> {
    match s.trim() {
        "" => None,
        "true" => Some(1.0),
        "false" => Some(0.0),
        s => s.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "t,server_established,hb_est,hb_max_gap,softirq_pct,load1,memavail_kb,vcpu_pct,conntrack,probe_at,probe_ok,probe_latency\n\
        0.47,2862,2862,0.25,9.1,1.51,803144,0,0,,,\n\
        1.60,2000,2000,0.25,4.2,1.63,802576,68,0,,,\n\
        2.60,2000,2000,0.30,0.0,1.63,802320,52,0,0.5,true,1.56\n\
        3.61,2000,2000,0.30,5.0,1.63,802320,66,0,0.5,true,1.56\n\
        4.60,,2000,0.30,5.0,1.63,802320,,0,3.6,false,\n\
        5.6";

    const NEW: &str = "t,phase,server_established,hb_est,hb_age,hb_max_gap,softirq_pct,busy_pct,load1,memavail_kb,vcpu_pct,conntrack,tap_tx_dropped,probe_at,probe_ok,probe_latency,later_column\n\
        -30.0,ramp,0,,0.1,,1.0,5.0,0.1,900000,10,0,0,,,,x\n\
        -25.0,ramp,1500,,0.2,,30.0,60.0,0.5,880000,90,1500,12,,,,x\n\
        -20.0,hold,3000,3000,0.1,,2.0,3.0,0.9,860000,20,3000,40,-19.0,true,1.2,x\n\
        0.0,observe,3000,3000,0.2,0.2,50.0,80.0,1.0,860000,99,3000,40,-19.0,true,1.2,x\n\
        1.0,observe,2000,2000,0.1,0.3,4.0,6.0,1.0,860000,30,2000,95,0.5,true,2.0,x\n";

    #[test]
    fn old_format_reads_by_name_and_keeps_missing_values() {
        let ts = TimeSeries::parse(OLD).unwrap();
        assert_eq!(
            ts.t,
            [0.47, 1.60, 2.60, 3.61, 4.60],
            "torn last line skipped"
        );
        assert!(!ts.has_phases());
        assert!(ts.phase_starts().is_empty());
        assert_eq!(
            ts.points("server_established"),
            [(0.47, 2862.0), (1.6, 2000.0), (2.6, 2000.0), (3.61, 2000.0)]
        );
        assert_eq!(
            ts.points("vcpu_pct").len(),
            4,
            "empty field is missing, not 0"
        );
        assert!(!ts.has_column("tap_tx_dropped"));
        assert!(ts.points("tap_tx_dropped").is_empty());
        assert_eq!(
            ts.probes(),
            [
                ProbePoint {
                    at: 0.5,
                    ok: true,
                    latency: Some(1.56)
                },
                ProbePoint {
                    at: 3.6,
                    ok: false,
                    latency: None
                }
            ]
        );
    }

    #[test]
    fn new_format_has_phases_and_more_columns() {
        let ts = TimeSeries::parse(NEW).unwrap();
        assert!(ts.has_phases());
        assert_eq!(
            ts.phase_starts(),
            [
                (Phase::Ramp, -30.0),
                (Phase::Hold, -20.0),
                (Phase::Observe, 0.0)
            ]
        );
        assert_eq!(ts.points("tap_tx_dropped").last(), Some(&(1.0, 95.0)));
        assert_eq!(ts.points("hb_age").len(), 5);
        assert_eq!(
            ts.points("later_column"),
            [],
            "text in an unknown column is no number"
        );
        assert_eq!(ts.probes().len(), 2);
        assert_eq!(ts.t_range(), Some((-30.0, 1.0)));
        assert!(TimeSeries::parse("").is_err());
        assert!(TimeSeries::parse("a,b\n1,2\n").is_err());
    }
}
