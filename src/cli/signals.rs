//! The signals that end a run: SIGINT, SIGTERM, SIGHUP.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Installs the handlers now and returns a future that resolves with the signal's name on
/// SIGINT, SIGTERM or SIGHUP, including one that arrives before the future is first polled
/// (a cell's first poll can block in libvirt for seconds). Installing our own handlers also
/// overrides SIG_IGN, which a non-interactive shell gives to background jobs for SIGINT.
/// Must be called inside the runtime.
pub(crate) fn signalled() -> impl Future<Output = &'static str> {
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = handlers else {
            tracing::warn!("cannot install signal handlers; Ctrl-C will not tear down");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        }
    }
}
