//! Observe: for a bounded window after the disconnect, a new SSH connection every
//! probe_interval and a command over the long-lived session, the heartbeat, the domain's
//! state, the server's established count draining; then the counters, and the verdict.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::task::JoinSet;

use super::disconnect::{unreachable_after, DisconnectOutcome};
use super::hold::HoldOutcome;
use super::prepare::Prepared;
use super::probes::Prober;
use super::ramp::RampOutcome;
use super::snapshot::{columns, snapshot, CounterColumns};
use super::CellContext;
use crate::experiment::provision::Ready;
use crate::host::counters;
use crate::lab::guest::Endpoint;
use crate::matrix::plan::Sizes;
use crate::model::phase::Phase;
use crate::model::verdict::{self, Observation, Thresholds};
use crate::progress::Event;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObserveOutcome {
    pub(crate) outcome: verdict::Outcome,
    pub(crate) session_dropped: bool,
    pub(crate) drain_seconds: Option<f64>,
    pub(crate) undrained: Option<u64>,
    pub(crate) peak_softirq: Option<f64>,
    pub(crate) peak_load1: Option<f64>,
    pub(crate) min_memavail_mib: Option<u64>,
    pub(crate) vcpu_peak: Option<f64>,
    pub(crate) conntrack_peak: Option<u64>,
    pub(crate) counters: CounterColumns,
}

/// The server's established count over the window (seconds since the disconnect), from its
/// own stream and, when that is silent, from the heartbeat's copy of it, in time order.
pub(crate) fn established_series(
    stream: impl IntoIterator<Item = (f64, u64)>,
    heartbeat: impl IntoIterator<Item = (f64, u64)>,
) -> Vec<(f64, u64)> {
    let mut v: Vec<(f64, u64)> = stream
        .into_iter()
        .chain(heartbeat)
        .filter(|(at, _)| *at >= 0.0)
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// What the window showed, besides the heartbeat and the streams.
struct Watched {
    /// New-connection probes that started inside the window.
    probes: Vec<verdict::Probe>,
    session_dropped_at: Option<f64>,
    crashed_at: Option<f64>,
}

pub(crate) async fn run(
    ctx: &CellContext<'_>,
    sizes: &Sizes,
    ready: &Ready,
    p: &mut Prepared,
    ramp: &RampOutcome,
    hold: &HoldOutcome,
    disc: &DisconnectOutcome,
) -> Result<ObserveOutcome> {
    let s = &ctx.plan.settings;
    let (t0, window) = (disc.t0, s.observe);
    ctx.mark(Phase::Observe);
    p.sampler.enter(Phase::Observe);
    let watched = watch(ctx, ready, p, hold, t0, window).await?;
    let hb = p.heartbeat.snapshot();
    let after = snapshot(ready, &unreachable_after(ctx.cell)).await;
    write_counters(ctx, p, disc, &after)?;
    let until = t0 + window;
    write_traffic(ctx, p, t0, until)?;
    let session_dropped = watched.session_dropped_at.is_some();
    let observation = Observation {
        target: sizes.target,
        peak_established: ramp.peak,
        domain_crashed_at: watched.crashed_at,
        heartbeat_arrivals: hb.arrivals_since(t0),
        window: window.as_secs_f64(),
        ssh_baseline: hold.ssh_baseline,
        probes: watched.probes,
        session_dropped_at: watched.session_dropped_at,
    };
    let outcome = verdict::decide(
        &observation,
        &Thresholds {
            hang_gap: s.hang_gap,
            ssh_slow_factor: s.ssh_slow_factor,
            ssh_slow_min: s.ssh_slow_min,
        },
    );
    let secs = |at: Instant| crate::host::heartbeat::signed_seconds(t0, at);
    let series = established_series(
        p.streams.server_est.iter().map(|(at, n)| (secs(*at), *n)),
        hb.est_series().into_iter().map(|(at, n)| (secs(at), n)),
    );
    // The same for every method: a destroyed client or a downed link sends nothing, so its
    // connections are expected never to drain, and undrained_connections says so.
    let final_established = p.streams.server_established().or_else(|| hb.last_est());
    Ok(ObserveOutcome {
        drain_seconds: verdict::drain_seconds(&series, disc.remaining),
        undrained: final_established.map(|n| n.saturating_sub(disc.remaining)),
        session_dropped,
        peak_softirq: hb.peak_softirq(t0, until),
        peak_load1: hb.peak_load1(t0, until),
        min_memavail_mib: hb.min_memavail_kb(t0, until).map(|kb| kb / 1024),
        vcpu_peak: p.sampler.vcpu_peak,
        conntrack_peak: p.sampler.conntrack_peak,
        counters: columns(&disc.before, &after, &disc.targets),
        outcome,
    })
}

/// The window itself: every 250 ms the streams, the probes (a new SSH connection every
/// probe_interval, a command over the long-lived session), the domain's state and a sample;
/// then the probes still in flight, each within its limit.
async fn watch(
    ctx: &CellContext<'_>,
    ready: &Ready,
    p: &mut Prepared,
    hold: &HoldOutcome,
    t0: Instant,
    window: Duration,
) -> Result<Watched> {
    let mut prober = Prober::new(
        Endpoint::of(ready.lab.server(), &ready.lab.key),
        hold.probe_limit,
        ctx.plan.settings.probe_interval,
        t0,
    );
    // At most one session probe in flight too.
    let mut session: JoinSet<Result<Duration>> = JoinSet::new();
    let mut session_dropped_at = None;
    let mut crashed_at = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while t0.elapsed() < window {
        tick.tick().await;
        let at = t0.elapsed().as_secs_f64();
        p.streams.pump();
        prober.poll();
        while let Some(Ok(r)) = session.try_join_next() {
            if let Err(e) = r {
                tracing::info!("{e:#}");
                session_dropped_at.get_or_insert(at);
            }
        }
        if crashed_at.is_none() && ready.lab.server().stopped()? {
            crashed_at = Some(at);
        }
        if session.is_empty() && session_dropped_at.is_none() {
            session.spawn(ready.guests[0].session_probe(hold.probe_limit));
        }
        let hb = p.heartbeat.snapshot();
        let mark = prober.take_mark();
        p.sampler.tick(&p.streams, &hb, mark)?;
        // Every tick: the reporter decides how often a human wants to see it.
        ctx.rep.event(&Event::Observe {
            at,
            window: window.as_secs_f64(),
            ssh_ok: prober.last().map(|p| p.ok),
            established: p.streams.server_established().or_else(|| hb.last_est()),
            hb_gap: hb.max_gap(t0, Instant::now()).map(|d| d.as_secs_f64()),
        });
    }
    // A probe still in flight at the end of the window reports within its limit.
    prober.finish().await;
    if let Ok(Some(Ok(Err(_)))) = tokio::time::timeout(hold.probe_limit, session.join_next()).await
    {
        session_dropped_at.get_or_insert(window.as_secs_f64());
    }
    session.abort_all();
    let mut probes = std::mem::take(&mut prober.probes);
    probes.retain(|p| p.at < window.as_secs_f64());
    Ok(Watched {
        probes,
        session_dropped_at,
        crashed_at,
    })
}

/// counters.csv: the counters over the ramp and over the observe window.
fn write_counters(
    ctx: &CellContext<'_>,
    p: &Prepared,
    disc: &DisconnectOutcome,
    after: &counters::Snapshot,
) -> Result<()> {
    counters::write_csv(
        &ctx.cell_dir.join("counters.csv"),
        &[
            counters::Window {
                name: "ramp",
                before: &p.at_ramp,
                after: &disc.before,
            },
            counters::Window {
                name: "observe",
                before: &disc.before,
                after,
            },
        ],
    )
}

/// traffic.txt, when an ssh-stream ran: the stream's own record (not a verdict input: the
/// probes and the session decide).
fn write_traffic(ctx: &CellContext<'_>, p: &Prepared, t0: Instant, until: Instant) -> Result<()> {
    let Some(stream) = &p.ssh_stream else {
        return Ok(());
    };
    let (bytes, silence) = stream.summary(t0, until);
    std::fs::write(
        ctx.cell_dir.join("traffic.txt"),
        format!("ssh-stream during observe: {bytes} bytes in all, longest silence {silence:.1}s\n"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_series_merges_in_time_order_within_the_window() {
        let s = established_series(
            vec![(-1.0, 3000), (0.5, 2900), (2.0, 2000)],
            vec![(1.0, 2500), (-0.2, 3000)],
        );
        assert_eq!(s, vec![(0.5, 2900), (1.0, 2500), (2.0, 2000)]);
        assert_eq!(verdict::drain_seconds(&s, 2000), Some(2.0));
    }
}
