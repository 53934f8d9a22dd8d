//! The run lock: one nicstorm run (or `lab up`) at a time per host, because leftovers are
//! swept by name at start and a second run would sweep the first one's lab.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Held for the life of the process (the kernel drops the flock when the fd closes).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(state_root: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(state_root)
            .with_context(|| format!("creating {}", state_root.display()))?;
        let path = state_root.join("run.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a valid open fd has no memory-safety preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another nicstorm run holds {} ({}); wait for it or end it",
                path.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        std::fs::write(&path, format!("pid {}\n", std::process::id()))?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused() {
        let dir = std::env::temp_dir().join(format!("nicstorm-lock-test-{}", std::process::id()));
        let a = RunLock::acquire(&dir).unwrap();
        // flock locks are per open file description, so a second open in-process conflicts too.
        let err = RunLock::acquire(&dir)
            .err()
            .expect("second lock must fail")
            .to_string();
        assert!(
            err.contains("another nicstorm run holds")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(a);
        RunLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
