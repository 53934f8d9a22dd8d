//! A run over a matrix: lock, sweep leftovers, image, emulators, accelerator, then every cell x
//! repetition not yet in the CSV, each raced against Ctrl-C/SIGTERM; rows appended as cells
//! end; the summary and the report rebuilt at the end.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::accel;
use crate::emulator::Emulator;
use crate::events::{reporter, CellEnd, Event, Reporter};
use crate::exit;
use crate::experiment::{self, CellContext};
use crate::host::HostInfo;
use crate::image::Image;
use crate::lab;
use crate::lock::RunLock;
use crate::names::RunId;
use crate::plan::{self, Accel, Cell, Plan};
use crate::provenance;
use crate::results::{CellRow, ResultsStore};
use crate::shard::{self, Shard};
use crate::signals::signalled;
use crate::summary;
use crate::verdict::Verdict;

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
            return Ok(exit::OK);
        }
    }
    let _lock = RunLock::acquire(&lab::state_root())?;
    // Refused here, before anything boots, when the results cannot be written.
    let mut store = ResultsStore::open(opts.results_root, &plan.name)?;
    let run_id = RunId::new();
    let run_dir = store.run_dir(run_id.as_str());
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    crate::logging::init(Some(&run_dir.join("nicstorm.log")));

    for r in lab::sweep(None)? {
        rep.event(&Event::Warning(format!(
            "removed leftover of an earlier run: {r}"
        )));
    }
    let root = crate::repo::root();
    let storm_load = crate::storm::binary(&root)?;
    let image = Image::ensure(&root)?;
    let emulators = emulators(&root, &cells)?;
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

    // One listener for the whole loop, so a signal between two cells is not lost.
    let sig = signalled();
    tokio::pin!(sig);
    let done = store.completed(accel.accel);
    let total = cells.len() * plan.repetitions as usize;
    let vhost_net = Path::new("/dev/vhost-net").exists();
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
            let emulator = &emulators[emulator_key(cell)];
            if let Some(reason) = experiment::not_applicable(cell, accel.accel, vhost_net) {
                let row = not_applicable_row(
                    &run_id,
                    &plan,
                    cell,
                    repetition,
                    accel.accel,
                    &versions,
                    emulator,
                    &host,
                    &reason,
                );
                rep.event(&Event::CellFinished {
                    label: cell.label(),
                    cell_id: cell.id.clone(),
                    repetition,
                    end: CellEnd::NotApplicable { reason },
                });
                store.append(&row)?;
                continue;
            }
            let ctx = CellContext {
                run_id: &run_id,
                plan: &plan,
                cell,
                repetition,
                accel: &accel,
                image: &image,
                storm_load: &storm_load,
                emulator,
                cell_dir: run_dir.join(format!("{}-r{repetition}", cell.id)),
                versions: &versions,
                host: &host,
                rep: rep.as_ref(),
            };
            // Dropping the cell future on a signal drops its lab guard and its tasks, which
            // tears the lab down; the cell's one end event says it was interrupted.
            let row = tokio::select! {
                row = experiment::run_cell(&ctx) => row,
                name = &mut sig => {
                    rep.event(&Event::CellFinished {
                        label: cell.label(),
                        cell_id: cell.id.clone(),
                        repetition,
                        end: CellEnd::Interrupted { signal: name },
                    });
                    return interrupted(&run_id, name, rep.as_ref());
                }
            };
            if row.verdict == Verdict::Error {
                errors += 1;
                if row.error_phase.as_deref() == Some("provision") && libvirt_gone() {
                    rep.event(&Event::Warning(
                        "libvirtd does not answer (virsh -c qemu:///system version); start it (scripts/setup-host.sh) and rerun to resume".into(),
                    ));
                }
            }
            store.append(&row)?;
        }
    }
    let summary_path = summary::write_summary(&store)?;
    let report = crate::report::write_report(store.dir());
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

/// The emulator of a cell (the `qemu` axis).
fn emulator_key(_cell: &Cell) -> &'static str {
    crate::emulator::SYSTEM
}

/// Every emulator the cells need, built (or found in the cache) before any VM boots.
fn emulators(root: &Path, cells: &[&Cell]) -> Result<BTreeMap<&'static str, Emulator>> {
    let mut out = BTreeMap::new();
    for c in cells {
        let key = emulator_key(c);
        if !out.contains_key(key) {
            out.insert(key, Emulator::ensure(root, key, vec![])?);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn not_applicable_row(
    run_id: &RunId,
    plan: &Plan,
    cell: &Cell,
    repetition: u32,
    accel: Accel,
    versions: &provenance::Versions,
    emulator: &Emulator,
    host: &HostInfo,
    reason: &str,
) -> CellRow {
    let now = chrono::Utc::now().to_rfc3339();
    let mut row = CellRow::for_cell(
        run_id.as_str(),
        cell,
        repetition,
        Some(accel),
        &plan.settings,
    );
    row.started_at = now.clone();
    row.finished_at = now;
    row.verdict = Verdict::NotApplicable;
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
            crate::provision::slow_start_cause()
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
    Ok(exit::OK)
}

/// "shard 2/3: 3 of 8 cells".
fn shard_line(s: Shard, selected: usize, total: usize) -> String {
    format!("shard {s}: {selected} of {total} cells")
}
