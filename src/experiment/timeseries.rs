//! timeseries.csv of a cell: one line a second from the start of the ramp to the end of
//! observe, with the phase it was taken in. `t` is seconds relative to the disconnect
//! (negative during ramp and hold), or, when the cell failed before disconnecting, relative to
//! the moment it failed; lines before the disconnect are kept in memory until then (they are
//! few) and written once their `t` is known. Peaks of host-side figures for the row are taken
//! over observe only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::experiment::storm::Streams;
use crate::host::heartbeat::HeartbeatSeries;
use crate::host::metrics::{conntrack, VcpuSampler};
use crate::lab::{Lab, Role};
use crate::model::phase::Phase;

/// One line of timeseries.csv; the field names are its header (docs/ARCHITECTURE.md).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Line {
    pub(crate) t: String,
    pub(crate) phase: &'static str,
    pub(crate) server_established: Option<u64>,
    pub(crate) hb_est: Option<u64>,
    /// Seconds since the last heartbeat arrived.
    pub(crate) hb_age: Option<String>,
    /// Largest heartbeat gap since the phase began.
    pub(crate) hb_max_gap: Option<String>,
    pub(crate) softirq_pct: Option<String>,
    pub(crate) busy_pct: Option<String>,
    pub(crate) load1: Option<String>,
    pub(crate) memavail_kb: Option<u64>,
    pub(crate) vcpu_pct: Option<String>,
    pub(crate) conntrack: Option<u64>,
    /// The server tap's tx_dropped since the ramp began.
    pub(crate) tap_tx_dropped: Option<u64>,
    pub(crate) probe_at: Option<String>,
    pub(crate) probe_ok: Option<bool>,
    pub(crate) probe_latency: Option<String>,
}

/// A probe as the time series records it: when it was sent, whether it worked, how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeMark {
    pub(crate) sent: Instant,
    pub(crate) ok: bool,
    pub(crate) latency: Option<f64>,
}

pub(crate) struct Sampler {
    vcpu: Option<VcpuSampler>,
    tap_dropped: Option<PathBuf>,
    tap_base: Option<u64>,
    phase: Phase,
    phase_start: Instant,
    next: Instant,
    pub(crate) vcpu_peak: Option<f64>,
    pub(crate) conntrack_peak: Option<u64>,
    origin: Option<Instant>,
    /// Lines before the origin is known: when taken, the line, when its probe was sent.
    pending: Vec<(Instant, Line, Option<Instant>)>,
    out: csv::Writer<std::fs::File>,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn f(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

impl Sampler {
    pub(crate) fn new(lab: &Lab, path: &Path) -> Result<Sampler> {
        let tap_dropped = lab.bridge(Role::Server).map(|_| {
            PathBuf::from(format!(
                "/sys/class/net/{}/statistics/tx_dropped",
                lab.tap(Role::Server)
            ))
        });
        let tap_base = tap_dropped.as_deref().and_then(read_u64);
        let out =
            csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
        let now = Instant::now();
        Ok(Sampler {
            vcpu: lab
                .server()
                .qemu_pid()
                .and_then(|pid| VcpuSampler::new(pid).ok()),
            tap_dropped,
            tap_base,
            phase: Phase::Ramp,
            phase_start: now,
            next: now,
            vcpu_peak: None,
            conntrack_peak: None,
            origin: None,
            pending: vec![],
            out,
        })
    }

    /// From now on lines are tagged `phase`; heartbeat gaps restart.
    pub(crate) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_start = Instant::now();
        self.next = self.phase_start;
    }

    /// Takes a line when a second has passed since the last one.
    pub(crate) fn tick(
        &mut self,
        streams: &Streams,
        hb: &HeartbeatSeries,
        probe: Option<ProbeMark>,
    ) -> Result<()> {
        let now = Instant::now();
        if now < self.next {
            return Ok(());
        }
        self.next += Duration::from_secs(1);
        if self.next < now {
            self.next = now + Duration::from_secs(1);
        }
        let ct = conntrack().map(|(c, _)| c);
        let vcpu = self
            .vcpu
            .as_mut()
            .and_then(|v| v.sample().ok())
            .map(|v| v.max_pct);
        if self.phase == Phase::Observe {
            self.conntrack_peak = self.conntrack_peak.max(ct);
            self.vcpu_peak = match (self.vcpu_peak, vcpu) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let last = hb.iter().last();
        let line = Line {
            t: String::new(),
            phase: self.phase.as_str(),
            server_established: streams.server_established(),
            hb_est: last.and_then(|(_, h)| h.est),
            hb_age: last.map(|(at, _)| f(now.duration_since(*at).as_secs_f64(), 2)),
            hb_max_gap: hb
                .max_gap(self.phase_start, now)
                .map(|d| f(d.as_secs_f64(), 2)),
            softirq_pct: last.map(|(_, h)| f(h.softirq_pct, 1)),
            busy_pct: last.map(|(_, h)| f(h.busy_pct, 1)),
            load1: last.map(|(_, h)| f(h.load1, 2)),
            memavail_kb: last.map(|(_, h)| h.memavail_kb),
            vcpu_pct: vcpu.map(|v| f(v, 0)),
            conntrack: ct,
            tap_tx_dropped: self
                .tap_dropped
                .as_deref()
                .and_then(read_u64)
                .zip(self.tap_base)
                .map(|(now, base)| now.saturating_sub(base)),
            probe_at: None,
            probe_ok: probe.map(|p| p.ok),
            probe_latency: probe.and_then(|p| p.latency).map(|l| f(l, 2)),
        };
        match self.origin {
            Some(origin) => self.write(origin, now, line, probe.map(|p| p.sent)),
            None => {
                self.pending.push((now, line, probe.map(|p| p.sent)));
                Ok(())
            }
        }
    }

    fn write(
        &mut self,
        origin: Instant,
        at: Instant,
        mut line: Line,
        probe_sent: Option<Instant>,
    ) -> Result<()> {
        line.t = f(signed(origin, at), 2);
        if let Some(sent) = probe_sent {
            line.probe_at = Some(f(signed(origin, sent), 1));
        }
        self.out.serialize(&line)?;
        self.out.flush()?;
        Ok(())
    }

    /// The disconnect happened at `t0`: lines so far get their `t`, later ones are written
    /// as they come.
    pub(crate) fn set_origin(&mut self, t0: Instant) -> Result<()> {
        self.origin = Some(t0);
        self.flush_pending(t0)
    }

    fn flush_pending(&mut self, origin: Instant) -> Result<()> {
        for (at, line, sent) in std::mem::take(&mut self.pending) {
            self.write(origin, at, line, sent)?;
        }
        Ok(())
    }
}

impl Drop for Sampler {
    /// A cell that failed before the disconnect still leaves its lines, relative to now.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.flush_pending(Instant::now());
        }
    }
}

/// Seconds from `origin` to `at`, negative when `at` is earlier.
fn signed(origin: Instant, at: Instant) -> f64 {
    crate::host::heartbeat::signed_seconds(origin, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_the_documented_one() {
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(Line::default()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "t,phase,server_established,hb_est,hb_age,hb_max_gap,softirq_pct,busy_pct,load1,memavail_kb,vcpu_pct,conntrack,tap_tx_dropped,probe_at,probe_ok,probe_latency"
        );
        let t0 = Instant::now();
        assert!(signed(t0 + Duration::from_secs(2), t0) < -1.9);
    }
}
