//! Traffic besides the storm (the `traffic` axis). bulk-in and bulk-out ride on storm-load's
//! own connections (its --bulk-in/--bulk-out options, see storm.rs); ssh-stream is an SSH
//! session from the host that streams `top` from the server, as the seed watched while
//! disconnecting. The session is a child of the cell: dropping the cell ends it.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::lab::guest::Endpoint;

/// What the stream delivered: when each chunk arrived.
#[derive(Default)]
struct Arrivals {
    bytes: u64,
    at: Vec<Instant>,
}

/// A running `ssh server top -b -d 0.5`, its output logged with host arrival times.
pub(crate) struct SshStream {
    arrivals: Arc<Mutex<Arrivals>>,
}

impl SshStream {
    pub(crate) async fn start(
        ep: &Endpoint,
        log: &Path,
        tasks: &mut JoinSet<()>,
    ) -> Result<SshStream> {
        let mut child = tokio::process::Command::new("ssh")
            .args(ep.ssh_args(Duration::from_secs(30)))
            .args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .arg(format!("root@{}", ep.host))
            .arg("exec top -b -d 0.5")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the ssh-stream session (ssh server top)")?;
        let mut out = child.stdout.take().expect("stdout was piped");
        let mut file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let a = arrivals.clone();
        let t0 = Instant::now();
        tasks.spawn(async move {
            // The child is owned here: when the cell's task set is dropped, this task is
            // aborted, the child dropped, and kill_on_drop ends ssh.
            let _child = child;
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                let _ = writeln!(file, "# +{:.3}s {n} bytes", (now - t0).as_secs_f64());
                let _ = file.write_all(&buf[..n]);
                let mut a = a.lock().unwrap();
                a.bytes += n as u64;
                a.at.push(now);
            }
        });
        Ok(SshStream { arrivals })
    }

    /// Bytes received and the longest silence between `from` and `until` (seconds), counting
    /// the stretch from `from` to the first chunk and from the last chunk to `until`.
    pub(crate) fn summary(&self, from: Instant, until: Instant) -> (u64, f64) {
        let a = self.arrivals.lock().unwrap();
        (a.bytes, longest_silence(&a.at, from, until))
    }
}

/// The longest stretch without an arrival inside [from, until].
pub(crate) fn longest_silence(at: &[Instant], from: Instant, until: Instant) -> f64 {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &t in at.iter().filter(|t| **t > from && **t <= until) {
        longest = longest.max(t - last);
        last = t;
    }
    longest
        .max(until.saturating_duration_since(last))
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences() {
        let t0 = Instant::now();
        let s = |x: f64| t0 + Duration::from_secs_f64(x);
        let at = [s(0.5), s(1.0), s(4.0), s(4.5)];
        assert!((longest_silence(&at, s(0.0), s(5.0)) - 3.0).abs() < 1e-9);
        assert!((longest_silence(&at, s(4.2), s(10.0)) - 5.5).abs() < 1e-9);
        assert!((longest_silence(&[], s(0.0), s(2.0)) - 2.0).abs() < 1e-9);
    }
}
