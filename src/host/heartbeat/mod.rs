//! Guest heartbeat: parses NSHB lines (docs/ARCHITECTURE.md), tails the serial log file QEMU
//! writes them to, and computes gap and peak statistics over a window of host time.
//!
//! Arrival times are host `Instant`s taken when a line is read, so a gap is measured on the
//! host clock and does not depend on the (possibly frozen) guest clock. The resolution of an
//! arrival time is the caller's poll interval; poll well below the heartbeat period (250 ms).
//!
//! This file is the line format (NSHB, version 1); tail.rs follows the serial log and
//! series.rs holds what arrived, with its window statistics.

mod series;
mod tail;

pub(crate) use series::{signed_seconds, HeartbeatSeries};
pub(crate) use tail::Watcher;

const PREFIX: &str = "NSHB ";

/// The heartbeat format version this parser understands.
pub(crate) const HEARTBEAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heartbeat {
    pub(crate) seq: u64,
    /// Guest wall clock, UNIX seconds.
    pub(crate) t: f64,
    /// Guest uptime, seconds.
    pub(crate) up: f64,
    pub(crate) load1: f64,
    /// Over the interval since the previous line.
    pub(crate) softirq_pct: f64,
    /// Over the interval since the previous line.
    pub(crate) busy_pct: f64,
    pub(crate) tcp_inuse: u64,
    pub(crate) tcp_orphan: u64,
    pub(crate) tcp_tw: u64,
    pub(crate) tcp_alloc: u64,
    pub(crate) tcp_mem_pages: u64,
    pub(crate) memavail_kb: u64,
    /// storm-load's established count from its status file; `None` when the guest wrote `-`
    /// (no status file: storm-load not running there).
    pub(crate) est: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HeartbeatError {
    #[error("heartbeat line lacks key {key:?}: {line:?}")]
    Missing { key: &'static str, line: String },
    #[error("heartbeat key {key:?} has bad value {value:?}: {line:?}")]
    BadValue {
        key: &'static str,
        value: String,
        line: String,
    },
    #[error("heartbeat token {token:?} is not key=value: {line:?}")]
    Token { token: String, line: String },
    #[error("heartbeat version v={found} is not v={HEARTBEAT_VERSION}: {line:?}")]
    Version { found: String, line: String },
}

/// Parses one serial line. `None` for lines that are not heartbeats (anything not starting
/// with "NSHB "); unknown keys are ignored; a missing or malformed known key is an error.
pub(crate) fn parse(line: &str) -> Option<Result<Heartbeat, HeartbeatError>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix(PREFIX)?;
    Some(parse_fields(line, rest))
}

fn parse_fields(line: &str, rest: &str) -> Result<Heartbeat, HeartbeatError> {
    let mut fields = std::collections::HashMap::new();
    for token in rest.split_ascii_whitespace() {
        let Some((k, v)) = token.split_once('=') else {
            return Err(HeartbeatError::Token {
                token: token.to_owned(),
                line: line.to_owned(),
            });
        };
        fields.insert(k, v);
    }
    let get = |key: &'static str| {
        fields.get(key).copied().ok_or(HeartbeatError::Missing {
            key,
            line: line.to_owned(),
        })
    };
    fn num<T: std::str::FromStr>(
        key: &'static str,
        value: &str,
        line: &str,
    ) -> Result<T, HeartbeatError> {
        value.parse().map_err(|_| HeartbeatError::BadValue {
            key,
            value: value.to_owned(),
            line: line.to_owned(),
        })
    }
    let u = |key| get(key).and_then(|v| num::<u64>(key, v, line));
    let f = |key| {
        get(key)
            .and_then(|v| num::<f64>(key, v, line))
            .and_then(|x| {
                // "nan"/"inf" parse as f64 but would poison every peak computed from them.
                if x.is_finite() {
                    Ok(x)
                } else {
                    Err(HeartbeatError::BadValue {
                        key,
                        value: x.to_string(),
                        line: line.to_owned(),
                    })
                }
            })
    };

    let version = get("v")?;
    if version != HEARTBEAT_VERSION {
        return Err(HeartbeatError::Version {
            found: version.to_owned(),
            line: line.to_owned(),
        });
    }
    let est = || match get("est")? {
        "-" => Ok(None),
        v => num::<u64>("est", v, line).map(Some),
    };
    // Fields in contract order, so the first missing key of a cut-off line is reported.
    Ok(Heartbeat {
        seq: u("seq")?,
        t: f("t")?,
        up: f("up")?,
        load1: f("load1")?,
        softirq_pct: f("softirq_pct")?,
        busy_pct: f("busy_pct")?,
        tcp_inuse: u("tcp_inuse")?,
        tcp_orphan: u("tcp_orphan")?,
        tcp_tw: u("tcp_tw")?,
        tcp_alloc: u("tcp_alloc")?,
        tcp_mem_pages: u("tcp_mem_pages")?,
        memavail_kb: u("memavail_kb")?,
        est: est()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "NSHB v=1 seq=42 t=1732233600.123456 up=61.50 load1=0.25 softirq_pct=3.5 busy_pct=12.0 tcp_inuse=3004 tcp_orphan=2 tcp_tw=7 tcp_alloc=3010 tcp_mem_pages=812 memavail_kb=1843200 est=3000";

    #[test]
    fn parses_contract_line() {
        assert_eq!(
            parse(LINE),
            Some(Ok(Heartbeat {
                seq: 42,
                t: 1732233600.123456,
                up: 61.5,
                load1: 0.25,
                softirq_pct: 3.5,
                busy_pct: 12.0,
                tcp_inuse: 3004,
                tcp_orphan: 2,
                tcp_tw: 7,
                tcp_alloc: 3010,
                tcp_mem_pages: 812,
                memavail_kb: 1843200,
                est: Some(3000),
            }))
        );
    }

    #[test]
    fn parse_table() {
        let dash = LINE.replace("est=3000", "est=-");
        let extra = format!("{LINE} future_key=7 ");
        let crlf = format!("{LINE}\r");
        let reordered = {
            let mut toks: Vec<&str> = LINE.split(' ').skip(1).collect();
            toks.reverse();
            format!("NSHB {}", toks.join(" "))
        };
        /// None = not a heartbeat, Some(Ok(est)), or Some(Err(text the message contains)).
        type Want = Option<Result<Option<u64>, &'static str>>;
        let cases: Vec<(String, Want)> = vec![
            (LINE.into(), Some(Ok(Some(3000)))),
            (dash, Some(Ok(None))),
            (extra, Some(Ok(Some(3000)))),
            (crlf, Some(Ok(Some(3000)))),
            (reordered, Some(Ok(Some(3000)))),
            ("[   12.3] Kernel panic".into(), None),
            ("NSHBv=1".into(), None),
            (" NSHB v=1".into(), None),
            ("".into(), None),
            (
                LINE.replace(" memavail_kb=1843200", ""),
                Some(Err("lacks key \"memavail_kb\"")),
            ),
            (
                LINE.replace(" est=3000", ""),
                Some(Err("lacks key \"est\"")),
            ),
            (
                LINE.replace("v=1", "v=2"),
                Some(Err("version v=2 is not v=1")),
            ),
            (LINE.replace("v=1 ", ""), Some(Err("lacks key \"v\""))),
            (
                LINE.replace("seq=42", "seq=x"),
                Some(Err("key \"seq\" has bad value \"x\"")),
            ),
            (
                LINE.replace("est=3000", "est=-1"),
                Some(Err("key \"est\" has bad value \"-1\"")),
            ),
            (
                LINE.replace("load1=0.25", "load1=NaN"),
                Some(Err("key \"load1\" has bad value")),
            ),
            (
                LINE.replace("seq=42", "seq=42 garbage"),
                Some(Err("token \"garbage\"")),
            ),
            // A line cut short by a guest hang mid-write.
            (LINE[..55].into(), Some(Err("lacks key \"softirq_pct\""))),
            (LINE[..60].into(), Some(Err("token \"soft\""))),
        ];
        for (line, want) in cases {
            let got = parse(&line);
            match (&got, want) {
                (None, None) => {}
                (Some(Ok(h)), Some(Ok(est))) => assert_eq!(h.est, est, "{line:?}"),
                (Some(Err(e)), Some(Err(text))) => {
                    assert!(e.to_string().contains(text), "{line:?}: {e} lacks {text:?}")
                }
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
