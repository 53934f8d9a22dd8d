//! A run over a matrix: lock, sweep leftovers, image, accelerator, then every cell x repetition
//! not yet in the CSV, each raced against Ctrl-C/SIGTERM; rows appended as cells end.

use std::path::Path;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::accel;
use crate::cli::{repo_root, EXIT_CELL_ERRORS, EXIT_INTERRUPTED, EXIT_OK};
use crate::events::{reporter, Event};
use crate::experiment::{self, CellContext};
use crate::host::HostInfo;
use crate::image::Image;
use crate::lab;
use crate::lock::RunLock;
use crate::names::RunId;
use crate::plan::{self, Accel};
use crate::provision;
use crate::results::ResultsStore;
use crate::shard::{self, Shard};
use crate::summary;

pub struct RunOptions<'a> {
    pub matrix: &'a Path,
    pub results_root: &'a Path,
    pub force: bool,
    /// Run only this shard's cells.
    pub shard: Option<Shard>,
}

pub async fn run(opts: RunOptions<'_>) -> Result<u8> {
    // Parse and check the whole matrix before anything boots.
    let plan = plan::load_plan(opts.matrix)?;
    let rep = reporter();
    let cells = shard::cells_in(&plan.cells, opts.shard);
    if let Some(s) = opts.shard {
        rep.event(&Event::Banner(shard_line(s, cells.len(), plan.cells.len())));
        if cells.is_empty() {
            // More shards than cells: nothing to run is a success, not a failure.
            return Ok(EXIT_OK);
        }
    }
    let _lock = RunLock::acquire(&lab::state_root())?;
    let mut store = ResultsStore::open(opts.results_root, &plan.name)?;
    let run_id = RunId::new();
    let run_dir = store.run_dir(run_id.as_str());
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::cli::init_logging(Some(&run_dir.join("nicstorm.log")));

    for r in lab::sweep(None)? {
        rep.event(&Event::Warning(format!(
            "removed leftover of an earlier run: {r}"
        )));
    }
    let root = repo_root();
    let storm_load = provision::storm_load_binary(&root)?;
    let image = Image::ensure(&root)?;
    let accel = accel::choose(&image, &run_dir).await?;
    let versions = experiment::versions();

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
            "git_revision": experiment::git_rev(),
            "image": { "dir": image.dir, "recipe_hash": image.recipe_hash, "guest_kernel": image.guest_kernel },
            "shard": opts.shard.map(|s| s.to_string()),
            // The same host block as the rows' host_* columns, plus the host's settings.
            "host": {
                "name": host.name,
                "cpu": host.cpu,
                "cores": host.cores,
                "memory_mib": host.memory_mib,
                "settings": experiment::host_settings(),
            },
            "host_sysctls": plan.settings.host_sysctls,
            "guest_sysctls": plan.settings.guest_sysctls,
        }),
    )?;

    // One listener for the whole loop, so a signal between two cells is not lost.
    let sig = signalled();
    tokio::pin!(sig);
    let done = store.completed(accel.accel);
    let total = cells.len() * plan.repetitions as usize;
    let mut errors = 0;
    let mut index = 0;
    for cell in cells {
        for repetition in 1..=plan.repetitions {
            index += 1;
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
            rep.event(&Event::CellStarted {
                index: index - 1,
                total,
                label: cell.label(),
                cell_id: cell.id.clone(),
                repetition,
            });
            let ctx = CellContext {
                run_id: &run_id,
                plan: &plan,
                cell,
                repetition,
                accel: &accel,
                image: &image,
                storm_load: &storm_load,
                cell_dir: run_dir.join(format!("{}-r{repetition}", cell.id)),
                versions: &versions,
                rep: rep.as_ref(),
            };
            // Dropping the cell future on a signal drops its lab guard, which tears it down.
            let row = tokio::select! {
                row = experiment::run_cell(&ctx) => row,
                name = &mut sig => return interrupted(&run_id, name, rep.as_ref()),
            };
            if row.verdict == "error" {
                errors += 1;
                rep.event(&Event::Warning(format!(
                    "cell {} error: {}",
                    cell.id,
                    row.error.as_deref().unwrap_or("")
                )));
            }
            store.append(&row)?;
        }
    }
    let summary_path = summary::write_summary(&store)?;
    rep.event(&Event::Banner(format!(
        "\n{}\nresults: {}\nsummary: {}",
        summary::summarize(store.rows()),
        store.csv_path().display(),
        summary_path.display()
    )));
    Ok(if errors > 0 {
        EXIT_CELL_ERRORS
    } else {
        EXIT_OK
    })
}

/// Resolves with the signal's name on SIGINT, SIGTERM or SIGHUP. Installing our own handlers
/// also overrides SIG_IGN, which a non-interactive shell gives to background jobs for SIGINT.
pub async fn signalled() -> &'static str {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will not tear down");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// The cell's lab guard has been dropped by now; sweep anything else of ours and say so.
fn interrupted(run_id: &RunId, sig: &str, rep: &dyn crate::events::Reporter) -> Result<u8> {
    rep.event(&Event::Warning(format!(
        "{sig}: run {run_id} interrupted; tearing down"
    )));
    let removed = lab::sweep(None)?;
    for r in &removed {
        rep.event(&Event::Warning(format!("removed {r}")));
    }
    rep.event(&Event::Banner("interrupted: everything torn down; cells.csv holds the cells that finished; rerun to resume".into()));
    Ok(EXIT_INTERRUPTED)
}

/// `nicstorm plan FILE [--shard K/N]`: the cells (of the shard), numbered as in the whole plan.
pub fn print_plan(matrix: &Path, shard: Option<Shard>) -> Result<u8> {
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
    Ok(EXIT_OK)
}

/// "shard 2/3: 3 of 8 cells".
fn shard_line(s: Shard, selected: usize, total: usize) -> String {
    format!("shard {s}: {selected} of {total} cells")
}
