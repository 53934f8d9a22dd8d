//! Checked plan: a matrix file validated, its axes expanded into cells with stable ids.
//!
//! Every check that can be made before anything boots happens here, and each failure
//! names the file, line and column, the key path, the bad value and what is allowed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::{self, locate, path_text, OneOrMany, RawFilter, RawMatrix, Seg};
pub use crate::config::{
    ByteSize, DisconnectMethod, EmulatorName, Memory, NetMode, NicModel, PortRange, Scope, Traffic,
    Vhost,
};
use crate::search::SearchSpec;

/// Cadence of the guest heartbeat on ttyS1 (docs/ARCHITECTURE.md "Heartbeat").
pub const HEARTBEAT_PERIOD: Duration = Duration::from_millis(250);

/// Client VMs per lab; the server is the fourth.
pub const CLIENTS: u64 = 3;

/// Source ports per client address: `ip_local_port_range` 1024-65535, as in the seed.
pub const SOURCE_PORTS: u64 = 65535 - 1024 + 1;

/// Smallest fixed server memory accepted; below it a Debian guest does not boot reliably.
pub const MIN_MEMORY_MIB: u64 = 256;

/// Accelerator the cell actually runs under (decided by the probe boot in accel.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Settings fixed for every cell, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub tcg_connections: u64,
    pub tcg_vcpus: u32,
    pub ports: PortRange,
    pub concurrency: u32,
    /// Connects per second per client; 0 = unlimited.
    pub rate: u32,
    pub boot_timeout: Duration,
    pub ramp_timeout: Duration,
    pub ramp_stall: Duration,
    pub hold: Duration,
    pub observe: Duration,
    pub probe_interval: Duration,
    pub hang_gap: Duration,
    pub ssh_slow_factor: f64,
    pub ssh_slow_min: Duration,
    pub host_sysctls: BTreeMap<String, String>,
    pub guest_sysctls: BTreeMap<String, String>,
    /// QEMU's environment per `qemu` axis value.
    pub qemu_env: BTreeMap<String, Vec<(String, String)>>,
}

/// A checked matrix.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file stem; names results/<name>/.
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    pub repetitions: u32,
    pub settings: Settings,
    pub cells: Vec<Cell>,
}

/// One point of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// 12 hex digits of sha256 over the resolved values (see [`Cell::canonical`]).
    pub id: String,
    /// 1-based position in the plan.
    pub index: usize,
    pub nic: NicModel,
    pub mode: NetMode,
    /// None where vhost does not apply (not virtio-net, or user mode).
    pub vhost: Option<Vhost>,
    pub disconnect: DisconnectMethod,
    pub scope: Scope,
    pub qemu: EmulatorName,
    pub traffic: Traffic,
    /// Target at the server under KVM (a searched cell: the search's upper end; each step
    /// runs [`Cell::at`] its own count).
    pub connections: u64,
    pub vcpus: u32,
    pub memory: Memory,
    /// The breaking-point search this cell asks for, if any.
    pub search: Option<SearchSpec>,
}

/// A cell's sizes under one accelerator, resolved once ([`Cell::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Connections to open at the server.
    pub target: u64,
    pub vcpus: u32,
    pub server_mib: u64,
    pub client_mib: u64,
}

impl Cell {
    /// The same cell at `connections` (a search step): same id, another count.
    pub fn at(&self, connections: u64) -> Cell {
        Cell {
            connections,
            ..self.clone()
        }
    }

    /// What the cell runs as under `accel`: target, vCPUs, memory.
    pub fn resolve(&self, accel: Accel, s: &Settings) -> Sizes {
        let target = self.target(accel, s);
        let (server_mib, client_mib) = self.memory_mib(target);
        Sizes {
            target,
            vcpus: self.vcpus_for(accel, s),
            server_mib,
            client_mib,
        }
    }

    /// Connections to open at the server under `accel`.
    pub fn target(&self, accel: Accel, s: &Settings) -> u64 {
        match accel {
            Accel::Kvm => self.connections,
            Accel::Tcg => self.connections.min(s.tcg_connections),
        }
    }

    /// vCPUs per VM under `accel`. Under TCG the cell's own count still caps it, so a
    /// 1-vCPU cell never grows.
    pub fn vcpus_for(&self, accel: Accel, s: &Settings) -> u32 {
        match accel {
            Accel::Kvm => self.vcpus,
            Accel::Tcg => self.vcpus.min(s.tcg_vcpus),
        }
    }

    /// (server, per-client) memory in MiB for a run opening `target` connections.
    ///
    /// Auto: a base plus 6 KiB per connection held (socket + buffers at the raised
    /// tcp_mem, with headroom over the ~4 KiB that preflight demands), rounded up to
    /// 256 MiB; each client holds a third of the connections.
    pub fn memory_mib(&self, target: u64) -> (u64, u64) {
        match self.memory {
            Memory::Fixed(size) => (size.mib(), size.mib()),
            Memory::Auto => {
                let sized = |base_mib: u64, conns: u64| {
                    (base_mib + (conns * 6).div_ceil(1024)).next_multiple_of(256)
                };
                (sized(768, target), sized(512, target.div_ceil(CLIENTS)))
            }
        }
    }

    /// What `--shard` splits the plan by (shard.rs): cells with one key run in one shard.
    /// For now the id, so the repetitions of a cell stay together.
    pub fn shard_key(&self) -> String {
        self.id.clone()
    }

    /// "on", "off" or "n/a", as in plans and CSV rows.
    pub fn vhost_text(&self) -> &'static str {
        self.vhost.map_or("n/a", |v| v.as_str())
    }

    /// Short human name, e.g. "vmxnet3/bridge/fin/one/1000000"; virtio-net cells
    /// also carry their backend ("virtio-net/nat/vhost-off/fin/one/1000000").
    pub fn label(&self) -> String {
        let vhost = self
            .vhost
            .map(|v| format!("/vhost-{v}"))
            .unwrap_or_default();
        let qemu = if self.qemu.0 == crate::emulator::SYSTEM {
            String::new()
        } else {
            format!("/qemu-{}", self.qemu)
        };
        let traffic = if self.traffic == Traffic::None {
            String::new()
        } else {
            format!("/{}", self.traffic)
        };
        let count = match &self.search {
            Some(sp) => format!("search {}-{}", sp.from, sp.to),
            None => self.connections.to_string(),
        };
        format!(
            "{}/{}{vhost}{qemu}{traffic}/{}/{}/{count}",
            self.nic, self.mode, self.disconnect, self.scope
        )
    }

    /// The text hashed into the id. Only resolved values enter it (memory in MiB, the
    /// port range as numbers), so reformatting or reordering the YAML keeps ids.
    /// Bump the leading version if the meaning of a field changes.
    fn canonical(&self, s: &Settings) -> String {
        let memory = match self.memory {
            Memory::Auto => "auto".to_owned(),
            Memory::Fixed(b) => format!("{}MiB", b.mib()),
        };
        // Guest sysctls change the guests under test; appended only when set, so the ids
        // of cells without them stay what they were.
        let guest_sysctls: String = s
            .guest_sysctls
            .iter()
            .map(|(k, v)| format!(";guest_sysctl.{k}={v}"))
            .collect();
        // The same for what was added later: only when not at the one value cells had before,
        // so every earlier id stays what it was.
        let mut later = String::new();
        if self.qemu.0 != crate::emulator::SYSTEM {
            later.push_str(&format!(";qemu={}", self.qemu));
            for (k, v) in s.qemu_env.get(&self.qemu.0).into_iter().flatten() {
                later.push_str(&format!(";qemu_env.{k}={v}"));
            }
        }
        if self.traffic != Traffic::None {
            later.push_str(&format!(";traffic={}", self.traffic));
        }
        // A searched cell is one cell whatever count a step runs: the search is its identity.
        let connections = match &self.search {
            Some(sp) => format!(
                "search:{}-{}:{}:{}",
                sp.from, sp.to, sp.resolution, sp.max_steps
            ),
            None => self.connections.to_string(),
        };
        format!(
            "nicstorm-cell-v1;nic={};mode={};vhost={};disconnect={};scope={};connections={connections};vcpus={};memory={memory};ports={};concurrency={};rate={}{guest_sysctls}{later}",
            self.nic,
            self.mode,
            self.vhost_text(),
            self.disconnect,
            self.scope,
            self.vcpus,
            s.ports,
            s.concurrency,
            s.rate
        )
    }
}

/// Why a matrix file cannot become a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{}: cannot read matrix file: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    /// Any syntax, type, value or combination error. `detail` starts with the key path.
    #[error("{file}{}: {detail}", fmt_location(location))]
    Invalid {
        file: String,
        /// 1-based line and column, when the YAML parser knows them.
        location: Option<(usize, usize)>,
        detail: String,
    },
}

fn fmt_location(location: &Option<(usize, usize)>) -> String {
    location.map_or(String::new(), |(l, c)| format!(":{l}:{c}"))
}

/// Reads, checks and expands a matrix file.
pub fn load_plan(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|err| PlanError::Read {
        path: path.to_owned(),
        err,
    })?;
    parse_plan(&text, path)
}

/// Checks and expands matrix text; `path` names the file in errors and the plan.
pub fn parse_plan(text: &str, path: &Path) -> Result<Plan, PlanError> {
    let ctx = Ctx {
        file: path.display().to_string(),
        text,
    };
    let raw: RawMatrix = serde_yaml_ng::from_str(text).map_err(|e| ctx.yaml_err(e))?;
    let settings = check_settings(&ctx, &raw.settings)?;
    check_axes(&ctx, &raw, &settings)?;

    let all = expand(&raw, &settings);
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

    for (key, filters) in [("only", &raw.only), ("exclude", &raw.exclude)] {
        for (i, f) in filters.iter().enumerate() {
            check_filter(&ctx, &raw, key, i, f)?;
        }
    }
    let total = all.len();
    let mut cells: Vec<Cell> = all
        .into_iter()
        .filter(|c| raw.only.is_empty() || raw.only.iter().any(|f| matches(f, c)))
        .filter(|c| !raw.exclude.iter().any(|f| matches(f, c)))
        .collect();
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
    // link-down sets the link of the client's tap; user-mode networking has no tap.
    if cells
        .iter()
        .any(|c| c.mode == NetMode::User && c.disconnect == DisconnectMethod::LinkDown)
    {
        return Err(ctx.err(
            &[Seg::Key("axes"), Seg::Key("disconnect")],
            "disconnect link-down is impossible with axes.mode user (user-mode networking has no tap to set down); \
             add exclude: [{mode: user, disconnect: link-down}]"
                .to_string(),
        ));
    }
    for (i, c) in cells.iter_mut().enumerate() {
        c.index = i + 1;
    }

    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Plan {
        name,
        path: path.to_owned(),
        description: raw.description.clone(),
        repetitions: raw.repetitions,
        settings,
        cells,
    })
}

/// The file being checked, for turning a key path into a located error.
struct Ctx<'a> {
    file: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &[Seg], msg: impl fmt::Display) -> PlanError {
        PlanError::Invalid {
            file: self.file.clone(),
            location: locate(self.text, path),
            detail: format!("{}: {msg}", path_text(path)),
        }
    }

    /// serde_yaml_ng already puts "key.path: message" first and the position last;
    /// move the position to the front so every error reads `file:line:col: key: ...`.
    fn yaml_err(&self, e: serde_yaml_ng::Error) -> PlanError {
        let location = e.location().map(|l| (l.line(), l.column()));
        let text = e.to_string();
        let detail = match location {
            Some((l, c)) => text
                .strip_suffix(&format!(" at line {l} column {c}"))
                .map(str::to_owned)
                .unwrap_or(text),
            None => text,
        };
        PlanError::Invalid {
            file: self.file.clone(),
            location,
            detail: reword_serde(&detail),
        }
    }
}

/// Rewords serde's derive messages into the wording of our own errors:
/// "unknown field `x`, expected one of `a`, `b`" -> "unknown key \"x\"; allowed: a, b".
fn reword_serde(detail: &str) -> String {
    let (prefix, msg) = match detail
        .find("unknown field `")
        .or_else(|| detail.find("missing field `"))
    {
        Some(at) => detail.split_at(at),
        None => return detail.to_owned(),
    };
    let ticked =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (key, allowed) = rest.split_once(", ").unwrap_or((rest, ""));
        let key = key.trim_matches('`');
        let allowed = ticked(allowed);
        let allowed = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        return format!("{prefix}unknown key {key:?}; allowed: {allowed}");
    }
    let key = msg.trim_start_matches("missing field ").trim_matches('`');
    format!("{prefix}missing required key {key:?}")
}

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

fn check_settings(ctx: &Ctx, raw: &config::RawSettings) -> Result<Settings, PlanError> {
    let key = |k| [Seg::Key("settings"), Seg::Key(k)];
    if raw.tcg_connections == 0 {
        return Err(ctx.err(&key("tcg_connections"), "0 connections; must be >= 1"));
    }
    if raw.tcg_vcpus == 0 {
        return Err(ctx.err(&key("tcg_vcpus"), "0 vCPUs; must be >= 1"));
    }
    if raw.concurrency == 0 {
        return Err(ctx.err(&key("concurrency"), "0; must be >= 1"));
    }
    let positive = [
        ("boot_timeout", raw.boot_timeout),
        ("ramp_timeout", raw.ramp_timeout),
        ("ramp_stall", raw.ramp_stall),
        ("hold", raw.hold),
        ("observe", raw.observe),
        ("probe_interval", raw.probe_interval),
    ];
    for (name, d) in positive {
        if d.0.is_zero() {
            return Err(ctx.err(&key(name), format!("{d}; must be > 0")));
        }
    }
    if raw.hang_gap.0 < 2 * HEARTBEAT_PERIOD {
        return Err(ctx.err(
            &key("hang_gap"),
            format!(
                "{}; must be at least 2 x the heartbeat period ({}ms), or every late heartbeat counts as a hang",
                raw.hang_gap,
                HEARTBEAT_PERIOD.as_millis()
            ),
        ));
    }
    if raw.hang_gap.0 >= raw.observe.0 {
        return Err(ctx.err(
            &key("hang_gap"),
            format!(
                "{} is not shorter than settings.observe ({}): a hang could never be seen",
                raw.hang_gap, raw.observe
            ),
        ));
    }
    if raw.probe_interval.0 >= raw.observe.0 {
        return Err(ctx.err(
            &key("probe_interval"),
            format!(
                "{} is not shorter than settings.observe ({}): no SSH probe would run",
                raw.probe_interval, raw.observe
            ),
        ));
    }
    if !(raw.ssh_slow_factor.is_finite() && raw.ssh_slow_factor >= 1.0) {
        return Err(ctx.err(
            &key("ssh_slow_factor"),
            format!("{}; must be a number >= 1.0", raw.ssh_slow_factor),
        ));
    }
    for (key, name, value) in raw
        .host_sysctls
        .iter()
        .map(|(n, v)| ("host_sysctls", n, v))
        .chain(
            raw.guest_sysctls
                .iter()
                .map(|(n, v)| ("guest_sysctls", n, v)),
        )
    {
        let path = [Seg::Key("settings"), Seg::Key(key), Seg::Key(name)];
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err(ctx.err(
                &path,
                format!("bad sysctl name {name:?}; expected dotted name like net.netfilter.nf_conntrack_max"),
            ));
        }
        if value.0.trim().is_empty() || value.0.contains('\n') {
            return Err(ctx.err(
                &path,
                format!("bad sysctl value {:?}; expected one line of text", value.0),
            ));
        }
    }
    Ok(Settings {
        tcg_connections: raw.tcg_connections,
        tcg_vcpus: raw.tcg_vcpus,
        ports: raw.ports,
        concurrency: raw.concurrency,
        rate: raw.rate,
        boot_timeout: raw.boot_timeout.0,
        ramp_timeout: raw.ramp_timeout.0,
        ramp_stall: raw.ramp_stall.0,
        hold: raw.hold.0,
        observe: raw.observe.0,
        probe_interval: raw.probe_interval.0,
        hang_gap: raw.hang_gap.0,
        ssh_slow_factor: raw.ssh_slow_factor,
        ssh_slow_min: raw.ssh_slow_min.0,
        host_sysctls: raw
            .host_sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        guest_sysctls: raw
            .guest_sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.0.trim().to_owned()))
            .collect(),
        qemu_env: raw
            .qemu_env
            .iter()
            .map(|(value, env)| {
                (
                    value.clone(),
                    env.iter()
                        .map(|(k, v)| (k.clone(), v.0.trim().to_owned()))
                        .collect(),
                )
            })
            .collect(),
    })
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

fn check_axes(ctx: &Ctx, raw: &RawMatrix, s: &Settings) -> Result<(), PlanError> {
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
    let recipes = crate::emulator::recipes(&crate::repo::root());
    let allowed = format!("system, {}", recipes.join(", "));
    check_list(ctx, "qemu", &a.qemu, &allowed)?;
    for (i, q) in a.qemu.iter().enumerate() {
        let path = [Seg::Key("axes"), Seg::Key("qemu"), Seg::Index(i)];
        let recipe = q.recipe();
        if recipe == crate::emulator::SYSTEM {
            if q.0 != crate::emulator::SYSTEM {
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
    match (&raw.search, a.connections.is_empty()) {
        (Some(_), false) => {
            return Err(ctx.err(
                &[Seg::Key("axes"), Seg::Key("connections")],
                "given together with search.connections; a searched matrix takes its counts from the search: remove one",
            ))
        }
        (Some(sr), true) => {
            let r = &sr.connections;
            let spec = SearchSpec {
                from: r.from,
                to: r.to,
                resolution: r.resolution.0,
                max_steps: r.max_steps,
            };
            if let Some(problem) = spec.problem() {
                return Err(ctx.err(&[Seg::Key("search"), Seg::Key("connections")], problem));
            }
        }
        (None, _) => check_list(ctx, "connections", &a.connections, "a count >= 1")?,
    }
    check_list(ctx, "vcpus", &a.vcpus, "a count >= 1")?;
    check_list(ctx, "memory", &a.memory, "auto, or a size like 6GiB")?;

    let capacity = u64::from(s.ports.count()) * SOURCE_PORTS * CLIENTS;
    if let Some(sr) = &raw.search {
        if sr.connections.to > capacity {
            return Err(ctx.err(
                &[Seg::Key("search"), Seg::Key("connections"), Seg::Key("to")],
                format!("{} connections cannot be carried by settings.ports {}: at most {capacity}; widen settings.ports or lower search.connections.to", sr.connections.to, s.ports),
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
        && (c.search.is_some() || has(&f.connections, &c.connections))
        && has(&f.vcpus, &c.vcpus)
        && has(&f.memory, &c.memory)
}

/// vhost-net exists only for virtio-net with a tap backend; user mode has no tap.
fn vhost_applies(nic: NicModel, mode: NetMode) -> bool {
    nic == NicModel::VirtioNet && matches!(mode, NetMode::Bridge | NetMode::Nat)
}

/// The cartesian product in axis-list order, nesting nic, mode, vhost, qemu, traffic,
/// disconnect, scope, connections, vcpus, memory. Cells where vhost does not apply appear
/// once; a searched matrix has one cell per combination of the other axes.
fn expand(raw: &RawMatrix, s: &Settings) -> Vec<Cell> {
    let a = &raw.axes;
    let search = raw.search.as_ref().map(|sr| SearchSpec {
        from: sr.connections.from,
        to: sr.connections.to,
        resolution: sr.connections.resolution.0,
        max_steps: sr.connections.max_steps,
    });
    let counts: Vec<u64> = match &search {
        Some(sp) => vec![sp.to],
        None => a.connections.clone(),
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
                for qemu in &a.qemu {
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
                                                traffic,
                                                connections,
                                                vcpus,
                                                memory,
                                                search: search.clone(),
                                            };
                                            let digest =
                                                Sha256::digest(cell.canonical(s).as_bytes());
                                            cell.id = hex::encode(&digest[..6]);
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
    let rate = if s.rate == 0 {
        "unlimited".to_owned()
    } else {
        format!("{}/s per client", s.rate)
    };
    out.push_str(&format!(
        "ports {} ({} ports), concurrency {}, rate {rate}; under tcg: <= {} connections, <= {} vCPU per VM\n",
        s.ports,
        s.ports.count(),
        s.concurrency,
        s.tcg_connections,
        s.tcg_vcpus
    ));
    if let Some(sp) = plan.cells.first().and_then(|c| c.search.as_ref()) {
        out.push_str(&format!(
            "breaking-point search per cell: the largest connection count that ends ok, from {} to {} (under tcg: to at most {}), bisected to {:.0}%, at most {} steps\n",
            sp.from,
            sp.to,
            s.tcg_connections,
            sp.resolution * 100.0,
            sp.max_steps
        ));
    }
    for (value, env) in &s.qemu_env {
        let list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
                c.qemu.to_string(),
                c.traffic.to_string(),
                c.disconnect.to_string(),
                c.scope.to_string(),
                match &c.search {
                    Some(sp) => format!("{}..{}", sp.from, sp.to),
                    None => c.connections.to_string(),
                },
                match &c.search {
                    Some(sp) => {
                        let t = sp.capped(s.tcg_connections);
                        format!("{}..{}", t.from, t.to)
                    }
                    None => c.target(Accel::Tcg, s).to_string(),
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

/// Columns separated by two spaces, padded to the widest entry; no trailing spaces.
pub(crate) fn aligned_table(header: &[String], rows: &[Vec<String>], right: &[bool]) -> String {
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

    fn plan(text: &str) -> Plan {
        parse_plan(text, Path::new("matrix/t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        match parse_plan(text, Path::new("matrix/t.yaml")) {
            Ok(p) => panic!("accepted; {} cells", p.cells.len()),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str = "axes:\n  nic: [virtio-net, vmxnet3, e1000]\n  mode: [bridge, nat]\n  connections: [1000000]\n";

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
    }

    #[test]
    fn ids_are_stable_across_formatting_and_change_with_values() {
        let a = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings:\n  ports: 20000-20019\n",
        );
        // Same values: block style, keys reordered, defaults spelled out, size in MiB, comments.
        let b = plan(
            "# reformatted\nsettings: {concurrency: 2000, ports: \"20000-20019\"}\naxes:\n  memory:\n    - 6144MiB\n  connections: [30000]\n  vcpus: [2]\n  mode:\n    - bridge\n  nic: [e1000, vmxnet3]\n",
        );
        let ids = |p: &Plan| {
            let mut v: Vec<(String, String)> =
                p.cells.iter().map(|c| (c.label(), c.id.clone())).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&a), ids(&b));
        assert!(a.cells.iter().all(|c| c.id.len() == 12
            && c.id
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())));

        let changes = [
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30001]\n  memory: [6GiB]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [auto]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\n  vcpus: [1]\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {ports: 20000-20009}\n",
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {rate: 100}\n",
        ];
        let first = &a.cells[0];
        for text in changes {
            let p = plan(text);
            assert_ne!(p.cells[0].id, first.id, "{text}");
            assert_eq!(p.cells[0].nic, first.nic);
        }
        // Guest sysctls change the guests: another cell.
        let tuned = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {guest_sysctls: {net.ipv4.tcp_max_orphans: 262144}}\n",
        );
        assert_ne!(tuned.cells[0].id, first.id);
        assert_eq!(
            tuned.settings.guest_sysctls["net.ipv4.tcp_max_orphans"],
            "262144"
        );
        // Settings that do not shape the load keep the id (a longer observe is the same cell).
        let same = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\n  connections: [30000]\n  memory: [6GiB]\nsettings: {observe: 10m}\n",
        );
        assert_eq!(same.cells[0].id, first.id);
    }

    #[test]
    fn targets_vcpus_and_memory() {
        let p = plan("axes:\n  nic: [vmxnet3]\n  mode: [bridge]\n  connections: [1000000, 3000]\n  vcpus: [4]\n  memory: [auto, 2GiB]\n");
        let s = &p.settings;
        let c = &p.cells[0];
        assert_eq!(c.target(Accel::Kvm, s), 1_000_000);
        assert_eq!(c.target(Accel::Tcg, s), 30_000);
        assert_eq!(c.vcpus_for(Accel::Kvm, s), 4);
        assert_eq!(c.vcpus_for(Accel::Tcg, s), 1);
        // 768 + ceil(6e6/1024)=5860 -> 6628 -> 6656; 512 + ceil(333334*6/1024)=1954 -> 2466 -> 2560
        assert_eq!(c.memory_mib(1_000_000), (6656, 2560));
        // 768 + 176 = 944 -> 1024; 512 + 59 = 571 -> 768
        assert_eq!(c.memory_mib(30_000), (1024, 768));
        assert_eq!(p.cells[1].memory_mib(30_000), (2048, 2048));
        assert_eq!(p.cells[3].target(Accel::Tcg, s), 3000);
        assert_eq!(Accel::Tcg.to_string(), "tcg");
        assert_eq!(Accel::Kvm.to_string(), "kvm");
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let p = plan(BASE);
        let s = &p.settings;
        assert_eq!(s.tcg_connections, 30_000);
        assert_eq!(s.ports.to_string(), "20000-20019");
        assert_eq!(s.boot_timeout, Duration::from_secs(600));
        assert_eq!(s.ramp_timeout, Duration::from_secs(1800));
        assert_eq!(s.hang_gap, Duration::from_secs(5));
        assert_eq!(s.ssh_slow_factor, 5.0);
        assert!(s.host_sysctls.is_empty());
        assert_eq!(p.repetitions, 1);
        assert_eq!(p.name, "t");
        let p = plan(&format!(
            "{BASE}settings:\n  hold: 500ms\n  host_sysctls: {{net.netfilter.nf_conntrack_max: 2000000, net.core.somaxconn: \"4096\"}}\n"
        ));
        assert_eq!(p.settings.hold, Duration::from_millis(500));
        assert_eq!(
            p.settings.host_sysctls["net.netfilter.nf_conntrack_max"],
            "2000000"
        );
        assert_eq!(p.settings.host_sysctls["net.core.somaxconn"], "4096");
    }

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
            p.settings.qemu_env["vmnet-flow-control/burst64"],
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
    fn search_cells() {
        let p = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\nsearch:\n  connections: {from: 2000, to: 1000000, resolution: 10%}\n",
        );
        assert_eq!(p.cells.len(), 2);
        let c = &p.cells[0];
        let sp = c.search.as_ref().unwrap();
        assert_eq!(
            (sp.from, sp.to, sp.resolution, sp.max_steps),
            (2000, 1_000_000, 0.1, 12)
        );
        assert_eq!(c.label(), "vmxnet3/bridge/fin/one/search 2000-1000000");
        // A step is the same cell (same id, same shard) at another count.
        let step = c.at(50_000);
        assert_eq!(
            (step.id.as_str(), step.connections),
            (c.id.as_str(), 50_000)
        );
        assert_eq!(step.resolve(Accel::Kvm, &p.settings).target, 50_000);
        assert_eq!(step.resolve(Accel::Tcg, &p.settings).target, 30_000);
        let narrower = plan(
            "axes:\n  nic: [vmxnet3, e1000]\n  mode: [bridge]\nsearch:\n  connections: {from: 2000, to: 1000000, resolution: 5%}\n",
        );
        assert_ne!(narrower.cells[0].id, c.id, "another search is another cell");
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

    #[test]
    fn errors_point_at_the_offending_line() {
        let text = "axes:\n  nic: [vmxnet3]\n  mode: [bridge]\n  connections:\n    - 10\n    - 0\n";
        assert_eq!(
            err(text),
            "matrix/t.yaml:6:7: axes.connections[1]: 0 connections; must be >= 1"
        );
    }

    #[test]
    fn render_plan_table() {
        let p = plan(&format!(
            "description: \"snapshot\"\n{BASE}  vhost: [on, off]\n"
        ));
        insta::assert_snapshot!(render_plan(&p));
    }
}
