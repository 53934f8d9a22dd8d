//! New-connection SSH probes, one in flight at a time (piling handshakes onto a struggling
//! guest would be part of the storm, not a measurement of it), on the cell's clock.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::timeseries::ProbeMark;
use crate::lab::guest::{probe_new_connection, Endpoint};
use crate::model::verdict::Probe;

pub(crate) struct Prober {
    ep: Endpoint,
    /// A probe slower than this fails.
    pub(crate) limit: Duration,
    interval: Duration,
    /// Probe times are seconds since this instant.
    origin: Instant,
    inflight: JoinSet<Probe>,
    last_sent: Option<f64>,
    pub(crate) probes: Vec<Probe>,
    /// Probes already handed to the time series.
    marked: usize,
}

impl Prober {
    pub(crate) fn new(
        ep: Endpoint,
        limit: Duration,
        interval: Duration,
        origin: Instant,
    ) -> Prober {
        Prober {
            ep,
            limit,
            interval,
            origin,
            inflight: JoinSet::new(),
            last_sent: None,
            probes: vec![],
            marked: 0,
        }
    }

    /// Collects a finished probe and sends the next one when none is in flight and the
    /// interval has passed since the last one was sent.
    pub(crate) fn poll(&mut self) {
        while let Some(Ok(p)) = self.inflight.try_join_next() {
            self.probes.push(p);
        }
        let now = self.origin.elapsed().as_secs_f64();
        if self.inflight.is_empty()
            && self
                .last_sent
                .is_none_or(|t| now - t >= self.interval.as_secs_f64())
        {
            self.last_sent = Some(now);
            let (ep, limit, origin) = (self.ep.clone(), self.limit, self.origin);
            self.inflight.spawn(async move {
                let at = origin.elapsed().as_secs_f64();
                let r = probe_new_connection(&ep, limit).await;
                Probe {
                    at,
                    ok: r.ok,
                    latency: r.ok.then_some(r.latency.as_secs_f64()),
                }
            });
        }
    }

    /// Waits for the probe in flight (it reports within its limit) and stops sending.
    pub(crate) async fn finish(&mut self) {
        if let Ok(Some(Ok(p))) = tokio::time::timeout(
            self.limit + Duration::from_secs(1),
            self.inflight.join_next(),
        )
        .await
        {
            self.probes.push(p);
        }
        self.inflight.abort_all();
    }

    pub(crate) fn last(&self) -> Option<&Probe> {
        self.probes.last()
    }

    /// The latest probe for the time series, once: None until another one finishes.
    pub(crate) fn take_mark(&mut self) -> Option<ProbeMark> {
        if self.probes.len() == self.marked {
            return None;
        }
        self.marked = self.probes.len();
        let p = self.probes.last()?;
        Some(ProbeMark {
            sent: self.origin + Duration::from_secs_f64(p.at),
            ok: p.ok,
            latency: p.latency,
        })
    }
}
