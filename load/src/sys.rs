//! Thin safe wrappers over the Linux calls storm-load needs (sockets, epoll,
//! signalfd, rlimits, clocks). Connection sockets stay raw fds on purpose:
//! the server keeps no per-connection object at all.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Raises RLIMIT_NOFILE as far as allowed and returns the new soft limit:
/// first both limits to fs.nr_open (works as root in a guest, where an SSH
/// session typically inherits a 524288 hard limit), else soft to hard.
pub fn raise_nofile() -> io::Result<u64> {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut rl: libc::rlimit = zeroed();
        cvt(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl))?;
        if let Some(n) = nr_open.filter(|n| *n > rl.rlim_max) {
            let want = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // EPERM without CAP_SYS_RESOURCE (as on the host): fall back below.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return Ok(n);
            }
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            cvt(libc::setrlimit(libc::RLIMIT_NOFILE, &rl))?;
        }
        Ok(rl.rlim_cur)
    }
}

/// CPUs this process may run on (sched_getaffinity, so a cpuset or taskset
/// counts, not just what is online); 1 if that cannot be read.
pub fn online_cpus() -> u32 {
    // SAFETY: cpu_set_t is plain data; the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set).max(1)) as u32
    }
}

pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime on a local struct.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn wall_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// The signals that stop storm-load, plus SIGCHLD so the parent sees workers die.
fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Takes over SIGINT/SIGTERM/SIGCHLD: a shell that backgrounds us leaves
/// SIGINT ignored, so install a handler (undoing SIG_IGN) and then block the
/// signals so they are only ever read from a signalfd, in the event loop.
pub fn take_over_signals() -> io::Result<()> {
    // SAFETY: installing a no-op handler and changing our own mask.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            let mut sa: libc::sigaction = zeroed();
            sa.sa_sigaction = ignore_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            cvt(libc::sigaction(sig, &sa, std::ptr::null_mut()))?;
        }
        let set = stop_set();
        cvt(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// A non-blocking signalfd for the stop signals (and SIGCHLD).
pub fn signalfd() -> io::Result<OwnedFd> {
    let set = stop_set();
    // SAFETY: creating a new fd and taking ownership of it.
    unsafe {
        let fd = cvt(libc::signalfd(
            -1,
            &set,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads one pending signal number from a signalfd, if any.
pub fn read_signal(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: reading into a correctly sized local struct.
    unsafe {
        let mut si: libc::signalfd_siginfo = zeroed();
        let n = libc::read(
            fd.as_raw_fd(),
            (&mut si as *mut libc::signalfd_siginfo).cast(),
            size_of::<libc::signalfd_siginfo>(),
        );
        (n == size_of::<libc::signalfd_siginfo>() as isize).then_some(si.ssi_signo as i32)
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        _ => "SIG?",
    }
}

pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: new fd, owned immediately.
        unsafe {
            Ok(Epoll(OwnedFd::from_raw_fd(cvt(libc::epoll_create1(
                libc::EPOLL_CLOEXEC,
            ))?)))
        }
    }

    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    /// Changes a registered fd's events and data; the kernel rechecks
    /// readiness, so a switch to level-triggered misses nothing pending.
    pub fn modify(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, data)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: ev is a valid local.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Waits for events; EINTR is reported as zero events.
    pub fn wait(&self, buf: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: buf is a valid writable slice of epoll_event.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

fn setsockopt_int(fd: RawFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: v lives across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A non-blocking TCP socket; returns the raw fd (caller owns it) or errno.
pub fn tcp_socket() -> Result<RawFd, i32> {
    // SAFETY: plain syscall.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// SO_LINGER {1,0}: close() then aborts the connection with a RST.
pub fn set_linger_rst(fd: RawFd) -> Result<(), i32> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Binds to a source address but leaves the port to connect(): with
/// IP_BIND_ADDRESS_NO_PORT the kernel picks the port per destination, so a
/// source address is not capped at one 64k port space.
pub fn bind_source(fd: RawFd, addr: Ipv4Addr) -> Result<(), i32> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let sa = sockaddr(addr, 0);
    // SAFETY: sa is a valid sockaddr_in.
    let r = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Starts a connect on a non-blocking socket: `Ok` if it is under way (or,
/// rarely, already done), else the errno.
pub fn connect(fd: RawFd, addr: Ipv4Addr, port: u16) -> Result<(), i32> {
    let sa = sockaddr(addr, port);
    // SAFETY: sa is a valid sockaddr_in.
    let r = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match errno() {
        libc::EINPROGRESS => Ok(()),
        e => Err(e),
    }
}

/// Fills in `revents` of each pollfd without waiting; on failure (EINTR,
/// ENOMEM) leaves them as they were.
pub fn poll_now(fds: &mut [libc::pollfd]) {
    if fds.is_empty() {
        return;
    }
    // SAFETY: fds is a valid slice of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
}

/// The pending error of a socket (0 = connected).
pub fn so_error(fd: RawFd) -> i32 {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: v/len are valid for the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if r < 0 {
        errno()
    } else {
        v
    }
}

/// A listening socket. SO_REUSEPORT lets each worker have its own listener
/// (own accept queue) on the same port, so the kernel spreads connections.
pub fn listener(addr: Ipv4Addr, port: u16, reuseport: bool) -> io::Result<OwnedFd> {
    let fd = tcp_socket().map_err(io::Error::from_raw_os_error)?;
    // SAFETY: fd was just created and is owned from here on.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuseport {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let sa = sockaddr(addr, port);
    // SAFETY: sa is a valid sockaddr_in.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    // The kernel caps the backlog at net.core.somaxconn.
    cvt(unsafe { libc::listen(fd, 65535) })?;
    Ok(owned)
}

pub fn accept(lfd: RawFd) -> Result<RawFd, i32> {
    // SAFETY: we do not ask for the peer address.
    let fd = unsafe {
        libc::accept4(
            lfd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

pub enum Drained {
    /// Nothing more to read, the connection stays open.
    Open,
    /// The budget was used up and more may be waiting; the connection stays open.
    Busy,
    /// The peer sent a FIN.
    Eof,
    /// The read failed with this errno (ECONNRESET for a RST).
    Error(i32),
}

/// Reads and discards whatever is pending, but stops after `budget` bytes
/// (whole reads of `scratch`), so a peer that keeps sending cannot hold the
/// caller; returns the bytes read and how it ended. Peers that send nothing
/// only ever get here for their FIN or RST: one read.
pub fn drain(fd: RawFd, scratch: &mut [u8], budget: u64) -> (u64, Drained) {
    let mut got = 0u64;
    loop {
        if got >= budget {
            return (got, Drained::Busy);
        }
        // SAFETY: scratch is a valid writable buffer.
        let n = unsafe { libc::read(fd, scratch.as_mut_ptr().cast(), scratch.len()) };
        match n {
            0 => return (got, Drained::Eof),
            n if n > 0 => got += n as u64,
            _ => match errno() {
                libc::EAGAIN => return (got, Drained::Open),
                libc::EINTR => continue,
                e => return (got, Drained::Error(e)),
            },
        }
    }
}

pub enum Sent {
    /// The socket buffer is full; the kernel reports EPOLLOUT when it has room.
    Blocked,
    /// The budget was used up and there may be room for more.
    Busy,
    /// The write failed with this errno (ECONNRESET, EPIPE, ...).
    Error(i32),
}

/// Writes all of `data` again and again until the socket buffer is full or
/// `budget` bytes went out; returns the bytes written and how it ended.
/// MSG_NOSIGNAL: a connection the peer reset gives EPIPE, not a SIGPIPE.
pub fn send_some(fd: RawFd, data: &[u8], budget: u64) -> (u64, Sent) {
    let mut sent = 0u64;
    if data.is_empty() {
        return (0, Sent::Blocked);
    }
    loop {
        if sent >= budget {
            return (sent, Sent::Busy);
        }
        // SAFETY: data is a valid readable buffer.
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            sent += n as u64;
            continue;
        }
        match errno() {
            libc::EAGAIN => return (sent, Sent::Blocked),
            libc::EINTR => continue,
            e => return (sent, Sent::Error(e)),
        }
    }
}

pub fn close(fd: RawFd) {
    // SAFETY: the caller owns fd and forgets it after this call.
    unsafe { libc::close(fd) };
}

/// CPU seconds (user, system) of this process plus its reaped children.
pub fn cpu_times() -> (f64, f64) {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // SAFETY: getrusage into locals.
    unsafe {
        let mut me: libc::rusage = zeroed();
        let mut kids: libc::rusage = zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut me);
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut kids);
        (
            tv(me.ru_utime) + tv(kids.ru_utime),
            tv(me.ru_stime) + tv(kids.ru_stime),
        )
    }
}
