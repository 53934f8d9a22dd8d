//! Parses storm-load's JSON-lines protocol (version 1, docs/ARCHITECTURE.md) and folds the
//! progress of several clients into totals.
//!
//! Readers must ignore unknown keys (the contract lets storm-load add fields without a version
//! bump), so none of these structs deny unknown fields. Keys the contract documents for both
//! roles are required; keys it documents for one role only are `Option`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The only protocol version this runner understands.
pub(crate) const PROTOCOL_VERSION: u64 = 1;

/// How much of an offending line an error quotes: enough to recognise it, not a whole screen.
const QUOTE_MAX: usize = 120;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtoError {
    #[error("storm-load line is not a JSON object ({source}): {line:?}")]
    NotJson {
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("storm-load line has no integer \"v\" field: {line:?}")]
    NoVersion { line: String },
    #[error(
        "storm-load speaks protocol v={found} but this runner only understands v={PROTOCOL_VERSION}: {line:?}"
    )]
    Version { found: u64, line: String },
    #[error("storm-load line has no string \"kind\" field: {line:?}")]
    NoKind { line: String },
    #[error("malformed storm-load {kind:?} message ({source}): {line:?}")]
    Shape {
        kind: String,
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Server,
    Client,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Start {
    pub(crate) role: Role,
    /// Wall-clock UNIX seconds in the guest.
    pub(crate) t: f64,
    pub(crate) pid: u32,
    pub(crate) procs: u32,
    pub(crate) nofile_limit: u64,
    /// Listening port range, e.g. "20000-20019". The contract shows it for the server only.
    pub(crate) ports: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Progress {
    pub(crate) role: Role,
    pub(crate) t: f64,
    /// Connections held now.
    pub(crate) established: u64,
    /// Cumulative failures.
    pub(crate) failed: u64,
    /// Cumulative failures by errno name.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Per second since the previous progress line.
    pub(crate) rate: f64,
    /// Client: connects pending.
    pub(crate) in_flight: Option<u64>,
    /// Client: cumulative connect attempts.
    pub(crate) attempted: Option<u64>,
    /// Client: connections this client was asked to hold.
    pub(crate) target: Option<u64>,
    /// Server: cumulative accepts.
    pub(crate) accepted: Option<u64>,
    /// Server: cumulative closes.
    pub(crate) closed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Reached {
    pub(crate) role: Role,
    pub(crate) t: f64,
    pub(crate) established: u64,
    /// Seconds from start to reaching the target.
    pub(crate) elapsed: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Signal {
    pub(crate) role: Role,
    pub(crate) t: f64,
    /// Signal name, e.g. "SIGINT".
    pub(crate) signal: String,
    /// How held connections are closed on exit, e.g. "fin" or "rst".
    pub(crate) on_exit: Option<String>,
    pub(crate) established: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Summary {
    pub(crate) role: Role,
    pub(crate) t: f64,
    pub(crate) elapsed: f64,
    pub(crate) established: u64,
    pub(crate) failed: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) peak_established: u64,
    pub(crate) accepted: Option<u64>,
    pub(crate) closed: Option<u64>,
    pub(crate) attempted: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    Start(Start),
    Progress(Progress),
    Reached(Reached),
    Signal(Signal),
    Summary(Summary),
    /// A v1 message of a kind this runner does not know; kept so a newer storm-load with extra
    /// kinds does not break an older runner.
    Other {
        kind: String,
    },
}

/// Parses one line of storm-load stdout.
pub(crate) fn parse_line(line: &str) -> Result<Message, ProtoError> {
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|source| ProtoError::NotJson {
            line: quote(line),
            source,
        })?;
    let Some(obj) = value.as_object() else {
        // serde_json accepted it, so it is valid JSON but not an object (e.g. a bare number).
        return Err(ProtoError::NotJson {
            line: quote(line),
            source: serde::de::Error::custom("expected an object"),
        });
    };
    let version = obj
        .get("v")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| ProtoError::NoVersion { line: quote(line) })?;
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::Version {
            found: version,
            line: quote(line),
        });
    }
    let kind = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| ProtoError::NoKind { line: quote(line) })?
        .to_owned();
    let shape = |source| ProtoError::Shape {
        kind: kind.clone(),
        line: quote(line),
        source,
    };
    let msg = match kind.as_str() {
        "start" => Message::Start(serde_json::from_value(value).map_err(shape)?),
        "progress" => Message::Progress(serde_json::from_value(value).map_err(shape)?),
        "reached" => Message::Reached(serde_json::from_value(value).map_err(shape)?),
        "signal" => Message::Signal(serde_json::from_value(value).map_err(shape)?),
        "summary" => Message::Summary(serde_json::from_value(value).map_err(shape)?),
        _ => Message::Other { kind },
    };
    Ok(msg)
}

fn quote(line: &str) -> String {
    let line = line.trim_end();
    match line.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Formats errno counts as "ECONNREFUSED=3;ETIMEDOUT=1": sorted by name, zero counts left out
/// (a zero says nothing), empty when there are none. `;` keeps the value a single CSV field.
pub(crate) fn errors_by_errno(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The latest progress of each of several storm-load streams (one per client VM), folded into
/// totals. Progress counters are cumulative per stream, so only the latest line of each counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregate {
    latest: BTreeMap<String, Progress>,
}

impl Aggregate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records `progress` as the latest of stream `source` (e.g. the client's domain name).
    /// A line older than the one already held is ignored: streams read over separate SSH
    /// sessions may be handed to us out of order, and counters must not step backwards.
    pub(crate) fn update(&mut self, source: &str, progress: Progress) {
        match self.latest.get_mut(source) {
            Some(held) if held.t > progress.t => {}
            Some(held) => *held = progress,
            None => {
                self.latest.insert(source.to_owned(), progress);
            }
        }
    }

    /// Number of streams that have reported at least once. Only the unit tests ask (issue 11:
    /// kept for them, compiled only for them), as for `established` and `in_flight`.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.latest.len()
    }

    pub(crate) fn latest(&self, source: &str) -> Option<&Progress> {
        self.latest.get(source)
    }

    #[cfg(test)]
    pub(crate) fn established(&self) -> u64 {
        self.latest.values().map(|p| p.established).sum()
    }

    pub(crate) fn failed(&self) -> u64 {
        self.latest.values().map(|p| p.failed).sum()
    }

    pub(crate) fn rate(&self) -> f64 {
        // A float sum of nothing is -0.0, which prints as "-0/s"; a rate is never negative.
        let r: f64 = self.latest.values().map(|p| p.rate).sum();
        if r > 0.0 {
            r
        } else {
            0.0
        }
    }

    /// Connects pending over the streams that report it (clients).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u64 {
        self.latest.values().filter_map(|p| p.in_flight).sum()
    }

    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        let mut merged = BTreeMap::new();
        for p in self.latest.values() {
            for (name, n) in &p.errors {
                *merged.entry(name.clone()).or_insert(0) += n;
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"v":1,"kind":"start","role":"server","t":1732233600.123,"pid":123,"procs":2,"nofile_limit":1048576,"ports":"20000-20019"}"#;
    const CLIENT_PROGRESS: &str = r#"{"v":1,"kind":"progress","role":"client","t":1732233600.373,"established":1200,"in_flight":64,"attempted":1300,"failed":36,"errors":{"ECONNREFUSED":36},"rate":4800.0,"target":3000}"#;
    const SERVER_PROGRESS: &str = r#"{"v":1,"kind":"progress","role":"server","t":1732233600.5,"established":3600,"accepted":3600,"closed":0,"failed":0,"errors":{},"rate":4800.0}"#;
    const REACHED: &str = r#"{"v":1,"kind":"reached","role":"client","t":1732233601.0,"established":3000,"elapsed":0.61}"#;
    const SIGNAL: &str = r#"{"v":1,"kind":"signal","role":"client","t":1732233602.0,"signal":"SIGINT","on_exit":"fin","established":3000}"#;
    const SUMMARY: &str = r#"{"v":1,"kind":"summary","role":"server","t":1732233603.0,"elapsed":12.3,"established":0,"accepted":3600,"closed":3600,"failed":0,"errors":{},"peak_established":3600}"#;

    #[test]
    fn contract_examples_parse() {
        assert_eq!(
            parse_line(START).unwrap(),
            Message::Start(Start {
                role: Role::Server,
                t: 1732233600.123,
                pid: 123,
                procs: 2,
                nofile_limit: 1048576,
                ports: Some("20000-20019".into()),
            })
        );
        assert_eq!(
            parse_line(CLIENT_PROGRESS).unwrap(),
            Message::Progress(Progress {
                role: Role::Client,
                t: 1732233600.373,
                established: 1200,
                failed: 36,
                errors: BTreeMap::from([("ECONNREFUSED".into(), 36)]),
                rate: 4800.0,
                in_flight: Some(64),
                attempted: Some(1300),
                target: Some(3000),
                accepted: None,
                closed: None,
            })
        );
        match parse_line(SERVER_PROGRESS).unwrap() {
            Message::Progress(p) => {
                assert_eq!(p.role, Role::Server);
                assert_eq!(
                    (p.established, p.accepted, p.closed),
                    (3600, Some(3600), Some(0))
                );
                assert_eq!(p.in_flight, None);
                assert!(p.errors.is_empty());
            }
            other => panic!("expected progress, got {other:?}"),
        }
        assert_eq!(
            parse_line(REACHED).unwrap(),
            Message::Reached(Reached {
                role: Role::Client,
                t: 1732233601.0,
                established: 3000,
                elapsed: 0.61
            })
        );
        assert_eq!(
            parse_line(SIGNAL).unwrap(),
            Message::Signal(Signal {
                role: Role::Client,
                t: 1732233602.0,
                signal: "SIGINT".into(),
                on_exit: Some("fin".into()),
                established: 3000
            })
        );
        match parse_line(SUMMARY).unwrap() {
            Message::Summary(s) => {
                assert_eq!(
                    (s.peak_established, s.closed, s.elapsed),
                    (3600, Some(3600), 12.3)
                )
            }
            other => panic!("expected summary, got {other:?}"),
        }
    }

    #[test]
    fn tolerated_variations() {
        // Unknown keys, an unknown kind, surrounding whitespace and a CRLF ending.
        let extra = r#"{"v":1,"kind":"reached","role":"client","t":1.0,"established":5,"elapsed":0.1,"new_field":[1,2]}"#;
        assert!(matches!(parse_line(extra).unwrap(), Message::Reached(_)));
        let other = r#"{"v":1,"kind":"histogram","buckets":[1,2,3]}"#;
        assert_eq!(
            parse_line(other).unwrap(),
            Message::Other {
                kind: "histogram".into()
            }
        );
        let padded = format!("  {REACHED}\r\n");
        assert!(matches!(parse_line(&padded).unwrap(), Message::Reached(_)));
    }

    #[test]
    fn rejected_lines() {
        let cases: &[(&str, &str)] = &[
            // (line, text the error message must contain)
            (
                r#"{"v":2,"kind":"start"}"#,
                "protocol v=2 but this runner only understands v=1",
            ),
            (r#"{"kind":"start"}"#, "no integer \"v\""),
            (r#"{"v":"1","kind":"start"}"#, "no integer \"v\""),
            (r#"{"v":1}"#, "no string \"kind\""),
            ("Segmentation fault", "not a JSON object"),
            ("Segmentation fault", "\"Segmentation fault\""),
            ("42", "expected an object"),
            (
                r#"{"v":1,"kind":"progress","role":"client","t":1.0}"#,
                "malformed storm-load \"progress\" message (missing field `established`",
            ),
            (
                r#"{"v":1,"kind":"reached","role":"router","t":1.0,"established":5,"elapsed":0.1}"#,
                "unknown variant `router`",
            ),
            (
                r#"{"v":1,"kind":"reached","role":"client","t":1.0,"established":-5,"elapsed":0.1}"#,
                "malformed storm-load \"reached\"",
            ),
        ];
        for (line, want) in cases {
            let err = parse_line(line).expect_err(line).to_string();
            assert!(
                err.contains(want),
                "line {line:?}: error {err:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn long_garbage_is_quoted_truncated() {
        let line = "é".repeat(500);
        let err = parse_line(&line).unwrap_err().to_string();
        assert!(err.contains(&"é".repeat(QUOTE_MAX)));
        assert!(!err.contains(&"é".repeat(QUOTE_MAX + 1)));
        assert!(err.contains("...\""));
    }

    #[test]
    fn errno_formatting() {
        let cases: &[(&[(&str, u64)], &str)] = &[
            (&[], ""),
            (
                &[("ETIMEDOUT", 1), ("ECONNREFUSED", 3)],
                "ECONNREFUSED=3;ETIMEDOUT=1",
            ),
            (&[("EADDRNOTAVAIL", 0)], ""),
            (&[("EMFILE", 2), ("EADDRNOTAVAIL", 0)], "EMFILE=2"),
        ];
        for (errors, want) in cases {
            let map = errors
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>();
            assert_eq!(errors_by_errno(&map), *want, "{errors:?}");
        }
    }

    fn progress(
        t: f64,
        established: u64,
        failed: u64,
        errors: &[(&str, u64)],
        rate: f64,
    ) -> Progress {
        Progress {
            role: Role::Client,
            t,
            established,
            failed,
            errors: errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            rate,
            in_flight: Some(10),
            attempted: None,
            target: None,
            accepted: None,
            closed: None,
        }
    }

    #[test]
    fn aggregate_keeps_latest_per_source() {
        let mut agg = Aggregate::new();
        assert_eq!((agg.established(), agg.failed(), agg.rate()), (0, 0, 0.0));
        assert_eq!(format!("{:.0}/s", agg.rate()), "0/s", "not -0/s");
        agg.update("c1", progress(1.0, 100, 1, &[("ECONNREFUSED", 1)], 100.0));
        agg.update(
            "c2",
            progress(1.0, 200, 2, &[("ECONNREFUSED", 1), ("ETIMEDOUT", 1)], 200.0),
        );
        // A newer line of c1 replaces its older one instead of adding to it.
        agg.update("c1", progress(2.0, 150, 3, &[("ECONNREFUSED", 3)], 50.0));
        // A stale line of c2 (older t) is ignored.
        agg.update("c2", progress(0.5, 10, 0, &[], 10.0));
        agg.update("c3", progress(2.0, 300, 0, &[], 300.0));

        assert_eq!(agg.sources(), 3);
        assert_eq!(agg.established(), 150 + 200 + 300);
        assert_eq!(agg.failed(), 3 + 2);
        assert_eq!(agg.rate(), 50.0 + 200.0 + 300.0);
        assert_eq!(agg.in_flight(), 30);
        assert_eq!(errors_by_errno(&agg.errors()), "ECONNREFUSED=4;ETIMEDOUT=1");
        assert_eq!(agg.latest("c2").map(|p| p.established), Some(200));
    }
}
