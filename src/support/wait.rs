//! The one bounded wait: poll an operation until it yields, a deadline passes, or a liveness check fails.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

/// Polls `op` every `every` until it returns `Ok(Some(v))` or `limit` has passed.
/// `Ok(None)` means "not yet"; `Err` aborts at once (use it for "the VM died").
/// The error on timeout names `what` and carries the last "not yet" reason.
pub(crate) async fn wait_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = op().await? {
            return Ok(v);
        }
        if start.elapsed() >= limit {
            return Err(anyhow!("timed out after {:.0?} waiting for {what}", limit));
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn yields_times_out_and_aborts() {
        let mut n = 0;
        let v = wait_until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let r = if n >= 3 { Some(n) } else { None };
                async move { Ok(r) }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);

        let err = wait_until::<(), _, _>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "timed out after 20ms waiting for never");

        let err = wait_until::<(), _, _>(
            "x",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || async {
                Err(anyhow!(
                    "domain nicstorm-abc123-server is no longer running"
                ))
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no longer running"));
    }
}
