//! A run over a matrix: every cell x repetition not yet in the CSV, each raced against
//! Ctrl-C/SIGTERM, rows appended as cells end; the summary and the report rebuilt at the end.
//! One function per step: `prepare` (lock, results, sweep, image, emulators, accelerator),
//! `banner` and `run_json` (what the run says and records about itself), `run_cells` (resume,
//! cells, searches), `run_one` (one cell, raced against signals), `finish` (summary, report).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
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
use crate::progress::json::JsonLines;
use crate::progress::{
    reporter, Event, Reporter, RunStart, SearchDone, Sweep, TcgCaps, Tee, Warning,
};
use crate::results::row::cell_dir_name;
use crate::results::select::{next_search_step, SearchStep};
use crate::results::summary;
use crate::results::{CellRow, ResultsStore};

pub(crate) struct RunOptions<'a> {
    pub(crate) matrix: &'a Path,
    pub(crate) results_root: &'a Path,
    pub(crate) force: bool,
    /// Run only this shard's cells.
    pub(crate) shard: Option<Shard>,
    /// Run only these cells (`--cell ID`); empty: every cell (of the shard).
    pub(crate) cells: &'a [String],
    /// Also write the events as JSON lines here.
    pub(crate) events_json: Option<&'a Path>,
    /// Write the run's JUnit XML here, failing the cases with these verdicts (and `error`).
    pub(crate) junit: Option<&'a Path>,
    pub(crate) fail_on: &'a [Verdict],
}

pub(crate) async fn run(opts: RunOptions<'_>) -> Result<u8> {
    // Handlers first, one listener for the whole run: a signal during set-up, between two
    // cells, or before a cell's first await is kept, not lost (or, under SIG_IGN, ignored).
    let sig = signalled();
    tokio::pin!(sig);
    // Parse and check the whole matrix before anything boots.
    let plan = plan::load_plan(opts.matrix)?;
    let cells = match opts.cells {
        [] => shard::cells_in(&plan.cells, opts.shard),
        ids => cells_by_id(&plan, ids)?,
    };
    let rep: Box<dyn Reporter> = match opts.events_json {
        None => reporter(),
        Some(path) => Box::new(Tee(vec![reporter(), Box::new(JsonLines::create(path)?)])),
    };
    if let Some(s) = opts.shard {
        rep.event(&Event::ShardSelected {
            shard: s.to_string(),
            selected: cells.len(),
            total: plan.cells.len(),
        });
        if cells.is_empty() {
            // More shards than cells: nothing to run is a success, not a failure.
            return Ok(exit::OK);
        }
    }
    let mut run = prepare(&opts, &plan, &cells, rep.as_ref()).await?;
    rep.event(&Event::RunStarted(run_start(
        &run,
        &opts,
        &plan,
        cells.len(),
    )));
    run.store
        .write_run_json(run.run_id.as_str(), &run_json(&run, &opts, &plan))?;
    let env = Env {
        run_id: &run.run_id,
        plan: &plan,
        accel: &run.accel,
        image: &run.image,
        storm_load: &run.storm_load,
        passt: run.passt.as_ref(),
        run_dir: &run.run_dir,
        versions: &run.versions,
        host: &run.host,
        rep: rep.as_ref(),
        vhost_net: Path::new("/dev/vhost-net").exists(),
    };
    let ended = run_cells(
        &env,
        &mut run.store,
        &cells,
        &run.emulators,
        opts.force,
        sig.as_mut(),
    )
    .await?;
    match ended {
        Ended::Done { errors } => finish(&mut run, rep.as_ref(), errors, &opts),
        Ended::Interrupted(name) => interrupted(&run.run_id, name, rep.as_ref()),
    }
}

/// What a run sets up before its first cell, and holds until its end.
struct Prepared<'c> {
    _lock: RunLock,
    store: ResultsStore,
    run_id: RunId,
    run_dir: PathBuf,
    storm_load: PathBuf,
    image: Image,
    emulators: BTreeMap<&'c str, Emulator>,
    /// The passt of passt-mode cells (`settings.passt`), when any cell is one.
    passt: Option<crate::lab::passt::Program>,
    accel: accel::AccelChoice,
    versions: provenance::Versions,
    host: HostInfo,
}

/// The run lock, the results directory (refused here, before anything boots, when it cannot
/// take rows), the run directory and its log, leftovers swept, storm-load, the guest image,
/// every emulator the cells need, and the accelerator.
async fn prepare<'c>(
    opts: &RunOptions<'_>,
    plan: &Plan,
    cells: &[&'c Cell],
    rep: &dyn Reporter,
) -> Result<Prepared<'c>> {
    // Refused here, before anything is read back from it, when it is not root's alone.
    lab::checked_state_root()?;
    // And the results directory, before the lock: refusing either needs no lock.
    ResultsStore::check_dir(opts.results_root, &plan.name)?;
    let lock = RunLock::host()?;
    let store = ResultsStore::open(opts.results_root, &plan.name)?;
    let run_id = RunId::new();
    let run_dir = store.run_dir(run_id.as_str());
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::cli::logging::init(Some(&run_dir.join("nicstorm.log")));

    report_sweep(lab::sweep(None)?, Sweep::RunStart, rep);
    let root = crate::support::repo::root();
    let storm_load = crate::experiment::storm::binary(&root)?;
    let image = Image::ensure(&root)?;
    let emulators = emulators(&root, cells)?;
    let passt = if cells
        .iter()
        .any(|c| c.mode == crate::matrix::plan::NetMode::Passt)
    {
        Some(crate::lab::passt::Program::ensure(
            &root,
            &plan.settings.passt,
        )?)
    } else {
        None
    };
    let accel = accel::choose(&image, &run_dir).await?;
    if let Some(w) = kvm_permission_warning() {
        rep.event(&Event::Warning(w));
    }
    Ok(Prepared {
        _lock: lock,
        store,
        run_id,
        run_dir,
        storm_load,
        image,
        emulators,
        passt,
        accel,
        versions: provenance::versions(),
        host: HostInfo::read(),
    })
}

/// What the run says when it starts: the matrix, the cells, the accelerator (and what TCG
/// means for the counts).
fn run_start(run: &Prepared<'_>, opts: &RunOptions<'_>, plan: &Plan, cells: usize) -> RunStart {
    let accel = &run.accel;
    RunStart {
        run_id: run.run_id.to_string(),
        matrix: plan.path.clone(),
        shard: opts.shard.map(|s| s.to_string()),
        cells,
        repetitions: plan.repetitions,
        accel: accel.accel.to_string(),
        accel_reason: accel.reason.clone(),
        tcg: (accel.accel == Accel::Tcg).then_some(TcgCaps {
            connections: plan.settings.tcg_connections,
            vcpus: plan.settings.tcg_vcpus,
        }),
    }
}

/// run.json: the run's provenance (README "Reading the results").
fn run_json(run: &Prepared<'_>, opts: &RunOptions<'_>, plan: &Plan) -> serde_json::Value {
    let (image, host) = (&run.image, &run.host);
    serde_json::json!({
        "run_id": run.run_id.as_str(),
        "matrix": plan.path,
        "started_at": chrono::Utc::now().to_rfc3339(),
        "accel": run.accel.accel.to_string(),
        "accel_reason": run.accel.reason,
        "versions": run.versions,
        "git_revision": provenance::git_rev(),
        "image": { "dir": image.dir, "recipe_hash": image.recipe_hash, "guest_kernel": image.guest_kernel },
        "emulators": run.emulators.values().map(|e| serde_json::json!({
            "name": e.name, "binary": e.binary, "version": e.version,
            // QEMU's environment is per cell (a sweep's point): the rows' qemu_env column.
            "recipe_hash": e.recipe_hash,
        })).collect::<Vec<_>>(),
        "shard": opts.shard.map(|s| s.to_string()),
        // The cells `--cell` chose (empty: all of the plan, or of the shard).
        "cells": opts.cells,
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
        // Not in any cell id: whether the server tap's packet ring ran (README "The packet ring").
        "capture": {
            // What ran: the setting, or this accelerator's default.
            "when": plan.settings.capture.when(run.accel.accel).to_string(),
            "set": plan.settings.capture.set.map(|c| c.to_string()),
            "snaplen": plan.settings.capture.snaplen,
            "ring_bytes": plan.settings.capture.ring_bytes,
        },
    })
}

/// How the cells of a run ended.
enum Ended {
    /// Every cell ran (or was skipped); `errors` rows ended in `error`.
    Done {
        errors: usize,
    },
    Interrupted(&'static str),
}

/// Every cell x repetition not yet complete in cells.csv (all of them with `force`), rows
/// appended as cells end; a searched cell runs its steps until its search is done.
async fn run_cells<F: Future<Output = &'static str>>(
    env: &Env<'_>,
    store: &mut ResultsStore,
    cells: &[&Cell],
    emulators: &BTreeMap<&str, Emulator>,
    force: bool,
    mut sig: Pin<&mut F>,
) -> Result<Ended> {
    let (plan, accel, rep) = (env.plan, env.accel.accel, env.rep);
    let done = store.completed(accel);
    let total = cells.len() * plan.repetitions as usize;
    let mut errors = 0;
    let mut index = 0;
    for (cell, repetition) in run_order(cells, plan.repetitions, plan.settings.order) {
        let emulator = &emulators[cell.qemu.0.as_str()];
        {
            index += 1;
            rep.event(&Event::CellStarted {
                index: index - 1,
                total,
                label: cell.label(),
                cell_id: cell.id.clone(),
                repetition,
            });
            if cell.search.is_none() {
                let target = cell.resolve(accel, &plan.settings).target;
                if !force && done.contains_key(&(cell.id.clone(), repetition, target)) {
                    rep.event(&Event::CellSkipped {
                        label: cell.label(),
                        cell_id: cell.id.clone(),
                        target,
                    });
                    continue;
                }
                match run_one(env, cell, repetition, emulator, None, sig.as_mut()).await? {
                    Ran::Row(row) => {
                        errors += usize::from(row.verdict == Verdict::Error);
                        store.append(&row)?;
                    }
                    Ran::Interrupted(name) => return Ok(Ended::Interrupted(name)),
                }
                continue;
            }
            // A breaking-point search: steps until the boundary is bracketed. Its steps so
            // far are rows of this cell and repetition (this run's only, with --force), so a
            // rerun resumes mid-search.
            let only_run = force.then_some(env.run_id.as_str());
            loop {
                let next = next_search_step(
                    store.rows(),
                    cell,
                    repetition,
                    accel,
                    &plan.settings,
                    only_run,
                );
                let (count, step) = match next {
                    Some(SearchStep::Run { count, step }) => (count, step),
                    Some(SearchStep::Done { spec, bracket }) => {
                        rep.event(&Event::SearchDone(search_done(
                            cell, repetition, &spec, &bracket,
                        )));
                        break;
                    }
                    None => unreachable!("a searched cell has a search"),
                };
                let at = cell.at(count);
                match run_one(env, &at, repetition, emulator, Some(step), sig.as_mut()).await? {
                    Ran::Row(row) => {
                        errors += usize::from(row.verdict == Verdict::Error);
                        store.append(&row)?;
                        if row.verdict == Verdict::NotApplicable {
                            break;
                        }
                    }
                    Ran::Interrupted(name) => return Ok(Ended::Interrupted(name)),
                }
            }
        }
    }
    Ok(Ended::Done { errors })
}

/// summary.md and report.html, made under the lock the run's appends take, from the rows the
/// store holds (a report reading cells.csv itself would wait for that lock); the summary
/// printed; the exit code.
fn finish(
    run: &mut Prepared<'_>,
    rep: &dyn Reporter,
    errors: usize,
    opts: &RunOptions<'_>,
) -> Result<u8> {
    let store = &mut run.store;
    let lock = store.lock()?;
    let summary_path = summary::write_summary(store.dir(), store.matrix_name(), store.rows())?;
    crate::results::tidy::write_errno_csv(store.dir(), store.rows())?;
    let report = crate::report::write_report_of(store.dir(), store.rows());
    drop(lock);
    if let Some(path) = opts.junit {
        let xml = crate::results::junit::junit_xml(&crate::results::junit::JunitRun {
            matrix: store.matrix_name(),
            run_id: run.run_id.as_str(),
            host: run.host.name.as_deref(),
            rows: store
                .rows()
                .iter()
                .filter(|r| r.run_id == run.run_id.as_str())
                .collect(),
            fail_on: opts.fail_on,
        });
        std::fs::write(path, xml)
            .with_context(|| format!("--junit: writing {}", path.display()))?;
    }
    // The table for the terminal the events are shown on (stderr).
    let term = console::Term::stderr();
    rep.event(&Event::RunFinished {
        summary_table: summary::summarize_terminal(
            store.rows(),
            crate::cli::output::terminal_width(&term),
            console::colors_enabled_stderr(),
        ),
        results: store.csv_path().to_path_buf(),
        summary: summary_path,
        report: report.map_err(|e| (&e).into()),
    });
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
    passt: Option<&'a crate::lab::passt::Program>,
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

/// The order cells x repetitions run in. `cells`: each cell's repetitions back to back, in
/// plan order. `interleaved`: repetition 1 of every cell, then repetition 2 in reverse
/// order, and so on (A B, B A, A B, ...), so cells that differ in one axis alternate and
/// host drift over the run falls on every cell alike. Only the order changes: a rerun
/// resumes by (cell, repetition) either way.
fn run_order<'c>(
    cells: &[&'c Cell],
    repetitions: u32,
    order: crate::matrix::plan::RunOrder,
) -> Vec<(&'c Cell, u32)> {
    use crate::matrix::plan::RunOrder;
    match order {
        RunOrder::Cells => cells
            .iter()
            .flat_map(|c| (1..=repetitions).map(move |r| (*c, r)))
            .collect(),
        RunOrder::Interleaved => (1..=repetitions)
            .flat_map(|r| {
                let pass: Vec<&'c Cell> = if r % 2 == 1 {
                    cells.to_vec()
                } else {
                    cells.iter().rev().copied().collect()
                };
                pass.into_iter().map(move |c| (c, r))
            })
            .collect(),
    }
}

/// Runs one cell x repetition (a search step when `step` is given): its row, or the signal
/// that interrupted it (its lab and tasks are dropped, which tears everything down). The
/// experiment makes the row and the end event of every ending; a panic inside a phase is
/// caught here and becomes an error row naming the phase.
async fn run_one<F: Future<Output = &'static str>>(
    env: &Env<'_>,
    cell: &Cell,
    repetition: u32,
    emulator: &Emulator,
    step: Option<u32>,
    sig: Pin<&mut F>,
) -> Result<Ran> {
    let emulator = &emulator.with_env(cell.qemu_env.clone());
    let ctx = CellContext {
        run_id: env.run_id,
        plan: env.plan,
        cell,
        repetition,
        accel: env.accel,
        image: env.image,
        storm_load: env.storm_load,
        emulator,
        passt: env.passt,
        cell_dir: env.run_dir.join(cell_dir_name(&cell.id, repetition, step)),
        versions: env.versions,
        host: env.host,
        rep: env.rep,
        phase: crate::experiment::PhaseClock::default(),
        provisioned: Default::default(),
        sizes: cell.resolve(env.accel.accel, &env.plan.settings),
        search_step: step,
        vhost_net: env.vhost_net,
    };
    let cell_run = std::panic::AssertUnwindSafe(experiment::run_cell(&ctx)).catch_unwind();
    let row = tokio::select! {
        row = cell_run => row.unwrap_or_else(|panic| experiment::panicked(&ctx, panic)),
        name = sig => {
            experiment::interrupted(&ctx, name);
            return Ok(Ran::Interrupted(name));
        }
    };
    if row.verdict == Verdict::Error
        && row.error_phase != Some(Phase::Preflight.into())
        && libvirt_gone()
    {
        env.rep.event(&Event::Warning(Warning::LibvirtGone));
    }
    Ok(Ran::Row(Box::new(row)))
}

/// How a search of `cell` ended, as its event says it.
fn search_done(cell: &Cell, repetition: u32, spec: &SearchSpec, b: &search::Bracket) -> SearchDone {
    SearchDone {
        label: cell.label(),
        repetition,
        param: spec.param.column(),
        ok: spec.param.ok_side().as_str(),
        from: spec.from,
        to: spec.to,
        last_ok: b.last_ok,
        first_fail: b.first_fail,
        flapping: b.flapping.clone(),
        stop: b.stop.as_ref().map(|s| s.name().to_owned()),
        steps: b.steps,
    }
}

/// Every emulator the cells need (the `qemu` axis), built or found in the cache before any
/// VM boots. Each cell runs it with its own environment (`Cell::qemu_env`).
fn emulators<'c>(root: &Path, cells: &[&'c Cell]) -> Result<BTreeMap<&'c str, Emulator>> {
    let mut out = BTreeMap::new();
    for c in cells {
        let value = c.qemu.0.as_str();
        if !out.contains_key(value) {
            out.insert(value, Emulator::ensure(root, value, vec![])?);
        }
    }
    Ok(out)
}

/// /dev/kvm without group access makes libvirt re-probe QEMU on every domain start (about a
/// minute each here); setup-host.sh fixes it, but a host set up otherwise should hear why.
fn kvm_permission_warning() -> Option<Warning> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/dev/kvm").ok()?.permissions().mode() & 0o777;
    (mode & 0o060 == 0).then(|| Warning::SlowStartsAhead {
        cause: crate::experiment::provision::slow_start_cause(),
    })
}

fn libvirt_gone() -> bool {
    virt::connect::Connect::open(Some(lab::LIBVIRT_URI)).is_err()
}

/// The cell's lab guard has been dropped by now; sweep anything else of ours and say so.
fn interrupted(run_id: &RunId, sig: &'static str, rep: &dyn Reporter) -> Result<u8> {
    rep.event(&Event::Warning(Warning::RunInterrupted {
        signal: sig,
        run_id: run_id.to_string(),
    }));
    report_sweep(lab::sweep(None)?, Sweep::Interrupted, rep);
    rep.event(&Event::RunTornDown);
    Ok(exit::INTERRUPTED)
}

/// What a sweep removed, and the restore files it kept with why (`lab up` says it too).
pub(crate) fn report_sweep(swept: lab::Swept, sweep: Sweep, rep: &dyn Reporter) {
    for r in swept.removed {
        rep.event(&Event::Warning(Warning::Removed { resource: r, sweep }));
    }
    for k in swept.kept {
        rep.event(&Event::Warning(Warning::Kept {
            file: k.file,
            why: k.why,
        }));
    }
}

/// `nicstorm plan FILE [--shard K/N] [--json]`: the cells (of the shard), numbered as in the
/// whole plan; as JSON with `json` (docs/schemas/plan.schema.json).
pub(crate) fn print_plan(matrix: &Path, shard: Option<Shard>, json: bool) -> Result<u8> {
    let mut plan = plan::load_plan(matrix)?;
    let total = plan.cells.len();
    if let Some(s) = shard {
        let ids: Vec<String> = shard::cells_in(&plan.cells, shard)
            .iter()
            .map(|c| c.id.clone())
            .collect();
        plan.cells.retain(|c| ids.contains(&c.id));
        if !json {
            println!("{}", shard_line(s, plan.cells.len(), total));
        }
    }
    if json {
        let doc = plan::plan_json(&plan, shard.map(|s| s.to_string()), total);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", plan::render_plan(&plan));
    }
    Ok(exit::OK)
}

/// The cells `--cell` names, in the plan's order; an id the plan does not have is an error
/// naming it, the matrix, and how to list the ids (and the ids, when there are few).
fn cells_by_id<'p>(plan: &'p Plan, ids: &[String]) -> Result<Vec<&'p Cell>> {
    if let Some(unknown) = ids
        .iter()
        .find(|id| !plan.cells.iter().any(|c| &c.id == *id))
    {
        let m = plan.path.display();
        let listed = if plan.cells.len() <= 12 {
            let all: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
            format!("; its cells are {}", all.join(", "))
        } else {
            format!("; it has {} cells", plan.cells.len())
        };
        anyhow::bail!(
            "--cell {unknown:?}: {m} has no cell with this id{listed}. \
             `nicstorm plan {m}` lists the ids (`nicstorm plan {m} --json` for a program); \
             an id changes when the cell's settings change"
        );
    }
    Ok(plan.cells.iter().filter(|c| ids.contains(&c.id)).collect())
}

/// "shard 2/3: 3 of 8 cells".
fn shard_line(s: Shard, selected: usize, total: usize) -> String {
    format!("shard {s}: {selected} of {total} cells")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(nics: &str) -> Plan {
        plan::parse_plan(
            &format!("axes:\n  nic: [{nics}]\n  mode: [bridge]\n  connections: [3000]\n"),
            Path::new("matrix/t.yaml"),
        )
        .unwrap()
    }

    /// `--cell` takes the named cells in the plan's order, each once; an unknown id names
    /// itself, the matrix, the ids there are (few) or how many (many), and how to list them.
    #[test]
    fn cells_by_id_chooses_or_explains() {
        let p = plan("vmxnet3, e1000, e1000e");
        let ids: Vec<String> = p.cells.iter().map(|c| c.id.clone()).collect();
        let chosen = cells_by_id(&p, &[ids[2].clone(), ids[0].clone()]).unwrap();
        assert_eq!(
            chosen.iter().map(|c| &c.id).collect::<Vec<_>>(),
            [&ids[0], &ids[2]]
        );
        let err = cells_by_id(&p, &[ids[1].clone(), "nope".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "--cell \"nope\": matrix/t.yaml has no cell with this id; its cells are "
            ),
            "{err}"
        );
        assert!(ids.iter().all(|id| err.contains(id.as_str())), "{err}");
        assert!(
            err.contains("`nicstorm plan matrix/t.yaml --json`"),
            "{err}"
        );
        let mut many = plan("vmxnet3, e1000, e1000e, rtl8139, virtio-net");
        many.cells = many.cells.iter().cycle().take(13).cloned().collect();
        let err = cells_by_id(&many, &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("; it has 13 cells."), "{err}");
    }

    #[test]
    fn interleaved_order_alternates_cells_and_spreads_repetitions() {
        let text = |order: &str| {
            format!("repetitions: 3\naxes:\n  nic: [e1000, vmxnet3]\n  mode: [bridge]\n  connections: [10]\nsettings:\n  order: {order}\n")
        };
        for (order, want) in [
            ("cells", [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]),
            (
                "interleaved",
                [(0, 1), (1, 1), (1, 2), (0, 2), (0, 3), (1, 3)],
            ),
        ] {
            let p = plan::parse_plan(&text(order), Path::new("matrix/t.yaml")).unwrap();
            let cells: Vec<&crate::matrix::plan::Cell> = p.cells.iter().collect();
            let got: Vec<(usize, u32)> = super::run_order(&cells, 3, p.settings.order)
                .into_iter()
                .map(|(c, r)| (c.index - 1, r))
                .collect();
            assert_eq!(got, want, "{order}");
        }
    }
}
