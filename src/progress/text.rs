//! The words of every event, as the terminal shows them: one function per kind of event, and
//! [`line`] choosing among them. Plain lines print these; the bars print them above the bars.

use std::fmt;

use super::event::{
    CellEnd, ErrorChain, Event, RampStop, RunStart, SearchDone, SlowStart, Step, Sweep, Warning,
};
use crate::model::verdict::Verdict;
use crate::support::markup::or_dash;

/// The line (or lines) an event is shown as.
pub(crate) fn line(e: &Event) -> String {
    match e {
        Event::LabAccelerator { accel, reason } => format!("accelerator: {accel} ({reason})"),
        Event::ShardSelected {
            shard,
            selected,
            total,
        } => format!("shard {shard}: {selected} of {total} cells"),
        Event::RunStarted(r) => run_started(r),
        Event::CellStarted {
            index,
            total,
            label,
            cell_id,
            repetition,
        } => format!(
            "[{}/{total}] cell {cell_id} {label} (repetition {repetition})",
            index + 1
        ),
        Event::CellSkipped {
            label,
            cell_id,
            target,
        } => format!(
            "skip cell {cell_id} {label}: already in cells.csv at {target} connections (use --force to rerun)"
        ),
        Event::Phase(step) => format!("  {}: {}", step.phase(), step_text(step)),
        Event::GuestReady { vm, secs } => format!("  {vm} ready after {secs:.0}s"),
        Event::Ramp {
            clients,
            target,
            rate,
        } => {
            let total: u64 = clients.iter().sum();
            format!("  ramp {total}/{target} ({rate:.0}/s) per client {clients:?}")
        }
        Event::RampEnded {
            peak,
            target,
            secs,
            why,
        } => format!("  ramp ended: {peak}/{target} in {secs:.1}s ({why})"),
        Event::Observe { .. } => format!("  {}", observe_status(e)),
        Event::CellFinished { label, end, .. } => format!("  => {label}: {}", cell_end(end)),
        Event::SearchDone(s) => search_done(s),
        Event::RunFinished {
            summary_table,
            results,
            summary,
            report,
        } => format!(
            "\n{summary_table}\nresults: {}\nsummary: {}\nreport:  {}",
            results.display(),
            summary.display(),
            match report {
                Ok(p) => p.display().to_string(),
                Err(e) => format!("not written: {e}"),
            }
        ),
        Event::RunTornDown => "interrupted: everything torn down; cells.csv holds the cells that finished; rerun to resume".into(),
        Event::Warning(w) => format!("  warning: {}", warning(w)),
    }
}

fn run_started(r: &RunStart) -> String {
    let mut text = format!(
        "nicstorm run {}: matrix {}{} ({} cells x {} repetitions), accelerator {}: {}",
        r.run_id,
        r.matrix.display(),
        r.shard
            .as_ref()
            .map(|s| format!(" shard {s}"))
            .unwrap_or_default(),
        r.cells,
        r.repetitions,
        r.accel,
        r.accel_reason
    );
    if let Some(tcg) = &r.tcg {
        text.push_str(&format!(
            "\n*** TCG: software emulation. Cells run at min(connections, tcg_connections = {}) with {} vCPU(s) per VM;\n*** rows say accel=tcg. Run on a KVM host for the full connection counts.",
            tcg.connections, tcg.vcpus
        ));
    }
    text
}

/// What a cell is doing in a step, without the phase's name.
pub(crate) fn step_text(step: &Step) -> String {
    let ports = |p: &std::ops::RangeInclusive<u16>| format!("{}-{}", p.start(), p.end());
    match step {
        Step::Preflight { target, accel } => format!("target {target} connections ({accel})"),
        Step::Provision {
            nic,
            mode,
            accel,
            lab,
        } => format!("{nic} x4, {mode} network, {accel} ({lab})"),
        Step::LabSaved { key, seconds } => format!(
            "saved lab {key}: four guests booted to their hold point and saved in {seconds:.1}s; cells of this kind restore it"
        ),
        Step::Provisioned {
            restored_from,
            guests,
            boot_to_ssh,
            slowest_domain_start,
            driver,
            storm_load_saved,
            ready_after,
        } => {
            let (guests, start) = match restored_from {
                Some(key) => (
                    format!("{guests} guests restored from saved lab {key}"),
                    "restore",
                ),
                None => (format!("{guests} guests"), "domain start"),
            };
            let how = if *storm_load_saved {
                "and storm-load checked at the save"
            } else {
                "verified, storm-load pushed"
            };
            format!(
                "{guests} answered SSH {boot_to_ssh:.1}s after provisioning began (slowest {start} {slowest_domain_start:.2}s), eth0 driver {driver} {how}, ready {ready_after:.1}s after"
            )
        }
        Step::Prepare { ports: p } => format!("storm-load server on {}", ports(p)),
        Step::Ramp {
            target,
            addr,
            ports: p,
        } => format!("{target} connections to {addr}:{}", ports(p)),
        Step::Hold { baseline } => format!("{baseline:?} baseline"),
        Step::Disconnect { method, clients } => format!("{method} on {}", clients.join(",")),
        Step::StallDiagnostics { role } => {
            format!("SSH to {role} still down with its heartbeat alive: stall diagnostics")
        }
        Step::Teardown { lab } => lab.clone(),
    }
}

/// The observe window's status: probes, connections, the heartbeat's longest gap.
pub(crate) fn observe_status(e: &Event) -> String {
    let Event::Observe {
        at,
        window,
        ssh_ok,
        established,
        hb_gap,
    } = e
    else {
        return String::new();
    };
    format!(
        "observe {at:.0}/{window:.0}s ssh={} established={} heartbeat_gap={}",
        or_dash(ssh_ok.map(|b| if b { "ok" } else { "FAIL" })),
        or_dash(*established),
        or_dash(hb_gap.map(|g| format!("{g:.1}s")))
    )
}

/// "ok (peak 3000/3000, drain 1.2s, ...)", "error in ramp: ...".
fn cell_end(end: &CellEnd) -> String {
    match end {
        CellEnd::Verdict {
            verdict,
            peak,
            target,
            drain_seconds,
            reason,
        } => format!(
            "{verdict} (peak {}/{}, drain {}, {reason})",
            or_dash(*peak),
            or_dash(*target),
            or_dash(drain_seconds.map(|d| format!("{d:.1}s")))
        ),
        CellEnd::Error { phase, error } => format!("error in {phase}: {error}"),
        CellEnd::Panicked { phase, panic } => format!(
            "error in {phase}: nicstorm panicked in {phase}: {panic} (a bug: please report it with nicstorm.log)"
        ),
        CellEnd::Interrupted { signal } => format!("interrupted by {signal}"),
        CellEnd::NotApplicable { reason } => format!("{}: {reason}", Verdict::NotApplicable),
    }
}

/// "search <cell> r1: ok up to 27000, failed at 30000 (stopped: resolved, after 6 steps)";
/// a search ok above reads "ok down to 256, failed at 128".
fn search_done(s: &SearchDone) -> String {
    let (way, far) = match s.ok {
        "above" => ("down", s.from),
        _ => ("up", s.to),
    };
    let ok = s
        .last_ok
        .map_or("nothing ok".into(), |n| format!("ok {way} to {n}"));
    let fail = match (s.first_fail, s.stop.as_deref()) {
        (Some(n), _) => format!("failed at {n}"),
        // It stopped before reaching the far end: nothing is known past its last ok.
        (None, Some("retries" | "step_limit")) => "no failure before it stopped".to_owned(),
        (None, _) => format!("none failed {way} to {far}"),
    };
    let flapping = if s.flapping.is_empty() {
        String::new()
    } else {
        format!("; ok again at {:?}", s.flapping)
    };
    format!(
        "search {} r{}: {ok}, {fail}{flapping} (stopped: {}, after {} steps)",
        s.label,
        s.repetition,
        or_dash(s.stop.as_deref()),
        s.steps
    )
}

fn warning(w: &Warning) -> String {
    match w {
        Warning::Removed {
            resource,
            sweep: Sweep::RunStart,
        } => format!("removed leftover of an earlier run: {resource}"),
        Warning::Removed {
            resource,
            sweep: Sweep::LabUp,
        } => format!("removed leftover {resource}"),
        Warning::Removed {
            resource,
            sweep: Sweep::Interrupted,
        } => format!("removed {resource}"),
        Warning::Kept { file, why } => kept(file, why),
        Warning::SlowDomainStart { secs, cause } => format!(
            "starting a domain took {secs:.1}s (expected well under 1 s); likely cause: {}",
            slow_start(*cause)
        ),
        Warning::SlowStartsAhead { cause } => format!(
            "domain starts will take about a minute each: {}",
            slow_start(*cause)
        ),
        Warning::LibvirtGone => "libvirtd does not answer (virsh -c qemu:///system version): start it (scripts/setup-host.sh), then rerun to resume; the cells that finished are kept".into(),
        Warning::RunInterrupted { signal, run_id } => {
            format!("{signal}: run {run_id} interrupted; tearing down")
        }
        Warning::LabInterrupted { signal } => format!("{signal}: tearing the lab down"),
        Warning::ProvisionCsv(e) => e.to_string(),
        Warning::TeardownLeft { resources } => {
            format!("teardown after the error left {}", resources.join(", "))
        }
        Warning::LeftoverCheck(e) => format!("could not check for leftovers: {e}"),
        Warning::StallDiagnostics(e) => format!("stall diagnostics: {e}"),
        Warning::Capture(e) => format!("packet ring: {e}"),
        Warning::SessionBroke { role, error } => format!(
            "{role}: its SSH session broke while storm-load stopped ({error}); \
             it answers a new connection, so asking again over a new session"
        ),
    }
}

/// Why libvirt domain starts are slow on this host.
pub(crate) fn slow_start(cause: SlowStart) -> String {
    match cause {
        SlowStart::KvmMode(mode) => format!(
            "/dev/kvm is mode {mode:o} without group access, so libvirt distrusts its QEMU capability cache and re-probes QEMU on every start; scripts/setup-host.sh sets root:kvm 0660 as Debian's udev rule does"
        ),
        SlowStart::Unknown => "libvirt re-probing QEMU on every start (see `virt-admin daemon-log-filters 1:qemu.qemu_capabilities` and libvirtd's log)".to_owned(),
    }
}

impl fmt::Display for RampStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RampStop::Reached => f.write_str("target reached"),
            RampStop::Stalled(d) => write!(f, "no progress for {d:?}"),
            RampStop::Timeout(d) => write!(f, "ramp timeout {d:?}"),
            RampStop::ServerDown { domain } => write!(f, "domain {domain} stopped"),
        }
    }
}

/// As anyhow's `{:#}`: the error, then each cause after ": ".
impl fmt::Display for ErrorChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(": "))
    }
}

/// A restore file a sweep kept, and why.
pub fn kept(file: &std::path::Path, why: &str) -> String {
    format!(
        "kept {}: {why}; the host may still have this lab's settings (put them back by hand, then remove the file)",
        file.display()
    )
}
