//! Pure: whether two sides' repetitions were interleaved (A and B alternating over the run)
//! or ran back to back, from the rows' start timestamps.
//!
//! Back to back, whatever drifts over time (the host's load, its temperature, a neighbour's
//! job) moves one side and not the other, and looks like an effect of the change. The rule:
//! sort both sides' start times together and count the runs of one side in a row.
//! `back_to_back`: 2 runs (all of one side, then all of the other); `interleaved`: at least
//! 2 x min(n_base, n_new) runs, so each repetition of the smaller side has the other side's
//! on both of its sides (ABAB...), i.e. each side's repetitions are spread over the other's
//! time span; `partly` in between; `unknown` when a side has no repetition or a start time
//! does not parse (RFC 3339).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Interleaving {
    Interleaved,
    Partly,
    BackToBack,
    Unknown,
}

impl Interleaving {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Interleaving::Interleaved => "interleaved",
            Interleaving::Partly => "partly interleaved",
            Interleaving::BackToBack => "back to back",
            Interleaving::Unknown => "unknown",
        }
    }
}

/// How the two sides' repetitions were ordered in time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Order {
    pub(crate) interleaving: Interleaving,
    /// Runs of one side in a row, in start order (0 when unknown).
    pub(crate) runs: usize,
    pub(crate) n_base: usize,
    pub(crate) n_new: usize,
}

/// The order of repetitions started at `base` and `new` (RFC 3339 timestamps).
pub(crate) fn order(base: &[&str], new: &[&str]) -> Order {
    let unknown = Order {
        interleaving: Interleaving::Unknown,
        runs: 0,
        n_base: base.len(),
        n_new: new.len(),
    };
    let parse = |s: &&str| chrono::DateTime::parse_from_rfc3339(s).ok();
    let tagged: Option<Vec<(chrono::DateTime<chrono::FixedOffset>, bool)>> = base
        .iter()
        .map(|s| parse(s).map(|t| (t, false)))
        .chain(new.iter().map(|s| parse(s).map(|t| (t, true))))
        .collect();
    let Some(mut tagged) = tagged else {
        return unknown;
    };
    if base.is_empty() || new.is_empty() {
        return unknown;
    }
    tagged.sort();
    let runs = 1 + tagged.windows(2).filter(|w| w[0].1 != w[1].1).count();
    // A B B A A B ... (`settings.order: interleaved`): with equal sides, every aligned pair
    // of slots holds one of each, so each side's repetitions spread over the whole run too.
    let paired = base.len() == new.len()
        && base.len() > 1
        && tagged.chunks(2).all(|p| p.len() == 2 && p[0].1 != p[1].1);
    let interleaving = if runs <= 2 {
        Interleaving::BackToBack
    } else if runs >= 2 * base.len().min(new.len()) || paired {
        Interleaving::Interleaved
    } else {
        Interleaving::Partly
    };
    Order {
        interleaving,
        runs,
        ..unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: u32) -> String {
        format!("2026-11-24T03:{minute:02}:00.5+00:00")
    }

    #[test]
    fn orders() {
        // (base minutes, new minutes, interleaving, runs)
        let table: &[(&[u32], &[u32], Interleaving, usize)] = &[
            (&[1, 2, 3], &[4, 5, 6], Interleaving::BackToBack, 2),
            (&[4, 5, 6], &[1, 2, 3], Interleaving::BackToBack, 2),
            (&[1, 3, 5], &[2, 4, 6], Interleaving::Interleaved, 6),
            (&[2, 4, 6], &[1, 3, 5], Interleaving::Interleaved, 6),
            (&[1, 2, 5], &[3, 4, 6], Interleaving::Partly, 4),
            // A B B A A B B A, as settings.order: interleaved runs two cells.
            (&[1, 4, 5, 8], &[2, 3, 6, 7], Interleaving::Interleaved, 5),
            (&[1, 2, 5, 6], &[3, 4, 7, 8], Interleaving::Partly, 4),
            // One repetition of NEW in the middle of BASE's: spread over its span.
            (&[1, 3], &[2], Interleaving::Interleaved, 3),
            (&[1], &[2], Interleaving::BackToBack, 2),
        ];
        for (b, n, want, runs) in table {
            let b: Vec<String> = b.iter().map(|m| t(*m)).collect();
            let n: Vec<String> = n.iter().map(|m| t(*m)).collect();
            let br: Vec<&str> = b.iter().map(String::as_str).collect();
            let nr: Vec<&str> = n.iter().map(String::as_str).collect();
            let o = order(&br, &nr);
            assert_eq!((o.interleaving, o.runs), (*want, *runs), "{b:?} vs {n:?}");
        }
        assert_eq!(order(&["x"], &[&t(1)]).interleaving, Interleaving::Unknown);
        assert_eq!(order(&[], &[&t(1)]).interleaving, Interleaving::Unknown);
        // The stored form: nanoseconds and an offset.
        let o = order(
            &["2026-11-24T03:35:52.122949646+00:00"],
            &[
                "2026-11-24T03:37:09.452620226+00:00",
                "2026-11-24T03:30:00Z",
            ],
        );
        assert_eq!(o.interleaving, Interleaving::Interleaved);
    }
}
