//! nicstorm: runs a connection-storm experiment matrix over virtual NIC models and network modes.
//!
//! One module per stage; see docs/ARCHITECTURE.md for how they fit. The experiment's phases
//! are one file each under experiment/.

pub mod accel;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod counters;
pub mod emulator;
pub mod events;
pub mod exit;
pub mod experiment;
pub mod fault;
pub mod guest;
pub mod heartbeat;
pub mod host;
pub mod hostmetrics;
pub mod hostnet;
pub mod image;
pub mod lab;
pub mod loadproto;
pub mod lock;
pub mod logging;
pub mod merge;
pub mod names;
pub mod phase;
pub mod plan;
pub mod provenance;
pub mod provision;
pub mod repo;
pub mod report;
pub mod results;
pub mod runner;
pub mod search;
pub mod shard;
pub mod signals;
pub mod stats;
pub mod storm;
pub mod summary;
pub mod verdict;
pub mod wait;
