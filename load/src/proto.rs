//! storm-load's counters as protocol messages (version 1, see PROTOCOL.md). The messages, their
//! JSON-lines writer, `Role` and `PortRange` are the storm-proto crate (proto/, shared with the
//! runner, which reads them); this module fills them from the summed counters, so the exact
//! lines storm-load prints are unit-tested here.

pub use storm_proto::{ErrnoCounts, Progress, Reached, Role, Signal, Start, Summary, VERSION};

use crate::errno;
use crate::shm::Totals;

/// `errors`: the counts by errno name, in errno order, zero counts left out.
pub fn errors(counts: &[u64]) -> ErrnoCounts {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(e, n)| (errno::name(e).into_owned(), *n))
        .collect()
}

/// Client progress: `established` is held now, the rest cumulative except `in_flight`.
pub fn client_progress(t: f64, tot: &Totals, rate: f64, target: u64) -> Progress {
    Progress {
        in_flight: Some(tot.in_flight),
        attempted: Some(tot.attempted),
        target: Some(target),
        ..progress(Role::Client, t, tot, rate)
    }
}

/// Server progress: `established` is held now, `accepted` and `closed` cumulative.
pub fn server_progress(t: f64, tot: &Totals, rate: f64) -> Progress {
    Progress {
        accepted: Some(tot.connected),
        ..progress(Role::Server, t, tot, rate)
    }
}

/// The progress fields both roles have.
fn progress(role: Role, t: f64, tot: &Totals, rate: f64) -> Progress {
    Progress {
        role,
        t,
        established: tot.established(),
        failed: tot.failed(),
        errors: errors(&tot.errors),
        rate,
        in_flight: None,
        attempted: None,
        target: None,
        accepted: None,
        closed: Some(tot.closed),
        resets: Some(tot.resets),
        bulk_tx_bytes: Some(tot.tx_bytes),
        bulk_rx_bytes: Some(tot.rx_bytes),
    }
}

/// The summary fields both roles have (`peak` is the highest seen at a progress tick); the
/// CPU times are the supervisor's to add.
pub fn summary(role: Role, t: f64, elapsed: f64, tot: &Totals, peak: u64) -> Summary {
    Summary {
        role,
        t,
        elapsed,
        established: tot.established(),
        failed: tot.failed(),
        errors: errors(&tot.errors),
        peak_established: peak.max(tot.established()),
        accepted: None,
        closed: Some(tot.closed),
        attempted: None,
        resets: Some(tot.resets),
        target: None,
        ramp_elapsed: None,
        cpu_user: None,
        cpu_sys: None,
        bulk_tx_bytes: Some(tot.tx_bytes),
        bulk_rx_bytes: Some(tot.rx_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> Totals {
        let mut t = Totals {
            attempted: 1300,
            connected: 1236,
            closed: 36,
            in_flight: 64,
            ..Totals::default()
        };
        t.errors[libc::ECONNREFUSED as usize] = 36;
        t.errors[libc::EMFILE as usize] = 2;
        t
    }

    #[test]
    fn client_progress_line() {
        assert_eq!(
            client_progress(1732233600.3734, &totals(), 4800.04, 3000).to_line(),
            r#"{"v":1,"kind":"progress","role":"client","t":1732233600.373,"established":1200,"in_flight":64,"attempted":1300,"failed":38,"errors":{"EMFILE":2,"ECONNREFUSED":36},"rate":4800.0,"target":3000,"closed":36,"resets":0,"bulk_tx_bytes":0,"bulk_rx_bytes":0}"#
        );
    }

    #[test]
    fn server_progress_line() {
        let t = Totals {
            connected: 3600,
            closed: 100,
            resets: 40,
            rx_bytes: 65536,
            tx_bytes: 131072,
            ..Totals::default()
        };
        assert_eq!(
            server_progress(12.0, &t, 0.0).to_line(),
            r#"{"v":1,"kind":"progress","role":"server","t":12.000,"established":3500,"accepted":3600,"closed":100,"failed":0,"errors":{},"rate":0.0,"resets":40,"bulk_tx_bytes":131072,"bulk_rx_bytes":65536}"#
        );
    }

    #[test]
    fn summary_keeps_the_peak_or_what_is_held() {
        let s = summary(Role::Server, 1.0, 2.0, &totals(), 5000);
        assert_eq!((s.peak_established, s.established), (5000, 1200));
        assert_eq!(
            summary(Role::Server, 1.0, 2.0, &totals(), 7).peak_established,
            1200
        );
        assert_eq!(
            s.errors,
            ErrnoCounts(vec![("EMFILE".into(), 2), ("ECONNREFUSED".into(), 36)])
        );
    }
}
