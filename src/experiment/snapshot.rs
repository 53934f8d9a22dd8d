//! Counter snapshots of a lab (every guest that can answer, the host's taps and conntrack
//! statistics, passt mode's namespace), and the five counter columns of the row (counters.rs
//! says why these five).

use std::path::Path;
use std::time::Duration;

use futures_util::future::join_all;

use crate::experiment::provision::Ready;
use crate::host::counters::{self, Snapshot};
use crate::lab::Role;

/// Counters of every guest that can answer (`gone` are not asked) and of the host: its taps
/// (none in user and passt modes), its conntrack statistics, in passt mode the lab
/// namespace's MIB (scope `netns`), in user mode the server QEMU's namespace's (scope
/// `hostns`). A guest that does not answer within 20 s is missing from the snapshot.
pub(crate) async fn snapshot(ready: &Ready, gone: &[Role]) -> Snapshot {
    let reads = join_all(ready.guests.iter().map(|g| async move {
        if gone.contains(&g.role) {
            return (g.role, None);
        }
        let read =
            tokio::time::timeout(Duration::from_secs(20), g.sh(counters::GUEST_SCRIPT)).await;
        let c = match read {
            Ok(Ok(text)) => Some(counters::parse(&text)).filter(|c| !c.is_empty()),
            Ok(Err(e)) => {
                tracing::info!("counters of {}: {e:#}", g.role);
                None
            }
            Err(_) => {
                tracing::info!("counters of {}: no answer within 20 s", g.role);
                None
            }
        };
        (g.role, c)
    }))
    .await;
    let mut snap = Snapshot::default();
    for (role, c) in reads {
        snap.insert(&role.to_string(), c);
    }
    let links: Vec<(String, String)> = Role::ALL
        .iter()
        .filter(|r| ready.lab.bridge(**r).is_some())
        .map(|r| (format!("host.{r}"), ready.lab.tap(*r)))
        .collect();
    for (label, c) in counters::host_links(&links, Path::new("/sys/class/net")) {
        snap.insert(&label, c);
    }
    snap.insert(
        "host",
        counters::host_conntrack_stats(Path::new("/proc/net/stat/nf_conntrack")),
    );
    // passt mode: the lab namespace's own TCP/IP MIB (every flow of the storm is a loopback
    // connection between two passts there), read through the server's passt.
    if let Some(p) = ready.lab.passt.first() {
        snap.insert(
            "netns",
            counters::netns_mib(Path::new(&format!("/proc/{}/net", p.pid))),
        );
    }
    // user mode: every flow of the storm is a loopback connection between two slirps in the
    // network namespace of the server's QEMU (the host's), whose MIB (scope `hostns`) counts
    // the server slirp's listen overflows; everything else done in that namespace counts
    // there too.
    if ready.lab.spec.mode == crate::matrix::plan::NetMode::User {
        if let Some(pid) = ready.lab.server().qemu_pid() {
            snap.insert(
                "hostns",
                counters::netns_mib(Path::new(&format!("/proc/{pid}/net"))),
            );
        }
    }
    snap
}

/// The counter columns of a row: growth over observe (missing when a term is missing).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CounterColumns {
    pub(crate) clients_tcp_abort_on_memory: Option<u64>,
    pub(crate) server_tap_tx_dropped: Option<u64>,
    pub(crate) server_device_lost: Option<u64>,
    pub(crate) server_eth0_rx_dropped: Option<u64>,
    pub(crate) host_conntrack_drops: Option<u64>,
}

pub(crate) fn columns(before: &Snapshot, after: &Snapshot, targets: &[Role]) -> CounterColumns {
    let clients: Vec<String> = targets.iter().map(|r| r.to_string()).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    CounterColumns {
        clients_tcp_abort_on_memory: counters::delta_sum(
            before,
            after,
            &clients,
            &["TcpExtTCPAbortOnMemory"],
        ),
        server_tap_tx_dropped: counters::delta(before, after, "host.server", "tap.tx_dropped"),
        // The host reads the tap just after the guest reads eth0, so the SSH frames of that
        // read land on one side only: a few frames of skew, which the clamp keeps from going
        // negative.
        server_device_lost: counters::delta(before, after, "host.server", "tap.tx_packets")
            .zip(counters::delta(before, after, "server", "eth0.rx_packets"))
            .map(|(sent, seen)| sent.saturating_sub(seen)),
        server_eth0_rx_dropped: counters::delta(before, after, "server", "eth0.rx_dropped"),
        host_conntrack_drops: counters::delta_sum(
            before,
            after,
            &["host"],
            &[
                "conntrack.drop",
                "conntrack.early_drop",
                "conntrack.insert_failed",
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, &[(&str, u64)])]) -> Snapshot {
        let mut s = Snapshot::default();
        for (scope, cs) in entries {
            s.insert(
                scope,
                Some(cs.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
            );
        }
        s
    }

    #[test]
    fn columns_are_deltas_and_missing_terms_stay_missing() {
        let before = snap(&[
            ("client1", &[("TcpExtTCPAbortOnMemory", 10)]),
            ("client2", &[("TcpExtTCPAbortOnMemory", 0)]),
            (
                "server",
                &[("eth0.rx_packets", 100), ("eth0.rx_dropped", 1)],
            ),
            (
                "host.server",
                &[("tap.tx_packets", 100), ("tap.tx_dropped", 5)],
            ),
            (
                "host",
                &[
                    ("conntrack.drop", 1),
                    ("conntrack.early_drop", 0),
                    ("conntrack.insert_failed", 0),
                ],
            ),
        ]);
        let after = snap(&[
            ("client1", &[("TcpExtTCPAbortOnMemory", 4010)]),
            ("client2", &[("TcpExtTCPAbortOnMemory", 7)]),
            (
                "server",
                &[("eth0.rx_packets", 1100), ("eth0.rx_dropped", 1)],
            ),
            (
                "host.server",
                &[("tap.tx_packets", 1150), ("tap.tx_dropped", 9)],
            ),
            (
                "host",
                &[
                    ("conntrack.drop", 3),
                    ("conntrack.early_drop", 1),
                    ("conntrack.insert_failed", 0),
                ],
            ),
        ]);
        let c = columns(&before, &after, &[Role::Client(1)]);
        assert_eq!(
            c,
            CounterColumns {
                clients_tcp_abort_on_memory: Some(4000),
                server_tap_tx_dropped: Some(4),
                server_device_lost: Some(50),
                server_eth0_rx_dropped: Some(0),
                host_conntrack_drops: Some(3),
            }
        );
        assert_eq!(
            columns(&before, &after, &[Role::Client(1), Role::Client(2)])
                .clients_tcp_abort_on_memory,
            Some(4007)
        );
        // A client that did not answer after: its sum is missing, not partial.
        let c = columns(&before, &after, &[Role::Client(1), Role::Client(3)]);
        assert_eq!(c.clients_tcp_abort_on_memory, None);
    }
}
