//! storm-load on the host side, in one place: the binary, where it lives in a guest, how it is
//! started and stopped, and its JSON-lines streams followed back to the host.
//!
//! storm-load uses every vCPU of its guest by default (`--procs` is left to it: one worker per
//! CPU, more when the fd limit needs them).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::experiment::loadproto::{self, Aggregate, Message};
use crate::lab::guest::Guest;
use crate::lab::hostnet::Target;
use crate::lab::Role;
use crate::matrix::config::Rate;
use crate::matrix::plan::{DisconnectMethod, Settings, Traffic};

/// traffic bulk-in: connections of each client that stream data into the server.
pub(crate) const BULK_IN_PER_CLIENT: u32 = 2;
/// traffic bulk-out: accepted connections the server streams data out on.
pub(crate) const BULK_OUT: u32 = 4;

/// Where storm-load lives in the guest (pushed there, or put there by a saved lab's initrd).
pub(crate) const GUEST_BIN: &str = crate::lab::guest::STORM_LOAD;

/// The files of the experiment's storm-load in each guest (`.out`, `.pid`; the status file is
/// what the heartbeat reads for its `est` field).
pub(crate) const BASE: &str = "/run/storm-load";
const STATUS: &str = "/run/storm-load.status";

/// [`Streams::client_ramp_rate`] of the clients' `reached` lines: the mean of each client's
/// connections over its own seconds to its share. None when a client never said `reached`,
/// or timed a share it held at 0 s; a client with a share of 0 has no ramp and is left out.
fn client_rate<'a>(reached: impl Iterator<Item = Option<&'a loadproto::Reached>>) -> Option<f64> {
    let mut rates = vec![];
    for r in reached {
        let r = r?;
        if r.established == 0 {
            continue;
        }
        if r.elapsed <= 0.0 {
            return None;
        }
        rates.push(r.established as f64 / r.elapsed);
    }
    (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
}

/// The client VMs, each with a storm-load client stream.
fn clients() -> &'static [Role] {
    &Role::ALL[1..]
}

/// The static storm-load binary built by `make load` (load/ is its own cargo workspace).
pub fn binary(repo_root: &Path) -> Result<PathBuf> {
    let p = repo_root.join("load/target/x86_64-unknown-linux-gnu/release/storm-load");
    if !p.is_file() {
        bail!("{} not found; build it with `make load`", p.display());
    }
    Ok(p)
}

/// Starts `storm-load server ARGS` in the guest, detached (setsid, all fds redirected, so the
/// SSH command returns at once), output in `{base}.out`, pid in `{base}.pid`; returns once it
/// printed its `start` line (bounded: 10 s), or fails quoting its output.
pub(crate) async fn start_server(guest: &Guest, args: &str, base: &str) -> Result<()> {
    guest
        .sh(&format!(
            "setsid {GUEST_BIN} server {args} > {base}.out 2>&1 < /dev/null & echo $! > {base}.pid; \
             for i in $(seq 100); do grep -q '\"kind\":\"start\"' {base}.out && exit 0; sleep 0.1; done; \
             cat {base}.out; exit 1"
        ))
        .await
        .map(|_| ())
}

/// The experiment's server arguments: every port, the fd check sized for `count`, and the
/// bulk stream out of the server when the cell's traffic asks for one.
pub(crate) fn server_args(s: &Settings, count: u64, traffic: Traffic) -> String {
    let bulk = match traffic {
        Traffic::BulkOut => format!(" --bulk-out {BULK_OUT}"),
        _ => String::new(),
    };
    format!(
        "--ports {} --count {count} --interval 250 --status-file {STATUS}{bulk}",
        s.ports
    )
}

/// A client's start command line: `count` connections to the target, closed by FIN or RST
/// when it is told to stop.
pub(crate) fn client_command(
    s: &Settings,
    pace: Rate,
    target: &Target,
    count: u64,
    method: DisconnectMethod,
    traffic: Traffic,
) -> String {
    let on_exit = match method {
        DisconnectMethod::Rst => "rst",
        _ => "fin",
    };
    // `rate: auto` is a window, not a rate: the server's accepts pace the client.
    let (concurrency, rate) = match pace {
        Rate::PerSecond(r) => (s.concurrency, r),
        Rate::Auto => (s.concurrency.min(Rate::AUTO_WINDOW), 0),
    };
    let bulk = match traffic {
        Traffic::BulkIn => format!(" --bulk-in {}", u64::from(BULK_IN_PER_CLIENT).min(count)),
        _ => String::new(),
    };
    format!(
        "setsid {GUEST_BIN} client --target {}:{} --count {count} --concurrency {} --rate {} --on-exit {on_exit}{bulk} \
         --interval 250 --status-file {STATUS} > {BASE}.out 2>&1 < /dev/null & echo $! > {BASE}.pid",
        target.addr, target.ports, concurrency, rate,
    )
}

/// Stops the experiment's storm-load in the guest with SIGINT and returns once the process is
/// verifiably gone (backgrounded shells ignore SIGINT, so storm-load installs its own handler;
/// a kill only counts when the process has exited). Bounded: 30 s.
pub(crate) async fn stop(guest: &Guest) -> Result<()> {
    guest
        .sh(&format!(
            "pid=$(cat {BASE}.pid); kill -INT $pid; for i in $(seq 600); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.05; done; \
             echo \"storm-load $pid still running 30 s after SIGINT\" >&2; exit 1"
        ))
        .await
        .map(|_| ())
}

/// The storm-load streams, fed from `tail -F` over SSH, one per VM of the lab (keyed by its
/// role; the log numbers them by `Role::index`, 0 the server, 1..=3 the clients). The tails are
/// tasks of the cell's task set, so they end with the cell.
pub(crate) struct Streams {
    rx: Vec<(Role, mpsc::UnboundedReceiver<(Instant, String)>)>,
    server: Option<loadproto::Progress>,
    clients: Aggregate,
    /// The clients whose ramp ended: what each said then (`reached`).
    reached: BTreeMap<Role, loadproto::Reached>,
    /// The server's established count over time (host arrival time).
    pub(crate) server_est: Vec<(Instant, u64)>,
    log: std::fs::File,
}

impl Streams {
    /// Empty streams logging raw lines to `log` (`stream<TAB>line`).
    pub(crate) fn new(log: &Path) -> Result<Streams> {
        Ok(Streams {
            rx: Vec::new(),
            server: None,
            clients: Aggregate::new(),
            reached: BTreeMap::new(),
            server_est: vec![],
            log: std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?,
        })
    }

    /// Follows the stream of `guest`'s VM.
    pub(crate) async fn follow(&mut self, guest: &Guest, tasks: &mut JoinSet<()>) -> Result<()> {
        let rx = guest.follow(&format!("{BASE}.out"), tasks).await?;
        self.rx.push((guest.role, rx));
        Ok(())
    }

    /// Takes every line that arrived.
    pub(crate) fn pump(&mut self) {
        for (role, rx) in &mut self.rx {
            let role = *role;
            while let Ok((at, line)) = rx.try_recv() {
                let _ = writeln!(self.log, "{}\t{line}", role.index());
                match loadproto::parse_line(&line) {
                    Ok(Message::Progress(p)) if role == Role::Server => {
                        self.server_est.push((at, p.established));
                        self.server = Some(p);
                    }
                    Ok(Message::Progress(p)) => self.clients.update(role, p),
                    Ok(Message::Reached(r)) => {
                        self.reached.insert(role, r);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("stream {role}: {e}"),
                }
            }
        }
    }

    /// What each client holds, client 1 first.
    pub(crate) fn client_established(&self) -> Vec<u64> {
        clients()
            .iter()
            .map(|c| self.clients.latest(*c).map_or(0, |p| p.established))
            .collect()
    }

    pub(crate) fn server_established(&self) -> Option<u64> {
        self.server.as_ref().map(|p| p.established)
    }

    pub(crate) fn all_clients_reached(&self) -> bool {
        clients().iter().all(|c| self.reached.contains_key(c))
    }

    /// A client's ramp rate as it timed it (storm-load stamps its own ramp end): its
    /// connections over its own seconds to its share, the mean over the clients. Not stepped
    /// by the host's 250 ms polling, as `ramp_rate` is; not a third of the server's rate either
    /// (the clients start one after another). None unless every client reached its share.
    pub(crate) fn client_ramp_rate(&self) -> Option<f64> {
        client_rate(clients().iter().map(|c| self.reached.get(c)))
    }

    pub(crate) fn client_rate(&self) -> f64 {
        self.clients.rate()
    }

    pub(crate) fn connect_errors(&self) -> u64 {
        self.clients.failed()
    }

    pub(crate) fn errors_by_errno(&self) -> String {
        loadproto::errors_by_errno(&self.clients.errors())
    }

    /// Waits (bounded) until the server's stream has counted what the clients established:
    /// the server reports on its own cadence. With `reached`, also until every client's
    /// `reached` line is in (a client says it a tick after its last progress line).
    pub(crate) async fn settle(&mut self, limit: Duration, reached: bool) {
        let deadline = Instant::now() + limit;
        loop {
            self.pump();
            let clients: u64 = self.client_established().iter().sum();
            let caught_up = self.server_established().unwrap_or(0) >= clients
                && (!reached || self.all_clients_reached());
            if caught_up || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::plan::parse_plan;

    #[test]
    fn a_client_ramp_rate_is_the_mean_of_the_clients_own_rates_and_needs_every_client() {
        let line = |est: u64, elapsed: f64| {
            match loadproto::parse_line(&format!(
                r#"{{"v":1,"kind":"reached","role":"client","t":1.0,"established":{est},"elapsed":{elapsed}}}"#
            ))
            .unwrap()
            {
                Message::Reached(r) => r,
                other => panic!("{other:?}"),
            }
        };
        let (a, b, c) = (line(1000, 0.5), line(1000, 0.25), line(1000, 1.0));
        // (2000 + 4000 + 1000) / 3 per second.
        let mean = client_rate([Some(&a), Some(&b), Some(&c)].into_iter()).unwrap();
        assert!((mean - 7000.0 / 3.0).abs() < 1e-9, "{mean}");
        // A client that never said `reached`: not measured, not 0.
        assert_eq!(client_rate([Some(&a), None, Some(&c)].into_iter()), None);
        // A share of 0 has no ramp and is left out; a share reached in 0 s cannot be a rate.
        let zero = line(0, 0.0);
        assert_eq!(
            client_rate([Some(&a), Some(&zero), Some(&c)].into_iter()),
            Some(1500.0)
        );
        assert_eq!(client_rate([Some(&zero)].into_iter()), None);
        let instant = line(10, 0.0);
        assert_eq!(client_rate([Some(&a), Some(&instant)].into_iter()), None);
    }

    #[test]
    fn command_lines() {
        let p = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000]}\nsettings: {concurrency: 500, rate: 100}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let target = Target {
            addr: "10.213.0.10".parse().unwrap(),
            ports: p.settings.ports,
        };
        let c = client_command(
            &p.settings,
            p.settings.rate,
            &target,
            1000,
            DisconnectMethod::Rst,
            Traffic::None,
        );
        assert!(
            c.starts_with("setsid /usr/local/bin/storm-load client --target 10.213.0.10:20000-20019 --count 1000 --concurrency 500 --rate 100 --on-exit rst "),
            "{c}"
        );
        assert!(
            !c.contains("--procs"),
            "storm-load picks its own procs: {c}"
        );
        // rate: auto is a window of 64 connects in flight, unpaced otherwise; its own cell id.
        let auto = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000]}\nsettings: {concurrency: 500, rate: auto}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let c = client_command(
            &auto.settings,
            auto.settings.rate,
            &target,
            1000,
            DisconnectMethod::Fin,
            Traffic::None,
        );
        assert!(c.contains("--concurrency 64 --rate 0 "), "{c}");
        assert_ne!(auto.cells[0].id, p.cells[0].id);
        let bad = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], connections: [3000]}\nsettings: {rate: fast}\n",
            Path::new("m.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("settings.rate")
                && bad.contains("\"fast\"")
                && bad.contains("allowed: auto"),
            "{bad}"
        );
        let fin = |count, traffic| {
            client_command(
                &p.settings,
                p.settings.rate,
                &target,
                count,
                DisconnectMethod::Fin,
                traffic,
            )
        };
        assert!(fin(1, Traffic::None).contains("--on-exit fin "));
        assert!(!c.contains("bulk"));
        assert!(fin(1000, Traffic::BulkIn).contains("--on-exit fin --bulk-in 2 "));
        assert!(
            fin(1, Traffic::BulkIn).contains("--bulk-in 1 "),
            "never more than count"
        );
        assert_eq!(
            server_args(&p.settings, 3000, Traffic::None),
            "--ports 20000-20019 --count 3000 --interval 250 --status-file /run/storm-load.status"
        );
        assert!(server_args(&p.settings, 3000, Traffic::BulkOut).ends_with(" --bulk-out 4"));
        assert!(!server_args(&p.settings, 3000, Traffic::BulkIn).contains("bulk"));
    }
}
