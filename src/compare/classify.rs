//! Pure: one metric's values on the two sides -> better, worse, same or undecided, by the
//! report's rules (exact two-sided Mann-Whitney U where the sample sizes can reach p < 0.05 at
//! all, "n too small" otherwise); and a cell's line from its metrics.
//!
//! "same" is not "the test found nothing": a test of 3 against 3 repetitions finds nothing
//! whatever the data. A metric is `same` only when the test could have found a difference
//! (the sizes allow p < 0.05), did not (p >= 0.05), AND the two centres (medians; for the
//! verdict, the shares of repetitions that did not end `ok`) lie within the metric's
//! tolerance of each other. That says "no difference larger than the tolerance was seen",
//! never that the two are equal. Everything else that is not `better` or `worse` is
//! `undecided`, with the reason.

use serde::Serialize;

use crate::results::metrics::Better;
use crate::results::stats::{
    fisher_exact, mann_whitney, mann_whitney_min_p, median, MANN_WHITNEY_MAX_N,
};

/// The level of every test: the report's.
pub(crate) const ALPHA: f64 = 0.05;

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Better,
    Worse,
    Same,
    Undecided,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Better => "better",
            Outcome::Worse => "worse",
            Outcome::Same => "same",
            Outcome::Undecided => "undecided",
        }
    }
}

/// How far apart two centres may be and still count as the same: the larger of `relative` x
/// |the base's centre| and `absolute` (in the metric's unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Tolerance {
    pub(crate) relative: f64,
    pub(crate) absolute: f64,
}

impl Tolerance {
    pub(crate) fn allowed(self, base_centre: f64) -> f64 {
        (self.relative * base_centre.abs()).max(self.absolute)
    }
}

/// n, missing, min, median, max and mean of one side's values of a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) missing: usize,
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

/// Which statistic two sides are compared on for `same`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Centre {
    Median,
    /// For 0/1 values (the verdict): the share of ones.
    Mean,
}

impl Summary {
    /// None when no value is present.
    pub(crate) fn of(values: &[Option<f64>]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            missing: values.len() - v.len(),
            min: v[0],
            median: median(&v),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }

    pub(crate) fn centre(&self, c: Centre) -> f64 {
        match c {
            Centre::Median => self.median,
            Centre::Mean => self.mean,
        }
    }
}

/// The test made, or why none was.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Test {
    /// One side (or both) has no value at all.
    NotMeasured,
    /// The sizes cannot reach p < ALPHA: `min_p` is the smallest two-sided p they can.
    NTooSmall {
        n_base: usize,
        n_new: usize,
        min_p: f64,
    },
    /// More repetitions than the exact test enumerates (`MANN_WHITNEY_MAX_N` pooled): none made.
    TooLarge { n_base: usize, n_new: usize },
    /// Exact two-sided Mann-Whitney U; `u` is NEW's (pairs new > base, ties one half).
    MannWhitney { u: f64, p: f64 },
    /// For a 0/1 metric (the verdict): Fisher's exact test, two-sided, on the counts of ones.
    FisherExact {
        ones_base: u32,
        ones_new: u32,
        p: f64,
    },
}

/// One metric's comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) test: Test,
    /// None: not measured on a side, nothing to say.
    pub(crate) outcome: Option<Outcome>,
    /// NEW's centre minus BASE's.
    pub(crate) delta: Option<f64>,
    /// The tolerance in the metric's unit (from BASE's centre).
    pub(crate) allowed: Option<f64>,
    pub(crate) why: String,
}

/// Compares one metric's values (a missing value is left out, never taken as 0).
pub(crate) fn metric(
    base: &[Option<f64>],
    new: &[Option<f64>],
    better: Better,
    tol: Tolerance,
    centre: Centre,
) -> Finding {
    let (Some(sb), Some(sn)) = (Summary::of(base), Summary::of(new)) else {
        return Finding {
            test: Test::NotMeasured,
            outcome: None,
            delta: None,
            allowed: None,
            why: "not measured on both sides".into(),
        };
    };
    let delta = sn.centre(centre) - sb.centre(centre);
    let allowed = tol.allowed(sb.centre(centre));
    // Past MANN_WHITNEY_MAX_N pooled neither exact test is made (Fisher's probabilities would
    // overflow), and the smallest achievable p, far below ALPHA there, is not worth its cost.
    if sb.n + sn.n > MANN_WHITNEY_MAX_N {
        return Finding {
            test: Test::TooLarge {
                n_base: sb.n,
                n_new: sn.n,
            },
            outcome: Some(Outcome::Undecided),
            delta: Some(delta),
            allowed: Some(allowed),
            why: format!(
                "{} repetitions pooled: more than the exact tests count ({MANN_WHITNEY_MAX_N})",
                sb.n + sn.n
            ),
        };
    }
    let xb: Vec<f64> = base.iter().flatten().copied().collect();
    let xn: Vec<f64> = new.iter().flatten().copied().collect();
    let binary = |v: &[f64]| v.iter().all(|&x| x == 0.0 || x == 1.0);
    // A 0/1 metric (the verdict) has its own test, with its own smallest achievable p.
    let fisher_test = centre == Centre::Mean && binary(&xb) && binary(&xn);
    let min_p = if fisher_test {
        fisher_min_p(sb.n as u32, sn.n as u32)
    } else {
        mann_whitney_min_p(sb.n, sn.n)
    };
    let mut f = Finding {
        test: Test::NTooSmall {
            n_base: sb.n,
            n_new: sn.n,
            min_p,
        },
        outcome: Some(Outcome::Undecided),
        delta: Some(delta),
        allowed: Some(allowed),
        why: format!(
            "n too small ({} vs {}: the smallest two-sided p these sizes can reach is {min_p:.3})",
            sb.n, sn.n
        ),
    };
    if min_p >= ALPHA {
        return f;
    }
    if fisher_test {
        return fisher(f, &xb, &xn, better, delta, allowed);
    }
    let mw =
        mann_whitney(&xn, &xb).expect("both sides measured, at most MANN_WHITNEY_MAX_N pooled");
    f.test = Test::MannWhitney { u: mw.u, p: mw.p };
    if mw.p < ALPHA {
        // U above n1 n2 / 2: NEW's values tend to be the larger ones.
        let larger = mw.u > (sb.n * sn.n) as f64 / 2.0;
        let good = larger == (better == Better::Higher);
        f.outcome = Some(if good {
            Outcome::Better
        } else {
            Outcome::Worse
        });
        f.why = format!(
            "{} (p = {:.4}; {} is better)",
            if larger { "higher" } else { "lower" },
            mw.p,
            better.as_str()
        );
    } else if delta.abs() <= allowed {
        f.outcome = Some(Outcome::Same);
        f.why = format!(
            "no significant difference (p = {:.4}) and the centres within the tolerance",
            mw.p
        );
    } else {
        f.why = format!(
            "no significant difference (p = {:.4}), but the centres differ by more than the \
             tolerance: more repetitions needed",
            mw.p
        );
    }
    f
}

/// The smallest two-sided p Fisher's exact test can reach with groups of n1 and n2: over
/// every total k of ones, the most lopsided table.
fn fisher_min_p(n1: u32, n2: u32) -> f64 {
    (1..n1 + n2)
        .filter_map(|k| {
            let a = k.min(n1);
            fisher_exact(a, n1, k - a, n2)
        })
        .fold(1.0, f64::min)
}

/// A 0/1 metric (the verdict as "did not end ok"): Fisher's exact test on the counts of ones,
/// the test for a 2x2 table of counts, where Mann-Whitney would only see ties.
fn fisher(
    mut f: Finding,
    xb: &[f64],
    xn: &[f64],
    better: Better,
    delta: f64,
    allowed: f64,
) -> Finding {
    let ones = |v: &[f64]| v.iter().filter(|&&x| x == 1.0).count() as u32;
    let (ob, on) = (ones(xb), ones(xn));
    let Some(p) = fisher_exact(ob, xb.len() as u32, on, xn.len() as u32) else {
        return f;
    };
    f.test = Test::FisherExact {
        ones_base: ob,
        ones_new: on,
        p,
    };
    let (nb, nn) = (xb.len(), xn.len());
    if p < ALPHA {
        let larger = f64::from(on) / nn as f64 > f64::from(ob) / nb as f64;
        let good = larger == (better == Better::Higher);
        f.outcome = Some(if good {
            Outcome::Better
        } else {
            Outcome::Worse
        });
        f.why = format!(
            "{on}/{nn} against {ob}/{nb} (Fisher's exact p = {p:.4}; {} is better)",
            better.as_str()
        );
    } else if delta.abs() <= allowed {
        f.outcome = Some(Outcome::Same);
        f.why = format!(
            "{on}/{nn} against {ob}/{nb}: no significant difference (Fisher's exact p = {p:.4}) and the shares within the tolerance"
        );
    } else {
        f.why = format!(
            "{on}/{nn} against {ob}/{nb}: no significant difference (Fisher's exact p = {p:.4}), but the shares differ by more than the tolerance: more repetitions needed"
        );
    }
    f
}

/// A cell's line from its metrics' outcomes (`name`, outcome): `worse` when any metric is
/// worse (a regression anywhere is one, whatever else improved); else `better` when any is
/// better; else `same` when every measured metric is the same; else `undecided`. With
/// nothing measured on both sides: `undecided`.
pub(crate) fn cell(findings: &[(&str, Option<Outcome>)]) -> (Outcome, String) {
    let with = |o: Outcome| -> Vec<&str> {
        findings
            .iter()
            .filter(|(_, f)| *f == Some(o))
            .map(|(n, _)| *n)
            .collect()
    };
    let (worse, better, undecided) = (
        with(Outcome::Worse),
        with(Outcome::Better),
        with(Outcome::Undecided),
    );
    let measured = findings.iter().filter(|(_, f)| f.is_some()).count();
    if !worse.is_empty() {
        let mut why = format!("worse: {}", worse.join(", "));
        if !better.is_empty() {
            why.push_str(&format!("; better: {}", better.join(", ")));
        }
        return (Outcome::Worse, why);
    }
    if !better.is_empty() {
        let mut why = format!("better: {}", better.join(", "));
        if !undecided.is_empty() {
            why.push_str(&format!("; undecided: {}", undecided.join(", ")));
        }
        return (Outcome::Better, why);
    }
    if measured == 0 {
        return (Outcome::Undecided, "nothing measured on both sides".into());
    }
    if undecided.is_empty() {
        return (
            Outcome::Same,
            format!("all {measured} measured metrics the same within their tolerance"),
        );
    }
    (
        Outcome::Undecided,
        format!("undecided: {}", undecided.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        relative: 0.1,
        absolute: 0.0,
    };

    fn some(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|x| Some(*x)).collect()
    }

    #[test]
    fn metric_table() {
        // (base, new, better, outcome)
        type Case = (&'static [f64], &'static [f64], Better, Option<Outcome>);
        let table: &[Case] = &[
            // Three against three can never reach p < 0.05: undecided however far apart.
            (
                &[1.0, 1.1, 1.2],
                &[9.0, 9.1, 9.2],
                Better::Lower,
                Some(Outcome::Undecided),
            ),
            (
                &[1.0, 1.0, 1.0],
                &[1.0, 1.0, 1.0],
                Better::Lower,
                Some(Outcome::Undecided),
            ),
            // Four against four, separated: significant, its direction decides.
            (
                &[1.0, 1.1, 1.2, 1.3],
                &[2.0, 2.1, 2.2, 2.3],
                Better::Lower,
                Some(Outcome::Worse),
            ),
            (
                &[1.0, 1.1, 1.2, 1.3],
                &[2.0, 2.1, 2.2, 2.3],
                Better::Higher,
                Some(Outcome::Better),
            ),
            (
                &[2.0, 2.1, 2.2, 2.3],
                &[1.0, 1.1, 1.2, 1.3],
                Better::Lower,
                Some(Outcome::Better),
            ),
            // Mixed, medians close: same.
            (
                &[1.0, 1.2, 1.1, 1.3],
                &[1.05, 1.15, 1.25, 1.12],
                Better::Lower,
                Some(Outcome::Same),
            ),
            // Mixed, not significant, medians 30% apart: undecided, not same.
            (
                &[1.0, 2.0, 3.0, 4.0],
                &[1.5, 2.5, 4.5, 5.0],
                Better::Lower,
                Some(Outcome::Undecided),
            ),
            // Identical inputs with enough repetitions: same.
            (
                &[0.7, 0.9, 0.8, 0.75],
                &[0.7, 0.9, 0.8, 0.75],
                Better::Lower,
                Some(Outcome::Same),
            ),
        ];
        for (b, n, better, want) in table {
            let f = metric(&some(b), &some(n), *better, TOL, Centre::Median);
            assert_eq!(f.outcome, *want, "{b:?} vs {n:?}: {}", f.why);
        }
    }

    #[test]
    fn the_verdict_is_judged_by_fishers_test_with_its_own_smallest_p() {
        // 4 ok against 3 not ok: Fisher reaches 1/35 = 0.029 (Mann-Whitney's gate, 2/35,
        // would call it n too small).
        let f = metric(
            &some(&[0.0; 4]),
            &some(&[1.0; 3]),
            Better::Lower,
            TOL,
            Centre::Mean,
        );
        assert_eq!(f.outcome, Some(Outcome::Worse), "{}", f.why);
        assert!(
            matches!(f.test, Test::FisherExact { ones_base: 0, ones_new: 3, p } if (p - 1.0 / 35.0).abs() < 1e-12)
        );
        // 3 against 3 cannot reach 0.05 (1/20 at best): undecided, n too small.
        let f = metric(
            &some(&[0.0; 3]),
            &some(&[1.0; 3]),
            Better::Lower,
            TOL,
            Centre::Mean,
        );
        assert!(
            matches!(f.test, Test::NTooSmall { min_p, .. } if (min_p - 0.1).abs() < 1e-12),
            "{:?}",
            f.test
        );
        // Large groups are not enumerated (the probabilities would overflow): too large.
        let f = metric(
            &some(&[0.0; 60]),
            &some(&[0.0; 60]),
            Better::Lower,
            TOL,
            Centre::Mean,
        );
        assert!(matches!(f.test, Test::TooLarge { .. }), "{:?}", f.test);
    }

    #[test]
    fn missing_values_are_left_out_not_zero() {
        let f = metric(
            &[None, None],
            &some(&[1.0]),
            Better::Lower,
            TOL,
            Centre::Median,
        );
        assert_eq!((f.test, f.outcome), (Test::NotMeasured, None));
        // Four of five present on each side: tested over the four.
        let b = [Some(1.0), Some(1.1), None, Some(1.2), Some(1.3)];
        let n = [Some(5.0), None, Some(5.1), Some(5.2), Some(5.3)];
        let f = metric(&b, &n, Better::Lower, TOL, Centre::Median);
        assert_eq!(f.outcome, Some(Outcome::Worse), "{}", f.why);
        assert!(matches!(f.test, Test::MannWhitney { p, .. } if (p - 2.0 / 70.0).abs() < 1e-12));
    }

    #[test]
    fn beyond_the_exact_test_is_undecided_not_a_panic() {
        let b: Vec<Option<f64>> = (0..60).map(|i| Some(f64::from(i))).collect();
        let f = metric(&b, &b, Better::Lower, TOL, Centre::Median);
        assert_eq!(
            f.test,
            Test::TooLarge {
                n_base: 60,
                n_new: 60
            }
        );
        assert_eq!(f.outcome, Some(Outcome::Undecided));
    }

    #[test]
    fn tolerance_has_a_floor() {
        let t = Tolerance {
            relative: 0.1,
            absolute: 0.5,
        };
        assert_eq!(t.allowed(1.0), 0.5);
        assert_eq!(t.allowed(-20.0), 2.0);
    }

    #[test]
    fn cell_lines() {
        use Outcome::*;
        type Case = (&'static [(&'static str, Option<Outcome>)], Outcome);
        let table: &[Case] = &[
            (&[("a", Some(Worse)), ("b", Some(Better))], Worse),
            (&[("a", Some(Better)), ("b", Some(Undecided))], Better),
            (&[("a", Some(Same)), ("b", None)], Same),
            (&[("a", Some(Same)), ("b", Some(Undecided))], Undecided),
            (&[("a", None)], Undecided),
            (&[], Undecided),
        ];
        for (findings, want) in table {
            assert_eq!(cell(findings).0, *want, "{findings:?}");
        }
        assert_eq!(
            cell(&[("drain", Some(Worse)), ("ramp", Some(Better))]).1,
            "worse: drain; better: ramp"
        );
    }
}
