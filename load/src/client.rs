//! The client role: non-blocking connects with bounded concurrency and rate,
//! spread over the target ports (and source addresses), then holding them
//! (the first `--bulk-in` writing to the server all along) until a stop
//! signal; exit then closes them with FINs or RSTs.

use crate::args::{ClientArgs, OnExit};
use crate::capacity::{check_fds, default_procs, min_procs};
use crate::error::Error;
use crate::proto::{self, Progress, Reached, Role, Signal, Start, Summary};
use crate::shm::{Ramp, Shared, Slot, Totals};
use crate::supervisor::{self, Report};
use crate::sys::{self, Epoll};
use crate::traffic::{Io, Picker, Token};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;

const SIG_TOKEN: u64 = u64::MAX;
/// Fds a worker needs besides connections: epoll, signalfd, stdio, slack.
const BASE_FDS: u64 = 16;
/// Connections a worker claims from the shared ramp at a time: small enough
/// that the workers finish within a few connects of each other, large
/// enough that the shared counter's cache line rarely moves between CPUs.
const CLAIM: u64 = 32;

/// Per-fd state in the client's table (one byte per fd).
const FREE: u8 = 0;
const CONNECTING: u8 = 1;
const UP: u8 = 2;

struct ClientReport {
    target: String,
    count: u64,
    on_exit: OnExit,
    concurrency: u64,
    rate: u64,
    bulk_in: u64,
    peak: u64,
    reached_elapsed: Option<f64>,
}

impl Report for ClientReport {
    fn role(&self) -> Role {
        Role::Client
    }
    fn start(&self, common: Start) -> Start {
        Start {
            target: Some(self.target.clone()),
            count: Some(self.count),
            concurrency: Some(self.concurrency),
            rate_limit: Some(self.rate),
            on_exit: Some(self.on_exit.as_str().to_owned()),
            bulk_in: Some(self.bulk_in),
            ..common
        }
    }
    fn progress(&mut self, t: f64, tot: &Totals, rate: f64) -> Progress {
        self.peak = self.peak.max(tot.established());
        proto::client_progress(t, tot, rate, self.count)
    }
    fn rate_counter(&self, tot: &Totals) -> u64 {
        tot.connected
    }
    fn milestone(&mut self, t: f64, tot: &Totals, start_ns: u64) -> Option<Reached> {
        if self.reached_elapsed.is_some() {
            return None;
        }
        // Workers stamp their own ramp end, so `elapsed` is exact, not tick-rounded.
        let done = tot.ramp_done_ns?;
        let elapsed = done.saturating_sub(start_ns) as f64 / 1e9;
        self.reached_elapsed = Some(elapsed);
        Some(Reached {
            role: Role::Client,
            t,
            established: tot.established(),
            elapsed,
            attempted: Some(tot.attempted),
            failed: Some(tot.failed()),
            target: Some(self.count),
        })
    }
    fn signal(&self, common: Signal) -> Signal {
        Signal {
            on_exit: Some(self.on_exit.as_str().to_owned()),
            ..common
        }
    }
    fn summary(&self, t: f64, elapsed: f64, tot: &Totals) -> Summary {
        Summary {
            attempted: Some(tot.attempted),
            target: Some(self.count),
            // null when the ramp never ended.
            ramp_elapsed: self.reached_elapsed,
            ..proto::summary(Role::Client, t, elapsed, tot, self.peak)
        }
    }
}

/// Ephemeral ports the kernel will hand out, from ip_local_port_range.
fn ephemeral_ports() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    Some(hi.saturating_sub(lo) + 1)
}

pub fn run(a: &ClientArgs) -> Result<i32, Error> {
    let limit = sys::raise_nofile().map_err(Error::io("RLIMIT_NOFILE"))?;
    let procs = a.common.procs.unwrap_or_else(|| {
        let fit = min_procs(a.count, BASE_FDS, 0, limit);
        default_procs(sys::online_cpus(), Some(a.count), fit)
    });
    check_fds(a.count, procs, BASE_FDS, 0, limit)?;
    if let Some(eph) = ephemeral_ports() {
        // Without bind, each (source, destination port) pair has its own
        // ephemeral port space; beyond that connect fails with EADDRNOTAVAIL.
        let tuples = eph * u64::from(a.ports.count()) * (a.sources.len().max(1) as u64);
        if a.count > tuples {
            eprintln!(
                "storm-load: warning: {} connections but only {tuples} source tuples \
                 ({eph} ephemeral ports x {} ports x {} sources); expect EADDRNOTAVAIL",
                a.count,
                a.ports.count(),
                a.sources.len().max(1)
            );
        }
    }
    sys::take_over_signals().map_err(Error::io("signal handlers"))?;
    let mut report = ClientReport {
        target: format!("{}:{}", a.addr, a.ports),
        count: a.count,
        on_exit: a.on_exit,
        concurrency: a.concurrency,
        rate: a.rate,
        bulk_in: a.bulk_in,
        peak: 0,
        reached_elapsed: None,
    };
    let worker = |k: usize, shared: &Shared, sigfd: &OwnedFd| -> i32 {
        match connect_loop(a, procs, k as u64, shared, sigfd, limit as usize) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("storm-load: client worker {k}: {e}");
                1
            }
        }
    };
    supervisor::run(&a.common, procs, limit, &mut report, &worker).map_err(Error::io("supervisor"))
}

/// This worker's share of `total` when split over `procs` (the first ones take the remainder).
fn share(total: u64, procs: u64, k: u64) -> u64 {
    total / procs + u64::from(k < total % procs)
}

/// How many of `count` connects may have been started `elapsed_ns` into the
/// ramp at `rate` per second (0 = unlimited); the first one goes at once.
fn allowed(count: u64, rate: f64, elapsed_ns: u64) -> u64 {
    if rate <= 0.0 {
        return count;
    }
    count.min((rate * elapsed_ns as f64 / 1e9) as u64 + 1)
}

/// Whether a connect's poll/epoll events may mean it failed, so that SO_ERROR
/// has to be read: EPOLLERR is set whenever the socket has an error pending.
/// (POLL* and EPOLL* bits have the same values.)
fn may_have_failed(events: u32) -> bool {
    events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
}

/// Starts one non-blocking connect; returns the fd, or the errno of a
/// connect that failed at once.
fn open_one(a: &ClientArgs, idx: u64) -> Result<RawFd, i32> {
    let fd = sys::tcp_socket()?;
    let res = (|| {
        // Set at creation rather than at the signal: the exit path is then a
        // single _exit(), so the RSTs leave as fast as the FINs would.
        if a.on_exit == OnExit::Rst {
            sys::set_linger_rst(fd)?;
        }
        if !a.sources.is_empty() {
            let n = a.sources.len() as u64;
            sys::bind_source(
                fd,
                a.sources[((idx / u64::from(a.ports.count())) % n) as usize],
            )?;
        }
        sys::connect(fd, a.addr, a.ports.nth(idx))
    })();
    match res {
        Ok(()) => Ok(fd),
        Err(e) => {
            sys::close(fd);
            Err(e)
        }
    }
}

/// One worker: claims connections from the shared ramp and opens them until
/// none are left, then holds; returns on a stop signal. Failed connects are
/// counted by errno and not retried: `attempted` reaches the count and the
/// ramp ends with fewer connections up.
fn connect_loop(
    a: &ClientArgs,
    procs: u32,
    k: u64,
    shared: &Shared,
    sigfd: &OwnedFd,
    limit: usize,
) -> std::io::Result<()> {
    let mut w = Connector::new(a, procs, k, shared, limit)?;
    w.ep.add(sigfd.as_raw_fd(), libc::EPOLLIN as u32, SIG_TOKEN)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        let more = w.has_room() && w.start_batch();
        let unclaimed = w.unclaimed();
        w.note_ramp_end(unclaimed);
        let n = w.ep.wait(&mut events, w.timeout(more, unclaimed))?;
        for ev in &events[..n] {
            let (data, evs) = (ev.u64, ev.events);
            if data == SIG_TOKEN {
                if sys::read_signal(sigfd).is_some() {
                    return Ok(());
                }
                continue;
            }
            w.on_event(Token(data), evs);
        }
    }
}

/// A client worker's connections: the ones it is opening and the ones it holds.
struct Connector<'a> {
    a: &'a ClientArgs,
    ramp: &'a Ramp,
    slot: &'a Slot,
    /// Its share of `--concurrency`.
    conc: u64,
    /// Connections it may hold: what its fds allow. The workers together can
    /// hold the count (check_fds), so one that is full simply stops claiming
    /// and the others take the rest.
    cap: u64,
    /// Over all workers, like the claims; 0 stays 0 (unlimited).
    rate: f64,
    /// When the ramp started (monotonic ns).
    t0: u64,
    ep: Epoll,
    /// FREE, CONNECTING or UP, by fd.
    state: Vec<u8>,
    /// The connects of the current batch, for one poll().
    started: Vec<libc::pollfd>,
    io: Io,
    bulk: Picker<'a>,
    /// Connects pending.
    in_flight: u64,
    /// Fds held (pending or up).
    open: u64,
    ramp_done: bool,
}

impl<'a> Connector<'a> {
    fn new(
        a: &'a ClientArgs,
        procs: u32,
        k: u64,
        shared: &'a Shared,
        limit: usize,
    ) -> std::io::Result<Connector<'a>> {
        let ramp = shared.ramp();
        Ok(Connector {
            a,
            ramp,
            slot: shared.slot(k as usize),
            conc: share(a.concurrency, u64::from(procs), k).max(1),
            cap: (limit as u64).saturating_sub(BASE_FDS).max(1),
            rate: a.rate as f64,
            t0: ramp.start_ns.load(Relaxed),
            ep: Epoll::new()?,
            state: vec![FREE; limit],
            started: Vec::with_capacity(CLAIM as usize),
            io: Io::new(a.bulk_in > 0),
            bulk: Picker::new(ramp, a.bulk_in),
            in_flight: 0,
            open: 0,
            ramp_done: false,
        })
    }

    /// Whether another connect may start: below its concurrency and its fds.
    fn has_room(&self) -> bool {
        self.in_flight < self.conc && self.open < self.cap
    }

    /// One batch: claim, start every connect, then learn with one poll()
    /// which have completed already (on a bridge or loopback the whole
    /// handshake runs inside connect()), so that those are registered for
    /// the hold only and never come back through epoll_wait. Returns whether
    /// it claimed any.
    fn start_batch(&mut self) -> bool {
        let allowed = allowed(self.a.count, self.rate, sys::monotonic_ns() - self.t0);
        let want = CLAIM
            .min(self.conc - self.in_flight)
            .min(self.cap - self.open);
        let claimed = self.ramp.claim(want, allowed);
        let more = !claimed.is_empty();
        // Shared counters move once per batch: each add is an atomic on a
        // line the parent reads.
        Slot::add(&self.slot.attempted, claimed.end - claimed.start);
        let mut started = std::mem::take(&mut self.started);
        started.clear();
        for idx in claimed {
            match open_one(self.a, idx) {
                Ok(fd) => started.push(libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                }),
                Err(e) => self.slot.error(e),
            }
        }
        // If poll() fails, every connect counts as pending: epoll reports them.
        sys::poll_now(&mut started);
        let (mut up_now, mut pending_now) = (0, 0);
        for p in &started {
            match self.register(p.fd, p.revents as u32) {
                Some(UP) => up_now += 1,
                Some(_) => pending_now += 1,
                None => {}
            }
        }
        self.started = started;
        self.in_flight += pending_now;
        Slot::add(&self.slot.in_flight, pending_now);
        Slot::add(&self.slot.connected, up_now);
        more
    }

    /// Registers a connect just started with epoll, as up (POLLOUT already)
    /// or still connecting; returns its state, or None if it failed (closed
    /// and counted).
    fn register(&mut self, fd: RawFd, revents: u32) -> Option<u8> {
        if may_have_failed(revents) {
            let err = sys::so_error(fd);
            if err != 0 {
                self.slot.error(err);
                sys::close(fd);
                return None;
            }
        }
        let up = revents & libc::POLLOUT as u32 != 0;
        let tok = if up && self.bulk.take() {
            Token::bulk(fd)
        } else {
            Token::held(fd)
        };
        // Edge-triggered (see traffic::Token): a held connection reports
        // EPOLLIN/RDHUP when the server closes it or sends data; one still
        // connecting also reports EPOLLOUT once, when the connect completes.
        let evs = if up {
            tok.events()
        } else {
            tok.events() | libc::EPOLLOUT as u32
        };
        if let Err(e) = self.ep.add(fd, evs, tok.0) {
            self.slot.error(e.raw_os_error().unwrap_or(0));
            sys::close(fd);
            return None;
        }
        self.open += 1;
        let st = if up { UP } else { CONNECTING };
        self.state[fd as usize] = st;
        Some(st)
    }

    /// The next unclaimed connection, if this worker may take it once the
    /// rate limit allows (`None`: none left, or this worker is full).
    fn unclaimed(&self) -> Option<u64> {
        Some(self.ramp.next.load(Relaxed)).filter(|n| *n < self.a.count && self.open < self.cap)
    }

    /// Stamps this worker's end of the ramp, once: nothing in flight and
    /// nothing left for it to claim.
    fn note_ramp_end(&mut self, unclaimed: Option<u64>) {
        if !self.ramp_done && self.in_flight == 0 && unclaimed.is_none() {
            self.slot
                .ramp_done_ns
                .store(sys::monotonic_ns().max(1), Relaxed);
            self.ramp_done = true;
        }
    }

    /// How long epoll_wait may sleep: not at all while a batch claimed some
    /// and there is room for more, until the rate allows the next connect,
    /// or until an event.
    fn timeout(&self, more: bool, unclaimed: Option<u64>) -> i32 {
        match unclaimed {
            _ if more && self.has_room() => 0,
            Some(n) if self.in_flight < self.conc && self.rate > 0.0 => {
                let due = self.t0 as f64 + n as f64 * 1e9 / self.rate;
                (((due - sys::monotonic_ns() as f64) / 1e6).ceil() as i32).max(1)
            }
            _ => -1,
        }
    }

    /// An event on a connection: a connect completing, then whatever the
    /// connection reports.
    fn on_event(&mut self, mut tok: Token, evs: u32) {
        let fd = tok.fd();
        if self.state[fd as usize] == CONNECTING {
            match self.connected(tok, evs) {
                Some(t) => tok = t,
                None => return,
            }
        }
        // Reads only if the report says there is something to read: a FIN,
        // a RST or data (EPOLLOUT alone is the connect completing, or room
        // to write on a bulk connection).
        if self.state[fd as usize] == UP && !self.io.serve(&self.ep, tok, evs, self.slot) {
            self.state[fd as usize] = FREE;
            self.open -= 1;
        }
    }

    /// A pending connect completed: up (returns its token, a bulk one if it
    /// is picked for bulk traffic), or failed (closed and counted: None).
    fn connected(&mut self, tok: Token, evs: u32) -> Option<Token> {
        let fd = tok.fd();
        self.in_flight -= 1;
        Slot::sub(&self.slot.in_flight, 1);
        // A connect that failed always shows EPOLLERR (sk_err is set);
        // without it EPOLLOUT means connected, so the common case needs no
        // getsockopt. Errors still come from SO_ERROR.
        let err = if may_have_failed(evs) {
            sys::so_error(fd)
        } else {
            0
        };
        if err != 0 {
            self.slot.error(err);
            sys::close(fd);
            self.state[fd as usize] = FREE;
            self.open -= 1;
            return None;
        }
        self.state[fd as usize] = UP;
        Slot::add(&self.slot.connected, 1);
        if self.bulk.take() {
            let b = Token::bulk(fd);
            match self.ep.modify(fd, b.events(), b.0) {
                Ok(()) => return Some(b),
                Err(e) => self.slot.error(e.raw_os_error().unwrap_or(0)),
            }
        }
        Some(tok)
    }
}

#[cfg(test)]
mod tests {
    use super::{allowed, may_have_failed, share};

    #[test]
    fn so_error_is_read_only_when_epoll_flags_an_error() {
        let (out, inn, rdhup) = (libc::EPOLLOUT, libc::EPOLLIN, libc::EPOLLRDHUP);
        let (err, hup) = (libc::EPOLLERR, libc::EPOLLHUP);
        let table = [
            (out, false),
            // Up, and the server already closed it: counted as a close, not a failure.
            (out | inn | rdhup, false),
            // Refused (RST to the SYN) or timed out.
            (out | inn | rdhup | err | hup, true),
            (err | hup, true),
            (hup, true),
        ];
        for (evs, want) in table {
            assert_eq!(may_have_failed(evs as u32), want, "{evs:#x}");
        }
    }

    #[test]
    fn rate_limit_releases_connects_over_time() {
        let table = [
            // (count, rate, elapsed_ns, allowed)
            (1000, 0.0, 0, 1000),
            (1000, 100.0, 0, 1),
            (1000, 100.0, 500_000_000, 51),
            (1000, 100.0, 1_000_000_000, 101),
            (1000, 100.0, 60_000_000_000, 1000),
            (1000, 0.5, 3_000_000_000, 2),
        ];
        for (count, rate, ns, want) in table {
            assert_eq!(allowed(count, rate, ns), want, "{count} {rate} {ns}");
        }
    }

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, procs) in [(10, 3), (3, 5), (1_000_000, 53), (7, 7), (0, 2)] {
            let parts: Vec<u64> = (0..procs).map(|k| share(total, procs, k)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total, "{total}/{procs}");
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{parts:?}");
        }
    }
}
