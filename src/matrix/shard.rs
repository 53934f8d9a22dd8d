//! Shards: a matrix split N ways so N hosts, given the same matrix file and commit, run
//! disjoint sets of cells that together cover it, without talking to each other.
//!
//! How keys are dealt: the distinct shard keys are sorted and dealt round-robin, the first
//! key to shard 1, the second to shard 2, ..., the (N+1)th to shard 1 again.
//!
//! - Deterministic from the keys alone: the order of the cells in the file, and duplicates,
//!   do not matter, because the keys are sorted first.
//! - Balanced: shard sizes differ by at most one key. Hashing each key mod N would also be
//!   deterministic, but not balanced (8 cells over 2 shards split 4/4 only about 27% of the
//!   time).
//! - Fair: the keys are cell ids, i.e. sha256 hashes, so their sorted order is a shuffle of
//!   the axes; a shard does not get, say, all the e1000 cells.
//!
//! The price: a key's shard depends on the other keys, so adding a cell to the matrix can move
//! others to another shard. Every host must therefore shard the same matrix file (same commit)
//! with the same N; mixing `1/2` on one host with `2/3` on another is neither disjoint nor
//! covering.
//!
//! A key is [`Cell::shard_key`]: the repetitions of a cell share it, so they stay in one
//! shard.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::matrix::plan::Cell;

/// Shard `index` of `count` (1-based: 1 <= index <= count), written `K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Shard {
    index: u32,
    count: u32,
}

/// A `K/N` that is not a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {value:?}: {problem}; expected K/N with 1 <= K <= N and N >= 1, e.g. 1/4")]
pub(crate) struct ShardError {
    /// The text as given.
    pub(crate) value: String,
    pub(crate) problem: &'static str,
}

impl Shard {
    /// Shard `index` of `count`; `None` unless 1 <= index <= count.
    pub(crate) fn new(index: u32, count: u32) -> Option<Shard> {
        (index >= 1 && index <= count).then_some(Shard { index, count })
    }

    /// 1-based. Only the unit tests ask, as for `count` and `all` (issue 11: kept for them,
    /// compiled only for them).
    #[cfg(test)]
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    #[cfg(test)]
    pub(crate) fn count(self) -> u32 {
        self.count
    }

    /// Every shard of a split into `count` (1/count .. count/count).
    #[cfg(test)]
    pub(crate) fn all(count: u32) -> impl Iterator<Item = Shard> {
        (1..=count).map(move |index| Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let err = |problem| ShardError {
            value: s.to_owned(),
            problem,
        };
        let (k, n) = s.split_once('/').ok_or_else(|| err("no '/'"))?;
        let number = |t: &str| -> Option<u32> {
            // u32::from_str takes a leading '+'; a shard is plain digits.
            t.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| t.parse().ok())
                .flatten()
        };
        let k = number(k).ok_or_else(|| err("K is not a whole number"))?;
        let n = number(n).ok_or_else(|| err("N is not a whole number"))?;
        if n == 0 {
            return Err(err("N is 0"));
        }
        if k == 0 {
            return Err(err("K is 0 (shards count from 1)"));
        }
        Shard::new(k, n).ok_or_else(|| err("K is greater than N"))
    }
}

/// The shard (1-based) of each distinct key when `keys` are split `count` ways (see the
/// module header). `count` 0 is treated as 1.
pub(crate) fn assign<S: AsRef<str>>(keys: &[S], count: u32) -> BTreeMap<String, u32> {
    let count = count.max(1) as usize;
    let distinct: BTreeSet<&str> = keys.iter().map(AsRef::as_ref).collect();
    distinct
        .into_iter()
        .enumerate()
        .map(|(i, key)| (key.to_owned(), (i % count) as u32 + 1))
        .collect()
}

/// The distinct keys of `keys` that fall in `shard`.
pub(crate) fn select<S: AsRef<str>>(keys: &[S], shard: Shard) -> BTreeSet<String> {
    assign(keys, shard.count)
        .into_iter()
        .filter(|&(_, s)| s == shard.index)
        .map(|(key, _)| key)
        .collect()
}

/// The cells of `shard` in plan order; every cell when `shard` is None.
pub(crate) fn cells_in(cells: &[Cell], shard: Option<Shard>) -> Vec<&Cell> {
    let Some(shard) = shard else {
        return cells.iter().collect();
    };
    let keys: Vec<String> = cells.iter().map(Cell::shard_key).collect();
    let mine = select(&keys, shard);
    cells
        .iter()
        .filter(|c| mine.contains(&c.shard_key()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_k_of_n_and_names_the_bad_value() {
        let ok = |s: &str| s.parse::<Shard>().unwrap();
        assert_eq!(ok("1/1"), Shard::new(1, 1).unwrap());
        assert_eq!((ok("3/4").index(), ok("3/4").count()), (3, 4));
        assert_eq!(ok("12/12").to_string(), "12/12");
        let cases = [
            ("0/2", "K is 0 (shards count from 1)"),
            ("3/2", "K is greater than N"),
            ("1/0", "N is 0"),
            ("0/0", "N is 0"),
            ("2", "no '/'"),
            ("", "no '/'"),
            ("a/2", "K is not a whole number"),
            ("1/", "N is not a whole number"),
            ("+1/2", "K is not a whole number"),
            ("-1/2", "K is not a whole number"),
            ("1/2/3", "N is not a whole number"),
            (" 1/2", "K is not a whole number"),
            ("1/99999999999", "N is not a whole number"),
        ];
        for (text, problem) in cases {
            let e = text.parse::<Shard>().unwrap_err();
            assert_eq!(e.problem, problem, "{text:?}");
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("shard {text:?}: ")), "{msg}");
            assert!(msg.contains("1 <= K <= N and N >= 1"), "{msg}");
        }
        assert_eq!(
            "3/2".parse::<Shard>().unwrap_err().to_string(),
            "shard \"3/2\": K is greater than N; expected K/N with 1 <= K <= N and N >= 1, e.g. 1/4"
        );
        assert_eq!(Shard::new(0, 1), None);
        assert_eq!(
            Shard::all(3).map(|s| s.to_string()).collect::<Vec<_>>(),
            ["1/3", "2/3", "3/3"]
        );
    }

    #[test]
    fn deals_sorted_keys_round_robin() {
        let keys = ["e", "b", "d", "a", "c", "b"];
        let got: Vec<(String, u32)> = assign(&keys, 2).into_iter().collect();
        let want = [("a", 1), ("b", 2), ("c", 1), ("d", 2), ("e", 1)];
        assert_eq!(got, want.map(|(k, s)| (k.to_owned(), s)));
        let first: Vec<String> = select(&keys, Shard::new(1, 2).unwrap())
            .into_iter()
            .collect();
        assert_eq!(first, ["a", "c", "e"]);
        // More shards than keys: the extra shards are empty, not an error.
        assert!(select(&keys, Shard::new(9, 9).unwrap()).is_empty());
        assert!(select::<&str>(&[], Shard::new(1, 1).unwrap()).is_empty());
    }

    #[test]
    fn cells_of_a_plan_split_in_plan_order() {
        let plan = crate::matrix::plan::parse_plan(
            "axes: {nic: [virtio-net, vmxnet3, e1000], mode: [bridge, nat], vhost: [on, off], connections: [1000]}\n",
            std::path::Path::new("m.yaml"),
        )
        .unwrap();
        assert_eq!(plan.cells.len(), 8);
        assert_eq!(cells_in(&plan.cells, None).len(), 8);
        let mut seen = Vec::new();
        for shard in Shard::all(3) {
            let cells = cells_in(&plan.cells, Some(shard));
            assert!((2..=3).contains(&cells.len()), "{shard}: {}", cells.len());
            let indexes: Vec<usize> = cells.iter().map(|c| c.index).collect();
            assert!(indexes.windows(2).all(|w| w[0] < w[1]), "plan order");
            seen.extend(indexes);
        }
        seen.sort();
        assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    }

    /// Keys shaped like cell ids (12 hex digits), with repeats, in any order.
    fn keys() -> impl Strategy<Value = Vec<String>> {
        let id = any::<[u8; 6]>().prop_map(hex::encode);
        prop::collection::vec(id, 0..60).prop_flat_map(|ids| {
            // Repeat some ids (as repetitions or search steps share one key), then shuffle.
            let n = ids.len();
            (Just(ids), prop::collection::vec(0..n.max(1), 0..n + 1))
                .prop_map(|(mut ids, extra)| {
                    let dups: Vec<String> =
                        extra.iter().filter_map(|&i| ids.get(i).cloned()).collect();
                    ids.extend(dups);
                    ids
                })
                .prop_shuffle()
        })
    }

    proptest! {
        #[test]
        fn shards_are_disjoint_covering_and_balanced(keys in keys(), count in 1u32..12) {
            let distinct: BTreeSet<String> = keys.iter().cloned().collect();
            let shards: Vec<BTreeSet<String>> =
                Shard::all(count).map(|s| select(&keys, s)).collect();
            let mut union = BTreeSet::new();
            for s in &shards {
                prop_assert!(s.is_disjoint(&union), "disjoint");
                union.extend(s.iter().cloned());
            }
            prop_assert_eq!(&union, &distinct, "covering");
            let sizes: Vec<usize> = shards.iter().map(BTreeSet::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(max - min <= 1, "balanced within one: {:?}", sizes);
        }

        #[test]
        fn assignment_depends_on_the_set_only(keys in keys(), count in 1u32..12, seed in any::<u64>()) {
            // The same set in another order, with other duplicates: the same assignment.
            let mut other: Vec<String> = keys.iter().rev().cloned().collect();
            if let Some(k) = keys.get(seed as usize % keys.len().max(1)) {
                other.push(k.clone());
                let by = seed as usize % other.len();
                other.rotate_left(by);
            }
            prop_assert_eq!(assign(&keys, count), assign(&other, count));
            // Each run computes it afresh: the same again.
            prop_assert_eq!(assign(&keys, count), assign(&keys.clone(), count));
        }

        #[test]
        fn adding_shards_never_puts_a_key_in_two(keys in keys(), count in 1u32..12) {
            // For every N up to `count`, each key is in exactly one of the N shards.
            for n in 1..=count {
                let shards: Vec<BTreeSet<String>> = Shard::all(n).map(|s| select(&keys, s)).collect();
                for key in &keys {
                    let holders = shards.iter().filter(|s| s.contains(key)).count();
                    prop_assert_eq!(holders, 1, "key {} over {} shards", key, n);
                }
            }
        }
    }
}
