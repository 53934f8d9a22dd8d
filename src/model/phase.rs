//! The phases of a cell (docs/EXPERIMENT.md "Phases of one cell"): named in events, in the `error_phase`
//! column, and in every error a cell ends with.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Preflight,
    Provision,
    Prepare,
    Ramp,
    Hold,
    Disconnect,
    Observe,
    Teardown,
}

impl Phase {
    pub(crate) const ALL: [Phase; 8] = [
        Phase::Preflight,
        Phase::Provision,
        Phase::Prepare,
        Phase::Ramp,
        Phase::Hold,
        Phase::Disconnect,
        Phase::Observe,
        Phase::Teardown,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Provision => "provision",
            Phase::Prepare => "prepare",
            Phase::Ramp => "ramp",
            Phase::Hold => "hold",
            Phase::Disconnect => "disconnect",
            Phase::Observe => "observe",
            Phase::Teardown => "teardown",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl crate::model::named::Vocabulary for Phase {
    fn name(&self) -> &str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown phase {s:?}"))
    }
}
