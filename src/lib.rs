//! nicstorm: runs a connection-storm experiment matrix over virtual NIC models and network modes.
//!
//! One module per stage; see docs/ARCHITECTURE.md for how they fit.

pub mod config;
pub mod heartbeat;
pub mod loadproto;
pub mod plan;
pub mod results;
pub mod summary;
pub mod verdict;
