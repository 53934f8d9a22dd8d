//! nicstorm: runs a connection-storm experiment matrix over virtual NIC models and network modes.
//!
//! One module per stage; see docs/ARCHITECTURE.md for how they fit.

pub mod accel;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod counters;
pub mod events;
pub mod experiment;
pub mod guest;
pub mod heartbeat;
pub mod host;
pub mod hostmetrics;
pub mod hostnet;
pub mod image;
pub mod lab;
pub mod loadproto;
pub mod lock;
pub mod merge;
pub mod names;
pub mod plan;
pub mod provision;
pub mod report;
pub mod results;
pub mod runner;
pub mod search;
pub mod shard;
pub mod stats;
pub mod summary;
pub mod template;
pub mod verdict;
pub mod wait;
