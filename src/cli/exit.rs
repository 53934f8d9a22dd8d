//! Exit codes of `nicstorm` (README "Exit codes"): a result is never a failure, and a harness
//! failure is told apart from an interrupted run.

/// Every cell ran (whatever its verdict: "the server hung" is a result).
pub(crate) const OK: u8 = 0;
/// The harness could not do its job (bad input, libvirt down, image build failed).
pub const HARNESS: u8 = 1;
/// The matrix ran but at least one cell ended in verdict `error` (infrastructure failure).
pub(crate) const CELL_ERRORS: u8 = 3;
/// `nicstorm compare`: the gate (`--fail-on`, `--fail-on-verdict`) failed.
pub(crate) const GATE_FAILED: u8 = 4;
/// Interrupted (Ctrl-C / SIGTERM); everything was torn down.
pub(crate) const INTERRUPTED: u8 = 130;
