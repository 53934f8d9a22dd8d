//! Command line: the subcommands and what each one does at the top level.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::events::{reporter, Event};
use crate::image::Image;
use crate::lab::{self, LabSpec};
use crate::lock::RunLock;
use crate::names::RunId;
use crate::plan::{NetMode, NicModel, PortRange, Vhost};
use crate::provision;
use crate::shard::Shard;

/// Every cell ran (whatever its verdict: "the server hung" is a result).
pub const EXIT_OK: u8 = 0;
/// The harness could not do its job (bad input, libvirt down, image build failed).
pub const EXIT_HARNESS: u8 = 1;
/// The matrix ran but at least one cell ended in verdict `error` (infrastructure failure).
pub const EXIT_CELL_ERRORS: u8 = 3;
/// Interrupted (Ctrl-C / SIGTERM); everything was torn down.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "nicstorm",
    version,
    about = "Connection-storm experiments over virtual NIC models and network modes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every cell of a matrix not yet in its results CSV; appends one row per cell.
    Run {
        /// The matrix file.
        #[arg(default_value = "matrix/nic-modes.yaml")]
        matrix: PathBuf,
        /// Where results/<matrix-name>/ lives.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Rerun cells that already have rows.
        #[arg(long)]
        force: bool,
        /// Run only shard K of N (1 <= K <= N); N hosts running 1/N .. N/N of the same
        /// matrix file cover it without overlap (see `nicstorm merge`).
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Print the expanded cells of a matrix without running anything.
    Plan {
        matrix: PathBuf,
        /// Show only the cells of shard K of N.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Print the summary table of a matrix's results CSV.
    Summary {
        #[arg(default_value = "matrix/nic-modes.yaml")]
        matrix: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Write report.html (one self-contained page: overview, seed comparison, statistics,
    /// plots) into a results directory, from what its runs left there.
    Report {
        /// The matrix file (its results are in RESULTS/<file stem>/), or a results directory.
        #[arg(default_value = "matrix/nic-modes.yaml")]
        matrix: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// A results directory (holding cells.csv), instead of a matrix.
        #[arg(long, conflicts_with = "matrix")]
        dir: Option<PathBuf>,
    },
    /// Combine results directories of several hosts or runs (each a results/<matrix>/
    /// holding cells.csv and run directories) into one; rows already in OUT are kept.
    Merge {
        /// The merged results directory, e.g. results/nic-modes (created if needed).
        out: PathBuf,
        /// The results directories to merge in.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Bring a four-VM lab up or down by hand, to poke at it.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabAction {
    /// Boot 1 server + 3 clients and leave them running; prints how to SSH in.
    Up {
        #[arg(long, default_value = "vmxnet3", value_parser = parse_nic)]
        nic: NicModel,
        #[arg(long, default_value = "bridge", value_parser = parse_mode)]
        mode: NetMode,
        /// virtio-net only: vhost-net backend on or off.
        #[arg(long, value_parser = parse_vhost)]
        vhost: Option<Vhost>,
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory per VM in MiB.
        #[arg(long, default_value_t = 1024)]
        memory: u64,
    },
    /// Destroy every nicstorm domain, bridge, tap, rule and overlay on this host.
    Down,
}

fn parse_nic(s: &str) -> Result<NicModel, String> {
    s.parse().map_err(|e: String| e)
}
fn parse_mode(s: &str) -> Result<NetMode, String> {
    s.parse().map_err(|e: String| e)
}
fn parse_vhost(s: &str) -> Result<Vhost, String> {
    match s {
        "on" => Ok(Vhost::On),
        "off" => Ok(Vhost::Off),
        _ => Err(format!("{s:?}: allowed values are on, off")),
    }
}

/// The checkout: where images/, vm-templates/ and load/ are.
pub fn repo_root() -> PathBuf {
    std::env::var_os("NICSTORM_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run {
            matrix,
            results,
            force,
            shard,
        } => {
            crate::runner::run(crate::runner::RunOptions {
                matrix: &matrix,
                results_root: &results,
                force,
                shard,
            })
            .await
        }
        Command::Plan { matrix, shard } => crate::runner::print_plan(&matrix, shard),
        Command::Summary { matrix, results } => {
            let plan = crate::plan::load_plan(&matrix)?;
            let store = crate::results::ResultsStore::open(&results, &plan.name)?;
            print!("{}", crate::summary::summarize(store.rows()));
            Ok(EXIT_OK)
        }
        Command::Report {
            matrix,
            results,
            dir,
        } => {
            let dir = match dir {
                Some(d) => d,
                None => crate::report::results_dir(&matrix, &results)?,
            };
            println!("{}", crate::report::write_report(&dir)?.display());
            Ok(EXIT_OK)
        }
        Command::Merge { out, inputs } => crate::merge::run(&out, &inputs),
        Command::Lab {
            action:
                LabAction::Up {
                    nic,
                    mode,
                    vhost,
                    vcpus,
                    memory,
                },
        } => lab_up(nic, mode, vhost, vcpus, memory).await,
        Command::Lab {
            action: LabAction::Down,
        } => {
            let _lock = RunLock::acquire(&lab::state_root())?;
            let removed = lab::sweep(None)?;
            for r in &removed {
                eprintln!("removed {r}");
            }
            eprintln!("{} nicstorm resources removed", removed.len());
            Ok(EXIT_OK)
        }
    }
}

async fn lab_up(
    nic: NicModel,
    mode: NetMode,
    vhost: Option<Vhost>,
    vcpus: u32,
    memory: u64,
) -> Result<u8> {
    init_logging(None);
    let rep = reporter();
    let root = repo_root();
    let _lock = RunLock::acquire(&lab::state_root())?;
    for r in lab::sweep(None)? {
        rep.event(&Event::Warning(format!("removed leftover {r}")));
    }
    let image = Image::ensure(&root)?;
    let storm_load = provision::storm_load_binary(&root)?;
    let scratch = lab::state_root();
    let accel = crate::accel::choose(&image, &scratch).await?;
    rep.event(&Event::Banner(format!(
        "accelerator: {} ({})",
        accel.accel, accel.reason
    )));
    let run_id = RunId::new();
    let spec = LabSpec {
        nic,
        vhost: if nic == NicModel::VirtioNet && mode != NetMode::User {
            vhost.or(Some(Vhost::On))
        } else {
            None
        },
        mode,
        accel: accel.accel,
        vcpus,
        server_mib: memory,
        client_mib: memory,
        ports: PortRange {
            first: 20000,
            last: 20019,
        },
        log_dir: lab::state_root().join("manual").join(run_id.tag()),
    };
    // On a signal the future is dropped, and with it the lab guard, which tears down.
    let up = async {
        let ready = provision::provision(
            &run_id,
            &spec,
            &image,
            &storm_load,
            lab::default_boot_timeout(accel.accel),
            rep.as_ref(),
        )
        .await?;
        provision::check_reachability(&ready)
            .await
            .context("reachability check")?;
        Ok::<_, anyhow::Error>(ready)
    };
    let ready = tokio::select! {
        r = up => r?,
        sig = crate::runner::signalled() => {
            rep.event(&Event::Warning(format!("{sig}: tearing the lab down")));
            return Ok(EXIT_INTERRUPTED);
        }
    };
    println!(
        "lab {} is up ({} x4, {:?}); boot to SSH {:.0}s",
        run_id.tag(),
        nic.qemu_model(),
        mode,
        ready.boot_to_ssh
    );
    for g in &ready.guests {
        println!(
            "  {:8} ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@{}",
            g.role.to_string(),
            g.ep.key.display(),
            g.ep.port,
            g.ep.host
        );
    }
    println!(
        "  clients reach the server at {}:{}",
        ready.lab.target().addr,
        ready.lab.target().ports
    );
    println!("  serial logs: {}", spec.log_dir.display());
    println!("tear down with: nicstorm lab down");
    // The lab must outlive this process: hand it over instead of tearing it down.
    ready.lab.detach();
    Ok(EXIT_OK)
}

/// Logs go to `file` when given (bars own the terminal), else to stderr at warn level.
pub fn init_logging(file: Option<&Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NICSTORM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match file.and_then(|f| std::fs::File::create(f).ok()) {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder
            .with_writer(std::io::stderr)
            .with_env_filter(EnvFilter::new("warn"))
            .try_init(),
    };
}
