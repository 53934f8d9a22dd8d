//! The vocabulary every layer shares: verdicts, phases, and the names of what a run creates.

pub mod names;
pub(crate) mod phase;
pub mod verdict;
