//! One cell, phase by phase: preflight, provision, prepare, ramp, hold, disconnect, observe,
//! verdict, teardown. Always returns a row; an infrastructure failure is a row with verdict
//! `error` and the reason, never a lost cell. The lab guard tears down on every exit path.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use crate::accel::AccelChoice;
use crate::counters::{self, Snapshot};
use crate::events::{Event, Reporter};
use crate::guest::{probe_new_connection, Endpoint, Guest};
use crate::heartbeat;
use crate::hostmetrics::{conntrack, VcpuSampler};
use crate::image::Image;
use crate::lab::{self, LabSpec, Role};
use crate::loadproto::{self, Aggregate, Message};
use crate::names::RunId;
use crate::plan::{Accel, Cell, DisconnectMethod, NetMode, Plan, Scope};
use crate::provision::{self, Ready, GUEST_LOAD};
use crate::results::{or_dash, CellRow};
use crate::verdict::{self, Observation, Probe, Thresholds};

/// Everything a cell needs from the run around it.
pub struct CellContext<'a> {
    pub run_id: &'a RunId,
    pub plan: &'a Plan,
    pub cell: &'a Cell,
    pub repetition: u32,
    pub accel: &'a AccelChoice,
    pub image: &'a Image,
    pub storm_load: &'a Path,
    pub cell_dir: PathBuf,
    pub versions: &'a Versions,
    pub rep: &'a dyn Reporter,
}

/// Software versions recorded in every row.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Versions {
    pub nicstorm: String,
    pub qemu: Option<String>,
    pub libvirt: Option<String>,
    pub host_kernel: Option<String>,
}

/// Where storm-load writes in the guest (`BASE`.out, `BASE`.pid).
const BASE: &str = "/run/storm-load";
const OUT: &str = "/run/storm-load.out";
const PID: &str = "/run/storm-load.pid";
const STATUS: &str = "/run/storm-load.status";
/// Per-process share of connections for storm-load; the guest's fs.nr_open is 1.1M.
const CONNS_PER_PROC: u64 = 900_000;

/// Runs the cell and returns its row. Teardown errors and survivors turn the row into `error`.
pub async fn run_cell(ctx: &CellContext<'_>) -> CellRow {
    let started = chrono::Utc::now();
    let mut row = base_row(ctx, started);
    let lab_id = RunId::new();
    let result = experiment(ctx, &lab_id, &mut row).await;
    if let Err(e) = result {
        row.verdict = "error".into();
        row.error = Some(format!("{e:#}"));
    }
    // The lab (inside `experiment`) is gone by now; anything left with its prefix is a bug.
    match lab::survivors(&lab_id) {
        Ok(left) if left.is_empty() => {}
        Ok(left) => {
            row.verdict = "error".into();
            row.error = Some(format!("teardown left {}", left.join(", ")));
        }
        Err(e) => ctx.rep.event(&Event::Warning(format!(
            "could not check for leftovers: {e:#}"
        ))),
    }
    row.finished_at = chrono::Utc::now().to_rfc3339();
    row
}

fn base_row(ctx: &CellContext<'_>, started: chrono::DateTime<chrono::Utc>) -> CellRow {
    let mut row = CellRow {
        started_at: started.to_rfc3339(),
        verdict: "error".into(),
        nicstorm_version: ctx.versions.nicstorm.clone(),
        qemu_version: ctx.versions.qemu.clone(),
        libvirt_version: ctx.versions.libvirt.clone(),
        host_kernel: ctx.versions.host_kernel.clone(),
        ..CellRow::for_cell(
            ctx.run_id.as_str(),
            ctx.cell,
            ctx.repetition,
            Some(ctx.accel.accel),
            &ctx.plan.settings,
        )
    };
    crate::host::HostInfo::read().stamp(&mut row);
    row
}

/// Capacity check before anything boots; the error says what does not fit and what to change.
pub fn preflight(cell: &Cell, plan: &Plan, accel: Accel) -> Result<()> {
    let s = &plan.settings;
    let target = cell.target(accel, s);
    let (server_mib, client_mib) = cell.memory_mib(target);
    let tuples = s.ports.count() as u64 * crate::plan::SOURCE_PORTS * crate::plan::CLIENTS;
    if tuples < target {
        bail!("{target} connections need more than {tuples} (ports x 64512 source ports x 3 clients) tuples; add ports");
    }
    let need_mib = 256 + target * 4 / 1024;
    if server_mib < need_mib {
        bail!("server memory {server_mib} MiB < {need_mib} MiB needed (256 MiB + 4 KiB per connection)");
    }
    let total_mib = server_mib + 3 * client_mib;
    if let Some(avail) = host_mem_available_mib() {
        if total_mib + 1024 > avail {
            bail!("the four VMs need {total_mib} MiB but the host has {avail} MiB available (keeping 1 GiB for itself)");
        }
    }
    // NAT flows are conntracked on the host; so are bridged ones when br_netfilter hands
    // bridged frames to iptables. Either way a full table drops new flows silently.
    let bridged_tracked = crate::hostmetrics::read_sysctl("net.bridge.bridge-nf-call-iptables")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    if cell.mode == NetMode::Nat || (cell.mode == NetMode::Bridge && bridged_tracked) {
        if let Some((count, max)) = conntrack() {
            let max = s
                .host_sysctls
                .get("net.netfilter.nf_conntrack_max")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(max);
            // ~100 flows of headroom for SSH probes and whatever else the host tracks.
            if count + target + 100 > max {
                bail!(
                    "host conntrack table holds {max} entries ({count} in use) but this {} cell needs {target}{}; set settings.host_sysctls.net.netfilter.nf_conntrack_max",
                    cell.mode,
                    if cell.mode == NetMode::Bridge { " (bridged traffic is tracked: net.bridge.bridge-nf-call-iptables=1)" } else { "" }
                );
            }
        }
    }
    Ok(())
}

fn host_mem_available_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

async fn experiment(ctx: &CellContext<'_>, lab_id: &RunId, row: &mut CellRow) -> Result<()> {
    let s = &ctx.plan.settings;
    let cell = ctx.cell;
    let accel = ctx.accel.accel;
    let rep = ctx.rep;
    let (target, vcpus, server_mib, client_mib) = match (
        row.target,
        row.vcpus,
        row.server_memory_mib,
        row.client_memory_mib,
    ) {
        (Some(t), Some(v), Some(s), Some(c)) => (t, v, s, c),
        _ => bail!("cell sizes unresolved"),
    };

    rep.event(&Event::Phase {
        name: "preflight",
        detail: format!("target {target} connections ({accel})"),
    });
    preflight(cell, ctx.plan, accel).context("preflight refused the cell")?;

    std::fs::create_dir_all(&ctx.cell_dir)
        .with_context(|| format!("creating {}", ctx.cell_dir.display()))?;
    let spec = LabSpec {
        nic: cell.nic,
        vhost: cell.vhost,
        mode: cell.mode,
        accel,
        vcpus,
        server_mib,
        client_mib,
        ports: s.ports,
        log_dir: ctx.cell_dir.clone(),
    };
    let mut ready = provision::provision(
        lab_id,
        &spec,
        ctx.image,
        ctx.storm_load,
        s.boot_timeout,
        rep,
    )
    .await?;
    row.guest_kernel = ready.guest_kernel.clone();
    for (k, v) in &s.host_sysctls {
        ready.lab.set_host_sysctl(k, v)?;
    }
    set_guest_sysctls(&ready.guests, &s.guest_sysctls).await?;
    row.host_conntrack_max = conntrack().map(|(_, max)| max);

    let result = measure(ctx, &mut ready, row, target).await;
    // Keep what each guest's kernel said, while SSH may still answer (bounded, in parallel).
    let gone = unreachable_after_disconnect(cell);
    let dmesgs = join_all(ready.guests.iter().filter(|g| !gone.contains(&g.role)).map(
        |g| async move {
            let text =
                tokio::time::timeout(Duration::from_secs(15), g.sh("dmesg | tail -n 300")).await;
            (g.role, text)
        },
    ))
    .await;
    for (role, text) in dmesgs {
        if let Ok(Ok(text)) = text {
            let _ = std::fs::write(ctx.cell_dir.join(format!("{role}.dmesg.txt")), text);
        }
    }
    rep.event(&Event::Phase {
        name: "teardown",
        detail: lab_id.tag(),
    });
    let Ready {
        mut lab, guests, ..
    } = ready;
    drop(guests);
    let torn = lab.teardown();
    result?;
    torn
}

/// A client's start command line for the cell.
fn client_command(ctx: &CellContext<'_>, target: &crate::hostnet::Target, count: u64) -> String {
    let s = &ctx.plan.settings;
    let on_exit = match ctx.cell.disconnect {
        DisconnectMethod::Rst => "rst",
        _ => "fin",
    };
    format!(
        "setsid {GUEST_LOAD} client --target {}:{} --count {count} --concurrency {} --rate {} --procs {} --on-exit {on_exit} \
         --interval 250 --status-file {STATUS} > {OUT} 2>&1 < /dev/null & echo $! > {PID}",
        target.addr,
        target.ports,
        s.concurrency,
        s.rate,
        count.div_ceil(CONNS_PER_PROC).max(1),
    )
}

/// The storm-load streams, fed from `tail -F` over SSH: stream 0 is the server, 1..=3 the clients.
struct Streams {
    rx: Vec<mpsc::UnboundedReceiver<(Instant, String)>>,
    server: Option<loadproto::Progress>,
    clients: Aggregate,
    reached: Vec<bool>,
    /// The server's established count over time (host arrival time).
    server_est: Vec<(Instant, u64)>,
    log: std::fs::File,
}

impl Streams {
    fn pump(&mut self) {
        for (i, rx) in self.rx.iter_mut().enumerate() {
            while let Ok((at, line)) = rx.try_recv() {
                let _ = writeln!(self.log, "{i}\t{line}");
                match loadproto::parse_line(&line) {
                    Ok(Message::Progress(p)) if i == 0 => {
                        self.server_est.push((at, p.established));
                        self.server = Some(p);
                    }
                    Ok(Message::Progress(p)) => self.clients.update(&format!("client{i}"), p),
                    Ok(Message::Reached(_)) => self.reached[i] = true,
                    Ok(_) => {}
                    Err(e) => tracing::debug!("stream {i}: {e}"),
                }
            }
        }
    }

    fn client_established(&self) -> Vec<u64> {
        (1..=3)
            .map(|i| {
                self.clients
                    .latest(&format!("client{i}"))
                    .map(|p| p.established)
                    .unwrap_or(0)
            })
            .collect()
    }

    fn server_established(&self) -> Option<u64> {
        self.server.as_ref().map(|p| p.established)
    }
}

async fn measure(
    ctx: &CellContext<'_>,
    ready: &mut Ready,
    row: &mut CellRow,
    target: u64,
) -> Result<()> {
    let s = &ctx.plan.settings;
    let rep = ctx.rep;
    let cell = ctx.cell;

    // ---- prepare: server up on its ports, streams and heartbeat followed.
    rep.event(&Event::Phase {
        name: "prepare",
        detail: format!("storm-load server on {}", s.ports),
    });
    let server_procs = target.div_ceil(CONNS_PER_PROC).max(1);
    provision::start_server(
        &ready.guests[0],
        &format!("--ports {} --count {target} --procs {server_procs} --interval 250 --status-file {STATUS}", s.ports),
        BASE,
    )
    .await
    .context("starting storm-load server")?;
    let mut streams = Streams {
        rx: vec![ready.guests[0].follow(OUT).await?],
        server: None,
        clients: Aggregate::new(),
        reached: vec![false; 4],
        server_est: vec![],
        log: std::fs::File::create(ctx.cell_dir.join("storm-load.jsonl"))?,
    };
    let heartbeat = heartbeat::Watcher::start(&ready.lab.server().heartbeat_log);

    // ---- ramp: clients open target/3 each; stop at target, on a stall, or at the timeout.
    let target_addr = ready.lab.target().clone();
    let shares: Vec<u64> = (0..3)
        .map(|i| target / 3 + u64::from(i < target % 3))
        .collect();
    let at_ramp = snapshot(ready, &[]).await;
    for (g, share) in ready.guests[1..].iter().zip(&shares) {
        g.sh(&client_command(ctx, &target_addr, *share))
            .await
            .with_context(|| format!("starting storm-load client on {}", g.ep.name))?;
        streams.rx.push(g.follow(OUT).await?);
    }
    rep.event(&Event::Phase {
        name: "ramp",
        detail: format!(
            "{target} connections to {}:{}",
            target_addr.addr, target_addr.ports
        ),
    });
    let ramp_start = Instant::now();
    let (mut best, mut best_at) = (0u64, Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let why = loop {
        tick.tick().await;
        streams.pump();
        let clients = streams.client_established();
        let total: u64 = clients.iter().sum();
        rep.event(&Event::Ramp {
            clients: clients.clone(),
            target,
            rate: streams.clients.rate(),
        });
        if total > best {
            (best, best_at) = (total, Instant::now());
        }
        if streams.reached[1..].iter().all(|r| *r) || total >= target {
            break "target reached".to_string();
        }
        if best_at.elapsed() >= s.ramp_stall {
            break format!("no progress for {:?}", s.ramp_stall);
        }
        if ramp_start.elapsed() >= s.ramp_timeout {
            break format!("ramp timeout {:?}", s.ramp_timeout);
        }
        if let Err(e) = ready.lab.server().check_running() {
            break format!("{e:#}");
        }
    };
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    // Let the server's stream catch up with the clients' last connects (bounded).
    let _ = crate::wait::wait_until(
        "server to count the ramp",
        Duration::from_secs(5),
        Duration::from_millis(250),
        || {
            streams.pump();
            let done = streams.server_established().unwrap_or(0)
                >= streams.client_established().iter().sum::<u64>();
            async move { Ok(done.then_some(())) }
        },
    )
    .await;
    let peak = streams.server_established();
    row.peak_established = peak;
    row.ramp_seconds = Some(ramp_secs);
    row.ramp_rate = peak.map(|p| p as f64 / ramp_secs);
    row.connect_errors = Some(streams.clients.failed());
    row.errors_by_errno = Some(loadproto::errors_by_errno(&streams.clients.errors()));
    rep.event(&Event::RampEnded {
        peak: peak.unwrap_or(0),
        target,
        secs: ramp_secs,
        why,
    });

    // ---- hold: baseline SSH latency and heartbeat cadence with the connections held.
    rep.event(&Event::Phase {
        name: "hold",
        detail: format!("{:?} baseline", s.hold),
    });
    let server_ep = Endpoint::of(ready.lab.server(), &ready.lab.key);
    // Generous: a new SSH connection to an idle TCG guest already takes seconds.
    let hold_probe_limit = Duration::from_secs(30);
    let mut baseline = vec![];
    let hold_start = Instant::now();
    while hold_start.elapsed() < s.hold {
        let p = probe_new_connection(&server_ep, hold_probe_limit).await;
        if p.ok {
            baseline.push(p.latency.as_secs_f64());
        }
        streams.pump();
        tokio::time::sleep(s.probe_interval.saturating_sub(p.latency)).await;
    }
    baseline.sort_by(f64::total_cmp);
    let ssh_baseline = baseline.get(baseline.len() / 2).copied();
    row.ssh_baseline_seconds = ssh_baseline;
    // A probe is failed only when it takes far longer than the baseline could explain.
    let probe_limit = Duration::from_secs_f64(ssh_baseline.map_or(30.0, |b| (4.0 * b).max(30.0)));

    // ---- disconnect.
    let targets = disconnected(cell.scope);
    let remaining: u64 = streams
        .client_established()
        .iter()
        .enumerate()
        .filter(|(i, _)| !targets.contains(&Role::Client(*i as u8 + 1)))
        .map(|(_, n)| n)
        .sum();
    rep.event(&Event::Phase {
        name: "disconnect",
        detail: format!(
            "{} on {}",
            cell.disconnect,
            targets
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    });
    let before = snapshot(ready, &[]).await;
    let t0 = Instant::now();
    row.kill_spread_seconds = Some(
        disconnect(ready, cell.disconnect, &targets)
            .await?
            .as_secs_f64(),
    );

    // ---- observe.
    let window = s.observe;
    let mut obs = Observer::new(ctx.cell_dir.join("timeseries.csv"))?;
    let mut vcpu = ready
        .lab
        .server()
        .qemu_pid()
        .and_then(|pid| VcpuSampler::new(pid).ok());
    let mut probes: Vec<Probe> = vec![];
    // At most one new-connection probe and one session probe in flight: piling handshakes
    // onto a struggling guest would be part of the storm, not a measurement of it.
    let mut probe_task: Option<tokio::task::JoinHandle<Probe>> = None;
    let mut session_task: Option<tokio::task::JoinHandle<Result<Duration>>> = None;
    let mut session_dropped_at = None;
    let mut crashed_at = None;
    let mut next_sample = Instant::now();
    let mut conntrack_peak: Option<u64> = None;
    let mut vcpu_peak: Option<f64> = None;
    while t0.elapsed() < window {
        tick.tick().await;
        let at = t0.elapsed().as_secs_f64();
        streams.pump();
        if probe_task.as_ref().is_some_and(|t| t.is_finished()) {
            probes.push(probe_task.take().expect("checked").await?);
        }
        if session_task.as_ref().is_some_and(|t| t.is_finished()) {
            if let Err(e) = session_task.take().expect("checked").await? {
                tracing::info!("{e:#}");
                session_dropped_at.get_or_insert(at);
            }
        }
        if crashed_at.is_none() && ready.lab.server().check_running().is_err() {
            crashed_at = Some(at);
        }
        if probe_task.is_none()
            && probes
                .last()
                .is_none_or(|p| at - p.at >= s.probe_interval.as_secs_f64())
        {
            let ep = server_ep.clone();
            probe_task = Some(tokio::spawn(async move {
                let sent = t0.elapsed().as_secs_f64();
                let r = probe_new_connection(&ep, probe_limit).await;
                Probe {
                    at: sent,
                    ok: r.ok,
                    latency: r.ok.then_some(r.latency.as_secs_f64()),
                }
            }));
        }
        if session_task.is_none() && session_dropped_at.is_none() {
            session_task = Some(tokio::spawn(ready.guests[0].session_probe(probe_limit)));
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(1);
            let ct = conntrack().map(|(c, _)| c);
            conntrack_peak = conntrack_peak.max(ct);
            let v = vcpu
                .as_mut()
                .and_then(|v| v.sample().ok())
                .map(|v| v.max_pct);
            vcpu_peak = max_f(vcpu_peak, v);
            let hb = heartbeat.snapshot();
            let gap = hb.max_gap(t0, Instant::now()).map(|d| d.as_secs_f64());
            let last_hb = hb.iter().last().map(|(_, h)| h);
            obs.sample(
                at,
                streams.server_established(),
                last_hb,
                gap,
                v,
                ct,
                probes.last(),
            )?;
            rep.event(&Event::Observe {
                at,
                window: window.as_secs_f64(),
                ssh_ok: probes.last().map(|p| p.ok),
                established: streams.server_established().or_else(|| hb.last_est()),
                hb_gap: gap,
            });
        }
    }
    // A probe still in flight at the end of the window reports within probe_limit.
    if let Some(t) = probe_task {
        if let Ok(Ok(p)) = tokio::time::timeout(probe_limit, t).await {
            probes.push(p);
        }
    }
    if let Some(t) = session_task {
        if let Ok(Ok(Err(_))) = tokio::time::timeout(probe_limit, t).await {
            session_dropped_at.get_or_insert(window.as_secs_f64());
        }
    }
    probes.retain(|p| p.at < window.as_secs_f64());
    let hb = heartbeat.snapshot();
    drop(heartbeat);
    let after = snapshot(ready, &unreachable_after_disconnect(cell)).await;
    record_counters(row, &before, &after, &targets);
    counters::write_csv(
        &ctx.cell_dir.join("counters.csv"),
        &[
            counters::Window {
                name: "ramp",
                before: &at_ramp,
                after: &before,
            },
            counters::Window {
                name: "observe",
                before: &before,
                after: &after,
            },
        ],
    )?;

    // ---- verdict.
    let until = t0 + window;
    let arrivals = hb.arrivals_since(t0);
    let observation = Observation {
        target,
        peak_established: peak,
        domain_crashed_at: crashed_at,
        heartbeat_arrivals: arrivals,
        window: window.as_secs_f64(),
        ssh_baseline,
        probes,
        session_dropped_at,
    };
    let th = Thresholds {
        hang_gap: s.hang_gap,
        ssh_slow_factor: s.ssh_slow_factor,
        ssh_slow_min: s.ssh_slow_min,
    };
    let outcome = verdict::decide(&observation, &th);
    let est_samples: Vec<(f64, u64)> = streams
        .server_est
        .iter()
        .filter(|(at, _)| *at >= t0)
        .map(|(at, n)| ((*at - t0).as_secs_f64(), *n))
        .chain(
            hb.est_series()
                .into_iter()
                .filter(|(at, _)| *at >= t0)
                .map(|(at, n)| ((at - t0).as_secs_f64(), n)),
        )
        .collect();
    // The same for every method: a destroyed client or a downed link sends nothing, so
    // its connections are expected never to drain, and undrained_connections says so.
    row.drain_seconds = verdict::drain_seconds(&sorted(est_samples), remaining);
    let final_established = streams.server_established().or_else(|| hb.last_est());
    row.undrained_connections = final_established.map(|n| n.saturating_sub(remaining));
    row.ssh_max_seconds = outcome.ssh_max;
    row.ssh_probe_failures = Some(u64::from(outcome.probe_failures));
    row.ssh_dropped = Some(outcome.probe_failures > 0 || observation.session_dropped_at.is_some());
    row.session_dropped = Some(observation.session_dropped_at.is_some());
    row.heartbeat_max_gap_seconds = outcome.max_heartbeat_gap;
    row.peak_softirq_pct = hb.peak_softirq(t0, until);
    row.peak_load1 = hb.peak_load1(t0, until);
    row.min_memavail_mib = hb.min_memavail_kb(t0, until).map(|kb| kb / 1024);
    row.peak_vcpu_pct = vcpu_peak;
    row.host_conntrack_peak = conntrack_peak;
    row.verdict = outcome.verdict.to_string();
    row.recovery_seconds = outcome.recovery_seconds;
    rep.event(&Event::CellFinished {
        label: cell.label(),
        verdict: row.verdict.clone(),
        detail: format!(
            "(peak {}/{target}, drain {}, {})",
            or_dash(row.peak_established),
            row.drain_seconds
                .map(|d| format!("{d:.1}s"))
                .unwrap_or_else(|| "-".into()),
            outcome.reason
        ),
    });
    std::fs::write(
        ctx.cell_dir.join("verdict.txt"),
        format!("{}\n{}\n", row.verdict, outcome.reason),
    )?;
    Ok(())
}

/// Sets `settings.guest_sysctls` in every guest and reads each back: a value the kernel
/// refused or changed fails the cell, since it would measure something else than asked.
async fn set_guest_sysctls(guests: &[Guest], sysctls: &BTreeMap<String, String>) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    // Names are checked by the plan ([A-Za-z0-9._-]); values are single-quoted.
    let quote = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    let script: String = std::iter::once("set -e\n".to_owned())
        .chain(sysctls.iter().map(|(k, v)| {
            format!(
                "sysctl -q -w {}={} && echo \"{k} $(sysctl -n {k})\"\n",
                k,
                quote(v)
            )
        }))
        .collect();
    let results = join_all(guests.iter().map(|g| g.sh(&script))).await;
    for (g, r) in guests.iter().zip(results) {
        let out = r.with_context(|| format!("settings.guest_sysctls on {}", g.role))?;
        for (k, v) in sysctls {
            let got = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .map(crate::hostmetrics::normalize);
            let want = crate::hostmetrics::normalize(v);
            if got.as_deref() != Some(want.as_str()) {
                bail!(
                    "settings.guest_sysctls: {k} = {v:?} on {} reads back as {}",
                    g.role,
                    got.map_or("nothing".into(), |g| format!("{g:?}"))
                );
            }
        }
    }
    Ok(())
}

/// The clients a cell disconnects.
fn disconnected(scope: Scope) -> Vec<Role> {
    match scope {
        Scope::One => vec![Role::Client(1)],
        Scope::All => vec![Role::Client(1), Role::Client(2), Role::Client(3)],
    }
}

/// Guests that cannot answer SSH once disconnected: destroyed, or with their link down.
fn unreachable_after_disconnect(cell: &Cell) -> Vec<Role> {
    match cell.disconnect {
        DisconnectMethod::Fin | DisconnectMethod::Rst => vec![],
        DisconnectMethod::Destroy | DisconnectMethod::LinkDown => disconnected(cell.scope),
    }
}

/// Counters of every guest that can answer (`gone` are not asked) and of the host: its taps
/// (none in user mode) and its conntrack statistics. A guest that does not answer within
/// 20 s is missing from the snapshot.
async fn snapshot(ready: &Ready, gone: &[Role]) -> Snapshot {
    let reads = join_all(ready.guests.iter().map(|g| async move {
        if gone.contains(&g.role) {
            return (g.role, None);
        }
        let read =
            tokio::time::timeout(Duration::from_secs(20), g.sh(counters::GUEST_SCRIPT)).await;
        let c = match read {
            Ok(Ok(text)) => Some(counters::parse(&text)).filter(|c| !c.is_empty()),
            Ok(Err(e)) => {
                tracing::info!("counters of {}: {e:#}", g.role);
                None
            }
            Err(_) => {
                tracing::info!("counters of {}: no answer within 20 s", g.role);
                None
            }
        };
        (g.role, c)
    }))
    .await;
    let mut snap = Snapshot::default();
    for (role, c) in reads {
        snap.insert(&role.to_string(), c);
    }
    let links: Vec<(String, String)> = Role::ALL
        .iter()
        .filter(|r| ready.lab.bridge(**r).is_some())
        .map(|r| (format!("host.{r}"), ready.lab.tap(*r)))
        .collect();
    for (label, c) in counters::host_links(&links, Path::new("/sys/class/net")) {
        snap.insert(&label, c);
    }
    snap.insert(
        "host",
        counters::host_conntrack_stats(Path::new("/proc/net/stat/nf_conntrack")),
    );
    snap
}

/// The counter columns of the row (see counters.rs for why these five).
fn record_counters(row: &mut CellRow, before: &Snapshot, after: &Snapshot, targets: &[Role]) {
    let clients: Vec<String> = targets.iter().map(|r| r.to_string()).collect();
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    row.clients_tcp_abort_on_memory =
        counters::delta_sum(before, after, &clients, &["TcpExtTCPAbortOnMemory"]);
    row.server_tap_tx_dropped = counters::delta(before, after, "host.server", "tap.tx_dropped");
    // The host reads the tap just after the guest reads eth0, so the SSH frames of that read
    // land on one side only: a few frames of skew, which the clamp keeps from going negative.
    row.server_device_lost = counters::delta(before, after, "host.server", "tap.tx_packets")
        .zip(counters::delta(before, after, "server", "eth0.rx_packets"))
        .map(|(sent, seen)| sent.saturating_sub(seen));
    row.server_eth0_rx_dropped = counters::delta(before, after, "server", "eth0.rx_dropped");
    row.host_conntrack_drops = counters::delta_sum(
        before,
        after,
        &["host"],
        &[
            "conntrack.drop",
            "conntrack.early_drop",
            "conntrack.insert_failed",
        ],
    );
}

fn max_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn sorted(mut v: Vec<(f64, u64)>) -> Vec<(f64, u64)> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Carries out the disconnect on the target clients; returns the kill spread: from the first
/// signal sent until the last target is verifiably disconnected (process gone, VM destroyed,
/// link down).
async fn disconnect(
    ready: &mut Ready,
    method: DisconnectMethod,
    targets: &[Role],
) -> Result<Duration> {
    let t0 = Instant::now();
    match method {
        DisconnectMethod::Fin | DisconnectMethod::Rst => {
            // storm-load installs its own SIGINT handler (backgrounded shells ignore SIGINT);
            // a kill only counts once the process is verifiably gone.
            let guests: Vec<&Guest> = targets.iter().map(|r| &ready.guests[r.index()]).collect();
            let results = join_all(guests.iter().map(|g| async move {
                g.sh(&format!(
                    "pid=$(cat {PID}); kill -INT $pid; for i in $(seq 600); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.05; done; \
                     echo \"storm-load $pid still running 30 s after SIGINT\" >&2; exit 1"
                ))
                .await
            }))
            .await;
            for r in results {
                r?;
            }
        }
        DisconnectMethod::Destroy => {
            for r in targets {
                ready.lab.vm_mut(*r).destroy()?;
            }
        }
        DisconnectMethod::LinkDown => {
            for r in targets {
                let (tap, mac) = (ready.lab.tap(*r), ready.lab.mac(*r));
                let bridge = ready
                    .lab
                    .bridge(*r)
                    .context("link-down needs a tap on a bridge; user mode has none")?;
                ready.lab.vms[r.index()].set_link(
                    &bridge,
                    &tap,
                    &mac,
                    ready.lab.spec.nic.qemu_model(),
                    false,
                )?;
            }
        }
    }
    Ok(t0.elapsed())
}

/// The per-cell time series (timeseries.csv): one line per probe interval during observe.
struct Observer {
    out: std::io::BufWriter<std::fs::File>,
}

impl Observer {
    fn new(path: PathBuf) -> Result<Observer> {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        writeln!(
            out,
            "t,server_established,hb_est,hb_max_gap,softirq_pct,load1,memavail_kb,vcpu_pct,conntrack,probe_at,probe_ok,probe_latency"
        )?;
        Ok(Observer { out })
    }

    #[allow(clippy::too_many_arguments)]
    fn sample(
        &mut self,
        at: f64,
        est: Option<u64>,
        hb: Option<&heartbeat::Heartbeat>,
        gap: Option<f64>,
        vcpu: Option<f64>,
        conntrack: Option<u64>,
        probe: Option<&Probe>,
    ) -> Result<()> {
        let o = |v: Option<String>| v.unwrap_or_default();
        writeln!(
            self.out,
            "{at:.2},{},{},{},{},{},{},{},{},{},{},{}",
            o(est.map(|v| v.to_string())),
            o(hb.and_then(|h| h.est).map(|v| v.to_string())),
            o(gap.map(|v| format!("{v:.2}"))),
            o(hb.map(|h| format!("{:.1}", h.softirq_pct))),
            o(hb.map(|h| format!("{:.2}", h.load1))),
            o(hb.map(|h| h.memavail_kb.to_string())),
            o(vcpu.map(|v| format!("{v:.0}"))),
            o(conntrack.map(|v| v.to_string())),
            o(probe.map(|p| format!("{:.1}", p.at))),
            o(probe.map(|p| p.ok.to_string())),
            o(probe.and_then(|p| p.latency).map(|v| format!("{v:.2}"))),
        )?;
        self.out.flush()?;
        Ok(())
    }
}

/// Versions of the parts that can change a result.
pub fn versions() -> Versions {
    let first_line = |prog: &str, arg: &str| {
        std::process::Command::new(prog)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
    };
    let libvirt = virt::connect::Connect::version()
        .ok()
        .map(|v| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000));
    Versions {
        nicstorm: format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            git_rev().unwrap_or_else(|| "unknown".into())
        ),
        qemu: first_line("qemu-system-x86_64", "--version")
            .map(|s| s.trim_start_matches("QEMU emulator version ").to_string()),
        libvirt,
        host_kernel: first_line("uname", "-r"),
    }
}

pub fn git_rev() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::cli::repo_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Host settings a result depends on, for run.json.
pub fn host_settings() -> BTreeMap<String, Option<String>> {
    [
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_count",
        "net.bridge.bridge-nf-call-iptables",
        "net.ipv4.ip_forward",
        "fs.nr_open",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            crate::hostmetrics::read_sysctl(k)
                .ok()
                .map(|v| v.trim().to_string()),
        )
    })
    .collect()
}
