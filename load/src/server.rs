//! The server role: epoll accept loops on a port range, holding connections
//! with no per-connection user-space state (the first `--bulk-out` written
//! to all along), and closing them on peer FIN/RST.

use crate::args::PortRange;
use crate::args::ServerArgs;
use crate::capacity::{check_fds, default_procs, min_procs};
use crate::error::Error;
use crate::proto::{self, Progress, Reached, Role, Signal, Start, Summary};
use crate::shm::{Shared, Slot, Totals};
use crate::supervisor::{self, Report};
use crate::sys::{self, Epoll};
use crate::traffic::{Io, Picker, Token};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

const SIG_TOKEN: u64 = u64::MAX;
/// Marks a listener in epoll data; a connection's data is a `Token`.
const LISTEN_BIT: u64 = 1 << 32;
/// Fds a worker needs besides connections: epoll, signalfd, stdio, slack.
const BASE_FDS: u64 = 16;
/// SO_REUSEPORT hashes flows over workers, so one can get a few % more than its share.
const SPREAD_SLACK_PCT: u64 = 5;

struct ServerReport {
    ports: PortRange,
    bulk_out: u64,
    /// Listeners of every worker, held by the parent only until the fork.
    listeners: Vec<Vec<OwnedFd>>,
    peak: u64,
}

impl Report for ServerReport {
    fn role(&self) -> Role {
        Role::Server
    }
    fn start(&self, common: Start) -> Start {
        Start {
            ports: Some(self.ports),
            bulk_out: Some(self.bulk_out),
            ..common
        }
    }
    fn forked(&mut self) {
        // Only the workers keep listeners: if one dies its accept queues must
        // close so the kernel stops hashing new flows to them.
        self.listeners.clear();
    }
    fn progress(&mut self, t: f64, tot: &Totals, rate: f64) -> Progress {
        self.peak = self.peak.max(tot.established());
        proto::server_progress(t, tot, rate)
    }
    fn rate_counter(&self, tot: &Totals) -> u64 {
        tot.connected
    }
    fn milestone(&mut self, _: f64, _: &Totals, _: u64) -> Option<Reached> {
        None
    }
    fn signal(&self, common: Signal) -> Signal {
        common
    }
    fn summary(&self, t: f64, elapsed: f64, tot: &Totals) -> Summary {
        Summary {
            accepted: Some(tot.connected),
            ..proto::summary(Role::Server, t, elapsed, tot, self.peak)
        }
    }
}

pub fn run(a: &ServerArgs) -> Result<i32, Error> {
    let limit = sys::raise_nofile().map_err(Error::io("RLIMIT_NOFILE"))?;
    let nports = u64::from(a.ports.count());
    let procs = a.common.procs.unwrap_or_else(|| {
        let fit = min_procs(
            a.count.unwrap_or(0),
            nports + BASE_FDS,
            SPREAD_SLACK_PCT,
            limit,
        );
        default_procs(sys::online_cpus(), a.count, fit)
    });
    // The parent briefly holds every worker's listeners.
    check_fds(0, 1, u64::from(procs) * nports + BASE_FDS, 0, limit)?;
    if let Some(count) = a.count {
        check_fds(count, procs, nports + BASE_FDS, SPREAD_SLACK_PCT, limit)?;
    }
    sys::take_over_signals().map_err(Error::io("signal handlers"))?;
    let reuseport = procs > 1;
    let mut listeners = Vec::with_capacity(procs as usize);
    for _ in 0..procs {
        let mut mine = Vec::with_capacity(nports as usize);
        for port in a.ports.first..=a.ports.last {
            mine.push(
                sys::listener(a.bind, port, reuseport)
                    .map_err(Error::io(format!("listen on {}:{port}", a.bind)))?,
            );
        }
        listeners.push(mine);
    }
    let raw: Vec<Vec<RawFd>> = listeners
        .iter()
        .map(|l| l.iter().map(AsRawFd::as_raw_fd).collect())
        .collect();
    let mut report = ServerReport {
        ports: a.ports,
        bulk_out: a.bulk_out,
        listeners,
        peak: 0,
    };
    let worker = |k: usize, shared: &Shared, sigfd: &OwnedFd| -> i32 {
        for (_, fds) in raw.iter().enumerate().filter(|(i, _)| *i != k) {
            fds.iter().for_each(|fd| sys::close(*fd));
        }
        match serve(shared, k, sigfd, &raw[k], a.bulk_out) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("storm-load: server worker {k}: {e}");
                1
            }
        }
    };
    supervisor::run(&a.common, procs, limit, &mut report, &worker).map_err(Error::io("supervisor"))
}

/// Worker `k`'s event loop; returns when a stop signal arrives.
fn serve(
    shared: &Shared,
    k: usize,
    sigfd: &OwnedFd,
    listeners: &[RawFd],
    bulk_out: u64,
) -> std::io::Result<()> {
    let slot = shared.slot(k);
    let ep = Epoll::new()?;
    ep.add(sigfd.as_raw_fd(), libc::EPOLLIN as u32, SIG_TOKEN)?;
    for l in listeners {
        ep.add(
            *l,
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            LISTEN_BIT | *l as u64,
        )?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut io = Io::new(bulk_out > 0);
    let mut bulk = Picker::new(shared.ramp(), bulk_out);
    loop {
        let n = ep.wait(&mut events, -1)?;
        for ev in &events[..n] {
            let data = ev.u64;
            if data == SIG_TOKEN {
                if sys::read_signal(sigfd).is_some() {
                    return Ok(());
                }
            } else if data & LISTEN_BIT != 0 {
                let lfd = (data & !LISTEN_BIT) as RawFd;
                // Edge-triggered: drain the accept queue until EAGAIN.
                loop {
                    match sys::accept(lfd) {
                        Ok(fd) => {
                            let tok = if bulk.take() {
                                Token::bulk(fd)
                            } else {
                                Token::held(fd)
                            };
                            match ep.add(fd, tok.events(), tok.0) {
                                Ok(()) => Slot::add(&slot.connected, 1),
                                Err(e) => {
                                    slot.error(e.raw_os_error().unwrap_or(0));
                                    sys::close(fd);
                                }
                            }
                        }
                        Err(libc::EAGAIN) => break,
                        Err(libc::EINTR) => {}
                        Err(e @ libc::ECONNABORTED) => slot.error(e),
                        // EMFILE/ENFILE/ENOMEM: counted; the next arrival retriggers us.
                        Err(e) => {
                            slot.error(e);
                            break;
                        }
                    }
                }
            } else {
                io.serve(&ep, Token(data), ev.events, slot);
            }
        }
    }
}
