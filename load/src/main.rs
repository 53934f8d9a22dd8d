//! storm-load: opens, holds and drops many TCP connections for nicstorm, and
//! reports progress as JSON lines (protocol v1, see PROTOCOL.md).

mod args;
mod capacity;
mod client;
mod errno;
mod error;
mod proto;
mod server;
mod shm;
mod supervisor;
mod sys;
mod traffic;

use args::Command;
use error::Error;

fn run(argv: &[String]) -> Result<i32, Error> {
    match args::parse(argv)? {
        Command::Help => {
            print!("{}", args::USAGE);
            Ok(0)
        }
        Command::Version => {
            println!(
                "storm-load {} (protocol v{})",
                env!("CARGO_PKG_VERSION"),
                proto::VERSION
            );
            Ok(0)
        }
        Command::Server(a) => server::run(&a),
        Command::Client(a) => client::run(&a),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&argv) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storm-load: {e}");
            if matches!(e, Error::Usage(_)) {
                eprint!("{}", args::USAGE);
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}
