//! Pure: which repetitions of the two sides are the same cell. Cells are matched by their
//! axes (NIC, mode, the named axes, connections, the target that ran) on the same kind of host
//! (`host_class`: figures of different host classes are never compared), leaving out the
//! axis being compared when the two sides are two values of one axis. The cell id is not the
//! key: it also hashes settings outside the row (guest sysctls, ports, memory), and comparing
//! two such settings is what `compare` is for; a cell whose ids differ says so.

use std::collections::BTreeMap;

use crate::results::{host_class, CellRow};

/// The axes a row's cell is matched by, in the order they are shown.
pub(crate) const AXES: &[&str] = &[
    "nic",
    "mode",
    "vhost",
    "qemu",
    "qemu_env",
    "traffic",
    "frames",
    "passt",
    "disconnect",
    "scope",
    "connections",
    "target",
];

/// The axes `--axis` may name: all but `target` (what ran, not what was asked), the last.
pub(crate) const COMPARABLE_AXES: &[&str] = AXES.split_last().unwrap().1;

/// The value of `axis` (one of `AXES`) in `r`.
pub(crate) fn axis_value(r: &CellRow, axis: &str) -> String {
    match axis {
        "nic" => r.nic.to_string(),
        "mode" => r.mode.to_string(),
        "connections" => r.connections.to_string(),
        // The bare value (a sweep's points differ in qemu_env, named apart so `--axis` can
        // choose among them: `--axis qemu_env=A,B`, each `NAME=value;NAME=value`).
        "qemu" => r.qemu.to_string(),
        "qemu_env" => r.qemu_env.clone().unwrap_or_else(|| "-".into()),
        "target" => r.target.map_or("-".into(), |t| t.to_string()),
        // passt mode's passt by name (`system`, or a recipe): a passt-mode row from before the
        // column ran the host's, the only one there was; other modes have none (`-`).
        "passt" => match (&r.mode, r.passt.as_deref()) {
            (m, _) if *m != crate::matrix::plan::NetMode::Passt => "-".into(),
            (_, Some(p)) => p.split(' ').next().unwrap_or(p).to_owned(),
            (_, None) => crate::matrix::recipes::SYSTEM.into(),
        },
        _ => r
            .named_axes()
            .into_iter()
            .find(|(n, _)| *n == axis)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{axis} is not an axis of a row")),
    }
}

/// A cell as both sides know it: the host class and its axes (less the compared one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CellKey {
    pub(crate) class: String,
    pub(crate) axes: Vec<(&'static str, String)>,
}

impl CellKey {
    pub(crate) fn of(r: &CellRow, skip: Option<&str>) -> CellKey {
        CellKey {
            class: host_class(r),
            axes: AXES
                .iter()
                .filter(|a| Some(**a) != skip)
                .map(|a| (*a, axis_value(r, a)))
                .collect(),
        }
    }

    /// "virtio-net / bridge · vhost=off · qemu=plain · fin on one · 10000 of 1000000": the
    /// axes at their usual value (vhost n/a, qemu system, traffic none, frames tso) left out.
    pub(crate) fn title(&self) -> String {
        let get = |n: &str| {
            self.axes
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| v.as_str())
        };
        let mut parts = vec![];
        match (get("nic"), get("mode")) {
            (Some(n), Some(m)) => parts.push(format!("{n} / {m}")),
            (Some(x), None) | (None, Some(x)) => parts.push(x.to_owned()),
            (None, None) => {}
        }
        for (axis, usual) in [
            ("vhost", "n/a"),
            ("qemu", "system"),
            ("traffic", "none"),
            ("frames", "tso"),
            ("passt", "-"),
        ] {
            if let Some(v) = get(axis).filter(|v| *v != usual && !v.is_empty()) {
                parts.push(format!("{axis}={v}"));
            }
        }
        match (get("disconnect"), get("scope")) {
            (Some(d), Some(s)) => parts.push(format!("{d} on {s}")),
            (Some(d), None) => parts.push(format!("disconnect={d}")),
            (None, Some(s)) => parts.push(format!("scope={s}")),
            (None, None) => {}
        }
        match (get("target"), get("connections")) {
            (Some(t), Some(c)) => parts.push(format!("{t} of {c} connections")),
            (Some(t), None) => parts.push(format!("target {t}")),
            _ => {}
        }
        parts.join(" · ")
    }
}

/// The repetitions of one cell on both sides.
#[derive(Debug)]
pub(crate) struct Pair<'a> {
    pub(crate) key: CellKey,
    pub(crate) base: Vec<&'a CellRow>,
    pub(crate) new: Vec<&'a CellRow>,
}

/// What matched and what did not.
#[derive(Debug)]
pub(crate) struct Matching<'a> {
    pub(crate) pairs: Vec<Pair<'a>>,
    /// Cells on one side only, with their repetitions.
    pub(crate) only_base: Vec<(CellKey, usize)>,
    pub(crate) only_new: Vec<(CellKey, usize)>,
}

/// Pairs the rows of the two sides by cell (`skip`: the axis whose two values are the sides).
pub(crate) fn pair<'a>(
    base: &[&'a CellRow],
    new: &[&'a CellRow],
    skip: Option<&str>,
) -> Matching<'a> {
    type Sides<'a> = (Vec<&'a CellRow>, Vec<&'a CellRow>);
    let mut by_key: BTreeMap<CellKey, Sides<'a>> = BTreeMap::new();
    for r in base {
        by_key.entry(CellKey::of(r, skip)).or_default().0.push(r);
    }
    for r in new {
        by_key.entry(CellKey::of(r, skip)).or_default().1.push(r);
    }
    let mut m = Matching {
        pairs: vec![],
        only_base: vec![],
        only_new: vec![],
    };
    for (key, (mut b, mut n)) in by_key {
        match (b.is_empty(), n.is_empty()) {
            (false, true) => m.only_base.push((key, b.len())),
            (true, false) => m.only_new.push((key, n.len())),
            _ => {
                b.sort_by(|x, y| x.started_at.cmp(&y.started_at));
                n.sort_by(|x, y| x.started_at.cmp(&y.started_at));
                m.pairs.push(Pair {
                    key,
                    base: b,
                    new: n,
                });
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cell: &str, rep: u32, qemu: &str, traffic: &str) -> CellRow {
        CellRow {
            qemu: qemu.into(),
            traffic: traffic.into(),
            ..CellRow::example(cell, rep, "ok")
        }
    }

    #[test]
    fn two_values_of_one_axis_match_by_the_others() {
        let rows = [
            row("s1", 1, "system", "none"),
            row("s1", 2, "system", "none"),
            row("s2", 1, "system", "bulk-out"),
            row("p1", 1, "plain", "none"),
            row("p3", 1, "plain", "ssh-stream"),
        ];
        let base: Vec<&CellRow> = rows
            .iter()
            .filter(|r| r.qemu.as_str() == "system")
            .collect();
        let new: Vec<&CellRow> = rows.iter().filter(|r| r.qemu.as_str() == "plain").collect();
        let m = pair(&base, &new, Some("qemu"));
        assert_eq!(m.pairs.len(), 1);
        assert_eq!((m.pairs[0].base.len(), m.pairs[0].new.len()), (2, 1));
        assert_eq!(
            m.pairs[0].key.title(),
            "vmxnet3 / bridge · fin on one · 30000 of 1000000 connections"
        );
        assert_eq!(m.only_base.len(), 1);
        assert_eq!(
            m.only_new[0].0.title(),
            "vmxnet3 / bridge · traffic=ssh-stream · fin on one · 30000 of 1000000 connections"
        );
        // Without skipping the axis nothing matches.
        assert!(pair(&base, &new, Some("traffic")).pairs.is_empty());
    }

    #[test]
    fn other_host_classes_and_targets_do_not_match() {
        let a = CellRow::example("c", 1, "ok");
        let kvm = CellRow {
            accel: Some(crate::matrix::plan::Accel::Kvm.into()),
            ..a.clone()
        };
        let other_target = CellRow {
            target: Some(10_000),
            ..a.clone()
        };
        let m = pair(&[&a], &[&kvm, &other_target], None);
        assert!(m.pairs.is_empty());
        assert_eq!((m.only_base.len(), m.only_new.len()), (1, 2));
        // The cell id is not part of the key: other guest sysctls, same axes, match.
        let sysctl = CellRow {
            cell_id: "other".into(),
            ..a.clone()
        };
        assert_eq!(pair(&[&a], &[&sysctl], None).pairs.len(), 1);
    }

    #[test]
    fn every_axis_has_a_value() {
        let r = CellRow::example("c", 1, "ok");
        for a in AXES {
            let _ = axis_value(&r, a);
        }
        assert_eq!(axis_value(&r, "frames"), "tso");
        assert_eq!(axis_value(&r, "target"), "30000");
    }
}
