//! Run ids and the names of everything a run creates (docs/ARCHITECTURE.md "Names").
//! Leftovers of a killed run are recognised by these patterns alone.

use std::fmt;

/// 6 lowercase hex digits; every resource of a run carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    /// A fresh id from the clock and pid: unique enough for runs on one host, which the run lock serialises.
    pub fn new() -> RunId {
        use sha2::{Digest, Sha256};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let h = Sha256::digest(format!("{nanos}-{}", std::process::id()));
        RunId(hex::encode(&h[..3]))
    }

    pub(crate) fn parse(s: &str) -> Option<RunId> {
        is_hex6(s).then(|| RunId(s.to_string()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Prefix of libvirt domains, lab directories and iptables comments: `nicstorm-RID`.
    pub fn tag(&self) -> String {
        format!("nicstorm-{}", self.0)
    }

    pub(crate) fn domain(&self, role: &str) -> String {
        format!("nicstorm-{}-{role}", self.0)
    }

    /// Link names (bridges, taps) must fit IFNAMSIZ (15): `nstRID` + up to 3 chars.
    pub fn link(&self, suffix: &str) -> String {
        debug_assert!(suffix.len() <= 6);
        format!("nst{}{suffix}", self.0)
    }

    /// The network namespace of a passt lab (`ip netns`): `nstRIDns`, found by the link
    /// pattern (`run_of_link`) when leftover.
    pub fn netns(&self) -> String {
        self.link("ns")
    }

    /// The MAC of a VM: locally administered QEMU OUI, run id, role index.
    pub(crate) fn mac(&self, index: u8) -> String {
        let b = hex::decode(&self.0).unwrap_or_else(|_| vec![0, 0, 0]);
        format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], index)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_hex6(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The run id of a domain name / lab dir / iptables comment (`nicstorm-RID[-...]`), if it is one of ours.
pub(crate) fn run_of_tag(name: &str) -> Option<RunId> {
    let rest = name.strip_prefix("nicstorm-")?;
    let (id, tail) = rest.split_at(rest.len().min(6));
    (is_hex6(id) && (tail.is_empty() || tail.starts_with('-'))).then(|| RunId(id.to_string()))
}

/// The run id of a link name (`nstRID...`), if it is one of ours.
pub fn run_of_link(name: &str) -> Option<RunId> {
    let rest = name.strip_prefix("nst")?;
    let id = rest.get(..6)?;
    is_hex6(id).then(|| RunId(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        let r = RunId::parse("a1b2c3").unwrap();
        assert_eq!(r.domain("server"), "nicstorm-a1b2c3-server");
        assert_eq!(r.link("c1"), "nsta1b2c3c1");
        assert!(r.link("b0").len() <= 15);
        assert_eq!(r.mac(2), "52:54:a1:b2:c3:02");
        assert_eq!(r.netns(), "nsta1b2c3ns");
        assert_eq!(run_of_link(&r.netns()), Some(r.clone()));
        for (name, want) in [
            ("nicstorm-a1b2c3-server", Some("a1b2c3")),
            ("nicstorm-a1b2c3", Some("a1b2c3")),
            ("nicstorm-a1b2c3x", None),
            ("nicstorm-A1B2C3-server", None),
            ("nicstorm-a1b2", None),
            ("other-a1b2c3", None),
        ] {
            assert_eq!(
                run_of_tag(name).map(|r| r.0),
                want.map(String::from),
                "{name}"
            );
        }
        assert_eq!(run_of_link("nsta1b2c3b0").unwrap().as_str(), "a1b2c3");
        assert!(run_of_link("nstzzzzzzb0").is_none());
        assert!(run_of_link("eth0").is_none());
        assert!(RunId::parse(RunId::new().as_str()).is_some());
    }
}
