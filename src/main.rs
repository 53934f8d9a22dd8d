//! `nicstorm`: parses arguments, sets up logging, calls the command, maps the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

use nicstorm::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nicstorm: cannot start the async runtime: {e}");
            return ExitCode::from(nicstorm::cli::exit::HARNESS);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("nicstorm: error: {e:#}");
            ExitCode::from(nicstorm::cli::exit::HARNESS)
        }
    }
}
