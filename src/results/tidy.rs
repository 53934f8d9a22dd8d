//! errors_by_errno.csv: the rows' `errors_by_errno` column (`ECONNREFUSED=3;ETIMEDOUT=1`) as a
//! tidy table, one line per row and errno, that pandas and duckdb read as it is
//! (`pd.read_csv`, `read_csv_auto`). Written beside cells.csv with summary.md (at the end of a
//! run, by a merge), from every row of cells.csv; joins cells.csv on
//! (run_id, cell_id, repetition, search_step).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{write_atomic, CellRow};

/// The file's name beside cells.csv.
pub(crate) const ERRNO_CSV: &str = "errors_by_errno.csv";

/// The columns, in order.
pub(crate) const ERRNO_HEADER: &str = "run_id,cell_id,repetition,search_step,errno,count";

/// `(errno, count)` of one row's column; a part that is not `NAME=COUNT` is left out (the
/// column is written by this program only).
pub(crate) fn errno_counts(column: &str) -> Vec<(&str, u64)> {
    column
        .split(';')
        .filter_map(|part| {
            let (name, n) = part.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then_some(())?;
            Some((name, n.trim().parse().ok()?))
        })
        .collect()
}

/// The file's text for `rows` (in their order; a row without connect errors has no line).
/// Written with the csv crate: the ids come back from a cells.csv that may have been merged
/// from other hosts, so nothing in them is trusted to need no quoting.
pub(crate) fn errno_csv(rows: &[CellRow]) -> String {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(format!("{ERRNO_HEADER}\n").into_bytes());
    for r in rows {
        for (errno, count) in errno_counts(r.errors_by_errno.as_deref().unwrap_or("")) {
            let step = r.search_step.map_or(String::new(), |s| s.to_string());
            let (rep, count) = (r.repetition.to_string(), count.to_string());
            w.write_record([r.run_id.as_str(), &r.cell_id, &rep, &step, errno, &count])
                .expect("writing CSV into memory cannot fail");
        }
    }
    let bytes = w.into_inner().expect("flushing into a Vec cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}

/// Writes `dir`/errors_by_errno.csv from `rows`; returns its path.
pub(crate) fn write_errno_csv(dir: &Path, rows: &[CellRow]) -> Result<PathBuf> {
    let path = dir.join(ERRNO_CSV);
    write_atomic(&path, errno_csv(rows).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_row_and_errno() {
        let mut a = CellRow::example("c1", 1, "ok");
        a.errors_by_errno = Some("ECONNREFUSED=3;ETIMEDOUT=1".into());
        let mut b = CellRow::example("c2", 2, "ok");
        b.errors_by_errno = Some(String::new());
        let mut c = CellRow::example("c3", 1, "hung");
        c.errors_by_errno = Some("EADDRNOTAVAIL=12".into());
        c.search_step = Some(4);
        let text = errno_csv(&[a.clone(), b, c.clone()]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ERRNO_HEADER.split(',').collect::<Vec<_>>()
        );
        let got: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        let run = &a.run_id;
        assert_eq!(
            got,
            [
                [run, "c1", "1", "", "ECONNREFUSED", "3"],
                [run, "c1", "1", "", "ETIMEDOUT", "1"],
                [&c.run_id, "c3", "1", "4", "EADDRNOTAVAIL", "12"],
            ]
            .map(|l| l.map(|s| s.to_string()).to_vec())
        );
        assert_eq!(errno_csv(&[]), format!("{ERRNO_HEADER}\n"));
    }
}
