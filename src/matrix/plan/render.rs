//! `nicstorm plan FILE`: the expanded plan as an aligned text table, or as JSON (`--json`,
//! docs/schemas/plan.schema.json) for a program, e.g. a CI job matrix of one job per cell.

use super::{Accel, Plan};
use crate::matrix::search::{OkSide, Searched};

/// The expanded plan as an aligned text table, for `nicstorm plan FILE`.
pub fn render_plan(plan: &Plan) -> String {
    let s = &plan.settings;
    let mut out = format!(
        "plan {} ({}): {} cells x {} repetition{}\n",
        plan.name,
        plan.path.display(),
        plan.cells.len(),
        plan.repetitions,
        if plan.repetitions == 1 { "" } else { "s" }
    );
    if let Some(d) = &plan.description {
        out.push_str(&format!("{}\n", d.trim()));
    }
    let pace = |r: crate::matrix::config::Rate| match r {
        crate::matrix::config::Rate::PerSecond(0) => "unlimited".to_owned(),
        crate::matrix::config::Rate::PerSecond(r) => format!("{r}/s per client"),
        crate::matrix::config::Rate::Auto => format!(
            "auto (at most {} connects in flight per client: the server's accepts pace the ramp)",
            crate::matrix::config::Rate::AUTO_WINDOW
        ),
    };
    let rate = match s.tcg_rate {
        Some(t) => format!("{}, under tcg {}", pace(s.rate), pace(t)),
        None => pace(s.rate),
    };
    out.push_str(&format!(
        "ports {} ({} ports), concurrency {}, rate {rate}; under tcg: <= {} connections, <= {} vCPU per VM\n",
        s.ports,
        s.ports.count(),
        s.concurrency,
        s.tcg_connections,
        s.tcg_vcpus
    ));
    if s.frames != super::Frames::Tso {
        out.push_str(&format!(
            "frames {}: the NIC backends are given MTU-sized frames only (virtio-net offloads off)\n",
            s.frames
        ));
    }
    if s.passt != crate::matrix::recipes::SYSTEM
        && plan.cells.iter().any(|c| c.mode == super::NetMode::Passt)
    {
        out.push_str(&format!(
            "passt {}: passt-mode cells run the passt of recipe passt/{}/ (built before the first)\n",
            s.passt, s.passt
        ));
    }
    let c = s.capture;
    match c.set {
        Some(super::Capture::Off) => {
            out.push_str("capture off: no packet ring of the server's tap\n")
        }
        Some(when) => out.push_str(&format!(
            "capture {when}: the server tap's packet ring (bridge, nat), {} bytes a packet, {} on disk\n",
            c.snaplen,
            crate::matrix::config::ByteSize(c.ring_bytes)
        )),
        // The default: the ring under KVM only (README "The packet ring"); said when its
        // sizes are not the default ones.
        None if (c.snaplen, c.ring_bytes) != (96, 64 << 20) => out.push_str(&format!(
            "capture on-loss under KVM (off under TCG): the server tap's packet ring (bridge, nat), {} bytes a packet, {} on disk\n",
            c.snaplen,
            crate::matrix::config::ByteSize(c.ring_bytes)
        )),
        None => {}
    }
    if s.order == super::RunOrder::Interleaved {
        out.push_str(
            "order interleaved: repetition 1 of every cell, then repetition 2 in reverse order, and so on\n",
        );
    }
    if s.lab_start == super::LabStart::Restore {
        out.push_str(
            "lab_start restore: each lab is restored from one saved by the first cell of its kind\n",
        );
    }
    if let Some(sp) = plan.cells.first().and_then(|c| c.search.as_ref()) {
        match &sp.param {
            Searched::Connections => out.push_str(&format!(
                "breaking-point search per cell: the largest connection count that ends ok, from {} to {} (under tcg: to at most {}), bisected to {:.0}%, at most {} steps\n",
                sp.from,
                sp.to,
                s.tcg_connections,
                sp.resolution * 100.0,
                sp.max_steps
            )),
            Searched::Env { name, ok } => out.push_str(&format!(
                "breaking-point search per cell: the {} value of {name} that still ends ok (ok {}), from {} to {}, {} first, bisected to {:.0}%, at most {} steps, at each cell's connection count\n",
                match ok {
                    OkSide::Above => "smallest",
                    OkSide::Below => "largest",
                },
                ok.as_str(),
                sp.from,
                sp.to,
                match ok {
                    OkSide::Above => sp.to,
                    OkSide::Below => sp.from,
                },
                sp.resolution * 100.0,
                sp.max_steps
            )),
        }
    }
    for (value, env) in &s.qemu_env {
        let list: Vec<String> = env
            .iter()
            .map(|(k, vs)| match vs.as_slice() {
                [v] => format!("{k}={v}"),
                _ => format!("{k}={{{}}}", vs.join(",")),
            })
            .collect();
        out.push_str(&format!("qemu {value}: {}\n", list.join(" ")));
    }
    for (what, sysctls) in [("host", &s.host_sysctls), ("guest", &s.guest_sysctls)] {
        if !sysctls.is_empty() {
            let list: Vec<String> = sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("{what} sysctls: {}\n", list.join(", ")));
        }
    }
    out.push('\n');

    let header = [
        "#",
        "id",
        "nic",
        "mode",
        "vhost",
        "qemu",
        "traffic",
        "disconnect",
        "scope",
        "connections",
        "tcg target",
        "vcpus",
        "memory",
    ];
    // Numbers are right-aligned so magnitudes line up.
    let right = [
        true, false, false, false, false, false, false, false, false, true, true, true, false,
    ];
    let rows: Vec<Vec<String>> = plan
        .cells
        .iter()
        .map(|c| {
            vec![
                c.index.to_string(),
                c.id.clone(),
                c.nic.to_string(),
                c.mode.to_string(),
                c.vhost_text().to_owned(),
                format!("{}{}", c.qemu, c.sweep_point()),
                c.traffic.to_string(),
                c.disconnect.to_string(),
                c.scope.to_string(),
                match &c.search {
                    Some(sp) if c.searches_connections() => format!("{}..{}", sp.from, sp.to),
                    _ => c.connections.to_string(),
                },
                match &c.search {
                    Some(sp) if c.searches_connections() => {
                        let t = sp.capped(s.tcg_connections);
                        format!("{}..{}", t.from, t.to)
                    }
                    _ => c.target(Accel::Tcg, s).to_string(),
                },
                c.vcpus.to_string(),
                c.memory.to_string(),
            ]
        })
        .collect();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    out.push_str(&aligned_table(&header, &rows, &right));
    out
}

/// The plan as JSON: the matrix, its settings that shape every cell, and each cell with its id
/// and axes (`nicstorm run MATRIX --cell ID` runs one). `shard` is the `K/N` the cells were
/// chosen by, `total` the cells of the whole plan.
pub fn plan_json(plan: &Plan, shard: Option<String>, total: usize) -> serde_json::Value {
    use serde_json::json;
    let s = &plan.settings;
    let cells: Vec<serde_json::Value> = plan
        .cells
        .iter()
        .map(|c| {
            let search = c.search.as_ref().map(|sp| {
                let t = sp.capped(s.tcg_connections);
                json!({
                    "param": sp.param.column(), "ok": sp.param.ok_side().as_str(),
                    "from": sp.from, "to": sp.to, "resolution": sp.resolution,
                    "max_steps": sp.max_steps, "tcg_from": t.from, "tcg_to": t.to,
                })
            });
            json!({
                "index": c.index,
                "id": c.id,
                "label": c.label(),
                "nic": c.nic.to_string(),
                "mode": c.mode.to_string(),
                "vhost": c.vhost.map(|v| v.as_str()),
                "qemu": c.qemu.to_string(),
                "qemu_env": c.qemu_env.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<String, serde_json::Value>>(),
                "traffic": c.traffic.to_string(),
                "disconnect": c.disconnect.to_string(),
                "scope": c.scope.to_string(),
                "connections": (!c.searches_connections()).then_some(c.connections),
                "tcg_target": (!c.searches_connections()).then(|| c.target(Accel::Tcg, s)),
                "search": search,
                "vcpus": c.vcpus,
                "memory": c.memory.to_string(),
            })
        })
        .collect();
    json!({
        "v": 1,
        "name": plan.name,
        "path": plan.path,
        "description": plan.description,
        "repetitions": plan.repetitions,
        "shard": shard,
        "total_cells": total,
        "settings": {
            "ports": s.ports.to_string(),
            "concurrency": s.concurrency,
            "rate": rate_json(s.rate),
            "tcg_rate": s.tcg_rate.map(rate_json),
            "order": s.order.as_str(),
            "lab_start": s.lab_start.as_str(),
            "frames": s.frames.to_string(),
            "passt": s.passt,
            "tcg_connections": s.tcg_connections,
            "tcg_vcpus": s.tcg_vcpus,
            "host_sysctls": s.host_sysctls,
            "guest_sysctls": s.guest_sysctls,
            "qemu_env": s.qemu_env.iter().map(|(value, env)| {
                // One value: a string; a sweep: the list of its values.
                let vars: serde_json::Map<String, serde_json::Value> = env
                    .iter()
                    .map(|(k, vs)| match vs.as_slice() {
                        [v] => (k.clone(), v.clone().into()),
                        _ => (k.clone(), vs.clone().into()),
                    })
                    .collect();
                (value.clone(), serde_json::Value::Object(vars))
            }).collect::<serde_json::Map<String, serde_json::Value>>(),
        },
        "cells": cells,
    })
}

/// A rate as the plan's JSON gives it: connects per second (0: unlimited), or "auto".
fn rate_json(r: crate::matrix::config::Rate) -> serde_json::Value {
    match r {
        crate::matrix::config::Rate::PerSecond(n) => n.into(),
        crate::matrix::config::Rate::Auto => "auto".into(),
    }
}

/// Columns separated by two spaces, padded to the widest entry; no trailing spaces.
fn aligned_table(header: &[String], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(right)
            .map(|((cell, &w), &r)| {
                if r {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::plan::testing::{plan, BASE};

    #[test]
    fn render_plan_table() {
        let p = plan(&format!(
            "description: \"snapshot\"\n{BASE}  vhost: [on, off]\n"
        ));
        insta::assert_snapshot!(render_plan(&p));
    }

    #[test]
    fn a_capture_setting_other_than_the_default_is_said() {
        let line = |settings: &str| {
            render_plan(&plan(&format!("{BASE}settings: {settings}\n")))
                .lines()
                .find(|l| l.starts_with("capture"))
                .map(String::from)
        };
        // The default is not said; a setting is, even the value KVM's default has (under TCG
        // it runs a ring the default would not).
        assert_eq!(line("{ports: 20000-20019}"), None);
        assert_eq!(
            line("{capture: on-loss}").as_deref(),
            Some("capture on-loss: the server tap's packet ring (bridge, nat), 96 bytes a packet, 64MiB on disk")
        );
        assert_eq!(
            line("{capture_snaplen: 128}").as_deref(),
            Some("capture on-loss under KVM (off under TCG): the server tap's packet ring (bridge, nat), 128 bytes a packet, 64MiB on disk")
        );
        assert_eq!(
            line("{capture: off}").as_deref(),
            Some("capture off: no packet ring of the server's tap")
        );
        assert_eq!(
            line("{capture: always, capture_ring: 16MiB}").as_deref(),
            Some("capture always: the server tap's packet ring (bridge, nat), 96 bytes a packet, 16MiB on disk")
        );
    }
}
