//! JUnit XML of a run (`nicstorm run --junit FILE`), for CI dashboards: one test case per
//! cell x repetition (and search step) the run recorded. A row in `error` is an `<error>`; a
//! row whose verdict is among `--fail-on-verdict` is a `<failure>` named by the verdict; a
//! `not_applicable` row (unless named) is `<skipped>`; every other row passes, its verdict
//! and figures in `<system-out>`. The layout is the common one (Jenkins' and GitLab's readers,
//! junit-xml's schema): `<testsuites>` holding one `<testsuite>` per matrix.

use std::fmt::Write;

use super::CellRow;
use crate::model::verdict::Verdict;
use crate::support::markup::escape;

/// What a run's JUnit file holds: the rows of one run over `matrix`.
pub(crate) struct JunitRun<'a> {
    pub(crate) matrix: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) host: Option<&'a str>,
    pub(crate) rows: Vec<&'a CellRow>,
    /// Verdicts that fail a test case (`error` always does, as an error).
    pub(crate) fail_on: &'a [Verdict],
}

/// How one row ends as a test case.
enum Outcome {
    Pass,
    Failure,
    Error,
    Skipped,
}

fn outcome(r: &CellRow, fail_on: &[Verdict]) -> Outcome {
    match r.verdict.known() {
        Some(Verdict::Error) => Outcome::Error,
        Some(v) if fail_on.contains(v) => Outcome::Failure,
        Some(Verdict::NotApplicable) => Outcome::Skipped,
        Some(_) => Outcome::Pass,
        // A verdict a newer build wrote: not one this build can judge.
        None => Outcome::Failure,
    }
}

/// XML text: escaped, and without the control characters XML 1.0 cannot hold.
fn text(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .collect();
    escape(&clean)
}

/// Seconds between the row's start and end (0 when either is unreadable).
fn seconds(r: &CellRow) -> f64 {
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (at(&r.started_at), at(&r.finished_at)) {
        (Some(a), Some(b)) => ((b - a).num_milliseconds().max(0) as f64) / 1000.0,
        _ => 0.0,
    }
}

/// The test case's name: "9548db1d503b r1" ("... s3" for a search step), then the cell's axes.
fn case_name(r: &CellRow) -> String {
    let step = r.search_step.map_or(String::new(), |s| format!(" s{s}"));
    let axes: Vec<String> = r.named_axes().into_iter().map(|(_, v)| v).collect();
    format!(
        "{} r{}{step} {}/{}/{}/{}",
        r.cell_id,
        r.repetition,
        r.nic,
        r.mode,
        axes.join("/"),
        r.target.unwrap_or(r.connections)
    )
}

/// What a row measured, for `<system-out>` and a failure's body.
fn figures(r: &CellRow) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v}"));
    format!(
        "verdict {}; peak {}/{}; drain_seconds {}; recovery_seconds {}; ssh_max_seconds {}; accel {}",
        r.verdict,
        r.peak_established.map_or("-".into(), |v| v.to_string()),
        r.target.map_or("-".into(), |v| v.to_string()),
        f(r.drain_seconds),
        f(r.recovery_seconds),
        f(r.ssh_max_seconds),
        r.accel.as_ref().map_or("-".into(), |a| a.to_string()),
    )
}

/// The JUnit XML document of `run`.
pub(crate) fn junit_xml(run: &JunitRun<'_>) -> String {
    let (mut failures, mut errors, mut skipped, mut time) = (0, 0, 0, 0.0);
    let mut cases = String::new();
    for r in &run.rows {
        let secs = seconds(r);
        time += secs;
        let _ = writeln!(
            cases,
            "    <testcase classname=\"nicstorm.{}\" name=\"{}\" time=\"{secs:.3}\">",
            text(run.matrix),
            text(&case_name(r))
        );
        let why = r.error.as_deref().unwrap_or("");
        match outcome(r, run.fail_on) {
            Outcome::Pass => {}
            Outcome::Error => {
                errors += 1;
                let phase = r.error_phase.as_ref().map_or("-".into(), |p| p.to_string());
                let _ = writeln!(
                    cases,
                    "      <error type=\"error\" message=\"harness error in {}: {}\">{}</error>",
                    text(&phase),
                    text(why.lines().next().unwrap_or("")),
                    text(why)
                );
            }
            Outcome::Failure => {
                failures += 1;
                let _ = writeln!(
                    cases,
                    "      <failure type=\"{}\" message=\"verdict {}{}\">{}</failure>",
                    text(r.verdict.as_str()),
                    text(r.verdict.as_str()),
                    if why.is_empty() {
                        String::new()
                    } else {
                        text(&format!(": {}", why.lines().next().unwrap_or("")))
                    },
                    text(&figures(r))
                );
            }
            Outcome::Skipped => {
                skipped += 1;
                let _ = writeln!(
                    cases,
                    "      <skipped message=\"not_applicable: {}\"/>",
                    text(why)
                );
            }
        }
        let _ = writeln!(
            cases,
            "      <system-out>{}</system-out>\n    </testcase>",
            text(&figures(r))
        );
    }
    let tests = run.rows.len();
    let stamp = run
        .rows
        .iter()
        .map(|r| r.started_at.as_str())
        .min()
        .unwrap_or("");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"nicstorm\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"nicstorm.{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{}\" hostname=\"{}\">",
        text(run.matrix),
        text(stamp),
        text(run.host.unwrap_or("unknown"))
    );
    let fail_on: Vec<&str> = run.fail_on.iter().map(|v| v.as_str()).collect();
    let _ = writeln!(
        out,
        "    <properties>\n      <property name=\"run_id\" value=\"{}\"/>\n      <property name=\"fail_on_verdict\" value=\"{}\"/>\n    </properties>",
        text(run.run_id),
        text(&fail_on.join(","))
    );
    out.push_str(&cases);
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<CellRow> {
        let mut hung = CellRow::example("c-hung", 1, "hung");
        hung.error = Some("heartbeat gap 9.0s <& \u{1b}[0m".into());
        let mut err = CellRow::example("c-err", 1, "error");
        err.error_phase = Some(crate::model::phase::Phase::Ramp.into());
        let mut na = CellRow::example("c-na", 1, "not_applicable");
        na.error = Some("vhost on under tcg".into());
        let mut step = CellRow::example("c-search", 2, "ssh_dropped");
        step.search_step = Some(3);
        vec![CellRow::example("c-ok", 1, "ok"), hung, err, na, step]
    }

    /// The document parses as XML, and its structure is JUnit's: the counts agree with the
    /// cases, each case has at most one outcome element, the attributes CI readers use are
    /// there. (tests/junit.rs reads a run's file with a JUnit parser.)
    #[test]
    fn junit_structure() {
        let rows = rows();
        let xml = junit_xml(&JunitRun {
            matrix: "ci-smoke",
            run_id: "a1b2c3",
            host: Some("h"),
            rows: rows.iter().collect(),
            fail_on: &[Verdict::Hung],
        });
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let suites = doc.root_element();
        assert_eq!(suites.tag_name().name(), "testsuites");
        let suite = suites
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 5);
        let count = |tag: &str| {
            cases
                .iter()
                .filter(|c| c.children().any(|n| n.has_tag_name(tag)))
                .count()
                .to_string()
        };
        assert_eq!(suite.attribute("tests"), Some("5"));
        assert_eq!(suite.attribute("failures"), Some(count("failure").as_str()));
        assert_eq!(suite.attribute("errors"), Some(count("error").as_str()));
        assert_eq!(suite.attribute("skipped"), Some(count("skipped").as_str()));
        assert_eq!(
            (count("failure"), count("error"), count("skipped")),
            ("1".into(), "1".into(), "1".into())
        );
        let hung = cases
            .iter()
            .find(|c| c.attribute("name").unwrap().starts_with("c-hung r1 "))
            .unwrap();
        let failure = hung.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(failure.attribute("type"), Some("hung"));
        assert_eq!(
            failure.attribute("message"),
            Some("verdict hung: heartbeat gap 9.0s <& [0m")
        );
        // ssh_dropped is not named: the search step passes.
        let step = cases
            .iter()
            .find(|c| c.attribute("name").unwrap().starts_with("c-search r2 s3 "))
            .unwrap();
        assert!(!step
            .children()
            .any(|n| n.has_tag_name("failure") || n.has_tag_name("error")));
        for c in &cases {
            assert_eq!(c.attribute("classname"), Some("nicstorm.ci-smoke"));
            assert!(c.attribute("time").unwrap().parse::<f64>().is_ok());
        }
    }

    /// A JUnit parser (junit-parser, as CI dashboards read these files) reads the document
    /// into the cases and outcomes the rows say.
    #[test]
    fn a_junit_parser_reads_it() {
        let rows = rows();
        let xml = junit_xml(&JunitRun {
            matrix: "ci-smoke",
            run_id: "a1b2c3",
            host: None,
            rows: rows.iter().collect(),
            fail_on: &[Verdict::Hung, Verdict::SshDropped],
        });
        let suites = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert_eq!(suites.suites.len(), 1);
        let suite = &suites.suites[0];
        assert_eq!(suite.name, "nicstorm.ci-smoke");
        assert_eq!(
            (suite.tests, suite.failures, suite.errors, suite.skipped),
            (5, 2, 1, 1)
        );
        assert_eq!(suites.tests, 5);
        let status = |prefix: &str| {
            &suite
                .cases
                .iter()
                .find(|c| c.original_name.starts_with(prefix))
                .unwrap_or_else(|| panic!("no case {prefix}"))
                .status
        };
        assert!(status("c-ok r1 ").is_success());
        assert!(status("c-err r1 ").is_error());
        assert!(status("c-na r1 ").is_skipped());
        assert!(status("c-search r2 s3 ").is_failure());
        match status("c-hung r1 ") {
            junit_parser::TestStatus::Failure(f) => {
                assert_eq!(f.failure_type, "hung");
                assert!(f.text.starts_with("verdict hung; peak "), "{}", f.text);
            }
            other => panic!("{other:?}"),
        }
    }
}
