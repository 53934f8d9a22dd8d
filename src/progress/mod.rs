//! Typed engine events and the reporters that show them. The engine never draws and never
//! words: it sends events (event.rs: what happened, with its data), and a reporter turns them
//! into progress bars (bars.rs: a watching human on a TTY) or plain log lines (plain.rs: CI,
//! pipes, files), both in the words of text.rs; json.rs writes them as JSON lines for a tool.
//! How much a human sees is the command line's `-q`/`-v` ([`Verbosity`]).

mod bars;
mod event;
pub mod json;
mod plain;
pub(crate) mod text;

use std::io::IsTerminal;
use std::sync::OnceLock;

pub use event::{
    CellEnd, ErrorChain, Event, RampStop, RunStart, SearchDone, SlowStart, Step, Sweep, TcgCaps,
    Warning,
};

pub use bars::Bars;
pub use plain::Plain;

pub trait Reporter: Send + Sync {
    fn event(&self, e: &Event);
}

/// How much the terminal shows: `-q` (quiet), nothing (normal), `-v`, `-vv` (verbose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Cell ends, searches, warnings and the run's end only: no phases, updates or bars.
    Quiet,
    #[default]
    Normal,
    /// Every ramp and observe update in plain lines (not one in 5 s); logs at debug (`-vv`:
    /// trace), unless NICSTORM_LOG says otherwise.
    Verbose(u8),
}

static VERBOSITY: OnceLock<Verbosity> = OnceLock::new();

/// Set once, by the command line, before any reporter is made.
pub fn set_verbosity(v: Verbosity) {
    let _ = VERBOSITY.set(v);
}

/// What the command line asked for ([`Verbosity::Normal`] when it did not say).
pub fn verbosity() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or_default()
}

/// Picks bars for a human at a TTY, plain lines otherwise (or when CI is set, or `-q`, or `-v`).
pub(crate) fn reporter() -> Box<dyn Reporter> {
    let v = verbosity();
    if v == Verbosity::Normal && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
    {
        Box::new(Bars::default())
    } else {
        Box::new(Plain::stderr().with_verbosity(v))
    }
}

/// Every event to each of its reporters in turn (the terminal and `--events-json`).
pub struct Tee(pub Vec<Box<dyn Reporter>>);

impl Reporter for Tee {
    fn event(&self, e: &Event) {
        for r in &self.0 {
            r.event(e);
        }
    }
}
