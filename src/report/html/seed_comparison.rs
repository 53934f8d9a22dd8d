//! "The seed beside us": each result of the seed (UTM on macOS) next to what was measured
//! here for the same NIC and mode, read in our verdicts.

use std::fmt::Write as _;

use super::text::{counts, esc, marks, md_code, opt, opt_secs};
use crate::matrix::plan::{Accel, DisconnectMethod, Scope, Vhost};
use crate::model::phase::Phase;
use crate::model::verdict::Verdict;
use crate::report::seed::{self, Reading, SEED};
use crate::report::{Group, Results};
use crate::results::stats::spread;
use crate::results::CellRow;

pub(crate) fn section(h: &mut String, data: &Results) {
    h.push_str(
        "<section id=\"seed\"><h2>The seed beside us</h2>\n<p class=\"note\">The seed ran UTM on \
         macOS, whose QEMU runs virtio-net in user space. On Linux, virtio-net with vhost off is \
         the closer analogue; vhost on moves the device into the host kernel. From inside an SSH \
         session a network that stalls for good and a hung guest look the same, and the seed \
         could not tell them apart: its \"hung\" is our <code>hung</code> or an \
         <code>ssh_dropped</code> that never recovered (empty recovery_seconds); the table shows \
         which of the two we saw. The seed's server froze <em>when a client disconnected</em>: only \
         a network lost at the disconnect or after it (<code>lost_phase</code>) counts as its \
         \"hung\" here; ours lost in provisioning, the ramp or hold are counted apart, by phase. \
         Rows here match on NIC and mode only; the seed disconnected one \
         client with Ctrl-C (disconnect <code>fin</code>, scope <code>one</code>).</p>\n",
    );
    h.push_str(
        "<table class=\"seed\"><thead><tr><th>seed NIC</th><th>seed mode</th>\
         <th>seed's result (UTM, macOS)</th><th>in our verdicts</th>\
         <th>measured here (same NIC and mode)</th></tr></thead><tbody>\n",
    );
    for s in SEED {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(s.seed_nic),
            esc(s.seed_mode),
            esc(s.result),
            md_code(s.in_verdicts)
        );
        let (Some(nic), Some(mode)) = (s.nic, s.mode) else {
            h.push_str(
                "<span class=\"note\">no counterpart: nicstorm runs QEMU (KVM or TCG), \
                not VMware</span></td></tr>\n",
            );
            continue;
        };
        let mut matching: Vec<&Group> = data
            .groups
            .iter()
            .filter(|g| !g.is_search() && g.row().nic == nic && g.row().mode == mode)
            .collect();
        // vhost off first: the closer analogue of UTM's user-space virtio.
        matching.sort_by_key(|g| {
            (
                g.row().vhost != Some(Vhost::Off),
                data.class_index(&g.class),
            )
        });
        if matching.is_empty() {
            h.push_str("<span class=\"note\">not run</span>");
        }
        for g in matching {
            seed_entry(h, data, s, g);
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn seed_entry(h: &mut String, data: &Results, s: &seed::SeedRow, g: &Group) {
    let r = g.row();
    let mut setup = vec![];
    match r.vhost.known() {
        Some(Some(Vhost::Off)) => {
            setup.push("vhost off (closer analogue of UTM's user-space virtio)".to_owned())
        }
        Some(Some(Vhost::On)) => {
            let under_tcg = r.accel.as_ref().is_some_and(|a| *a == Accel::Tcg);
            let ran = match &r.vhost_effective {
                Some(e) if *e != Some(Vhost::On) => format!(" (ran: {e})"),
                None if under_tcg => {
                    " (under TCG libvirt gives no vhost-net: user-space virtio ran)".to_owned()
                }
                _ => String::new(),
            };
            setup.push(format!("vhost on{ran}"));
        }
        _ => {}
    }
    // The seed disconnected one client with Ctrl-C.
    if r.disconnect != DisconnectMethod::Fin || r.scope != Scope::One {
        setup.push(format!("disconnect {} on {}", r.disconnect, r.scope));
    }
    if !r.runs_system_qemu() {
        setup.push(format!("qemu {}", r.qemu));
    }
    if !r.has_no_traffic() {
        setup.push(format!("traffic {}", r.traffic));
    }
    let _ = write!(
        h,
        "<div class=\"entry\"><span class=\"axes\">{}{}accel <b>{}</b>, target <b>{}</b> of {} \
         connections; {}</span>",
        esc(&setup.join("; ")),
        if setup.is_empty() { "" } else { "; " },
        esc(r.accel.as_ref().map_or("?", |a| a.as_str())),
        esc(&opt(r.target)),
        r.connections,
        esc(&g.class),
    );
    marks(h, g);
    let _ = write!(
        h,
        "<a class=\"counts\" href=\"#{}\">{}</a>",
        g.anchor(data.class_index(&g.class)),
        esc(&counts(g))
    );
    let measured: Vec<&CellRow> = g.measured().map(|r| &r.row).collect();
    let n = measured.len();
    let count = |f: &dyn Fn(&CellRow) -> bool| measured.iter().filter(|r| f(r)).count();
    let never = count(&|r| r.verdict == Verdict::SshDropped && r.recovery_seconds.is_none());
    let recovered = count(&|r| r.verdict == Verdict::SshDropped && r.recovery_seconds.is_some());
    let reading =
        match s.reading {
            Reading::Hung => hung_reading(&measured),
            Reading::Lag => {
                let vcpu = spread(&measured.iter().map(|r| r.peak_vcpu_pct).collect::<Vec<_>>());
                format!(
                "<code>ssh_slow</code> {}/{n}; slowest probe median {}; busiest vCPU thread at \
                 disconnect median {}",
                count(&|r| r.verdict == Verdict::SshSlow),
                opt_secs(
                    spread(&measured.iter().map(|r| r.ssh_max_seconds).collect::<Vec<_>>())
                        .map(|s| s.median)
                ),
                vcpu.map_or("–".into(), |s| format!("{:.0} %", s.median)),
            )
            }
            Reading::DropRecovered => format!(
            "<code>ssh_dropped</code> that recovered {recovered}/{n}, never recovered {never}/{n}"
        ),
            Reading::NoCounterpart => String::new(),
        };
    let _ = write!(
        h,
        "<br><span class=\"small\">{reading}{}{}</span></div>",
        if n < g.reps.len() {
            format!(" ({} error repetition(s) left out)", g.reps.len() - n)
        } else {
            String::new()
        },
        match seed::comparability(s, r.target) {
            c if c.is_empty() => String::new(),
            c => format!("; {}", esc(&c)),
        }
    );
}

/// The seed's "hung at ~2k connections disconnecting" in our rows: a freeze (`hung`, or
/// `ssh_dropped` that never recovered) counts as the seed's only when the network was lost at
/// the disconnect or after it; a loss in provisioning, the ramp or hold is another finding
/// and is counted apart, by phase. Rows from builds before `lost_phase` are counted as
/// "phase not recorded".
fn hung_reading(measured: &[&CellRow]) -> String {
    let n = measured.len();
    let frozen = |r: &&&CellRow| {
        r.verdict == Verdict::Hung
            || (r.verdict == Verdict::SshDropped && r.recovery_seconds.is_none())
    };
    let at_or_after = |r: &&&CellRow| {
        r.lost_phase
            .as_ref()
            .and_then(|p| p.known())
            .is_some_and(|p| matches!(p, Phase::Disconnect | Phase::Observe))
    };
    let count = |f: &dyn Fn(&&&CellRow) -> bool| measured.iter().filter(|r| f(r)).count();
    let hung_at = count(&|r| r.verdict == Verdict::Hung && at_or_after(r));
    let never_at = count(&|r| {
        r.verdict == Verdict::SshDropped && r.recovery_seconds.is_none() && at_or_after(r)
    });
    let recovered = count(&|r| r.verdict == Verdict::SshDropped && r.recovery_seconds.is_some());
    let mut out = format!(
        "the seed's \"hung\" (lost at the disconnect or after): <code>hung</code> {hung_at}/{n}, \
         <code>ssh_dropped</code> never recovered {never_at}/{n}; <code>ssh_dropped</code> that \
         recovered {recovered}/{n}"
    );
    // Losses earlier than the seed's moment, by phase.
    let earlier: Vec<(Phase, usize)> = [Phase::Provision, Phase::Prepare, Phase::Ramp, Phase::Hold]
        .into_iter()
        .map(|p| {
            (
                p,
                count(&|r| r.lost_phase.as_ref().and_then(|l| l.known()) == Some(&p)),
            )
        })
        .filter(|(_, k)| *k > 0)
        .collect();
    if !earlier.is_empty() {
        let k: usize = earlier.iter().map(|(_, k)| k).sum();
        let by_phase: Vec<String> = earlier.iter().map(|(p, k)| format!("{p} {k}")).collect();
        out.push_str(&format!(
            "; <b>lost before the disconnect</b> (not the seed's moment, any verdict) {k}/{n}: {}",
            by_phase.join(", ")
        ));
    }
    let frozen_unrecorded = count(&|r| frozen(r) && r.lost_phase.is_none());
    if frozen_unrecorded > 0 {
        out.push_str(&format!(
            "; frozen with the phase of the loss not recorded (rows of builds before \
             <code>lost_phase</code>) {frozen_unrecorded}/{n}"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::results::CellRow;

    fn row(verdict: &str, lost: Option<&str>, recovered: bool) -> CellRow {
        CellRow {
            lost_phase: lost.map(Into::into),
            recovery_seconds: recovered.then_some(3.0),
            ..CellRow::example("a", 1, verdict)
        }
    }

    #[test]
    fn only_losses_at_or_after_the_disconnect_count_as_the_seeds_hung() {
        let rows = [
            row("ssh_dropped", Some("ramp"), false),
            row("ssh_dropped", Some("ramp"), false),
            row("ssh_dropped", Some("hold"), false),
            row("ssh_dropped", Some("disconnect"), false),
            row("hung", Some("observe"), false),
            row("ssh_dropped", Some("observe"), true),
            row("ssh_dropped", None, false),
            row("ok", None, false),
        ];
        let refs: Vec<&CellRow> = rows.iter().collect();
        let text = super::hung_reading(&refs);
        assert!(text.contains("<code>hung</code> 1/8"), "{text}");
        assert!(text.contains("never recovered 1/8;"), "{text}");
        assert!(text.contains("recovered 1/8"), "{text}");
        assert!(
            text.contains(
                "<b>lost before the disconnect</b> (not the seed's moment, any verdict) 3/8: ramp 2, hold 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("not recorded (rows of builds before <code>lost_phase</code>) 1/8"),
            "{text}"
        );
    }
}
