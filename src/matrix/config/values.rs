//! The domain value types of a matrix file, parsed at the edge so a bad value fails at load
//! time with its own message: sizes, durations, port ranges, the search resolution, emulator
//! names and sysctl text. Also how every such type deserializes (through `FromStr`).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Implements `Deserialize` through `FromStr`, so a bad value fails with the type's own
/// message ("unknown NIC model ...; allowed: ...") at the value's line and column.
macro_rules! deserialize_via_from_str {
    ($ty:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any($crate::matrix::config::values::FromStrVisitor::<$ty>::new(
                    $expecting,
                ))
            }
        }
    };
}

/// Accepts a string or an integer scalar and parses its text; YAML writes `20000` and
/// `"20000"` for the same port, and both should mean the same thing.
pub(super) struct FromStrVisitor<T> {
    expecting: &'static str,
    ty: PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub(super) fn new(expecting: &'static str) -> Self {
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

/// A `qemu` axis value: `system`, an emulators/ recipe name, or `recipe/variant` (a variant
/// is a name for a QEMU environment in settings.qemu_env). The recipe must exist: checked in
/// plan/check.rs, where the position is known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmulatorName(pub(crate) String);

impl EmulatorName {
    /// The host's own QEMU, not a recipe.
    pub(crate) fn is_system(&self) -> bool {
        self.0 == crate::matrix::recipes::SYSTEM
    }

    /// The recipe part (`system` for the host's QEMU).
    pub(crate) fn recipe(&self) -> &str {
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

impl crate::model::named::Vocabulary for EmulatorName {
    fn name(&self) -> &str {
        &self.0
    }
    fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

/// `settings.rate`: connects per second per client (0 = unlimited), or `auto`: paced by the
/// server itself (see [`Rate::AUTO_WINDOW`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rate {
    PerSecond(u32),
    Auto,
}

impl Rate {
    /// Connects in flight per client under `rate: auto`. A client starts a connect only when
    /// one of its last 64 has completed, so the ramp runs at the rate the server accepts and
    /// no faster: at most 3 x 64 SYNs wait in the server's queues, well inside the 1000
    /// frames of a tap's queue and the server's SYN backlog, which an unpaced ramp of 3 x
    /// 2000 in flight overran under TCG. On a fast server 64 in flight still allow tens of
    /// thousands of connects per second per client.
    pub(crate) const AUTO_WINDOW: u32 = 64;
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Rate::Auto),
            t => t.parse().map(Rate::PerSecond).map_err(|_| {
                format!("bad rate {s:?}; allowed: auto, or connects per second per client (0 = unlimited)")
            }),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Rate::PerSecond(n) => write!(f, "{n}"),
            Rate::Auto => f.write_str("auto"),
        }
    }
}

deserialize_via_from_str!(Rate, "a rate: auto, or connects per second per client");

/// A relative resolution written `10%` (or a fraction like `0.1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fraction(pub(crate) f64);

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

/// An inclusive TCP port range, `20000-20019` (or one port, `20000`): storm-load's own type
/// (storm-proto, shared with load/), which parses it and, with the `serde` feature,
/// deserializes it from a string or an integer.
pub use storm_proto::PortRange;

/// A size in bytes written with a binary unit: `6GiB`, `512MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ByteSize(pub(crate) u64);

const BYTE_UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

impl ByteSize {
    /// Size in MiB, rounded up: guests are sized in whole MiB.
    pub(crate) fn mib(&self) -> u64 {
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
pub(crate) enum Memory {
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
pub(crate) struct HumanDuration(pub(crate) Duration);

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
fn fmt_duration(d: Duration, f: &mut fmt::Formatter) -> fmt::Result {
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
pub(crate) struct SysctlValue(pub(crate) String);

impl FromStr for SysctlValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(SysctlValue(s.to_owned()))
    }
}

deserialize_via_from_str!(SysctlValue, "a sysctl value (string or integer)");

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
        assert_eq!("6 GiB".parse::<ByteSize>().unwrap().mib(), 6144);
        assert_eq!("262145KiB".parse::<ByteSize>().unwrap().mib(), 257);
        for bad in [
            "6G",
            "6GB",
            "6gib",
            "GiB",
            "",
            "-1MiB",
            "1.5GiB",
            "99999999999999TiB",
        ] {
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
        assert_eq!(
            "10 s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(10)
        );
        for bad in ["600", "10 min", "s", "1.5s", "-1s", "1h30m", "10sec"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} accepted");
        }

        let p: PortRange = "20000-20019".parse().unwrap();
        assert_eq!((p.first, p.last, p.count()), (20000, 20019, 20));
        assert_eq!("8080".parse::<PortRange>().unwrap().count(), 1);
        for bad in ["20019-20000", "0-5", "1-70000", "a-b", ""] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("auto".parse::<Memory>().unwrap(), Memory::Auto);
    }
}
