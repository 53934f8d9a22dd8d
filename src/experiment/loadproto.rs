//! Parses storm-load's JSON-lines protocol (version 1, docs/ARCHITECTURE.md) and folds the
//! progress of several clients into totals.
//!
//! The messages are storm-proto's (proto/), the types storm-load writes, read here with their
//! `Deserialize` (the crate's `serde` feature). Readers must ignore unknown keys (the contract
//! lets storm-load add fields without a version bump), so none of them deny unknown fields.
//! Keys the contract documents for both roles are required; keys it documents for one role
//! only are `Option`.

use std::collections::BTreeMap;

pub(crate) use storm_proto::{Progress, Reached, Signal, Start, Summary};

use crate::lab::Role;

/// The only protocol version this runner understands.
pub(crate) const PROTOCOL_VERSION: u64 = storm_proto::VERSION as u64;

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
    // The message from the line itself rather than from `value`, whose map is sorted by key:
    // `errors` keeps the order storm-load wrote.
    let text = line.trim();
    let msg = match kind.as_str() {
        "start" => Message::Start(serde_json::from_str(text).map_err(shape)?),
        "progress" => Message::Progress(serde_json::from_str(text).map_err(shape)?),
        "reached" => Message::Reached(serde_json::from_str(text).map_err(shape)?),
        "signal" => Message::Signal(serde_json::from_str(text).map_err(shape)?),
        "summary" => Message::Summary(serde_json::from_str(text).map_err(shape)?),
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

/// The latest progress of each of several storm-load streams (one per client VM, keyed by its
/// role in the lab), folded into totals. Progress counters are cumulative per stream, so only
/// the latest line of each counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregate {
    latest: BTreeMap<Role, Progress>,
}

impl Aggregate {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records `progress` as the latest of the stream of `source` (a client VM). A line older
    /// than the one already held is ignored: streams read over separate SSH sessions may be
    /// handed to us out of order, and counters must not step backwards.
    pub(crate) fn update(&mut self, source: Role, progress: Progress) {
        match self.latest.get_mut(&source) {
            Some(held) if held.t > progress.t => {}
            Some(held) => *held = progress,
            None => {
                self.latest.insert(source, progress);
            }
        }
    }

    /// Number of streams that have reported at least once. Only the unit tests ask (issue 11:
    /// kept for them, compiled only for them), as for `established` and `in_flight`.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.latest.len()
    }

    pub(crate) fn latest(&self, source: Role) -> Option<&Progress> {
        self.latest.get(&source)
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
            for (name, n) in p.errors.iter() {
                *merged.entry(name.to_owned()).or_insert(0) += n;
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The protocol's role (server or client) in the messages; the lab's (which VM) keys streams.
    use crate::lab::Role as Vm;
    use storm_proto::{ErrnoCounts, Role};

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
                ports: Some("20000-20019".parse().unwrap()),
                ..Start::new(Role::Server, 1732233600.123, 123, 2, 1048576)
            })
        );
        assert_eq!(
            parse_line(CLIENT_PROGRESS).unwrap(),
            Message::Progress(Progress {
                role: Role::Client,
                t: 1732233600.373,
                established: 1200,
                failed: 36,
                errors: ErrnoCounts(vec![("ECONNREFUSED".into(), 36)]),
                rate: 4800.0,
                in_flight: Some(64),
                attempted: Some(1300),
                target: Some(3000),
                accepted: None,
                closed: None,
                resets: None,
                bulk_tx_bytes: None,
                bulk_rx_bytes: None,
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
                elapsed: 0.61,
                attempted: None,
                failed: None,
                target: None,
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

    /// Every kind of message, for each role that writes it, as storm-load fills it in: every
    /// field of its role set (floats exact at the writer's decimals, errors out of name order).
    fn written_by_storm_load() -> Vec<Message> {
        let errors = ErrnoCounts(vec![("EMFILE".into(), 2), ("ECONNREFUSED".into(), 36)]);
        let client_progress = Progress {
            role: Role::Client,
            t: 1732233600.125,
            established: 1200,
            failed: 38,
            errors: errors.clone(),
            rate: 4800.5,
            in_flight: Some(64),
            attempted: Some(1300),
            target: Some(3000),
            accepted: None,
            closed: Some(36),
            resets: Some(4),
            bulk_tx_bytes: Some(131072),
            bulk_rx_bytes: Some(65536),
        };
        let server_summary = Summary {
            role: Role::Server,
            t: 1732233603.5,
            elapsed: 12.25,
            established: 0,
            failed: 0,
            errors: ErrnoCounts::default(),
            peak_established: 3600,
            accepted: Some(3600),
            closed: Some(3600),
            attempted: None,
            resets: Some(40),
            target: None,
            ramp_elapsed: None,
            cpu_user: Some(0.5),
            cpu_sys: Some(0.875),
            bulk_tx_bytes: Some(0),
            bulk_rx_bytes: Some(0),
        };
        let client_summary = Summary {
            role: Role::Client,
            established: 3000,
            failed: 38,
            errors: errors.clone(),
            peak_established: 3000,
            accepted: None,
            closed: Some(0),
            attempted: Some(3038),
            target: Some(3038),
            ramp_elapsed: Some(0.375),
            ..server_summary.clone()
        };
        vec![
            Message::Start(Start {
                ports: Some("20000-20019".parse().unwrap()),
                bulk_out: Some(4),
                ..Start::new(Role::Server, 1732233600.125, 123, 2, 1048576)
            }),
            Message::Start(Start {
                target: Some("10.213.0.10:20000-20019".into()),
                count: Some(3000),
                concurrency: Some(500),
                rate_limit: Some(0),
                on_exit: Some("rst".into()),
                bulk_in: Some(2),
                ..Start::new(Role::Client, 1732233600.25, 124, 6, 1048576)
            }),
            Message::Progress(client_progress.clone()),
            Message::Progress(Progress {
                role: Role::Server,
                in_flight: None,
                attempted: None,
                target: None,
                accepted: Some(1236),
                ..client_progress
            }),
            Message::Reached(Reached {
                role: Role::Client,
                t: 1732233601.0,
                established: 2962,
                elapsed: 0.625,
                attempted: Some(3000),
                failed: Some(38),
                target: Some(3000),
            }),
            Message::Signal(Signal {
                on_exit: Some("fin".into()),
                ..Signal::new(Role::Client, 1732233602.0, "SIGINT", 2962)
            }),
            Message::Signal(Signal::new(Role::Server, 1732233602.0, "SIGTERM", 3600)),
            Message::Summary(server_summary),
            Message::Summary(client_summary.clone()),
            // A ramp that never ended: `null`.
            Message::Summary(Summary {
                ramp_elapsed: None,
                ..client_summary
            }),
        ]
    }

    #[test]
    fn what_storm_load_writes_the_runner_reads() {
        let messages = written_by_storm_load();
        let mut kinds = std::collections::BTreeSet::new();
        for m in messages {
            let (kind, line) = match &m {
                Message::Start(s) => ("start", s.to_line()),
                Message::Progress(p) => ("progress", p.to_line()),
                Message::Reached(r) => ("reached", r.to_line()),
                Message::Signal(s) => ("signal", s.to_line()),
                Message::Summary(s) => ("summary", s.to_line()),
                Message::Other { .. } => unreachable!("storm-load writes known kinds"),
            };
            kinds.insert(kind);
            assert_eq!(parse_line(&line).unwrap(), m, "{line}");
            // Through a line as it arrives, too: with its newline.
            assert_eq!(parse_line(&format!("{line}\n")).unwrap(), m, "{line}");
        }
        assert_eq!(kinds.len(), 5, "every kind: {kinds:?}");
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
            resets: None,
            bulk_tx_bytes: None,
            bulk_rx_bytes: None,
        }
    }

    #[test]
    fn aggregate_keeps_latest_per_source() {
        let mut agg = Aggregate::new();
        assert_eq!((agg.established(), agg.failed(), agg.rate()), (0, 0, 0.0));
        assert_eq!(format!("{:.0}/s", agg.rate()), "0/s", "not -0/s");
        agg.update(
            Vm::Client(1),
            progress(1.0, 100, 1, &[("ECONNREFUSED", 1)], 100.0),
        );
        agg.update(
            Vm::Client(2),
            progress(1.0, 200, 2, &[("ECONNREFUSED", 1), ("ETIMEDOUT", 1)], 200.0),
        );
        // A newer line of c1 replaces its older one instead of adding to it.
        agg.update(
            Vm::Client(1),
            progress(2.0, 150, 3, &[("ECONNREFUSED", 3)], 50.0),
        );
        // A stale line of c2 (older t) is ignored.
        agg.update(Vm::Client(2), progress(0.5, 10, 0, &[], 10.0));
        agg.update(Vm::Client(3), progress(2.0, 300, 0, &[], 300.0));

        assert_eq!(agg.sources(), 3);
        assert_eq!(agg.established(), 150 + 200 + 300);
        assert_eq!(agg.failed(), 3 + 2);
        assert_eq!(agg.rate(), 50.0 + 200.0 + 300.0);
        assert_eq!(agg.in_flight(), 30);
        assert_eq!(errors_by_errno(&agg.errors()), "ECONNREFUSED=4;ETIMEDOUT=1");
        assert_eq!(agg.latest(Vm::Client(2)).map(|p| p.established), Some(200));
    }
}
