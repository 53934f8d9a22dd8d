//! Small helpers that know nothing of the experiment: running host commands, waiting, escaping
//! markup and values for display, and where the checkout is.

pub(crate) mod cmd;
pub(crate) mod markup;
pub(crate) mod repo;
pub mod trust;
pub(crate) mod wait;
