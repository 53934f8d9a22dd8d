//! Raw matrix YAML: serde types mirroring the file, and the domain value types parsed at the edge.
//!
//! Only plan/ consumes the `Raw*` types; everything downstream sees the checked
//! [`crate::matrix::plan::Plan`]. Range and cross-field checks live in plan/, where the
//! source position of any key can be looked up (see [`locate`]).
//!
//! The value types are in values.rs, the closed sets of names in enums.rs, and the lookup
//! of a key's position in locate.rs.

// First: values.rs defines `deserialize_via_from_str!`, which enums.rs uses.
#[macro_use]
mod values;

mod enums;
mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

pub use enums::{
    Accel, Capture, DisconnectMethod, Frames, LabStart, NetMode, NicModel, RunOrder, Scope,
    Traffic, Vhost,
};
pub(crate) use locate::{locate, path_text, Seg};
pub use values::EmulatorName;
pub use values::PortRange;
pub(crate) use values::{ByteSize, Fraction, HumanDuration, Memory, Rate, SysctlValue};

/// A filter value: one value or a list of values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneOrMany<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(OneOrMany(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A whole matrix file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatrix {
    /// Free text shown by `nicstorm plan`. Default: none.
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// A breaking-point search for every cell instead of fixed counts (then `axes.connections`
    /// is not given). Default: none.
    #[serde(default)]
    pub(crate) search: Option<RawSearch>,
    /// How many times each cell runs (>= 1). Default: 1.
    #[serde(default = "default_repetitions")]
    pub(crate) repetitions: u32,
    /// The axes whose cartesian product makes the cells. Required.
    pub(crate) axes: RawAxes,
    /// Keep only cells matching ANY entry. Default: keep all.
    #[serde(default)]
    pub(crate) only: Vec<RawFilter>,
    /// Drop cells matching any entry. Default: drop none.
    #[serde(default)]
    pub(crate) exclude: Vec<RawFilter>,
    /// Fixed for every cell.
    #[serde(default)]
    pub(crate) settings: RawSettings,
}

fn default_repetitions() -> u32 {
    1
}

/// `search:` -- what is searched for: the connection count, or one variable of QEMU's
/// environment (exactly one of the two).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSearch {
    /// The largest connection count that still ends `ok`. Default: none.
    #[serde(default)]
    pub(crate) connections: Option<RawSearchRange>,
    /// The value of one variable of an emulator recipe's environment at which the cell stops
    /// ending `ok` (the connection count fixed by `axes.connections`). Default: none.
    #[serde(default)]
    pub(crate) qemu_env: BTreeMap<String, RawEnvSearch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSearchRange {
    /// Smallest count tried (a failure there ends the search). Required.
    pub(crate) from: u64,
    /// Largest count tried (ok there ends it: none failed up to `to`). Required.
    pub(crate) to: u64,
    /// The bracket is narrow enough when first failing / last ok <= 1 + resolution.
    /// Default: 10%.
    #[serde(default = "default_resolution")]
    pub(crate) resolution: Fraction,
    /// Steps at most per cell and repetition. Default: 12.
    #[serde(default = "default_max_steps")]
    pub(crate) max_steps: u32,
}

/// `search.qemu_env.NAME`: the range of one variable and the side it is ok on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvSearch {
    /// Smallest value tried. Required.
    pub(crate) from: u64,
    /// Largest value tried. Required.
    pub(crate) to: u64,
    /// `above` when large values are the safe side (a bucket depth, a refill rate: the
    /// search runs `to` first), `below` when small ones are (it runs `from` first). Required.
    pub(crate) ok: OkSide,
    /// As for connections. Default: 10%.
    #[serde(default = "default_resolution")]
    pub(crate) resolution: Fraction,
    /// As for connections. Default: 12.
    #[serde(default = "default_max_steps")]
    pub(crate) max_steps: u32,
}

/// `above` or `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OkSide {
    Above,
    Below,
}

impl RawSearch {
    /// The search as the plan runs it; None unless exactly one thing is searched (the
    /// check says what is wrong before anything runs).
    pub(crate) fn spec(&self) -> Option<crate::matrix::search::SearchSpec> {
        use crate::matrix::search::{OkSide as Side, SearchSpec, Searched};
        match (&self.connections, self.qemu_env.len()) {
            (Some(r), 0) => Some(SearchSpec {
                param: Searched::Connections,
                from: r.from,
                to: r.to,
                resolution: r.resolution.0,
                max_steps: r.max_steps,
            }),
            (None, 1) => {
                let (name, e) = self.qemu_env.iter().next()?;
                Some(SearchSpec {
                    param: Searched::Env {
                        name: name.clone(),
                        ok: match e.ok {
                            OkSide::Above => Side::Above,
                            OkSide::Below => Side::Below,
                        },
                    },
                    from: e.from,
                    to: e.to,
                    resolution: e.resolution.0,
                    max_steps: e.max_steps,
                })
            }
            _ => None,
        }
    }
}

fn default_resolution() -> Fraction {
    Fraction(0.10)
}
fn default_max_steps() -> u32 {
    12
}

/// Axis lists; each must be non-empty (checked in plan/check.rs, with the position).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAxes {
    /// NIC models. Required.
    pub(crate) nic: Vec<NicModel>,
    /// Network modes. Required.
    pub(crate) mode: Vec<NetMode>,
    /// virtio-net backend; applies only to virtio-net cells in bridge/nat. Default: [on].
    #[serde(default = "default_vhost")]
    pub(crate) vhost: Vec<Vhost>,
    /// How connections are torn down. Default: [fin].
    #[serde(default = "default_disconnect")]
    pub(crate) disconnect: Vec<DisconnectMethod>,
    /// Which clients disconnect. Default: [one].
    #[serde(default = "default_scope")]
    pub(crate) scope: Vec<Scope>,
    /// The emulator: `system` (the host's qemu-system-x86_64), a recipe in emulators/, or
    /// `recipe/variant` with its QEMU environment in settings.qemu_env. Default: [system].
    #[serde(default = "default_qemu")]
    pub(crate) qemu: Vec<EmulatorName>,
    /// What else flows during the disconnect. Default: [none].
    #[serde(default = "default_traffic")]
    pub(crate) traffic: Vec<Traffic>,
    /// Connection target at the server when KVM works. Required, unless `search` gives the
    /// counts.
    #[serde(default)]
    pub(crate) connections: Vec<u64>,
    /// vCPUs per VM. Default: [2].
    #[serde(default = "default_vcpus")]
    pub(crate) vcpus: Vec<u32>,
    /// Server memory; `auto` sizes it from the target. Default: [auto].
    #[serde(default = "default_memory")]
    pub(crate) memory: Vec<Memory>,
}

fn default_vhost() -> Vec<Vhost> {
    vec![Vhost::On]
}
fn default_disconnect() -> Vec<DisconnectMethod> {
    vec![DisconnectMethod::Fin]
}
fn default_scope() -> Vec<Scope> {
    vec![Scope::One]
}
fn default_qemu() -> Vec<EmulatorName> {
    vec![EmulatorName("system".into())]
}
fn default_traffic() -> Vec<Traffic> {
    vec![Traffic::None]
}
fn default_vcpus() -> Vec<u32> {
    vec![2]
}
fn default_memory() -> Vec<Memory> {
    vec![Memory::Auto]
}

/// One `only`/`exclude` entry: matches a cell when every key given matches.
/// Its keys are exactly the axis names, so serde rejects any other key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    pub(crate) nic: Option<OneOrMany<NicModel>>,
    pub(crate) mode: Option<OneOrMany<NetMode>>,
    /// Matches only cells where vhost applies (virtio-net in bridge/nat).
    pub(crate) vhost: Option<OneOrMany<Vhost>>,
    pub(crate) disconnect: Option<OneOrMany<DisconnectMethod>>,
    pub(crate) scope: Option<OneOrMany<Scope>>,
    pub(crate) qemu: Option<OneOrMany<EmulatorName>>,
    pub(crate) traffic: Option<OneOrMany<Traffic>>,
    pub(crate) connections: Option<OneOrMany<u64>>,
    pub(crate) vcpus: Option<OneOrMany<u32>>,
    pub(crate) memory: Option<OneOrMany<Memory>>,
}

/// Settings fixed for every cell.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSettings {
    /// Connection target when only TCG works (accel=tcg). Default: 30000.
    pub(crate) tcg_connections: u64,
    /// vCPUs per VM under TCG; the host has 2 cores. Default: 1.
    pub(crate) tcg_vcpus: u32,
    /// Ports the server listens on. Default: 20000-20019.
    pub(crate) ports: PortRange,
    /// storm-load client `--concurrency`. Default: 2000.
    pub(crate) concurrency: u32,
    /// Connects per second per client, 0 = unlimited, or `auto`: each client keeps at most
    /// 64 connects in flight (and `concurrency` if lower), so the ramp runs at the rate the
    /// server accepts (`Rate::AUTO_WINDOW`). Part of the cell id (`rate=auto`). Default: 0.
    pub(crate) rate: Rate,
    /// The pace under TCG (accel=tcg), any value `rate` takes: a TCG server accepts far
    /// fewer connects per second than a KVM one, and an unpaced ramp overruns it. Part of
    /// the cell id when set (`tcg_rate=...`). Default: `rate`.
    pub(crate) tcg_rate: Option<Rate>,
    /// Frames the NIC's backend is given: `tso` (as libvirt sets it up) or `mtu` (offloads
    /// off, as behind macOS's vmnet). Part of the cell id when `mtu`. Default: tso.
    pub(crate) frames: Frames,
    /// The passt of passt-mode cells: `system` (the host's own, Debian 12's package) or a
    /// recipe under passt/ that builds one from a Debian source package (`trixie`). Part of
    /// the cell id of passt-mode cells when not `system`. Default: system.
    pub(crate) passt: String,
    /// The order cells x repetitions run in: `cells` (each cell's repetitions back to back)
    /// or `interleaved` (A B, B A, ...: repetitions spread over the run, cells alternating).
    /// Not part of the cell id. Default: cells.
    pub(crate) order: RunOrder,
    /// How each cell's lab comes up: `boot` (the four guests boot from the image) or
    /// `restore` (they are restored from a lab of the same kind saved when the first cell
    /// needed it: image, QEMU binary, accelerator, sizes, NIC and mode; README "Restored
    /// labs"). Not part of the cell id; the row's `lab_start` says which way each lab came
    /// up. Default: boot.
    pub(crate) lab_start: LabStart,
    /// A ring of the server tap's packets (bridge and nat; headers only) while the cell
    /// runs: `on-loss` keeps it in the cell directory when the cell lost a network
    /// (`lost_phase` set, or verdict ssh_dropped, hung, client_dropped) or was ssh_slow;
    /// `always` keeps it for every cell; `off` runs no capture. Not part of the cell id.
    /// Default: on-loss under KVM, off under TCG (where it cost a 30k ramp ~9% of its rate).
    pub(crate) capture: Option<Capture>,
    /// Bytes kept of each packet in the ring (Ethernet, IPv4 and TCP headers with options
    /// fit in 96). Not part of the cell id. Default: 96.
    pub(crate) capture_snaplen: u32,
    /// The ring's size on disk, at least 8MiB: tcpdump rotates over 8 files of an eighth of
    /// it each (lab/capture.rs), so the oldest packets are overwritten and at most this much
    /// is kept. Not part of the cell id. Default: 64MiB.
    pub(crate) capture_ring: ByteSize,
    /// Limit for all 4 VMs to accept SSH. Default: 600s.
    pub(crate) boot_timeout: HumanDuration,
    /// Limit for the whole ramp. Default: 30m.
    pub(crate) ramp_timeout: HumanDuration,
    /// Stop the ramp when the total did not grow for this long. Default: 60s.
    pub(crate) ramp_stall: HumanDuration,
    /// Baseline window with all connections up. Default: 20s.
    pub(crate) hold: HumanDuration,
    /// Window after the disconnect. Default: 120s.
    pub(crate) observe: HumanDuration,
    /// Time between SSH probes. Default: 2s.
    pub(crate) probe_interval: HumanDuration,
    /// A heartbeat gap at least this long means hung. Default: 5s.
    pub(crate) hang_gap: HumanDuration,
    /// Probe latency above this factor times the hold baseline is ssh_slow. Default: 5.0.
    pub(crate) ssh_slow_factor: f64,
    /// ...and it must also be at least this much above the baseline. Default: 3s.
    pub(crate) ssh_slow_min: HumanDuration,
    /// Host sysctls set for the run and restored after. Default: none.
    pub(crate) host_sysctls: BTreeMap<String, SysctlValue>,
    /// Sysctls set in every guest after boot, before the server starts (on top of the
    /// image's). They change what is measured, so they are part of the cell id. Default: none.
    pub(crate) guest_sysctls: BTreeMap<String, SysctlValue>,
    /// Environment given to QEMU, per `qemu` axis value (e.g. the vmnet model's budget:
    /// `vmnet-flow-control/burst64: {NICSTORM_VMNET_BURST: 64}`). A list of values sweeps
    /// the variable: the value's cells are multiplied by every combination of the lists
    /// (`{NICSTORM_VMNET_BURST: [16, 64], NICSTORM_VMNET_PPMS: [5, 20]}` gives 4 cells per
    /// combination of the other axes). Part of the cell id. Default: none.
    pub(crate) qemu_env: BTreeMap<String, BTreeMap<String, OneOrMany<SysctlValue>>>,
}

impl Default for RawSettings {
    fn default() -> Self {
        let secs = |s| HumanDuration(Duration::from_secs(s));
        RawSettings {
            tcg_connections: 30_000,
            tcg_vcpus: 1,
            ports: PortRange {
                first: 20000,
                last: 20019,
            },
            concurrency: 2000,
            rate: Rate::PerSecond(0),
            tcg_rate: None,
            frames: Frames::Tso,
            passt: "system".into(),
            order: RunOrder::Cells,
            lab_start: LabStart::Boot,
            capture: None,
            capture_snaplen: 96,
            capture_ring: ByteSize(64 << 20),
            boot_timeout: secs(600),
            ramp_timeout: secs(30 * 60),
            ramp_stall: secs(60),
            hold: secs(20),
            observe: secs(120),
            probe_interval: secs(2),
            hang_gap: secs(5),
            ssh_slow_factor: 5.0,
            ssh_slow_min: secs(3),
            host_sysctls: BTreeMap::new(),
            guest_sysctls: BTreeMap::new(),
            qemu_env: BTreeMap::new(),
        }
    }
}
