//! A run over a matrix: lock, sweep leftovers, image, emulators, accelerator, then every cell x
//! repetition not yet in the CSV, each raced against Ctrl-C/SIGTERM; rows appended as cells
//! end; the summary and the report rebuilt at the end.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use anyhow::{Context, Result};

use futures_util::FutureExt;

use crate::cli::exit;
use crate::cli::lock::RunLock;
use crate::cli::signals::signalled;
use crate::experiment::{self, CellContext};
use crate::host::provenance;
use crate::host::HostInfo;
use crate::lab;
use crate::lab::accel;
use crate::lab::emulator::Emulator;
use crate::lab::image::Image;
use crate::matrix::plan::{self, Accel, Cell, Plan};
use crate::matrix::search::{self, SearchSpec};
use crate::matrix::shard::{self, Shard};
use crate::model::names::RunId;
use crate::model::phase::Phase;
use crate::model::verdict::Verdict;
use crate::progress::{reporter, CellEnd, Event, Reporter};
use crate::results::summary;
use crate::results::{CellRow, ResultsStore};

pub(crate) struct RunOptions<'a> {
    pub(crate) matrix: &'a Path,
    pub(crate) results_root: &'a Path,
    pub(crate) force: bool,
    /// Run only this shard's cells.
    pub(crate) shard: Option<Shard>,
}

pub(crate) async fn run(opts: RunOptions<'_>) -> Result<u8> {
    // Handlers first, one listener for the whole run: a signal during set-up, between two
    // cells, or before a cell's first await is kept, not lost (or, under SIG_IGN, ignored).
    let sig = signalled();
    tokio::pin!(sig);
    // Parse and check the whole matrix before anything boots.
    let plan = plan::load_plan(opts.matrix)?;
    let rep = reporter();
    let cells = shard::cells_in(&plan.cells, opts.shard);
    if let Some(s) = opts.shard {
        rep.event(&Event::Banner(shard_line(s, cells.len(), plan.cells.len())));
        if cells.is_empty() {
            // More shards than cells: nothing to run is a success, not a failure.
            return Ok(exit::OK);
        }
    }
    let _lock = RunLock::acquire(&lab::state_root())?;
    // Refused here, before anything boots, when the results cannot be written.
    let mut store = ResultsStore::open(opts.results_root, &plan.name)?;
    let run_id = RunId::new();
    let run_dir = store.run_dir(run_id.as_str());
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::cli::logging::init(Some(&run_dir.join("nicstorm.log")));

    for r in lab::sweep(None)? {
        rep.event(&Event::Warning(format!(
            "removed leftover of an earlier run: {r}"
        )));
    }
    let root = crate::support::repo::root();
    let storm_load = crate::experiment::storm::binary(&root)?;
    let image = Image::ensure(&root)?;
    let emulators = emulators(&root, &plan, &cells)?;
    let accel = accel::choose(&image, &run_dir).await?;
    let versions = provenance::versions();
    if let Some(w) = kvm_permission_warning() {
        rep.event(&Event::Warning(w));
    }

    let mut banner = format!(
        "nicstorm run {run_id}: matrix {}{} ({} cells x {} repetitions), accelerator {}: {}",
        plan.path.display(),
        opts.shard
            .map(|s| format!(" shard {s}"))
            .unwrap_or_default(),
        cells.len(),
        plan.repetitions,
        accel.accel,
        accel.reason
    );
    if accel.accel == Accel::Tcg {
        banner.push_str(&format!(
            "\n*** TCG: software emulation. Cells run at min(connections, tcg_connections = {}) with {} vCPU(s) per VM;\n*** rows say accel=tcg. Run on a KVM host for the full connection counts.",
            plan.settings.tcg_connections, plan.settings.tcg_vcpus
        ));
    }
    rep.event(&Event::Banner(banner));
    let host = HostInfo::read();
    store.write_run_json(
        run_id.as_str(),
        &serde_json::json!({
            "run_id": run_id.as_str(),
            "matrix": plan.path,
            "started_at": chrono::Utc::now().to_rfc3339(),
            "accel": accel.accel.to_string(),
            "accel_reason": accel.reason,
            "versions": versions,
            "git_revision": provenance::git_rev(),
            "image": { "dir": image.dir, "recipe_hash": image.recipe_hash, "guest_kernel": image.guest_kernel },
            "emulators": emulators.values().map(|e| serde_json::json!({
                "name": e.name, "binary": e.binary, "version": e.version,
                "recipe_hash": e.recipe_hash, "env": e.env,
            })).collect::<Vec<_>>(),
            "shard": opts.shard.map(|s| s.to_string()),
            // The same host block as the rows' host_* columns, plus the host's settings.
            "host": {
                "name": host.name,
                "cpu": host.cpu,
                "cores": host.cores,
                "memory_mib": host.memory_mib,
                "settings": provenance::host_settings(),
            },
            "host_sysctls": plan.settings.host_sysctls,
            "guest_sysctls": plan.settings.guest_sysctls,
        }),
    )?;

    let done = store.completed(accel.accel);
    let total = cells.len() * plan.repetitions as usize;
    let env = Env {
        run_id: &run_id,
        plan: &plan,
        accel: &accel,
        image: &image,
        storm_load: &storm_load,
        run_dir: &run_dir,
        versions: &versions,
        host: &host,
        rep: rep.as_ref(),
        vhost_net: Path::new("/dev/vhost-net").exists(),
    };
    let mut errors = 0;
    let mut index = 0;
    for cell in cells {
        let emulator = &emulators[cell.qemu.0.as_str()];
        for repetition in 1..=plan.repetitions {
            index += 1;
            rep.event(&Event::CellStarted {
                index: index - 1,
                total,
                label: cell.label(),
                cell_id: cell.id.clone(),
                repetition,
            });
            let Some(spec) = &cell.search else {
                let target = cell.target(accel.accel, &plan.settings);
                if !opts.force && done.contains_key(&(cell.id.clone(), repetition, target)) {
                    rep.event(&Event::CellSkipped {
                        label: cell.label(),
                        cell_id: cell.id.clone(),
                        reason: format!(
                            "already in cells.csv at {target} connections (use --force to rerun)"
                        ),
                    });
                    continue;
                }
                match run_one(&env, cell, repetition, emulator, None, sig.as_mut()).await? {
                    Ran::Row(row) => {
                        errors += usize::from(row.verdict == Verdict::Error);
                        store.append(&row)?;
                    }
                    Ran::Interrupted(name) => return interrupted(&run_id, name, rep.as_ref()),
                }
                continue;
            };
            // A breaking-point search: steps until the boundary is bracketed. Its steps so
            // far are rows of this cell and repetition (this run's only, with --force), so a
            // rerun resumes mid-search.
            let spec = match accel.accel {
                Accel::Tcg => spec.capped(plan.settings.tcg_connections),
                Accel::Kvm => spec.clone(),
            };
            loop {
                let steps: Vec<(u64, search::Outcome)> = store
                    .rows()
                    .iter()
                    .filter(|r| {
                        r.cell_id == cell.id
                            && r.repetition == repetition
                            && r.search_id.as_deref() == Some(cell.id.as_str())
                            && r.accel == Some(accel.accel.into())
                            && (!opts.force || r.run_id == run_id.as_str())
                    })
                    .map(CellRow::search_step)
                    .collect();
                let count = match search::next(&spec, &steps) {
                    search::Next::Run(n) => n,
                    search::Next::Done(b) => {
                        rep.event(&Event::Banner(search_line(cell, repetition, &spec, &b)));
                        break;
                    }
                };
                let step = steps.len() as u32 + 1;
                let at = cell.at(count);
                match run_one(&env, &at, repetition, emulator, Some(step), sig.as_mut()).await? {
                    Ran::Row(row) => {
                        errors += usize::from(row.verdict == Verdict::Error);
                        store.append(&row)?;
                        if row.verdict == Verdict::NotApplicable {
                            break;
                        }
                    }
                    Ran::Interrupted(name) => return interrupted(&run_id, name, rep.as_ref()),
                }
            }
        }
    }
    // Under the lock the run's appends took, held: the report reads no file of its own.
    let lock = store.lock()?;
    let summary_path = summary::write_summary(store.dir(), store.matrix_name(), store.rows())?;
    let report = crate::report::write_report_of(store.dir(), store.rows());
    drop(lock);
    rep.event(&Event::Banner(format!(
        "\n{}\nresults: {}\nsummary: {}\nreport:  {}",
        summary::summarize(store.rows()),
        store.csv_path().display(),
        summary_path.display(),
        match &report {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("not written: {e:#}"),
        }
    )));
    Ok(if errors > 0 {
        exit::CELL_ERRORS
    } else {
        exit::OK
    })
}

/// What every cell of the run shares.
struct Env<'a> {
    run_id: &'a RunId,
    plan: &'a Plan,
    accel: &'a accel::AccelChoice,
    image: &'a Image,
    storm_load: &'a Path,
    run_dir: &'a Path,
    versions: &'a provenance::Versions,
    host: &'a HostInfo,
    rep: &'a dyn Reporter,
    vhost_net: bool,
}

enum Ran {
    Row(Box<CellRow>),
    Interrupted(&'static str),
}

/// Runs one cell x repetition (a search step when `step` is given): its row, or the signal
/// that interrupted it (its lab and tasks are dropped, which tears everything down).
async fn run_one<F: Future<Output = &'static str>>(
    env: &Env<'_>,
    cell: &Cell,
    repetition: u32,
    emulator: &Emulator,
    step: Option<u32>,
    sig: Pin<&mut F>,
) -> Result<Ran> {
    let finish = |mut row: CellRow| {
        if let Some(step) = step {
            row.search_id = Some(cell.id.clone());
            row.search_step = Some(step);
        }
        Ran::Row(Box::new(row))
    };
    if let Some(reason) = experiment::not_applicable(cell, env.accel.accel, env.vhost_net) {
        let row = not_applicable_row(env, cell, repetition, emulator, &reason);
        env.rep.event(&Event::CellFinished {
            label: cell.label(),
            cell_id: cell.id.clone(),
            repetition,
            end: CellEnd::NotApplicable { reason },
        });
        return Ok(finish(row));
    }
    let step_dir = step.map(|s| format!("-s{s}")).unwrap_or_default();
    let ctx = CellContext {
        run_id: env.run_id,
        plan: env.plan,
        cell,
        repetition,
        accel: env.accel,
        image: env.image,
        storm_load: env.storm_load,
        emulator,
        cell_dir: env
            .run_dir
            .join(format!("{}-r{repetition}{step_dir}", cell.id)),
        versions: env.versions,
        host: env.host,
        rep: env.rep,
        phase: std::sync::Mutex::new(crate::model::phase::Phase::Preflight),
    };
    // A panic inside a phase is a bug, but it must not lose the run: the lab's guard tears the
    // lab down while the panic unwinds, and the cell becomes an error row naming the phase.
    let cell_run = std::panic::AssertUnwindSafe(experiment::run_cell(&ctx)).catch_unwind();
    let row = tokio::select! {
        row = cell_run => match row {
            Ok(row) => row,
            Err(panic) => panicked_row(env, &ctx, emulator, panic),
        },
        name = sig => {
            env.rep.event(&Event::CellFinished {
                label: cell.label(),
                cell_id: cell.id.clone(),
                repetition,
                end: CellEnd::Interrupted { signal: name },
            });
            return Ok(Ran::Interrupted(name));
        }
    };
    if row.verdict == Verdict::Error
        && row.error_phase != Some(Phase::Preflight.into())
        && libvirt_gone()
    {
        env.rep.event(&Event::Warning(
            "libvirtd does not answer (virsh -c qemu:///system version): start it (scripts/setup-host.sh), then rerun to resume; the cells that finished are kept".into(),
        ));
    }
    Ok(finish(row))
}

/// The row of a cell whose future panicked (see `run_one`), with its one end event.
fn panicked_row(
    env: &Env<'_>,
    ctx: &CellContext<'_>,
    emulator: &Emulator,
    panic: Box<dyn std::any::Any + Send>,
) -> CellRow {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into());
    let phase = ctx.current_phase();
    let message =
        format!("nicstorm panicked in {phase}: {what} (a bug: please report it with nicstorm.log)");
    let mut row = not_applicable_row(env, ctx.cell, ctx.repetition, emulator, &message);
    row.verdict = Verdict::Error.into();
    row.error_phase = Some(phase.into());
    env.rep.event(&Event::CellFinished {
        label: ctx.cell.label(),
        cell_id: ctx.cell.id.clone(),
        repetition: ctx.repetition,
        end: CellEnd::Error { phase, message },
    });
    row
}

/// "search <cell> r1: ok up to 27000, failed at 30000 (Some(Resolved) after 6 steps)".
fn search_line(cell: &Cell, repetition: u32, spec: &SearchSpec, b: &search::Bracket) -> String {
    let ok = b
        .last_ok
        .map_or("nothing ok".into(), |n| format!("ok up to {n}"));
    let fail = b
        .first_fail
        .map_or(format!("none failed up to {}", spec.to), |n| {
            format!("failed at {n}")
        });
    let flapping = if b.flapping.is_empty() {
        String::new()
    } else {
        format!("; ok again at {:?}", b.flapping)
    };
    let stop = b.stop.as_ref().map_or("-".to_owned(), |s| format!("{s:?}"));
    format!(
        "search {} r{repetition}: {ok}, {fail}{flapping} (stopped: {stop}, after {} steps)",
        cell.label(),
        b.steps
    )
}

/// Every emulator the cells need (the `qemu` axis), built or found in the cache before any
/// VM boots, each with its environment from settings.qemu_env.
fn emulators<'c>(
    root: &Path,
    plan: &Plan,
    cells: &[&'c Cell],
) -> Result<BTreeMap<&'c str, Emulator>> {
    let mut out = BTreeMap::new();
    for c in cells {
        let value = c.qemu.0.as_str();
        if !out.contains_key(value) {
            let env = plan
                .settings
                .qemu_env
                .get(value)
                .cloned()
                .unwrap_or_default();
            out.insert(value, Emulator::ensure(root, value, env)?);
        }
    }
    Ok(out)
}

/// A row for a cell that did not run to a result: identity, versions, host, and `reason` in
/// its error column (verdict not_applicable; a caller may make it an error).
fn not_applicable_row(
    env: &Env<'_>,
    cell: &Cell,
    repetition: u32,
    emulator: &Emulator,
    reason: &str,
) -> CellRow {
    let (versions, host) = (env.versions, env.host);
    let now = chrono::Utc::now().to_rfc3339();
    let mut row = CellRow::for_cell(
        env.run_id.as_str(),
        cell,
        repetition,
        Some(env.accel.accel),
        &env.plan.settings,
    );
    row.started_at = now.clone();
    row.finished_at = now;
    row.verdict = Verdict::NotApplicable.into();
    row.error = Some(reason.to_owned());
    row.nicstorm_version = versions.nicstorm.clone();
    row.qemu_version = emulator.version.clone();
    row.libvirt_version = versions.libvirt.clone();
    row.host_kernel = versions.host_kernel.clone();
    host.stamp(&mut row);
    row
}

/// /dev/kvm without group access makes libvirt re-probe QEMU on every domain start (about a
/// minute each here); setup-host.sh fixes it, but a host set up otherwise should hear why.
fn kvm_permission_warning() -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/dev/kvm").ok()?.permissions().mode() & 0o777;
    (mode & 0o060 == 0).then(|| {
        format!(
            "domain starts will take about a minute each: {}",
            crate::experiment::provision::slow_start_cause()
        )
    })
}

fn libvirt_gone() -> bool {
    virt::connect::Connect::open(Some(lab::LIBVIRT_URI)).is_err()
}

/// The cell's lab guard has been dropped by now; sweep anything else of ours and say so.
fn interrupted(run_id: &RunId, sig: &str, rep: &dyn Reporter) -> Result<u8> {
    rep.event(&Event::Warning(format!(
        "{sig}: run {run_id} interrupted; tearing down"
    )));
    let removed = lab::sweep(None)?;
    for r in &removed {
        rep.event(&Event::Warning(format!("removed {r}")));
    }
    rep.event(&Event::Banner("interrupted: everything torn down; cells.csv holds the cells that finished; rerun to resume".into()));
    Ok(exit::INTERRUPTED)
}

/// `nicstorm plan FILE [--shard K/N]`: the cells (of the shard), numbered as in the whole plan.
pub(crate) fn print_plan(matrix: &Path, shard: Option<Shard>) -> Result<u8> {
    let mut plan = plan::load_plan(matrix)?;
    if let Some(s) = shard {
        let total = plan.cells.len();
        let ids: Vec<String> = shard::cells_in(&plan.cells, shard)
            .iter()
            .map(|c| c.id.clone())
            .collect();
        plan.cells.retain(|c| ids.contains(&c.id));
        println!("{}", shard_line(s, plan.cells.len(), total));
    }
    print!("{}", plan::render_plan(&plan));
    Ok(exit::OK)
}

/// "shard 2/3: 3 of 8 cells".
fn shard_line(s: Shard, selected: usize, total: usize) -> String {
    format!("shard {s}: {selected} of {total} cells")
}
