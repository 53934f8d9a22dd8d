//! nicstorm: runs a connection-storm experiment matrix over virtual NIC models and network modes.
//!
//! One module per stage; see docs/ARCHITECTURE.md for how they fit. The experiment's phases
//! are one file each under experiment/.

pub mod accel;
pub mod cli;
pub(crate) mod cmd;
pub(crate) mod config;
pub(crate) mod counters;
pub mod emulator;
pub mod events;
pub mod exit;
pub(crate) mod experiment;
pub(crate) mod fault;
pub mod guest;
pub(crate) mod heartbeat;
pub(crate) mod host;
pub mod hostmetrics;
pub mod hostnet;
pub mod image;
pub mod lab;
pub(crate) mod loadproto;
pub mod lock;
pub(crate) mod logging;
pub(crate) mod markup;
pub(crate) mod merge;
pub mod names;
pub(crate) mod phase;
pub mod plan;
pub(crate) mod provenance;
pub mod provision;
pub(crate) mod repo;
pub mod report;
pub mod results;
pub(crate) mod runner;
pub(crate) mod search;
pub(crate) mod shard;
pub(crate) mod signals;
pub(crate) mod stats;
pub mod storm;
pub(crate) mod summary;
pub mod verdict;
pub(crate) mod wait;
