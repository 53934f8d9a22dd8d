//! Hold: the connections held while SSH latency is measured, for the baseline the verdict's
//! "slow" is relative to. Ends by checking that storm-load still runs in every guest: a load
//! generator that died is a harness failure of this phase, never a result about the NIC.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::future::join_all;

use super::prepare::Prepared;
use super::probes::Prober;
use super::CellContext;
use crate::experiment::provision::Ready;
use crate::experiment::storm;
use crate::lab::guest::Endpoint;
use crate::model::phase::Phase;
use crate::progress::Step;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HoldOutcome {
    /// Median new-connection SSH latency, seconds (None: no probe succeeded).
    pub(crate) ssh_baseline: Option<f64>,
    /// A probe during observe fails only when it takes longer than this.
    pub(crate) probe_limit: Duration,
}

/// Generous: a new SSH connection to an idle TCG guest already takes seconds.
const HOLD_PROBE_LIMIT: Duration = Duration::from_secs(30);

/// The median (upper, for an even count) of the successful latencies.
pub(crate) fn baseline(mut latencies: Vec<f64>) -> Option<f64> {
    latencies.sort_by(f64::total_cmp);
    latencies.get(latencies.len() / 2).copied()
}

/// A probe fails only when it takes far longer than the baseline could explain.
pub(crate) fn probe_limit(baseline: Option<f64>) -> Duration {
    Duration::from_secs_f64(baseline.map_or(30.0, |b| (4.0 * b).max(30.0)))
}

pub(crate) async fn run(
    ctx: &CellContext<'_>,
    ready: &Ready,
    p: &mut Prepared,
) -> Result<HoldOutcome> {
    let s = &ctx.plan.settings;
    ctx.enter(Step::Hold { baseline: s.hold });
    p.sampler.enter(Phase::Hold);
    if ctx.cell.traffic == crate::matrix::plan::Traffic::SshStream {
        p.ssh_stream = Some(
            super::traffic::SshStream::start(
                &Endpoint::of(ready.lab.server(), &ready.lab.key),
                &ctx.cell_dir.join("ssh-stream.log"),
                &mut p.tasks,
            )
            .await?,
        );
    }
    let start = Instant::now();
    let mut prober = Prober::new(
        Endpoint::of(ready.lab.server(), &ready.lab.key),
        HOLD_PROBE_LIMIT,
        s.probe_interval,
        start,
    );
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while start.elapsed() < s.hold {
        tick.tick().await;
        prober.poll();
        p.streams.pump();
        let mark = prober.take_mark();
        p.sampler.tick(&p.streams, &p.heartbeat.snapshot(), mark)?;
    }
    prober.finish().await;
    let ssh_baseline = baseline(prober.probes.iter().filter_map(|p| p.latency).collect());
    load_alive(ready, s.hang_gap).await?;
    Ok(HoldOutcome {
        ssh_baseline,
        probe_limit: probe_limit(ssh_baseline),
    })
}

/// Fails naming the guest whose storm-load is gone.
async fn load_alive(ready: &Ready, hang_gap: Duration) -> Result<()> {
    let script = format!(
        "pid=$(cat {b}.pid) && kill -0 $pid 2>/dev/null || {{ echo \"storm-load (pid $pid) is not running; its last output:\"; tail -n 3 {b}.out; exit 1; }}",
        b = storm::BASE
    );
    let checks = join_all(ready.guests.iter().map(|g| g.sh(&script))).await;
    for (g, r) in ready.guests.iter().zip(checks) {
        if let Err(e) = r {
            // A guest that cannot be asked may have lost its network: a result, not a fault.
            if let Some(lost) = super::network_lost(ready, g.role, &e, hang_gap).await {
                return Err(lost.into());
            }
            bail!("the load generator died in {} during hold: {e:#}", g.role);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_and_limit() {
        assert_eq!(baseline(vec![]), None);
        assert_eq!(baseline(vec![2.0, 1.0, 3.0]), Some(2.0));
        assert_eq!(baseline(vec![1.5, 1.6, 1.7, 9.0]), Some(1.7));
        assert_eq!(probe_limit(None), Duration::from_secs(30));
        assert_eq!(probe_limit(Some(1.5)), Duration::from_secs(30));
        assert_eq!(probe_limit(Some(10.0)), Duration::from_secs(40));
    }
}
