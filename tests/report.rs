//! The report end to end: built from a real results directory (tests/fixtures/results/ci-smoke,
//! a run of matrix/ci-smoke.yaml on the 2-core TCG host, old time series format), from the
//! cells.csv-only directories in docs/measurements/ (older headers), and from a synthetic
//! directory in the new time series format with repetitions, two host classes and a search.
//! Each page is rendered by headless Chromium: its DOM is checked and a PNG screenshot is left
//! in the target directory (`report-screenshots/`) for a person to look at.
//!
//! Chromium is required: `scripts/setup-host.sh --test` installs it (Debian package chromium).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nicstorm::report::plots::{Metric, X_DESC};
use nicstorm::report::{render_report, results_dir, write_report, REPORT_FILE};
use nicstorm::results::{read_csv, CellRow, ResultsStore};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A fresh scratch directory for one test.
fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("NICSTORM_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        if let Some(Some(p)) = found {
            return p;
        }
    }
    panic!(
        "chromium not found on PATH: the report test renders report.html with headless Chromium. \
         Install it with `scripts/setup-host.sh --test` (Debian package `chromium`), or point \
         NICSTORM_CHROMIUM at a Chromium binary."
    );
}

/// Runs headless Chromium on `page` with `args`; its stdout. Bounded: killed after 3 minutes.
fn run_chromium(page: &Path, args: &[String]) -> String {
    let profile = tempdir_in_target("chromium-profile");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("chromium did not finish within 180 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium failed ({status}) on {}",
        page.display()
    );
    out
}

fn tempdir_in_target(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The DOM Chromium built from `page`, and a full-page screenshot left as `<name>.png`.
fn render(page: &Path, name: &str) -> String {
    let dom = run_chromium(page, &["--dump-dom".into()]);
    assert!(dom.contains("</html>"), "no DOM from chromium:\n{dom}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    // Tall enough for the whole page: about 1 px per 40 bytes of HTML, capped.
    let height = (std::fs::metadata(page).unwrap().len() / 40).clamp(1500, 16000);
    run_chromium(
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size=1280,{height}"),
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "{} is no PNG", png.display());
    assert!(
        bytes.len() > 20_000,
        "{}: suspiciously small",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
    dom
}

/// The parts of `dom` from each `<section class="cell"` to the next.
fn cell_sections(dom: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = dom.split("<section class=\"cell\"").skip(1).collect();
    if let Some(last) = parts.last_mut() {
        *last = last.split("</section>").next().unwrap();
    }
    parts
}

/// One `<svg>` per plot figure, each with its title and both axis titles.
fn check_plots(section: &str, want: &[Metric]) {
    let figures: Vec<&str> = section.split("<figure class=\"plot\"").skip(1).collect();
    assert_eq!(
        figures.len(),
        want.len(),
        "plots in {}",
        &section[..section.len().min(300)]
    );
    for (fig, metric) in figures.iter().zip(want) {
        let fig = fig.split("</figure>").next().unwrap();
        assert!(
            fig.starts_with(&format!(" data-metric=\"{}\"", metric.id())),
            "{}",
            &fig[..80]
        );
        assert_eq!(fig.matches("<svg").count(), 1, "one svg per plot");
        for text in [X_DESC, metric.y_desc(), metric.title()] {
            assert!(
                fig.contains(&text.replace('>', "&gt;")),
                "{} plot lacks {text:?}",
                metric.id()
            );
        }
    }
}

/// The overview and seed tables are there, with the seed's five rows.
fn check_tables(dom: &str) {
    assert!(dom.contains("<table class=\"overview\">"), "overview table");
    let seed = dom
        .split("<table class=\"seed\">")
        .nth(1)
        .expect("seed table")
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        seed.matches("<tr>").count(),
        1 + 5,
        "header + the seed's 5 rows"
    );
    for text in ["virtio-net-pci", "vmxnet3", "VMware Fusion", "hung at ~2k"] {
        assert!(seed.contains(text), "seed table lacks {text}");
    }
    assert!(dom.contains("id=\"statistics\"") && dom.contains("<table class=\"stats\">"));
    assert!(!dom.contains("<script"), "no script");
    assert!(!dom.contains("https://"), "nothing to fetch");
    assert_eq!(
        dom.matches("http://").count(),
        dom.matches("http://www.w3.org/2000/svg").count(),
        "nothing to fetch: the only URLs are the SVG namespace"
    );
}

#[test]
fn report_from_a_real_run_directory() {
    let dir = scratch("ci-smoke").join("ci-smoke");
    copy_dir(
        &Path::new(REPO).join("tests/fixtures/results/ci-smoke"),
        &dir,
    );
    let before = std::fs::read(dir.join("cells.csv")).unwrap();
    let path = write_report(&dir).unwrap();
    assert_eq!(path, dir.join(REPORT_FILE));
    assert_eq!(
        std::fs::read(dir.join("cells.csv")).unwrap(),
        before,
        "cells.csv untouched"
    );

    let dom = render(&path, "ci-smoke");
    check_tables(&dom);
    let cells = cell_sections(&dom);
    assert_eq!(cells.len(), 1);
    // The old format has no tap drops column.
    check_plots(
        cells[0],
        &[
            Metric::Established,
            Metric::SshLatency,
            Metric::Heartbeat,
            Metric::Cpu,
            Metric::Conntrack,
        ],
    );
    assert!(
        cells[0].contains("start at the disconnect"),
        "old format said"
    );
    assert!(cells[0].contains("TcpExtTCPAbortOnMemory") || cells[0].contains("tap.tx_packets"));
    assert!(
        dom.contains("tcg, AMD EPYC, 2 CPUs, 24 GiB"),
        "host class shown"
    );
    assert!(dom.contains("target 3000 is below the smallest count the seed ran (50k)"));
}

#[test]
fn report_from_docs_measurements_without_time_series() {
    let mut found = 0;
    for e in std::fs::read_dir(Path::new(REPO).join("docs/measurements")).unwrap() {
        let dir = e.unwrap().path();
        if !dir.join("cells.csv").is_file() {
            continue;
        }
        found += 1;
        let before = std::fs::read(dir.join("cells.csv")).unwrap();
        let modified = || {
            std::fs::metadata(dir.join(REPORT_FILE))
                .ok()
                .map(|m| m.modified().unwrap())
        };
        let had_report = modified();
        let html = render_report(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("cells.csv")).unwrap(), before);
        assert_eq!(modified(), had_report, "rendering writes nothing there");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let page = scratch(&name).join(REPORT_FILE);
        std::fs::write(&page, html).unwrap();
        let dom = render(&page, &name);
        check_tables(&dom);
        let rows = read_csv(&dir.join("cells.csv")).unwrap();
        // Repetitions (and a rerun after an `error`) share their cell's section.
        let ids: std::collections::BTreeSet<_> =
            rows.iter().map(|r| (&r.cell_id, r.target)).collect();
        let cells = cell_sections(&dom);
        assert_eq!(cells.len(), ids.len(), "{name}: one section per cell");
        for c in cells {
            check_plots(c, &[]);
            // Only cells.csv is kept there, not the per-run cell directories.
            assert!(c.contains("No time series here"), "{name}");
        }
        // Rows from before the host columns are one class, "unknown host"; later ones name it.
        if rows.iter().any(|r| r.host_name.is_none()) {
            assert!(dom.contains("tcg, unknown host"), "{name}");
        } else {
            assert!(!dom.contains("unknown host"), "{name}");
            assert!(dom.contains("tcg, "), "{name}");
        }
    }
    assert!(found >= 2, "docs/measurements/*/cells.csv: {found}");
}

#[test]
fn report_argument_is_a_matrix_or_a_directory() {
    let fixture = Path::new(REPO).join("tests/fixtures/results/ci-smoke");
    assert_eq!(
        results_dir(&fixture, Path::new("results")).unwrap(),
        fixture
    );
    assert_eq!(
        results_dir(Path::new("matrix/nic-modes.yaml"), Path::new("results")).unwrap(),
        Path::new("results/nic-modes")
    );
    let err = results_dir(&Path::new(REPO).join("docs"), Path::new("results"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("without cells.csv"), "{err}");
    let err = render_report(&scratch("empty")).unwrap_err().to_string();
    assert!(err.contains("no cells.csv here"), "{err}");
}

// ---- a synthetic results directory in the new time series format.

struct Rep {
    verdict: &'static str,
    drain: Option<f64>,
    ramp_rate: f64,
    /// Heartbeat stops from t = 5 for this many seconds.
    hb_stall: f64,
    /// Probes fail from t = 4.
    probes_fail: bool,
}

fn row(cell: &str, nic: &str, vhost: &str, rep: u32, r: &Rep) -> CellRow {
    CellRow {
        run_id: "5e1f00".into(),
        cell_id: cell.into(),
        repetition: rep,
        started_at: format!("2026-11-24T02:0{rep}:00Z"),
        finished_at: format!("2026-11-24T02:0{rep}:50Z"),
        nic: nic.into(),
        mode: "bridge".into(),
        vhost: vhost.into(),
        qemu: "system".into(),
        traffic: "none".into(),
        disconnect: "fin".into(),
        scope: "one".into(),
        connections: 1_000_000,
        accel: Some("tcg".into()),
        target: Some(3000),
        vcpus: Some(1),
        server_memory_mib: Some(1024),
        client_memory_mib: Some(768),
        peak_established: Some(3000),
        ramp_seconds: Some(20.0),
        ramp_rate: Some(r.ramp_rate),
        kill_spread_seconds: Some(0.8),
        drain_seconds: r.drain,
        undrained_connections: Some(if r.drain.is_some() { 0 } else { 400 }),
        ssh_baseline_seconds: Some(1.5),
        ssh_max_seconds: Some(1.6 + f64::from(rep) / 10.0),
        ssh_probe_failures: Some(if r.probes_fail { 5 } else { 0 }),
        heartbeat_max_gap_seconds: Some(0.3 + r.hb_stall),
        peak_softirq_pct: Some(60.0),
        peak_vcpu_pct: Some(99.0),
        server_tap_tx_dropped: Some(150),
        verdict: r.verdict.parse().unwrap(),
        recovery_seconds: if r.verdict == "ok" { Some(0.5) } else { None },
        // Losses at the disconnect or after: the seed's moment.
        lost_phase: (r.verdict != "ok").then(|| "observe".parse().unwrap()),
        nicstorm_version: "test".into(),
        host_name: Some("h".into()),
        host_cpu: Some("Test CPU".into()),
        host_cores: Some(2),
        host_memory_mib: Some(24_000),
        ..CellRow::default()
    }
}

/// timeseries.csv of the new format: ramp -40..-20, hold -20..0, observe 0..30, 1 s apart.
fn new_series(r: &Rep, seed: f64) -> String {
    let mut s = String::from(
        "t,phase,server_established,hb_est,hb_age,hb_max_gap,softirq_pct,busy_pct,load1,memavail_kb,vcpu_pct,conntrack,tap_tx_dropped,probe_at,probe_ok,probe_latency\n",
    );
    let mut max_gap: f64 = 0.0;
    for i in -40..=30 {
        let t = f64::from(i);
        let phase = if t < -20.0 {
            "ramp"
        } else if t < 0.0 {
            "hold"
        } else {
            "observe"
        };
        let est = if t < -20.0 {
            3000.0 * (t + 40.0) / 20.0
        } else if t < 0.0 {
            3000.0
        } else {
            match r.drain {
                Some(d) if t >= d => 2000.0,
                Some(d) => 3000.0 - 1000.0 * t / d,
                None => 3000.0 - 600.0 * (t / 5.0).min(1.0),
            }
        };
        let hb_age = if r.hb_stall > 0.0 && t >= 5.0 && t < 5.0 + r.hb_stall {
            t - 5.0 + 0.2
        } else {
            0.1 + 0.1 * ((t + seed) % 3.0).abs()
        };
        if t >= 0.0 {
            max_gap = max_gap.max(hb_age);
        }
        let softirq = if t < -20.0 {
            30.0 + seed
        } else if (0.0..3.0).contains(&t) {
            60.0 - 10.0 * t
        } else {
            2.0 + seed
        };
        let vcpu = if t < -20.0 || (0.0..3.0).contains(&t) {
            99.0
        } else {
            20.0 + 5.0 * seed
        };
        let drops = if t < 0.0 { 0.0 } else { (50.0 * t).min(150.0) };
        let probe_at = (t / 2.0).floor() * 2.0;
        let probe_ok = !(r.probes_fail && probe_at >= 4.0);
        let latency = if probe_ok {
            format!(
                "{:.2}",
                1.4 + 0.05 * seed
                    + if (0.0..6.0).contains(&probe_at) {
                        0.3
                    } else {
                        0.0
                    }
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            "{t:.2},{phase},{est:.0},{est:.0},{hb_age:.2},{},{softirq:.1},{:.1},1.0,800000,{vcpu:.0},{est:.0},{drops:.0},{},{},{latency}\n",
            if t >= 0.0 { format!("{max_gap:.2}") } else { String::new() },
            softirq + 10.0,
            if t >= -19.0 { format!("{probe_at:.1}") } else { String::new() },
            if t >= -19.0 { probe_ok.to_string() } else { String::new() },
        ));
    }
    s
}

fn synthetic(root: &Path) -> PathBuf {
    let mut store = ResultsStore::open(root, "synthetic").unwrap();
    let ok = |drain: f64, rate: f64| Rep {
        verdict: "ok",
        drain: Some(drain),
        ramp_rate: rate,
        hb_stall: 0.0,
        probes_fail: false,
    };
    let cells: Vec<(&str, &str, &str, Vec<Rep>)> = vec![
        (
            "aaaa00000001",
            "virtio-net",
            "off",
            vec![
                ok(8.0, 600.0),
                ok(9.5, 610.0),
                Rep {
                    verdict: "ssh_dropped",
                    drain: None,
                    ramp_rate: 620.0,
                    hb_stall: 0.0,
                    probes_fail: true,
                },
                Rep {
                    verdict: "hung",
                    drain: None,
                    ramp_rate: 630.0,
                    hb_stall: 7.0,
                    probes_fail: true,
                },
            ],
        ),
        (
            "bbbb00000002",
            "vmxnet3",
            "n/a",
            vec![
                ok(1.0, 700.0),
                ok(1.2, 710.0),
                ok(0.9, 720.0),
                ok(1.1, 730.0),
            ],
        ),
    ];
    let dir = store.dir().to_path_buf();
    for (cell, nic, vhost, reps) in &cells {
        for (i, r) in reps.iter().enumerate() {
            let rep = i as u32 + 1;
            store.append(&row(cell, nic, vhost, rep, r)).unwrap();
            let cd = dir.join("5e1f00").join(format!("{cell}-r{rep}"));
            std::fs::create_dir_all(&cd).unwrap();
            std::fs::write(cd.join("timeseries.csv"), new_series(r, i as f64)).unwrap();
            std::fs::write(
                cd.join("counters.csv"),
                format!(
                    "window,scope,counter,before,after,delta\n\
                     ramp,server,TcpExtListenOverflows,0,{0},{0}\n\
                     observe,client1,TcpExtTCPAbortOnMemory,0,{1},{1}\n\
                     observe,host.server,tap.tx_dropped,10,160,150\n\
                     observe,client3,,read,missing,\n",
                    i * 3,
                    300 + i
                ),
            )
            .unwrap();
        }
    }
    // The same vmxnet3 cell on a KVM host: its own class, never pooled with the TCG rows.
    let mut kvm = row("bbbb00000002", "vmxnet3", "n/a", 1, &ok(3.0, 9000.0));
    kvm.accel = Some("kvm".into());
    kvm.target = Some(1_000_000);
    kvm.peak_established = Some(1_000_000);
    kvm.host_cpu = Some("Big CPU".into());
    kvm.host_cores = Some(64);
    store.append(&kvm).unwrap();
    // A failed repetition of the virtio cell that was never rerun.
    let mut err = row("aaaa00000001", "virtio-net", "off", 5, &ok(1.0, 1.0));
    err.verdict = "error".parse().unwrap();
    err.error = Some("provision: SSH on nicstorm-5e1f00-client2 not ready after 300 s".into());
    err.error_phase = Some("provision".into());
    store.append(&err).unwrap();
    // A breaking-point search under TCG: every count above tcg_connections ran at 3000.
    for (step, conns, verdict) in [(1, 2_000, "ok"), (2, 1_000_000, "ok")] {
        let mut s = row(
            &format!("cccc0000000{step}"),
            "vmxnet3",
            "n/a",
            1,
            &ok(1.0, 700.0),
        );
        s.search_id = Some("vmx-bridge".into());
        s.search_step = Some(step);
        s.connections = conns;
        s.target = Some(conns.min(3000));
        s.verdict = verdict.parse().unwrap();
        store.append(&s).unwrap();
    }
    dir
}

#[test]
fn report_of_repetitions_in_the_new_format() {
    let dir = synthetic(&scratch("synthetic"));
    let path = write_report(&dir).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    let dom = render(&path, "synthetic");
    check_tables(&dom);

    // Overview: the virtio cell's four repetitions, with the error as a fifth mark.
    assert!(
        html.contains("ok 2/5, ssh_dropped 1/5, hung 1/5, error 1/5"),
        "verdict counts"
    );
    // Two host classes, each its own overview and statistics table.
    assert!(dom.contains("tcg, Test CPU, 2 CPUs, 23 GiB"));
    assert!(dom.contains("kvm, Big CPU, 64 CPUs, 23 GiB"));
    assert_eq!(dom.matches("<table class=\"overview\">").count(), 2);
    assert_eq!(dom.matches("<table class=\"stats\">").count(), 2);

    // Seed: the virtio row names the vhost-off analogue and splits the seed's "hung".
    assert!(dom.contains("vhost off (closer analogue of UTM's user-space virtio)"));
    assert!(dom.contains("<code>hung</code> 1/4, <code>ssh_dropped</code> never recovered 1/4"));
    assert!(dom.contains("(1 error repetition(s) left out)"));

    // Statistics: missing values counted apart; n = 4 gives no median interval; the 4-vs-4
    // NIC comparison is tested, ramp rates completely separated: p = 2/70.
    assert!(dom.contains("n=2, 2 missing"), "drain of the virtio cell");
    assert!(dom.contains("n too small (n &lt; 6)"));
    assert!(dom.contains("nic (virtio-net vs vmxnet3)"));
    assert!(
        dom.contains("0.0286"),
        "exact Mann-Whitney p of 4 vs 4 separated"
    );
    assert!(dom.contains("n too small once missing values are left out"));

    // Search: none failed, capped under TCG.
    assert!(dom.contains("none failed up to <b>3000</b> (capped by tcg_connections under TCG)"));

    // Cells: every cell section has all six plots of the new format, phases named.
    let cells = cell_sections(&dom);
    assert_eq!(
        cells.len(),
        2 + 1 + 2,
        "2 TCG cells, the KVM one, 2 search steps"
    );
    for c in &cells[..2] {
        check_plots(c, &Metric::ALL);
        // plotters writes each SVG text on a line of its own.
        for phase in ["ramp", "hold", "disconnect", "observe"] {
            assert!(c.contains(&format!("\n{phase}\n")), "phase {phase}");
        }
        assert!(c.contains("rep 4"), "legend names the repetitions");
    }
    assert!(cells[0].contains("failed probe"));
    assert!(cells[0].contains(
        "Counters of client3 in the observe window: read at its start, missing at its end (rep 1, 2, 3, 4)."
    ));
    assert!(cells[0].contains("error in provision: provision: SSH on"));
}
