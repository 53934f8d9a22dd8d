//! JSON lines of a run's events (`nicstorm run --events-json FILE`), for a tool that follows a
//! run: one object per event, written and flushed as it happens. Each line is the event
//! (event.rs, tagged `event`) with `v`, the format's version, and `time`, the host's clock
//! (RFC 3339, UTC; `at` is the observe event's own field). docs/schemas/events.schema.json is the schema of one line.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::{Event, Reporter};

/// The version of the lines; it changes on an incompatible change (readers ignore unknown keys).
pub const EVENTS_VERSION: u32 = 1;

pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLines {
    /// Lines into `path`, created or truncated. A FIFO works too: `mkfifo f; tool < f &`.
    pub fn create(path: &Path) -> Result<JsonLines> {
        let f = std::fs::File::create(path)
            .with_context(|| format!("--events-json: creating {}", path.display()))?;
        Ok(JsonLines::to(Box::new(f)))
    }

    pub fn to(out: Box<dyn Write + Send>) -> JsonLines {
        JsonLines {
            out: Mutex::new(out),
        }
    }
}

/// One event as its line's object.
pub fn event_json(e: &Event) -> serde_json::Value {
    let mut line = match serde_json::to_value(e) {
        Ok(serde_json::Value::Object(fields)) => fields,
        // Every event is a struct or a struct variant (the json tests hold each): not reached.
        other => {
            let mut line = serde_json::Map::new();
            line.insert("event".into(), "unserializable".into());
            line.insert("debug".into(), format!("{other:?}").into());
            line
        }
    };
    // No event has a field of these names (the tests check): they cannot hide one.
    line.insert("v".into(), EVENTS_VERSION.into());
    line.insert(
        "time".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    serde_json::Value::Object(line)
}

impl Reporter for JsonLines {
    fn event(&self, e: &Event) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A follower that went away must not stop the run: a failed write is dropped.
        let _ = writeln!(out, "{}", event_json(e)).and_then(|()| out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::plain::tests::{every_event, every_step};
    use crate::progress::{ErrorChain, Warning};

    fn schema() -> jsonschema::Validator {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas/events.schema.json"),
        )
        .unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// Every kind of event, every step and both ways a report ends, as lines the schema takes.
    #[test]
    fn every_event_line_matches_the_schema() {
        let schema = schema();
        let mut events: Vec<Event> = every_event().into_iter().map(|(e, _)| e).collect();
        events.extend(every_step().into_iter().map(|(s, _)| Event::Phase(s)));
        events.push(Event::RunFinished {
            summary_table: String::new(),
            results: "r/x/cells.csv".into(),
            summary: "r/x/summary.md".into(),
            report: Ok("r/x/report.html".into()),
        });
        events.push(Event::Warning(Warning::ProvisionCsv(ErrorChain(vec![
            "a".into(),
            "b".into(),
        ]))));
        let mut kinds = std::collections::BTreeSet::new();
        for e in &events {
            let fields = serde_json::to_value(e).unwrap();
            assert!(
                fields.get("v").is_none() && fields.get("time").is_none(),
                "{fields}"
            );
            let line = event_json(e);
            let errors: Vec<String> = schema.iter_errors(&line).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{line}\n{errors:#?}");
            // And it is one line of text.
            assert!(!line.to_string().contains('\n'));
            kinds.insert(line["event"].as_str().unwrap().to_owned());
        }
        // Each kind of event the schema names was checked at least once.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas/events.schema.json"),
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let named: std::collections::BTreeSet<String> = doc["properties"]["event"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, named);
    }

    #[test]
    fn lines_carry_their_data() {
        let e = &every_event()
            .into_iter()
            .find(|(e, _)| matches!(e, Event::CellFinished { .. }))
            .unwrap()
            .0;
        let line = event_json(e);
        assert_eq!(line["v"], 1);
        assert_eq!(line["event"], "cell_finished");
        assert_eq!(line["cell_id"], "9548db1d503b");
        assert_eq!(line["end"]["kind"], "verdict");
        assert_eq!(line["end"]["verdict"], "ok");
        let hold = event_json(&Event::Phase(crate::progress::Step::Hold {
            baseline: std::time::Duration::from_millis(2500),
        }));
        assert_eq!(
            (&hold["event"], &hold["step"], &hold["baseline"]),
            (&"phase".into(), &"hold".into(), &2.5.into())
        );
        // The reporter writes one flushed line per event.
        let out = Captured::default();
        let rep = JsonLines::to(Box::new(out.clone()));
        rep.event(e);
        rep.event(&Event::RunTornDown);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["event"], "run_torn_down");
    }

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
