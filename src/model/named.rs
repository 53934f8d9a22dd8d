//! A name from one of the closed vocabularies (NIC model, network mode, accelerator, verdict,
//! phase, ...) as a results row carries it: a value this build knows, or the name as written
//! when it does not (a row of a newer or a foreign build). Reading such a row keeps the name
//! instead of failing, and writing it back gives the same text, byte for byte.
//!
//! Code compares typed values (`row.verdict == Verdict::Error`, `row.nic.known()`), never the
//! names: `Named` has no `PartialEq<str>` on purpose.

use std::fmt;

/// A closed set of values, each with one spelling in matrix files, plans and CSV rows.
pub trait Vocabulary: Sized + Clone + Ord {
    /// The value's spelling.
    fn name(&self) -> &str;
    /// The value spelled `name`, if this build knows it.
    fn from_name(name: &str) -> Option<Self>;
}

/// A known value, or a name this build does not know (kept as written). Ordered known values
/// first, in the vocabulary's order, then the other names alphabetically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Named<T> {
    Known(T),
    Other(String),
}

impl<T: Vocabulary> Named<T> {
    /// `name` as a known value when it is one, spelled exactly so; else kept as `Other`.
    pub fn parse(name: &str) -> Named<T> {
        match T::from_name(name) {
            Some(v) if v.name() == name => Named::Known(v),
            _ => Named::Other(name.to_owned()),
        }
    }

    /// The spelling: the known value's, or the name as read.
    pub fn as_str(&self) -> &str {
        match self {
            Named::Known(v) => v.name(),
            Named::Other(s) => s,
        }
    }

    /// An empty field: nothing recorded (a column older rows lack).
    pub fn is_unrecorded(&self) -> bool {
        matches!(self, Named::Other(s) if s.is_empty())
    }

    /// The value, when this build knows it.
    pub fn known(&self) -> Option<&T> {
        match self {
            Named::Known(v) => Some(v),
            Named::Other(_) => None,
        }
    }
}

/// The empty name: "not recorded". Only a placeholder of a row under construction (and the
/// header, which serializes a default row); every row written has its values set.
impl<T> Default for Named<T> {
    fn default() -> Self {
        Named::Other(String::new())
    }
}

impl<T: Vocabulary> From<T> for Named<T> {
    fn from(v: T) -> Self {
        Named::Known(v)
    }
}

impl<T: Vocabulary> From<&str> for Named<T> {
    fn from(name: &str) -> Self {
        Named::parse(name)
    }
}

/// Never fails: a name this build does not know is `Other`.
impl<T: Vocabulary> std::str::FromStr for Named<T> {
    type Err = std::convert::Infallible;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(Named::parse(name))
    }
}

/// `row.verdict == Verdict::Error`: an unknown name equals no known value.
impl<T: PartialEq> PartialEq<T> for Named<T> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, Named::Known(v) if v == other)
    }
}

impl<T: Vocabulary> fmt::Display for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: Vocabulary> serde::Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de, T: Vocabulary> serde::Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Named::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::verdict::Verdict;

    #[test]
    fn known_and_other_names_round_trip() {
        let ok: Named<Verdict> = Named::parse("ok");
        assert_eq!(ok, Named::Known(Verdict::Ok));
        assert!(ok == Verdict::Ok && ok != Verdict::Error);
        let newer: Named<Verdict> = Named::parse("melted");
        assert_eq!(newer, Named::Other("melted".into()));
        assert!(newer != Verdict::Ok && newer != Verdict::Error);
        assert_eq!(
            (ok.to_string(), newer.to_string()),
            ("ok".into(), "melted".into())
        );
        // Known values first, in the vocabulary's order; other names after, alphabetically.
        let mut v: Vec<Named<Verdict>> = ["zz", "hung", "aa", "ok"].map(Named::parse).to_vec();
        v.sort();
        let names: Vec<&str> = v.iter().map(Named::as_str).collect();
        assert_eq!(names, ["ok", "hung", "aa", "zz"]);
    }
}
