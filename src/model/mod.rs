//! The vocabulary every layer shares: verdicts, phases, and the names of what a run creates.

pub mod named;
pub mod names;
pub mod phase;
pub mod verdict;
