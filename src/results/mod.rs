//! Results on disk: the typed CSV row (row.rs), the one reader of cells.csv (file.rs) and its
//! lock (lock.rs), which rows count (select.rs), the append-only store a run writes
//! (store.rs), summary.md (summary.rs), errors_by_errno.csv (tidy.rs), a run's JUnit XML
//! (junit.rs) and the statistics (stats.rs).
//!
//! Layout (docs/EXPERIMENT.md "Results"): results/<matrix>/cells.csv accumulates across runs,
//! results/<matrix>/<run-id>/run.json describes one run, results/<matrix>/summary.md.

pub(crate) mod file;
pub(crate) mod junit;
pub(crate) mod lock;
pub(crate) mod metrics;
pub(crate) mod row;
pub(crate) mod select;
pub(crate) mod stats;
mod store;
pub(crate) mod summary;
pub(crate) mod tidy;

pub use file::read_csv;
pub(crate) use file::write_atomic;
pub use row::{header_line, CellRow};
pub(crate) use row::{host_class, one_line, row_line, Axes};
pub use store::ResultsStore;

#[cfg(test)]
mod tests {
    use super::file::migratable;
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use crate::matrix::plan::{Accel, Traffic, Vhost};
    use crate::model::named::Named;
    use crate::model::verdict::Verdict;

    use crate::matrix::plan::parse_plan;

    use crate::support::testing::TempDir;

    #[test]
    fn header_snapshot() {
        insta::assert_snapshot!(header_line());
    }

    #[test]
    fn missing_measurements_are_empty_fields_not_zero() {
        let line = String::from_utf8(row_line(&CellRow::example("c1", 1, "ok")).unwrap()).unwrap();
        let fields: Vec<&str> = line.trim_end().split(',').collect();
        let header = header_line();
        let names: Vec<&str> = header.split(',').collect();
        assert_eq!(fields.len(), names.len(), "{line}");
        let col = |n: &str| fields[names.iter().position(|h| *h == n).unwrap()];
        assert_eq!(col("drain_seconds"), "");
        assert_eq!(col("peak_softirq_pct"), "");
        assert_eq!(col("ssh_dropped"), "false");
        assert_eq!(col("peak_established"), "30000");
        assert_eq!(col("error"), "");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn append_reopen_and_resume() {
        let tmp = TempDir::new("resume");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert!(store.completed(Accel::Tcg).is_empty());
        let rows = [
            CellRow::example("c1", 1, "ok"),
            CellRow::example("c2", 1, "error"),
            CellRow::example("c3", 1, "hung"),
            CellRow::example("c3", 2, "error"),
            // A later error does not undo an earlier complete result.
            CellRow::example("c1", 1, "error"),
        ];
        for r in &rows {
            store.append(r).unwrap();
        }
        drop(store);

        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(
            store.rows(),
            &rows[..],
            "rows survive a round trip, Options included"
        );
        let done: Vec<((String, u32, u64), Named<Verdict>)> =
            store.completed(Accel::Tcg).into_iter().collect();
        assert_eq!(
            done,
            [
                (("c1".to_owned(), 1, 30000), Verdict::Ok.into()),
                (("c3".to_owned(), 1, 30000), Verdict::Hung.into())
            ]
        );
        assert!(
            store.completed(Accel::Kvm).is_empty(),
            "tcg rows do not complete kvm cells"
        );
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().count(), 1 + rows.len());
        assert_eq!(text.lines().next().unwrap(), header_line());
    }

    #[test]
    fn torn_last_line_is_set_aside_not_fatal() {
        let tmp = TempDir::new("torn");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        store.append(&CellRow::example("c1", 1, "ok")).unwrap();
        let path = store.csv_path().to_owned();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"a1b2c3,c2,1,2026-11-22T00:20:00Z,2026")
            .unwrap();
        drop(f);

        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(store.rows().len(), 1);
        store.append(&CellRow::example("c2", 1, "ok")).unwrap();
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let ids: Vec<&str> = store.rows().iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
        let torn = fs::read_to_string(tmp.0.join("m/cells.csv.torn")).unwrap();
        assert_eq!(torn, "a1b2c3,c2,1,2026-11-22T00:20:00Z,2026\n");
    }

    #[test]
    fn multi_line_error_is_stored_on_one_line() {
        let tmp = TempDir::new("oneline");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        let mut row = CellRow::example("c1", 1, "error");
        row.error = Some("ssh failed:\nPermission denied\r\n(publickey)".into());
        store.append(&row).unwrap();
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(
            store.rows()[0].error.as_deref(),
            Some("ssh failed: / Permission denied / (publickey)")
        );
    }

    #[test]
    fn measurements_of_earlier_builds_read_without_touching_them() {
        // Two earlier headers: before the counters, and before the axes added on 2026-11-24.
        for csv in [
            "docs/measurements/2026-11-22-tcg-2core/cells.csv",
            "docs/measurements/2026-11-22-tcg-2core-counters/cells.csv",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(csv);
            let before = fs::read(&path).unwrap();
            let rows = read_csv(&path).unwrap();
            assert_eq!(rows.len(), 8, "{csv}");
            for r in &rows {
                assert_eq!(
                    (r.qemu.as_str(), r.traffic.known()),
                    ("system", Some(&Traffic::None))
                );
                assert!(r.host_cpu.is_none() && r.error_phase.is_none());
                assert!(r.peak_established.is_some(), "{csv}: measured values kept");
            }
            assert_eq!(fs::read(&path).unwrap(), before, "{csv} untouched");
        }
        let tmp = TempDir::new("readcsv");
        fs::write(tmp.0.join("x.csv"), "run_id,cell_id,verdict\nx,y,ok\n").unwrap();
        let err = read_csv(&tmp.0.join("x.csv")).unwrap_err().to_string();
        assert!(
            err.contains("header is not one nicstorm ever wrote"),
            "{err}"
        );
    }

    /// Every cells.csv kept in the repository, of every header this build reads.
    fn kept_csvs() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = vec![root.join("tests/fixtures/results/ci-smoke/cells.csv")];
        for dir in fs::read_dir(root.join("docs/measurements")).unwrap() {
            for f in fs::read_dir(dir.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.to_string_lossy().ends_with("cells.csv") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// `text` (a cells.csv under this build's header) with only the columns of `header`.
    fn project(text: &str, header: &str) -> String {
        let want: Vec<&str> = header.split(',').collect();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let have: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
        let cols: Vec<usize> = want
            .iter()
            .map(|c| have.iter().position(|h| h == c).unwrap())
            .collect();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(vec![]);
        w.write_record(&want).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            w.write_record(cols.iter().map(|&i| &rec[i])).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    /// Typed rows write what they read: every kept cells.csv, read and written back, gives its
    /// own bytes (older headers: the columns they have, byte for byte), and names this build
    /// does not know survive as they were.
    #[test]
    fn rows_read_and_written_back_are_the_same_bytes() {
        let csvs = kept_csvs();
        assert!(csvs.len() >= 7, "{csvs:?}");
        for path in csvs {
            let original = fs::read_to_string(&path).unwrap();
            let rows = read_csv(&path).unwrap();
            assert_eq!(
                rows.len(),
                original.lines().count() - 1,
                "{}",
                path.display()
            );
            let mut written = format!("{}\n", header_line());
            for r in &rows {
                written.push_str(std::str::from_utf8(&row_line(r).unwrap()).unwrap());
            }
            let header = original.lines().next().unwrap();
            assert_eq!(project(&written, header), original, "{}", path.display());
        }

        let mut newer = CellRow::example("c1", 1, "melted");
        newer.nic = "virtio-net-pci-v2".into();
        newer.mode = "passt".into();
        newer.vhost = "auto".into();
        newer.accel = Some("hvf".into());
        newer.error_phase = Some("boot".into());
        newer.vhost_effective = Some("n/a".into());
        let line = row_line(&newer).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_slice());
        let back: CellRow = r.deserialize().next().unwrap().unwrap();
        assert_eq!(back, newer);
        assert_eq!(row_line(&back).unwrap(), line);
        assert_eq!(back.verdict, Named::Other("melted".into()));
        assert_eq!(back.vhost_effective, Some(Named::Known(None)));
        assert!(
            back.verdict != Verdict::Error,
            "an unknown verdict is no error"
        );
    }

    #[test]
    fn foreign_header_is_refused_and_kept() {
        let tmp = TempDir::new("header");
        fs::create_dir_all(tmp.0.join("m")).unwrap();
        let old = "run_id,cell_id,verdict\nx,y,ok\n";
        fs::write(tmp.0.join("m/cells.csv"), old).unwrap();
        let err = ResultsStore::open(&tmp.0, "m").unwrap_err().to_string();
        assert!(err.contains("header does not match"), "{err}");
        assert!(err.contains("found:    run_id,cell_id,verdict"), "{err}");
        assert_eq!(fs::read_to_string(tmp.0.join("m/cells.csv")).unwrap(), old);
    }

    #[test]
    fn earlier_header_is_migrated_and_kept() {
        let tmp = TempDir::new("migrate");
        fs::create_dir_all(tmp.0.join("m")).unwrap();
        let want = header_line();
        let dropped = ["undrained_connections", "server_tap_tx_dropped"];
        let old_cols: Vec<&str> = want.split(',').filter(|c| !dropped.contains(c)).collect();
        // A row of the current format, with the dropped columns cut out.
        let mut row = CellRow::example("c1", 1, "ok");
        row.error = Some("a, quoted \"error\"".into());
        row.undrained_connections = Some(5);
        row.server_tap_tx_dropped = Some(2);
        row.host_conntrack_drops = Some(7);
        let line = row_line(&row).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_slice());
        let full = r.records().next().unwrap().unwrap();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(vec![]);
        w.write_record(&old_cols).unwrap();
        w.write_record(
            want.split(',')
                .zip(full.iter())
                .filter(|(c, _)| !dropped.contains(c))
                .map(|(_, v)| v),
        )
        .unwrap();
        let old = String::from_utf8(w.into_inner().unwrap()).unwrap();
        fs::write(tmp.0.join("m/cells.csv"), &old).unwrap();

        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let mut expect = row.clone();
        expect.undrained_connections = None;
        expect.server_tap_tx_dropped = None;
        assert_eq!(store.rows(), &[expect]);
        let text = fs::read_to_string(store.csv_path()).unwrap();
        assert_eq!(text.lines().next().unwrap(), want);
        assert_eq!(
            fs::read_to_string(tmp.0.join("m/cells.csv.pre-migration")).unwrap(),
            old
        );
        // Opened again, it is this build's file: nothing more happens.
        let again = ResultsStore::open(&tmp.0, "m").unwrap();
        assert_eq!(again.rows(), store.rows());
        assert_eq!(fs::read_to_string(store.csv_path()).unwrap(), text);
    }

    /// A second migration (another older file put in place, or copied back) keeps the first
    /// one's original: the copies are numbered, never overwritten.
    #[test]
    fn a_second_migration_keeps_the_first_original() {
        let tmp = TempDir::new("migrate2");
        let dir = tmp.0.join("m");
        fs::create_dir_all(&dir).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/measurements");
        let v1 = fs::read(root.join("2026-11-22-tcg-2core/cells.csv")).unwrap();
        let v2 = fs::read(root.join("2026-11-22-tcg-2core-counters/cells.csv")).unwrap();
        fs::write(dir.join("cells.csv"), &v1).unwrap();
        assert_eq!(ResultsStore::open(&tmp.0, "m").unwrap().rows().len(), 8);
        fs::write(dir.join("cells.csv"), &v2).unwrap();
        assert_eq!(ResultsStore::open(&tmp.0, "m").unwrap().rows().len(), 8);
        assert_eq!(fs::read(dir.join("cells.csv.pre-migration")).unwrap(), v1);
        assert_eq!(fs::read(dir.join("cells.csv.pre-migration.1")).unwrap(), v2);
    }

    #[test]
    fn only_added_columns_may_be_missing() {
        let want = "a,undrained_connections,b,host_conntrack_drops";
        assert!(migratable("a,b", want));
        assert!(migratable("a,undrained_connections,b", want));
        assert!(!migratable("a", want), "b is not an added column");
        assert!(!migratable("b,a", want), "order matters");
        assert!(!migratable("a,b,x", want), "unknown column");
    }

    #[test]
    fn malformed_middle_row_is_skipped() {
        let tmp = TempDir::new("malformed");
        let mut store = ResultsStore::open(&tmp.0, "m").unwrap();
        store.append(&CellRow::example("c1", 1, "ok")).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.csv_path())
            .unwrap();
        f.write_all(b"garbage,with,too,few,fields\n").unwrap();
        drop(f);
        store.append(&CellRow::example("c2", 1, "ok")).unwrap();
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let ids: Vec<&str> = store.rows().iter().map(|r| r.cell_id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2"]);
    }

    #[test]
    fn row_of_a_cell_and_run_json() {
        let p = parse_plan(
            "axes: {nic: [virtio-net], mode: [nat], vhost: [off], connections: [1000000]}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let c = &p.cells[0];
        let id = row::RowIdentity {
            run_id: "a1b2c3",
            cell: c,
            repetition: 2,
            search_step: None,
            accel: Accel::Tcg,
            sizes: c.resolve(Accel::Tcg, &p.settings),
        };
        let end = row::RowEnd::NotApplicable {
            reason: "vhost on under TCG".into(),
        };
        let row = CellRow::new(&id, &end);
        assert_eq!(row.verdict, Verdict::NotApplicable);
        assert_eq!(row.error.as_deref(), Some("vhost on under TCG"));
        assert_eq!(
            (
                row.vhost.known().copied(),
                row.target,
                row.vcpus,
                row.server_memory_mib,
                row.client_memory_mib
            ),
            (
                Some(Some(Vhost::Off)),
                Some(30_000),
                Some(1),
                Some(1024),
                Some(768)
            )
        );
        assert_eq!(row.cell_id, c.id);
        assert_eq!(row.peak_established, None);
        assert_eq!(row.cell_dir_name(), format!("{}-r2", c.id));

        let tmp = TempDir::new("runjson");
        let store = ResultsStore::open(&tmp.0, "m").unwrap();
        let path = store
            .write_run_json("a1b2c3", &serde_json::json!({"qemu": "7.2"}))
            .unwrap();
        assert_eq!(path, tmp.0.join("m/a1b2c3/run.json"));
        let back: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["qemu"], "7.2");
    }
}
