//! What the vmnet model (emulators/vmnet-flow-control) wrote to one VM's QEMU log: its totals
//! (accepted, refused, flushes, largest frame) and when it first refused, on the host's clock.
//! The lines are described in emulators/vmnet-flow-control/README.md; a log without them
//! (another emulator, or the model off) gives `None`, never zeros.

use std::path::Path;

/// The model's own account of one VM's backend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ModelTotals {
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) flushes: u64,
    /// Largest frame accepted, bytes (no vnet header).
    pub(crate) largest: u64,
    /// The host's wall clock (UNIX seconds) of the first refusal.
    pub(crate) first_refusal: Option<f64>,
    /// Whether the exit line (`final=1`) was seen; without it the totals are the last
    /// periodic ones, up to a second old.
    pub(crate) final_seen: bool,
}

/// `key=value` of a totals line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Reads the model's lines out of a QEMU log's text. Each netdev's last totals line counts
/// (its final one when present); several netdevs are summed.
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Option<ModelTotals> {
    parse_until(text, f64::INFINITY)
}

/// [`parse`], counting only totals lines written at or before `until` (host clock, UNIX
/// seconds): what the model had done by then, e.g. before the lab's teardown.
pub(crate) fn parse_until(text: &str, until: f64) -> Option<ModelTotals> {
    let mut last: std::collections::BTreeMap<String, ModelTotals> = Default::default();
    let mut first_refusal: Option<f64> = None;
    let mut model_seen = false;
    for line in text.lines() {
        let Some(i) = line.find("nicstorm-vmnet: ") else {
            continue;
        };
        let rest = &line[i + "nicstorm-vmnet: ".len()..];
        if rest.starts_with("model on") {
            model_seen = true;
        } else if let Some(totals) = rest.strip_prefix("totals ") {
            let num = |k| field(totals, k).and_then(|v| v.parse::<u64>().ok());
            let (Some(netdev), Some(accepted), Some(refused), Some(flushes), Some(largest)) = (
                field(totals, "netdev"),
                num("accepted"),
                num("refused"),
                num("flushes"),
                num("largest"),
            ) else {
                continue;
            };
            if field(totals, "t")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|t| t > until)
            {
                continue;
            }
            let e = last.entry(netdev.to_owned()).or_default();
            if e.final_seen {
                continue; // nothing counts after the exit line
            }
            *e = ModelTotals {
                accepted,
                refused,
                flushes,
                largest,
                first_refusal: None,
                final_seen: field(totals, "final") == Some("1"),
            };
        } else if rest.contains(": first refusal t=") {
            let t = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("t="))
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(t) = t.filter(|t| *t <= until) {
                first_refusal = Some(first_refusal.map_or(t, |f| f.min(t)));
            }
        }
    }
    if !model_seen && last.is_empty() {
        return None;
    }
    let mut sum = ModelTotals {
        final_seen: !last.is_empty(),
        ..ModelTotals::default()
    };
    for t in last.values() {
        sum.accepted += t.accepted;
        sum.refused += t.refused;
        sum.flushes += t.flushes;
        sum.largest = sum.largest.max(t.largest);
        sum.final_seen &= t.final_seen;
    }
    sum.first_refusal = first_refusal;
    Some(sum)
}

/// [`parse_until`] of a file; `None` when it cannot be read.
pub(crate) fn parse_file_until(path: &Path, until: f64) -> Option<ModelTotals> {
    parse_until(&String::from_utf8_lossy(&std::fs::read(path).ok()?), until)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-07T03:01:00.100000Z qemu-system-x86_64: nicstorm-vmnet: model on: NICSTORM_VMNET_PPMS=200 NICSTORM_VMNET_BURST=32 NICSTORM_VMNET_MODE=retry NICSTORM_VMNET_RETRY_US=1000 (a packet over budget is refused with 0; a one-shot timer flushes the queue)
2026-12-07T03:01:01.200000Z qemu-system-x86_64: nicstorm-vmnet: totals netdev=hostnet0 t=1796612461.200000 up=1.100 accepted=120 refused=0 flushes=0 largest=1514 refusing=0 final=0
2026-12-07T03:01:40.000000Z qemu-system-x86_64: nicstorm-vmnet: netdev hostnet0: first refusal t=1796612500.000123 38.900 s after start, after 51234 accepted packets (returned 0: net core queues; a flush is armed)
2026-12-07T03:01:41.000000Z qemu-system-x86_64: nicstorm-vmnet: totals netdev=hostnet0 t=1796612501.000000 up=39.900 accepted=52000 refused=17 flushes=17 largest=1514 refusing=0 final=0
2026-12-07T03:02:10.000000Z qemu-system-x86_64: nicstorm-vmnet: totals netdev=hostnet0 t=1796612530.000000 up=68.900 accepted=90000 refused=40 flushes=40 largest=1514 refusing=0 final=1
2026-12-07T03:02:10.000001Z qemu-system-x86_64: terminating on signal 15 from pid 4242 (/usr/sbin/libvirtd)
";

    #[test]
    fn the_last_totals_and_the_first_refusal() {
        let t = parse(LOG).unwrap();
        assert_eq!(
            t,
            ModelTotals {
                accepted: 90000,
                refused: 40,
                flushes: 40,
                largest: 1514,
                first_refusal: Some(1796612500.000123),
                final_seen: true,
            }
        );
        // Cut before the exit line: the last periodic totals, and it says so.
        let cut: String = LOG.lines().take(4).map(|l| format!("{l}\n")).collect();
        let t = parse(&cut).unwrap();
        assert_eq!((t.refused, t.final_seen), (17, false));
        // Until a moment: the totals written by then.
        let t = parse_until(LOG, 1796612510.0).unwrap();
        assert_eq!((t.refused, t.flushes, t.final_seen), (17, 17, false));
        // A refusal after `until` is not the first refusal before it.
        let t = parse_until(LOG, 1796612490.0).unwrap();
        assert_eq!((t.refused, t.first_refusal), (0, None));
        // A log without the model says nothing, not zero.
        assert_eq!(
            parse("qemu-system-x86_64: terminating on signal 15\n"),
            None
        );
        // The model on but nothing counted yet: zeros are real here.
        let t = parse(LOG.lines().next().unwrap()).unwrap();
        assert_eq!((t.accepted, t.refused, t.first_refusal), (0, 0, None));
    }
}
