//! Breaking-point search, the pure part: from a spec and the steps run so far, the next value
//! to run, or the bracket found and why the search stopped. A search varies the connection
//! count (ok below the breaking point, failing above it) or one variable of QEMU's
//! environment from an emulator recipe, whose ok side the matrix names (`ok: above` for a
//! bucket depth or a refill rate: the larger, the fewer refusals).
//!
//! "ok" is verdict `ok`. Every other verdict except `error` (ssh_slow, ssh_dropped, hung,
//! crashed, not_reached) is a failure of that count: the search looks for the smallest count
//! at which the cell stops being fine, whichever way it stops. An `error` row is the harness
//! failing, not the cell, so it does not count as a step and the same count runs again, at
//! most [`MAX_RETRIES`] times in a row.
//!
//! The order: the end expected ok first (`from` for connections; a failure there ends the
//! search), then the other end (ok there ends it: nothing failed across the range), then
//! geometric bisection between the ok value nearest the failing side and the failing value
//! nearest the ok side, because the range spans orders of magnitude (2k..1M). It stops when
//! the two are within `resolution` of each other (larger / smaller <= 1 + resolution) or
//! after `max_steps` steps. Below, "count" is the searched value, whichever it is.

use crate::model::named::Named;
use crate::model::verdict::Verdict;

/// On which side of the breaking point a searched value is ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OkSide {
    /// Ok at small values, failing at large ones (connections).
    Below,
    /// Ok at large values, failing at small ones (a bucket depth, a refill rate).
    Above,
}

impl OkSide {
    /// `value` ordered by how hard it is on the cell: the larger, the nearer failing.
    fn severity(self, value: u64) -> i128 {
        match self {
            OkSide::Below => i128::from(value),
            OkSide::Above => -i128::from(value),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OkSide::Below => "below",
            OkSide::Above => "above",
        }
    }
}

/// What a search varies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Searched {
    /// The connection count (ok below the breaking point).
    Connections,
    /// One variable of QEMU's environment (an emulator recipe's), the connection count fixed.
    Env { name: String, ok: OkSide },
}

impl Searched {
    pub(crate) fn ok_side(&self) -> OkSide {
        match self {
            Searched::Connections => OkSide::Below,
            Searched::Env { ok, .. } => *ok,
        }
    }

    /// As the row's `search_param` column writes it: `connections`, or
    /// `qemu_env.NAME:ok_above` / `qemu_env.NAME:ok_below`.
    pub(crate) fn column(&self) -> String {
        match self {
            Searched::Connections => "connections".into(),
            Searched::Env { name, ok } => format!("qemu_env.{name}:ok_{}", ok.as_str()),
        }
    }

    /// The column read back; empty (rows written before the column existed) is a search over
    /// connections. None for a text this build cannot read.
    pub(crate) fn parse_column(text: Option<&str>) -> Option<Searched> {
        let text = text.unwrap_or("").trim();
        if text.is_empty() || text == "connections" {
            return Some(Searched::Connections);
        }
        let (name, ok) = text.strip_prefix("qemu_env.")?.rsplit_once(":ok_")?;
        let ok = match ok {
            "above" => OkSide::Above,
            "below" => OkSide::Below,
            _ => return None,
        };
        (!name.is_empty()).then(|| Searched::Env {
            name: name.to_owned(),
            ok,
        })
    }

    /// How people read it: `connections`, or the variable's short name (`BURST`).
    pub(crate) fn short_name(&self) -> &str {
        match self {
            Searched::Connections => "connections",
            Searched::Env { name, .. } => crate::matrix::plan::short_env_name(name),
        }
    }
}

/// What the matrix asks of one search.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SearchSpec {
    /// What the search varies.
    pub(crate) param: Searched,
    /// Smallest value tried; >= 1.
    pub(crate) from: u64,
    /// Largest value tried; >= from.
    pub(crate) to: u64,
    /// Relative width at which the bracket is resolved, e.g. 0.10: stop when the larger of
    /// last_ok and first_fail is at most 1.10 times the smaller.
    pub(crate) resolution: f64,
    /// Steps (rows that are not `error`) at most.
    pub(crate) max_steps: u32,
}

impl SearchSpec {
    /// The spec with `from` and `to` clamped to `max`: under TCG no target runs above
    /// tcg_connections, so a search over connections there spans [from, tcg_connections] at
    /// most. A search over anything else is not capped.
    pub(crate) fn capped(&self, max: u64) -> SearchSpec {
        if self.param != Searched::Connections {
            return self.clone();
        }
        SearchSpec {
            from: self.from.min(max),
            to: self.to.min(max),
            ..self.clone()
        }
    }

    /// Why the spec cannot be searched, for the matrix's validation to report; None if it can.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.from == 0 {
            Some("from is 0; it must be at least 1 (the search bisects geometrically)".into())
        } else if self.to < self.from {
            Some(format!("to ({}) is below from ({})", self.to, self.from))
        } else if !(self.resolution > 0.0 && self.resolution.is_finite()) {
            Some(format!(
                "resolution must be a positive fraction such as 0.10, not {}",
                self.resolution
            ))
        } else if self.max_steps == 0 {
            Some("max_steps is 0; it must be at least 1".into())
        } else {
            None
        }
    }
}

/// How one step's row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Verdict `ok`.
    Ok,
    /// Any other verdict but `error`.
    Fail,
    /// Verdict `error`: the harness failed; the count runs again.
    Retry,
}

impl Outcome {
    /// The outcome of a row with `verdict` (a verdict this build does not know, from a newer
    /// build's row, is neither ok nor the harness failing: it fails the count).
    pub(crate) fn of_verdict(verdict: &Named<Verdict>) -> Outcome {
        match verdict.known() {
            Some(Verdict::Ok) => Outcome::Ok,
            Some(Verdict::Error) => Outcome::Retry,
            _ => Outcome::Fail,
        }
    }
}

/// Errors in a row at one count after which the search gives up instead of running it again.
pub(crate) const MAX_RETRIES: usize = 2;

/// Why a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// last_ok and first_fail are within the resolution.
    Resolved,
    /// max_steps steps ran first.
    StepLimit,
    /// The far end (`to` for connections) was ok: nothing failed across the range.
    NoneFailed,
    /// The end expected ok (`from` for connections) already failed.
    FailedAtStart,
    /// The same count ended in `error` more than MAX_RETRIES times in a row.
    Retries,
}

impl Stop {
    /// Its name in events and JSON: `resolved`, `step_limit`, `none_failed`,
    /// `failed_at_start` (the end expected ok failed: `from` for connections, `to` for a search
    /// ok above), `retries`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Stop::Resolved => "resolved",
            Stop::StepLimit => "step_limit",
            Stop::NoneFailed => "none_failed",
            Stop::FailedAtStart => "failed_at_start",
            Stop::Retries => "retries",
        }
    }
}

/// Where the breaking point lies, from the steps so far. "Nearer failing" is larger for a
/// search that is ok below ([`OkSide::Below`], connections), smaller for one ok above.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bracket {
    /// The ok count nearest the failing side that is not beyond first_fail (the one nearest
    /// failing if none failed): for connections, the largest ok count below first_fail.
    pub(crate) last_ok: Option<u64>,
    /// The failing count nearest the ok side: for connections, the smallest that failed.
    pub(crate) first_fail: Option<u64>,
    /// Steps that counted (not `error`).
    pub(crate) steps: u32,
    /// Counts that were ok at or beyond first_fail, ascending: the boundary is not sharp
    /// there (repetitions at one count would tell how often each way).
    pub(crate) flapping: Vec<u64>,
    /// Why the search ended; None while it goes on.
    pub(crate) stop: Option<Stop>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Run one step at this many connections.
    Run(u64),
    Done(Bracket),
}

/// The bracket the steps `results` (count, outcome) show for a search ok on side `ok`,
/// whatever spec produced them.
pub(crate) fn bracket(results: &[(u64, Outcome)], ok: OkSide) -> Bracket {
    let sev = |c: u64| ok.severity(c);
    let decisive = || results.iter().filter(|(_, o)| *o != Outcome::Retry);
    let first_fail = decisive()
        .filter(|(_, o)| *o == Outcome::Fail)
        .map(|(c, _)| *c)
        .min_by_key(|c| sev(*c));
    let beyond = |c: u64| first_fail.is_some_and(|f| sev(c) >= sev(f));
    let last_ok = decisive()
        .filter(|(c, o)| *o == Outcome::Ok && !beyond(*c))
        .map(|(c, _)| *c)
        .max_by_key(|c| sev(*c));
    let mut flapping: Vec<u64> = decisive()
        .filter(|(c, o)| *o == Outcome::Ok && beyond(*c))
        .map(|(c, _)| *c)
        .collect();
    flapping.sort_unstable();
    flapping.dedup();
    Bracket {
        last_ok,
        first_fail,
        steps: decisive().count() as u32,
        flapping,
        stop: None,
    }
}

/// The next step of the search `spec` after `results` (count, outcome) in the order they
/// ran. `spec` must be valid ([`SearchSpec::problem`] is None).
pub(crate) fn next(spec: &SearchSpec, results: &[(u64, Outcome)]) -> Next {
    let ok = spec.param.ok_side();
    let sev = |c: u64| ok.severity(c);
    // The end expected ok, run first, and the far end, run second.
    let (start, far) = match ok {
        OkSide::Below => (spec.from, spec.to),
        OkSide::Above => (spec.to, spec.from),
    };
    let mut b = bracket(results, ok);
    let done = |mut b: Bracket, stop| {
        b.stop = Some(stop);
        Next::Done(b)
    };
    // Errors in a row at the count the search is on.
    if let Some((count, Outcome::Retry)) = results.last() {
        let in_a_row = results
            .iter()
            .rev()
            .take_while(|(c, o)| c == count && *o == Outcome::Retry)
            .count();
        if in_a_row > MAX_RETRIES {
            return done(b, Stop::Retries);
        }
    }
    let tested = |count: u64| {
        results
            .iter()
            .any(|(c, o)| *c == count && *o != Outcome::Retry)
    };
    let at_limit = b.steps >= spec.max_steps;
    if !tested(start) {
        return if at_limit {
            done(b, Stop::StepLimit)
        } else {
            Next::Run(start)
        };
    }
    let Some(first_fail) = b.first_fail else {
        return if results
            .iter()
            .any(|(c, o)| sev(*c) >= sev(far) && *o == Outcome::Ok)
        {
            done(b, Stop::NoneFailed)
        } else if at_limit {
            done(b, Stop::StepLimit)
        } else {
            Next::Run(far)
        };
    };
    let Some(last_ok) = b.last_ok.filter(|_| sev(first_fail) > sev(start)) else {
        return done(b, Stop::FailedAtStart);
    };
    let (lo, hi) = (last_ok.min(first_fail), last_ok.max(first_fail));
    if hi as f64 <= lo as f64 * (1.0 + spec.resolution) {
        return done(b, Stop::Resolved);
    }
    if at_limit {
        return done(b, Stop::StepLimit);
    }
    let mid = (lo as f64 * hi as f64).sqrt();
    let between = |c: u64| lo < c && c < hi;
    match [round_significant(mid, 3), mid.round() as u64]
        .into_iter()
        .find(|c| between(*c))
    {
        Some(c) => Next::Run(c),
        None => {
            // Adjacent counts: nothing lies between them.
            b.stop = Some(Stop::Resolved);
            Next::Done(b)
        }
    }
}

/// `x` rounded to `digits` significant digits (44721.4 -> 44700), so the counts run read
/// like the numbers a person would pick.
fn round_significant(x: f64, digits: i32) -> u64 {
    if x < 1.0 {
        return x.round() as u64;
    }
    let scale = 10f64.powi(x.log10().floor() as i32 + 1 - digits);
    ((x / scale).round() * scale).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::{Fail, Ok as Good, Retry};

    const SPEC: SearchSpec = SearchSpec {
        param: Searched::Connections,
        from: 2_000,
        to: 1_000_000,
        resolution: 0.10,
        max_steps: 12,
    };

    fn done(last_ok: Option<u64>, first_fail: Option<u64>, steps: u32, stop: Stop) -> Next {
        Next::Done(Bracket {
            last_ok,
            first_fail,
            steps,
            flapping: vec![],
            stop: Some(stop),
        })
    }

    #[test]
    fn next_step_table() {
        let small = SearchSpec {
            max_steps: 3,
            ..SPEC
        };
        let narrow = SearchSpec {
            from: 1_000,
            to: 1_050,
            ..SPEC
        };
        type Case<'a> = (&'a str, &'a SearchSpec, Vec<(u64, Outcome)>, Next);
        let cases: Vec<Case> = vec![
            ("nothing run yet: from", &SPEC, vec![], Next::Run(2_000)),
            (
                "from ok: to",
                &SPEC,
                vec![(2_000, Good)],
                Next::Run(1_000_000),
            ),
            (
                "all ok",
                &SPEC,
                vec![(2_000, Good), (1_000_000, Good)],
                done(Some(1_000_000), None, 2, Stop::NoneFailed),
            ),
            (
                "all fail",
                &SPEC,
                vec![(2_000, Fail)],
                done(None, Some(2_000), 1, Stop::FailedAtStart),
            ),
            (
                "bisect geometrically, 3 significant digits",
                &SPEC,
                vec![(2_000, Good), (1_000_000, Fail)],
                Next::Run(44_700), // sqrt(2e9) = 44721
            ),
            (
                "then the upper half",
                &SPEC,
                vec![(2_000, Good), (1_000_000, Fail), (44_700, Good)],
                Next::Run(211_000), // sqrt(4.47e10) = 211424
            ),
            (
                "then the lower half",
                &SPEC,
                vec![(2_000, Good), (1_000_000, Fail), (44_700, Fail)],
                Next::Run(9_460), // sqrt(8.94e7) = 9455
            ),
            (
                "resolution reached",
                &SPEC,
                vec![
                    (2_000, Good),
                    (1_000_000, Fail),
                    (100_000, Good),
                    (109_000, Fail),
                ],
                done(Some(100_000), Some(109_000), 4, Stop::Resolved),
            ),
            (
                "from and to already within the resolution",
                &narrow,
                vec![(1_000, Good), (1_050, Fail)],
                done(Some(1_000), Some(1_050), 2, Stop::Resolved),
            ),
            (
                "step limit",
                &small,
                vec![(2_000, Good), (1_000_000, Fail), (44_700, Good)],
                done(Some(44_700), Some(1_000_000), 3, Stop::StepLimit),
            ),
            (
                "step limit before to",
                &SearchSpec {
                    max_steps: 1,
                    ..SPEC
                },
                vec![(2_000, Good)],
                done(Some(2_000), None, 1, Stop::StepLimit),
            ),
            (
                "an error reruns the same count and is no step",
                &SPEC,
                vec![(2_000, Good), (1_000_000, Retry)],
                Next::Run(1_000_000),
            ),
            (
                "an error at from",
                &SPEC,
                vec![(2_000, Retry), (2_000, Retry)],
                Next::Run(2_000),
            ),
            (
                "errors in a row give up",
                &SPEC,
                vec![
                    (2_000, Good),
                    (1_000_000, Retry),
                    (1_000_000, Retry),
                    (1_000_000, Retry),
                ],
                done(Some(2_000), None, 1, Stop::Retries),
            ),
            (
                "errors that were followed by a result do not add up",
                &small,
                vec![
                    (2_000, Retry),
                    (2_000, Retry),
                    (2_000, Good),
                    (1_000_000, Retry),
                    (1_000_000, Retry),
                    (1_000_000, Fail),
                ],
                Next::Run(44_700),
            ),
            (
                "adjacent counts cannot be split",
                &SearchSpec {
                    from: 1,
                    to: 2,
                    resolution: 0.01,
                    max_steps: 10,
                    ..SPEC
                },
                vec![(1, Good), (2, Fail)],
                done(Some(1), Some(2), 2, Stop::Resolved),
            ),
        ];
        for (name, spec, results, want) in cases {
            assert_eq!(spec.problem(), None, "{name}");
            assert_eq!(next(spec, &results), want, "{name}: {results:?}");
        }
    }

    #[test]
    fn flapping_verdicts_are_reported_and_the_lowest_failure_bounds() {
        // 211k failed but 500k was ok: the search narrows below the lowest failure and
        // says where it saw ok above it.
        let results = [
            (2_000, Good),
            (1_000_000, Fail),
            (44_700, Good),
            (211_000, Fail),
            (500_000, Good),
        ];
        let b = bracket(&results, OkSide::Below);
        assert_eq!((b.last_ok, b.first_fail), (Some(44_700), Some(211_000)));
        assert_eq!(b.flapping, [500_000]);
        assert_eq!(next(&SPEC, &results), Next::Run(97_100)); // sqrt(44.7k * 211k) = 97117
                                                              // Ok and failed at one count: that count flaps too.
        let b = bracket(
            &[(2_000, Good), (50_000, Fail), (50_000, Good)],
            OkSide::Below,
        );
        assert_eq!((b.last_ok, b.first_fail), (Some(2_000), Some(50_000)));
        assert_eq!(b.flapping, [50_000]);
        // A failure at from with an ok there as well still ends the search.
        let Next::Done(b) = next(&SPEC, &[(2_000, Good), (2_000, Fail)]) else {
            panic!("expected done");
        };
        assert_eq!(
            (b.stop, b.flapping),
            (Some(Stop::FailedAtStart), vec![2_000])
        );
    }

    #[test]
    fn a_clean_boundary_is_found_within_the_resolution() {
        for boundary in [2_001, 3_000, 47_000, 100_000, 612_345, 999_999] {
            let mut results = vec![];
            let bracket = loop {
                match next(&SPEC, &results) {
                    Next::Run(c) => {
                        assert!(results.iter().all(|(r, _)| *r != c), "{c} run twice");
                        results.push((c, if c < boundary { Good } else { Fail }));
                    }
                    Next::Done(b) => break b,
                }
            };
            assert_eq!(
                bracket.stop,
                Some(Stop::Resolved),
                "{boundary}: {results:?}"
            );
            let (lo, hi) = (bracket.last_ok.unwrap(), bracket.first_fail.unwrap());
            assert!(lo < boundary && boundary <= hi, "{boundary}: [{lo}, {hi}]");
            assert!(hi as f64 <= lo as f64 * 1.10, "{boundary}: [{lo}, {hi}]");
            // 2k..1M at 10%: 2 ends and at most ceil(log2(ln 500 / ln 1.1)) = 7 bisections.
            assert!(bracket.steps <= 9, "{boundary}: {} steps", bracket.steps);
            assert!(bracket.flapping.is_empty());
        }
    }

    /// A search over a bucket depth, ok above: `to` first, then `from`, then the same
    /// geometric bisection mirrored.
    #[test]
    fn a_search_ok_above_mirrors_the_connections_search() {
        let depth = SearchSpec {
            param: Searched::Env {
                name: "NICSTORM_VMNET_BURST".into(),
                ok: OkSide::Above,
            },
            from: 16,
            to: 4_096,
            resolution: 0.25,
            max_steps: 10,
        };
        assert_eq!(next(&depth, &[]), Next::Run(4_096));
        assert_eq!(next(&depth, &[(4_096, Good)]), Next::Run(16));
        assert_eq!(next(&depth, &[(4_096, Fail)]), {
            let mut b = bracket(&[(4_096, Fail)], OkSide::Above);
            b.stop = Some(Stop::FailedAtStart);
            Next::Done(b)
        });
        let Next::Done(b) = next(&depth, &[(4_096, Good), (16, Good)]) else {
            panic!("ok at both ends is done");
        };
        assert_eq!(
            (b.last_ok, b.first_fail, b.stop),
            (Some(16), None, Some(Stop::NoneFailed))
        );
        // sqrt(16 * 4096) = 256.
        assert_eq!(next(&depth, &[(4_096, Good), (16, Fail)]), Next::Run(256));
        // Ok at 256 moves the bracket down, a failure there moves it up.
        assert_eq!(
            next(&depth, &[(4_096, Good), (16, Fail), (256, Good)]),
            Next::Run(64)
        );
        assert_eq!(
            next(&depth, &[(4_096, Good), (16, Fail), (256, Fail)]),
            Next::Run(1_020) // sqrt(256 * 4096) = 1024, 3 significant digits
        );
        // Ok below a failure: flapping, and the failure nearest the ok side bounds.
        let b = bracket(
            &[(4_096, Good), (16, Fail), (256, Fail), (64, Good)],
            OkSide::Above,
        );
        assert_eq!(
            (b.last_ok, b.first_fail, b.flapping),
            (Some(4_096), Some(256), vec![64])
        );
        for boundary in [17, 100, 333, 2_000, 4_096] {
            let mut results = vec![];
            let b = loop {
                match next(&depth, &results) {
                    Next::Run(c) => {
                        assert!(results.iter().all(|(r, _)| *r != c), "{c} run twice");
                        results.push((c, if c >= boundary { Good } else { Fail }));
                    }
                    Next::Done(b) => break b,
                }
            };
            assert_eq!(b.stop, Some(Stop::Resolved), "{boundary}: {results:?}");
            let (ok, fail) = (b.last_ok.unwrap(), b.first_fail.unwrap());
            assert!(
                fail < boundary && boundary <= ok,
                "{boundary}: [{fail}, {ok}]"
            );
            assert!(
                ok as f64 <= fail as f64 * 1.25,
                "{boundary}: [{fail}, {ok}]"
            );
        }
    }

    #[test]
    fn the_search_param_column_reads_back() {
        for p in [
            Searched::Connections,
            Searched::Env {
                name: "NICSTORM_VMNET_BURST".into(),
                ok: OkSide::Above,
            },
            Searched::Env {
                name: "NICSTORM_VMNET_PPMS".into(),
                ok: OkSide::Below,
            },
        ] {
            assert_eq!(Searched::parse_column(Some(&p.column())), Some(p.clone()));
        }
        assert_eq!(
            Searched::parse_column(None),
            Some(Searched::Connections),
            "rows from before the column"
        );
        for bad in [
            "qemu_env.X",
            "qemu_env.X:ok_sideways",
            "qemu_env.:ok_above",
            "burst",
        ] {
            assert_eq!(Searched::parse_column(Some(bad)), None, "{bad}");
        }
        assert_eq!(
            Searched::parse_column(Some("qemu_env.NICSTORM_VMNET_BURST:ok_above"))
                .unwrap()
                .short_name(),
            "BURST"
        );
    }

    #[test]
    fn verdicts_map_to_outcomes() {
        for (verdict, want) in [
            ("ok", Good),
            ("ssh_slow", Fail),
            ("ssh_dropped", Fail),
            ("hung", Fail),
            ("crashed", Fail),
            ("not_reached", Fail),
            ("error", Retry),
            // Not run here: not a result at that count, and not worth retrying.
            ("not_applicable", Fail),
        ] {
            assert_eq!(
                Outcome::of_verdict(&Named::parse(verdict)),
                want,
                "{verdict}"
            );
        }
    }

    #[test]
    fn specs_that_cannot_be_searched() {
        let bad = [
            SearchSpec { from: 0, ..SPEC },
            SearchSpec { to: 1_000, ..SPEC },
            SearchSpec {
                resolution: 0.0,
                ..SPEC
            },
            SearchSpec {
                resolution: f64::NAN,
                ..SPEC
            },
            SearchSpec {
                max_steps: 0,
                ..SPEC
            },
        ];
        for s in bad {
            assert!(s.problem().is_some(), "{s:?}");
        }
        let env = SearchSpec {
            param: Searched::Env {
                name: "NICSTORM_VMNET_PPMS".into(),
                ok: OkSide::Above,
            },
            ..SPEC
        };
        assert_eq!(env.capped(30_000), env, "only connections are capped");
        let tcg = SPEC.capped(30_000);
        assert_eq!((tcg.from, tcg.to, tcg.problem()), (2_000, 30_000, None));
        assert_eq!(SPEC.capped(1_000).from, 1_000);
        assert_eq!(round_significant(44_721.36, 3), 44_700);
        assert_eq!(round_significant(999.6, 3), 1_000);
        assert_eq!(round_significant(0.4, 3), 0);
    }
}
