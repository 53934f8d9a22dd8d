//! Host-side figures: CPU use of a QEMU process's vCPU threads, host conntrack fill, and host
//! sysctls (read, write, and a guard that restores overridden values).
//!
//! vCPU CPU is what tells a livelocked guest (vCPU at 100% while the heartbeat is silent) from
//! a deadlocked or halted one (vCPU near 0%).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the kernel exposes sysctls.
pub(crate) const PROC_SYS: &str = "/proc/sys";

#[derive(Debug, thiserror::Error)]
pub(crate) enum HostMetricsError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error(
        "process {pid} has no vCPU threads (no /proc/{pid}/task/*/comm starting with \"CPU \")"
    )]
    NoVcpuThreads { pid: u32 },
}

impl HostMetricsError {
    /// True when the process went away (QEMU exited): the caller then records the domain
    /// state rather than a failed measurement. Only the unit tests ask (issue 11: kept for
    /// them, compiled only for them).
    #[cfg(test)]
    pub(crate) fn is_gone(&self) -> bool {
        match self {
            HostMetricsError::Io { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ESRCH)
                )
            }
            HostMetricsError::NoVcpuThreads { .. } | HostMetricsError::Parse { .. } => false,
        }
    }
}

/// vCPU CPU use since the previous sample, in percent of one host core.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VcpuSample {
    /// The busiest vCPU thread.
    pub(crate) max_pct: f64,
    /// All vCPU threads together (can exceed 100 with several vCPUs).
    pub(crate) sum_pct: f64,
    /// vCPU threads that contributed (present at both ends of the interval).
    pub(crate) threads: usize,
}

/// Samples the vCPU threads of one QEMU process: threads whose name starts with "CPU "
/// ("CPU 0/TCG", "CPU 1/KVM").
#[derive(Debug)]
pub(crate) struct VcpuSampler {
    task_dir: PathBuf,
    pid: u32,
    ticks_per_sec: f64,
    last_at: Instant,
    /// utime+stime in clock ticks per vCPU thread id at `last_at`.
    last_ticks: HashMap<u32, u64>,
}

impl VcpuSampler {
    /// Finds the vCPU threads of `pid` and takes the baseline reading the first `sample()` is
    /// measured against.
    pub(crate) fn new(pid: u32) -> Result<Self, HostMetricsError> {
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if tck <= 0 {
            return Err(HostMetricsError::Parse {
                path: PathBuf::from("sysconf(_SC_CLK_TCK)"),
                detail: format!("returned {tck}"),
            });
        }
        let task_dir = PathBuf::from(format!("/proc/{pid}/task"));
        let last_ticks = read_vcpu_ticks(&task_dir)?;
        if last_ticks.is_empty() {
            return Err(HostMetricsError::NoVcpuThreads { pid });
        }
        Ok(Self {
            task_dir,
            pid,
            ticks_per_sec: tck as f64,
            last_at: Instant::now(),
            last_ticks,
        })
    }

    /// CPU use of the vCPU threads since the previous sample (or since `new`).
    ///
    /// Threads are looked up again on every sample so vCPUs that appear later are picked up;
    /// a thread counts once it has a reading at both ends of an interval.
    pub(crate) fn sample(&mut self) -> Result<VcpuSample, HostMetricsError> {
        let now_ticks = read_vcpu_ticks(&self.task_dir)?;
        let now = Instant::now();
        if now_ticks.is_empty() {
            return Err(HostMetricsError::NoVcpuThreads { pid: self.pid });
        }
        let elapsed = (now - self.last_at).as_secs_f64();
        let mut max_pct: f64 = 0.0;
        let mut sum_pct = 0.0;
        let mut threads = 0;
        for (tid, ticks) in &now_ticks {
            if let Some(before) = self.last_ticks.get(tid) {
                let pct = if elapsed > 0.0 {
                    ticks.saturating_sub(*before) as f64 / self.ticks_per_sec / elapsed * 100.0
                } else {
                    0.0
                };
                max_pct = max_pct.max(pct);
                sum_pct += pct;
                threads += 1;
            }
        }
        self.last_at = now;
        self.last_ticks = now_ticks;
        Ok(VcpuSample {
            max_pct,
            sum_pct,
            threads,
        })
    }
}

/// utime+stime of every "CPU *" thread under a /proc/PID/task directory.
fn read_vcpu_ticks(task_dir: &Path) -> Result<HashMap<u32, u64>, HostMetricsError> {
    let entries = fs::read_dir(task_dir).map_err(|source| HostMetricsError::Io {
        path: task_dir.to_owned(),
        source,
    })?;
    let mut ticks = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| HostMetricsError::Io {
            path: task_dir.to_owned(),
            source,
        })?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread can exit between readdir and the reads below; it then simply does not count.
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if !comm.starts_with("CPU ") {
            continue;
        }
        let stat_path = entry.path().join("stat");
        let Ok(stat) = fs::read_to_string(&stat_path) else {
            continue;
        };
        let t = parse_stat_ticks(&stat).ok_or_else(|| HostMetricsError::Parse {
            path: stat_path,
            detail: format!("no utime/stime in {:?}", stat.trim_end()),
        })?;
        ticks.insert(tid, t);
    }
    Ok(ticks)
}

/// utime+stime (fields 14 and 15) from a /proc/.../stat line. The comm field (2) is wrapped
/// in parentheses but may itself contain spaces and ')', so fields are counted after the LAST ')'.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // `after` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Host conntrack table fill `(count, max)`; `None` when nf_conntrack is not loaded (then no
/// flow is tracked and the table cannot fill).
pub(crate) fn conntrack() -> Option<(u64, u64)> {
    conntrack_at(Path::new(PROC_SYS))
}

pub(crate) fn conntrack_at(root: &Path) -> Option<(u64, u64)> {
    let read = |name| {
        read_sysctl_at(root, name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((
        read("net.netfilter.nf_conntrack_count")?,
        read("net.netfilter.nf_conntrack_max")?,
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("bad sysctl name {name:?}")]
    BadName { name: String },
    #[error("reading sysctl {key}")]
    Read {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("setting sysctl {key} = {value:?}")]
    Write {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
}

/// Path of sysctl `name` under `root`. Dotted names map dots to directories
/// ("net.ipv4.tcp_mem" -> net/ipv4/tcp_mem). As with sysctl(8), a name containing '/' is taken
/// as already slash-separated, which is how a key with a dot inside one component (an
/// interface "eth0.1") is written.
fn sysctl_path(root: &Path, name: &str) -> Result<PathBuf, SysctlError> {
    let sep = if name.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = name.split(sep).collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(SysctlError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(parts.iter().fold(root.to_owned(), |p, part| p.join(part)))
}

/// Reads a host sysctl by dotted name. Whitespace runs (the kernel separates vector values
/// with tabs) become single spaces, so values compare and record as "4096 131072 6291456".
pub fn read_sysctl(name: &str) -> Result<String, SysctlError> {
    read_sysctl_at(Path::new(PROC_SYS), name)
}

pub(crate) fn read_sysctl_at(root: &Path, name: &str) -> Result<String, SysctlError> {
    let path = sysctl_path(root, name)?;
    let raw = fs::read_to_string(&path).map_err(|source| SysctlError::Read {
        key: name.to_owned(),
        source,
    })?;
    Ok(normalize(&raw))
}

/// A sysctl value as recorded and compared: whitespace runs (the kernel separates vector
/// values with tabs) become single spaces.
pub(crate) fn normalize(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn write_sysctl(name: &str, value: &str) -> Result<(), SysctlError> {
    write_sysctl_at(Path::new(PROC_SYS), name, value)
}

pub(crate) fn write_sysctl_at(root: &Path, name: &str, value: &str) -> Result<(), SysctlError> {
    let path = sysctl_path(root, name)?;
    let werr = |source| SysctlError::Write {
        key: name.to_owned(),
        value: value.to_owned(),
        source,
    };
    // Never create: a sysctl that does not exist must fail, not appear as a stray file. One
    // write() call, because /proc/sys parses each write on its own.
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(werr)?;
    f.write_all(format!("{value}\n").as_bytes()).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn stat_ticks_parse_after_last_paren() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "1234 (CPU 0/TCG) R 1 1234 1234 0 -1 4194368 100 0 0 0 700 42 0 0 20 0 3 0 5000",
                Some(742),
            ),
            // comm with spaces and parentheses, as a guest-chosen thread name could have.
            (
                "77 (a) b (c)) S 1 77 77 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1",
                Some(11),
            ),
            ("77 (short) S 1 2", None),
            ("no parens at all", None),
            ("77 (x) S 1 77 77 0 -1 0 0 0 0 0 five 6 0 0", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat_ticks(line), *want, "{line:?}");
        }
    }

    /// CPU time consumed so far by a thread of this process, from its own CPU clock: an
    /// independent measurement to check the /proc tick counting against.
    fn thread_cpu_seconds(thread: libc::pthread_t) -> f64 {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `thread` is a live thread (joined only after the last call); both
        // out-pointers point to locals.
        unsafe {
            assert_eq!(libc::pthread_getcpuclockid(thread, &mut clock), 0);
            let mut ts: libc::timespec = std::mem::zeroed();
            assert_eq!(libc::clock_gettime(clock, &mut ts), 0);
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        }
    }

    /// Spins a thread named like a vCPU thread of this test process and checks the sampler
    /// against the thread's own CPU clock, spinning and parked. Compared with the thread's real
    /// share rather than with 100%, because the host's 2 cores are shared with whatever else runs.
    #[test]
    fn vcpu_sampler_reads_own_threads() {
        use std::os::unix::thread::JoinHandleExt;

        let spin = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (spin.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("CPU 0/TEST".into())
            .spawn(move || {
                // std names the OS thread before running this closure, so once this arrives the
                // name is visible in /proc.
                ready_tx.send(()).unwrap();
                while !st.load(Ordering::Relaxed) {
                    if s.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    } else {
                        std::thread::park_timeout(Duration::from_millis(100));
                    }
                }
            })
            .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let pthread = worker.as_pthread_t();

        // Percent of one core by the thread's own clock over the same interval as `sample()`.
        let measure = |sampler: &mut VcpuSampler| {
            let (cpu0, t0) = (thread_cpu_seconds(pthread), Instant::now());
            sampler.sample().unwrap();
            // The interval is the measurement itself, not a synchronisation wait.
            std::thread::sleep(Duration::from_millis(1000));
            let got = sampler.sample().unwrap();
            let truth = (thread_cpu_seconds(pthread) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
            (got, truth)
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut sampler = VcpuSampler::new(std::process::id()).expect("CPU 0/TEST is visible");
            let busy = measure(&mut sampler);
            spin.store(false, Ordering::Relaxed);
            let idle = measure(&mut sampler);
            (busy, idle)
        }));
        stop.store(true, Ordering::Relaxed);
        worker.thread().unpark();
        worker.join().unwrap();
        let ((busy, busy_truth), (idle, idle_truth)) = result.unwrap();
        eprintln!("spinning: {busy:?} (own clock {busy_truth:.1}%); parked: {idle:?} (own clock {idle_truth:.1}%)");

        assert_eq!(busy.threads, 1, "{busy:?}");
        assert!((busy.sum_pct - busy.max_pct).abs() < 1e-9, "{busy:?}");
        // It spun at all (even on a loaded host it gets some share)...
        assert!(busy_truth > 5.0, "spinner got {busy_truth:.1}%");
        // ...and /proc ticks (10 ms each) agree with its own clock over ~1 s.
        assert!(
            (busy.max_pct - busy_truth).abs() < 6.0,
            "{busy:?} vs {busy_truth:.1}%"
        );
        assert!(
            idle.max_pct < 3.0 && idle_truth < 3.0,
            "{idle:?} vs {idle_truth:.1}%"
        );
    }

    /// A TCG QEMU with no devices whose 64 KiB BIOS is only a reset-vector stub; killed on drop.
    struct StubQemu {
        child: std::process::Child,
        bios: PathBuf,
    }

    impl StubQemu {
        fn start(tag: &str, reset_vector: &[u8]) -> Self {
            let bios = std::env::temp_dir()
                .join(format!("nicstorm-bios-{}-{tag}.bin", std::process::id()));
            let mut image = vec![0u8; 64 * 1024];
            image[0xfff0..0xfff0 + reset_vector.len()].copy_from_slice(reset_vector);
            fs::write(&bios, image).unwrap();
            let child = std::process::Command::new("qemu-system-x86_64")
                // debug-threads=on names the vCPU threads "CPU N/TCG"; libvirt always sets it.
                .args(["-name", "nicstorm-stub,debug-threads=on"])
                .args(["-machine", "pc,accel=tcg", "-m", "16", "-nodefaults"])
                .args(["-display", "none", "-monitor", "none", "-serial", "none"])
                .arg("-bios")
                .arg(&bios)
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("spawn qemu-system-x86_64");
            Self { child, bios }
        }

        /// Waits (bounded) until QEMU has created its vCPU thread.
        fn sampler(&mut self) -> VcpuSampler {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match VcpuSampler::new(self.child.id()) {
                    Ok(s) => return s,
                    Err(e) if Instant::now() < deadline => {
                        if let Some(status) = self.child.try_wait().unwrap() {
                            panic!("qemu exited with {status} before its vCPU appeared: {e}");
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("no vCPU thread within 20 s: {e}"),
                }
            }
        }
    }

    impl Drop for StubQemu {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = fs::remove_file(&self.bios);
        }
    }

    /// The distinction the sampler exists for, on a real QEMU: a guest spinning (`jmp $`) shows
    /// its vCPU near 100%, a halted one (`cli; hlt`) near 0%.
    #[test]
    #[ignore = "needs qemu-system-x86_64; `make test-vm` runs it"]
    fn vcpu_sampler_tells_spinning_from_halted_qemu() {
        // (vCPU sample, whole QEMU process CPU % over the same interval)
        let measure = |tag, code: &[u8]| {
            let mut qemu = StubQemu::start(tag, code);
            let mut sampler = qemu.sampler();
            let stat = PathBuf::from(format!("/proc/{}/stat", qemu.child.id()));
            let process_ticks = || parse_stat_ticks(&fs::read_to_string(&stat).unwrap()).unwrap();
            // Skip start-up work, then measure one second of steady state.
            sampler.sample().unwrap();
            let (p0, t0) = (process_ticks(), Instant::now());
            std::thread::sleep(Duration::from_millis(1000));
            let got = sampler.sample().unwrap();
            // SAFETY: sysconf has no preconditions.
            let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            let process_pct =
                (process_ticks() - p0) as f64 / tck / t0.elapsed().as_secs_f64() * 100.0;
            (got, process_pct)
        };
        let (spinning, spinning_process) = measure("spin", &[0xeb, 0xfe]);
        let (halted, halted_process) = measure("halt", &[0xfa, 0xf4, 0xeb, 0xfc]);
        eprintln!(
            "spinning guest: {spinning:?} (process {spinning_process:.1}%); \
             halted guest: {halted:?} (process {halted_process:.1}%)"
        );
        assert_eq!((spinning.threads, halted.threads), (1, 1));
        // Other VMs may share the host's 2 cores, so "busy" is a clear share, not 100%: the
        // spinning vCPU gets some CPU and is nearly all of what QEMU uses.
        assert!(spinning.max_pct > 5.0, "{spinning:?}");
        assert!(
            spinning.max_pct > 0.8 * spinning_process - 2.0,
            "{spinning:?} vs process {spinning_process:.1}%"
        );
        assert!(halted.max_pct < 2.0, "{halted:?}");
    }

    #[test]
    fn vcpu_sampler_rejects_process_without_vcpus() {
        // This process's threads (the test harness) at this moment may include "CPU 0/TEST"
        // from the other test, so use pid 1 (init), which has no such thread.
        match VcpuSampler::new(1) {
            Err(e @ HostMetricsError::NoVcpuThreads { .. }) => assert!(!e.is_gone()),
            other => panic!("expected NoVcpuThreads, got {other:?}"),
        }
        let missing = VcpuSampler::new(u32::MAX).unwrap_err();
        assert!(missing.is_gone(), "{missing:?}");
        assert!(missing.to_string().contains("/proc/4294967295/task"));
    }

    /// A throwaway /proc/sys look-alike, removed when dropped.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(files: &[(&str, &str)]) -> Self {
            use std::sync::atomic::AtomicU32;
            static N: AtomicU32 = AtomicU32::new(0);
            let root = std::env::temp_dir().join(format!(
                "nicstorm-sys-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&root);
            for (rel, content) in files {
                let p = root.join(rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, content).unwrap();
            }
            Self(root)
        }

        fn get(&self, rel: &str) -> String {
            fs::read_to_string(self.0.join(rel)).unwrap()
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn real_sysctl_and_conntrack_read() {
        assert_eq!(read_sysctl("kernel.ostype").unwrap(), "Linux");
        let err = read_sysctl("kernel.no_such_key_here").unwrap_err();
        assert!(err.to_string().contains("kernel.no_such_key_here"), "{err}");
        // Loaded or not, a present table must have a positive max and count <= max.
        if let Some((count, max)) = conntrack() {
            assert!(max > 0 && count <= max, "{count}/{max}");
        }
    }

    #[test]
    fn sysctl_paths_and_values() {
        let sys = FakeSys::new(&[
            ("net/ipv4/tcp_rmem", "4096\t131072\t6291456\n"),
            ("net/ipv4/conf/eth0.1/rp_filter", "1\n"),
            ("net/netfilter/nf_conntrack_count", "17\n"),
            ("net/netfilter/nf_conntrack_max", "262144\n"),
        ]);
        let root = &sys.0;
        assert_eq!(
            read_sysctl_at(root, "net.ipv4.tcp_rmem").unwrap(),
            "4096 131072 6291456"
        );
        assert_eq!(
            read_sysctl_at(root, "net/ipv4/conf/eth0.1/rp_filter").unwrap(),
            "1"
        );
        assert_eq!(conntrack_at(root), Some((17, 262144)));
        assert_eq!(conntrack_at(&root.join("nowhere")), None);

        for bad in ["", "net..ipv4", "net.ipv4.", "net/../etc", "/net/ipv4"] {
            assert!(
                matches!(read_sysctl_at(root, bad), Err(SysctlError::BadName { .. })),
                "{bad:?}"
            );
        }

        write_sysctl_at(root, "net.ipv4.tcp_rmem", "1 2 3").unwrap();
        assert_eq!(sys.get("net/ipv4/tcp_rmem"), "1 2 3\n");
        let err = write_sysctl_at(root, "net.ipv4.nope", "1").unwrap_err();
        assert!(
            err.to_string().contains("net.ipv4.nope") && err.to_string().contains("\"1\""),
            "{err}"
        );
        assert!(
            !root.join("net/ipv4/nope").exists(),
            "write must not create"
        );
    }
}
