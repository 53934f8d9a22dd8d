//! The cells of a matrix: the cartesian product of its axes, then its `only` and `exclude`
//! filters applied.

use super::id::cell_id;
use super::{Cell, NetMode, NicModel, Settings, Vhost};
use crate::matrix::config::{OneOrMany, RawFilter, RawMatrix};
use crate::matrix::search::Searched;

/// The cartesian product in axis-list order, nesting nic, mode, vhost, qemu, traffic,
/// disconnect, scope, connections, vcpus, memory. Cells where vhost does not apply appear
/// once; a searched matrix has one cell per combination of the other axes.
pub(super) fn expand(raw: &RawMatrix, s: &Settings) -> Vec<Cell> {
    let a = &raw.axes;
    let search = raw.search.as_ref().and_then(|sr| sr.spec());
    let counts: Vec<u64> = match &search {
        Some(sp) if sp.param == Searched::Connections => vec![sp.to],
        _ => a.connections.clone(),
    };
    let mut out = Vec::new();
    for &nic in &a.nic {
        for &mode in &a.mode {
            let vhosts: Vec<Option<Vhost>> = if vhost_applies(nic, mode) {
                a.vhost.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            for &vhost in &vhosts {
                for (qemu, qemu_env) in a
                    .qemu
                    .iter()
                    .flat_map(|q| s.qemu_env_points(&q.0).into_iter().map(move |p| (q, p)))
                {
                    for &traffic in &a.traffic {
                        for &disconnect in &a.disconnect {
                            for &scope in &a.scope {
                                for &connections in &counts {
                                    for &vcpus in &a.vcpus {
                                        for &memory in &a.memory {
                                            let mut cell = Cell {
                                                id: String::new(),
                                                index: out.len() + 1,
                                                nic,
                                                mode,
                                                vhost,
                                                disconnect,
                                                scope,
                                                qemu: qemu.clone(),
                                                qemu_env: qemu_env.clone(),
                                                swept: s
                                                    .swept_env(&qemu.0)
                                                    .into_iter()
                                                    .map(str::to_owned)
                                                    .collect(),
                                                traffic,
                                                connections,
                                                vcpus,
                                                memory,
                                                search: search.clone(),
                                            };
                                            cell.id = cell_id(&cell, s);
                                            out.push(cell);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The cells that match any `only` entry (all when there is none) and no `exclude` entry.
pub(super) fn filter(raw: &RawMatrix, all: Vec<Cell>) -> Vec<Cell> {
    all.into_iter()
        .filter(|c| raw.only.is_empty() || raw.only.iter().any(|f| matches(f, c)))
        .filter(|c| !raw.exclude.iter().any(|f| matches(f, c)))
        .collect()
}

/// True when every key of the entry matches the cell. A `vhost` key only matches
/// cells where vhost applies.
fn matches(f: &RawFilter, c: &Cell) -> bool {
    fn has<T: PartialEq>(given: &Option<OneOrMany<T>>, v: &T) -> bool {
        given.as_ref().is_none_or(|l| l.0.contains(v))
    }
    let vhost = match (&f.vhost, c.vhost) {
        (None, _) => true,
        (Some(l), Some(v)) => l.0.contains(&v),
        (Some(_), None) => false,
    };
    vhost
        && has(&f.nic, &c.nic)
        && has(&f.mode, &c.mode)
        && has(&f.disconnect, &c.disconnect)
        && has(&f.scope, &c.scope)
        && has(&f.qemu, &c.qemu)
        && has(&f.traffic, &c.traffic)
        && (c.searches_connections() || has(&f.connections, &c.connections))
        && has(&f.vcpus, &c.vcpus)
        && has(&f.memory, &c.memory)
}

/// vhost-net exists only for virtio-net with a tap backend; user and passt modes have no tap.
fn vhost_applies(nic: NicModel, mode: NetMode) -> bool {
    nic == NicModel::VirtioNet && mode.has_tap()
}

#[cfg(test)]
mod tests {
    use crate::matrix::plan::testing::{plan, BASE};
    use crate::matrix::plan::NetMode;

    #[test]
    fn expansion_counts() {
        let cases: &[(&str, &str, usize)] = &[
            ("defaults: vhost [on] gives one virtio cell per mode", "", 6),
            (
                "full product with more axes",
                "  disconnect: [fin, rst]\n  scope: [one, all]\n",
                24,
            ),
            (
                "vhost axis doubles only virtio-net bridge/nat",
                "  vhost: [on, off]\n",
                8,
            ),
            (
                "vhost axis does not touch user mode",
                "  vhost: [on, off]\nonly: [{mode: [bridge]}]\n",
                4,
            ),
            (
                "only keeps matches of ANY entry",
                "only:\n  - {nic: vmxnet3, mode: bridge}\n  - {nic: e1000}\n",
                3,
            ),
            (
                "exclude drops matches",
                "exclude: [{nic: e1000, mode: nat}]\n",
                5,
            ),
            (
                "only then exclude",
                "only: [{mode: nat}]\nexclude: [{nic: [e1000, vmxnet3]}]\n",
                1,
            ),
            (
                "vhost filter matches only where vhost applies",
                "  vhost: [on, off]\nexclude: [{vhost: off}]\n",
                6,
            ),
            (
                "vhost in only keeps only virtio cells",
                "  vhost: [on, off]\nonly: [{vhost: off}]\n",
                2,
            ),
        ];
        for (what, extra, want) in cases {
            // Axis lines continue BASE's `axes:` block; top-level keys follow it.
            let text = format!("{BASE}{extra}");
            assert_eq!(plan(&text).cells.len(), *want, "{what}");
        }
        let user = "axes:\n  nic: [virtio-net, e1000]\n  mode: [bridge, user]\n  vhost: [on, off]\n  connections: [10]\n";
        let p = plan(user);
        let got: Vec<String> = p.cells.iter().map(|c| c.label()).collect();
        assert_eq!(
            got,
            [
                "virtio-net/bridge/vhost-on/fin/one/10",
                "virtio-net/bridge/vhost-off/fin/one/10",
                "virtio-net/user/fin/one/10",
                "e1000/bridge/fin/one/10",
                "e1000/user/fin/one/10",
            ]
        );
        let indexes: Vec<usize> = p.cells.iter().map(|c| c.index).collect();
        assert_eq!(indexes, [1, 2, 3, 4, 5]);
        // passt, like user, has no tap: vhost does not apply, and what the exclusions leave
        // plans (a tap recipe and link-down excluded).
        let p = plan("axes:\n  nic: [virtio-net]\n  mode: [passt, bridge]\n  vhost: [on, off]\n  qemu: [system, vmnet-flow-control/b32]\n  disconnect: [fin, link-down]\n  connections: [10]\nexclude:\n  - {mode: passt, qemu: vmnet-flow-control/b32}\n  - {mode: passt, disconnect: link-down}\nsettings:\n  qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}}\n");
        let passt: Vec<String> = p
            .cells
            .iter()
            .filter(|c| c.mode == NetMode::Passt)
            .map(|c| c.label())
            .collect();
        assert_eq!(passt, ["virtio-net/passt/fin/one/10"]);
        assert_eq!(p.cells.len(), 1 + 2 * 2 * 2);
    }

    #[test]
    fn emulator_and_traffic_axes() {
        let p = plan(
            "axes:\n  nic: [virtio-net]\n  mode: [bridge]\n  vhost: [off]\n  qemu: [system, virtio-rx-kick-stall, vmnet-flow-control/burst64]\n  traffic: [none, bulk-in]\n  connections: [30000]\nsettings:\n  qemu_env:\n    vmnet-flow-control/burst64: {NICSTORM_VMNET_BURST: 64, NICSTORM_VMNET_PPMS: 8}\n",
        );
        assert_eq!(p.cells.len(), 6);
        let labels: Vec<String> = p.cells.iter().map(|c| c.label()).collect();
        assert_eq!(labels[0], "virtio-net/bridge/vhost-off/fin/one/30000");
        assert_eq!(
            labels[1],
            "virtio-net/bridge/vhost-off/bulk-in/fin/one/30000"
        );
        assert_eq!(
            labels[2],
            "virtio-net/bridge/vhost-off/qemu-virtio-rx-kick-stall/fin/one/30000"
        );
        assert_eq!(
            p.cells[4].qemu_env,
            vec![
                ("NICSTORM_VMNET_BURST".to_owned(), "64".to_owned()),
                ("NICSTORM_VMNET_PPMS".to_owned(), "8".to_owned())
            ]
        );
        // The system QEMU and no traffic: the id of the same cell before the axes existed.
        let before = plan("axes:\n  nic: [virtio-net]\n  mode: [bridge]\n  vhost: [off]\n  connections: [30000]\n");
        assert_eq!(p.cells[0].id, before.cells[0].id);
        let mut ids: Vec<&str> = p.cells.iter().map(|c| c.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 6, "every axis value is its own cell");
        // The environment is part of the id.
        let other = plan(
            "axes:\n  nic: [virtio-net]\n  mode: [bridge]\n  vhost: [off]\n  qemu: [vmnet-flow-control/burst64]\n  connections: [30000]\nsettings:\n  qemu_env:\n    vmnet-flow-control/burst64: {NICSTORM_VMNET_BURST: 32}\n",
        );
        assert_ne!(other.cells[0].id, p.cells[4].id);
        // Filters on the new axes.
        let f = plan(
            "axes:\n  nic: [vmxnet3]\n  mode: [bridge]\n  qemu: [system, plain]\n  traffic: [none, ssh-stream, bulk-out]\n  connections: [10]\nexclude: [{qemu: plain, traffic: [ssh-stream, bulk-out]}]\n",
        );
        assert_eq!(f.cells.len(), 4);
    }

    #[test]
    fn a_list_in_qemu_env_sweeps_the_variable() {
        let head = "axes:\n  nic: [virtio-net, vmxnet3]\n  mode: [bridge]\n  vhost: [off]\n  qemu: [vmnet-flow-control/grid]\n  connections: [300]\nsettings:\n  qemu_env:\n    vmnet-flow-control/grid: ";
        let p = plan(&format!(
            "{head}{{NICSTORM_VMNET_BURST: [16, 64], NICSTORM_VMNET_MODE: disable, NICSTORM_VMNET_PPMS: [5, 20, 80]}}\n"
        ));
        // 2 NICs x 2 depths x 3 rates; the first variable varies slowest.
        assert_eq!(p.cells.len(), 12);
        let labels: Vec<String> = p.cells.iter().take(3).map(|c| c.label()).collect();
        assert_eq!(
            labels,
            [
                "virtio-net/bridge/vhost-off/qemu-vmnet-flow-control/grid[BURST=16,PPMS=5]/fin/one/300",
                "virtio-net/bridge/vhost-off/qemu-vmnet-flow-control/grid[BURST=16,PPMS=20]/fin/one/300",
                "virtio-net/bridge/vhost-off/qemu-vmnet-flow-control/grid[BURST=16,PPMS=80]/fin/one/300",
            ]
        );
        assert_eq!(
            p.cells[3].qemu_env,
            [
                ("NICSTORM_VMNET_BURST".to_owned(), "64".to_owned()),
                ("NICSTORM_VMNET_MODE".to_owned(), "disable".to_owned()),
                ("NICSTORM_VMNET_PPMS".to_owned(), "5".to_owned()),
            ]
        );
        let mut ids: Vec<&str> = p.cells.iter().map(|c| c.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 12, "every point is its own cell");
        // A point of a sweep has the id of the same environment written without lists.
        let one = plan(&format!(
            "{head}{{NICSTORM_VMNET_BURST: 64, NICSTORM_VMNET_MODE: disable, NICSTORM_VMNET_PPMS: [5]}}\n"
        ));
        assert_eq!(one.cells[0].id, p.cells[3].id);
        assert_eq!(
            one.cells[0].sweep_point(),
            "",
            "a one-value list sweeps nothing"
        );
    }
}
