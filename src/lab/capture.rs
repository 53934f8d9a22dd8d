//! The packet ring of a lab's server tap: a `tcpdump` child that keeps the last packets'
//! headers (`-s SNAPLEN`) in a ring of `CAPTURE_FILES` files (`-C`, `-W`), the oldest
//! overwritten, so its size on disk is bounded whatever the cell does. It writes into the
//! lab's state directory (root's alone), never into a results directory, so nothing there
//! can plant a link where root's tcpdump opens its next file; the experiment copies the ring
//! into the cell directory when it keeps it, and the lab's teardown removes it otherwise.
//!
//! `Capture` is the guard: dropping it stops tcpdump (SIGTERM, by its PID, then SIGKILL),
//! so a cell that ends any way (an error, a panic, a signal) leaves no capture running. A
//! runner killed with -9 leaves one: the sweep finds it by the name of the lab directory it
//! writes into (`.../nicstorm-RID/capture/ring.pcap`) and kills it by PID.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::model::names::{run_of_tag, RunId};
use crate::support::procs::{self, signal};

/// Files in the ring. At most 10, so their suffix is one digit (`ring.pcap0`..`ring.pcap7`):
/// Debian's AppArmor profile for tcpdump lets it write `*.pcap` and `*.pcap[0-9]` only.
pub(crate) const CAPTURE_FILES: u32 = 8;

/// The directory of the ring inside the lab's state directory, and inside a cell's.
pub(crate) const CAPTURE_DIR: &str = "capture";

/// The ring's file name; tcpdump appends the file's number.
const RING: &str = "ring.pcap";

/// tcpdump's stderr: what it listened on, and at the end how many packets it captured and
/// how many the kernel dropped (the ring misses those).
const LOG: &str = "tcpdump.txt";

/// How long tcpdump may take to open the tap and its first file, and to exit when told.
const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// A running capture of one interface.
#[derive(Debug)]
pub(crate) struct Capture {
    child: Option<Child>,
    iface: String,
    dir: PathBuf,
}

/// What the ring holds once tcpdump has stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ring {
    /// The ring's files, oldest first.
    pub(crate) files: Vec<PathBuf>,
    /// Their size in bytes.
    pub(crate) bytes: u64,
    /// tcpdump's own account: packets captured, and dropped by the kernel (None: not said).
    pub(crate) captured: Option<u64>,
    pub(crate) dropped: Option<u64>,
}

/// Each file's size for tcpdump's `-C`, in its unit of 1,000,000 bytes: the ring's size
/// split over `CAPTURE_FILES`, rounded down (the ring stays within its setting), at least 1.
pub(crate) fn file_megabytes(ring_bytes: u64) -> u64 {
    (ring_bytes / u64::from(CAPTURE_FILES) / 1_000_000).max(1)
}

/// tcpdump's arguments for a ring of `iface` in `dir`.
fn args(iface: &str, dir: &Path, snaplen: u32, ring_bytes: u64) -> Vec<String> {
    vec![
        "-i".into(),
        iface.into(),
        "-n".into(),
        // No promiscuous mode: the tap's frames are all the VM's anyway.
        "-p".into(),
        "-s".into(),
        snaplen.to_string(),
        "-C".into(),
        file_megabytes(ring_bytes).to_string(),
        "-W".into(),
        CAPTURE_FILES.to_string(),
        // Debian's tcpdump drops to user tcpdump, who could not write in root's directory.
        "-Z".into(),
        "root".into(),
        "-w".into(),
        dir.join(RING).to_string_lossy().into_owned(),
    ]
}

impl Capture {
    /// Starts tcpdump on `iface`, writing its ring into `dir` (made root's alone; it must lie
    /// in a directory only root can write, such as the lab's state directory). Returns once
    /// tcpdump has opened the interface and its first file; an error names the interface and
    /// carries what tcpdump said.
    pub(crate) fn start(iface: &str, dir: &Path, snaplen: u32, ring_bytes: u64) -> Result<Capture> {
        let dir = crate::support::trust::private_dir(dir)
            .with_context(|| format!("the packet ring of {iface}"))?;
        let log = std::fs::File::create(dir.join(LOG))
            .with_context(|| format!("creating {}", dir.join(LOG).display()))?;
        let child = Command::new("tcpdump")
            .args(args(iface, &dir, snaplen, ring_bytes))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting tcpdump on {iface} (scripts/setup-host.sh installs it)")
            })?;
        let mut capture = Capture {
            child: Some(child),
            iface: iface.to_owned(),
            dir,
        };
        capture.wait_listening()?;
        Ok(capture)
    }

    /// Waits until tcpdump says it listens (it has opened its first file by then).
    fn wait_listening(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            let said = self.said();
            let child = self
                .child
                .as_mut()
                .expect("a started capture has its child");
            if let Some(status) = child.try_wait().context("waiting for tcpdump")? {
                self.child = None;
                bail!(
                    "tcpdump on {} exited ({status}) before it listened: {}",
                    self.iface,
                    said.trim()
                );
            }
            if said.contains("listening on") && self.dir.join(format!("{RING}0")).exists() {
                return Ok(());
            }
            if started.elapsed() > START_LIMIT {
                bail!(
                    "tcpdump on {} did not listen within {START_LIMIT:?}: {}",
                    self.iface,
                    said.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What tcpdump wrote on its stderr so far.
    fn said(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join(LOG)) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The interface captured.
    pub(crate) fn iface(&self) -> &str {
        &self.iface
    }

    /// The capture's process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops tcpdump (it flushes and closes its file on SIGTERM) and says what the ring holds.
    pub(crate) fn stop(&mut self) -> Result<Ring> {
        if let Some(child) = self.child.take() {
            stop_child(child, &self.iface)?;
        }
        self.ring()
    }

    /// The ring's files, oldest first, with tcpdump's account.
    fn ring(&self) -> Result<Ring> {
        let mut files = vec![];
        for e in std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
        {
            let e = e.with_context(|| format!("reading {}", self.dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(RING) {
                let meta = e
                    .metadata()
                    .with_context(|| format!("{}", e.path().display()))?;
                files.push((meta.modified().ok(), meta.len(), e.path()));
            }
        }
        files.sort();
        let said = self.said();
        Ok(Ring {
            bytes: files.iter().map(|(_, len, _)| len).sum(),
            files: files.into_iter().map(|(_, _, p)| p).collect(),
            captured: count_before(&said, " packets captured"),
            dropped: count_before(&said, " packets dropped by kernel"),
        })
    }

    /// Copies the ring (and tcpdump's account) into `dest`/capture/, after stopping it.
    /// Returns the directory written.
    pub(crate) fn keep(&mut self, dest: &Path) -> Result<(PathBuf, Ring)> {
        let ring = self.stop()?;
        let out = dest.join(CAPTURE_DIR);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for f in ring
            .files
            .iter()
            .chain(std::iter::once(&self.dir.join(LOG)))
        {
            let name = f.file_name().expect("a file in the ring's directory");
            std::fs::copy(f, out.join(name))
                .with_context(|| format!("copying {} to {}", f.display(), out.display()))?;
        }
        Ok((out, ring))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Err(e) = stop_child(child, &self.iface) {
                tracing::warn!("{e:#}");
            }
        }
    }
}

/// The number just before `what` in tcpdump's closing lines (`123 packets captured`).
fn count_before(said: &str, what: &str) -> Option<u64> {
    said.lines()
        .find_map(|l| {
            l.strip_suffix(what)
                .or_else(|| l.split_once(what).map(|(n, _)| n))
        })
        .and_then(|n| n.trim().parse().ok())
}

/// SIGTERM, a bounded wait, then SIGKILL: the child is reaped on every path.
fn stop_child(mut child: Child, iface: &str) -> Result<()> {
    let pid = child.id();
    signal(pid, libc::SIGTERM);
    let asked = Instant::now();
    loop {
        if child.try_wait().context("waiting for tcpdump")?.is_some() {
            return Ok(());
        }
        if asked.elapsed() > STOP_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("tcpdump on {iface} (pid {pid}) ignored SIGTERM for {STOP_LIMIT:?} and was killed; its ring may be cut short");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tcpdump writing a lab's ring, found by its command line: (pid, the lab's run, the
/// interface).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Running {
    pub(crate) pid: u32,
    pub(crate) run: RunId,
    pub(crate) iface: String,
}

/// The lab ring a command line writes, if it is one: tcpdump with `-w .../nicstorm-RID/capture/ring.pcap`.
fn lab_ring_of(argv: &[String]) -> Option<(RunId, String)> {
    let prog = Path::new(argv.first()?).file_name()?.to_str()?;
    if prog != "tcpdump" {
        return None;
    }
    let arg = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
    };
    let file = Path::new(arg("-w")?);
    let capture = file.parent()?;
    if file.file_name()?.to_str()? != RING || capture.file_name()?.to_str()? != CAPTURE_DIR {
        return None;
    }
    let run = run_of_tag(capture.parent()?.file_name()?.to_str()?)?;
    Some((run, arg("-i").cloned().unwrap_or_default()))
}

/// Every lab ring's tcpdump running on this host (from /proc).
pub(crate) fn running() -> Vec<Running> {
    procs::processes()
        .into_iter()
        .filter_map(|(pid, argv)| {
            let (run, iface) = lab_ring_of(&argv)?;
            Some(Running { pid, run, iface })
        })
        .collect()
}

/// Stops a leftover capture (not our child: signalled by PID, then watched in /proc until it
/// is gone). An error when it outlives SIGKILL.
pub(crate) fn kill_leftover(r: &Running) -> Result<()> {
    if procs::terminate(r.pid, STOP_LIMIT) {
        return Ok(());
    }
    bail!(
        "leftover tcpdump of lab {} on {} (pid {}) survived SIGKILL",
        r.run.tag(),
        r.iface,
        r.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_split_into_files_of_whole_megabytes_within_its_size() {
        assert_eq!(file_megabytes(64 << 20), 8); // 8 x 8 MB = 64 MB <= 64 MiB
        assert_eq!(
            file_megabytes(8 << 20),
            1,
            "the smallest ring setting: 8 x 1 MB <= 8 MiB"
        );
        assert_eq!(file_megabytes(1 << 20), 1, "at least 1 MB a file");
        let a = args(
            "nst0a0b0cs",
            Path::new("/var/lib/nicstorm/labs/nicstorm-0a0b0c/capture"),
            96,
            64 << 20,
        );
        assert_eq!(
            a.join(" "),
            "-i nst0a0b0cs -n -p -s 96 -C 8 -W 8 -Z root -w /var/lib/nicstorm/labs/nicstorm-0a0b0c/capture/ring.pcap"
        );
    }

    #[test]
    fn a_lab_ring_is_known_by_its_command_line() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let (run, iface) = lab_ring_of(&argv(
            "tcpdump -i nst0a0b0cs -n -p -s 96 -C 8 -W 8 -Z root -w /x/labs/nicstorm-0a0b0c/capture/ring.pcap",
        ))
        .unwrap();
        assert_eq!(
            (run.tag().as_str(), iface.as_str()),
            ("nicstorm-0a0b0c", "nst0a0b0cs")
        );
        for other in [
            "tcpdump -i eth0 -w x.pcap",
            "tcpdump -i nst0a0b0cs -w /x/labs/nicstorm-0a0b0c/other/ring.pcap",
            "tcpdump -i nst0a0b0cs -w /x/labs/somebody/capture/ring.pcap",
            "vi -w /x/labs/nicstorm-0a0b0c/capture/ring.pcap",
            "tcpdump -i nst0a0b0cs",
        ] {
            assert_eq!(lab_ring_of(&argv(other)), None, "{other}");
        }
    }

    #[test]
    fn tcpdumps_account_is_read_from_its_closing_lines() {
        let said = "tcpdump: listening on nst0a0b0cs, link-type EN10MB (Ethernet), snapshot length 96 bytes\n\
                    198951 packets captured\n200011 packets received by filter\n0 packets dropped by kernel\n";
        assert_eq!(count_before(said, " packets captured"), Some(198_951));
        assert_eq!(count_before(said, " packets dropped by kernel"), Some(0));
        assert_eq!(
            count_before("tcpdump: listening on x\n", " packets captured"),
            None
        );
    }

    /// Two network namespaces of this test's own, joined by a veth pair; removed on drop.
    struct Pair {
        ns: [String; 2],
    }

    impl Pair {
        fn new() -> Pair {
            let id = std::process::id() % 100_000;
            let ns = [format!("nsring{id}a"), format!("nsring{id}b")];
            let sh = |args: &[&str]| {
                let st = Command::new("ip").args(args).status().expect("ip runs");
                assert!(st.success(), "ip {}", args.join(" "));
            };
            for n in &ns {
                let _ = Command::new("ip")
                    .args(["netns", "del", n])
                    .stderr(Stdio::null())
                    .status();
                sh(&["netns", "add", n]);
            }
            let (va, vb) = (format!("nsrg{id}a"), format!("nsrg{id}b"));
            sh(&[
                "link", "add", &va, "netns", &ns[0], "type", "veth", "peer", "name", &vb, "netns",
                &ns[1],
            ]);
            for (n, v, a) in [
                (&ns[0], &va, "10.250.7.1/24"),
                (&ns[1], &vb, "10.250.7.2/24"),
            ] {
                sh(&["-n", n, "addr", "add", a, "dev", v]);
                sh(&["-n", n, "link", "set", v, "up"]);
            }
            Pair { ns }
        }

        /// Runs `f` on a thread inside namespace `i` (a child it spawns lives there too).
        fn inside<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{}", self.ns[i]);
            std::thread::spawn(move || {
                use std::os::fd::AsRawFd;
                let ns = std::fs::File::open(&path).expect("the namespace's file");
                // SAFETY: setns(2) on an open namespace fd; it moves this thread only.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread inside the namespace")
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            // Deleting a namespace deletes its end of the veth, and the peer with it.
            for n in &self.ns {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }

    /// A real tcpdump on a veth in a namespace of the test's own (never the host's uplink):
    /// the ring is written, rotates within its size, is readable with `tcpdump -r`, is found
    /// by its command line (the sweep's way) and is gone once stopped, and `keep` copies it.
    #[test]
    fn a_real_ring_on_a_veth_is_bounded_and_readable() {
        assert!(
            Command::new("tcpdump").arg("--version").output().is_ok(),
            "tcpdump is not installed: scripts/setup-host.sh installs it"
        );
        let pair = Pair::new();
        let base = std::env::temp_dir().join(format!("nicstorm-ring-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let base = crate::support::trust::private_dir(&base).unwrap();
        let dir = base.join("labs/nicstorm-0c0ffe").join(CAPTURE_DIR);
        let ring_bytes: u64 = 8 << 20; // 8 files of 1 MB
        let iface = format!("nsrg{}a", std::process::id() % 100_000);
        let (i, d) = (iface.clone(), dir.clone());
        let mut capture = pair
            .inside(0, move || Capture::start(&i, &d, 96, ring_bytes))
            .unwrap();
        let pid = capture.pid().unwrap();
        let found = running();
        assert!(
            found
                .iter()
                .any(|r| r.pid == pid && r.run.as_str() == "0c0ffe" && r.iface == iface),
            "{found:?}"
        );
        // 150,000 datagrams: 96 + 16 bytes each in the ring, 16.8 MB, twice the ring.
        pair.inside(1, || {
            let s = std::net::UdpSocket::bind("10.250.7.2:0").unwrap();
            for _ in 0..150_000 {
                let _ = s.send_to(&[7u8; 200], "10.250.7.1:9");
            }
        });
        let dest = base.join("cell");
        let (kept, ring) = capture.keep(&dest).unwrap();
        assert!(!running().iter().any(|r| r.pid == pid), "stopped");
        assert_eq!(ring.files.len(), CAPTURE_FILES as usize, "{ring:?}");
        assert!(
            ring.bytes <= ring_bytes,
            "{} bytes > the ring's {ring_bytes}",
            ring.bytes
        );
        assert!(ring.bytes > ring_bytes / 2, "{ring:?}");
        let captured = ring.captured.expect("tcpdump's account");
        let mut read = 0;
        for f in &ring.files {
            let out = Command::new("tcpdump")
                .args(["-n", "-r"])
                .arg(f)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tcpdump -r {}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("10.250.7.2") && text.contains("UDP"),
                "{}",
                f.display()
            );
            read += text.lines().count() as u64;
        }
        assert!(
            read < captured,
            "the ring overwrote its oldest packets: {read} of {captured}"
        );
        let names: Vec<String> = std::fs::read_dir(&kept)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), CAPTURE_FILES as usize + 1, "{names:?}");
        assert!(names.contains(&LOG.to_string()), "{names:?}");

        // A capture whose runner is gone is stopped by PID, as the sweep does.
        let (i, d) = (iface.clone(), dir.clone());
        let capture = pair
            .inside(0, move || Capture::start(&i, &d, 96, ring_bytes))
            .unwrap();
        let left = running()
            .into_iter()
            .find(|r| Some(r.pid) == capture.pid())
            .unwrap();
        kill_leftover(&left).unwrap();
        drop(capture);
        assert!(!running().iter().any(|r| r.pid == left.pid));
        // An interface that does not exist is an error naming it, with tcpdump's words.
        let err = Capture::start("nsrg-none", &dir, 96, ring_bytes).unwrap_err();
        assert!(
            format!("{err:#}").contains("tcpdump on nsrg-none exited"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
