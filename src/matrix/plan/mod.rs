//! Checked plan: a matrix file validated, its axes expanded into cells with stable ids.
//!
//! Every check that can be made before anything boots happens here, and each failure
//! names the file, line and column, the key path, the bad value and what is allowed.
//! This file holds the plan's types and the order of the steps; each step is a file:
//! settings.rs (checked settings), check.rs (axes, filters and their combinations),
//! expand.rs (cartesian product and filters), id.rs (cell ids), error.rs (located errors),
//! render.rs (`nicstorm plan`).

mod check;
mod error;
mod expand;
mod id;
mod render;
mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use crate::matrix::config::Memory;
use crate::matrix::config::RawMatrix;
pub use crate::matrix::config::{
    Accel, Capture, DisconnectMethod, EmulatorName, Frames, LabStart, NetMode, NicModel, PortRange,
    RunOrder, Scope, Traffic, Vhost,
};
use crate::matrix::search::{SearchSpec, Searched};
use error::Ctx;
pub use error::PlanError;
pub use render::{plan_json, render_plan};
pub use settings::{CaptureSettings, Settings};

/// Cadence of the guest heartbeat on ttyS1 (docs/ARCHITECTURE.md "Heartbeat").
pub(crate) const HEARTBEAT_PERIOD: Duration = Duration::from_millis(250);

/// Client VMs per lab; the server is the fourth.
pub(crate) const CLIENTS: u64 = 3;

/// Source ports per client address: `ip_local_port_range` 1024-65535, as in the seed.
pub(crate) const SOURCE_PORTS: u64 = 65535 - 1024 + 1;

/// Smallest fixed server memory accepted; below it a Debian guest does not boot reliably.
pub(crate) const MIN_MEMORY_MIB: u64 = 256;

/// A checked matrix.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The file stem; names results/<name>/.
    pub name: String,
    pub(crate) path: PathBuf,
    pub(crate) description: Option<String>,
    pub(crate) repetitions: u32,
    pub settings: Settings,
    pub cells: Vec<Cell>,
}

/// One point of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// 12 hex digits of sha256 over the resolved values (see [`Cell::canonical`]).
    pub id: String,
    /// 1-based position in the plan.
    pub(crate) index: usize,
    pub nic: NicModel,
    pub mode: NetMode,
    /// None where vhost does not apply (not virtio-net, or user mode).
    pub vhost: Option<Vhost>,
    pub(crate) disconnect: DisconnectMethod,
    pub(crate) scope: Scope,
    pub(crate) qemu: EmulatorName,
    /// QEMU's environment for this cell (settings.qemu_env of its `qemu` value; of a sweep,
    /// this cell's point).
    pub(crate) qemu_env: Vec<(String, String)>,
    /// The variables of `qemu_env` the matrix sweeps (their values name the cell's point).
    pub(crate) swept: Vec<String>,
    pub(crate) traffic: Traffic,
    /// Target at the server under KVM (a searched cell: the search's upper end; each step
    /// runs [`Cell::at`] its own count).
    pub connections: u64,
    pub(crate) vcpus: u32,
    pub(crate) memory: Memory,
    /// The breaking-point search this cell asks for, if any.
    pub(crate) search: Option<SearchSpec>,
}

/// A QEMU environment variable's name as labels show it: without the recipe's prefix.
pub(crate) fn short_env_name(name: &str) -> &str {
    name.strip_prefix("NICSTORM_VMNET_")
        .or_else(|| name.strip_prefix("NICSTORM_"))
        .unwrap_or(name)
}

/// A cell's sizes under one accelerator, resolved once ([`Cell::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Connections to open at the server.
    pub(crate) target: u64,
    pub(crate) vcpus: u32,
    pub(crate) server_mib: u64,
    pub(crate) client_mib: u64,
    /// The clients' pace (`rate`, or `tcg_rate` under TCG).
    pub(crate) rate: crate::matrix::config::Rate,
}
impl Cell {
    /// The cell's point of a sweep over QEMU's environment, as `[BURST=16,PPMS=5]` (the
    /// variables' names without a leading `NICSTORM_VMNET_` or `NICSTORM_`); empty when the
    /// matrix sweeps none.
    pub(crate) fn sweep_point(&self) -> String {
        if self.swept.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .qemu_env
            .iter()
            .filter(|(k, _)| self.swept.contains(k))
            .map(|(k, v)| format!("{}={v}", short_env_name(k)))
            .collect();
        format!("[{}]", parts.join(","))
    }

    /// The same cell at one step of its search: same id, the searched value `value` (the
    /// connection count, or the searched variable of QEMU's environment, which then joins
    /// the cell's point as a swept one does).
    pub(crate) fn at(&self, value: u64) -> Cell {
        match self.search.as_ref().map(|sp| &sp.param) {
            Some(Searched::Env { name, .. }) => {
                let mut qemu_env = self.qemu_env.clone();
                qemu_env.retain(|(k, _)| k != name);
                qemu_env.push((name.clone(), value.to_string()));
                qemu_env.sort();
                let mut swept = self.swept.clone();
                if !swept.contains(name) {
                    swept.push(name.clone());
                    swept.sort();
                }
                Cell {
                    qemu_env,
                    swept,
                    ..self.clone()
                }
            }
            _ => Cell {
                connections: value,
                ..self.clone()
            },
        }
    }

    /// Whether the cell's search varies the connection count (its count is then the
    /// search's, not an axis value).
    pub(crate) fn searches_connections(&self) -> bool {
        self.search
            .as_ref()
            .is_some_and(|sp| sp.param == Searched::Connections)
    }

    /// What the cell runs as under `accel`: target, vCPUs, memory.
    pub(crate) fn resolve(&self, accel: Accel, s: &Settings) -> Sizes {
        let target = self.target(accel, s);
        let (server_mib, client_mib) = self.memory_mib(target);
        Sizes {
            target,
            vcpus: self.vcpus_for(accel, s),
            server_mib,
            client_mib,
            rate: match accel {
                Accel::Kvm => s.rate,
                Accel::Tcg => s.tcg_rate.unwrap_or(s.rate),
            },
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
    pub(crate) fn vcpus_for(&self, accel: Accel, s: &Settings) -> u32 {
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
    pub(crate) fn memory_mib(&self, target: u64) -> (u64, u64) {
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
    pub(crate) fn shard_key(&self) -> String {
        self.id.clone()
    }

    /// "on", "off" or "n/a", as in plans and CSV rows.
    pub(crate) fn vhost_text(&self) -> &'static str {
        self.vhost.map_or("n/a", |v| v.as_str())
    }

    /// Short human name, e.g. "vmxnet3/bridge/fin/one/1000000"; virtio-net cells
    /// also carry their backend ("virtio-net/nat/vhost-off/fin/one/1000000").
    pub fn label(&self) -> String {
        let vhost = self
            .vhost
            .map(|v| format!("/vhost-{v}"))
            .unwrap_or_default();
        let qemu = if self.qemu.is_system() {
            String::new()
        } else {
            format!("/qemu-{}{}", self.qemu, self.sweep_point())
        };
        let traffic = if self.traffic == Traffic::None {
            String::new()
        } else {
            format!("/{}", self.traffic)
        };
        let count = match self.search.as_ref().map(|sp| (sp, &sp.param)) {
            Some((sp, Searched::Connections)) => format!("search {}-{}", sp.from, sp.to),
            Some((sp, p)) => format!(
                "{}/search {} {}-{} ok {}",
                self.connections,
                p.short_name(),
                sp.from,
                sp.to,
                p.ok_side().as_str()
            ),
            None => self.connections.to_string(),
        };
        format!(
            "{}/{}{vhost}{qemu}{traffic}/{}/{}/{count}",
            self.nic, self.mode, self.disconnect, self.scope
        )
    }
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
pub(crate) fn parse_plan(text: &str, path: &Path) -> Result<Plan, PlanError> {
    let ctx = Ctx {
        file: path.display().to_string(),
        text,
    };
    let raw: RawMatrix = serde_yaml_ng::from_str(text).map_err(|e| ctx.yaml_err(e))?;
    let settings = settings::check_settings(&ctx, &raw.settings)?;
    check::check_axes(&ctx, &raw, &settings)?;
    check::check_passt_setting(&ctx, &settings)?;
    settings::check_qemu_env(&ctx, &raw.settings.qemu_env)?;

    let all = expand::expand(&raw, &settings);
    check::check_vhost_off(&ctx, &raw, &all)?;
    check::check_filters(&ctx, &raw)?;
    let total = all.len();
    let mut cells = expand::filter(&raw, all);
    check::check_cells_left(&ctx, &raw, &cells, total)?;
    check::check_link_down(&ctx, &cells)?;
    check::check_passt_flows(&ctx, &cells)?;
    check::check_env_search(&ctx, &cells)?;
    check::check_tap_recipes(&ctx, &cells)?;
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

/// Matrix text to a plan or its error message, for the tests of every step.
#[cfg(test)]
mod testing {
    use std::path::Path;

    use super::{parse_plan, Plan};

    pub(super) fn plan(text: &str) -> Plan {
        parse_plan(text, Path::new("matrix/t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) fn err(text: &str) -> String {
        match parse_plan(text, Path::new("matrix/t.yaml")) {
            Ok(p) => panic!("accepted; {} cells", p.cells.len()),
            Err(e) => e.to_string(),
        }
    }

    pub(super) const BASE: &str = "axes:\n  nic: [virtio-net, vmxnet3, e1000]\n  mode: [bridge, nat]\n  connections: [1000000]\n";
}

#[cfg(test)]
mod tests {
    use super::testing::plan;
    use super::*;

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

    /// A search over a variable of QEMU's environment: one cell per connection count, the
    /// search in its id and label, each step the cell with the variable set, as a sweep's
    /// point.
    #[test]
    fn search_over_qemu_env_cells() {
        let text = "axes:\n  nic: [virtio-net, vmxnet3]\n  mode: [bridge]\n  qemu: [vmnet-flow-control/p]\n  connections: [3000]\nsearch:\n  qemu_env:\n    NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above, resolution: 25%, max_steps: 8}\nsettings:\n  qemu_env:\n    vmnet-flow-control/p: {NICSTORM_VMNET_PPMS: 4, NICSTORM_VMNET_MODE: [disable, retry]}\n";
        let p = plan(text);
        assert_eq!(p.cells.len(), 4, "2 NICs x 2 modes of the sweep");
        let c = &p.cells[0];
        let sp = c.search.as_ref().unwrap();
        assert_eq!(
            (
                sp.from,
                sp.to,
                sp.resolution,
                sp.max_steps,
                sp.param.column()
            ),
            (
                16,
                4096,
                0.25,
                8,
                "qemu_env.NICSTORM_VMNET_BURST:ok_above".to_owned()
            )
        );
        assert!(!c.searches_connections());
        assert_eq!(c.connections, 3000);
        assert_eq!(
            c.label(),
            "virtio-net/bridge/vhost-on/qemu-vmnet-flow-control/p[MODE=disable]/fin/one/3000/search BURST 16-4096 ok above"
        );
        assert_eq!(c.target(Accel::Tcg, &p.settings), 3000);
        let step = c.at(256);
        assert_eq!((step.id.as_str(), step.connections), (c.id.as_str(), 3000));
        assert_eq!(
            step.qemu_env,
            [
                ("NICSTORM_VMNET_BURST".to_owned(), "256".to_owned()),
                ("NICSTORM_VMNET_MODE".to_owned(), "disable".to_owned()),
                ("NICSTORM_VMNET_PPMS".to_owned(), "4".to_owned()),
            ]
        );
        assert_eq!(step.sweep_point(), "[BURST=256,MODE=disable]");
        // The search is the cell's identity; another range is another cell, and a cell without
        // the search is another cell again.
        let other = plan(&text.replace("to: 4096", "to: 2048"));
        assert_ne!(other.cells[0].id, c.id);
        let plain = plan(&text.replace(
            "search:\n  qemu_env:\n    NICSTORM_VMNET_BURST: {from: 16, to: 4096, ok: above, resolution: 25%, max_steps: 8}\n",
            "",
        ));
        assert!(plain
            .cells
            .iter()
            .all(|p| p.id != c.id && p.search.is_none()));
    }
}
