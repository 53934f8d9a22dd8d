//! The run lock: one nicstorm run (or `lab up`) at a time per host, because leftovers are
//! swept by name at start and a second run would sweep the first one's lab. The sweep is
//! host-wide, so the lock is too: always `/var/lib/nicstorm/run.lock`, whatever
//! `$NICSTORM_STATE` says, in a directory only root can write, opened without following a
//! symlink.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Result};

use crate::support::trust;

/// The directory of the host's run lock.
pub const LOCK_DIR: &str = "/var/lib/nicstorm";

/// Held for the life of the process (the kernel drops the flock when the fd closes).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// The host's run lock.
    pub fn host() -> Result<RunLock> {
        RunLock::acquire(Path::new(LOCK_DIR))
    }

    /// The lock `run.lock` in `dir` (made 0700 if missing; refused if not root's alone).
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        trust::private_dir(dir)?;
        let path = dir.join("run.lock");
        let mut file = trust::open_rw(&path)?;
        // SAFETY: flock on a valid open fd has no memory-safety preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "another nicstorm run holds {} ({}); wait for it or end it",
                path.display(),
                holder.trim()
            );
        }
        // Written through the descriptor that was checked, never by path.
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("pid {}\n", std::process::id()).as_bytes())?;
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

    #[test]
    fn a_symlinked_lock_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("nicstorm-lock-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        trust::private_dir(&dir).unwrap();
        let canary = dir.join("canary");
        std::fs::write(&canary, "CANARY").unwrap();
        std::os::unix::fs::symlink(&canary, dir.join("run.lock")).unwrap();
        let err = format!("{:#}", RunLock::acquire(&dir).err().expect("refused"));
        assert!(err.contains("run.lock: it is a symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "CANARY");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
