//! Disconnect: the method (FIN or RST from the process exit, the VM destroyed, its link set
//! down) on one client or all; the kill spread is from the first signal until the last target
//! is verifiably disconnected (process gone, VM destroyed, link down).

use std::time::Instant;

use anyhow::{Context, Result};
use futures_util::future::join_all;

use super::prepare::Prepared;
use super::snapshot::snapshot;
use super::{disconnected, CellContext};
use crate::experiment::provision::Ready;
use crate::experiment::storm;
use crate::host::counters::Snapshot;
use crate::lab::Role;
use crate::matrix::plan::{Cell, DisconnectMethod};
use crate::model::phase::Phase;
use crate::progress::{Event, Step, Warning};

#[derive(Clone, Debug)]
pub(crate) struct DisconnectOutcome {
    pub(crate) targets: Vec<Role>,
    /// The clients' connections that stay (those of clients not disconnected).
    pub(crate) remaining: u64,
    pub(crate) kill_spread: f64,
    /// When the first disconnect signal went out: observe's origin.
    pub(crate) t0: Instant,
    /// Counters just before it.
    pub(crate) before: Snapshot,
}

/// Guests that cannot answer SSH once disconnected: destroyed, or with their link down.
pub(crate) fn unreachable_after(cell: &Cell) -> Vec<Role> {
    match cell.disconnect {
        DisconnectMethod::Fin | DisconnectMethod::Rst => vec![],
        DisconnectMethod::Destroy | DisconnectMethod::LinkDown => disconnected(cell.scope),
    }
}

/// The established connections of the clients that are not disconnected.
pub(crate) fn remaining(client_established: &[u64], targets: &[Role]) -> u64 {
    client_established
        .iter()
        .enumerate()
        .filter(|(i, _)| !targets.contains(&Role::Client(*i as u8 + 1)))
        .map(|(_, n)| n)
        .sum()
}

pub(crate) async fn run(
    ctx: &CellContext<'_>,
    ready: &mut Ready,
    p: &mut Prepared,
) -> Result<DisconnectOutcome> {
    let cell = ctx.cell;
    let targets = disconnected(cell.scope);
    p.streams.pump();
    let remaining = remaining(&p.streams.client_established(), &targets);
    ctx.enter(Step::Disconnect {
        method: cell.disconnect.to_string(),
        clients: targets.iter().map(|r| r.to_string()).collect(),
    });
    let before = snapshot(ready, &[]).await;
    let t0 = Instant::now();
    p.sampler.set_origin(t0)?;
    match cell.disconnect {
        DisconnectMethod::Fin | DisconnectMethod::Rst => {
            // Sampled while the clients stop: at 1M under TCG that takes 40 s, and the drain
            // has begun. The rows say `observe`: its window counts from the signal (t0).
            p.sampler.enter(Phase::Observe);
            let stopped = {
                let stop = join_all(
                    targets
                        .iter()
                        .map(|r| storm::stop(&ready.guests[r.index()])),
                );
                tokio::pin!(stop);
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
                loop {
                    tokio::select! {
                        stopped = &mut stop => break stopped,
                        _ = tick.tick() => {
                            p.streams.pump();
                            p.sampler.tick(&p.streams, &p.heartbeat.snapshot(), None)?;
                        }
                    }
                }
            };
            for (role, r) in targets.iter().zip(stopped) {
                let Err(e) = r else { continue };
                if let Some(lost) =
                    super::network_lost(ready, *role, &e, ctx.plan.settings.hang_gap).await
                {
                    return Err(lost.into());
                }
                // Reachable over a new connection: the session broke under the client's own
                // storm (its master missed keepalives while the guest closed its sockets).
                // Ask again over a new session whether storm-load has stopped.
                ctx.rep.event(&Event::Warning(Warning::SessionBroke {
                    role: role.to_string(),
                    error: (&e).into(),
                }));
                let guest = &mut ready.guests[role.index()];
                guest.reconnect().await?;
                storm::stop(guest).await?;
            }
        }
        DisconnectMethod::Destroy => {
            for r in &targets {
                ready.lab.vm_mut(*r).destroy()?;
            }
        }
        DisconnectMethod::LinkDown => {
            for r in &targets {
                ready
                    .lab
                    .vm(*r)
                    .set_link(false)
                    .with_context(|| format!("setting {r}'s link down"))?;
            }
        }
    }
    Ok(DisconnectOutcome {
        targets,
        remaining,
        kill_spread: t0.elapsed().as_secs_f64(),
        t0,
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::plan::parse_plan;

    #[test]
    fn who_is_disconnected_and_what_remains() {
        let p = parse_plan(
            "axes: {nic: [e1000], mode: [bridge], disconnect: [fin, destroy], scope: [one, all], connections: [30]}\n",
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        let get = |d: &str, s: &str| {
            p.cells
                .iter()
                .find(|c| c.disconnect.to_string() == d && c.scope.to_string() == s)
                .unwrap()
        };
        assert!(unreachable_after(get("fin", "all")).is_empty());
        assert_eq!(
            unreachable_after(get("destroy", "one")),
            vec![Role::Client(1)]
        );
        assert_eq!(unreachable_after(get("destroy", "all")).len(), 3);
        assert_eq!(remaining(&[10, 11, 12], &[Role::Client(1)]), 23);
        assert_eq!(
            remaining(
                &[10, 11, 12],
                &disconnected(crate::matrix::plan::Scope::All)
            ),
            0
        );
    }
}
