//! The error type `main` maps to exit codes: usage 2, capacity refusal 3, other 1.

use crate::args::UsageError;
use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    Usage(UsageError),
    /// The requested connections cannot fit the per-process fd limit.
    Capacity(String),
    /// A system call failed; `what` names the resource.
    Io {
        what: String,
        source: io::Error,
    },
}

impl Error {
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Capacity(_) => 3,
            Error::Io { .. } => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(u) => write!(f, "{u}"),
            Error::Capacity(m) => f.write_str(m),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl From<UsageError> for Error {
    fn from(u: UsageError) -> Self {
        Error::Usage(u)
    }
}

/// Fds one worker needs for `per_proc` connections plus `overhead`.
fn need(per_proc: u64, overhead: u64, slack_pct: u64) -> u64 {
    per_proc + per_proc * slack_pct / 100 + overhead
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
    let min_procs = (1..=4096u64).find(|p| need(count.div_ceil(*p), overhead, slack_pct) <= limit);
    let hint = match min_procs {
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
}
