//! Command line: the subcommands and which module carries each out. Nothing else lives here;
//! the exit codes are in exit.rs, logging in logging.rs, the checkout in repo.rs.

mod compare;
pub mod exit;
pub(crate) mod lab;
pub mod lock;
pub(crate) mod logging;
mod merge;
pub(crate) mod output;
pub(crate) mod runner;
pub(crate) mod signals;

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use anyhow::Context;

use crate::matrix::plan::{NetMode, NicModel, Vhost};
use crate::matrix::shard::Shard;
use crate::model::verdict::Verdict;
use lab::UpOptions;

/// `nicstorm --version`: the package version and the git revision it was built from
/// (build.rs; "unknown" for a build outside a checkout without NICSTORM_GIT_REVISION).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("NICSTORM_GIT_REVISION"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "nicstorm",
    version = VERSION,
    about = "Connection-storm experiments over virtual NIC models and network modes",
    after_help = "Environment: NO_COLOR (set: no colours), NICSTORM_LOG (the log filter), \
                  NICSTORM_ACCEL (kvm|tcg), NICSTORM_STATE, NICSTORM_CACHE; see README."
)]
pub struct Cli {
    /// More output: every progress update, debug logs (-vv: trace).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// Less output: only how each cell ended, warnings and the run's end.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How `plan` prints the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlanFormat {
    /// An aligned table.
    Text,
    /// JSON (docs/schemas/plan.schema.json).
    Json,
}

/// How `summary` prints the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SummaryFormat {
    /// A table for the terminal (as a run prints it at its end).
    Text,
    /// summary.md's markdown table.
    Markdown,
    /// JSON (docs/schemas/summary.schema.json).
    Json,
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
        #[arg(long, value_name = "K/N", conflicts_with = "cell")]
        shard: Option<Shard>,
        /// Run only this cell (its repetitions, and its search if it has one); repeat for
        /// more. `nicstorm plan MATRIX --json` lists the ids. One job per cell, merged after.
        #[arg(long, value_name = "ID")]
        cell: Vec<String>,
        /// Also write the run's events to FILE as JSON lines (docs/schemas/events.schema.json).
        #[arg(long, value_name = "FILE")]
        events_json: Option<PathBuf>,
        /// Write a JUnit XML file of this run's rows (one test case per cell x repetition).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// With --junit: verdicts that fail a test case (`error` always does, as an error).
        #[arg(long, value_name = "VERDICT,...", value_delimiter = ',', requires = "junit", value_parser = parse_verdict)]
        fail_on_verdict: Vec<Verdict>,
    },
    /// Print the expanded cells of a matrix without running anything.
    Plan {
        matrix: PathBuf,
        /// Show only the cells of shard K of N.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Print the summary table of a matrix's results CSV.
    Summary {
        #[arg(default_value = "matrix/nic-modes.yaml")]
        matrix: PathBuf,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Default: text on a terminal, markdown when stdout is a file or a pipe (so
        /// `nicstorm summary > x.md` writes what summary.md holds).
        #[arg(long, value_enum)]
        format: Option<SummaryFormat>,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
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
    /// Print a shell completion script, e.g. `source <(nicstorm completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `nicstorm man | man -l -`; with --dir, write one page
    /// per command into DIR (nicstorm.1, nicstorm-run.1, ...).
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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
        /// Restore the four guests from a saved lab of this kind (saved now if there is none)
        /// instead of booting them, as `settings.lab_start: restore` does for a run.
        #[arg(long)]
        restore: bool,
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
fn parse_verdict(s: &str) -> Result<Verdict, String> {
    s.parse().map_err(|_| {
        format!(
            "{s:?} is not a verdict; allowed: {}",
            Verdict::ALL.map(|v| v.as_str()).join(", ")
        )
    })
}
fn parse_vhost(s: &str) -> Result<Vhost, String> {
    match s {
        "on" => Ok(Vhost::On),
        "off" => Ok(Vhost::Off),
        _ => Err(format!("{s:?}: allowed values are on, off")),
    }
}

pub async fn run(cli: Cli) -> Result<u8> {
    crate::progress::set_verbosity(match (cli.quiet, cli.verbose) {
        (true, _) => crate::progress::Verbosity::Quiet,
        (false, 0) => crate::progress::Verbosity::Normal,
        (false, n) => crate::progress::Verbosity::Verbose(n),
    });
    match cli.command {
        Command::Run {
            matrix,
            results,
            force,
            shard,
            cell,
            events_json,
            junit,
            fail_on_verdict,
        } => {
            crate::cli::runner::run(crate::cli::runner::RunOptions {
                matrix: &matrix,
                results_root: &results,
                force,
                shard,
                cells: &cell,
                events_json: events_json.as_deref(),
                junit: junit.as_deref(),
                fail_on: &fail_on_verdict,
            })
            .await
        }
        Command::Plan {
            matrix,
            shard,
            format,
            json,
        } => {
            let json = json || format == PlanFormat::Json;
            crate::cli::runner::print_plan(&matrix, shard, json)
        }
        Command::Summary {
            matrix,
            results,
            format,
            json,
        } => {
            // Read only: the results directory is neither created nor migrated nor trimmed.
            let plan = crate::matrix::plan::load_plan(&matrix)?;
            let rows = crate::results::file::read_dir_rows(&results.join(&plan.name))?;
            use std::io::IsTerminal as _;
            let format = match (json, format) {
                (true, _) => SummaryFormat::Json,
                (false, Some(f)) => f,
                (false, None) if std::io::stdout().is_terminal() => SummaryFormat::Text,
                (false, None) => SummaryFormat::Markdown,
            };
            print!("{}", output::summary_text(&plan.name, &rows, format)?);
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "nicstorm", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir)
                        .with_context(|| format!("writing man pages into {}", dir.display()))?;
                    println!("{}", dir.display());
                }
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
            }
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
                    restore,
                },
        } => {
            lab::up(UpOptions {
                nic,
                mode,
                vhost,
                vcpus,
                memory,
                restore,
            })
            .await
        }
        Command::Lab {
            action: LabAction::Down,
        } => lab::down(),
    }
}
