//! Prepare: the system under test set as the matrix asks (host and guest sysctls), the
//! storm-load server up on its ports, and everything that follows the cell from now on: the
//! streams, the heartbeat, the time series, the counters at the start of the ramp.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use futures_util::future::join_all;
use tokio::task::JoinSet;

use super::snapshot::snapshot;
use super::timeseries::Sampler;
use super::CellContext;
use crate::experiment::provision::Ready;
use crate::experiment::storm::{self, Streams};
use crate::host::counters::Snapshot;
use crate::host::heartbeat;
use crate::host::metrics::conntrack;
use crate::lab::guest::Guest;
use crate::matrix::plan::Sizes;
use crate::progress::Step;

/// What the measuring phases share.
pub(crate) struct Prepared {
    /// The cell's tasks (stream tails, probes): dropped with the cell, which aborts them.
    pub(crate) tasks: JoinSet<()>,
    pub(crate) streams: Streams,
    pub(crate) heartbeat: heartbeat::Watcher,
    pub(crate) sampler: Sampler,
    /// Counters before the clients started.
    pub(crate) at_ramp: Snapshot,
    pub(crate) host_conntrack_max: Option<u64>,
    /// traffic ssh-stream: started with hold, ended with the cell.
    pub(crate) ssh_stream: Option<super::traffic::SshStream>,
}

pub(crate) async fn run(
    ctx: &CellContext<'_>,
    sizes: &Sizes,
    ready: &mut Ready,
) -> Result<Prepared> {
    let s = &ctx.plan.settings;
    ctx.enter(Step::Prepare {
        ports: s.ports.first..=s.ports.last,
    });
    for (k, v) in &s.host_sysctls {
        ready.lab.set_host_sysctl(k, v)?;
    }
    set_guest_sysctls(&ready.guests, &s.guest_sysctls).await?;
    let host_conntrack_max = conntrack().map(|(_, max)| max);
    storm::start_server(
        &ready.guests[0],
        &storm::server_args(s, sizes.target, ctx.cell.traffic),
        storm::BASE,
    )
    .await
    .context("starting storm-load server")?;
    let mut tasks = JoinSet::new();
    let mut streams = Streams::new(&ctx.cell_dir.join("storm-load.jsonl"))?;
    streams.follow(&ready.guests[0], &mut tasks).await?;
    let heartbeat = heartbeat::Watcher::start(&ready.lab.server().heartbeat_log);
    let sampler = Sampler::new(&ready.lab, &ctx.cell_dir.join("timeseries.csv"))?;
    let at_ramp = snapshot(ready, &[]).await;
    Ok(Prepared {
        tasks,
        streams,
        heartbeat,
        sampler,
        at_ramp,
        host_conntrack_max,
        ssh_stream: None,
    })
}

/// `frames: mtu` where a non-virtio model's tap has a vnet header (`preflight::verify_frames`):
/// TSO and GSO off on the guests of `names`, read back with `ethtool -k`, so their stacks send
/// MTU-sized frames and the device model has no super-frame to pass on.
pub(crate) async fn segmentation_off(ready: &Ready, names: &[String]) -> Result<()> {
    let script = "ethtool -K eth0 tso off gso off 2>&1; ethtool -k eth0";
    let guests: Vec<&Guest> = ready
        .guests
        .iter()
        .filter(|g| names.contains(&g.ep.name))
        .collect();
    let results = join_all(guests.iter().map(|g| g.sh(script))).await;
    for (g, r) in guests.iter().zip(results) {
        let out = r.with_context(|| format!("turning segmentation offloads off on {}", g.role))?;
        for feature in ["tcp-segmentation-offload", "generic-segmentation-offload"] {
            let state = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{feature}: ")))
                .map(str::trim);
            if state.is_none_or(|v| !v.starts_with("off")) {
                bail!(
                    "frames mtu: {feature} on {}'s eth0 is {} after `ethtool -K eth0 tso off gso off`, not off",
                    g.role,
                    state.unwrap_or("not reported")
                );
            }
        }
    }
    Ok(())
}

/// Sets `settings.guest_sysctls` in every guest and reads each back: a value the kernel
/// refused or changed fails the cell, since it would measure something else than asked.
async fn set_guest_sysctls(guests: &[Guest], sysctls: &BTreeMap<String, String>) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    // Names are checked by the plan ([A-Za-z0-9._-]); values are single-quoted.
    let quote = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    let script: String = std::iter::once("set -e\n".to_owned())
        .chain(sysctls.iter().map(|(k, v)| {
            format!(
                "sysctl -q -w {}={} && echo \"{k} $(sysctl -n {k})\"\n",
                k,
                quote(v)
            )
        }))
        .collect();
    let results = join_all(guests.iter().map(|g| g.sh(&script))).await;
    for (g, r) in guests.iter().zip(results) {
        let out = r.with_context(|| format!("settings.guest_sysctls on {}", g.role))?;
        for (k, v) in sysctls {
            let got = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .map(crate::host::metrics::normalize);
            let want = crate::host::metrics::normalize(v);
            if got.as_deref() != Some(want.as_str()) {
                bail!(
                    "settings.guest_sysctls: {k} = {v:?} on {} reads back as {}",
                    g.role,
                    got.map_or("nothing".into(), |g| format!("{g:?}"))
                );
            }
        }
    }
    Ok(())
}
