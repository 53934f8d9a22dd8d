//! The matrix: a YAML file (config/), the checked plan of its cells (plan/), breaking-point
//! searches (search.rs), shards (shard.rs) and the emulator recipes a matrix may name
//! (recipes.rs).

pub(crate) mod config;
pub(crate) mod passt;
pub mod plan;
pub mod recipes;
pub(crate) mod search;
pub(crate) mod shard;
