//! Small helpers that know nothing of the experiment: running host commands, waiting, escaping
//! markup and values for display, the complete lines of a text file, and where the checkout is.

pub(crate) mod atomic;
pub(crate) mod cmd;
pub(crate) mod lines;
pub(crate) mod markup;
pub(crate) mod procs;
pub(crate) mod repo;
#[cfg(test)]
pub(crate) mod testing;
pub mod trust;
pub(crate) mod wait;
