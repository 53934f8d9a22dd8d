//! The advisory lock (flock) on a cells.csv itself: shared for readers (summary, report, a
//! merge's inputs), exclusive for writers (a run's append and migration, a merge's rewrite).
//!
//! flock belongs to an open file description, so a lock is held through one `File`, and a
//! second open + lock in the same process waits for the first like any other holder: code
//! that holds the lock passes its rows on instead of reading the file again.
//!
//! A writer that replaces cells.csv (a merge, a migration) renames a new file over it, and
//! that new file is locked before the rename; a waiter that then gets the lock of the old,
//! replaced file notices (its inode is no longer the path's) and locks the new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A held flock on a cells.csv; released when dropped.
#[derive(Debug)]
pub(crate) struct CsvLock {
    file: File,
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
}

impl CsvLock {
    /// Shared lock, for reading `path` (which must exist).
    pub(crate) fn shared(path: &Path) -> Result<CsvLock> {
        CsvLock::acquire(path, Mode::Shared)
    }

    /// Exclusive lock, for appending to or replacing `path` (which must exist); the file is
    /// open for reading and appending.
    pub(crate) fn exclusive(path: &Path) -> Result<CsvLock> {
        CsvLock::acquire(path, Mode::Exclusive)
    }

    /// Locks the file just created at `tmp` exclusively, before it is renamed to `path`, so
    /// the moment it becomes `path` it is already held (see the module header).
    pub(crate) fn new_file(tmp: &Path, path: &Path) -> Result<CsvLock> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(tmp)
            .with_context(|| format!("opening {}", tmp.display()))?;
        flock(&file, Mode::Exclusive, false)
            .with_context(|| format!("locking {}", tmp.display()))?;
        Ok(CsvLock {
            file,
            path: path.to_owned(),
        })
    }

    fn acquire(path: &Path, mode: Mode) -> Result<CsvLock> {
        let mut said = false;
        loop {
            let mut opts = OpenOptions::new();
            opts.read(true);
            if mode == Mode::Exclusive {
                opts.append(true);
            }
            let file = opts.open(path).with_context(|| match mode {
                Mode::Shared => format!("opening {}", path.display()),
                Mode::Exclusive => format!("{} is not writable", path.display()),
            })?;
            if flock(&file, mode, true).is_err() {
                if !said {
                    eprintln!(
                        "nicstorm: waiting for {}: another nicstorm process is writing it (a run appending, a merge)",
                        path.display()
                    );
                    said = true;
                }
                flock(&file, mode, false).with_context(|| format!("locking {}", path.display()))?;
            }
            // Replaced while we waited: lock the file that is there now.
            let held = file.metadata()?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(CsvLock {
                        file,
                        path: path.to_owned(),
                    })
                }
                Ok(_) => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
    }

    /// The locked file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The locked file's contents.
    pub(crate) fn read_to_string(&self) -> Result<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.file;
        let mut text = String::new();
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_string(&mut text))
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(text)
    }

    /// Appends `bytes` in one write and syncs them (exclusive locks only: the file is open
    /// for appending).
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<()> {
        let mut f = &self.file;
        f.write_all(bytes)
            .and_then(|()| f.sync_data())
            .with_context(|| format!("appending to {}", self.path.display()))
    }

    /// (inode, length) of the locked file: whether it changed since it was last seen.
    pub(crate) fn identity(&self) -> Result<(u64, u64)> {
        let m = self
            .file
            .metadata()
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok((m.ino(), m.len()))
    }
}

fn flock(file: &File, mode: Mode, nonblocking: bool) -> std::io::Result<()> {
    let mut op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    };
    if nonblocking {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a valid open fd has no memory-safety preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
