//! storm-load's output protocol, version 1, in one place for both of its sides: storm-load
//! (load/) writes these messages, the nicstorm runner reads them. The contract is
//! docs/ARCHITECTURE.md ("storm-load protocol"); load/PROTOCOL.md is the field-by-field
//! reference.
//!
//! Plain types with a hand-written writer (`to_line`, in storm-load's style: fixed key order,
//! fixed decimals), so storm-load builds with nothing beyond std. The runner turns on the
//! `serde` feature for `Deserialize`.
//!
//! A field that only one role has is an `Option`: storm-load sets it for that role, and a
//! reader must not require it. Readers also ignore keys they do not know (the contract lets
//! storm-load add fields without a version bump), so no type here denies unknown fields.

#[cfg(feature = "serde")]
mod de;
mod ports;
mod write;

use std::fmt;

pub use ports::{PortRange, PortRangeError};

/// The protocol version, every line's `v`. It changes on incompatible changes only.
pub const VERSION: u32 = 1;

/// Which side of the storm a storm-load is: every line's `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cumulative counts by errno name (`errors`), in the order storm-load writes them (its errno
/// table's order; it leaves zero counts out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrnoCounts(pub Vec<(String, u64)>);

impl ErrnoCounts {
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(name, n)| (name.as_str(), *n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, u64)> for ErrnoCounts {
    fn from_iter<I: IntoIterator<Item = (String, u64)>>(iter: I) -> Self {
        ErrnoCounts(iter.into_iter().collect())
    }
}

/// `start`: once, when every worker is forked (the server already listens).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Start {
    pub role: Role,
    /// Wall-clock UNIX seconds in the guest.
    pub t: f64,
    /// The parent, the process to signal.
    pub pid: u32,
    pub procs: u32,
    pub nofile_limit: u64,
    /// Server: the listening ports.
    pub ports: Option<PortRange>,
    /// Server: `--bulk-out`.
    pub bulk_out: Option<u64>,
    /// Client: `ADDR:FIRST-LAST`.
    pub target: Option<String>,
    /// Client: `--count`.
    pub count: Option<u64>,
    /// Client: connects in flight at most, over all workers.
    pub concurrency: Option<u64>,
    /// Client: connects started per second at most, 0 = unlimited.
    pub rate_limit: Option<u64>,
    /// Client: how held connections are closed on exit, `fin` or `rst`.
    pub on_exit: Option<String>,
    /// Client: `--bulk-in`.
    pub bulk_in: Option<u64>,
}

impl Start {
    /// The fields both roles have; the role's own are left to set.
    pub fn new(role: Role, t: f64, pid: u32, procs: u32, nofile_limit: u64) -> Start {
        Start {
            role,
            t,
            pid,
            procs,
            nofile_limit,
            ports: None,
            bulk_out: None,
            target: None,
            count: None,
            concurrency: None,
            rate_limit: None,
            on_exit: None,
            bulk_in: None,
        }
    }
}

/// `progress`: every `--interval` ms. Counters are cumulative except `established` and
/// `in_flight`; `to_line` writes the fields of `role` only, in storm-load's order for it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Progress {
    pub role: Role,
    pub t: f64,
    /// Connections held now.
    pub established: u64,
    /// Failures, the sum of `errors`.
    pub failed: u64,
    pub errors: ErrnoCounts,
    /// Successful connections per second since the previous progress line.
    pub rate: f64,
    /// Client: connects pending.
    pub in_flight: Option<u64>,
    /// Client: connects started.
    pub attempted: Option<u64>,
    /// Client: connections it was asked to hold (`--count`).
    pub target: Option<u64>,
    /// Server: accepts.
    pub accepted: Option<u64>,
    /// Closes (client: by the server's FIN or RST; server: after the peer's).
    pub closed: Option<u64>,
    /// Of `closed`, those ended by a RST.
    pub resets: Option<u64>,
    pub bulk_tx_bytes: Option<u64>,
    pub bulk_rx_bytes: Option<u64>,
}

/// `reached`: the client's ramp ended (every connect attempted, none in flight), not that all
/// succeeded: compare `established` with `target`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Reached {
    pub role: Role,
    pub t: f64,
    pub established: u64,
    /// Seconds from start to the end of the ramp.
    pub elapsed: f64,
    pub attempted: Option<u64>,
    pub failed: Option<u64>,
    pub target: Option<u64>,
}

/// `signal`: SIGINT or SIGTERM reached the parent.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Signal {
    pub role: Role,
    pub t: f64,
    /// Its name, e.g. "SIGINT".
    pub signal: String,
    /// Held when it arrived.
    pub established: u64,
    /// Client: how held connections are closed on exit, `fin` or `rst`.
    pub on_exit: Option<String>,
}

impl Signal {
    /// The fields both roles have.
    pub fn new(role: Role, t: f64, signal: &str, established: u64) -> Signal {
        Signal {
            role,
            t,
            signal: signal.to_owned(),
            established,
            on_exit: None,
        }
    }
}

/// `summary`: once, after every worker has exited; final counts. `to_line` writes the fields
/// of `role` only, in storm-load's order for it.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Summary {
    pub role: Role,
    pub t: f64,
    /// Seconds since start.
    pub elapsed: f64,
    pub established: u64,
    pub failed: u64,
    pub errors: ErrnoCounts,
    /// The most held at a progress tick (or at the end).
    pub peak_established: u64,
    /// Server.
    pub accepted: Option<u64>,
    pub closed: Option<u64>,
    /// Client.
    pub attempted: Option<u64>,
    pub resets: Option<u64>,
    /// Client.
    pub target: Option<u64>,
    /// Client: `reached`'s `elapsed`; `null` (None) if the ramp never ended.
    pub ramp_elapsed: Option<f64>,
    /// CPU seconds of the parent and every worker.
    pub cpu_user: Option<f64>,
    pub cpu_sys: Option<f64>,
    pub bulk_tx_bytes: Option<u64>,
    pub bulk_rx_bytes: Option<u64>,
}
