//! Which rows count: of the rows of one cell and repetition, the one the summary, the report
//! and resume take (`select_rows`), and the cells a resumed run skips (`completed`, made from
//! the same selection, so the two cannot disagree).

use std::collections::{BTreeMap, BTreeSet};

use super::row::{host_class, CellRow};
use crate::matrix::plan::{Accel, Cell, Settings};
use crate::matrix::search::{self, SearchSpec};
use crate::model::named::Named;
use crate::model::verdict::Verdict;

/// The rows that count, in file order: per (cell, repetition, search step, host class,
/// target, QEMU environment: a search step's searched value) the latest row that is not
/// `error`, else the latest `error`; an `error` row is
/// dropped where the same cell, repetition and step has a result on another host or target
/// (it failed before the accelerator was known). Every step of a search counts: its steps
/// share the cell's id and repetition, and are told apart by their step. Resume counts what this selects (`completed`): a later error does
/// not undo an earlier result.
pub(crate) fn select_rows(rows: &[CellRow]) -> Vec<&CellRow> {
    type Key<'a> = (
        &'a str,
        u32,
        Option<u32>,
        String,
        Option<u64>,
        Option<&'a str>,
    );
    let mut best: BTreeMap<Key, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (
            r.cell_id.as_str(),
            r.repetition,
            r.search_step,
            host_class(r),
            r.target,
            r.qemu_env.as_deref(),
        );
        match best.get(&key) {
            Some(&j) if r.verdict == Verdict::Error && rows[j].verdict != Verdict::Error => {}
            _ => {
                best.insert(key, i);
            }
        }
    }
    let has_result: BTreeSet<(&str, u32, Option<u32>)> = best
        .values()
        .map(|&i| &rows[i])
        .filter(|r| r.verdict != Verdict::Error)
        .map(|r| (r.cell_id.as_str(), r.repetition, r.search_step))
        .collect();
    let mut keep: Vec<usize> = best
        .into_values()
        .filter(|&i| {
            let r = &rows[i];
            r.verdict != Verdict::Error
                || !has_result.contains(&(r.cell_id.as_str(), r.repetition, r.search_step))
        })
        .collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &rows[i]).collect()
}

/// (cell_id, repetition, target) -> verdict of the selected rows under `accel` that are not
/// `error`: those are complete and a resumed run skips them (a `not_applicable` row too: the
/// host cannot run that cell). A row completes a cell only at the connection count it ran: a
/// TCG row does not complete a cell on a KVM host, and a changed `tcg_connections` reruns the
/// cells. Rows of any host of that accelerator count (a merged directory resumes where its
/// hosts left off).
pub(crate) fn completed(
    rows: &[CellRow],
    accel: Accel,
) -> BTreeMap<(String, u32, u64), Named<Verdict>> {
    let mut done = BTreeMap::new();
    for r in select_rows(rows)
        .into_iter()
        .filter(|r| r.verdict != Verdict::Error && r.accel == Some(Named::Known(accel)))
    {
        if let Some(target) = r.target {
            done.insert((r.cell_id.clone(), r.repetition, target), r.verdict.clone());
        }
    }
    done
}

/// The next step of `cell`'s breaking-point search at `repetition` under `accel`, from the
/// search's rows so far in `rows` (of run `only_run` alone when given: a `--force` rerun
/// starts over), in the order they ran. Under TCG the search runs
/// `spec.capped(tcg_connections)`. A rerun resumes mid-search; an `error` row is a step too
/// (the count runs again), so each row of a run has its own step number.
pub(crate) fn next_search_step(
    rows: &[CellRow],
    cell: &Cell,
    repetition: u32,
    accel: Accel,
    settings: &Settings,
    only_run: Option<&str>,
) -> Option<SearchStep> {
    let spec = cell.search.as_ref()?;
    let spec = match accel {
        Accel::Tcg => spec.capped(settings.tcg_connections),
        Accel::Kvm => spec.clone(),
    };
    let rows: Vec<&CellRow> = rows
        .iter()
        .filter(|r| {
            r.cell_id == cell.id
                && r.repetition == repetition
                && r.search_id.as_ref() == Some(&cell.id)
                && r.accel == Some(Named::Known(accel))
                && only_run.is_none_or(|run| r.run_id == run)
        })
        .collect();
    // Read with the cell's own search (a row's value that cannot be read is no step, but its
    // step number stays taken).
    let steps: Vec<(u64, search::Outcome)> = rows
        .iter()
        .filter_map(|r| r.search_step_of(&spec.param))
        .collect();
    let next_step = rows.iter().filter_map(|r| r.search_step).max().unwrap_or(0) + 1;
    Some(match search::next(&spec, &steps) {
        search::Next::Run(count) => SearchStep::Run {
            count,
            step: next_step.max(rows.len() as u32 + 1),
        },
        search::Next::Done(bracket) => SearchStep::Done { spec, bracket },
    })
}

/// What a search does next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SearchStep {
    /// Run the cell at `count` connections (`Cell::at`) as step `step`.
    Run { count: u64, step: u32 },
    /// The boundary is bracketed (or the search stopped): no more steps.
    Done {
        spec: SearchSpec,
        bracket: search::Bracket,
    },
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::matrix::plan::parse_plan;
    use crate::model::verdict::Verdict;
    use crate::results::row::{RowEnd, RowIdentity};
    use crate::results::ResultsStore;

    /// A search over a bucket depth run as the runner runs it: each step the cell `at` the
    /// value `next_search_step` picks, its row made by `CellRow::new`, written to cells.csv
    /// and read back. Depths of 300 and more are ok, below hung; the search ends with the
    /// boundary bracketed within its resolution, from the rows alone.
    #[test]
    fn a_search_over_qemu_env_resumes_from_its_rows() {
        let plan = parse_plan(
            "axes: {nic: [vmxnet3], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch:\n  qemu_env:\n    NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above, resolution: 25%}\n",
            Path::new("m.yaml"),
        )
        .unwrap();
        let cell = &plan.cells[0];
        let tmp = crate::support::testing::TempDir::new("env-search");
        let mut ran = vec![];
        let bracket = loop {
            // Reopened every step: the next step comes from the file, as after a restart.
            let mut store = ResultsStore::open(tmp.path(), "m").unwrap();
            match next_search_step(store.rows(), cell, 1, Accel::Tcg, &plan.settings, None) {
                Some(SearchStep::Run { count, step }) => {
                    let at = cell.at(count);
                    assert_eq!(at.connections, 3000);
                    let end = RowEnd::Measured {
                        verdict: if count >= 300 {
                            Verdict::Ok
                        } else {
                            Verdict::Hung
                        },
                        recovery_seconds: None,
                    };
                    let id = RowIdentity {
                        run_id: "r1",
                        cell: &at,
                        repetition: 1,
                        search_step: Some(step),
                        accel: Accel::Tcg,
                        sizes: at.resolve(Accel::Tcg, &plan.settings),
                    };
                    store.append(&CellRow::new(&id, &end)).unwrap();
                    ran.push(count);
                }
                Some(SearchStep::Done { bracket, .. }) => break bracket,
                None => panic!("a searched cell has a search"),
            }
        };
        assert_eq!(ran[..2], [4096, 16], "the end expected ok first");
        let (ok, fail) = (bracket.last_ok.unwrap(), bracket.first_fail.unwrap());
        assert!(fail < 300 && 300 <= ok, "{ran:?}: [{fail}, {ok}]");
        assert!(ok as f64 <= fail as f64 * 1.25, "{ran:?}");
        let rows = ResultsStore::open(tmp.path(), "m").unwrap().rows().to_vec();
        assert!(rows.iter().all(|r| r.search_param.as_deref()
            == Some("qemu_env.NICSTORM_VMNET_BURST:ok_above")
            && r.qemu_env
                .as_deref()
                .is_some_and(|e| e.starts_with("NICSTORM_VMNET_BURST="))));
    }
}
