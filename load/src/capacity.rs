//! How many worker processes a run uses, and the up-front refusal when the
//! connections cannot fit the per-process fd limit.
//!
//! By default a run uses every CPU it may run on (one worker per CPU), and
//! more workers when one CPU's worth would not hold the connections: a
//! 1M-connection client never needs `--procs` to stay under RLIMIT_NOFILE.

use crate::error::Error;

/// The most workers storm-load forks; also the ceiling of `--procs`.
pub const MAX_PROCS: u32 = 4096;

/// Fds one worker needs for `per_proc` connections plus `overhead`.
fn need(per_proc: u64, overhead: u64, slack_pct: u64) -> u64 {
    per_proc + per_proc * slack_pct / 100 + overhead
}

/// The fewest workers (at most `MAX_PROCS`) among which `count` connections
/// fit `limit` fds each, or `None` if even `MAX_PROCS` are too few.
pub fn min_procs(count: u64, overhead: u64, slack_pct: u64, limit: u64) -> Option<u32> {
    (1..=MAX_PROCS).find(|p| need(count.div_ceil(u64::from(*p)), overhead, slack_pct) <= limit)
}

/// The default worker count: one per CPU (but no more than there are
/// connections, when the count is known), and at least `fit`, the fewest that
/// hold the connections (`min_procs`). `None` for `fit` means nothing fits;
/// the result is then `MAX_PROCS`, and `check_fds` refuses it with a hint.
pub fn default_procs(cpus: u32, count: Option<u64>, fit: Option<u32>) -> u32 {
    let per_cpu = match count {
        Some(n) => u64::from(cpus).min(n.max(1)) as u32,
        None => cpus,
    };
    per_cpu.clamp(1, MAX_PROCS).max(fit.unwrap_or(MAX_PROCS))
}

/// Refuses up front when `count` connections over `procs` processes cannot fit
/// in `limit` fds per process, instead of failing halfway with EMFILE.
/// `slack_pct` covers uneven spreading (the server's SO_REUSEPORT hash).
pub fn check_fds(
    count: u64,
    procs: u32,
    overhead: u64,
    slack_pct: u64,
    limit: u64,
) -> Result<(), Error> {
    let n = need(count.div_ceil(u64::from(procs)), overhead, slack_pct);
    if n <= limit {
        return Ok(());
    }
    let hint = match min_procs(count, overhead, slack_pct, limit) {
        Some(p) => format!("use --procs {p} or more, or raise fs.nr_open"),
        None => "raise fs.nr_open".to_string(),
    };
    Err(Error::Capacity(format!(
        "needs {n} fds per process, limit is {limit}; {hint}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_refusal_text() {
        assert!(check_fds(19_000, 1, 32, 0, 20_000).is_ok());
        let e = check_fds(350_000, 1, 10, 0, 20_000).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert_eq!(
            e.to_string(),
            "needs 350010 fds per process, limit is 20000; use --procs 18 or more, or raise fs.nr_open"
        );
        assert!(check_fds(350_000, 18, 10, 0, 20_000).is_ok());
        assert_eq!(
            check_fds(10, 1, 100, 0, 50).unwrap_err().to_string(),
            "needs 110 fds per process, limit is 50; raise fs.nr_open"
        );
    }

    #[test]
    fn fewest_procs_that_fit() {
        let table = [
            // (count, overhead, slack %, limit, want)
            (0, 16, 0, 20_000, Some(1)),
            (19_984, 16, 0, 20_000, Some(1)),
            (19_985, 16, 0, 20_000, Some(2)),
            (350_000, 10, 0, 20_000, Some(18)),
            // The runner's 1M client in a guest (limit fs.nr_open = 1048576).
            (1_000_000, 16, 0, 1_048_576, Some(1)),
            (3_000_000, 16, 0, 1_048_576, Some(3)),
            // Server: 20 listeners and 5% slack for the SO_REUSEPORT spread.
            (1_000_000, 36, 5, 1_048_576, Some(2)),
            (10, 100, 0, 50, None),
            (u64::MAX / 2, 16, 0, 1_048_576, None),
        ];
        for (count, overhead, slack, limit, want) in table {
            assert_eq!(
                min_procs(count, overhead, slack, limit),
                want,
                "{count} {overhead} {slack} {limit}"
            );
        }
    }

    #[test]
    fn default_is_every_cpu_or_what_the_fds_need() {
        let table = [
            // (cpus, count, fit, want)
            (2, Some(27_000), Some(2), 2),
            (2, Some(9_000), Some(1), 2),
            (1, Some(9_000), Some(1), 1),
            // 1M in one guest process needs no more than one per CPU...
            (2, Some(1_000_000), Some(1), 2),
            // ...but on a host with 20000 fds it needs 51 processes.
            (2, Some(1_000_000), Some(51), 51),
            // Never more CPU workers than connections (a 1-connection probe forks one).
            (64, Some(3), Some(1), 3),
            (64, Some(0), Some(1), 1),
            // The server may not know its count.
            (8, None, Some(1), 8),
            // Nothing fits: the most there may be, which check_fds then refuses.
            (2, Some(u64::MAX), None, MAX_PROCS),
            (10_000, None, Some(1), MAX_PROCS),
        ];
        for (cpus, count, fit, want) in table {
            assert_eq!(
                default_procs(cpus, count, fit),
                want,
                "{cpus} {count:?} {fit:?}"
            );
        }
    }
}
