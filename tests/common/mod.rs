//! Helpers shared by the real-VM test files (vm.rs, faults.rs): the binary, scratch dirs,
//! what of ours is left on the host, the CSV, a runner whose progress lines can be waited on.

#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nicstorm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The stdout of `p a...`; a command that fails panics, naming it: "nothing left" must
/// never pass because the command that lists what is left did not run.
fn out(p: &str, a: &[&str]) -> String {
    let o = Command::new(p)
        .args(a)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {p}: {e}"));
    assert!(
        o.status.success(),
        "`{p} {}` failed ({}): {}",
        a.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything of ours on the host, by the name patterns of docs/ARCHITECTURE.md.
pub fn anything_of_ours() -> Vec<String> {
    let mut left = vec![];
    for name in out(
        "virsh",
        &["-c", "qemu:///system", "list", "--all", "--name"],
    )
    .lines()
    {
        if name.starts_with("nicstorm-") {
            left.push(format!("domain {name}"));
        }
    }
    for line in out("ip", &["-o", "link", "show"]).lines() {
        let name = line.split(": ").nth(1).unwrap_or("");
        if nicstorm::model::names::run_of_link(name.split('@').next().unwrap_or("")).is_some() {
            left.push(format!("link {name}"));
        }
    }
    // passt mode's namespaces.
    for line in out("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if nicstorm::model::names::run_of_link(name).is_some() {
            left.push(format!("network namespace {name}"));
        }
    }
    for table in ["filter", "nat"] {
        for line in out("iptables", &["-w", "-t", table, "-S"]).lines() {
            if line.contains("nicstorm-") {
                left.push(format!("rule {line}"));
            }
        }
    }
    // A lab's packet ring: tcpdump writing .../nicstorm-RID/capture/ring.pcap.
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with("tcpdump ")
                && cmd.contains("/capture/ring.pcap")
                && cmd.contains("/nicstorm-")
            {
                left.push(format!(
                    "capture {}: {cmd}",
                    p.file_name().to_string_lossy()
                ));
            }
            // A lab's passt: its log is in the lab's state directory.
            // argv[0] is `passt` (the host's) or a recipe's path ending in `/bin/passt`.
            let program = cmd.split(' ').next().unwrap_or_default();
            if (program == "passt" || program.ends_with("/passt"))
                && cmd.contains("--log-file ")
                && cmd.contains("/nicstorm-")
                && !std::fs::read_to_string(p.path().join("stat"))
                    .unwrap_or_default()
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            {
                left.push(format!("passt {}: {cmd}", p.file_name().to_string_lossy()));
            }
        }
    }
    // A save that did not complete (lab/saved.rs stages it under its STAGING_PREFIX).
    if let Ok(entries) = std::fs::read_dir(nicstorm::lab::state_root().join("saved")) {
        left.extend(
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(nicstorm::lab::saved::STAGING_PREFIX)
                })
                .map(|e| format!("incomplete saved lab {}", e.path().display())),
        );
    }
    if let Ok(entries) = std::fs::read_dir(nicstorm::lab::state_root().join("labs")) {
        left.extend(
            entries
                .flatten()
                .map(|e| format!("lab dir {}", e.path().display())),
        );
    }
    left
}

pub fn nicstorm_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nicstorm"));
    c.current_dir(repo()).env("CI", "1");
    c
}

pub fn read_rows(csv: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(csv).unwrap();
    r.records().map(|r| r.unwrap()).collect()
}

/// The rows of a cells.csv as this build reads them: every line must parse (a torn or
/// malformed line fails), and no torn tail was set aside.
pub fn valid_rows(csv: &Path) -> Vec<nicstorm::results::CellRow> {
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(text.ends_with('\n'), "{} ends mid-line", csv.display());
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<nicstorm::results::CellRow> = r
        .deserialize()
        .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", csv.display())))
        .collect();
    assert!(
        !csv.with_extension("csv.torn").exists(),
        "a torn line was set aside"
    );
    rows
}

/// `ssh -i key root@host command`, as a user would, without host-key prompts.
pub fn ssh(key: &Path, host: &str, command: &str) -> std::process::ExitStatus {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30"])
        .arg(format!("root@{host}"))
        .arg(command)
        .status()
        .unwrap()
}

pub fn sysctl(name: &str) -> String {
    nicstorm::host::metrics::read_sysctl(name)
        .unwrap()
        .trim()
        .to_owned()
}

/// Nothing of ours left, and the host sysctl back at `conntrack_max`.
pub fn assert_clean(conntrack_max: &str) {
    assert_eq!(anything_of_ours(), Vec::<String>::new(), "leftovers");
    assert_eq!(
        sysctl("net.netfilter.nf_conntrack_max"),
        conntrack_max,
        "host sysctl restored"
    );
}

/// A `nicstorm run` whose stderr lines can be waited for (and are echoed with `|`).
pub struct Run {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Run {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = nicstorm_bin();
        cmd.args(args).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("| {line}");
                let _ = tx.send(line);
            }
        });
        Run {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Waits (bounded) for a stderr line whose trimmed text starts with `prefix`.
    pub fn wait_for(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line starting {prefix:?} within {limit:?}"));
            self.seen.push(line.clone());
            if line.trim_start().starts_with(prefix) {
                return line;
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits (bounded) for the exit; returns its code and every stderr line.
    pub fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(t.elapsed() < limit, "runner did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

/// A test that fails while its runner still runs must not leave it holding the run lock
/// (and its VMs) for the tests after it: the runner gets SIGINT, which tears its lab down,
/// and SIGKILL only if teardown does not end within two minutes.
impl Drop for Run {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: kill(2) on our own, still running child's PID (no assert: may run mid-panic).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(120) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a `nicstorm run` into `results` left to explain itself, for the message of a failed
/// exit-status assertion (CI shows the panic message whole, but only the tail of the output):
/// each row that did not end well, with its error and phase, and for an `error` row the last
/// lines of its cell directory's console, passt and verdict files.
pub fn explain_run(results: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let csvs: Vec<PathBuf> = std::fs::read_dir(results)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("cells.csv"))
        .filter(|p| p.exists())
        .collect();
    if csvs.is_empty() {
        let _ = write!(out, "\nno cells.csv under {}", results.display());
    }
    for csv in csvs {
        let mut r = match csv::Reader::from_path(&csv) {
            Ok(r) => r,
            Err(e) => {
                let _ = write!(out, "\n{}: {e}", csv.display());
                continue;
            }
        };
        let header = r.headers().cloned().unwrap_or_default();
        let col = |row: &csv::StringRecord, name: &str| -> String {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| row.get(i))
                .unwrap_or("")
                .to_string()
        };
        for row in r.records().flatten() {
            let verdict = col(&row, "verdict");
            let _ = write!(
                out,
                "\n{} r{}: {verdict} (phase {:?}) {}",
                col(&row, "cell_id"),
                col(&row, "repetition"),
                col(&row, "error_phase"),
                col(&row, "error")
            );
            if verdict != "error" {
                continue;
            }
            let dir = csv.with_file_name(col(&row, "run_id")).join(format!(
                "{}-r{}",
                col(&row, "cell_id"),
                col(&row, "repetition")
            ));
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.ends_with("console.log") || n.ends_with("passt.log") || n == "verdict.txt"
                })
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(4)..];
                let _ = write!(
                    out,
                    "\n  {}:\n    {}",
                    f.file_name().unwrap_or_default().to_string_lossy(),
                    tail.join("\n    ")
                );
            }
        }
    }
    out
}
