//! `PortRange`: the server's `--ports`, the client's `--target ADDR:PORTS`, the matrix's
//! `settings.ports`, the `start` line's `ports`.

use std::fmt;
use std::str::FromStr;

/// An inclusive range of TCP ports, written `20000-20019`, or `20000` for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range.
    pub fn count(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// The port the `index`-th connection goes to: round-robin so every port gets an equal
    /// share of the tuples.
    pub fn nth(&self, index: u64) -> u16 {
        self.first + (index % u64::from(self.count())) as u16
    }
}

/// Why a port range did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRangeError {
    /// `port` of the range `range` is not a number 1-65535.
    BadPort { port: String, range: String },
    /// The first port is above the last.
    Reversed { range: String },
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRangeError::BadPort { port, range } => {
                write!(
                    f,
                    "bad port {port:?} in {range:?}: expected a number 1-65535"
                )
            }
            PortRangeError::Reversed { range } => {
                write!(f, "bad port range {range:?}: first port is above the last")
            }
        }
    }
}

impl std::error::Error for PortRangeError {}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// `FIRST-LAST` or `PORT`, each 1-65535, blanks around a port allowed.
    fn from_str(s: &str) -> Result<PortRange, PortRangeError> {
        let port = |p: &str| match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(PortRangeError::BadPort {
                port: p.to_owned(),
                range: s.to_owned(),
            }),
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(PortRangeError::Reversed {
                range: s.to_owned(),
            });
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (first, last, count), or the error's text.
    type Want = Result<(u16, u16, u32), &'static str>;

    #[test]
    fn parses_counts_and_prints() {
        let table: &[(&str, Want)] = &[
            ("20000-20019", Ok((20000, 20019, 20))),
            ("80", Ok((80, 80, 1))),
            (" 80 - 81 ", Ok((80, 81, 2))),
            ("1-65535", Ok((1, 65535, 65535))),
            (
                "20019-20000",
                Err("bad port range \"20019-20000\": first port is above the last"),
            ),
            (
                "0-10",
                Err("bad port \"0\" in \"0-10\": expected a number 1-65535"),
            ),
            (
                "1-65536",
                Err("bad port \"65536\" in \"1-65536\": expected a number 1-65535"),
            ),
            (
                "a-b",
                Err("bad port \"a\" in \"a-b\": expected a number 1-65535"),
            ),
            ("", Err("bad port \"\" in \"\": expected a number 1-65535")),
        ];
        for (input, want) in table {
            let got = input
                .parse::<PortRange>()
                .map(|r| (r.first, r.last, r.count()))
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{input:?}");
        }
        assert_eq!(
            "20000-20019".parse::<PortRange>().unwrap().to_string(),
            "20000-20019"
        );
        assert_eq!(
            "8080".parse::<PortRange>().unwrap().to_string(),
            "8080-8080"
        );
    }

    #[test]
    fn ports_are_spread_round_robin() {
        let r: PortRange = "20000-20002".parse().unwrap();
        let got: Vec<u16> = (0..7).map(|i| r.nth(i)).collect();
        assert_eq!(got, [20000, 20001, 20002, 20000, 20001, 20002, 20000]);
        let all: PortRange = "1-65535".parse().unwrap();
        assert_eq!((all.nth(65534), all.nth(65535)), (65535, 1));
    }
}
