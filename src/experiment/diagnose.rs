//! Stall diagnostics: when a cell ends with SSH down to the server while its heartbeat flows
//! (the network failed, not the guest), or a client lost its network, evidence is collected through channels that avoid the NIC under
//! test, then one recovery action at a time is tried, recording whether SSH came back:
//!
//! 1. evidence: the server tap's counters over a few seconds while SSH is probed (does the
//!    host send frames in, do frames come out, does the tap drop them), and for virtio NICs
//!    the device's state over QMP (`x-query-virtio-status`, `x-query-virtio-queue-status`
//!    through `virsh qemu-monitor-command`); the raw replies go to stall-qmp.json;
//! 2. a guest-side link bounce (`ip link set eth0 down/up`) through the root shell on the
//!    guest's ttyS2;
//! 3. a host-side link bounce (libvirt interface update, link down then up).
//!
//! The row gets `stall_side` (rx, tx or none) and `recovered_by` (the action after which SSH
//! answered, or none); diagnose.txt says what was seen.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::experiment::provision::Ready;
use crate::lab::guest::{probe_new_connection, Endpoint};
use crate::lab::{Role, Vm};

/// One virtqueue as QMP reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Queue {
    pub(crate) last_avail: u16,
    pub(crate) shadow_avail: u16,
    pub(crate) used: u16,
}

impl Queue {
    /// Buffers the driver made available that the device has not taken (as far as the device
    /// has looked).
    pub(crate) fn pending(&self) -> u16 {
        self.shadow_avail.wrapping_sub(self.last_avail)
    }
}

/// `{"return":{"last-avail-idx":..,"shadow-avail-idx":..,"used-idx":..}}`.
pub(crate) fn parse_queue(reply: &str) -> Option<Queue> {
    let v: Value = serde_json::from_str(reply).ok()?;
    let r = &v["return"];
    let n = |k: &str| r[k].as_u64().map(|x| x as u16);
    Some(Queue {
        last_avail: n("last-avail-idx")?,
        shadow_avail: n("shadow-avail-idx")?,
        used: n("used-idx")?,
    })
}

/// The QOM path of the virtio-net backend in an `x-query-virtio` reply.
pub(crate) fn virtio_net_path(reply: &str) -> Option<String> {
    let v: Value = serde_json::from_str(reply).ok()?;
    v["return"]
        .as_array()?
        .iter()
        .find(|d| d["name"] == "virtio-net")
        .and_then(|d| d["path"].as_str().map(String::from))
}

/// Growth of the server tap's counters over the evidence window. tap "tx" is host -> guest,
/// tap "rx" is guest -> host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TapDelta {
    pub(crate) to_guest: u64,
    pub(crate) to_guest_dropped: u64,
    pub(crate) from_guest: u64,
}

/// Growth of the guest's own eth0 counters over the same window, read through ttyS2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GuestDelta {
    pub(crate) rx: u64,
    pub(crate) tx: u64,
}

/// Where the stall sits, from what moved while SSH was probed:
/// - frames came out of the guest's tap: layer 2 works both ways, `none`;
/// - nothing was sent to it at all: unknown (None);
/// - virtio's transmit queue holds buffers it does not consume: `tx`;
/// - frames reached the guest's driver (its eth0 rx grew) but none came out: `tx`;
/// - frames for it never reached its driver: `rx`;
/// - without the guest's counters: `rx` when the tap dropped frames for it, else unknown.
pub(crate) fn stall_side(
    tap: TapDelta,
    guest: Option<GuestDelta>,
    tx: Option<(Queue, Queue)>,
) -> Option<&'static str> {
    if tap.from_guest > 0 {
        return Some("none");
    }
    if tap.to_guest == 0 && tap.to_guest_dropped == 0 {
        return None;
    }
    if tx.is_some_and(|(a, b)| b.pending() > 0 && a.last_avail == b.last_avail) {
        return Some("tx");
    }
    match guest {
        Some(g) if g.rx > 0 => Some("tx"),
        Some(_) => Some("rx"),
        None => (tap.to_guest_dropped > 0).then_some("rx"),
    }
}

/// `rx_packets tx_packets` of the guest's eth0, through its ttyS2 shell.
async fn guest_counters(vm: &Vm) -> Option<(u64, u64)> {
    let out = vm
        .serial_shell(
            "cat /sys/class/net/eth0/statistics/rx_packets /sys/class/net/eth0/statistics/tx_packets",
            Duration::from_secs(10),
        )
        .await
        .ok()?;
    let mut n = out.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
    Some((n.next()?, n.next()?))
}

/// What diagnostics found.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Diagnosis {
    pub(crate) stall_side: Option<String>,
    pub(crate) recovered_by: Option<String>,
}

fn tap_counters(tap: &str) -> Option<(u64, u64, u64)> {
    let read = |c: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/class/net/{tap}/statistics/{c}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((
        read("tx_packets")?,
        read("tx_dropped")?,
        read("rx_packets")?,
    ))
}

fn qmp(domain: &str, command: &str, arguments: Option<Value>) -> Option<String> {
    let mut msg = serde_json::json!({ "execute": command });
    if let Some(a) = arguments {
        msg["arguments"] = a;
    }
    // A wedged QEMU does not answer its monitor: bounded, as every host command is.
    let msg = msg.to_string();
    let out = crate::support::cmd::output_within(
        "virsh",
        &[
            "-c",
            crate::lab::LIBVIRT_URI,
            "qemu-monitor-command",
            domain,
            &msg,
        ],
        std::time::Duration::from_secs(20),
    )
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The virtio-net queues (rx, tx) of `vm`, when it has a virtio NIC; the raw replies are kept.
fn virtio_queues(vm: &Vm, raw: &mut Vec<Value>) -> Option<(Queue, Queue)> {
    let list = qmp(&vm.name, "x-query-virtio", None)?;
    raw.push(serde_json::from_str(&list).unwrap_or(Value::Null));
    let path = virtio_net_path(&list)?;
    if let Some(status) = qmp(
        &vm.name,
        "x-query-virtio-status",
        Some(serde_json::json!({ "path": path })),
    ) {
        raw.push(serde_json::from_str(&status).unwrap_or(Value::Null));
    }
    let mut q = |i: u16| {
        let r = qmp(
            &vm.name,
            "x-query-virtio-queue-status",
            Some(serde_json::json!({ "path": path, "queue": i })),
        )?;
        raw.push(serde_json::from_str(&r).unwrap_or(Value::Null));
        parse_queue(&r)
    };
    Some((q(0)?, q(1)?))
}

/// SSH answers a new connection now (two tries of 10 s: a healthy TCG guest answers in 1-3 s).
async fn ssh_answers(ep: &Endpoint) -> bool {
    for _ in 0..2 {
        if probe_new_connection(ep, Duration::from_secs(10)).await.ok {
            return true;
        }
    }
    false
}

/// Diagnoses the guest `role` of a lab (the server, or a client that lost its network) whose
/// SSH is down; writes stall-qmp.json and diagnose.txt to `dir`.
pub(crate) async fn run(ready: &Ready, role: Role, dir: &Path) -> Result<Diagnosis> {
    let vm = ready.lab.vm(role);
    let ep = Endpoint::of(vm, &ready.lab.key);
    let tap = ready.lab.bridge(role).map(|_| ready.lab.tap(role));
    let mut notes = vec![];
    let mut raw = vec![];

    // Evidence: counters and queues around a few SSH attempts.
    let before_tap = tap.as_deref().and_then(tap_counters);
    let before_guest = guest_counters(vm).await;
    let before_q = virtio_queues(vm, &mut raw);
    let answered = ssh_answers(&ep).await;
    let after_tap = tap.as_deref().and_then(tap_counters);
    let after_guest = guest_counters(vm).await;
    let after_q = virtio_queues(vm, &mut raw);
    let guest = before_guest.zip(after_guest).map(|(a, b)| GuestDelta {
        rx: b.0.saturating_sub(a.0),
        tx: b.1.saturating_sub(a.1),
    });
    let delta = before_tap.zip(after_tap).map(|(a, b)| TapDelta {
        to_guest: b.0.saturating_sub(a.0),
        to_guest_dropped: b.1.saturating_sub(a.1),
        from_guest: b.2.saturating_sub(a.2),
    });
    let pairs = before_q.zip(after_q);
    let side = if answered {
        Some("none")
    } else {
        delta.and_then(|d| stall_side(d, guest, pairs.map(|(a, b)| (a.1, b.1))))
    };
    notes.push(format!(
        "SSH answered before any action: {answered}; tap delta while probing: {delta:?}; guest eth0 delta (over ttyS2): {guest:?}; virtio queues (rx, tx) before: {before_q:?}, after: {after_q:?}; stall side: {}",
        side.unwrap_or("unknown")
    ));
    std::fs::write(
        dir.join("stall-qmp.json"),
        serde_json::to_string_pretty(&Value::Array(raw))?,
    )?;

    let mut recovered_by = answered.then(|| "none-needed".to_owned());
    if !answered {
        // 1. Guest side, through ttyS2: bounce eth0, then put back the default route (from
        // the identity a restored guest was handed, else the kernel command line).
        let bounce = "ip link set eth0 down; sleep 1; ip link set eth0 up; id=/proc/cmdline; [ -e /run/nicstorm.identity ] && id=/run/nicstorm.identity; gw=$(sed -n 's/.*nicstorm.gw=\\([^ ]*\\).*/\\1/p' $id); [ -z \"$gw\" ] || ip route replace default via $gw";
        match vm.serial_shell(bounce, Duration::from_secs(30)).await {
            Ok(_) => notes.push("guest-side link bounce done over ttyS2".into()),
            Err(e) => notes.push(format!("guest-side link bounce failed: {e:#}")),
        }
        if ssh_answers(&ep).await {
            recovered_by = Some("guest-link-bounce".into());
        } else if vm.set_link(false).is_ok() && {
            tokio::time::sleep(Duration::from_secs(1)).await;
            vm.set_link(true).is_ok()
        } {
            // 2. Host side: the libvirt interface update, down then up.
            notes.push("host-side link bounce done (domif link down, up)".into());
            if ssh_answers(&ep).await {
                recovered_by = Some("host-link-bounce".into());
            }
        } else {
            notes.push(
                "host-side link bounce not possible (user and passt modes have no tap)".into(),
            );
        }
    }
    // passt mode: the backend is a process of its own, which may be what stopped.
    if ready.lab.spec.mode == crate::matrix::plan::NetMode::Passt {
        notes.push(match ready.lab.passt_exit(role) {
            Some(status) => format!(
                "its passt had exited ({status}): the guest's network ended with it (see {role}.passt.log)"
            ),
            None => "its passt still runs".into(),
        });
    }
    let recovered_by = recovered_by.unwrap_or_else(|| "none".into());
    notes.push(format!("recovered by: {recovered_by}"));
    notes.insert(0, format!("diagnosed: {role} ({})", vm.name));
    std::fs::write(dir.join("diagnose.txt"), notes.join("\n") + "\n")?;
    Ok(Diagnosis {
        stall_side: side.map(String::from),
        recovered_by: Some(recovered_by),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qmp");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// Replies saved from a running virtio-net server (QEMU 7.2.22, TCG).
    #[test]
    fn real_replies_parse() {
        assert_eq!(
            virtio_net_path(&fixture("x-query-virtio.json")).as_deref(),
            Some("/machine/peripheral/net0/virtio-backend")
        );
        let rx = parse_queue(&fixture("x-query-virtio-queue-status-0.json")).unwrap();
        assert_eq!(
            rx,
            Queue {
                last_avail: 1000,
                shadow_avail: 1236,
                used: 1000
            }
        );
        assert_eq!(rx.pending(), 236, "receive buffers offered to the device");
        let tx = parse_queue(&fixture("x-query-virtio-queue-status-1.json")).unwrap();
        assert_eq!(tx.pending(), 0, "an idle transmit queue holds nothing");
        assert_eq!(
            parse_queue("{\"error\":{\"class\":\"GenericError\"}}"),
            None
        );
        let status: Value = serde_json::from_str(&fixture("x-query-virtio-status.json")).unwrap();
        assert_eq!(status["return"]["name"], "virtio-net");
        assert_eq!(status["return"]["broken"], false);
    }

    #[test]
    fn where_the_stall_sits() {
        let q = |last, shadow, used| Queue {
            last_avail: last,
            shadow_avail: shadow,
            used,
        };
        let tap = |to, dropped, from| TapDelta {
            to_guest: to,
            to_guest_dropped: dropped,
            from_guest: from,
        };
        let guest = |rx, tx| Some(GuestDelta { rx, tx });
        // Frames come out: L2 works.
        assert_eq!(stall_side(tap(5, 0, 3), None, None), Some("none"));
        // Nothing sent, nothing known.
        assert_eq!(stall_side(tap(0, 0, 0), guest(0, 0), None), None);
        // Delivered to the driver, nothing out: transmit.
        assert_eq!(stall_side(tap(6, 0, 0), guest(6, 6), None), Some("tx"));
        // Never reached the driver (dropped at the tap, or lost in the device): receive.
        assert_eq!(stall_side(tap(0, 6, 0), guest(0, 0), None), Some("rx"));
        assert_eq!(stall_side(tap(6, 0, 0), guest(0, 0), None), Some("rx"));
        // virtio: the transmit queue holds buffers and does not move (H2's receive_disabled).
        let stuck = Some((q(500, 530, 500), q(500, 531, 500)));
        assert_eq!(stall_side(tap(0, 6, 0), guest(0, 0), stuck), Some("tx"));
        // Without the guest's counters only tap drops say anything.
        assert_eq!(stall_side(tap(0, 6, 0), None, None), Some("rx"));
        assert_eq!(stall_side(tap(6, 0, 0), None, None), None);
        // Wrapping indices.
        assert_eq!(q(65530, 4, 65530).pending(), 10);
    }
}
