//! The signals that end a run: SIGINT, SIGTERM, SIGHUP.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name on SIGINT, SIGTERM or SIGHUP. Installing our own handlers
/// also overrides SIG_IGN, which a non-interactive shell gives to background jobs for SIGINT.
pub(crate) async fn signalled() -> &'static str {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will not tear down");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}
