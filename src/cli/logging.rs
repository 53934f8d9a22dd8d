//! Log set-up: a file while progress bars own the terminal, else warnings on stderr. `-v`/`-vv`
//! raise both levels (debug, trace), `-q` lowers stderr's to errors; NICSTORM_LOG, when set,
//! is the filter whatever the flags say.

use std::path::Path;

use crate::progress::{verbosity, Verbosity};

/// Logs go to `file` when given (bars own the terminal), else to stderr at warn level.
/// `NICSTORM_LOG` sets the filter (default `info`, `debug` with `-v`, `trace` with `-vv`).
pub(crate) fn init(file: Option<&Path>) {
    use tracing_subscriber::EnvFilter;
    let (file_level, stderr_level) = match verbosity() {
        Verbosity::Quiet => ("info", "error"),
        Verbosity::Normal => ("info", "warn"),
        Verbosity::Verbose(1) => ("debug", "info"),
        Verbosity::Verbose(_) => ("trace", "debug"),
    };
    let from_env = || EnvFilter::try_from_env("NICSTORM_LOG").ok();
    let builder = tracing_subscriber::fmt().with_ansi(false);
    let _ = match file.and_then(|f| std::fs::File::create(f).ok()) {
        Some(f) => builder
            .with_env_filter(from_env().unwrap_or_else(|| EnvFilter::new(file_level)))
            .with_writer(std::sync::Mutex::new(f))
            .try_init(),
        None => builder
            .with_writer(std::io::stderr)
            .with_env_filter(from_env().unwrap_or_else(|| EnvFilter::new(stderr_level)))
            .try_init(),
    };
}
