//! The parent process: forks the workers, sums their shared counters into one
//! progress stream, forwards stop signals, and exits after the workers are gone.

use crate::args::Common;
use crate::proto::{Progress, Reached, Role, Signal, Start, Summary};
use crate::shm::{Shared, Totals};
use crate::sys;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// Workers get this long to exit after a forwarded stop signal before SIGKILL;
/// exiting closes every socket in the kernel, which takes seconds at 1M.
const STOP_GRACE_MS: u64 = 60_000;
/// After SIGKILL the kernel still has to tear the sockets down.
const KILL_GRACE_MS: u64 = 60_000;

/// What differs between the roles in the output stream.
pub trait Report {
    fn role(&self) -> Role;
    /// The `start` message: `common` with the role's own fields set.
    fn start(&self, common: Start) -> Start;
    /// Called in the parent once every worker is forked.
    fn forked(&mut self) {}
    /// The `progress` message; `rate` is per second since the previous one.
    fn progress(&mut self, t: f64, tot: &Totals, rate: f64) -> Progress;
    /// The counter `rate` is computed from.
    fn rate_counter(&self, tot: &Totals) -> u64;
    /// An extra message after a progress line (the client's `reached`).
    fn milestone(&mut self, t: f64, tot: &Totals, start_ns: u64) -> Option<Reached>;
    /// The `signal` message: `common` with the role's own fields set.
    fn signal(&self, common: Signal) -> Signal;
    /// The `summary` message, but for the CPU times (the supervisor's).
    fn summary(&self, t: f64, elapsed: f64, tot: &Totals) -> Summary;
}

/// Runs worker `k` in a forked child, with the shared mapping (its counters
/// are `slot(k)`) and its signalfd; returns its exit code.
pub type Worker<'a> = &'a dyn Fn(usize, &Shared, &OwnedFd) -> i32;

fn emit(line: &str) {
    let mut out = io::stdout().lock();
    // A reader that went away must not stop the experiment; nothing to do about it.
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes `line` to `path` via a temp file and rename, so readers never see a torn line.
fn write_status(path: &Path, line: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{line}\n"))?;
    std::fs::rename(&tmp, path)
}

struct Children {
    pids: Vec<libc::pid_t>,
    /// Exit status per worker once reaped.
    status: Vec<Option<i32>>,
}

impl Children {
    fn live(&self) -> impl Iterator<Item = libc::pid_t> + '_ {
        self.pids
            .iter()
            .zip(&self.status)
            .filter(|(_, s)| s.is_none())
            .map(|(p, _)| *p)
    }

    /// Reaps whatever has exited; returns the exit codes of workers that failed.
    fn reap(&mut self) -> Vec<(libc::pid_t, i32)> {
        let mut failed = Vec::new();
        loop {
            let mut st = 0;
            // SAFETY: waitpid on our own children.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                return failed;
            }
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                128 + libc::WTERMSIG(st)
            };
            if let Some(i) = self.pids.iter().position(|p| *p == pid) {
                self.status[i] = Some(code);
                if code != 0 {
                    failed.push((pid, code));
                }
            }
        }
    }

    fn signal_all(&self, sig: i32) {
        for pid in self.live() {
            // SAFETY: pid is an unreaped child of ours, so it cannot have been reused.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Waits (bounded) until every worker is reaped.
    fn wait_all(&mut self, sigfd: &OwnedFd, limit_ms: u64) -> bool {
        let deadline = sys::monotonic_ns() + limit_ms * 1_000_000;
        loop {
            self.reap();
            if self.live().next().is_none() {
                return true;
            }
            let now = sys::monotonic_ns();
            if now >= deadline {
                return false;
            }
            poll_in(sigfd, ((deadline - now) / 1_000_000).max(1) as i32);
            while sys::read_signal(sigfd).is_some() {}
        }
    }
}

fn poll_in(fd: &OwnedFd, timeout_ms: i32) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) };
}

/// Forks `procs` workers and reports until a stop signal or a worker failure.
/// Returns the process exit code.
pub fn run(
    common: &Common,
    procs: u32,
    nofile_limit: u64,
    report: &mut dyn Report,
    worker: Worker<'_>,
) -> io::Result<i32> {
    let procs = procs as usize;
    let shared = Shared::new(procs)?;
    let sigfd = sys::signalfd()?;
    let start_ns = sys::monotonic_ns();
    let start_t = sys::wall_secs();
    shared.ramp().start_ns.store(start_ns, Relaxed);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut kids = fork_workers(procs, &shared, &sigfd, parent, worker)?;

    report.forked();
    let start = Start::new(
        report.role(),
        start_t,
        parent as u32,
        procs as u32,
        nofile_limit,
    );
    emit(&report.start(start).to_line());

    let mut ticks = Ticks::new(common, start_ns);
    let (stop_signal, failures) = watch(&sigfd, &shared, &mut kids, &mut ticks, report);

    let sig = stop_signal.unwrap_or(libc::SIGTERM);
    if let Some(s) = stop_signal {
        let tot = shared.sum();
        let signal = Signal::new(
            report.role(),
            sys::wall_secs(),
            sys::signal_name(s),
            tot.established(),
        );
        emit(&report.signal(signal).to_line());
    }
    for (pid, code) in &failures {
        eprintln!("storm-load: worker pid {pid} failed with exit code {code}; stopping the others");
    }
    let clean = stop_workers(&mut kids, &sigfd, sig);

    if let Some(path) = &common.status_file {
        // The file means "a storm-load is running and holds this many"; a
        // stale one would make the guest heartbeat report connections that
        // no longer exist. The final counts are in the summary line.
        let _ = std::fs::remove_file(path);
    }
    emit_summary(&shared, start_ns, report);
    Ok(if stop_signal.is_some() && failures.is_empty() && clean {
        0
    } else {
        1
    })
}

/// Forks the workers; if a fork fails, kills the ones already forked.
fn fork_workers(
    procs: usize,
    shared: &Shared,
    sigfd: &OwnedFd,
    parent: libc::pid_t,
    worker: Worker<'_>,
) -> io::Result<Children> {
    let mut kids = Children {
        pids: Vec::with_capacity(procs),
        status: vec![None; procs],
    };
    for k in 0..procs {
        // SAFETY: we are single-threaded, so the child may run arbitrary code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = io::Error::last_os_error();
            kids.status.truncate(kids.pids.len());
            kids.signal_all(libc::SIGKILL);
            kids.wait_all(sigfd, KILL_GRACE_MS);
            return Err(e);
        }
        if pid == 0 {
            run_worker(k, shared, parent, worker);
        }
        kids.pids.push(pid);
    }
    Ok(kids)
}

/// In a forked child: runs worker `k` and exits with its code.
fn run_worker(k: usize, shared: &Shared, parent: libc::pid_t, worker: Worker<'_>) -> ! {
    // A worker must not outlive a parent that was SIGKILLed; SIGTERM
    // goes through the normal stop path.
    // SAFETY: prctl/getppid/_exit in the child.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    let code = match sys::signalfd() {
        Ok(fd) => worker(k, shared, &fd),
        Err(e) => {
            eprintln!("storm-load: worker {k}: signalfd: {e}");
            1
        }
    };
    let _ = io::stdout().flush();
    // SAFETY: leave without running the parent's atexit/destructors.
    unsafe { libc::_exit(code) }
}

/// Reports progress until a stop signal arrives, a worker fails, or every
/// worker is gone; returns the stop signal (if one came) and the failed
/// workers (pid, exit code).
fn watch(
    sigfd: &OwnedFd,
    shared: &Shared,
    kids: &mut Children,
    ticks: &mut Ticks,
    report: &mut dyn Report,
) -> (Option<i32>, Vec<(libc::pid_t, i32)>) {
    let mut stop_signal = None;
    let mut failures = Vec::new();
    while stop_signal.is_none() && failures.is_empty() {
        let now = sys::monotonic_ns();
        if let Some(ms) = ticks.wait_ms(now) {
            poll_in(sigfd, ms);
        }
        while let Some(sig) = sys::read_signal(sigfd) {
            if sig != libc::SIGCHLD {
                stop_signal = Some(sig);
            }
        }
        failures.extend(kids.reap());
        if kids.live().next().is_none() && stop_signal.is_none() && failures.is_empty() {
            // Workers only exit on a signal; all gone without one means they
            // were killed from outside with a signal we do not see here.
            eprintln!("storm-load: every worker exited without a stop signal");
            break;
        }
        ticks.tick(sys::monotonic_ns(), shared, report);
    }
    (stop_signal, failures)
}

/// The progress stream's cadence: a `progress` line every interval (and the
/// status file, and the client's `reached` after it), with the rate since
/// the previous line.
struct Ticks<'a> {
    common: &'a Common,
    start_ns: u64,
    interval_ns: u64,
    next_tick: u64,
    /// When the previous line was made, and its rate counter.
    last_ns: u64,
    last_count: u64,
    status_warned: bool,
}

impl<'a> Ticks<'a> {
    fn new(common: &'a Common, start_ns: u64) -> Ticks<'a> {
        let interval_ns = common.interval_ms * 1_000_000;
        Ticks {
            common,
            start_ns,
            interval_ns,
            next_tick: start_ns + interval_ns,
            last_ns: start_ns,
            last_count: 0,
            status_warned: false,
        }
    }

    /// Milliseconds until the next line is due (rounded up), if it is not due yet.
    fn wait_ms(&self, now: u64) -> Option<i32> {
        (now < self.next_tick).then(|| ((self.next_tick - now).div_ceil(1_000_000)) as i32)
    }

    /// Writes the progress line (and what goes with it) if it is due at `now`.
    fn tick(&mut self, now: u64, shared: &Shared, report: &mut dyn Report) {
        if now < self.next_tick {
            return;
        }
        let tot = shared.sum();
        let count = report.rate_counter(&tot);
        let rate =
            (count.saturating_sub(self.last_count)) as f64 * 1e9 / (now - self.last_ns) as f64;
        (self.last_ns, self.last_count) = (now, count);
        let t = sys::wall_secs();
        let line = report.progress(t, &tot, rate).to_line();
        emit(&line);
        self.update_status_file(&line);
        if let Some(m) = report.milestone(t, &tot, self.start_ns) {
            emit(&m.to_line());
        }
        // Skip missed ticks instead of bursting to catch up.
        while self.next_tick <= now {
            self.next_tick += self.interval_ns;
        }
    }

    /// `--status-file`: the latest progress line; a failure is reported once.
    fn update_status_file(&mut self, line: &str) {
        let Some(path) = &self.common.status_file else {
            return;
        };
        if let Err(e) = write_status(path, line) {
            if !self.status_warned {
                eprintln!("storm-load: status file {}: {e}", path.display());
                self.status_warned = true;
            }
        }
    }
}

/// Forwards `sig` to the workers and waits for them, with SIGKILL after a
/// grace period; returns whether every worker exited by itself with 0.
fn stop_workers(kids: &mut Children, sigfd: &OwnedFd, sig: i32) -> bool {
    kids.signal_all(sig);
    let mut clean = kids.wait_all(sigfd, STOP_GRACE_MS);
    if !clean {
        eprintln!(
            "storm-load: workers still running {STOP_GRACE_MS} ms after {}; sending SIGKILL",
            sys::signal_name(sig)
        );
        kids.signal_all(libc::SIGKILL);
        if !kids.wait_all(sigfd, KILL_GRACE_MS) {
            eprintln!("storm-load: workers survived SIGKILL for {KILL_GRACE_MS} ms; leaving them");
        }
    }
    clean &= kids.status.iter().all(|s| *s == Some(0));
    clean
}

/// The `summary` line: the final counts, with the CPU time of the parent and
/// every worker.
fn emit_summary(shared: &Shared, start_ns: u64, report: &dyn Report) {
    let tot = shared.sum();
    let (user, system) = sys::cpu_times();
    let t = sys::wall_secs();
    let elapsed = (sys::monotonic_ns() - start_ns) as f64 / 1e9;
    let summary = Summary {
        cpu_user: Some(user),
        cpu_sys: Some(system),
        ..report.summary(t, elapsed, &tot)
    };
    emit(&summary.to_line());
}
