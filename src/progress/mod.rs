//! Typed engine events and the reporters that show them. The engine never draws and never
//! words: it sends events (event.rs: what happened, with its data), and a reporter turns them
//! into progress bars (bars.rs: a watching human on a TTY) or plain log lines (plain.rs: CI,
//! pipes, files), both in the words of text.rs.

mod bars;
mod event;
mod plain;
pub(crate) mod text;

use std::io::IsTerminal;

pub use event::{
    CellEnd, ErrorChain, Event, RampStop, RunStart, SearchDone, SlowStart, Step, Sweep, TcgCaps,
    Warning,
};

pub use bars::Bars;
pub use plain::Plain;

pub trait Reporter: Send + Sync {
    fn event(&self, e: &Event);
}

/// Picks bars for a human at a TTY, plain lines otherwise (or when CI is set).
pub(crate) fn reporter() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        Box::new(Bars::default())
    } else {
        Box::new(Plain::stderr())
    }
}
