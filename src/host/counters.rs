//! Counters that explain a ramp and a drain, taken before the clients start, at the end of
//! hold and at the end of observe: each guest's TCP/IP MIB (`nstat`) and eth0 statistics,
//! the host taps' statistics and the host's conntrack statistics. The cell keeps every
//! counter that moved in each window (counters.csv: "ramp" = clients start to end of hold,
//! "observe" = end of hold to end of observe) and four of the observe window's deltas as
//! columns, each the first suspect for connections that never drain:
//!
//! - `clients_tcp_abort_on_memory`: the disconnected clients' kernels killed orphaned sockets
//!   (too many orphans or too little TCP memory when storm-load exited) with one RST that is
//!   never retransmitted;
//! - `server_device_lost`: frames the host handed to the server's device model that its
//!   driver never counted (the model had no receive buffer and discarded them itself);
//! - `server_eth0_rx_dropped`: the server's NIC driver dropped frames on receive;
//! - `host_tap_tx_dropped`: the host dropped frames on the way into a VM (a tap's queue was
//!   full because the device model did not take them fast enough);
//! - `host_conntrack_drops`: the host's conntrack refused or dropped flows (nat).
//!
//! A counter that could not be read is missing (None), never 0.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Counter name -> value.
pub(crate) type Counters = BTreeMap<String, u64>;

/// The awk program over `ethtool -S` output (fields split on ": *"): "ethtool.<name> <sum>".
macro_rules! ethtool_awk {
    () => {
        r#"NF == 2 && $2 ~ /^[0-9]+$/ { sub(/^ +/, "", $1); gsub(/ /, "_", $1); s[$1] += $2 } END { for (k in s) print "ethtool." k, s[k] }"#
    };
}

/// Prints "name value" lines in the guest: every TCP/IP MIB counter (absolute, zeros too,
/// without touching nstat's history), eth0's statistics, and the driver's own statistics
/// (`ethtool -S`, names with spaces joined by '_', per-queue repeats summed; vmxnet3 counts
/// the frames its device model had no buffer for there).
pub(crate) const GUEST_SCRIPT: &str = concat!(
    "nstat -asz | awk '!/^#/ && NF >= 2 {print $1, $2}'; ",
    "for f in /sys/class/net/eth0/statistics/*; do echo \"eth0.${f##*/} $(cat $f)\"; done; ",
    "ethtool -S eth0 2>/dev/null | awk -F': *' '",
    ethtool_awk!(),
    "'"
);

/// Parses "name value" lines; other lines are skipped.
pub(crate) fn parse(text: &str) -> Counters {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, value) = (it.next()?, it.next()?);
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The statistics of host links (taps) as "tap.<stat>", by label; None for a link that
/// cannot be read.
pub(crate) fn host_links(
    links: &[(String, String)],
    sys_class_net: &Path,
) -> Vec<(String, Option<Counters>)> {
    let read = |link: &str| {
        let dir = sys_class_net.join(link).join("statistics");
        let mut c = Counters::new();
        for stat in ["rx_packets", "tx_packets", "rx_dropped", "tx_dropped"] {
            let v = std::fs::read_to_string(dir.join(stat)).ok()?;
            c.insert(format!("tap.{stat}"), v.trim().parse().ok()?);
        }
        Some(c)
    };
    links
        .iter()
        .map(|(label, link)| (label.clone(), read(link)))
        .collect()
}

/// A network namespace's TCP/IP MIB, named as nstat names them (`TcpExtListenOverflows`,
/// `TcpActiveOpens`), from the `snmp` and `netstat` files of a /proc/PID/net (a process's
/// namespace: passt mode's lab namespace, where every flow of the storm lives and which the
/// host's own counters do not see). None when they cannot be read.
pub(crate) fn netns_mib(proc_net: &Path) -> Option<Counters> {
    let mut c = parse_proc_mib(&std::fs::read_to_string(proc_net.join("snmp")).ok()?);
    c.extend(parse_proc_mib(
        &std::fs::read_to_string(proc_net.join("netstat")).ok()?,
    ));
    Some(c).filter(|c| !c.is_empty())
}

/// /proc/net/snmp and netstat: pairs of lines, `Group: Name1 Name2...` then `Group: v1 v2...`.
fn parse_proc_mib(text: &str) -> Counters {
    let mut c = Counters::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((vgroup, values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        if group != vgroup {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            // A few are gauges or limits that can be negative (Tcp MaxConn -1): skipped.
            if let Ok(v) = v.parse() {
                c.insert(format!("{group}{n}"), v);
            }
        }
    }
    c
}

/// /proc/net/stat/nf_conntrack summed over CPUs, as "conntrack.<column>"; None when
/// nf_conntrack is not loaded.
pub(crate) fn host_conntrack_stats(path: &Path) -> Option<Counters> {
    parse_conntrack_stats(&std::fs::read_to_string(path).ok()?)
}

fn parse_conntrack_stats(text: &str) -> Option<Counters> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut sums = Counters::new();
    for line in lines {
        for (name, hex) in names.iter().zip(line.split_whitespace()) {
            // "entries" is a gauge, repeated on every line; the rest are per-CPU counters.
            if *name == "entries" {
                continue;
            }
            *sums.entry(format!("conntrack.{name}")).or_default() +=
                u64::from_str_radix(hex, 16).ok()?;
        }
    }
    Some(sums)
}

/// Counters of one moment, by scope ("server", "client1".., "host", "host.server"..);
/// a scope that could not be read is None.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot(pub(crate) BTreeMap<String, Option<Counters>>);

impl Snapshot {
    pub(crate) fn insert(&mut self, scope: &str, c: Option<Counters>) {
        self.0.insert(scope.to_owned(), c);
    }

    fn get(&self, scope: &str, name: &str) -> Option<u64> {
        self.0.get(scope)?.as_ref()?.get(name).copied()
    }
}

/// How much `name` grew in `scope` between the two snapshots; None when either is missing.
/// A counter that went down (a reset) is missing too, not negative.
pub(crate) fn delta(before: &Snapshot, after: &Snapshot, scope: &str, name: &str) -> Option<u64> {
    after
        .get(scope, name)?
        .checked_sub(before.get(scope, name)?)
}

/// Sum of `name`'s growth over `scopes` and `names`; None when any term is missing, so a
/// partial sum is never passed off as the whole.
pub(crate) fn delta_sum(
    before: &Snapshot,
    after: &Snapshot,
    scopes: &[&str],
    names: &[&str],
) -> Option<u64> {
    if scopes.is_empty() {
        return None;
    }
    let mut sum = 0;
    for s in scopes {
        for n in names {
            sum += delta(before, after, s, n)?;
        }
    }
    Some(sum)
}

/// One stretch of a cell between two snapshots, named for counters.csv.
pub(crate) struct Window<'a> {
    pub(crate) name: &'a str,
    pub(crate) before: &'a Snapshot,
    pub(crate) after: &'a Snapshot,
}

/// counters.csv: window,scope,counter,before,after,delta for every counter that moved in
/// each window, and one line per scope that was missing at either end (empty counter), so
/// an absent counter is told apart from one that stayed put.
pub(crate) fn write_csv(path: &Path, windows: &[Window]) -> Result<()> {
    let mut out = String::from("window,scope,counter,before,after,delta\n");
    for w in windows {
        write_window(&mut out, w);
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(out.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_window(out: &mut String, w: &Window) {
    let (window, before, after) = (w.name, w.before, w.after);
    let scopes: std::collections::BTreeSet<&String> =
        before.0.keys().chain(after.0.keys()).collect();
    for scope in scopes {
        let (b, a) = (
            before.0.get(scope).and_then(|c| c.as_ref()),
            after.0.get(scope).and_then(|c| c.as_ref()),
        );
        match (b, a) {
            (Some(b), Some(a)) => {
                for (name, av) in a {
                    if let Some(bv) = b.get(name) {
                        if av != bv {
                            let d = i128::from(*av) - i128::from(*bv);
                            out.push_str(&format!("{window},{scope},{name},{bv},{av},{d}\n"));
                        }
                    }
                }
            }
            (b, a) => out.push_str(&format!(
                "{window},{scope},,{},{},\n",
                if b.is_some() { "read" } else { "missing" },
                if a.is_some() { "read" } else { "missing" }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespaces_mib_is_named_as_nstat_names_it() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoAlgorithm MaxConn ActiveOpens PassiveOpens\nTcp: 1 -1 3000 3004\n";
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 530 530\nIpExt: InOctets\nIpExt: 123456\n";
        let mut c = parse_proc_mib(snmp);
        c.extend(parse_proc_mib(netstat));
        assert_eq!(c["TcpActiveOpens"], 3000);
        assert_eq!(c["TcpExtListenOverflows"], 530);
        assert_eq!(c["IpExtInOctets"], 123_456);
        assert!(
            !c.contains_key("TcpMaxConn"),
            "a negative limit is not a counter"
        );
        // This process's own namespace reads.
        let own = netns_mib(Path::new("/proc/self/net")).unwrap();
        assert!(own.contains_key("TcpActiveOpens") && own.contains_key("TcpExtListenOverflows"));
        assert_eq!(netns_mib(Path::new("/nonexistent")), None);
    }

    #[test]
    fn parses_nstat_and_statistics_lines() {
        let text = "TcpExtTCPAbortOnMemory 12\nTcpActiveOpens 30000\neth0.rx_dropped 7\n\ngarbage\nbad x\n";
        let c = parse(text);
        assert_eq!(c.len(), 3);
        assert_eq!(c["TcpExtTCPAbortOnMemory"], 12);
        assert_eq!(c["eth0.rx_dropped"], 7);
    }

    #[test]
    fn ethtool_statistics_become_counters() {
        // vmxnet3's layout: per-queue headers and repeated names with spaces.
        let sample = "NIC statistics:\n     Tx Queue#: 0\n       TSO pkts tx: 0\n     Rx Queue#: 0\n       pkts rx OOB: 7\n       drv dropped rx total: 1\n     Rx Queue#: 1\n       pkts rx OOB: 5\n";
        let mut child = std::process::Command::new("awk")
            .args(["-F", ": *", ethtool_awk!()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sample.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let c = parse(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(c["ethtool.pkts_rx_OOB"], 12, "{c:?}");
        assert_eq!(c["ethtool.drv_dropped_rx_total"], 1);
        assert_eq!(c["ethtool.TSO_pkts_tx"], 0);
        assert!(GUEST_SCRIPT.ends_with(&format!("-F': *' '{}'", ethtool_awk!())));
    }

    #[test]
    fn conntrack_stats_sum_cpus_and_skip_the_gauge() {
        let text = "entries  clashres found new invalid drop early_drop insert_failed\n\
                    00000010  00000000 00000275 00000000 00000050 00000001 00000000 00000002\n\
                    00000010  00000000 000003e4 00000000 0000018a 0000000a 00000003 00000000\n";
        let c = parse_conntrack_stats(text).unwrap();
        assert!(!c.contains_key("conntrack.entries"));
        assert_eq!(c["conntrack.invalid"], 0x50 + 0x18a);
        assert_eq!(c["conntrack.drop"], 11);
        assert_eq!(c["conntrack.early_drop"], 3);
        assert_eq!(c["conntrack.insert_failed"], 2);
        assert_eq!(parse_conntrack_stats(""), None);
    }

    type Scope<'a> = (&'a str, Option<&'a [(&'a str, u64)]>);

    fn snap(scopes: &[Scope]) -> Snapshot {
        let mut s = Snapshot::default();
        for (scope, c) in scopes {
            s.insert(
                scope,
                c.map(|c| c.iter().map(|(n, v)| (n.to_string(), *v)).collect()),
            );
        }
        s
    }

    #[test]
    fn deltas_are_missing_when_any_side_is() {
        let before = snap(&[
            ("client1", Some(&[("A", 5)])),
            ("client2", Some(&[("A", 1)])),
            ("client3", None),
        ]);
        let after = snap(&[
            ("client1", Some(&[("A", 9)])),
            ("client2", Some(&[("A", 1)])),
            ("client3", Some(&[("A", 4)])),
        ]);
        assert_eq!(delta(&before, &after, "client1", "A"), Some(4));
        assert_eq!(delta(&before, &after, "client2", "A"), Some(0));
        assert_eq!(delta(&before, &after, "client3", "A"), None);
        assert_eq!(delta(&before, &after, "client1", "B"), None);
        assert_eq!(
            delta_sum(&before, &after, &["client1", "client2"], &["A"]),
            Some(4)
        );
        assert_eq!(
            delta_sum(&before, &after, &["client1", "client3"], &["A"]),
            None
        );
        assert_eq!(delta_sum(&before, &after, &[], &["A"]), None);
        // A counter that went backwards was reset: not a negative growth.
        let reset = snap(&[("client1", Some(&[("A", 2)]))]);
        assert_eq!(delta(&before, &reset, "client1", "A"), None);
    }

    #[test]
    fn csv_keeps_what_moved_and_says_what_was_missing() {
        let dir = std::env::temp_dir().join(format!("nicstorm-counters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("counters.csv");
        let before = snap(&[("server", Some(&[("A", 5), ("B", 1)])), ("client1", None)]);
        let after = snap(&[
            ("server", Some(&[("A", 9), ("B", 1)])),
            ("client1", Some(&[("A", 1)])),
        ]);
        let later = snap(&[("server", Some(&[("A", 10), ("B", 1)]))]);
        write_csv(
            &path,
            &[
                Window {
                    name: "ramp",
                    before: &before,
                    after: &after,
                },
                Window {
                    name: "observe",
                    before: &after,
                    after: &later,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "window,scope,counter,before,after,delta\n\
             ramp,client1,,missing,read,\n\
             ramp,server,A,5,9,4\n\
             observe,client1,,read,missing,\n\
             observe,server,A,9,10,1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_links_read_sysfs_statistics() {
        let root = std::env::temp_dir().join(format!("nicstorm-links-{}", std::process::id()));
        let stats = root.join("nstab12s0").join("statistics");
        std::fs::create_dir_all(&stats).unwrap();
        for (f, v) in [
            ("rx_packets", "10"),
            ("tx_packets", "20"),
            ("rx_dropped", "0"),
            ("tx_dropped", "3\n"),
        ] {
            std::fs::write(stats.join(f), v).unwrap();
        }
        let got = host_links(
            &[
                ("host.server".into(), "nstab12s0".into()),
                ("host.client1".into(), "nstab12c1".into()),
            ],
            &root,
        );
        assert_eq!(got[0].0, "host.server");
        assert_eq!(got[0].1.as_ref().unwrap()["tap.tx_dropped"], 3);
        assert_eq!(
            got[1],
            ("host.client1".to_string(), None),
            "a link that is not there is missing"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
