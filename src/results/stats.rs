//! Pure statistics over repetitions: spread (n, min, median, max), the distribution-free
//! confidence interval of a median from order statistics, and the exact Mann-Whitney test.
//!
//! Repetitions are few (often 1-5) and their distributions unknown, so nothing here assumes
//! normality, and every test says when n is too small to say anything rather than printing
//! a p-value or an interval that cannot mean what it claims.

/// How the values of one metric spread over repetitions. Missing values (empty CSV fields)
/// are counted, never folded in as 0.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spread {
    /// Values present.
    pub(crate) n: usize,
    /// Values missing.
    pub(crate) missing: usize,
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) max: f64,
    /// The present values, ascending.
    pub(crate) sorted: Vec<f64>,
}

/// The spread of `values`; None when none is present.
pub(crate) fn spread(values: &[Option<f64>]) -> Option<Spread> {
    let mut sorted: Vec<f64> = values.iter().flatten().copied().collect();
    let missing = values.len() - sorted.len();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some(Spread {
        n: sorted.len(),
        missing,
        min: sorted[0],
        median: median(&sorted),
        max: sorted[sorted.len() - 1],
        sorted,
    })
}

/// Median of ascending, non-empty `sorted`: the middle value, or the mean of the two middle ones.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    assert!(n > 0, "median of nothing");
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// P(B <= k) for B ~ Binomial(n, 1/2).
pub(crate) fn binom_half_cdf(n: u32, k: u32) -> f64 {
    let total = 2f64.powi(n as i32);
    (0..=k.min(n)).map(|i| choose(n, i)).sum::<f64>() / total
}

/// n choose k as f64 (exact up to 2^53, close enough beyond for probabilities).
pub(crate) fn choose(n: u32, k: u32) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

/// A confidence interval for the median made from two order statistics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MedianCi {
    pub(crate) low: f64,
    pub(crate) high: f64,
    /// 1-based ranks of the order statistics used: [x_(k), x_(n+1-k)].
    pub(crate) k: usize,
    /// Its exact coverage, 1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2); at least the level asked.
    pub(crate) coverage: f64,
}

/// The smallest n for which [`median_ci`] gives a 95% interval.
pub(crate) const MEDIAN_CI_MIN_N: usize = 6;

/// Distribution-free confidence interval of the median at `level` (e.g. 0.95) from ascending
/// `sorted`: [x_(k), x_(n+1-k)] with the largest k whose coverage is still >= level. It
/// assumes only independent repetitions of one continuous distribution. None when n is too
/// small for any k (for 95%: n < 6, where even [min, max] covers only 1 - 2/2^n).
pub(crate) fn median_ci(sorted: &[f64], level: f64) -> Option<MedianCi> {
    let n = u32::try_from(sorted.len()).ok()?;
    let alpha = 1.0 - level;
    let mut best = None;
    for k in 1..=n / 2 {
        let outside = 2.0 * binom_half_cdf(n, k - 1);
        if outside <= alpha + 1e-12 {
            best = Some((k, 1.0 - outside));
        } else {
            break;
        }
    }
    let (k, coverage) = best?;
    let k = k as usize;
    Some(MedianCi {
        low: sorted[k - 1],
        high: sorted[sorted.len() - k],
        k,
        coverage,
    })
}

/// The result of an exact two-sided Mann-Whitney U (Wilcoxon rank-sum) test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MannWhitney {
    /// U of the first sample: pairs (x, y) with x > y, ties counting one half.
    pub(crate) u: f64,
    /// Exact two-sided p: the share of all C(n1+n2, n1) ways to split the pooled values whose
    /// rank sum lies at least as far from its mean as the one observed. Ties get mid-ranks
    /// and the split is enumerated with them, so the p stays exact with ties.
    pub(crate) p: f64,
}

/// Pooled sizes up to which [`mann_whitney`] counts every split exactly (the counts fit
/// u128 and the table stays small); repetitions never come near it.
pub(crate) const MANN_WHITNEY_MAX_N: usize = 100;

/// Exact two-sided Mann-Whitney U test of `x` against `y`. None when either is empty or the
/// pooled size exceeds [`MANN_WHITNEY_MAX_N`].
pub(crate) fn mann_whitney(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    let n = n1 + n2;
    if n1 == 0 || n2 == 0 || n > MANN_WHITNEY_MAX_N {
        return None;
    }
    // Doubled mid-ranks, so that ties stay integers.
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|v| (*v, true))
        .chain(y.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut ranks2 = vec![0u64; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean; doubled: (i+1) + (j+1).
        for r in &mut ranks2[i..=j] {
            *r = (i + 1 + j + 1) as u64;
        }
        i = j + 1;
    }
    let w2_obs: u64 = pooled
        .iter()
        .zip(&ranks2)
        .filter(|((_, first), _)| *first)
        .map(|(_, r)| *r)
        .sum();
    // ways[k][s]: subsets of size k of the pooled ranks whose doubled rank sum is s.
    let max_sum: usize = ranks2.iter().sum::<u64>() as usize;
    let mut ways = vec![vec![0u128; max_sum + 1]; n1 + 1];
    ways[0][0] = 1;
    for &r in &ranks2 {
        let r = r as usize;
        for k in (1..=n1).rev() {
            for s in (r..=max_sum).rev() {
                let add = ways[k - 1][s - r];
                if add != 0 {
                    ways[k][s] += add;
                }
            }
        }
    }
    // E[doubled rank sum] = n1 (n + 1); compare distances from it in integers.
    let mean2 = (n1 * (n + 1)) as i128;
    let dist_obs = (w2_obs as i128 - mean2).abs();
    let total: u128 = ways[n1].iter().sum();
    let extreme: u128 = ways[n1]
        .iter()
        .enumerate()
        .filter(|(s, _)| (*s as i128 - mean2).abs() >= dist_obs)
        .map(|(_, c)| *c)
        .sum();
    let u = w2_obs as f64 / 2.0 - (n1 * (n1 + 1)) as f64 / 2.0;
    Some(MannWhitney {
        u,
        p: extreme as f64 / total as f64,
    })
}

/// The smallest two-sided p an exact Mann-Whitney test of sizes n1 and n2 can reach (complete
/// separation, no ties): 2 / C(n1+n2, n1). A test is worth running only where this is below
/// the level; at 0.05 the first equal sizes are 4 and 4 (2/70 = 0.029).
pub(crate) fn mann_whitney_min_p(n1: usize, n2: usize) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    (2.0 / choose((n1 + n2) as u32, n1 as u32)).min(1.0)
}

/// Fisher's exact test, two-sided, on a 2x2 table: `a` of `n1` in one group and `b` of `n2`
/// in the other have the property (e.g. did not end `ok`). The p-value sums the
/// hypergeometric probabilities of every table with the same margins that is at most as
/// likely as the one seen. None when a group is empty.
pub(crate) fn fisher_exact(a: u32, n1: u32, b: u32, n2: u32) -> Option<f64> {
    if n1 == 0 || n2 == 0 || a > n1 || b > n2 {
        return None;
    }
    let (n, k) = (n1 + n2, a + b);
    let total = choose(n, n1);
    let prob = |x: u32| choose(k, x) * choose(n - k, n1 - x) / total;
    let seen = prob(a);
    let lo = k.saturating_sub(n2);
    let hi = k.min(n1);
    let p: f64 = (lo..=hi)
        .map(prob)
        .filter(|&q| q <= seen * (1.0 + 1e-9))
        .sum();
    Some(p.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_exact_known_values() {
        // 4 of 4 against 0 of 4: 2 / C(8,4) = 2/70.
        assert!((fisher_exact(4, 4, 0, 4).unwrap() - 2.0 / 70.0).abs() < 1e-12);
        // The tea-tasting table (3 of 4 against 1 of 4): 34/70.
        assert!((fisher_exact(3, 4, 1, 4).unwrap() - 34.0 / 70.0).abs() < 1e-12);
        // Identical groups: 1.
        assert!((fisher_exact(2, 4, 2, 4).unwrap() - 1.0).abs() < 1e-12);
        // 9 of 10 against 1 of 10 (R: fisher.test(matrix(c(9,1,1,9),2))$p.value = 0.001093).
        assert!((fisher_exact(9, 10, 1, 10).unwrap() - 0.0010940).abs() < 1e-5);
        assert_eq!(fisher_exact(1, 0, 0, 3), None);
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn spread_counts_missing_apart() {
        let s = spread(&[Some(3.0), None, Some(1.0), Some(2.0), None]).unwrap();
        assert_eq!((s.n, s.missing), (3, 2));
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = spread(&[Some(4.0), Some(1.0)]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(spread(&[None, None]), None);
        // A missing value is not a zero: the minimum stays the smallest value present.
        assert_eq!(spread(&[None, Some(5.0)]).unwrap().min, 5.0);
    }

    #[test]
    fn binomial_values() {
        assert_eq!(choose(70, 0), 1.0);
        assert_eq!(choose(8, 4), 70.0);
        assert_eq!(choose(10, 5), 252.0);
        assert!(close(binom_half_cdf(6, 0), 1.0 / 64.0, 1e-15));
        assert!(close(binom_half_cdf(10, 1), 11.0 / 1024.0, 1e-15));
        assert!(close(binom_half_cdf(10, 10), 1.0, 1e-15));
    }

    #[test]
    fn median_ci_order_statistics_table() {
        // (n, k of [x_(k), x_(n+1-k)], coverage): the standard table for 95% (e.g. Conover,
        // Practical Nonparametric Statistics, table A3; coverage = 1 - 2 P(B <= k-1)).
        let table: &[(usize, Option<(usize, f64)>)] = &[
            (1, None),
            (3, None),
            (5, None), // [min, max] covers 1 - 2/32 = 0.9375 only
            (6, Some((1, 0.96875))),
            (8, Some((1, 0.9921875))),
            (9, Some((2, 0.9609375))),
            (10, Some((2, 0.978515625))),
            (11, Some((2, 0.98828125))),
            (12, Some((3, 0.96142578125))),
            (20, Some((6, 0.9586105346679688))),
        ];
        for &(n, want) in table {
            let xs: Vec<f64> = (1..=n).map(|i| i as f64 * 10.0).collect();
            let got = median_ci(&xs, 0.95);
            match (got, want) {
                (None, None) => {}
                (Some(ci), Some((k, cov))) => {
                    assert_eq!(ci.k, k, "n={n}");
                    assert!(close(ci.coverage, cov, 1e-12), "n={n}: {}", ci.coverage);
                    assert_eq!(ci.low, k as f64 * 10.0, "n={n}");
                    assert_eq!(ci.high, (n + 1 - k) as f64 * 10.0, "n={n}");
                }
                (got, want) => panic!("n={n}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(median_ci(&[1.0; 5], 0.95), None);
        assert!(median_ci(&[1.0; MEDIAN_CI_MIN_N], 0.95).is_some());
    }

    /// Exact two-sided p by listing every split of the pooled values (no shortcuts), to check
    /// the counting table against.
    fn brute_force_p(x: &[f64], y: &[f64]) -> f64 {
        let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
        let n = pooled.len();
        let rank = |v: f64| {
            let below = pooled.iter().filter(|p| **p < v).count() as f64;
            let equal = pooled.iter().filter(|p| **p == v).count() as f64;
            below + (equal + 1.0) / 2.0
        };
        let ranks: Vec<f64> = pooled.iter().map(|v| rank(*v)).collect();
        let mean = x.len() as f64 * (n + 1) as f64 / 2.0;
        let obs = (ranks[..x.len()].iter().sum::<f64>() - mean).abs();
        let (mut extreme, mut total) = (0u64, 0u64);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != x.len() {
                continue;
            }
            total += 1;
            let w: f64 = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| ranks[i])
                .sum();
            if (w - mean).abs() >= obs - 1e-9 {
                extreme += 1;
            }
        }
        extreme as f64 / total as f64
    }

    #[test]
    fn mann_whitney_known_values() {
        // (x, y, U of x, two-sided exact p)
        type Case = (&'static [f64], &'static [f64], f64, f64);
        let table: &[Case] = &[
            // Complete separation: p = 2 / C(n1+n2, n1).
            (&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.0, 2.0 / 20.0),
            (
                &[1.0, 2.0, 3.0, 4.0],
                &[5.0, 6.0, 7.0, 8.0],
                0.0,
                2.0 / 70.0,
            ),
            (
                &[6.0, 7.0, 8.0, 9.0, 10.0],
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                25.0,
                2.0 / 252.0,
            ),
            // R's ?wilcox.test example (Hollander & Wolfe): W = 35, one-sided p = 0.1272,
            // so two-sided 0.2544 (R: wilcox.test(x, y) gives p-value = 0.2544).
            (
                &[0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46],
                &[1.15, 0.88, 0.90, 0.74, 1.21],
                35.0,
                0.2544,
            ),
            // Identical samples: nothing to tell apart.
            (&[1.0, 1.0], &[1.0, 1.0], 2.0, 1.0),
        ];
        for (x, y, u, p) in table {
            let got = mann_whitney(x, y).unwrap();
            assert_eq!(got.u, *u, "{x:?} vs {y:?}");
            assert!(close(got.p, *p, 5e-5), "{x:?} vs {y:?}: p {}", got.p);
            assert!(close(got.p, brute_force_p(x, y), 1e-12), "{x:?} vs {y:?}");
        }
        assert_eq!(mann_whitney(&[], &[1.0]), None);
    }

    #[test]
    fn mann_whitney_with_ties_matches_enumeration() {
        let cases: &[(&[f64], &[f64])] = &[
            (&[0.0, 0.0, 0.0, 5.0], &[0.0, 7.0, 9.0, 9.0]),
            (&[2.5, 2.5, 3.0], &[2.5, 4.0, 4.0, 4.0, 1.0]),
            (
                &[0.0, 0.0, 12.0, 410.0, 0.0],
                &[64.0, 52.0, 183.0, 0.0, 302.0],
            ),
            (&[1.0], &[2.0]),
        ];
        for (x, y) in cases {
            let got = mann_whitney(x, y).unwrap();
            assert!(
                close(got.p, brute_force_p(x, y), 1e-12),
                "{x:?} vs {y:?}: {}",
                got.p
            );
            // Swapping the samples changes U to n1 n2 - U and keeps p.
            let back = mann_whitney(y, x).unwrap();
            assert!(close(back.p, got.p, 1e-12));
            assert_eq!(back.u, (x.len() * y.len()) as f64 - got.u);
        }
    }

    #[test]
    fn smallest_achievable_p_decides_whether_to_test() {
        // (n1, n2, below 0.05?)
        let table = [
            (1, 10, false),
            (2, 2, false),
            (3, 3, false), // 2/20 = 0.1
            (3, 4, false), // 2/35 = 0.057
            (3, 5, true),  // 2/56 = 0.036
            (4, 4, true),  // 2/70 = 0.029: the first equal sizes
            (2, 7, false), // 2/36 = 0.056
            (2, 8, true),  // 2/45 = 0.044
        ];
        for (n1, n2, below) in table {
            assert_eq!(mann_whitney_min_p(n1, n2) < 0.05, below, "{n1}, {n2}");
        }
        assert!(close(mann_whitney_min_p(4, 4), 2.0 / 70.0, 1e-15));
        assert_eq!(mann_whitney_min_p(0, 4), 1.0);
    }
}
