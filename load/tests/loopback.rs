//! Runs the real storm-load binary as server and client on loopback: counts on
//! both sides after the ramp, exact teardown counts after a FIN or RST exit,
//! and bulk traffic both ways during the hold.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_storm-load");
const COUNT: u64 = 3000;
const LIMIT: Duration = Duration::from_secs(30);

/// A running storm-load whose stdout lines are collected; killed on drop so a
/// failing assert does not leak it.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut cmd = Command::new(BIN);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            // Start like a background job of a non-interactive shell: with
            // SIGINT ignored, which storm-load must undo itself.
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn storm-load");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Proc { child, lines }
    }

    /// Waits (bounded) for an output line satisfying `pred` and returns it.
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        let mut exited = None;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            // Fail fast if it died, after one more look at what it printed.
            if let Some(st) = exited {
                panic!(
                    "storm-load exited ({st}) without {what}; got {:?}",
                    self.lines.lock().unwrap()
                );
            }
            exited = self.child.try_wait().unwrap();
            if exited.is_some() {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {LIMIT:?}; got {:?}",
                self.lines.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: the pid is our own unreaped child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the pipe.
                thread::sleep(Duration::from_millis(50));
                return st.code().expect("exited by a signal");
            }
            assert!(
                Instant::now() < deadline,
                "storm-load did not exit within {LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn kind(line: &str, k: &str) -> bool {
    line.contains(&format!("\"kind\":\"{k}\""))
}

/// The integer value of `"key":N` in a protocol line.
fn field(line: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The number value of `"key":N.NNN` in a protocol line.
fn float_field(line: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn status_line(path: &std::path::Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if pred(s.trim_end()) {
                return s.trim_end().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "status file {path:?} never matched; last {:?}",
            std::fs::read_to_string(path)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Ports unlikely to collide between concurrent test runs, and below the
/// usual ephemeral range (32768-60999) so the clients' own ports do not take them.
fn ports(slot: u32) -> (u16, u16) {
    let base = 20000 + (std::process::id() % 1000) * 12 + slot * 4;
    (base as u16, base as u16 + 3)
}

/// CPUs this test may run on, which is what storm-load's default `--procs` uses.
fn cpus() -> u64 {
    // SAFETY: cpu_set_t is plain data.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as u64
    }
}

/// One ramp, hold and disconnect. `procs` is passed to both roles as
/// `--procs`; `None` leaves them at the default, one worker per CPU.
fn cycle(on_exit: &str, slot: u32, procs: Option<u64>) {
    let (p0, p1) = ports(slot);
    let status = std::env::temp_dir().join(format!(
        "storm-load-test-{}-{on_exit}.status",
        std::process::id()
    ));
    let ports_arg = format!("{p0}-{p1}");
    let procs_arg = procs.map(|p| p.to_string());
    let procs_opt: Vec<&str> = match &procs_arg {
        Some(p) => vec!["--procs", p],
        None => vec![],
    };
    let mut server = Proc::spawn(
        &[
            &[
                "server",
                "--ports",
                &ports_arg,
                "--bind",
                "127.0.0.1",
                "--interval",
                "50",
                "--status-file",
                status.to_str().unwrap(),
            ],
            &procs_opt[..],
        ]
        .concat(),
    );
    let start = server.wait_line("server start", |l| kind(l, "start"));
    assert_eq!(field(&start, "procs"), Some(procs.unwrap_or_else(cpus)));
    assert_eq!(field(&start, "bulk_out"), Some(0), "{start}");

    let target = format!("127.0.0.1:{p0}-{p1}");
    let count = COUNT.to_string();
    let mut client = Proc::spawn(
        &[
            &[
                "client",
                "--target",
                &target,
                "--count",
                &count,
                "--concurrency",
                "200",
                "--on-exit",
                on_exit,
                "--interval",
                "50",
            ],
            &procs_opt[..],
        ]
        .concat(),
    );
    let start = client.wait_line("client start", |l| kind(l, "start"));
    assert_eq!(field(&start, "procs"), Some(procs.unwrap_or_else(cpus)));
    assert_eq!(field(&start, "bulk_in"), Some(0), "{start}");
    let reached = client.wait_line("client reached", |l| kind(l, "reached"));
    assert_eq!(field(&reached, "established"), Some(COUNT), "{reached}");
    assert_eq!(field(&reached, "failed"), Some(0), "{reached}");
    assert_eq!(field(&reached, "attempted"), Some(COUNT), "{reached}");

    let held = status_line(&status, |l| field(l, "established") == Some(COUNT));
    assert_eq!(field(&held, "accepted"), Some(COUNT), "{held}");
    assert_eq!(field(&held, "closed"), Some(0), "{held}");

    client.signal(libc::SIGINT);
    assert_eq!(client.wait_exit(), 0);
    let sig = client.wait_line("client signal", |l| kind(l, "signal"));
    assert!(sig.contains("\"signal\":\"SIGINT\""), "{sig}");
    assert!(sig.contains(&format!("\"on_exit\":\"{on_exit}\"")), "{sig}");
    let summary = client.wait_line("client summary", |l| kind(l, "summary"));
    // Without --bulk-in/--bulk-out nothing is sent either way.
    assert_eq!(field(&summary, "bulk_tx_bytes"), Some(0), "{summary}");
    assert_eq!(field(&summary, "bulk_rx_bytes"), Some(0), "{summary}");

    let drained = server.wait_line("server drained", |l| {
        kind(l, "progress")
            && field(l, "established") == Some(0)
            && field(l, "accepted") == Some(COUNT)
    });
    assert_eq!(field(&drained, "closed"), Some(COUNT), "{drained}");
    assert_eq!(field(&drained, "failed"), Some(0), "{drained}");
    let want_resets = if on_exit == "rst" { COUNT } else { 0 };
    assert_eq!(field(&drained, "resets"), Some(want_resets), "{drained}");

    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), 0);
    let summary = server.wait_line("server summary", |l| kind(l, "summary"));
    assert_eq!(field(&summary, "accepted"), Some(COUNT), "{summary}");
    assert_eq!(field(&summary, "closed"), Some(COUNT), "{summary}");
    assert_eq!(
        field(&summary, "peak_established"),
        Some(COUNT),
        "{summary}"
    );
    assert_eq!(field(&summary, "bulk_tx_bytes"), Some(0), "{summary}");
    assert_eq!(field(&summary, "bulk_rx_bytes"), Some(0), "{summary}");
    assert!(
        !status.exists(),
        "status file must be removed when the server exits"
    );
}

#[test]
fn fin_disconnect_is_counted_exactly() {
    cycle("fin", 0, None);
}

#[test]
fn rst_disconnect_is_counted_exactly() {
    cycle("rst", 1, Some(3));
}

/// Waits for progress lines of `p` a second apart, from `t0` on, and checks
/// that both byte counters grew by at least one 64 KiB write in between.
fn bulk_grows(p: &mut Proc, who: &str, t0: f64) {
    let at = |t: f64| move |l: &str| kind(l, "progress") && float_field(l, "t") >= Some(t);
    let a = p.wait_line(&format!("{who} progress"), at(t0));
    let b = p.wait_line(
        &format!("{who} progress a second later"),
        at(float_field(&a, "t").unwrap() + 1.0),
    );
    for key in ["bulk_tx_bytes", "bulk_rx_bytes"] {
        let (x, y) = (field(&a, key).unwrap(), field(&b, key).unwrap());
        assert!(y >= x + 65536, "{who} {key} {x} -> {y}:\n{a}\n{b}");
    }
}

#[test]
fn bulk_traffic_flows_both_ways_during_the_hold() {
    const N: u64 = 300;
    let (p0, p1) = ports(2);
    let ports_arg = format!("{p0}-{p1}");
    let mut server = Proc::spawn(&[
        "server",
        "--ports",
        &ports_arg,
        "--bind",
        "127.0.0.1",
        "--interval",
        "50",
        "--bulk-out",
        "2",
    ]);
    let start = server.wait_line("server start", |l| kind(l, "start"));
    assert_eq!(field(&start, "bulk_out"), Some(2), "{start}");

    let target = format!("127.0.0.1:{p0}-{p1}");
    let count = N.to_string();
    let mut client = Proc::spawn(&[
        "client",
        "--target",
        &target,
        "--count",
        &count,
        "--interval",
        "50",
        "--bulk-in",
        "2",
    ]);
    let start = client.wait_line("client start", |l| kind(l, "start"));
    assert_eq!(field(&start, "bulk_in"), Some(2), "{start}");
    // The bulk connections are among the first up; the ramp goes on regardless.
    let reached = client.wait_line("client reached", |l| kind(l, "reached"));
    assert_eq!(field(&reached, "established"), Some(N), "{reached}");
    assert_eq!(field(&reached, "failed"), Some(0), "{reached}");
    let t = float_field(&reached, "t").unwrap();
    bulk_grows(&mut client, "client", t);
    bulk_grows(&mut server, "server", t);

    client.signal(libc::SIGINT);
    assert_eq!(client.wait_exit(), 0);
    let sig = client.wait_line("client signal", |l| kind(l, "signal"));
    assert_eq!(field(&sig, "established"), Some(N), "{sig}");
    let csum = client.wait_line("client summary", |l| kind(l, "summary"));

    let drained = server.wait_line("server drained", |l| {
        kind(l, "progress") && field(l, "established") == Some(0) && field(l, "accepted") == Some(N)
    });
    assert_eq!(field(&drained, "closed"), Some(N), "{drained}");
    assert_eq!(field(&drained, "failed"), Some(0), "{drained}");
    // The kernel resets, rather than FINs, a client socket with bulk data
    // it had not read yet: at most the server's bulk connections.
    assert!(field(&drained, "resets").unwrap() <= 2, "{drained}");

    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), 0);
    let ssum = server.wait_line("server summary", |l| kind(l, "summary"));
    // What one side read, the other wrote (some of what was written may have
    // been lost to those resets).
    let (ctx, crx) = (field(&csum, "bulk_tx_bytes"), field(&csum, "bulk_rx_bytes"));
    let (stx, srx) = (field(&ssum, "bulk_tx_bytes"), field(&ssum, "bulk_rx_bytes"));
    assert!(
        srx <= ctx && srx > Some(0),
        "server read {srx:?} of {ctx:?}"
    );
    assert!(
        crx <= stx && crx > Some(0),
        "client read {crx:?} of {stx:?}"
    );
}

#[test]
fn refuses_counts_beyond_the_fd_limit_up_front() {
    let out = Command::new(BIN)
        .args([
            "client",
            "--target",
            "127.0.0.1:9",
            "--count",
            "100000000",
            "--procs",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 100000016 fds per process, limit is "),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no protocol lines before a refusal");
}

#[test]
fn default_procs_refuse_what_no_process_count_can_hold() {
    // 10^15 connections over the most workers (4096) is beyond any fs.nr_open.
    let out = Command::new(BIN)
        .args([
            "client",
            "--target",
            "127.0.0.1:9",
            "--count",
            "1000000000000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 244140625016 fds per process, limit is ")
            && err.ends_with("; raise fs.nr_open\n"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no protocol lines before a refusal");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN)
        .args(["client", "--count", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("client: --target ADDR:FIRST-LAST is required"));
}
