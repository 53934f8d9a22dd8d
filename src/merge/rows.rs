//! The rows of a merge: every input's cells.csv read and checked, keyed by (run_id, cell_id,
//! repetition, search_step), identical copies merged into one, different rows with one key a
//! conflict. The key is unique among the rows a run writes: a cell runs once per repetition
//! in a run, and each step of a search (a retry of an `error` step too) has its own number.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::{MergeError, Source};
use crate::results::file::CsvText;
use crate::results::{self, header_line, one_line, row_line, CellRow};

/// Two rows with one key that differ.
#[derive(Debug, thiserror::Error)]
#[error(
    "conflict: {key} differs in column {column}: {first_value:?} in {} but {second_value:?} in {}; nothing was written",
    first.display(),
    second.display()
)]
pub(crate) struct RowConflict {
    pub(crate) key: RowKey,
    /// The first column, in header order, whose values differ.
    pub(crate) column: String,
    pub(crate) first_value: String,
    pub(crate) second_value: String,
    /// The cells.csv each row came from.
    pub(crate) first: PathBuf,
    pub(crate) second: PathBuf,
}

/// What identifies a row across inputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RowKey {
    pub(crate) run_id: String,
    pub(crate) cell_id: String,
    pub(crate) repetition: u32,
    /// The step of the cell's search (None: not a search step).
    pub(crate) search_step: Option<u32>,
}

impl RowKey {
    pub(crate) fn of(row: &CellRow) -> RowKey {
        RowKey {
            run_id: row.run_id.clone(),
            cell_id: row.cell_id.clone(),
            repetition: row.repetition,
            search_step: row.search_step,
        }
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "row (run {}, cell {}, repetition {}",
            self.run_id, self.cell_id, self.repetition
        )?;
        match self.search_step {
            Some(s) => write!(f, ", search step {s})"),
            None => write!(f, ")"),
        }
    }
}

/// The rows of every source, each key once, in time order.
pub(crate) struct Union {
    pub(crate) rows: Vec<CellRow>,
    /// Of those, rows OUT did not hold before.
    pub(crate) new_rows: usize,
    /// Identical copies of a row dropped.
    pub(crate) duplicates: usize,
}

/// The rows of every source, read and checked (`read_all`), in the sources' order; OUT's
/// are empty when it has no cells.csv yet.
pub(crate) fn read_sources(sources: &[Source]) -> Result<Vec<Vec<CellRow>>, MergeError> {
    sources
        .iter()
        .map(|src| match src.is_out && !src.csv.exists() {
            true => Ok(vec![]),
            false => read_all(&src.csv, &results::file::read(&src.csv)?),
        })
        .collect()
}

/// The union of the rows of every source (`rows[i]` are `sources[i]`'s): identical copies of
/// a row merge into one, two different rows with one key are a conflict.
pub(crate) fn union(sources: &[Source], rows_of: &[Vec<CellRow>]) -> Result<Union, MergeError> {
    let mut rows: BTreeMap<RowKey, (Vec<String>, CellRow, PathBuf)> = BTreeMap::new();
    let mut out_keys = std::collections::BTreeSet::new();
    let mut duplicates = 0;
    let columns: Vec<String> = header_line().split(',').map(str::to_owned).collect();
    for (src, src_rows) in sources.iter().zip(rows_of) {
        for row in src_rows {
            let row = one_line(row);
            let key = RowKey::of(&row);
            let fields = fields(&row)?;
            if src.is_out {
                out_keys.insert(key.clone());
            }
            match rows.get(&key) {
                None => {
                    rows.insert(key, (fields, row, src.csv.clone()));
                }
                Some((seen, _, _)) if *seen == fields => duplicates += 1,
                Some((seen, _, first)) => {
                    let i = (0..columns.len())
                        .find(|&i| seen.get(i) != fields.get(i))
                        .unwrap_or(0);
                    return Err(MergeError::RowConflict(Box::new(RowConflict {
                        key,
                        column: columns[i].clone(),
                        first_value: seen.get(i).cloned().unwrap_or_default(),
                        second_value: fields.get(i).cloned().unwrap_or_default(),
                        first: first.clone(),
                        second: src.csv.clone(),
                    })));
                }
            }
        }
    }
    let new_rows = rows.len() - out_keys.len();
    let mut merged: Vec<CellRow> = rows.into_values().map(|(_, row, _)| row).collect();
    merged.sort_by_cached_key(|r| {
        (
            chrono::DateTime::parse_from_rfc3339(&r.started_at).ok(),
            r.started_at.clone(),
            r.run_id.clone(),
            r.cell_id.clone(),
            r.repetition,
            r.search_step,
        )
    });
    Ok(Union {
        rows: merged,
        new_rows,
        duplicates,
    })
}

/// Every row of the cells.csv `csv` as the reader found it (`read`), refusing a file with
/// lines that are not rows (a torn tail, a malformed line), which a merge would otherwise
/// silently drop.
pub(crate) fn read_all(csv: &Path, read: &CsvText) -> Result<Vec<CellRow>, MergeError> {
    let lines = usize::from(read.torn.is_some()) + read.unreadable;
    if lines > 0 {
        return Err(MergeError::Unreadable {
            file: csv.to_owned(),
            lines,
        });
    }
    Ok(read.rows.clone())
}

/// A row's fields as cells.csv holds them, in header order.
fn fields(row: &CellRow) -> Result<Vec<String>, MergeError> {
    let line = row_line(row)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_slice());
    let record = reader
        .records()
        .next()
        .ok_or_else(|| anyhow!("row of cell {} serialized to nothing", row.cell_id))?
        .with_context(|| format!("re-reading row of cell {}", row.cell_id))?;
    Ok(record.iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::merge;
    use crate::merge::test_dirs::{
        run_dir, tree, TempDir, DEFAULT_ORPHANS, RAISED_ORPHANS, V1, V2,
    };
    use crate::results::ResultsStore;
    use std::fs;

    #[test]
    fn union_of_older_headers_deduplicated_in_time_order() {
        let tmp = TempDir::new("union");
        let v1 = tmp.results_from("v1", V1);
        let v2 = tmp.results_from("v2", V2);
        let default = tmp.results_from("default", DEFAULT_ORPHANS);
        let raised = tmp.results_from("raised", RAISED_ORPHANS);
        // The same rows again, from a copy of the directory (an identical duplicate).
        let v1_again = tmp.results_from("v1-again", V1);
        // And a directory of this build, with one row older than all the others.
        let mut store = ResultsStore::open(&tmp.0, "current").unwrap();
        store.append(&CellRow::example("c9", 1, "ok")).unwrap();
        let current = store.dir().to_owned();
        let out = tmp.0.join("out/m");
        let inputs = [raised, v2.clone(), v1.clone(), current, default, v1_again];
        let before: Vec<_> = inputs.iter().map(|d| tree(d)).collect();

        let r = merge(&out, &inputs).unwrap();
        assert_eq!((r.inputs, r.rows, r.new_rows, r.duplicates), (6, 19, 19, 8));
        let text = fs::read_to_string(out.join("cells.csv")).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            header_line(),
            "this build's header"
        );
        let rows = results::read_csv(&out.join("cells.csv")).unwrap();
        let runs: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        let want: Vec<&str> = [
            ["a1b2c3"].as_slice(),
            &["c1947c"; 8],
            &["19350d", "12ae54"],
            &["c69198"; 8],
        ]
        .concat();
        assert_eq!(runs, want, "rows in started_at order");
        // Older rows keep their values; the columns they lack are empty or at their defaults.
        let v1_rows = results::read_csv(&v1.join("cells.csv")).unwrap();
        assert_eq!(rows[0], CellRow::example("c9", 1, "ok"));
        assert_eq!(&rows[1..9], &v1_rows[..]);
        assert!(rows[1..9]
            .iter()
            .all(|r| r.undrained_connections.is_none() && r.runs_system_qemu()));
        assert!(rows[11..].iter().all(|r| r.undrained_connections.is_some()));
        assert!(out.join("summary.md").is_file());
        assert!(
            !out.join("cells.csv.pre-migration").exists(),
            "nothing to migrate in a new OUT"
        );
        let after: Vec<_> = inputs.iter().map(|d| tree(d)).collect();
        assert_eq!(before, after, "inputs untouched");
    }

    #[test]
    fn conflicting_rows_write_nothing() {
        let tmp = TempDir::new("conflict");
        let v2 = tmp.results_from("v2", V2);
        let edited = tmp.results_from("edited", V2);
        let text = fs::read_to_string(edited.join("cells.csv")).unwrap();
        // The first row with a drain time gets another one.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let drain = header.iter().position(|c| *c == "drain_seconds").unwrap();
        let at = (1..lines.len())
            .find(|&i| !lines[i].split(',').nth(drain).unwrap().is_empty())
            .unwrap();
        let mut fields: Vec<String> = lines[at].split(',').map(str::to_owned).collect();
        fields[drain] = "99.5".into();
        lines[at] = fields.join(",");
        fs::write(edited.join("cells.csv"), lines.join("\n") + "\n").unwrap();
        run_dir(&edited, "c69198", "boot\n");

        // Into a new OUT: not even the directory is created.
        let out = tmp.0.join("out");
        let err = merge(&out, &[v2.clone(), edited.clone()]).unwrap_err();
        let MergeError::RowConflict(c) = &err else {
            panic!("not a row conflict: {err}");
        };
        let RowConflict {
            key,
            column,
            first,
            second,
            second_value,
            ..
        } = c.as_ref();
        assert_eq!((key.run_id.as_str(), key.repetition), ("c69198", 1));
        assert_eq!(key.cell_id, fields[1]);
        assert_eq!(column, "drain_seconds");
        assert_eq!(
            (first, second),
            (&v2.join("cells.csv"), &edited.join("cells.csv"))
        );
        assert_eq!(second_value, "99.5");
        let msg = err.to_string();
        for needle in [
            "c69198",
            &fields[1],
            "drain_seconds",
            "v2/cells.csv",
            "edited/cells.csv",
            "nothing was written",
        ] {
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
        assert!(!out.exists());

        // Into an OUT holding results: it stays as it was, byte for byte.
        merge(&out, std::slice::from_ref(&v2)).unwrap();
        let before = tree(&out);
        assert!(matches!(
            merge(&out, &[edited]),
            Err(MergeError::RowConflict(_))
        ));
        assert_eq!(tree(&out), before);
    }

    #[test]
    fn refuses_what_it_cannot_read_without_writing() {
        let tmp = TempDir::new("refuse");
        let good = tmp.results_from("good", V2);
        let out = tmp.0.join("out");

        let foreign = tmp.0.join("foreign");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(
            foreign.join("cells.csv"),
            "run_id,cell_id,verdict\nx,y,ok\n",
        )
        .unwrap();
        let err = merge(&out, &[good.clone(), foreign.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("foreign/cells.csv"), "{err}");
        assert!(
            err.contains("header is not one nicstorm ever wrote"),
            "{err}"
        );

        let torn = tmp.results_from("torn", V2);
        let mut text = fs::read_to_string(torn.join("cells.csv")).unwrap();
        text.push_str("c69198,abc,1,2026");
        fs::write(torn.join("cells.csv"), text).unwrap();
        let err = merge(&out, &[good.clone(), torn.clone()]).unwrap_err();
        assert!(
            matches!(&err, MergeError::Unreadable { lines: 1, file } if *file == torn.join("cells.csv")),
            "{err}"
        );

        let bad_row = tmp.results_from("badrow", V2);
        let mut text = fs::read_to_string(bad_row.join("cells.csv")).unwrap();
        text.push_str("garbage,with,too,few,fields\n");
        fs::write(bad_row.join("cells.csv"), text).unwrap();
        assert!(matches!(
            merge(&out, &[bad_row]),
            Err(MergeError::Unreadable { lines: 1, .. })
        ));

        let run_dir_by_mistake = tmp.0.join("good/c69198");
        fs::create_dir_all(&run_dir_by_mistake).unwrap();
        let err = merge(&out, &[run_dir_by_mistake]).unwrap_err();
        assert!(matches!(&err, MergeError::NotResults(_)), "{err}");
        assert!(
            err.to_string()
                .contains("good/c69198: not a results directory"),
            "{err}"
        );
        assert!(!out.exists(), "nothing written");
    }
}
