//! The heartbeats of one guest as they arrived (host time), and the statistics over a window
//! that the verdict and the time series read: gaps, peaks, the last `est`.

use std::time::{Duration, Instant};

use super::Heartbeat;

/// Heartbeats of one guest in arrival order, with window statistics. Windows are inclusive
/// `[from, until]` in host time.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatSeries {
    beats: Vec<(Instant, Heartbeat)>,
}

impl HeartbeatSeries {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends a heartbeat. Arrivals must be pushed in the order they were read (which
    /// `SerialTail::poll` guarantees); an arrival earlier than the last one is clamped to it so
    /// the series stays sorted.
    pub(crate) fn push(&mut self, at: Instant, hb: Heartbeat) {
        let at = match self.beats.last() {
            Some((last, _)) if *last > at => *last,
            _ => at,
        };
        self.beats.push((at, hb));
    }

    /// Only the unit tests ask (issue 11: kept for them, compiled only for them).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.beats.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Instant, Heartbeat)> {
        self.beats.iter()
    }

    fn window(&self, from: Instant, until: Instant) -> impl Iterator<Item = &(Instant, Heartbeat)> {
        self.beats
            .iter()
            .filter(move |(at, _)| *at >= from && *at <= until)
    }

    /// Arrival times as signed seconds relative to `origin` (e.g. the disconnect signal);
    /// arrivals before it are negative.
    pub(crate) fn arrivals_since(&self, origin: Instant) -> Vec<f64> {
        self.beats
            .iter()
            .map(|(at, _)| signed_seconds(origin, *at))
            .collect()
    }

    /// The largest silence inside `[from, until]`: between consecutive arrivals, from `from` to
    /// the first arrival, and from the last arrival to `until` (a silence still going on counts).
    /// If no heartbeat arrived in the window the silence is the whole window.
    ///
    /// `None` when no heartbeat has ever arrived up to `until`: then the heartbeat channel was
    /// never shown to work, and reporting the window as a gap would claim a hang we have no
    /// evidence for. Also `None` for an empty or inverted window.
    pub(crate) fn max_gap(&self, from: Instant, until: Instant) -> Option<Duration> {
        if until <= from || !self.beats.iter().any(|(at, _)| *at <= until) {
            return None;
        }
        let mut prev = from;
        let mut max = Duration::ZERO;
        for (at, _) in self.window(from, until) {
            max = max.max(*at - prev);
            prev = *at;
        }
        Some(max.max(until - prev))
    }

    pub(crate) fn peak_softirq(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.softirq_pct)
            .max_by(f64::total_cmp)
    }

    /// Only the unit tests ask (issue 11: kept for them, compiled only for them).
    #[cfg(test)]
    pub(crate) fn peak_busy(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.busy_pct)
            .max_by(f64::total_cmp)
    }

    pub(crate) fn peak_load1(&self, from: Instant, until: Instant) -> Option<f64> {
        self.window(from, until)
            .map(|(_, hb)| hb.load1)
            .max_by(f64::total_cmp)
    }

    pub(crate) fn min_memavail_kb(&self, from: Instant, until: Instant) -> Option<u64> {
        self.window(from, until).map(|(_, hb)| hb.memavail_kb).min()
    }

    /// storm-load's established count according to the most recent heartbeat. `None` when
    /// there is no heartbeat or the most recent one says `-` -- an older count would be stale
    /// once the status file is gone.
    pub(crate) fn last_est(&self) -> Option<u64> {
        self.beats.last().and_then(|(_, hb)| hb.est)
    }

    /// Established counts over time, skipping heartbeats without one.
    pub(crate) fn est_series(&self) -> Vec<(Instant, u64)> {
        self.beats
            .iter()
            .filter_map(|(at, hb)| hb.est.map(|e| (*at, e)))
            .collect()
    }

    /// The median interval between consecutive arrivals inside `[from, until]`: the cadence
    /// baseline a gap is compared with. `None` with fewer than two arrivals in the window.
    /// Only the unit tests ask (issue 11: kept for them, compiled only for them).
    #[cfg(test)]
    pub(crate) fn median_period(&self, from: Instant, until: Instant) -> Option<Duration> {
        let arrivals: Vec<Instant> = self.window(from, until).map(|(at, _)| *at).collect();
        let mut periods: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
        if periods.is_empty() {
            return None;
        }
        periods.sort();
        let mid = periods.len() / 2;
        Some(if periods.len() % 2 == 1 {
            periods[mid]
        } else {
            (periods[mid - 1] + periods[mid]) / 2
        })
    }
}

/// `at - origin` in seconds, negative when `at` is earlier.
pub(crate) fn signed_seconds(origin: Instant, at: Instant) -> f64 {
    if at >= origin {
        (at - origin).as_secs_f64()
    } else {
        -(origin - at).as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(seq: u64, softirq: f64, load1: f64, memavail_kb: u64, est: Option<u64>) -> Heartbeat {
        Heartbeat {
            seq,
            t: 0.0,
            up: 0.0,
            load1,
            softirq_pct: softirq,
            busy_pct: softirq * 2.0,
            tcp_inuse: 0,
            tcp_orphan: 0,
            tcp_tw: 0,
            tcp_alloc: 0,
            tcp_mem_pages: 0,
            memavail_kb,
            est,
        }
    }

    fn series(t0: Instant, arrivals_ms: &[u64]) -> HeartbeatSeries {
        let mut s = HeartbeatSeries::new();
        for (i, ms) in arrivals_ms.iter().enumerate() {
            s.push(
                t0 + Duration::from_millis(*ms),
                hb(
                    i as u64,
                    i as f64,
                    10.0 - i as f64,
                    1000 - i as u64,
                    Some(i as u64 * 10),
                ),
            );
        }
        s
    }

    #[test]
    fn max_gap_table() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let d = Duration::from_millis;
        // (arrivals, from, until, expected)
        let cases: &[(&[u64], u64, u64, Option<Duration>)] = &[
            // Steady cadence: the largest of the between-arrival and edge gaps.
            (&[1000, 1250, 1500, 1750, 2000], 1000, 2000, Some(d(250))),
            // Gap from `from` to the first arrival counts.
            (&[1000, 1900, 2000], 1500, 2000, Some(d(400))),
            // Open gap at the end counts.
            (&[1000, 1250], 1000, 3000, Some(d(1750))),
            // A gap in the middle.
            (&[1000, 1250, 4250, 4500], 1000, 4500, Some(d(3000))),
            // Heartbeats before the window only: the whole window is silent.
            (&[100, 200], 1000, 3000, Some(d(2000))),
            // Arrivals after the window do not shorten the open gap inside it.
            (&[1000, 5000], 1000, 3000, Some(d(2000))),
            // Never any heartbeat up to `until`: no evidence either way.
            (&[], 0, 3000, None),
            (&[5000], 0, 3000, None),
            // Empty / inverted window.
            (&[1000], 2000, 2000, None),
            (&[1000], 3000, 2000, None),
        ];
        for (arrivals, from, until, want) in cases {
            let s = series(t0, arrivals);
            assert_eq!(
                s.max_gap(ms(*from), ms(*until)),
                *want,
                "{arrivals:?} in [{from},{until}]"
            );
        }
    }

    #[test]
    fn window_statistics() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // softirq = index, load1 = 10 - index, memavail = 1000 - index, est = 10 * index
        let s = series(t0, &[0, 250, 500, 750, 1000, 1300, 5000]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.peak_softirq(ms(250), ms(1000)), Some(4.0));
        assert_eq!(s.peak_busy(ms(250), ms(1000)), Some(8.0));
        assert_eq!(s.peak_load1(ms(250), ms(1000)), Some(9.0));
        assert_eq!(s.min_memavail_kb(ms(0), ms(1300)), Some(995));
        assert_eq!(s.peak_softirq(ms(2000), ms(3000)), None);
        assert_eq!(s.min_memavail_kb(ms(2000), ms(3000)), None);
        assert_eq!(s.last_est(), Some(60));

        // Periods in [0, 1300]: 250,250,250,250,300 -> median 250.
        assert_eq!(
            s.median_period(ms(0), ms(1300)),
            Some(Duration::from_millis(250))
        );
        // Even count: 250 and 300 -> 275.
        assert_eq!(
            s.median_period(ms(750), ms(1300)),
            Some(Duration::from_millis(275))
        );
        assert_eq!(s.median_period(ms(2000), ms(5000)), None);

        let arr = s.arrivals_since(ms(500));
        assert_eq!(arr.len(), 7);
        assert!((arr[0] + 0.5).abs() < 1e-9 && arr[2].abs() < 1e-9 && (arr[6] - 4.5).abs() < 1e-9);
    }

    #[test]
    fn est_series_and_last_est() {
        let t0 = Instant::now();
        let mut s = HeartbeatSeries::new();
        assert_eq!(s.last_est(), None);
        assert_eq!(s.max_gap(t0, t0 + Duration::from_secs(1)), None);
        s.push(t0, hb(0, 0.0, 0.0, 0, Some(300)));
        s.push(t0 + Duration::from_millis(250), hb(1, 0.0, 0.0, 0, None));
        s.push(t0 + Duration::from_millis(500), hb(2, 0.0, 0.0, 0, Some(0)));
        assert_eq!(s.last_est(), Some(0));
        assert_eq!(
            s.est_series(),
            vec![(t0, 300), (t0 + Duration::from_millis(500), 0)]
        );
        // The newest heartbeat says "-": the status file is gone, an older count is stale.
        s.push(t0 + Duration::from_millis(750), hb(3, 0.0, 0.0, 0, None));
        assert_eq!(s.last_est(), None);
        // An out-of-order push is clamped so the series stays sorted.
        s.push(t0, hb(4, 0.0, 0.0, 0, Some(1)));
        assert_eq!(s.iter().last().unwrap().0, t0 + Duration::from_millis(750));
    }
}
