//! The seed's results (UTM on macOS, user-space virtio; docs/EXPERIMENT.md "The finding it
//! reproduces") and how its words map to our verdicts.
//!
//! From inside an SSH session a network that stalls for good and a hung guest look the same,
//! and the seed could not tell them apart: its "hung" is our `hung` or an `ssh_dropped` that
//! never recovered (empty recovery_seconds). "SSH laggy" is `ssh_slow`; "broken pipe" and
//! "dropped, reconnects later" are `ssh_dropped` with a recovery.

use crate::matrix::plan::{NetMode, NicModel};

/// How to read our rows against one seed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// The seed saw a freeze: count `hung` and never-recovered `ssh_dropped` apart.
    Hung,
    /// The seed saw SSH lag (`ssh_slow`) and a CPU spike at some counts, fine at others.
    Lag,
    /// The seed saw SSH drop and come back (`ssh_dropped` with recovery).
    DropRecovered,
    /// Nothing of ours corresponds.
    NoCounterpart,
}

pub(crate) struct SeedRow {
    pub(crate) seed_nic: &'static str,
    pub(crate) seed_mode: &'static str,
    pub(crate) result: &'static str,
    /// The result in our verdicts.
    pub(crate) in_verdicts: &'static str,
    /// Our NIC and mode, where we run a counterpart.
    pub(crate) nic: Option<NicModel>,
    pub(crate) mode: Option<NetMode>,
    pub(crate) reading: Reading,
    /// The connection counts the seed reports for this row, ascending.
    pub(crate) counts: &'static [u64],
}

pub(crate) const SEED: &[SeedRow] = &[
    SeedRow {
        seed_nic: "virtio-net-pci",
        seed_mode: "bridge",
        result: "hung at ~2k connections disconnecting",
        in_verdicts: "`hung`, or `ssh_dropped` that never recovered (from inside SSH the two look the same)",
        nic: Some(NicModel::VirtioNet),
        mode: Some(NetMode::Bridge),
        reading: Reading::Hung,
        counts: &[2_000],
    },
    SeedRow {
        seed_nic: "virtio-net-pci",
        seed_mode: "NAT",
        result: "hung at ~2k connections disconnecting",
        in_verdicts: "`hung`, or `ssh_dropped` that never recovered (from inside SSH the two look the same)",
        nic: Some(NicModel::VirtioNet),
        mode: Some(NetMode::Nat),
        reading: Reading::Hung,
        counts: &[2_000],
    },
    SeedRow {
        seed_nic: "vmxnet3",
        seed_mode: "bridge",
        result: "fine at 50k, 100k, 200k, 1M; SSH laggy ~30 s at 600k; CPU spike on disconnect",
        in_verdicts: "`ok` at 50k, 100k, 200k, 1M; `ssh_slow` at 600k; the spike is peak_vcpu_pct / peak_softirq_pct",
        nic: Some(NicModel::Vmxnet3),
        mode: Some(NetMode::Bridge),
        reading: Reading::Lag,
        counts: &[50_000, 100_000, 200_000, 600_000, 1_000_000],
    },
    SeedRow {
        seed_nic: "vmxnet3",
        seed_mode: "NAT (shared)",
        result: "100k fine; 200k SSH \"broken pipe\" once; 600k and 1M SSH dropped, VM alive, SSH reconnects later",
        in_verdicts: "`ok` at 100k; `ssh_dropped` with a recovery at 200k, 600k, 1M",
        nic: Some(NicModel::Vmxnet3),
        mode: Some(NetMode::Nat),
        reading: Reading::DropRecovered,
        counts: &[100_000, 200_000, 600_000, 1_000_000],
    },
    SeedRow {
        seed_nic: "any (VMware Fusion)",
        seed_mode: "bridge / shared",
        result: "no hang",
        in_verdicts: "not `hung`",
        nic: None,
        mode: None,
        reading: Reading::NoCounterpart,
        counts: &[],
    },
];

/// How our target relates to the counts the seed reports for a row.
pub(crate) fn comparability(row: &SeedRow, target: Option<u64>) -> String {
    let (Some(t), Some(&lo), Some(&hi)) = (target, row.counts.first(), row.counts.last()) else {
        return String::new();
    };
    let k = |v: u64| super::plots::compact(v as f64);
    match row.reading {
        Reading::Hung if t >= lo => format!(
            "target {} is above the ~{} where the seed hung",
            k(t),
            k(lo)
        ),
        Reading::Hung => format!(
            "target {} is below the ~{} where the seed hung",
            k(t),
            k(lo)
        ),
        _ if row.counts.contains(&t) => format!("target {}: a count the seed ran", k(t)),
        _ if t < lo => format!(
            "target {} is below the smallest count the seed ran ({})",
            k(t),
            k(lo)
        ),
        _ if t > hi => format!("target {} is above the counts the seed ran", k(t)),
        _ => format!("target {} lies between counts the seed ran", k(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_placed_against_the_seeds_counts() {
        assert_eq!(
            comparability(&SEED[0], Some(30_000)),
            "target 30k is above the ~2000 where the seed hung"
        );
        assert_eq!(
            comparability(&SEED[2], Some(30_000)),
            "target 30k is below the smallest count the seed ran (50k)"
        );
        assert_eq!(
            comparability(&SEED[3], Some(1_000_000)),
            "target 1M: a count the seed ran"
        );
        assert_eq!(comparability(&SEED[4], Some(30_000)), "");
        assert_eq!(comparability(&SEED[0], None), "");
    }
}
