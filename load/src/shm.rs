//! Counters shared between worker processes and the reporting parent: one slot
//! per worker in a MAP_SHARED anonymous mapping created before fork, after
//! the client's ramp queue, which every worker takes connections from, and
//! the count of bulk connections picked so far.

use crate::errno::MAX_ERRNO;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The client's ramp as a queue of connection indices `0..count` that the
/// workers claim a few at a time, so a worker on a busier CPU simply opens
/// fewer and the ramp ends when the machine, not the slowest worker, is done.
/// Aligned to a cache line so claiming does not disturb slot 0.
#[repr(C, align(64))]
pub struct Ramp {
    /// The lowest index no worker has claimed yet.
    pub next: AtomicU64,
    /// CLOCK_MONOTONIC ns when the parent started: time 0 of the rate limit.
    pub start_ns: AtomicU64,
    /// Both roles: connections picked for bulk writes (`--bulk-in`,
    /// `--bulk-out`) so far, over all workers.
    pub bulk: AtomicU64,
}

impl Ramp {
    /// Claims up to `want` indices below `limit` (the count, or what the rate
    /// allows by now); the range is empty when there are none. Never claims
    /// past `limit`, so an index is never skipped, and never twice.
    pub fn claim(&self, want: u64, limit: u64) -> Range<u64> {
        claim(&self.next, want, limit)
    }

    /// Picks one more bulk connection if fewer than `limit` were picked.
    pub fn take_bulk(&self, limit: u64) -> bool {
        !claim(&self.bulk, 1, limit).is_empty()
    }
}

/// Takes up to `want` unique numbers below `limit` from a shared counter.
fn claim(counter: &AtomicU64, want: u64, limit: u64) -> Range<u64> {
    let mut cur = counter.load(Relaxed);
    loop {
        if cur >= limit || want == 0 {
            return cur..cur;
        }
        let end = limit.min(cur.saturating_add(want));
        // Relaxed: the counter only hands out unique numbers; it
        // publishes nothing else.
        match counter.compare_exchange_weak(cur, end, Relaxed, Relaxed) {
            Ok(_) => return cur..end,
            Err(now) => cur = now,
        }
    }
}

/// One worker's counters. Each slot has a single writer (its worker), so
/// relaxed atomics suffice: the parent only needs eventually-fresh values.
#[repr(C)]
pub struct Slot {
    /// client: connects started (socket() calls, failed ones included)
    pub attempted: AtomicU64,
    /// client: connects that succeeded; server: connections accepted
    pub connected: AtomicU64,
    /// connections closed (client: by the peer); cumulative
    pub closed: AtomicU64,
    /// of `closed`, those ended by a RST (read gave ECONNRESET)
    pub resets: AtomicU64,
    /// client: connects pending
    pub in_flight: AtomicU64,
    /// client: CLOCK_MONOTONIC ns when this worker finished its ramp; 0 = not yet
    pub ramp_done_ns: AtomicU64,
    /// bytes read (and discarded) from any connection
    pub rx_bytes: AtomicU64,
    /// bytes written on bulk connections
    pub tx_bytes: AtomicU64,
    /// failures by errno (connect, accept, or a connection's read)
    pub errors: [AtomicU64; MAX_ERRNO + 1],
}

impl Slot {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
    pub fn sub(c: &AtomicU64, n: u64) {
        c.fetch_sub(n, Relaxed);
    }
    pub fn error(&self, errno: i32) {
        let i = (errno.max(0) as usize).min(MAX_ERRNO);
        self.errors[i].fetch_add(1, Relaxed);
    }

    /// Counts a connection the peer ended: an orderly close (`None`), a reset, or another
    /// error by errno. Shared by both roles so they count teardown the same way.
    pub fn peer_closed(&self, err: Option<i32>) {
        Slot::add(&self.closed, 1);
        match err {
            None => {}
            Some(libc::ECONNRESET) => Slot::add(&self.resets, 1),
            Some(e) => self.error(e),
        }
    }
}

/// Sum over all slots at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub attempted: u64,
    pub connected: u64,
    pub closed: u64,
    pub resets: u64,
    pub in_flight: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub errors: [u64; MAX_ERRNO + 1],
    /// Latest ramp end over workers, if every worker has finished its ramp.
    pub ramp_done_ns: Option<u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            attempted: 0,
            connected: 0,
            closed: 0,
            resets: 0,
            in_flight: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            errors: [0; MAX_ERRNO + 1],
            ramp_done_ns: None,
        }
    }
}

impl Totals {
    pub fn established(&self) -> u64 {
        self.connected.saturating_sub(self.closed)
    }
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// The mapping: the `Ramp`, then one `Slot` per worker. Unmapped on drop
/// (each forked worker has its own mapping of the same pages, so dropping in
/// one process does not affect the others).
pub struct Shared {
    ptr: *mut Ramp,
    n: usize,
}

impl Shared {
    fn len(n: usize) -> usize {
        std::mem::size_of::<Ramp>() + n * std::mem::size_of::<Slot>()
    }

    pub fn new(n: usize) -> io::Result<Shared> {
        let len = Shared::len(n);
        // SAFETY: a fresh anonymous mapping; MAP_ANONYMOUS pages are zeroed,
        // which is a valid all-zero state for AtomicU64 arrays.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Shared { ptr: p.cast(), n })
    }

    pub fn ramp(&self) -> &Ramp {
        // SAFETY: the mapping starts with a Ramp and lives as long as self.
        unsafe { &*self.ptr }
    }

    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.n);
        // SAFETY: the slots follow the Ramp (whose size keeps them 8-aligned),
        // i is in bounds, and the mapping lives as long as self.
        unsafe { &*self.ptr.add(1).cast::<Slot>().add(i) }
    }

    pub fn sum(&self) -> Totals {
        let mut t = Totals::default();
        let mut done = Some(0u64);
        for i in 0..self.n {
            let s = self.slot(i);
            t.attempted += s.attempted.load(Relaxed);
            t.connected += s.connected.load(Relaxed);
            t.closed += s.closed.load(Relaxed);
            t.resets += s.resets.load(Relaxed);
            t.in_flight += s.in_flight.load(Relaxed);
            t.rx_bytes += s.rx_bytes.load(Relaxed);
            t.tx_bytes += s.tx_bytes.load(Relaxed);
            for (e, c) in t.errors.iter_mut().zip(s.errors.iter()) {
                *e += c.load(Relaxed);
            }
            let d = s.ramp_done_ns.load(Relaxed);
            done = match (done, d) {
                (Some(m), d) if d > 0 => Some(m.max(d)),
                _ => None,
            };
        }
        t.ramp_done_ns = done;
        t
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned.
        unsafe {
            libc::munmap(self.ptr.cast(), Shared::len(self.n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_stop_at_the_limit() {
        let sh = Shared::new(1).unwrap();
        let r = sh.ramp();
        let table = [
            // (want, limit, claimed)
            (32, 100, 0..32),
            (32, 40, 32..40),
            // The rate allows no more yet: nothing, and nothing skipped.
            (32, 40, 40..40),
            (0, 100, 40..40),
            (32, 100, 40..72),
            (u64::MAX, 100, 72..100),
            (32, 100, 100..100),
        ];
        for (want, limit, claimed) in table {
            assert_eq!(r.claim(want, limit), claimed, "{want} {limit}");
        }
    }

    #[test]
    fn bulk_picks_stop_at_the_limit_and_leave_the_ramp_alone() {
        let sh = Shared::new(1).unwrap();
        let r = sh.ramp();
        assert!(!r.take_bulk(0), "no bulk connections unless asked");
        assert!(r.take_bulk(2));
        assert!(r.take_bulk(2));
        assert!(!r.take_bulk(2));
        assert!(!r.take_bulk(2));
        assert_eq!(r.bulk.load(Relaxed), 2, "a refusal does not count");
        assert_eq!(r.claim(5, 100), 0..5);
    }

    #[test]
    fn concurrent_claims_hand_out_every_index_once() {
        let sh = Shared::new(1).unwrap();
        let ramp = sh.ramp();
        let got: Vec<Vec<Range<u64>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (1..=4u64)
                .map(|want| {
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        loop {
                            let r = ramp.claim(want * 7, 100_000);
                            if r.is_empty() {
                                return mine;
                            }
                            mine.push(r);
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = got.into_iter().flatten().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100_000).collect::<Vec<u64>>());
    }

    #[test]
    fn sums_slots_and_ramp_end_needs_every_worker() {
        let sh = Shared::new(3).unwrap();
        Slot::add(&sh.slot(0).connected, 5);
        Slot::add(&sh.slot(2).connected, 7);
        Slot::add(&sh.slot(2).closed, 2);
        sh.slot(1).error(libc::ECONNREFUSED);
        sh.slot(1).error(100_000);
        sh.slot(0).ramp_done_ns.store(10, Relaxed);
        sh.slot(1).ramp_done_ns.store(30, Relaxed);
        let t = sh.sum();
        assert_eq!(
            (t.connected, t.closed, t.established(), t.failed()),
            (12, 2, 10, 2)
        );
        assert_eq!(t.errors[MAX_ERRNO], 1);
        assert_eq!(t.ramp_done_ns, None);
        sh.slot(2).ramp_done_ns.store(20, Relaxed);
        assert_eq!(sh.sum().ramp_done_ns, Some(30));
    }
}
