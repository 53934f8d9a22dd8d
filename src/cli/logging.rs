//! Log set-up: a file while progress bars own the terminal, else warnings on stderr.

use std::path::Path;

/// Logs go to `file` when given (bars own the terminal), else to stderr at warn level.
/// `NICSTORM_LOG` sets the filter (default `info`).
pub(crate) fn init(file: Option<&Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NICSTORM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match file.and_then(|f| std::fs::File::create(f).ok()) {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder
            .with_writer(std::io::stderr)
            .with_env_filter(EnvFilter::new("warn"))
            .try_init(),
    };
}
