//! Which rows count: of the rows of one cell and repetition, the one the summary, the report
//! and resume take (`select_rows`), and the cells a resumed run skips (`completed`, made from
//! the same selection, so the two cannot disagree).

use std::collections::{BTreeMap, BTreeSet};

use super::row::{host_class, CellRow};
use crate::matrix::plan::Accel;
use crate::model::named::Named;
use crate::model::verdict::Verdict;

/// The rows that count, in file order: per (cell, repetition, host class, target) the latest
/// row that is not `error`, else the latest `error`; an `error` row is dropped where the same
/// cell and repetition has a result on another host or target (it failed before the
/// accelerator was known). Resume counts what this selects (`completed`): a later error does
/// not undo an earlier result.
pub(crate) fn select_rows(rows: &[CellRow]) -> Vec<&CellRow> {
    type Key<'a> = (&'a str, u32, String, Option<u64>);
    let mut best: BTreeMap<Key, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (r.cell_id.as_str(), r.repetition, host_class(r), r.target);
        match best.get(&key) {
            Some(&j) if r.verdict == Verdict::Error && rows[j].verdict != Verdict::Error => {}
            _ => {
                best.insert(key, i);
            }
        }
    }
    let has_result: BTreeSet<(&str, u32)> = best
        .values()
        .map(|&i| &rows[i])
        .filter(|r| r.verdict != Verdict::Error)
        .map(|r| (r.cell_id.as_str(), r.repetition))
        .collect();
    let mut keep: Vec<usize> = best
        .into_values()
        .filter(|&i| {
            let r = &rows[i];
            r.verdict != Verdict::Error || !has_result.contains(&(r.cell_id.as_str(), r.repetition))
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
