//! nicstorm: runs a connection-storm experiment matrix over virtual NIC models and network modes.
//!
//! The folders are the layers (docs/ARCHITECTURE.md draws them, and tests/layers.rs checks
//! that no module imports from a layer above its own), top to bottom:
//!
//! - `cli`: the commands, and what only commands need (run lock, signals, logging, exit codes);
//! - `experiment`: one cell, phase by phase, with provisioning and storm-load's host side;
//! - `merge`, `compare`, `report`: what is made from results directories (merged, compared,
//!   reported);
//! - `lab`: the four domains, their guests, host networking, image, emulator, accelerator;
//! - `host`: the measuring host and what is read off it and its guests (facts, metrics,
//!   provenance, counters, heartbeats);
//! - `results`: the row, the one store of cells.csv, summary, statistics;
//! - `matrix`: the matrix file, the checked plan, searches, shards, recipes;
//! - `progress`: the engine's events and their reporters;
//! - `model`: the vocabulary (verdicts, phases, names of what a run creates);
//! - `support`: small helpers that know nothing of the experiment.

pub mod cli;
pub(crate) mod compare;
pub mod experiment;
pub mod host;
pub mod lab;
pub mod matrix;
pub(crate) mod merge;
pub mod model;
pub mod progress;
pub mod report;
pub mod results;
pub(crate) mod support;
