//! Raw matrix YAML: serde types mirroring the file, and the domain value types parsed at the edge.
//!
//! Only plan.rs consumes the `Raw*` types; everything downstream sees the checked
//! [`crate::plan::Plan`]. Range and cross-field checks live in plan.rs, where the
//! source position of any key can be looked up (see [`locate`]).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Implements `Deserialize` through `FromStr`, so a bad value fails with the type's own
/// message ("unknown NIC model ...; allowed: ...") at the value's line and column.
macro_rules! deserialize_via_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(FromStrVisitor::<$ty>::new($expecting))
            }
        }
    };
}

/// Accepts a string or an integer scalar and parses its text; YAML writes `20000` and
/// `"20000"` for the same port, and both should mean the same thing.
struct FromStrVisitor<T> {
    expecting: &'static str,
    ty: PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        Self {
            expecting,
            ty: PhantomData,
        }
    }
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

/// Error text for a closed set of names: `unknown NIC model "virtio"; allowed: a, b`.
fn unknown(what: &str, got: &str, allowed: &[&str]) -> String {
    format!("unknown {what} {got:?}; allowed: {}", allowed.join(", "))
}

/// Declares a closed enum whose YAML/CSV spelling is fixed, with FromStr, Display,
/// `ALL` (in the order the matrix expands and the summary sorts) and Deserialize.
macro_rules! closed_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in matrix files, plans and CSV rows.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(unknown($what, s, &[$($text),+])),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        deserialize_via_from_str!($name, $what);
    };
}

closed_enum!(
    /// Virtual NIC model of every VM in a cell.
    NicModel, "NIC model" {
        VirtioNet => "virtio-net",
        Vmxnet3 => "vmxnet3",
        E1000 => "e1000",
        E1000e => "e1000e",
        Rtl8139 => "rtl8139",
    }
);

impl NicModel {
    /// The libvirt `<model type=...>` value.
    pub fn qemu_model(&self) -> &str {
        match self {
            NicModel::VirtioNet => "virtio",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Rtl8139 => "rtl8139",
        }
    }

    /// Guest kernel drivers any of which proves the guest really got this model.
    /// rtl8139 binds to 8139cp or 8139too depending on the chip revision QEMU reports.
    pub fn guest_drivers(&self) -> &[&str] {
        match self {
            NicModel::VirtioNet => &["virtio_net"],
            NicModel::Vmxnet3 => &["vmxnet3"],
            NicModel::E1000 => &["e1000"],
            NicModel::E1000e => &["e1000e"],
            NicModel::Rtl8139 => &["8139cp", "8139too"],
        }
    }
}

closed_enum!(
    /// How clients reach the server (DESIGN.md "Network modes").
    NetMode, "network mode" {
        Bridge => "bridge",
        Nat => "nat",
        User => "user",
    }
);

closed_enum!(
    /// virtio-net backend: in-kernel vhost-net or QEMU's user-space device.
    Vhost, "vhost setting" {
        On => "on",
        Off => "off",
    }
);

closed_enum!(
    /// How the connections are torn down.
    DisconnectMethod, "disconnect method" {
        /// storm-load exits normally: a FIN storm.
        Fin => "fin",
        /// SO_LINGER 0 before exit: an RST storm.
        Rst => "rst",
        /// The client VM is destroyed: the server sees silence, then timeouts.
        Destroy => "destroy",
        /// The client's link is set down: like destroy, but the guest survives.
        LinkDown => "link-down",
    }
);

closed_enum!(
    /// What flows besides the storm while it is disconnected (issue 12: each hypothesis about
    /// the seed's freeze needs its own traffic).
    Traffic, "traffic" {
        /// Only the storm's connections (and the runner's SSH probes).
        None => "none",
        /// An SSH session streaming output from the server (`top` refreshing), as the seed
        /// watched while disconnecting.
        SshStream => "ssh-stream",
        /// Bulk data into the server on a few of the clients' connections (64 KiB writes, so
        /// with offloads the server receives packets larger than one receive buffer).
        BulkIn => "bulk-in",
        /// Bulk data out of the server on a few of its accepted connections.
        BulkOut => "bulk-out",
    }
);

/// A `qemu` axis value: `system`, an emulators/ recipe name, or `recipe/variant` (a variant
/// is a name for a QEMU environment in settings.qemu_env). The recipe must exist: checked in
/// plan.rs, where the position is known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmulatorName(pub String);

impl EmulatorName {
    /// The recipe part (`system` for the host's QEMU).
    pub fn recipe(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(r, _)| r)
    }
}

impl FromStr for EmulatorName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let word = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let ok = match s.split_once('/') {
            Some((r, v)) => word(r) && word(v),
            None => word(s),
        };
        if ok {
            Ok(EmulatorName(s.to_owned()))
        } else {
            Err(format!("bad emulator {s:?}; expected system, a recipe name from emulators/, or RECIPE/VARIANT (lowercase letters, digits, -)"))
        }
    }
}

impl fmt::Display for EmulatorName {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

deserialize_via_from_str!(EmulatorName, "an emulator name like \"system\"");

/// A relative resolution written `10%` (or a fraction like `0.1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fraction(pub f64);

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "bad resolution {s:?}; expected a percentage like \"10%\" (between 1% and 100%)"
            )
        };
        let v = match s.trim().strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
            None => s.trim().parse::<f64>().map_err(|_| bad())?,
        };
        if !(0.01..=1.0).contains(&v) {
            return Err(bad());
        }
        Ok(Fraction(v))
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage like \"10%\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fraction, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Fraction, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fraction, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

closed_enum!(
    /// Which clients disconnect.
    Scope, "scope" {
        /// One client, as in the seed experiment.
        One => "one",
        All => "all",
    }
);

/// An inclusive TCP port range, `20000-20019` (or one port, `20000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range.
    pub fn count(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("bad port range {s:?}; expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535, e.g. \"20000-20019\"")
        };
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

deserialize_via_from_str!(PortRange, "a port range like \"20000-20019\"");

/// A size in bytes written with a binary unit: `6GiB`, `512MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const BYTE_UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl ByteSize {
    /// Size in MiB, rounded up: guests are sized in whole MiB.
    pub fn mib(&self) -> u64 {
        self.0.div_ceil(1 << 20)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "bad size {s:?}; expected an integer with unit KiB, MiB, GiB or TiB, e.g. \"6GiB\""
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = BYTE_UNITS
            .iter()
            .find(|(u, _)| *u == unit.trim())
            .map(|(_, m)| *m)
            .ok_or_else(bad)?;
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, so "6GiB" prints back as "6GiB".
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (unit, mult) in BYTE_UNITS.iter().rev() {
            if self.0 >= *mult && self.0.is_multiple_of(*mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}B", self.0)
    }
}

deserialize_via_from_str!(ByteSize, "a size like \"6GiB\"");

/// Server memory of a cell: sized from the connection target, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Memory {
    Auto,
    Fixed(ByteSize),
}

impl FromStr for Memory {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Memory::Auto);
        }
        s.parse().map(Memory::Fixed).map_err(|_| {
            format!("bad memory {s:?}; expected \"auto\" or a size with unit KiB, MiB, GiB or TiB, e.g. \"6GiB\"")
        })
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Memory::Auto => f.write_str("auto"),
            Memory::Fixed(b) => b.fmt(f),
        }
    }
}

deserialize_via_from_str!(Memory, "\"auto\" or a size like \"6GiB\"");

/// A duration written with a unit: `500ms`, `600s`, `2m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "bad duration {s:?}; expected an integer with unit ms, s, m or h, e.g. \"600s\""
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms_per_unit = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        n.checked_mul(ms_per_unit)
            .map(|ms| HumanDuration(Duration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt_duration(self.0, f)
    }
}

/// Prints a duration in the largest unit that represents it exactly ("2m", "500ms").
pub fn fmt_duration(d: Duration, f: &mut fmt::Formatter) -> fmt::Result {
    let ms = d.as_millis();
    match ms {
        _ if ms != 0 && ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
        _ if ms != 0 && ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
        _ => write!(f, "{ms}ms"),
    }
}

deserialize_via_from_str!(HumanDuration, "a duration like \"600s\"");

/// A sysctl value; YAML may write `2000000` or `"2000000"` and both mean the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue(pub String);

impl FromStr for SysctlValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(SysctlValue(s.to_owned()))
    }
}

deserialize_via_from_str!(SysctlValue, "a sysctl value (string or integer)");

/// A filter value: one value or a list of values.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

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
pub struct RawMatrix {
    /// Free text shown by `nicstorm plan`. Default: none.
    #[serde(default)]
    pub description: Option<String>,
    /// A breaking-point search for every cell instead of fixed counts (then `axes.connections`
    /// is not given). Default: none.
    #[serde(default)]
    pub search: Option<RawSearch>,
    /// How many times each cell runs (>= 1). Default: 1.
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
    /// The axes whose cartesian product makes the cells. Required.
    pub axes: RawAxes,
    /// Keep only cells matching ANY entry. Default: keep all.
    #[serde(default)]
    pub only: Vec<RawFilter>,
    /// Drop cells matching any entry. Default: drop none.
    #[serde(default)]
    pub exclude: Vec<RawFilter>,
    /// Fixed for every cell.
    #[serde(default)]
    pub settings: RawSettings,
}

fn default_repetitions() -> u32 {
    1
}

/// `search:` -- what is searched for (only connections so far).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// The largest connection count that still ends `ok`. Required.
    pub connections: RawSearchRange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearchRange {
    /// Smallest count tried (a failure there ends the search). Required.
    pub from: u64,
    /// Largest count tried (ok there ends it: none failed up to `to`). Required.
    pub to: u64,
    /// The bracket is narrow enough when first failing / last ok <= 1 + resolution.
    /// Default: 10%.
    #[serde(default = "default_resolution")]
    pub resolution: Fraction,
    /// Steps at most per cell and repetition. Default: 12.
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
}

fn default_resolution() -> Fraction {
    Fraction(0.10)
}
fn default_max_steps() -> u32 {
    12
}

/// Axis lists; each must be non-empty (checked in plan.rs, with the position).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAxes {
    /// NIC models. Required.
    pub nic: Vec<NicModel>,
    /// Network modes. Required.
    pub mode: Vec<NetMode>,
    /// virtio-net backend; applies only to virtio-net cells in bridge/nat. Default: [on].
    #[serde(default = "default_vhost")]
    pub vhost: Vec<Vhost>,
    /// How connections are torn down. Default: [fin].
    #[serde(default = "default_disconnect")]
    pub disconnect: Vec<DisconnectMethod>,
    /// Which clients disconnect. Default: [one].
    #[serde(default = "default_scope")]
    pub scope: Vec<Scope>,
    /// The emulator: `system` (the host's qemu-system-x86_64), a recipe in emulators/, or
    /// `recipe/variant` with its QEMU environment in settings.qemu_env. Default: [system].
    #[serde(default = "default_qemu")]
    pub qemu: Vec<EmulatorName>,
    /// What else flows during the disconnect. Default: [none].
    #[serde(default = "default_traffic")]
    pub traffic: Vec<Traffic>,
    /// Connection target at the server when KVM works. Required, unless `search` gives the
    /// counts.
    #[serde(default)]
    pub connections: Vec<u64>,
    /// vCPUs per VM. Default: [2].
    #[serde(default = "default_vcpus")]
    pub vcpus: Vec<u32>,
    /// Server memory; `auto` sizes it from the target. Default: [auto].
    #[serde(default = "default_memory")]
    pub memory: Vec<Memory>,
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
pub struct RawFilter {
    pub nic: Option<OneOrMany<NicModel>>,
    pub mode: Option<OneOrMany<NetMode>>,
    /// Matches only cells where vhost applies (virtio-net in bridge/nat).
    pub vhost: Option<OneOrMany<Vhost>>,
    pub disconnect: Option<OneOrMany<DisconnectMethod>>,
    pub scope: Option<OneOrMany<Scope>>,
    pub qemu: Option<OneOrMany<EmulatorName>>,
    pub traffic: Option<OneOrMany<Traffic>>,
    pub connections: Option<OneOrMany<u64>>,
    pub vcpus: Option<OneOrMany<u32>>,
    pub memory: Option<OneOrMany<Memory>>,
}

/// Settings fixed for every cell.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    /// Connection target when only TCG works (accel=tcg). Default: 30000.
    pub tcg_connections: u64,
    /// vCPUs per VM under TCG; the host has 2 cores. Default: 1.
    pub tcg_vcpus: u32,
    /// Ports the server listens on. Default: 20000-20019.
    pub ports: PortRange,
    /// storm-load client `--concurrency`. Default: 2000.
    pub concurrency: u32,
    /// Connects per second per client, 0 = unlimited. Default: 0.
    pub rate: u32,
    /// Limit for all 4 VMs to accept SSH. Default: 600s.
    pub boot_timeout: HumanDuration,
    /// Limit for the whole ramp. Default: 30m.
    pub ramp_timeout: HumanDuration,
    /// Stop the ramp when the total did not grow for this long. Default: 60s.
    pub ramp_stall: HumanDuration,
    /// Baseline window with all connections up. Default: 20s.
    pub hold: HumanDuration,
    /// Window after the disconnect. Default: 120s.
    pub observe: HumanDuration,
    /// Time between SSH probes. Default: 2s.
    pub probe_interval: HumanDuration,
    /// A heartbeat gap at least this long means hung. Default: 5s.
    pub hang_gap: HumanDuration,
    /// Probe latency above this factor times the hold baseline is ssh_slow. Default: 5.0.
    pub ssh_slow_factor: f64,
    /// ...and it must also be at least this much above the baseline. Default: 3s.
    pub ssh_slow_min: HumanDuration,
    /// Host sysctls set for the run and restored after. Default: none.
    pub host_sysctls: BTreeMap<String, SysctlValue>,
    /// Sysctls set in every guest after boot, before the server starts (on top of the
    /// image's). They change what is measured, so they are part of the cell id. Default: none.
    pub guest_sysctls: BTreeMap<String, SysctlValue>,
    /// Environment given to QEMU, per `qemu` axis value (e.g. the vmnet model's budget:
    /// `vmnet-flow-control/burst64: {NICSTORM_VMNET_BURST: 64}`). Part of the cell id.
    /// Default: none.
    pub qemu_env: BTreeMap<String, BTreeMap<String, SysctlValue>>,
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
            rate: 0,
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

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders a key path the way serde_yaml_ng does in its own errors: `axes.nic[0]`.
pub fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k)
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Marker message of the deliberate error [`locate`] raises; never shown to users.
const LOCATE_MARK: &str = "nicstorm: locate";

/// Source position (1-based line, column) of the value at `path`, or of the deepest
/// enclosing node that exists when the key is absent (a default was used).
///
/// serde does not expose positions to `Deserialize` impls, but serde_yaml_ng stamps
/// every error with the position of the node being read. So this walks the document
/// again and fails on purpose at the target node, then reads the stamp.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Locate { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| (l.line(), l.column())),
    }
}

struct Locate<'p, 'a> {
    path: &'p [Seg<'a>],
}

impl<'de> DeserializeSeed<'de> for Locate<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Even at the target we must enter the node: serde_yaml_ng only stamps the
        // position when the error leaves one of its deserialize_* calls.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some((Seg::Key(want), rest)) = self.path.split_first() {
            while let Some(key) = map.next_key::<KeyText>()? {
                if key.0 == *want {
                    return map.next_value_seed(Locate { path: rest });
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(LOCATE_MARK))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some((Seg::Index(want), rest)) = self.path.split_first() {
            let mut i = 0;
            while i < *want {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::custom(LOCATE_MARK));
                }
                i += 1;
            }
            if seq.next_element_seed(Locate { path: rest })?.is_some() {
                return Ok(());
            }
        }
        Err(de::Error::custom(LOCATE_MARK))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(LOCATE_MARK))
    }
}

/// A mapping key read as text whatever its YAML type, for [`locate`].
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_values_parse_and_print_back() {
        let cases: &[(&str, &str)] = &[
            ("6GiB", "6GiB"),
            ("6144MiB", "6GiB"),
            ("512MiB", "512MiB"),
            ("1536MiB", "1536MiB"),
        ];
        for (input, shown) in cases {
            let b: ByteSize = input.parse().unwrap();
            assert_eq!(b.to_string(), *shown, "{input}");
        }
        assert_eq!("6GiB".parse::<ByteSize>().unwrap().mib(), 6144);
        assert_eq!("1KiB".parse::<ByteSize>().unwrap().mib(), 1);
        for bad in ["6G", "GiB", "", "-1MiB", "1.5GiB", "99999999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }

        let d: &[(&str, u64, &str)] = &[
            ("500ms", 500, "500ms"),
            ("600s", 600_000, "10m"),
            ("90s", 90_000, "90s"),
            ("2m", 120_000, "2m"),
            ("1h", 3_600_000, "1h"),
            ("0s", 0, "0s"),
        ];
        for (input, ms, shown) in d {
            let h: HumanDuration = input.parse().unwrap();
            assert_eq!(h.0, Duration::from_millis(*ms), "{input}");
            assert_eq!(h.to_string(), *shown);
        }
        for bad in ["600", "10 min", "s", "1.5s", "-1s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }

        let p: PortRange = "20000-20019".parse().unwrap();
        assert_eq!((p.first, p.last, p.count()), (20000, 20019, 20));
        assert_eq!("8080".parse::<PortRange>().unwrap().count(), 1);
        for bad in ["20019-20000", "0-5", "1-70000", "a-b", ""] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("auto".parse::<Memory>().unwrap(), Memory::Auto);
        assert_eq!(
            "virtio".parse::<NicModel>().unwrap_err(),
            "unknown NIC model \"virtio\"; allowed: virtio-net, vmxnet3, e1000, e1000e, rtl8139"
        );
    }

    #[test]
    fn nic_models_map_to_libvirt_and_guest_drivers() {
        let table: &[(NicModel, &str, &[&str])] = &[
            (NicModel::VirtioNet, "virtio", &["virtio_net"]),
            (NicModel::Vmxnet3, "vmxnet3", &["vmxnet3"]),
            (NicModel::E1000, "e1000", &["e1000"]),
            (NicModel::E1000e, "e1000e", &["e1000e"]),
            (NicModel::Rtl8139, "rtl8139", &["8139cp", "8139too"]),
        ];
        assert_eq!(table.len(), NicModel::ALL.len());
        for (nic, qemu, drivers) in table {
            assert_eq!(nic.qemu_model(), *qemu);
            assert_eq!(nic.guest_drivers(), *drivers);
            assert_eq!(nic.to_string().parse::<NicModel>().unwrap(), *nic);
        }
    }

    #[test]
    fn locate_finds_block_and_flow_nodes() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - p\n    - q\ne: {f: 2}\n";
        let cases: &[(&[Seg], (usize, usize))] = &[
            (&[Seg::Key("a")], (1, 4)),
            (&[Seg::Key("b"), Seg::Key("c"), Seg::Index(1)], (3, 10)),
            (&[Seg::Key("b"), Seg::Key("d"), Seg::Index(1)], (6, 7)),
            (&[Seg::Key("e"), Seg::Key("f")], (7, 8)),
            // Absent key: the enclosing mapping.
            (&[Seg::Key("b"), Seg::Key("zz")], (3, 3)),
        ];
        for (path, want) in cases {
            assert_eq!(locate(text, path), Some(*want), "{}", path_text(path));
        }
    }
}
