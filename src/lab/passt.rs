//! passt mode's backends: one passt process per VM (Debian 12's passt, 0.0~git20230309),
//! started by nicstorm in the lab's network namespace (hostnet `up_passt`) on the stream
//! socket the VM's QEMU connected to.
//!
//! **The socket.** libvirt 9.0 can start passt itself (`<backend type='passt'/>`: its QEMU
//! driver runs `passt --one-off --socket ...`), but in the host's namespace, where passt
//! gives guests the host's network and binds its forwards on every host address; it has no
//! way to put passt in a namespace of ours. So nicstorm starts passt, and hands it QEMU's end
//! with `--fd` instead of a socket path: nicstorm binds a unix socket in the lab's state
//! directory (root's alone), the domain's QEMU (root) connects to it at start
//! (`-netdev stream,server=off,addr.type=unix`), nicstorm accepts, checks the peer is that
//! domain's QEMU (SO_PEERCRED), and passes the connected socket to passt. passt drops to
//! `nobody` before it would create a socket of its own (conf.c: `isolate_user()` runs before
//! `tap_sock_init()`), so a `--socket` path would need a directory `nobody` can write, which
//! QEMU (root) would then trust; with `--fd` no path outside the state directory exists.
//! QEMU 7.2's stream netdev never reconnects, and it does not need to: its one connection is
//! made before passt runs and waits in the socket's backlog. `--fd` implies passt's
//! `--one-off` (conf.c, case 'F'), as libvirt's own passt gets: when QEMU closes the socket,
//! passt exits ("Client closed connection, exiting", tap.c `tap_handler`).
//!
//! passt sets its socket buffers on a connection it accepts itself (tap.c
//! `tap_sock_unix_new`: SO_RCVBUF and SO_SNDBUF to INT_MAX / 2, unless `sock_probe_mem()`,
//! util.c, found the host caps them below 2 and 4 MiB), but not on one passed with `--fd`;
//! nicstorm does the same before passing it (`tap_buffers`), so the socket is as a libvirt or
//! podman passt would have it.
//!
//! **Its log.** `--log-file` in the state directory: passt opens it as root, in `conf()`,
//! before it drops to `nobody` (conf.c: `logfile_init()` before `isolate_user()`); its stderr
//! (the few lines it prints before its log is open) is appended to the same file. The log is
//! copied into the cell directory as `<role>.passt.log`.
//!
//! **Leftovers.** Each passt is a child of nicstorm in a process group of its own (a
//! terminal's Ctrl-C reaches nicstorm, which stops it). The guard stops it by PID (SIGTERM,
//! then SIGKILL). nicstorm records each start (`<role>.passt.json` in the lab's state
//! directory: PID, start time, argv); the sweep kills a leftover only by that PID, after
//! /proc/PID/cmdline and the start time match the record. A passt whose QEMU is gone exits by
//! itself (one-off), so destroying a leftover domain ends its passt too.

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::model::names::{run_of_tag, RunId};
use crate::support::procs::{self, cmdline, gone, signal, start_ticks};

pub(crate) use crate::matrix::passt::{MAX_FLOWS, SSH_FLOWS};

/// Each flow holds a socket and a timerfd in its passt (tcp.c: `tcp_timer_ctl()` creates the
/// timerfd on the flow's first timer and keeps it until `tcp_conn_destroy()`). Measured with
/// this passt in a namespace: 300 guest-opened flows added 300 sockets and 300 timerfds, as
/// did 200 forwarded ones.
pub(crate) const FDS_PER_FLOW: u64 = 2;

/// The open-file limit nicstorm gives each passt where it can (passt raises its soft limit to
/// the hard one, passt.c `main`): every flow it can hold, plus its own ~40 (epoll, the tap,
/// the log, 32 pre-opened sockets, the listeners) and room for the listeners of a wide port
/// range.
pub(crate) const NOFILE: u64 = MAX_FLOWS * FDS_PER_FLOW + 1024;

/// The files a passt holds besides its flows, with room for the listeners of `ports` ports:
/// 42 measured with three forwards (stdio, epoll, the tap, the log, 32 pre-opened sockets, a
/// netlink socket, the listeners).
pub(crate) fn own_fds(ports: u64) -> u64 {
    64 + ports
}

/// The hard (and so soft) open-file limit each passt gets: NOFILE where nicstorm may raise
/// its own hard limit that far (CAP_SYS_RESOURCE; never above fs.nr_open), else at most
/// nicstorm's own hard limit, which a process without CAP_SYS_RESOURCE cannot exceed.
pub(crate) fn nofile(own_hard: u64, can_raise: bool, nr_open: u64) -> u64 {
    if can_raise {
        NOFILE.min(nr_open)
    } else {
        NOFILE.min(own_hard)
    }
}

/// `nofile` for this process, now.
pub(crate) fn nofile_now() -> u64 {
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(own.rlim_max);
    nofile(own.rlim_max, has_sys_resource(), nr_open)
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff), which raising a hard
/// limit needs.
fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// How long QEMU may take to connect after its domain started, and passt to bind its
/// forwards after it was started.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The file name suffixes of a VM's passt in the lab's state directory.
pub(crate) const SOCKET: &str = "net.sock";
const LOG: &str = "passt.log";
const RECORD: &str = "passt.json";

/// The program, as nicstorm runs it (Debian's `/usr/bin/passt`, which re-executes
/// `passt.avx2` where the CPU has AVX2, keeping its argv).
const PROGRAM: &str = "passt";

/// The passt that passt-mode cells run (`settings.passt`): the host's own, or a recipe's
/// build (passt/README.md), with the version rows record.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// `system`, or the recipe's name.
    pub name: String,
    /// What is executed: `passt` from PATH, or the recipe's `bin/passt` in the cache.
    pub path: PathBuf,
    /// The Debian package version (dpkg's for the host's, the recipe's own otherwise).
    pub version: Option<String>,
}

impl Program {
    /// What the host's own passt is run as.
    pub(crate) const SYSTEM_PATH: &str = PROGRAM;

    /// The host's own passt (Debian's `passt` package).
    pub fn system() -> Program {
        let version = Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "passt"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty());
        Program {
            name: crate::matrix::recipes::SYSTEM.into(),
            path: PROGRAM.into(),
            version,
        }
    }

    /// The passt of `settings.passt` value `name`: the host's, or the recipe's build, built
    /// now when the cache lacks it (passt/build.sh).
    pub(crate) fn ensure(repo_root: &Path, name: &str) -> Result<Program> {
        if name == crate::matrix::recipes::SYSTEM {
            return Ok(Program::system());
        }
        let dir = crate::support::cmd::build_dir(
            &repo_root.join("passt/build.sh"),
            &[name],
            &format!("passt {name:?}"),
        )?;
        // nicstorm runs it as root: only a binary nobody else could have written.
        let path = crate::support::trust::check_path(
            &dir.join("bin/passt"),
            "Rebuild the recipe (remove its directory; passt/build.sh runs again) in a cache only root can write ($NICSTORM_CACHE, or root's ~/.cache/nicstorm).",
        )?;
        crate::support::trust::check_path(&dir.join("bin/passt.avx2"), "Rebuild the recipe.")?;
        let manifest: serde_json::Value = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .with_context(|| format!("passt {name:?}: reading {}/manifest.json", dir.display()))?;
        Ok(Program {
            name: name.to_owned(),
            path,
            version: manifest["version"].as_str().map(String::from),
        })
    }

    /// `NAME VERSION`, as the row's `passt` column has it.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}",
            self.name,
            self.version.as_deref().unwrap_or("version-unknown")
        )
    }
}

/// What one VM's passt is told.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PasstSpec {
    /// The passt executed.
    pub(crate) program: PathBuf,
    /// The namespace it runs in (`ip netns` name).
    pub(crate) netns: String,
    /// passt's own MAC, which the guest sees as its gateway's.
    pub(crate) mac: String,
    pub(crate) guest: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Ipv4Addr,
    /// `-t` specs.
    pub(crate) forwards: Vec<String>,
    pub(crate) log: PathBuf,
}

/// The fd number QEMU's connection has in passt.
const TAP_FD: i32 = 3;

/// passt's arguments (after the program name):
/// - `--foreground`: nicstorm's child, so the guard knows its PID without a pid file (which
///   passt would write as `nobody`);
/// - `--fd 3`: QEMU's connection (implies `--one-off`);
/// - `-4`, and the namespace's loopback as its template interface (`-i lo`) with every address
///   given (`-M -a -n -g`): passt otherwise takes them from the interface with the default
///   route, and the namespace has none ("No external routable interface for IPv4",
///   "External interface not usable"); `lo`'s MAC is zero, which passt refuses, hence `-M`;
/// - `--no-dhcp`: the guest's address is static, from its kernel command line;
/// - the gateway is mapped to the namespace's loopback (passt's default, no `--no-map-gw`);
/// - `-t`: the forwards. passt forwards nothing and no UDP unless told.
pub(crate) fn args(spec: &PasstSpec) -> Vec<String> {
    let mut a: Vec<String> = [
        "--foreground",
        "--fd",
        &TAP_FD.to_string(),
        "--log-file",
        &spec.log.to_string_lossy(),
        "-4",
        "-i",
        "lo",
        "-M",
        &spec.mac,
        "-a",
        &spec.guest.to_string(),
        "-n",
        &spec.prefix.to_string(),
        "-g",
        &spec.gateway.to_string(),
        "--no-dhcp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in &spec.forwards {
        a.push("-t".into());
        a.push(f.clone());
    }
    a
}

/// Where a VM's passt files live in the lab's state directory.
pub(crate) fn socket_path(state_dir: &Path, role: &str) -> PathBuf {
    state_dir.join(format!("{role}.{SOCKET}"))
}
pub(crate) fn log_path(state_dir: &Path, role: &str) -> PathBuf {
    state_dir.join(format!("{role}.{LOG}"))
}
fn record_path(state_dir: &Path, role: &str) -> PathBuf {
    state_dir.join(format!("{role}.{RECORD}"))
}

/// The socket QEMU connects to, bound before its domain starts (QEMU 7.2 connects once).
pub(crate) fn listen(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// QEMU's connection on `listener`, and the PID that made it (SO_PEERCRED).
pub(crate) fn accept_qemu(listener: &UnixListener, what: &str) -> Result<(UnixStream, u32)> {
    let started = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                // Accepted sockets do not inherit O_NONBLOCK; passt's own accept4() gives a
                // blocking one too.
                s.set_nonblocking(false)?;
                let pid = peer_pid(&s)?;
                return Ok((s, pid));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).with_context(|| format!("accepting {what}'s QEMU")),
        }
        if started.elapsed() > CONNECT_LIMIT {
            bail!(
                "{what}'s QEMU did not connect to {} within {CONNECT_LIMIT:?} (see its <role>.qemu.log: `-netdev stream` reports a failed connect as \"connection error\" in `info network`)",
                listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn peer_pid(s: &UnixStream) -> Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `cred`, a ucred.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_PEERCRED");
    }
    Ok(cred.pid as u32)
}

/// passt 2023_03_09's buffer sizes for a tap connection it accepts itself (tap.c:1113-1119):
/// SO_RCVBUF and SO_SNDBUF to INT_MAX / 2, each unless the host caps it below RCVBUF_BIG
/// (2 MiB) or SNDBUF_BIG (4 MiB), util.h:161-162, which `sock_probe_mem()` (util.c:233-256)
/// finds by setting INT_MAX / 2 on a TCP socket and reading it back.
pub(crate) fn tap_buffers(tap: &UnixStream) -> Result<()> {
    const RCVBUF_BIG: i32 = 2 * 1024 * 1024;
    const SNDBUF_BIG: i32 = 4 * 1024 * 1024;
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("a TCP socket to probe the host's buffer limits")?;
    for (opt, big) in [(libc::SO_RCVBUF, RCVBUF_BIG), (libc::SO_SNDBUF, SNDBUF_BIG)] {
        set_buf(probe.as_raw_fd(), opt, i32::MAX / 2)?;
        if get_buf(probe.as_raw_fd(), opt)? >= big {
            set_buf(tap.as_raw_fd(), opt, i32::MAX / 2)?;
        }
    }
    Ok(())
}

fn set_buf(fd: i32, opt: libc::c_int, v: i32) -> Result<()> {
    // SAFETY: setsockopt(2) reads `size_of::<i32>()` bytes from `v`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setsockopt");
    }
    Ok(())
}

pub(crate) fn get_buf(fd: i32, opt: libc::c_int) -> Result<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into `v`, an i32.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt");
    }
    Ok(v)
}

/// What nicstorm recorded of a passt it started, in the lab's state directory: enough to
/// kill it later by PID, and only it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Record {
    pid: u32,
    /// /proc/PID/stat field 22 (clock ticks since boot): a PID reused by another process
    /// has another start time.
    start_ticks: u64,
    /// The full argv, as /proc/PID/cmdline lists it.
    argv: Vec<String>,
}

/// A running passt, nicstorm's child. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct Passt {
    child: Option<Child>,
    pub(crate) pid: u32,
    /// The PID of the QEMU that connected to the socket passt was given.
    pub(crate) qemu_pid: u32,
    pub(crate) log: PathBuf,
    record: PathBuf,
    what: String,
    /// Handed over (`lab up`): left running, its record kept for the sweep.
    detached: bool,
}

/// How a passt ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ended {
    /// It had exited before nicstorm stopped it, with this status (its QEMU went away, or it
    /// failed: its log says which).
    ByItself(String),
    /// nicstorm stopped it (SIGTERM, or SIGKILL after STOP_LIMIT).
    Stopped,
}

impl Passt {
    /// Starts `spec`'s passt in its namespace on QEMU's connection `tap` (whose peer is
    /// `qemu_pid`), records it in `state_dir`, and returns once it listens on its forwards;
    /// an error carries passt's own words.
    pub(crate) fn start(
        spec: &PasstSpec,
        tap: UnixStream,
        qemu_pid: u32,
        state_dir: &Path,
        role: &str,
    ) -> Result<Passt> {
        let what = format!("passt of {role}");
        tap_buffers(&tap).with_context(|| format!("{what}: its socket's buffers"))?;
        let tap: OwnedFd = tap.into();
        let netns = std::fs::File::open(format!("/run/netns/{}", spec.netns))
            .with_context(|| format!("{what}: opening network namespace {}", spec.netns))?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("creating {}", spec.log.display()))?;
        let argv = args(spec);
        let mut cmd = Command::new(&spec.program);
        cmd.args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        let (tap_fd, ns_fd) = (tap.as_raw_fd(), netns.as_raw_fd());
        let limit = nofile_now();
        let nofile = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: between fork and exec only syscalls run (setns, setrlimit, dup2, fcntl),
        // which are async-signal-safe; the fds are open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0
                    || libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if tap_fd == TAP_FD {
                    // Already there: only its close-on-exec flag must go.
                    if libc::fcntl(TAP_FD, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(tap_fd, TAP_FD) != TAP_FD {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!("{what}: starting passt (scripts/setup-host.sh installs it)")
        })?;
        drop(tap);
        let pid = child.id();
        let mut passt = Passt {
            child: Some(child),
            pid,
            qemu_pid,
            log: spec.log.clone(),
            record: record_path(state_dir, role),
            what,
            detached: false,
        };
        let mut full = vec![spec.program.to_string_lossy().into_owned()];
        full.extend(argv);
        let record = Record {
            pid,
            start_ticks: start_ticks(pid).unwrap_or_default(),
            argv: full,
        };
        crate::support::trust::write(&passt.record, &serde_json::to_vec(&record)?)?;
        let (addr, port) = spec
            .forwards
            .last()
            .and_then(|f| forward_address(f))
            .with_context(|| format!("{}: no forward to wait for", passt.what))?;
        passt.wait_listening(addr, port)?;
        Ok(passt)
    }

    /// Waits until passt listens on `addr:port` in its namespace (it binds its forwards while
    /// it reads its options, before it serves the tap), or fails with its log when it exits.
    fn wait_listening(&mut self, addr: Ipv4Addr, port: u16) -> Result<()> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("a started passt has its child");
            if let Some(status) = child.try_wait().context("waiting for passt")? {
                self.child = None;
                bail!(
                    "{} exited ({}) before it listened on {addr}:{port}: {}",
                    self.what,
                    procs::describe_wait_status(status.into_raw()),
                    self.said().trim()
                );
            }
            let tcp =
                std::fs::read_to_string(format!("/proc/{}/net/tcp", self.pid)).unwrap_or_default();
            if listens(&tcp, addr, port) {
                return Ok(());
            }
            if started.elapsed() > START_LIMIT {
                bail!(
                    "{} did not listen on {addr}:{port} within {START_LIMIT:?}: {}",
                    self.what,
                    self.said().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// passt's log so far.
    pub(crate) fn said(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// How it ended, once it has exited ("killed by signal 9", "exit status 1"; "status
    /// unknown" once reaped); None while it runs.
    pub(crate) fn exit_text(&self) -> Option<String> {
        self.exited()
            .then(|| procs::zombie_status(self.pid).unwrap_or_else(|| "status unknown".into()))
    }

    /// Whether it has exited (not reaped: the guard reaps it when it stops).
    pub(crate) fn exited(&self) -> bool {
        self.child.is_none() || gone(self.pid)
    }

    /// Stops it, if it still runs, and says how it ended.
    pub(crate) fn stop(&mut self) -> Result<Ended> {
        let ended = self.reap();
        // Reaped (or never started): nothing is left for its record to name.
        if self.child.is_none() {
            let _ = std::fs::remove_file(&self.record);
        }
        ended
    }

    fn reap(&mut self) -> Result<Ended> {
        let Some(mut child) = self.child.take() else {
            return Ok(Ended::Stopped);
        };
        if let Some(status) = child.try_wait().context("waiting for passt")? {
            return Ok(Ended::ByItself(procs::describe_wait_status(
                status.into_raw(),
            )));
        }
        signal(self.pid, libc::SIGTERM);
        let asked = Instant::now();
        loop {
            if child.try_wait().context("waiting for passt")?.is_some() {
                return Ok(Ended::Stopped);
            }
            if asked.elapsed() > STOP_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} (pid {}) ignored SIGTERM for {STOP_LIMIT:?} and was killed",
                    self.what,
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Leaves it running after this process (`nicstorm lab up`); its record stays for the sweep.
    pub(crate) fn detach(mut self) {
        self.detached = true;
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Err(e) = self.stop() {
            tracing::warn!("{e:#}");
        }
    }
}

/// The address and port a `-t` spec binds (`ADDR/PORT[:GUEST]` or `ADDR/FIRST-LAST`: the
/// first port).
fn forward_address(spec: &str) -> Option<(Ipv4Addr, u16)> {
    let (addr, ports) = spec.split_once('/')?;
    let first = ports.split([':', '-', ',']).next()?;
    Some((addr.parse().ok()?, first.parse().ok()?))
}

/// Whether a /proc/PID/net/tcp text has a listening socket on `addr:port` (its addresses are
/// the kernel's u32 in hex, in host byte order; the port in hex).
fn listens(tcp: &str, addr: Ipv4Addr, port: u16) -> bool {
    tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(local), Some(state)) = (f.get(1), f.get(3)) else {
            return false;
        };
        let Some((a, p)) = local.split_once(':') else {
            return false;
        };
        let (Ok(a), Ok(p)) = (u32::from_str_radix(a, 16), u16::from_str_radix(p, 16)) else {
            return false;
        };
        *state == "0A" && Ipv4Addr::from(a.to_le_bytes()) == addr && p == port
    })
}

/// Whether `record` still describes a running process: the same argv and start time.
fn matches(record: &Record) -> bool {
    !gone(record.pid)
        && cmdline(record.pid).as_ref() == Some(&record.argv)
        && start_ticks(record.pid) == Some(record.start_ticks)
}

/// Stops every passt recorded in a lab's state directory (a killed run's, or `lab up`'s) that
/// still runs as recorded: by its PID, after its command line and start time matched the
/// record. Returns what it stopped; an error, after it tried every record, naming each one
/// it could not read or that outlived SIGKILL.
pub(crate) fn kill_recorded(lab_dir: &Path) -> Result<Vec<String>> {
    let mut stopped = vec![];
    let mut failed = vec![];
    let Ok(entries) = std::fs::read_dir(lab_dir) else {
        return Ok(stopped);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(&format!(".{RECORD}")) {
            continue;
        }
        let bytes = match crate::support::trust::read(&e.path()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(err) => {
                failed.push(format!("{err:#}"));
                continue;
            }
        };
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            continue;
        };
        if !matches(&record) {
            continue;
        }
        if procs::terminate(record.pid, STOP_LIMIT) {
            stopped.push(format!("passt pid {} ({name})", record.pid));
        } else {
            failed.push(format!(
                "leftover passt pid {} ({}) survived SIGKILL",
                record.pid,
                e.path().display()
            ));
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}{}",
            failed.join("; "),
            if stopped.is_empty() {
                String::new()
            } else {
                format!(" (stopped: {})", stopped.join(", "))
            }
        );
    }
    Ok(stopped)
}

/// A passt writing its log into a lab's state directory, found by its command line:
/// (pid, the lab's run).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Running {
    pub(crate) pid: u32,
    pub(crate) run: RunId,
}

/// The lab a command line's passt belongs to: passt with `--log-file .../nicstorm-RID/ROLE.passt.log`.
fn lab_of(argv: &[String]) -> Option<RunId> {
    if Path::new(argv.first()?).file_name()?.to_str()? != PROGRAM {
        return None;
    }
    let i = argv.iter().position(|a| a == "--log-file")?;
    let log = Path::new(argv.get(i + 1)?);
    if !log.file_name()?.to_str()?.ends_with(&format!(".{LOG}")) {
        return None;
    }
    run_of_tag(log.parent()?.file_name()?.to_str()?)
}

/// Every lab's passt running on this host (from /proc), to report what a teardown left.
pub(crate) fn running() -> Vec<Running> {
    procs::processes()
        .into_iter()
        .filter_map(|(pid, argv)| Some((pid, lab_of(&argv)?)))
        .filter(|(pid, _)| !procs::gone(*pid))
        .map(|(pid, run)| Running { pid, run })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(log: &Path) -> PasstSpec {
        PasstSpec {
            program: PROGRAM.into(),
            netns: "nsta1b2c3ns".into(),
            mac: "52:54:a1:b2:c3:80".into(),
            guest: Ipv4Addr::new(10, 213, 4, 15),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 213, 4, 2),
            forwards: vec!["127.0.0.1/20000-20019".into(), "10.213.3.2/2200:22".into()],
            log: log.to_path_buf(),
        }
    }

    #[test]
    fn the_program_is_named_with_its_version() {
        let sys = Program::system();
        assert_eq!(sys.path, PathBuf::from("passt"));
        // setup-host.sh installs Debian's package, whose version dpkg knows.
        assert!(
            sys.describe().starts_with("system 0.0~git"),
            "{}",
            sys.describe()
        );
        let recipe = Program {
            name: "trixie".into(),
            path: "/cache/passt/trixie-0123456789ab/bin/passt".into(),
            version: None,
        };
        assert_eq!(recipe.describe(), "trixie version-unknown");
        let e = Program::ensure(Path::new("/nonexistent"), "trixie").unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/passt/build.sh"),
            "{e:#}"
        );
    }

    #[test]
    fn passts_command_line() {
        let a = args(&spec(Path::new(
            "/var/lib/nicstorm/labs/nicstorm-a1b2c3/server.passt.log",
        )));
        assert_eq!(
            a.join(" "),
            "--foreground --fd 3 --log-file /var/lib/nicstorm/labs/nicstorm-a1b2c3/server.passt.log \
             -4 -i lo -M 52:54:a1:b2:c3:80 -a 10.213.4.15 -n 24 -g 10.213.4.2 --no-dhcp \
             -t 127.0.0.1/20000-20019 -t 10.213.3.2/2200:22"
        );
        let mut argv = vec!["passt".to_owned()];
        argv.extend(a);
        assert_eq!(lab_of(&argv).unwrap().as_str(), "a1b2c3");
        argv[0] = "/usr/bin/passt".into();
        assert_eq!(lab_of(&argv).unwrap().as_str(), "a1b2c3");
        argv[0] = "pasta".into();
        assert_eq!(lab_of(&argv), None);
        let other = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        for o in [
            "passt --foreground",
            "passt --log-file /tmp/passt.log",
            "passt --log-file /x/labs/nicstorm-a1b2c3/other.log",
            "vi --log-file /x/labs/nicstorm-a1b2c3/server.passt.log",
        ] {
            assert_eq!(lab_of(&other(o)), None, "{o}");
        }
        assert_eq!(
            forward_address("10.213.3.2/2200:22"),
            Some((Ipv4Addr::new(10, 213, 3, 2), 2200))
        );
        assert_eq!(
            forward_address("127.0.0.1/20000-20019"),
            Some((Ipv4Addr::LOCALHOST, 20000))
        );
        assert_eq!(forward_address("2200"), None);
        assert_eq!(NOFILE, 263_166);
        assert_eq!(nofile(20_000, true, 1_048_576), NOFILE, "raised");
        assert_eq!(
            nofile(20_000, true, 100_000),
            100_000,
            "never above fs.nr_open"
        );
        assert_eq!(nofile(20_000, false, 1_048_576), 20_000, "inherited");
        assert_eq!(
            nofile(1_048_576, false, 1_048_576),
            NOFILE,
            "lowered to what it needs"
        );
    }

    #[test]
    fn a_listener_is_read_from_proc_net_tcp() {
        // What /proc/PID/net/tcp of a passt with `-t 127.0.0.1/20000-20001 -t 198.18.99.2/2200:22`
        // said (columns cut after the inode).
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2198165\n\
           1: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2198166\n\
           2: 026312C6:0898 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2198167\n\
           3: 026312C6:0899 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2198168\n";
        assert!(listens(tcp, Ipv4Addr::new(198, 18, 99, 2), 2200));
        assert!(listens(tcp, Ipv4Addr::LOCALHOST, 20001));
        assert!(!listens(tcp, Ipv4Addr::LOCALHOST, 2200));
        assert!(
            !listens(tcp, Ipv4Addr::new(198, 18, 99, 2), 2201),
            "established, not listening"
        );
    }

    /// The buffers passt would set on a connection it accepted are set on the one it is given.
    #[test]
    fn the_tap_socket_gets_passts_buffers() {
        let (a, _b) = UnixStream::pair().unwrap();
        let before = get_buf(a.as_raw_fd(), libc::SO_RCVBUF).unwrap();
        tap_buffers(&a).unwrap();
        let rmem_max: i32 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let after = get_buf(a.as_raw_fd(), libc::SO_RCVBUF).unwrap();
        if rmem_max * 2 >= 2 * 1024 * 1024 {
            assert_eq!(
                after,
                rmem_max * 2,
                "capped at rmem_max, doubled by the kernel"
            );
        } else {
            assert_eq!(after, before, "a host that caps it low: passt leaves it");
        }
    }

    /// The test's own namespace (never a lab's: its name does not match `nst` + run id),
    /// with its loopback up and an address for the SSH forward; removed on drop.
    struct Ns(String);

    impl Ns {
        fn new() -> Ns {
            let name = format!("nspasst{}", std::process::id() % 100_000);
            let sh = |args: &[&str]| {
                let st = Command::new("ip").args(args).status().expect("ip runs");
                assert!(st.success(), "ip {}", args.join(" "));
            };
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
            sh(&["netns", "add", &name]);
            sh(&["-n", &name, "link", "set", "lo", "up"]);
            sh(&["-n", &name, "addr", "add", "198.18.99.2/32", "dev", "lo"]);
            Ns(name)
        }
    }

    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    /// A real passt in a namespace of the test's own, given the other end of a socket pair as
    /// its QEMU: it runs as nobody in that namespace with the open-file limit nicstorm gives
    /// it, listens on its forwards there and nowhere else, answers a guest's SYN to its
    /// gateway from the namespace's loopback and resets one to anywhere else (no route out),
    /// exits by itself when its "QEMU" closes, and a leftover is stopped by its record only.
    #[test]
    fn a_real_passt_in_a_namespace() {
        assert!(
            Command::new(PROGRAM).arg("--version").output().is_ok(),
            "passt is not installed: scripts/setup-host.sh installs it"
        );
        let ns = Ns::new();
        let base = std::env::temp_dir().join(format!("nicstorm-passt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let base = crate::support::trust::private_dir(&base).unwrap();
        let dir = crate::support::trust::private_dir(&base.join("labs/nicstorm-0c0ffe")).unwrap();
        let mut s = spec(&log_path(&dir, "server"));
        s.netns = ns.0.clone();
        s.forwards = vec!["127.0.0.1/21000-21001".into(), "198.18.99.2/2200:22".into()];
        // A listener inside the namespace on the port a guest will connect to (through its
        // gateway, which passt maps to the namespace's loopback).
        let inside = format!("/run/netns/{}", ns.0);
        let target = std::thread::spawn(move || {
            let f = std::fs::File::open(&inside).unwrap();
            // SAFETY: setns(2) on an open namespace fd; it moves this thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            std::net::TcpListener::bind("127.0.0.1:21500").unwrap()
        })
        .join()
        .unwrap();
        let (qemu, tap) = UnixStream::pair().unwrap();
        let mut passt = Passt::start(&s, tap, std::process::id(), &dir, "server").unwrap();
        let pid = passt.pid;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains("65534")),
            "passt dropped to nobody: {status}"
        );
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let want = nofile_now().to_string();
        assert!(
            limits.lines().any(|l| l.starts_with("Max open files")
                && l.split_whitespace().nth(3) == Some(want.as_str())
                && l.split_whitespace().nth(4) == Some(want.as_str())),
            "passt runs with {want} files: {limits}"
        );
        let ns_ino = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/run/netns/{}", ns.0))
                .unwrap()
                .ino()
        };
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .unwrap()
                .to_string_lossy(),
            format!("net:[{ns_ino}]"),
            "passt runs in the namespace"
        );
        let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
        for (a, p) in [
            (Ipv4Addr::LOCALHOST, 21000),
            (Ipv4Addr::LOCALHOST, 21001),
            (Ipv4Addr::new(198, 18, 99, 2), 2200),
        ] {
            assert!(listens(&tcp, a, p), "{a}:{p} in\n{tcp}");
        }
        let host_tcp = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
        assert!(
            !listens(&host_tcp, Ipv4Addr::LOCALHOST, 21000),
            "not in the host's namespace"
        );
        // The guest: a SYN to the gateway is answered (SYN-ACK), one to an address outside
        // the namespace is reset.
        let guest = Guest(qemu);
        assert_eq!(
            guest.syn(Ipv4Addr::new(10, 213, 4, 2), 21500),
            0x12,
            "SYN-ACK"
        );
        assert_eq!(
            guest.syn(Ipv4Addr::new(192, 0, 2, 99), 80),
            0x04,
            "RST: no route out"
        );
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            fds.iter().filter(|f| f.contains("timerfd")).count(),
            1,
            "one flow, one timerfd: {fds:?}"
        );
        drop(target);
        // Its record names it; a record that does not match (another start time) is left alone.
        let rec: Record =
            serde_json::from_slice(&std::fs::read(record_path(&dir, "server")).unwrap()).unwrap();
        assert_eq!(rec.pid, pid);
        assert_eq!(rec.argv, cmdline(pid).unwrap());
        let other = dir.join("client9.passt.json");
        crate::support::trust::write(
            &other,
            &serde_json::to_vec(&Record {
                start_ticks: rec.start_ticks + 1,
                ..rec.clone()
            })
            .unwrap(),
        )
        .unwrap();
        assert!(running()
            .iter()
            .any(|r| r.pid == pid && r.run.as_str() == "0c0ffe"));
        std::fs::remove_file(record_path(&dir, "server")).unwrap();
        assert_eq!(kill_recorded(&dir).unwrap(), Vec::<String>::new());
        assert!(
            !passt.exited(),
            "a record that does not match kills nothing"
        );
        std::fs::remove_file(&other).unwrap();
        // QEMU closes its end: passt exits by itself (one-off).
        drop(guest);
        let t = Instant::now();
        while !passt.exited() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            matches!(passt.stop().unwrap(), Ended::ByItself(_)),
            "{}",
            passt.said()
        );
        assert!(passt.said().contains("Client closed connection, exiting"));
        // A leftover (its runner gone) is stopped by its record.
        let (qemu, tap) = UnixStream::pair().unwrap();
        let passt = Passt::start(&s, tap, std::process::id(), &dir, "server").unwrap();
        let pid = passt.pid;
        passt.detach();
        let stopped = kill_recorded(&dir).unwrap();
        assert_eq!(stopped.len(), 1, "{stopped:?}");
        assert!(gone(pid));
        drop(qemu);
        // A forward that cannot be bound: passt's own words.
        let (_qemu, tap) = UnixStream::pair().unwrap();
        let mut bad = s.clone();
        bad.forwards = vec!["192.0.2.1/2200:22".into()];
        let err = Passt::start(&bad, tap, std::process::id(), &dir, "client1").unwrap_err();
        assert!(format!("{err:#}").contains("exited"), "{err:#}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Enough of a guest to send passt one SYN and read its answer's TCP flags (frames on the
    /// stream socket are length-prefixed, as QEMU's stream netdev sends them).
    struct Guest(UnixStream);

    impl Guest {
        const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        const PASST_MAC: [u8; 6] = [0x52, 0x54, 0xa1, 0xb2, 0xc3, 0x80];

        fn syn(&self, dst: Ipv4Addr, port: u16) -> u8 {
            use std::io::Write as _;
            let src = Ipv4Addr::new(10, 213, 4, 15);
            let mut tcp = vec![0u8; 20];
            tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
            tcp[2..4].copy_from_slice(&port.to_be_bytes());
            tcp[4..8].copy_from_slice(&7u32.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = 0x02;
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            let mut pseudo = vec![];
            pseudo.extend(src.octets());
            pseudo.extend(dst.octets());
            pseudo.extend([0, 6, 0, 20]);
            pseudo.extend(&tcp);
            let c = checksum(&pseudo);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0];
            ip.extend(src.octets());
            ip.extend(dst.octets());
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut frame = vec![];
            frame.extend(Self::PASST_MAC);
            frame.extend(Self::MAC);
            frame.extend([0x08, 0x00]);
            frame.extend(ip);
            frame.extend(tcp);
            // The length and the frame in one write, as QEMU's stream netdev sends them (one
            // writev): this passt drops a read of the length alone (tap.c:883, `while (n >
            // sizeof(uint32_t))`), and the stream then loses its framing.
            let mut msg = (frame.len() as u32).to_be_bytes().to_vec();
            msg.extend(frame);
            let mut s = &self.0;
            s.write_all(&msg).unwrap();
            self.0
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).unwrap();
                let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
                s.read_exact(&mut f).unwrap();
                // IPv4, TCP, from `dst`: its flags.
                if f.len() > 34
                    && f[12..14] == [0x08, 0x00]
                    && f[23] == 6
                    && f[26..30] == dst.octets()
                {
                    let ihl = usize::from(f[14] & 0x0f) * 4;
                    return f[14 + ihl + 13];
                }
            }
        }
    }

    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}
