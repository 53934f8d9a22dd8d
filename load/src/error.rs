//! The error type `main` maps to exit codes: usage 2, capacity refusal 3, other 1.

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

/// A usage error; its text is shown to the user and leads to exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
