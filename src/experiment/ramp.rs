//! Ramp: the three clients open target/3 connections each; live progress; stop at the target,
//! when progress stalls, at the ramp timeout, or when the server's domain stops.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::prepare::Prepared;
use super::CellContext;
use crate::experiment::provision::Ready;
use crate::experiment::storm;
use crate::matrix::plan::Sizes;
use crate::model::phase::Phase;
use crate::progress::{Event, RampStop, Step};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RampOutcome {
    /// Connections the server counted at the end of the ramp.
    pub(crate) peak: Option<u64>,
    pub(crate) secs: f64,
    /// A client's own account of its rate (storm::Streams::client_ramp_rate).
    pub(crate) client_rate: Option<f64>,
    pub(crate) connect_errors: u64,
    pub(crate) errors_by_errno: String,
    pub(crate) stop: Stop,
}

/// Why the ramp ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stop {
    Reached,
    Stalled(Duration),
    Timeout(Duration),
    /// The server's domain (named) stopped.
    ServerDown(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Reached => f.write_str("target reached"),
            Stop::Stalled(d) => write!(f, "no progress for {d:?}"),
            Stop::Timeout(d) => write!(f, "ramp timeout {d:?}"),
            Stop::ServerDown(domain) => write!(f, "domain {domain} stopped"),
        }
    }
}

impl Stop {
    /// The same, as a progress event says it.
    fn event(&self) -> RampStop {
        match self {
            Stop::Reached => RampStop::Reached,
            Stop::Stalled(d) => RampStop::Stalled(*d),
            Stop::Timeout(d) => RampStop::Timeout(*d),
            Stop::ServerDown(domain) => RampStop::ServerDown {
                domain: domain.clone(),
            },
        }
    }
}

/// Each client's share of the target: target/3, the remainder to the first ones.
pub(crate) fn shares(target: u64) -> [u64; 3] {
    [0, 1, 2].map(|i| target / 3 + u64::from(i < target % 3))
}

/// Whether the ramp is over: every client has attempted its share or the total is there;
/// else no progress for `stall`; else past `timeout`.
pub(crate) fn stop(
    total: u64,
    target: u64,
    all_reached: bool,
    since_progress: Duration,
    elapsed: Duration,
    stall: Duration,
    timeout: Duration,
) -> Option<Stop> {
    if all_reached || total >= target {
        Some(Stop::Reached)
    } else if since_progress >= stall {
        Some(Stop::Stalled(stall))
    } else if elapsed >= timeout {
        Some(Stop::Timeout(timeout))
    } else {
        None
    }
}

pub(crate) async fn run(
    ctx: &CellContext<'_>,
    sizes: &Sizes,
    ready: &mut Ready,
    p: &mut Prepared,
) -> Result<RampOutcome> {
    let s = &ctx.plan.settings;
    let target = sizes.target;
    let addr = ready.lab.target().clone();
    for (g, share) in ready.guests[1..].iter().zip(shares(target)) {
        let started = async {
            g.sh(&storm::client_command(
                s,
                sizes.rate,
                &addr,
                share,
                ctx.cell.disconnect,
                ctx.cell.traffic,
            ))
            .await
            .with_context(|| format!("starting storm-load client on {}", g.ep.name))?;
            p.streams.follow(g, &mut p.tasks).await
        }
        .await;
        if let Err(e) = started {
            // The clients already started may have taken this one's network down with theirs.
            if let Some(lost) = super::network_lost(ready, g.role, &e, s.hang_gap).await {
                return Err(lost.into());
            }
            return Err(e);
        }
    }
    ctx.enter(Step::Ramp {
        target,
        addr: addr.addr.to_string(),
        ports: addr.ports.first..=addr.ports.last,
    });
    p.sampler.enter(Phase::Ramp);
    let start = Instant::now();
    let (mut best, mut best_at) = (0u64, Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let why = loop {
        tick.tick().await;
        p.streams.pump();
        p.sampler.tick(&p.streams, &p.heartbeat.snapshot(), None)?;
        let clients = p.streams.client_established();
        let total: u64 = clients.iter().sum();
        ctx.rep.event(&Event::Ramp {
            clients,
            target,
            rate: p.streams.client_rate(),
        });
        if total > best {
            (best, best_at) = (total, Instant::now());
        }
        if let Some(why) = stop(
            total,
            target,
            p.streams.all_clients_reached(),
            best_at.elapsed(),
            start.elapsed(),
            s.ramp_stall,
            s.ramp_timeout,
        ) {
            break why;
        }
        if ready.lab.server().stopped()? {
            break Stop::ServerDown(ready.lab.server().name.clone());
        }
    };
    let secs = start.elapsed().as_secs_f64();
    // Let the server's stream catch up with the clients' last connects, and a ramp that
    // reached its target with the clients' own account of it (bounded).
    p.streams
        .settle(Duration::from_secs(5), why == Stop::Reached)
        .await;
    let peak = p.streams.server_established();
    ctx.rep.event(&Event::RampEnded {
        peak: peak.unwrap_or(0),
        target,
        secs,
        why: why.event(),
    });
    Ok(RampOutcome {
        peak,
        secs,
        client_rate: p.streams.client_ramp_rate(),
        connect_errors: p.streams.connect_errors(),
        errors_by_errno: p.streams.errors_by_errno(),
        stop: why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(3000), [1000, 1000, 1000]);
        assert_eq!(shares(30001), [10001, 10000, 10000]);
        assert_eq!(shares(2), [1, 1, 0]);
        for t in [0, 1, 7, 999_999, 1_000_000] {
            assert_eq!(shares(t).iter().sum::<u64>(), t);
        }
    }

    #[test]
    fn stop_rules_in_order() {
        let s = Duration::from_secs;
        let (stall, timeout) = (s(60), s(1800));
        let cases = [
            (3000, 3000, false, s(0), s(1), Some(Stop::Reached)),
            (2000, 3000, true, s(0), s(1), Some(Stop::Reached)),
            (2000, 3000, false, s(60), s(100), Some(Stop::Stalled(stall))),
            (
                2000,
                3000,
                false,
                s(5),
                s(1800),
                Some(Stop::Timeout(timeout)),
            ),
            (2000, 3000, false, s(59), s(1799), None),
            // A stall is reported before a timeout when both hold.
            (0, 3000, false, s(2000), s(2000), Some(Stop::Stalled(stall))),
        ];
        for (total, target, reached, since, elapsed, want) in cases {
            assert_eq!(
                stop(total, target, reached, since, elapsed, stall, timeout),
                want
            );
        }
        assert_eq!(Stop::Stalled(s(60)).to_string(), "no progress for 60s");
    }
}
