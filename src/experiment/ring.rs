//! The packet ring of the server's tap for one cell (README "The packet ring"): started once
//! provisioning has named the tap (bridge and nat; user and passt modes have none), stopped
//! when the cell has its verdict, and copied into the cell directory when the cell lost a
//! network, was ssh_slow, or `settings.capture: always` asks; otherwise the lab's teardown
//! removes it. A cell without a tap says so in its directory (`capture.txt`).

use crate::lab::capture::Capture;
use crate::lab::Role;
use crate::matrix::plan::{Capture as When, CaptureSettings, NetMode};
use crate::model::verdict::Verdict;
use crate::progress::{Event, Warning};

use super::provision::Ready;
use super::CellContext;

/// Starts the ring on the server's tap when the mode has one and `when` (the setting under
/// this accelerator, `CaptureSettings::when`) asks for it.
pub(super) async fn start(
    when: When,
    settings: CaptureSettings,
    mode: NetMode,
    ready: &Ready,
) -> anyhow::Result<Option<Capture>> {
    if when == When::Off || !mode.has_tap() {
        return Ok(None);
    }
    let iface = ready.lab.tap(Role::Server);
    let dir = ready.lab.state_dir.join(crate::lab::capture::CAPTURE_DIR);
    // tcpdump opens the tap within milliseconds; the wait is bounded, but blocking.
    let capture = tokio::task::spawn_blocking(move || {
        Capture::start(&iface, &dir, settings.snaplen, settings.ring_bytes)
    })
    .await??;
    tracing::info!(
        iface = capture.iface(),
        pid = capture.pid(),
        "packet ring started"
    );
    Ok(Some(capture))
}

/// Why a cell that asks for a ring has none (its mode has no tap), for `capture.txt` in its
/// directory; None when it has one or asks for none.
pub(super) fn unavailable(when: When, mode: NetMode) -> Option<String> {
    if when == When::Off || mode.has_tap() {
        return None;
    }
    Some(match mode {
        NetMode::Passt => "no packet ring: passt mode has no tap to capture (the NIC's frames go over a unix socket to passt). \
            passt's own --pcap writes every frame of the socket to one file, without bound, so nicstorm does not turn it on; \
            what passt did is in <role>.passt.log, and each guest's own counters are in counters.csv\n"
            .to_owned(),
        _ => format!("no packet ring: {mode} mode has no tap to capture (slirp runs inside QEMU)\n"),
    })
}

/// Whether a cell's ring is kept: `always`, or `on-loss` and the cell lost a network (a loss
/// before observe, or a verdict about a lost network) or was ssh_slow.
pub(super) fn keep(when: When, verdict: Option<Verdict>, lost_before_observe: bool) -> bool {
    match when {
        When::Off => false,
        When::Always => true,
        When::OnLoss => {
            lost_before_observe
                || matches!(
                    verdict,
                    Some(
                        Verdict::SshDropped
                            | Verdict::Hung
                            | Verdict::Crashed
                            | Verdict::ClientDropped
                            | Verdict::SshSlow
                    )
                )
        }
    }
}

/// Stops the ring and keeps it in the cell directory (`capture/`) when `keep` says so. A
/// failure is a warning: the cell's measurement stands without its ring.
pub(super) fn finish(ctx: &CellContext<'_>, capture: Option<Capture>, keep_it: bool) {
    let Some(mut capture) = capture else { return };
    let done = if keep_it {
        capture.keep(&ctx.cell_dir).map(|_| ())
    } else {
        capture.stop().map(|_| ())
    };
    if let Err(e) = done {
        let e = e.context(format!("the ring of {}", capture.iface()));
        ctx.rep
            .event(&Event::Warning(Warning::Capture((&e).into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_kept_for_a_lost_network_an_ssh_slow_cell_or_always() {
        for v in [
            Verdict::SshDropped,
            Verdict::Hung,
            Verdict::Crashed,
            Verdict::ClientDropped,
            Verdict::SshSlow,
        ] {
            assert!(keep(When::OnLoss, Some(v), false), "{v}");
            assert!(!keep(When::Off, Some(v), true), "{v}");
        }
        for v in [Verdict::Ok, Verdict::NotReached] {
            assert!(!keep(When::OnLoss, Some(v), false), "{v}");
            assert!(keep(When::Always, Some(v), false), "{v}");
        }
        // A harness error has no verdict; a loss seen before it still keeps the ring.
        assert!(!keep(When::OnLoss, None, false));
        assert!(keep(When::OnLoss, None, true));
        assert!(keep(When::Always, None, false));
    }

    #[test]
    fn a_mode_without_a_tap_says_why_it_has_no_ring() {
        let why = unavailable(When::OnLoss, NetMode::Passt).unwrap();
        assert!(
            why.contains("passt mode has no tap") && why.contains("--pcap"),
            "{why}"
        );
        assert!(unavailable(When::Always, NetMode::User)
            .unwrap()
            .contains("user mode has no tap"));
        assert_eq!(unavailable(When::Off, NetMode::Passt), None);
        assert_eq!(unavailable(When::Always, NetMode::Bridge), None);
    }
}
