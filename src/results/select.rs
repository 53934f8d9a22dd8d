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
/// target) the latest row that is not `error`, else the latest `error`; an `error` row is
/// dropped where the same cell, repetition and step has a result on another host or target
/// (it failed before the accelerator was known). Every step of a search counts: its steps
/// share the cell's id and repetition, and are told apart by their step. Resume counts what this selects (`completed`): a later error does
/// not undo an earlier result.
pub(crate) fn select_rows(rows: &[CellRow]) -> Vec<&CellRow> {
    type Key<'a> = (&'a str, u32, Option<u32>, String, Option<u64>);
    let mut best: BTreeMap<Key, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (
            r.cell_id.as_str(),
            r.repetition,
            r.search_step,
            host_class(r),
            r.target,
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
    let steps: Vec<(u64, search::Outcome)> = rows
        .iter()
        .filter(|r| {
            r.cell_id == cell.id
                && r.repetition == repetition
                && r.search_id.as_ref() == Some(&cell.id)
                && r.accel == Some(Named::Known(accel))
                && only_run.is_none_or(|run| r.run_id == run)
        })
        .map(CellRow::search_step)
        .collect();
    Some(match search::next(&spec, &steps) {
        search::Next::Run(count) => SearchStep::Run {
            count,
            step: steps.len() as u32 + 1,
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
