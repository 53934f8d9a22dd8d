//! Kernel log signatures: the lines a guest's (or the host's) kernel prints when its network
//! or CPU is in trouble, counted per role. They are read from the guest's console log
//! (ttyS0, a channel that survives a dead network; the guest kernel prints up to KERN_INFO
//! there), so a guest that lost its network still tells what its kernel saw. A signature
//! seen means "look here", never a verdict.
//!
//! Each pattern was taken from the format string in the guest kernel's own binaries
//! (Debian's 6.1.0 `vmlinux`, `virtio_net.ko`, `vmxnet3.ko`, `e1000.ko`: `strings`), and each
//! has a test on a line in the form the console log shows it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One signature: what it is called, where it is looked for, how it is recognised.
#[derive(Debug)]
pub(crate) struct Signature {
    /// Column-safe name.
    pub(crate) name: &'static str,
    /// A fixed piece of the kernel's format string every matching line contains.
    needle: &'static str,
    /// A second fixed piece the line must also contain (after `needle`), or "".
    also: &'static str,
    /// Whose kernel log it is looked for in.
    pub(crate) kernels: Kernels,
    /// What it means, for README and the report.
    pub(crate) meaning: &'static str,
}

/// Whose kernel log a signature is looked for in: the guests' console logs, the host's kernel
/// log (/dev/kmsg, host/kmsg.rs), or both (the TCP stack's and the scheduler's complaints mean
/// the same on either side of the tap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernels {
    Guest,
    Host,
    Both,
}

impl Kernels {
    fn covers(self, host: bool) -> bool {
        match self {
            Kernels::Both => true,
            Kernels::Host => host,
            Kernels::Guest => !host,
        }
    }
}

/// The fixed set, in the order they are reported.
pub(crate) const SIGNATURES: &[Signature] = &[
    Signature {
        name: "netdev_watchdog",
        needle: "NETDEV WATCHDOG: ",
        also: "timed out",
        kernels: Kernels::Guest,
        meaning: "a transmit queue made no progress for the watchdog timeout (net/sched/sch_generic.c dev_watchdog); Debian's 6.1.0-57 prints it per event (the newer format, CPU: N), older 6.1 builds once per boot (WARN_ONCE)",
    },
    Signature {
        name: "virtio_tx_timeout",
        needle: "TX timeout on queue: ",
        also: "",
        kernels: Kernels::Guest,
        meaning: "virtio_net's tx_timeout handler: the device did not complete a TX buffer",
    },
    Signature {
        name: "vmxnet3_tx_hang",
        needle: ": tx hang",
        also: "",
        kernels: Kernels::Guest,
        meaning: "vmxnet3's tx_timeout handler (then it resets the adapter)",
    },
    Signature {
        name: "e1000_tx_hang",
        needle: "Detected Tx Unit Hang",
        also: "",
        kernels: Kernels::Guest,
        meaning: "e1000/e1000e found TX descriptors not completed in time",
    },
    Signature {
        name: "e1000_reset",
        needle: ": Reset adapter",
        also: "",
        kernels: Kernels::Guest,
        meaning: "e1000's reset task after a TX timeout",
    },
    Signature {
        name: "soft_lockup",
        needle: "watchdog: BUG: soft lockup - CPU#",
        also: "",
        kernels: Kernels::Both,
        meaning: "a CPU ran kernel code without scheduling for 20 s or more",
    },
    Signature {
        name: "hung_task",
        needle: "INFO: task ",
        also: " blocked for more than ",
        kernels: Kernels::Both,
        meaning: "a task in uninterruptible sleep for hung_task_timeout_secs",
    },
    Signature {
        name: "rcu_stall",
        needle: "rcu: INFO: ",
        also: "stall",
        kernels: Kernels::Both,
        meaning: "an RCU grace period did not end: a CPU stuck with interrupts or preemption off",
    },
    Signature {
        name: "tcp_oom",
        needle: "TCP: out of memory -- consider tuning tcp_mem",
        also: "",
        kernels: Kernels::Both,
        meaning: "TCP memory above tcp_mem's max: sockets are killed (tcp_out_of_resources)",
    },
    Signature {
        name: "tcp_orphans",
        needle: "TCP: too many orphaned sockets",
        also: "",
        kernels: Kernels::Both,
        meaning: "orphans above tcp_max_orphans: each is killed with one RST",
    },
    Signature {
        name: "page_alloc_failure",
        needle: "page allocation failure: order:",
        also: "",
        kernels: Kernels::Both,
        meaning: "the kernel could not allocate memory it asked for",
    },
    Signature {
        name: "syn_flood",
        needle: "Possible SYN flooding on port ",
        also: "",
        kernels: Kernels::Both,
        meaning: "a listen queue overflowed; SYN cookies sent or SYNs dropped",
    },
    Signature {
        name: "conntrack_full",
        needle: "nf_conntrack: table full, dropping packet",
        also: "",
        kernels: Kernels::Host,
        meaning: "the host's conntrack table is full: new flows are dropped (net_warn_ratelimited; the lines it did not print are in net_ratelimit's count)",
    },
    Signature {
        name: "net_ratelimit",
        needle: "net_ratelimit: ",
        also: " callbacks suppressed",
        kernels: Kernels::Both,
        meaning: "more rate-limited network warnings than printed (10 per 5 s): the kernel suppressed the number in the line (lib/ratelimit.c for net_ratelimit())",
    },
];

/// What a log said: per signature, how many lines and the kernel time (seconds since the
/// kernel started, from the line's `[ 12.345678]` prefix) of the first.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Seen {
    pub(crate) counts: BTreeMap<&'static str, Found>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub(crate) count: u64,
    /// Kernel time of the first line, when the line carried one.
    pub(crate) first_uptime: Option<f64>,
}

/// The kernel time of a console or dmesg line, `[  123.456789] ...`.
fn uptime_of(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (t, _) = rest.split_once(']')?;
    t.trim().parse().ok()
}

/// The signature a line of a guest's (`host` false) or the host's kernel log shows, if any.
pub(crate) fn classify(line: &str, host: bool) -> Option<&'static Signature> {
    SIGNATURES
        .iter()
        .filter(|s| s.kernels.covers(host))
        .find(|s| {
            line.find(s.needle)
                .is_some_and(|i| s.also.is_empty() || line[i + s.needle.len()..].contains(s.also))
        })
}

/// Counts the signatures in a log's text (guest or host ones, as `host` says).
pub(crate) fn scan(text: &str, host: bool) -> Seen {
    let mut seen = Seen::default();
    for line in text.lines() {
        if let Some(s) = classify(line, host) {
            let f = seen.counts.entry(s.name).or_insert(Found {
                count: 0,
                first_uptime: uptime_of(line),
            });
            f.count += 1;
        }
    }
    seen
}

/// Counts the signatures in a file; a missing file is `None` (not "nothing seen").
pub(crate) fn scan_file(path: &Path, host: bool) -> Option<Seen> {
    let bytes = std::fs::read(path).ok()?;
    Some(scan(&String::from_utf8_lossy(&bytes), host))
}

/// The tidy table of a cell: one line per role and signature seen, with the first line's
/// time in seconds from the disconnect when the guest's clock offset is known
/// (`offsets`: role -> wall clock minus kernel time, from its heartbeat lines).
pub(crate) fn table(
    seen: &[(String, Option<Seen>)],
    offsets: &BTreeMap<String, f64>,
    disconnect_at: Option<f64>,
) -> String {
    let mut out =
        String::from("role,signature,count,first_uptime_s,first_from_disconnect_s,meaning\n");
    for (role, s) in seen {
        let Some(s) = s else { continue };
        for (name, f) in &s.counts {
            let from = match (f.first_uptime, offsets.get(role), disconnect_at) {
                (Some(up), Some(off), Some(d)) => format!("{:.3}", up + off - d),
                _ => String::new(),
            };
            let up = f
                .first_uptime
                .map(|u| format!("{u:.3}"))
                .unwrap_or_default();
            let meaning = SIGNATURES
                .iter()
                .find(|s| s.name == *name)
                .map_or("", |s| s.meaning);
            // Quoted: meanings hold commas.
            let _ = writeln!(
                out,
                "{role},{name},{},{up},{from},\"{}\"",
                f.count,
                meaning.replace('"', "\"\"")
            );
        }
    }
    out
}

/// The compact summary a row carries: `role:signature=count` joined by spaces, in role order;
/// empty when nothing was seen.
pub(crate) fn summary(seen: &[(String, Option<Seen>)]) -> String {
    let mut parts = vec![];
    for (role, s) in seen {
        if let Some(s) = s {
            for (name, f) in &s.counts {
                parts.push(format!("{role}:{name}={}", f.count));
            }
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per signature, as the console log shows it (kernel time prefix, the driver's
    /// device prefix for netdev_* messages), from the 6.1 format strings.
    const LINES: &[(&str, &str)] = &[
        ("netdev_watchdog", "[  301.533019] virtio_net virtio0 eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 timed out 5120 ms"),
        ("netdev_watchdog", "[   88.100000] NETDEV WATCHDOG: eth0 (vmxnet3): transmit queue 0 timed out"),
        ("virtio_tx_timeout", "[  301.540112] virtio_net virtio0 eth0: TX timeout on queue: 0, sq: output.0, vq: 0x1, name: output.0, 5124000 usecs ago"),
        ("vmxnet3_tx_hang", "[  120.000001] vmxnet3 0000:00:03.0 eth0: tx hang"),
        ("e1000_tx_hang", "[   97.412345] e1000 0000:00:03.0 eth0: Detected Tx Unit Hang"),
        ("e1000_reset", "[   97.900000] e1000 0000:00:03.0 eth0: Reset adapter"),
        ("soft_lockup", "[  412.004219] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [ksoftirqd/0:15]"),
        ("hung_task", "[  605.170011] INFO: task kworker/0:2:812 blocked for more than 120 seconds."),
        ("rcu_stall", "[  433.221100] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:"),
        ("rcu_stall", "[  433.221200] rcu: INFO: rcu_preempt self-detected stall on CPU"),
        ("tcp_oom", "[  250.000300] TCP: out of memory -- consider tuning tcp_mem"),
        ("tcp_orphans", "[  251.114412] TCP: too many orphaned sockets"),
        ("page_alloc_failure", "[  252.000000] storm-load: page allocation failure: order:0, mode:0xa20(GFP_ATOMIC), nodemask=(null),cpuset=/,mems_allowed=0"),
        ("syn_flood", "[   61.774120] TCP: request_sock_TCP: Possible SYN flooding on port 20003. Sending cookies.  Check SNMP counters."),
        ("conntrack_full", "[1203401.000000] nf_conntrack: nf_conntrack: table full, dropping packet"),
        // The host's own lines, as host/kmsg.rs renders /dev/kmsg records (6.1: pr_fmt "TCP: "
        // of net/ipv4/tcp.c tcp_check_oom; lib/ratelimit.c's "%s: %d callbacks suppressed"
        // with net/core/utils.c net_ratelimit() as the function).
        ("tcp_oom", "[ 8812.004113] TCP: out of memory -- consider tuning tcp_mem"),
        ("net_ratelimit", "[ 8817.010020] net_ratelimit: 1473 callbacks suppressed"),
    ];

    #[test]
    fn every_signature_has_a_real_line_and_matches_only_its_own() {
        for (want, line) in LINES {
            let s = SIGNATURES.iter().find(|s| s.name == *want).unwrap();
            for host in [false, true] {
                let got = classify(line, host).map(|s| s.name);
                let expect = s.kernels.covers(host).then_some(*want);
                assert_eq!(got, expect, "{line} (host log: {host})");
            }
        }
        for s in SIGNATURES {
            assert!(
                LINES.iter().any(|(n, _)| n == &s.name),
                "{} has no test line",
                s.name
            );
        }
        for quiet in [
            "[    0.000000] Linux version 6.1.0-57-amd64",
            "[    2.100000] virtio_net virtio0 eth0: renamed from eth0",
            "nicstorm-init: [3.2] sshd started",
            "[   10.0] INFO: task list follows", // "INFO: task " without "blocked for more than"
            "[   12.0] rcu: INFO: rcu_preempt ok",
        ] {
            assert_eq!(classify(quiet, false).map(|s| s.name), None, "{quiet}");
            assert_eq!(classify(quiet, true).map(|s| s.name), None, "{quiet}");
        }
    }

    #[test]
    fn counts_first_times_and_the_tidy_table() {
        let guest = "\
[   50.000000] virtio_net virtio0 eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 timed out 5120 ms
[   50.000100] virtio_net virtio0 eth0: TX timeout on queue: 0, sq: output.0, vq: 0x1, name: output.0, 5120000 usecs ago
[   55.000100] virtio_net virtio0 eth0: TX timeout on queue: 0, sq: output.0, vq: 0x1, name: output.0, 10240000 usecs ago
[   56.000000] nf_conntrack: nf_conntrack: table full, dropping packet
";
        let s = scan(guest, false);
        assert_eq!(s.counts["virtio_tx_timeout"].count, 2);
        assert_eq!(s.counts["virtio_tx_timeout"].first_uptime, Some(50.0001));
        assert_eq!(s.counts["netdev_watchdog"].count, 1);
        assert!(
            !s.counts.contains_key("conntrack_full"),
            "a host signature in a guest log"
        );
        assert_eq!(scan(guest, true).counts["conntrack_full"].count, 1);
        let seen = vec![
            ("server".to_string(), Some(s)),
            ("client1".to_string(), None),
        ];
        let offsets = BTreeMap::from([("server".to_string(), 1_000_000.0)]);
        let t = table(&seen, &offsets, Some(1_000_040.0));
        assert_eq!(
            t,
            format!(
                "role,signature,count,first_uptime_s,first_from_disconnect_s,meaning\n\
                 server,netdev_watchdog,1,50.000,10.000,\"{}\"\n\
                 server,virtio_tx_timeout,2,50.000,10.000,\"{}\"\n",
                SIGNATURES[0].meaning, SIGNATURES[1].meaning
            )
        );
        assert_eq!(
            summary(&seen),
            "server:netdev_watchdog=1 server:virtio_tx_timeout=2"
        );
        assert_eq!(scan_file(Path::new("/nonexistent/x.log"), false), None);
    }
}
