//! A run's results directory, results/<matrix>/: cells.csv, to which a run appends one row as
//! each cell ends (never rewriting one), its run directories and run.json.
//!
//! cells.csv is read by the one reader (file.rs) and written under its exclusive lock
//! (lock.rs), taken for the opening (torn tail, migration) and for each append, so a merge
//! into the same directory waits for an append and an append for a merge; between appends,
//! readers read. A file that changed under the store meanwhile (a merge added rows) is read
//! again before the next row is appended.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::file::{keep_pre_migration, replace, set_aside_torn, write_atomic, CsvText};
use super::lock::CsvLock;
use super::row::{header_line, one_line, row_line, CellRow};
use super::select;
use crate::matrix::plan::Accel;
use crate::model::named::Named;
use crate::model::verdict::Verdict;

/// results/<matrix>/: cells.csv (append only), run directories, summary.md.
#[derive(Debug)]
pub struct ResultsStore {
    dir: PathBuf,
    matrix: String,
    csv_path: PathBuf,
    rows: Vec<CellRow>,
    /// (inode, length) of cells.csv as this store last saw it.
    seen: (u64, u64),
}

impl ResultsStore {
    /// Opens (creating if needed) results/<matrix_name>/ and reads existing rows.
    ///
    /// An existing cells.csv must have this build's header, or be a file of an earlier
    /// build that lacks only columns added since (`ADDED_COLUMNS`): that one is migrated
    /// once (its rows kept, the new columns empty, the original kept beside it as
    /// cells.csv.pre-migration, or a numbered one if that exists). Any other header is
    /// refused, never mixed. A last line without its newline (a crash mid-write in an older
    /// version) is moved to cells.csv.torn so the next row starts on a line of its own.
    /// A file that cannot take rows refuses the run here, before anything boots.
    /// Makes the results directory if missing and checks that root may write there (see
    /// [`trusted_results_dir`]); `open` does the same.
    pub fn check_dir(results_root: &Path, matrix_name: &str) -> Result<PathBuf> {
        let dir = results_root.join(matrix_name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        trusted_results_dir(&dir)
    }

    pub fn open(results_root: &Path, matrix_name: &str) -> Result<Self> {
        // nicstorm writes here as root: a directory someone else can write could hold a
        // planted symlink that root would write through.
        let dir = ResultsStore::check_dir(results_root, matrix_name)?;
        let csv_path = dir.join("cells.csv");
        if let Err(e) = fs::File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&csv_path)
        {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).with_context(|| format!("creating {}", csv_path.display()));
            }
        }
        let mut store = ResultsStore {
            dir,
            matrix: matrix_name.to_owned(),
            csv_path,
            rows: Vec::new(),
            seen: (0, 0),
        };
        let lock = CsvLock::exclusive(&store.csv_path)?;
        let lock = store.load(lock)?;
        store.seen = lock.identity()?;
        Ok(store)
    }

    /// Reads cells.csv through its held exclusive `lock` and makes it a file rows can be
    /// appended to (header written, torn tail set aside, earlier header migrated); returns
    /// the lock of the file that is there now.
    fn load(&mut self, lock: CsvLock) -> Result<CsvLock> {
        let text = lock.read_to_string()?;
        let read = CsvText::parse(&self.csv_path, &text)?;
        let mut lock = lock;
        if let Some(tail) = &read.torn {
            let torn = set_aside_torn(&self.csv_path, tail)?;
            tracing::warn!(
                file = %self.csv_path.display(),
                "last line is incomplete (crash while writing?); ignoring it and moving it to {}",
                torn.display()
            );
            lock.file()
                .set_len(read.complete.len() as u64)
                .and_then(|()| lock.file().sync_all())
                .with_context(|| {
                    format!("cutting the torn line off {}", self.csv_path.display())
                })?;
        }
        if read.complete.is_empty() {
            lock.append(format!("{}\n", header_line()).as_bytes())
                .with_context(|| format!("writing header of {}", self.csv_path.display()))?;
        } else if let Some(migrated) = &read.migrated {
            let keep = keep_pre_migration(&self.csv_path, read.complete.as_bytes())?;
            lock = replace(&self.csv_path, migrated.as_bytes())?;
            tracing::warn!(
                file = %self.csv_path.display(),
                rows = read.rows.len(),
                "migrated to this build's columns (new columns empty); the original is {}",
                keep.display()
            );
        }
        self.rows = read.rows;
        Ok(lock)
    }

    /// The exclusive lock of cells.csv, the rows read again if the file changed since this
    /// store last saw it (a merge into this directory). While it is held, nobody else writes
    /// the file; pass `rows()` on instead of reading the file again (the lock would wait
    /// for itself).
    pub(crate) fn lock(&mut self) -> Result<CsvLock> {
        let lock = CsvLock::exclusive(&self.csv_path)?;
        if lock.identity()? != self.seen {
            tracing::info!(file = %self.csv_path.display(), "changed by another writer; reading it again");
            let lock = self.load(lock)?;
            self.seen = lock.identity()?;
            return Ok(lock);
        }
        Ok(lock)
    }

    /// Appends one row and syncs it to disk before returning, so an interrupt after
    /// this leaves a valid CSV holding the row. The line is built in memory and handed
    /// to the kernel in one write on an O_APPEND file, so a crash cannot interleave a
    /// half row with the next one.
    pub fn append(&mut self, row: &CellRow) -> Result<()> {
        let lock = self.lock()?;
        self.append_locked(&lock, row)
    }

    /// `append` under a lock the caller holds (`lock`).
    pub(crate) fn append_locked(&mut self, lock: &CsvLock, row: &CellRow) -> Result<()> {
        let row = one_line(row);
        let line = row_line(&row)?;
        lock.append(&line).with_context(|| {
            format!(
                "appending cell {} to {}",
                row.cell_id,
                self.csv_path.display()
            )
        })?;
        self.seen = lock.identity()?;
        self.rows.push(row);
        Ok(())
    }

    /// Every row, in file order (later rows are later results).
    pub(crate) fn rows(&self) -> &[CellRow] {
        &self.rows
    }

    /// (cell_id, repetition, target) -> verdict of the rows that complete a cell under
    /// `accel`; a resumed run skips them (`select::completed`).
    pub(crate) fn completed(&self, accel: Accel) -> BTreeMap<(String, u32, u64), Named<Verdict>> {
        select::completed(&self.rows, accel)
    }

    pub(crate) fn matrix_name(&self) -> &str {
        &self.matrix
    }

    /// results/<matrix>/.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn csv_path(&self) -> &Path {
        &self.csv_path
    }

    /// results/<matrix>/<run_id>/ (not created here).
    pub(crate) fn run_dir(&self, run_id: &str) -> PathBuf {
        self.dir.join(run_id)
    }

    /// Writes results/<matrix>/<run_id>/run.json atomically (temp file + rename), so
    /// a reader never sees half a document.
    pub(crate) fn write_run_json(
        &self,
        run_id: &str,
        value: &serde_json::Value,
    ) -> Result<PathBuf> {
        let dir = self.run_dir(run_id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("run.json");
        let mut text = serde_json::to_string_pretty(value).context("serializing run.json")?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// `dir`, symlinks resolved, when only its owner can write it and everything above it, and
/// that owner is root, this process's user or the owner of the checkout (`results/` of a
/// clone a user made and runs as root, where that user could change the code run anyway).
/// Anything else is refused with what to do: nicstorm writes there as root.
pub(crate) fn trusted_results_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let checkout = fs::metadata(crate::support::repo::root())
        .map(|m| m.uid())
        .ok();
    crate::support::trust::check_path_by(
        dir,
        &format!(
            "Give a results directory (--results) that only its owner can write, owned by root or by the owner of this checkout: not one in /tmp or another user's. ({})",
            dir.display()
        ),
        &checkout.into_iter().collect::<Vec<_>>(),
    )
}
