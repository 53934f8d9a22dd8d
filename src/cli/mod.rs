//! Command line: the subcommands and which module carries each out. Nothing else lives here;
//! the exit codes are in exit.rs, logging in logging.rs, the checkout in repo.rs.

mod compare;
pub mod exit;
pub(crate) mod lab;
pub mod lock;
pub(crate) mod logging;
mod merge;
pub(crate) mod runner;
pub(crate) mod signals;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::matrix::plan::{NetMode, NicModel, Vhost};
use crate::matrix::shard::Shard;
use lab::UpOptions;

#[derive(Parser, Debug)]
#[command(
    name = "nicstorm",
    version,
    about = "Connection-storm experiments over virtual NIC models and network modes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// Compare two sets of repetitions of the same cells (two results directories, two values
    /// of one axis in one, or a baseline file and a results directory): per cell verdict
    /// counts, each metric's medians and an exact test, and a line: better, worse, same or
    /// undecided (docs/compare.md). Exit 4 when a --fail-on or --fail-on-verdict rule fails.
    Compare {
        /// BASE NEW (results directories holding cells.csv, or cells.csv files); one
        /// directory with --axis; NEW alone with --baseline.
        #[arg(required = true, num_args = 1..=2, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Compare two values of one axis within one directory, e.g. qemu=system,plain;
        /// cells are matched by their other axes.
        #[arg(long, value_name = "NAME=BASE,NEW", conflicts_with = "baseline")]
        axis: Option<crate::compare::AxisChoice>,
        /// A baseline file (docs/compare.md): the stored results to compare NEW against and
        /// each metric's tolerance.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Exit 4 when a cell's line is one of these (worse, undecided).
        #[arg(long, value_delimiter = ',', value_parser = compare::parse_fail_on, value_name = "LINE,...")]
        fail_on: Vec<crate::compare::Outcome>,
        /// Exit 4 when any repetition on NEW ended in one of these verdicts.
        #[arg(long, value_delimiter = ',', value_parser = compare::parse_verdict, value_name = "VERDICT,...")]
        fail_on_verdict: Vec<crate::model::verdict::Verdict>,
        /// What goes to stdout.
        #[arg(long, value_enum, default_value = "md")]
        format: compare::Format,
        /// Short for --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Also write compare.md, compare.html and compare.json into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Bring a four-VM lab up or down by hand, to poke at it.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum LabAction {
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

pub async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run {
            matrix,
            results,
            force,
            shard,
        } => {
            crate::cli::runner::run(crate::cli::runner::RunOptions {
                matrix: &matrix,
                results_root: &results,
                force,
                shard,
            })
            .await
        }
        Command::Plan { matrix, shard } => crate::cli::runner::print_plan(&matrix, shard),
        Command::Summary { matrix, results } => {
            // Read only: the results directory is neither created nor migrated nor trimmed.
            let plan = crate::matrix::plan::load_plan(&matrix)?;
            let rows = crate::results::file::read_dir_rows(&results.join(&plan.name))?;
            print!("{}", crate::results::summary::summarize(&rows));
            Ok(exit::OK)
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
            Ok(exit::OK)
        }
        Command::Merge { out, inputs } => merge::run(&out, &inputs),
        Command::Compare {
            dirs,
            axis,
            baseline,
            fail_on,
            fail_on_verdict,
            format,
            json,
            out,
        } => compare::run(compare::Args {
            dirs,
            axis,
            baseline,
            fail_on,
            fail_on_verdict,
            format: if json { compare::Format::Json } else { format },
            out,
        }),
        Command::Lab {
            action:
                LabAction::Up {
                    nic,
                    mode,
                    vhost,
                    vcpus,
                    memory,
                },
        } => {
            lab::up(UpOptions {
                nic,
                mode,
                vhost,
                vcpus,
                memory,
            })
            .await
        }
        Command::Lab {
            action: LabAction::Down,
        } => lab::down(),
    }
}
