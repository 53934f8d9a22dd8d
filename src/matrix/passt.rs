//! What a passt can hold, as the plan (a cell's connections) and the lab (preflight, each
//! passt's open-file limit) both need it. The same for both passt builds nicstorm runs
//! (passt/README.md): Debian 12's holds 2^17 - 1 TCP flows, Debian 13's 2^17 - 1 flows of any
//! kind (flow.h: `FLOW_MAX` is `MAX_FROM_BITS(FLOW_INDEX_BITS)`, 17 bits), and a storm's are
//! all TCP.

/// Bookworm's passt holds at most this many TCP flows per process: `TCP_MAX_CONNS`, defined
/// as `MAX_FROM_BITS(TCP_CONN_INDEX_BITS)` with 17 index bits (passt 2023_03_09.7c7625d,
/// tcp.h:11-12; `MAX_FROM_BITS(n)` is `(1U << n) - 1`, util.h:43). At the limit it takes no
/// new flow: a guest's SYN is dropped (tcp.c:2030, `tcp_conn_from_tap`), a forwarded
/// connection stays unaccepted in the listener's backlog (tcp.c:2774, `tcp_conn_from_sock`).
pub(crate) const MAX_FLOWS: u64 = (1 << 17) - 1;

/// SSH sessions, probes and the ssh-stream each open a flow in a VM's passt besides the storm;
/// the server's passt keeps this many free for them.
pub(crate) const SSH_FLOWS: u64 = 100;

/// The most connections a passt-mode cell can ask for: the server's passt holds every one of
/// them, and its SSH flows.
pub(crate) const MAX_CONNECTIONS: u64 = MAX_FLOWS - SSH_FLOWS;
