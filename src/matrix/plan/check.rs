//! Checks of the axes and filters, and of the combinations that only the expanded cells show:
//! each failure names the key and its position (error.rs), the bad value and what is allowed.

use std::fmt;

use super::error::{Ctx, PlanError};
use super::{
    Cell, DisconnectMethod, Memory, NetMode, NicModel, Scope, Settings, Traffic, Vhost, CLIENTS,
    MIN_MEMORY_MIB, SOURCE_PORTS,
};
use crate::matrix::config::{OneOrMany, RawAxes, RawFilter, RawMatrix, Seg};
use crate::matrix::search::Searched;

fn entries(n: usize) -> String {
    format!("{n} entr{}", if n == 1 { "y" } else { "ies" })
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rejects an empty axis list and a value listed twice (it would yield duplicate ids).
fn check_list<T: PartialEq + fmt::Display>(
    ctx: &Ctx,
    axis: &'static str,
    values: &[T],
    allowed: &str,
) -> Result<(), PlanError> {
    let path = [Seg::Key("axes"), Seg::Key(axis)];
    if values.is_empty() {
        return Err(ctx.err(
            &path,
            format!("empty list; give at least one of: {allowed}"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(ctx.err(
                &[Seg::Key("axes"), Seg::Key(axis), Seg::Index(i)],
                format!("{v} is listed twice; each value makes its own cells"),
            ));
        }
    }
    Ok(())
}

fn names<T: fmt::Display>(all: &[T]) -> String {
    join(all)
}

/// The axes and the repetitions: each list, the emulators, the connection counts (or the
/// search), vCPUs and memory.
pub(super) fn check_axes(ctx: &Ctx, raw: &RawMatrix, s: &Settings) -> Result<(), PlanError> {
    if raw.repetitions == 0 {
        return Err(ctx.err(&[Seg::Key("repetitions")], "0; must be >= 1"));
    }
    let a = &raw.axes;
    check_list(ctx, "nic", &a.nic, &names(NicModel::ALL))?;
    check_list(ctx, "mode", &a.mode, &names(NetMode::ALL))?;
    check_list(ctx, "vhost", &a.vhost, &names(Vhost::ALL))?;
    check_list(
        ctx,
        "disconnect",
        &a.disconnect,
        &names(DisconnectMethod::ALL),
    )?;
    check_list(ctx, "scope", &a.scope, &names(Scope::ALL))?;
    check_list(ctx, "traffic", &a.traffic, &names(Traffic::ALL))?;
    check_qemu(ctx, a, s)?;
    check_counts_or_search(ctx, raw, s)?;
    check_list(ctx, "vcpus", &a.vcpus, "a count >= 1")?;
    check_list(ctx, "memory", &a.memory, "auto, or a size like 6GiB")?;
    check_capacity(ctx, raw, s)?;
    check_sizes(ctx, a)
}

/// `axes.qemu`: `system` or a recipe of emulators/, a variant only with its environment in
/// settings.qemu_env, and every qemu_env entry on the axis.
fn check_qemu(ctx: &Ctx, a: &RawAxes, s: &Settings) -> Result<(), PlanError> {
    let recipes = crate::matrix::recipes::recipes(&crate::support::repo::root());
    let allowed = format!("system, {}", recipes.join(", "));
    check_list(ctx, "qemu", &a.qemu, &allowed)?;
    for (i, q) in a.qemu.iter().enumerate() {
        let path = [Seg::Key("axes"), Seg::Key("qemu"), Seg::Index(i)];
        let recipe = q.recipe();
        if recipe == crate::matrix::recipes::SYSTEM {
            if q.0 != crate::matrix::recipes::SYSTEM {
                return Err(ctx.err(
                    &path,
                    format!("{q}: the system QEMU has no variants; allowed: {allowed}"),
                ));
            }
        } else if !recipes.iter().any(|r| r == recipe) {
            return Err(ctx.err(
                &path,
                format!("unknown emulator recipe {recipe:?} (no emulators/{recipe}/); allowed: {allowed}"),
            ));
        }
        if q.0.contains('/') && !s.qemu_env.contains_key(&q.0) {
            return Err(ctx.err(
                &path,
                format!("{q} is a variant, but settings.qemu_env has no entry {q:?} giving its QEMU environment"),
            ));
        }
    }
    for value in s.qemu_env.keys() {
        if !a.qemu.iter().any(|q| q.0 == *value) {
            return Err(ctx.err(
                &[Seg::Key("settings"), Seg::Key("qemu_env"), Seg::Key(value)],
                format!(
                    "{value:?} is not on axes.qemu ({}); its environment would apply to nothing",
                    join(&a.qemu)
                ),
            ));
        }
    }
    Ok(())
}

/// The connection counts, or a valid search instead of them (a search over QEMU's
/// environment keeps the counts: it varies the variable at each).
fn check_counts_or_search(ctx: &Ctx, raw: &RawMatrix, s: &Settings) -> Result<(), PlanError> {
    let a = &raw.axes;
    let Some(sr) = &raw.search else {
        return check_list(ctx, "connections", &a.connections, "a count >= 1");
    };
    let searched: Vec<String> = sr.qemu_env.keys().cloned().collect();
    match (&sr.connections, searched.len()) {
        (None, 0) => {
            return Err(ctx.err(
                &[Seg::Key("search")],
                "searches nothing; give search.connections or one variable under search.qemu_env",
            ))
        }
        (Some(_), 1..) => {
            return Err(ctx.err(
                &[Seg::Key("search")],
                format!(
                    "search.connections and search.qemu_env ({}) given together; a search varies one thing: remove one",
                    join(&searched)
                ),
            ))
        }
        (None, 2..) => {
            return Err(ctx.err(
                &[Seg::Key("search"), Seg::Key("qemu_env")],
                format!(
                    "{} variables ({}); a search varies one: sweep the others with a list in settings.qemu_env",
                    searched.len(),
                    join(&searched)
                ),
            ))
        }
        _ => {}
    }
    let spec = sr.spec().expect("exactly one thing is searched");
    let path: Vec<Seg> = match &spec.param {
        Searched::Connections => vec![Seg::Key("search"), Seg::Key("connections")],
        Searched::Env { name, .. } => vec![
            Seg::Key("search"),
            Seg::Key("qemu_env"),
            Seg::Key(name.as_str()),
        ],
    };
    if let Some(problem) = spec.problem() {
        return Err(ctx.err(&path, problem));
    }
    let Searched::Env { name, .. } = &spec.param else {
        if !a.connections.is_empty() {
            return Err(ctx.err(
                &[Seg::Key("axes"), Seg::Key("connections")],
                "given together with search.connections; a searched matrix takes its counts from the search: remove one",
            ));
        }
        return Ok(());
    };
    check_list(
        ctx,
        "connections",
        &a.connections,
        "a count >= 1 (a search over qemu_env runs at each)",
    )?;
    // No emulator may fix the variable as well (what reads it is checked on the cells).
    for q in &a.qemu {
        if s.qemu_env
            .get(&q.0)
            .is_some_and(|env| env.iter().any(|(k, _)| k == name))
        {
            return Err(ctx.err(
                &[
                    Seg::Key("settings"),
                    Seg::Key("qemu_env"),
                    Seg::Key(q.0.as_str()),
                    Seg::Key(name.as_str()),
                ],
                format!("{name} is set here and searched by search.qemu_env.{name}: remove one"),
            ));
        }
    }
    Ok(())
}

/// A search over a variable of QEMU's environment: every emulator of the cells (after `only`
/// and `exclude`) must be a recipe that reads the variable as an integer (its README gives the
/// range), and the search's range must lie within it.
pub(super) fn check_env_search(ctx: &Ctx, cells: &[Cell]) -> Result<(), PlanError> {
    let root = crate::support::repo::root();
    let mut seen = std::collections::BTreeSet::new();
    for c in cells {
        let Some(sp) = &c.search else { continue };
        let Searched::Env { name, .. } = &sp.param else {
            continue;
        };
        if !seen.insert(c.qemu.0.as_str()) {
            continue;
        }
        let path = [
            Seg::Key("search"),
            Seg::Key("qemu_env"),
            Seg::Key(name.as_str()),
        ];
        let recipe = c.qemu.recipe();
        if recipe == crate::matrix::recipes::SYSTEM {
            return Err(ctx.err(
                &path,
                format!("{name} is searched, but axes.qemu value system (the host's QEMU) reads no variables; search over a recipe that declares {name}, or exclude system"),
            ));
        }
        let declared = match crate::matrix::recipes::declared_env(&root, recipe) {
            None => vec![],
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(ctx.err(&path, e)),
        };
        if !declared.contains(name) {
            return Err(ctx.err(
                &path,
                format!(
                    "{name} is not read by axes.qemu value {} (emulators/{recipe}/README.md declares {}); a search over qemu_env needs every emulator of the cells to declare it",
                    c.qemu,
                    if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
                ),
            ));
        }
        let Some((lo, hi)) = crate::matrix::recipes::declared_range(&root, recipe, name) else {
            return Err(ctx.err(
                &path,
                format!("{name} is not an integer variable of {recipe} (emulators/{recipe}/README.md gives it no range a…b); a search bisects integers"),
            ));
        };
        if sp.from < lo || sp.to > hi {
            return Err(ctx.err(
                &path,
                format!(
                    "from {} to {} leaves the range {recipe} reads {name} in, {lo}…{hi} (emulators/{recipe}/README.md)",
                    sp.from, sp.to
                ),
            ));
        }
    }
    Ok(())
}

/// Every count, and the top of the search, at least 1 and within what settings.ports can
/// carry.
fn check_capacity(ctx: &Ctx, raw: &RawMatrix, s: &Settings) -> Result<(), PlanError> {
    let a = &raw.axes;
    let capacity = u64::from(s.ports.count()) * SOURCE_PORTS * CLIENTS;
    if let Some(r) = raw.search.as_ref().and_then(|sr| sr.connections.as_ref()) {
        if r.to > capacity {
            return Err(ctx.err(
                &[Seg::Key("search"), Seg::Key("connections"), Seg::Key("to")],
                format!("{} connections cannot be carried by settings.ports {}: at most {capacity}; widen settings.ports or lower search.connections.to", r.to, s.ports),
            ));
        }
    }
    for (i, &n) in a.connections.iter().enumerate() {
        let path = [Seg::Key("axes"), Seg::Key("connections"), Seg::Index(i)];
        if n == 0 {
            return Err(ctx.err(&path, "0 connections; must be >= 1"));
        }
        if n > capacity {
            return Err(ctx.err(
                &path,
                format!(
                    "{n} connections cannot be carried by settings.ports {}: {} ports x {SOURCE_PORTS} source ports x {CLIENTS} clients = {capacity}; widen settings.ports or lower the count",
                    s.ports,
                    s.ports.count()
                ),
            ));
        }
    }
    Ok(())
}

/// vCPUs at least 1, fixed memory at least the guest minimum.
fn check_sizes(ctx: &Ctx, a: &RawAxes) -> Result<(), PlanError> {
    for (i, &n) in a.vcpus.iter().enumerate() {
        if n == 0 {
            let path = [Seg::Key("axes"), Seg::Key("vcpus"), Seg::Index(i)];
            return Err(ctx.err(&path, "0 vCPUs; must be >= 1"));
        }
    }
    for (i, m) in a.memory.iter().enumerate() {
        if let Memory::Fixed(size) = m {
            if size.mib() < MIN_MEMORY_MIB {
                let path = [Seg::Key("axes"), Seg::Key("memory"), Seg::Index(i)];
                return Err(ctx.err(
                    &path,
                    format!("{size} is below the minimum guest memory {MIN_MEMORY_MIB}MiB"),
                ));
            }
        }
    }
    Ok(())
}

/// `vhost: [off]` must reach at least one cell, or the axis value is a mistake.
pub(super) fn check_vhost_off(ctx: &Ctx, raw: &RawMatrix, all: &[Cell]) -> Result<(), PlanError> {
    if raw.axes.vhost.contains(&Vhost::Off) && all.iter().all(|c| c.vhost.is_none()) {
        return Err(ctx.err(
            &[Seg::Key("axes"), Seg::Key("vhost")],
            format!(
                "vhost off requested, but axes.nic ({}) x axes.mode ({}) has no virtio-net cell in bridge or nat mode, the only cells where vhost applies",
                join(&raw.axes.nic),
                join(&raw.axes.mode)
            ),
        ));
    }
    Ok(())
}

/// Every `only` and `exclude` entry, in file order.
pub(super) fn check_filters(ctx: &Ctx, raw: &RawMatrix) -> Result<(), PlanError> {
    for (key, filters) in [("only", &raw.only), ("exclude", &raw.exclude)] {
        for (i, f) in filters.iter().enumerate() {
            check_filter(ctx, raw, key, i, f)?;
        }
    }
    Ok(())
}

/// The filters must leave a cell of the `total` the axes make.
pub(super) fn check_cells_left(
    ctx: &Ctx,
    raw: &RawMatrix,
    cells: &[Cell],
    total: usize,
) -> Result<(), PlanError> {
    if cells.is_empty() {
        let key = if raw.only.is_empty() {
            "exclude"
        } else {
            "only"
        };
        return Err(ctx.err(
            &[Seg::Key(key)],
            format!(
                "filters leave no cells: only ({}) and exclude ({}) remove all {total} cells of the axes",
                entries(raw.only.len()),
                entries(raw.exclude.len())
            ),
        ));
    }
    Ok(())
}

/// link-down sets the link of the client's tap; user and passt modes have no tap.
pub(super) fn check_link_down(ctx: &Ctx, cells: &[Cell]) -> Result<(), PlanError> {
    if let Some(c) = cells
        .iter()
        .find(|c| !c.mode.has_tap() && c.disconnect == DisconnectMethod::LinkDown)
    {
        let mode = c.mode;
        return Err(ctx.err(
            &[Seg::Key("axes"), Seg::Key("disconnect")],
            format!(
                "disconnect link-down is impossible with axes.mode {mode} ({}); \
                 add exclude: [{{mode: {mode}, disconnect: link-down}}]",
                no_tap(mode)
            ),
        ));
    }
    Ok(())
}

/// passt mode: the server's passt holds every connection, and Debian 12's passt holds at most
/// `passt::MAX_CONNECTIONS` (its flow table, with room for SSH). A count or a search over
/// connections beyond it could only end in preflight errors.
pub(super) fn check_passt_flows(ctx: &Ctx, cells: &[Cell]) -> Result<(), PlanError> {
    use crate::matrix::passt::{MAX_CONNECTIONS, MAX_FLOWS};
    let Some(c) = cells
        .iter()
        .find(|c| c.mode == NetMode::Passt && c.connections > MAX_CONNECTIONS)
    else {
        return Ok(());
    };
    let why = format!(
        "axes.mode passt: the server's passt holds every connection and at most {MAX_FLOWS} flows (Debian 12's passt: TCP_MAX_CONNS; Debian 13's: FLOW_MAX), {MAX_CONNECTIONS} of them for connections"
    );
    let path: &[Seg] = if c.searches_connections() {
        &[Seg::Key("search"), Seg::Key("connections"), Seg::Key("to")]
    } else {
        &[Seg::Key("axes"), Seg::Key("connections")]
    };
    let what = if c.searches_connections() {
        "the search's upper end"
    } else {
        "a count"
    };
    Err(ctx.err(
        path,
        format!(
            "{what} of {} is more than passt mode can hold ({why}); use at most {MAX_CONNECTIONS}, or exclude: [{{mode: passt, connections: {}}}] for a count",
            c.connections, c.connections
        ),
    ))
}

/// `settings.passt`: the host's own passt, or a recipe under passt/.
pub(super) fn check_passt_setting(ctx: &Ctx, s: &Settings) -> Result<(), PlanError> {
    let recipes = crate::matrix::recipes::passt_recipes(&crate::support::repo::root());
    if s.passt == crate::matrix::recipes::SYSTEM || recipes.contains(&s.passt) {
        return Ok(());
    }
    Err(ctx.err(
        &[Seg::Key("settings"), Seg::Key("passt")],
        format!(
            "unknown passt {:?} (no passt/{}/recipe.env); allowed: system, {}",
            s.passt,
            s.passt,
            recipes.join(", ")
        ),
    ))
}

/// Why a mode without a tap has none, for the errors that need one.
fn no_tap(mode: NetMode) -> &'static str {
    match mode {
        NetMode::User => "user-mode networking has no tap to set down",
        _ => "passt mode's NIC is a stream socket to passt, not a tap",
    }
}

/// A recipe that patches QEMU's tap backend (net/tap.c) models something inside the tap: in a
/// mode without a tap its patch never runs, and the cell would measure the plain build under
/// the recipe's name.
pub(super) fn check_tap_recipes(ctx: &Ctx, cells: &[Cell]) -> Result<(), PlanError> {
    let root = crate::support::repo::root();
    for c in cells.iter().filter(|c| !c.mode.has_tap()) {
        let recipe = c.qemu.recipe();
        if crate::matrix::recipes::patches_tap(&root, recipe) {
            let (mode, q) = (c.mode, &c.qemu);
            return Err(ctx.err(
                &[Seg::Key("axes"), Seg::Key("qemu")],
                format!(
                    "{q} patches QEMU's tap backend (net/tap.c, emulators/{recipe}/patches/), which axes.mode {mode} never uses ({}); \
                     add exclude: [{{mode: {mode}, qemu: {q}}}]",
                    no_tap(mode)
                ),
            ));
        }
    }
    Ok(())
}

/// A filter must constrain something, and every value it names must be on its axis:
/// a value the axes never produce is almost always a typo that silently matches nothing.
fn check_filter(
    ctx: &Ctx,
    raw: &RawMatrix,
    key: &'static str,
    i: usize,
    f: &RawFilter,
) -> Result<(), PlanError> {
    fn on_axis<T: PartialEq + fmt::Display>(
        ctx: &Ctx,
        path: [Seg; 3],
        given: &Option<OneOrMany<T>>,
        axis: &[T],
    ) -> Result<(), PlanError> {
        let Some(OneOrMany(values)) = given else {
            return Ok(());
        };
        if values.is_empty() {
            return Err(ctx.err(&path, "empty list; give at least one value"));
        }
        for v in values {
            if !axis.contains(v) {
                let Seg::Key(name) = path[2] else {
                    unreachable!("filter paths end in the axis name")
                };
                return Err(ctx.err(
                    &path,
                    format!(
                        "{v} is not on axes.{name} ({}); the filter would match nothing",
                        join(axis)
                    ),
                ));
            }
        }
        Ok(())
    }
    let p = |axis| [Seg::Key(key), Seg::Index(i), Seg::Key(axis)];
    let a = &raw.axes;
    on_axis(ctx, p("nic"), &f.nic, &a.nic)?;
    on_axis(ctx, p("mode"), &f.mode, &a.mode)?;
    on_axis(ctx, p("vhost"), &f.vhost, &a.vhost)?;
    on_axis(ctx, p("disconnect"), &f.disconnect, &a.disconnect)?;
    on_axis(ctx, p("scope"), &f.scope, &a.scope)?;
    on_axis(ctx, p("qemu"), &f.qemu, &a.qemu)?;
    on_axis(ctx, p("traffic"), &f.traffic, &a.traffic)?;
    on_axis(ctx, p("connections"), &f.connections, &a.connections)?;
    on_axis(ctx, p("vcpus"), &f.vcpus, &a.vcpus)?;
    on_axis(ctx, p("memory"), &f.memory, &a.memory)?;
    let empty = f.nic.is_none()
        && f.mode.is_none()
        && f.vhost.is_none()
        && f.disconnect.is_none()
        && f.scope.is_none()
        && f.qemu.is_none()
        && f.traffic.is_none()
        && f.connections.is_none()
        && f.vcpus.is_none()
        && f.memory.is_none();
    if empty {
        return Err(ctx.err(
            &[Seg::Key(key), Seg::Index(i)],
            "empty filter entry; give at least one of: nic, mode, vhost, disconnect, scope, qemu, traffic, connections, vcpus, memory",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::matrix::plan::testing::err;

    #[test]
    fn combination_errors_name_both_keys() {
        let cases: &[(&str, &[&str])] = &[
            (
                "axes: {nic: [e1000], mode: [bridge], vhost: [off], connections: [10]}\n",
                &["axes.vhost", "axes.nic", "axes.mode"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10]}\nsettings: {hang_gap: 400ms}\n",
                &["settings.hang_gap", "heartbeat period"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10]}\nsettings: {tcg_connections: 0}\n",
                &["settings.tcg_connections", "must be >= 1"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10], memory: [128MiB]}\n",
                &["axes.memory[0]", "128MiB", "256MiB"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [200000]}\nsettings: {ports: 20000-20000}\n",
                &["axes.connections[0]", "settings.ports", "193536"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10]}\nonly: [{nic: e1000e}]\n",
                &["only[0].nic", "e1000e", "axes.nic"],
            ),
            (
                "axes: {nic: [e1000, e1000], mode: [bridge], connections: [10]}\n",
                &["axes.nic[1]", "twice"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge, user], disconnect: [link-down], connections: [10]}\n",
                &["axes.disconnect", "link-down", "axes.mode user", "exclude"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge, passt], disconnect: [fin, link-down], connections: [10]}\n",
                &["axes.disconnect", "link-down", "axes.mode passt", "a stream socket to passt", "exclude: [{mode: passt, disconnect: link-down}]"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge, passt], qemu: [plain, vmnet-flow-control/b32], connections: [10]}\nsettings: {qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}}}\n",
                &["axes.qemu", "vmnet-flow-control/b32 patches QEMU's tap backend (net/tap.c", "axes.mode passt", "exclude: [{mode: passt, qemu: vmnet-flow-control/b32}]"],
            ),
            (
                "axes: {nic: [virtio-net], mode: [passt], connections: [10]}\nsettings: {passt: sid}\n",
                &["settings.passt", "unknown passt \"sid\"", "no passt/sid/recipe.env", "allowed: system, trixie"],
            ),
            (
                "axes: {nic: [virtio-net], mode: [bridge, passt], connections: [1000, 1000000]}\n",
                &["axes.connections", "a count of 1000000", "at most 130971", "131071 flows", "exclude: [{mode: passt, connections: 1000000}]"],
            ),
            (
                "axes: {nic: [virtio-net], mode: [passt]}\nsearch: {connections: {from: 1000, to: 1000000}}\n",
                &["search.connections.to", "the search's upper end of 1000000", "at most 130971"],
            ),
            (
                "axes: {nic: [e1000], mode: [user], qemu: [vmnet-flow-control/b32], connections: [10]}\nsettings: {qemu_env: {vmnet-flow-control/b32: {NICSTORM_VMNET_BURST: 32}}}\n",
                &["axes.qemu", "net/tap.c", "axes.mode user", "user-mode networking has no tap"],
            ),
        ];
        for (text, needles) in cases {
            let e = err(text);
            assert!(e.starts_with("matrix/t.yaml:"), "{e}");
            for n in *needles {
                assert!(e.contains(n), "{e:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn new_keys_fail_with_located_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [system, vmnet], connections: [10]}\n",
                &["axes.qemu[1]", "unknown emulator recipe \"vmnet\"", "no emulators/vmnet/", "vmnet-flow-control"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [plain/fast], connections: [10]}\n",
                &["axes.qemu[0]", "plain/fast is a variant", "settings.qemu_env"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [Plain], connections: [10]}\n",
                &["axes.qemu[0]", "bad emulator \"Plain\""],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10]}\nsettings: {qemu_env: {plain: {A: 1}}}\n",
                &["settings.qemu_env.plain", "not on axes.qemu"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], traffic: [bulk], connections: [10]}\n",
                &["axes.traffic[0]", "unknown traffic \"bulk\"", "ssh-stream, bulk-in, bulk-out"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [10]}\nsearch: {connections: {from: 2000, to: 100000}}\n",
                &["axes.connections", "search.connections"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge]}\nsearch: {connections: {from: 2000, to: 1000}}\n",
                &["search.connections", "to (1000) is below from (2000)"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge]}\nsearch: {connections: {from: 2000, to: 100000, resolution: 0.1%}}\n",
                &["search.connections.resolution", "between 1% and 100%"],
            ),
            // Searches over a variable of QEMU's environment.
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BURST", "missing required key \"ok\""],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: up}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BURST.ok", "unknown variant `up`", "above", "below"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above}}}\n",
                &["axes.connections", "empty list", "a search over qemu_env runs at each"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 4096, to: 16, ok: above}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BURST", "to (16) is below from (4096)"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BURST", "axes.qemu value system", "reads no variables"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_MODE: {from: 1, to: 4, ok: above}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_MODE", "not an integer variable of vmnet-flow-control", "no range"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 2000000, ok: above}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BURST", "from 16 to 2000000", "1…1000000"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BOGUS: {from: 16, to: 4096, ok: above}}}\n",
                &["search.qemu_env.NICSTORM_VMNET_BOGUS", "not read by axes.qemu value vmnet-flow-control", "NICSTORM_VMNET_BURST, NICSTORM_VMNET_MODE, NICSTORM_VMNET_PPMS"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above}, NICSTORM_VMNET_PPMS: {from: 1, to: 16, ok: above}}}\n",
                &["search.qemu_env", "2 variables", "a search varies one"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control]}\nsearch: {connections: {from: 2000, to: 3000}, qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above}}}\n",
                &["search", "given together", "varies one thing"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control], connections: [3000]}\nsearch: {}\n",
                &["search", "searches nothing"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge], qemu: [vmnet-flow-control/p], connections: [3000]}\nsearch: {qemu_env: {NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above}}}\nsettings: {qemu_env: {vmnet-flow-control/p: {NICSTORM_VMNET_BURST: 64}}}\n",
                &["settings.qemu_env.vmnet-flow-control/p.NICSTORM_VMNET_BURST", "searched by search.qemu_env.NICSTORM_VMNET_BURST", "remove one"],
            ),
            (
                "axes: {nic: [e1000], mode: [bridge]}\n",
                &["axes.connections", "empty list"],
            ),
        ];
        for (text, needles) in cases {
            let e = err(text);
            assert!(e.starts_with("matrix/t.yaml:"), "{e}");
            for n in *needles {
                assert!(e.contains(n), "{e:?} lacks {n:?}");
            }
        }
    }
}
