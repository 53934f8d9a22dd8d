//! Pure: the observations of one cell's observe phase -> verdict, recovery seconds, and a
//! one-line reason with the numbers that decided it.
//!
//! All times are seconds since the disconnect signal; the observe window is `[0, window]`.
//! Observations outside the window are ignored, except heartbeats before 0, which show that the
//! heartbeat channel worked at all.
//!
//! Definitions (docs/EXPERIMENT.md "Telling hung from network only"):
//!
//! - **heartbeat gap**: a silence inside `[0, window]` -- between consecutive arrivals, from 0
//!   to the first arrival, and from the last arrival to the window end (a silence still going
//!   on when the window closes counts). With no arrival in the window the gap is the whole
//!   window. It is unknown when no heartbeat ever arrived, not even during hold.
//! - **slow threshold**: with a hold baseline `b`, `max(ssh_slow_factor * b, b + ssh_slow_min)`:
//!   the factor scales with a slow (TCG) guest, the additive floor keeps jitter on a fast one
//!   from counting. Without a baseline the threshold is `ssh_slow_min` alone, i.e. the formula
//!   with `b = 0`; the reason then says so.
//! - A probe is **good** when it succeeded and its latency is at most the slow threshold (a
//!   success without a latency is good: nothing says it was slow).
//!
//! Verdicts, first match wins:
//!
//! 1. `crashed` -- the server domain left "running".
//! 2. `error` -- the window is not a positive length, or no heartbeat ever arrived: without a
//!    working heartbeat a hang cannot be told from a network failure.
//! 3. `hung` -- a heartbeat gap >= `hang_gap`.
//! 4. `ssh_dropped` -- a probe failed or the long-lived session dropped (the heartbeat kept
//!    flowing, or rule 3 would have matched).
//! 5. `ssh_slow` -- the slowest successful probe is above the slow threshold.
//! 6. `not_reached` -- peak established below target, or unknown.
//! 7. `ok`.
//!
//! **Recovery seconds**, the same definition for every verdict: the `at` of the first probe of
//! the final unbroken run of good probes that lasts to the end of the window, where the run
//! must also start after every bad event -- a failed or slow probe, the session drop, and the
//! end of every heartbeat gap >= `hang_gap`. For a cell that never went bad this is the first
//! probe's time, the resolution of the measurement. `None` (not recovered) when the last probe
//! is bad, the window ends inside a hang-sized heartbeat gap, the domain crashed, or no good
//! probe follows the last bad event; also `None` when there were no probes or no heartbeat ever
//! arrived (then nothing shows the guest was free of hangs).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thresholds {
    /// A heartbeat silence at least this long means the guest hung.
    pub(crate) hang_gap: Duration,
    /// Probe latency above this multiple of the hold baseline is slow...
    pub(crate) ssh_slow_factor: f64,
    /// ...and also at least this much above the baseline.
    pub(crate) ssh_slow_min: Duration,
}

/// One new-SSH-connection probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    /// Seconds since the disconnect signal at which the probe started.
    pub(crate) at: f64,
    pub(crate) ok: bool,
    /// Seconds, when ok.
    pub(crate) latency: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) target: u64,
    pub(crate) peak_established: Option<u64>,
    /// Server domain left "running" (crashed/paused/shutoff) at this time.
    pub(crate) domain_crashed_at: Option<f64>,
    /// Arrivals of server heartbeat lines, seconds since the disconnect signal; negative for
    /// those that arrived during hold.
    pub(crate) heartbeat_arrivals: Vec<f64>,
    /// Observe window length in seconds.
    pub(crate) window: f64,
    /// Median new-connection probe latency during hold, seconds.
    pub(crate) ssh_baseline: Option<f64>,
    /// New-SSH-connection probes during observe.
    pub(crate) probes: Vec<Probe>,
    /// The long-lived session's command failed at.
    pub(crate) session_dropped_at: Option<f64>,
}

/// How a cell x repetition ended. `decide` gives the first seven from observations; `Error`
/// is also what the runner records when the harness failed (with the phase), and
/// `NotApplicable` what it records for a cell this host cannot run as asked (e.g. vhost-net
/// under TCG), with the reason in the row's error column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Verdict {
    Ok,
    SshSlow,
    SshDropped,
    Hung,
    Crashed,
    NotReached,
    /// A client lost its network (SSH to it failed while its domain ran) before the observe
    /// window: a result about the NIC model, not a harness failure.
    ClientDropped,
    /// A row that has not ended in a result is an error until it does.
    #[default]
    Error,
    NotApplicable,
}

impl Verdict {
    pub(crate) const ALL: [Verdict; 9] = [
        Verdict::Ok,
        Verdict::SshSlow,
        Verdict::SshDropped,
        Verdict::Hung,
        Verdict::Crashed,
        Verdict::NotReached,
        Verdict::ClientDropped,
        Verdict::Error,
        Verdict::NotApplicable,
    ];

    /// What the verdict means, in one line (README "Verdicts"; the report's legend).
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Verdict::Ok => "none of the below",
            Verdict::SshSlow => "SSH probes far slower than during hold",
            Verdict::SshDropped => "an SSH probe failed or the session broke; heartbeat alive",
            Verdict::Hung => "the serial heartbeat stopped for hang_gap or longer",
            Verdict::Crashed => "the server domain left the running state",
            Verdict::NotReached => "the ramp fell short of the target",
            Verdict::ClientDropped => {
                "a client lost its network before the observe window (SSH to it failed; its VM ran)"
            }
            Verdict::Error => "the harness failed; nothing measured",
            Verdict::NotApplicable => {
                "this host cannot run the cell as asked (e.g. vhost-net under TCG); not run"
            }
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::SshSlow => "ssh_slow",
            Verdict::SshDropped => "ssh_dropped",
            Verdict::Hung => "hung",
            Verdict::Crashed => "crashed",
            Verdict::NotReached => "not_reached",
            Verdict::ClientDropped => "client_dropped",
            Verdict::Error => "error",
            Verdict::NotApplicable => "not_applicable",
        }
    }
}

impl crate::model::named::Vocabulary for Verdict {
    fn name(&self) -> &str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}

impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict {0:?}")]
pub struct UnknownVerdict(pub(crate) String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerdict(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) verdict: Verdict,
    pub(crate) recovery_seconds: Option<f64>,
    /// Largest heartbeat gap inside the window; `None` when no heartbeat ever arrived.
    pub(crate) max_heartbeat_gap: Option<f64>,
    /// Slowest successful probe, seconds.
    pub(crate) ssh_max: Option<f64>,
    pub(crate) probe_failures: u32,
    /// One line explaining the verdict with the numbers that decided it.
    pub(crate) reason: String,
}

/// A heartbeat silence inside the window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gap {
    start: f64,
    end: f64,
    /// Still silent when the window closed.
    open: bool,
}

impl Gap {
    fn len(&self) -> f64 {
        self.end - self.start
    }
}

/// Every silence inside `[0, window]`, or `None` when no heartbeat ever arrived up to the
/// window end.
fn heartbeat_gaps(arrivals: &[f64], window: f64) -> Option<Vec<Gap>> {
    let mut seen: Vec<f64> = arrivals
        .iter()
        .copied()
        .filter(|t| t.is_finite() && *t <= window)
        .collect();
    if seen.is_empty() {
        return None;
    }
    seen.retain(|t| *t >= 0.0);
    seen.sort_by(f64::total_cmp);
    let mut gaps = Vec::with_capacity(seen.len() + 1);
    let mut prev = 0.0;
    for t in seen {
        gaps.push(Gap {
            start: prev,
            end: t,
            open: false,
        });
        prev = t;
    }
    gaps.push(Gap {
        start: prev,
        end: window,
        open: true,
    });
    Some(gaps)
}

fn slow_threshold(baseline: Option<f64>, th: &Thresholds) -> f64 {
    let min = th.ssh_slow_min.as_secs_f64();
    match baseline {
        Some(b) => (th.ssh_slow_factor * b).max(b + min),
        None => min,
    }
}

fn secs(x: f64) -> String {
    format!("{x:.2} s")
}

/// What the rules read off one observation: the probes and heartbeat gaps in the window, and
/// the slow threshold.
struct Facts<'a> {
    window: f64,
    /// `hang_gap` in seconds.
    hang: f64,
    threshold: f64,
    /// Probes inside the window, by time.
    probes: Vec<&'a Probe>,
    failed: Vec<&'a Probe>,
    /// Slowest successful probe.
    ssh_max: Option<f64>,
    session_drop: Option<f64>,
    /// Every heartbeat silence in the window; `None` when no heartbeat ever arrived (or the
    /// window is no positive length).
    gaps: Option<Vec<Gap>>,
    widest: Option<Gap>,
}

impl<'a> Facts<'a> {
    fn of(obs: &'a Observation, th: &Thresholds) -> Facts<'a> {
        let window = obs.window;
        let in_window = |t: f64| t.is_finite() && (0.0..=window).contains(&t);
        let mut probes: Vec<&Probe> = obs.probes.iter().filter(|p| in_window(p.at)).collect();
        probes.sort_by(|a, b| a.at.total_cmp(&b.at));
        let failed = probes.iter().copied().filter(|p| !p.ok).collect();
        let ssh_max = probes
            .iter()
            .filter(|p| p.ok)
            .filter_map(|p| p.latency)
            .max_by(f64::total_cmp);
        let gaps = if window.is_finite() && window > 0.0 {
            heartbeat_gaps(&obs.heartbeat_arrivals, window)
        } else {
            None
        };
        let widest = gaps
            .as_ref()
            .and_then(|g| g.iter().copied().max_by(|a, b| a.len().total_cmp(&b.len())));
        Facts {
            window,
            hang: th.hang_gap.as_secs_f64(),
            threshold: slow_threshold(obs.ssh_baseline, th),
            probes,
            failed,
            ssh_max,
            session_drop: obs.session_dropped_at.filter(|t| in_window(*t)),
            gaps,
            widest,
        }
    }

    /// A probe that succeeded no slower than the threshold.
    fn good(&self, p: &Probe) -> bool {
        p.ok && p.latency.is_none_or(|l| l <= self.threshold)
    }

    /// Heartbeat silences of at least `hang_gap`.
    fn hang_gaps(&self) -> Vec<Gap> {
        self.gaps
            .iter()
            .flatten()
            .copied()
            .filter(|g| g.len() >= self.hang)
            .collect()
    }

    /// "heartbeat kept flowing (max gap ...)", for the verdicts that come after `hung`.
    fn hb_alive(&self) -> String {
        match self.widest {
            Some(g) => format!(
                "heartbeat kept flowing (max gap {} < {})",
                secs(g.len()),
                secs(self.hang)
            ),
            None => String::new(),
        }
    }
}

/// A rule's verdict and its reason, when the rule matches.
type Rule = Option<(Verdict, String)>;

/// Rule 1: the server domain left "running".
fn crashed(obs: &Observation) -> Rule {
    let t = obs.domain_crashed_at?;
    Some((
        Verdict::Crashed,
        format!(
            "server domain stopped running at {} after the disconnect",
            secs(t)
        ),
    ))
}

/// Rule 2: no window to judge, or no heartbeat at all to tell a hang from a network failure.
fn no_evidence(f: &Facts) -> Rule {
    if !(f.window.is_finite() && f.window > 0.0) {
        return Some((
            Verdict::Error,
            format!("observe window {} s is not a positive length", f.window),
        ));
    }
    f.widest.is_none().then(|| {
        (
            Verdict::Error,
            "no heartbeat line ever arrived from the server: a hang cannot be told from a network failure"
                .into(),
        )
    })
}

/// Rule 3: a heartbeat gap of at least `hang_gap`.
fn hung(f: &Facts) -> Rule {
    let widest = f.widest.filter(|g| g.len() >= f.hang)?;
    let place = if widest.open {
        format!(
            "from {} to the window end {}, still silent",
            secs(widest.start),
            secs(f.window)
        )
    } else {
        format!("from {} to {}", secs(widest.start), secs(widest.end))
    };
    Some((
        Verdict::Hung,
        format!(
            "heartbeat silent for {} ({place}) >= hang threshold {}",
            secs(widest.len()),
            secs(f.hang)
        ),
    ))
}

/// Rule 4: a probe failed or the long-lived session dropped.
fn ssh_dropped(f: &Facts) -> Rule {
    if f.failed.is_empty() && f.session_drop.is_none() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(first) = f.failed.first() {
        parts.push(format!(
            "{} of {} SSH probes failed (first at {})",
            f.failed.len(),
            f.probes.len(),
            secs(first.at)
        ));
    }
    if let Some(t) = f.session_drop {
        parts.push(format!("long-lived SSH session dropped at {}", secs(t)));
    }
    parts.push(f.hb_alive());
    Some((Verdict::SshDropped, parts.join("; ")))
}

/// How the slow threshold was made, for reasons.
fn slow_basis(obs: &Observation, th: &Thresholds) -> String {
    match obs.ssh_baseline {
        Some(b) => format!(
            "max({} x baseline {}, baseline + {})",
            th.ssh_slow_factor,
            secs(b),
            secs(th.ssh_slow_min.as_secs_f64())
        ),
        None => format!(
            "no hold baseline: ssh_slow_min {}",
            secs(th.ssh_slow_min.as_secs_f64())
        ),
    }
}

/// Rule 5: the slowest successful probe is above the slow threshold.
fn ssh_slow(f: &Facts, basis: &str) -> Rule {
    let max = f.ssh_max.filter(|m| *m > f.threshold)?;
    Some((
        Verdict::SshSlow,
        format!(
            "slowest SSH probe {} > slow threshold {} = {basis}; {}",
            secs(max),
            secs(f.threshold),
            f.hb_alive()
        ),
    ))
}

/// Rules 6 and 7: `not_reached` when the peak is below target or unknown, else `ok`.
fn reached(obs: &Observation, f: &Facts, basis: &str) -> (Verdict, String) {
    let ssh = match f.ssh_max {
        Some(max) => format!(
            "{} SSH probes ok, slowest {} <= {} = {basis}",
            f.probes.len(),
            secs(max),
            secs(f.threshold)
        ),
        None if f.probes.is_empty() => "no SSH probes ran".to_owned(),
        None => format!("{} SSH probes ok (no latencies)", f.probes.len()),
    };
    match obs.peak_established {
        Some(peak) if peak >= obs.target => (
            Verdict::Ok,
            format!(
                "peak established {peak} >= target {}; {ssh}; {}",
                obs.target,
                f.hb_alive()
            ),
        ),
        Some(peak) => (
            Verdict::NotReached,
            format!("peak established {peak} < target {}; {ssh}", obs.target),
        ),
        None => (
            Verdict::NotReached,
            format!("peak established unknown (target {}); {ssh}", obs.target),
        ),
    }
}

/// The verdict of one observation: the first rule that matches (module doc), with the
/// recovery seconds and the figures every verdict carries.
pub(crate) fn decide(obs: &Observation, th: &Thresholds) -> Outcome {
    let f = Facts::of(obs, th);
    let basis = slow_basis(obs, th);
    let (verdict, reason) = crashed(obs)
        .or_else(|| no_evidence(&f))
        .or_else(|| hung(&f))
        .or_else(|| ssh_dropped(&f))
        .or_else(|| ssh_slow(&f, &basis))
        .unwrap_or_else(|| reached(obs, &f, &basis));
    // Without any heartbeat there is no evidence the guest was free of hangs.
    let recovery_seconds = if f.gaps.is_none() || obs.domain_crashed_at.is_some() {
        None
    } else {
        recovery(&f.probes, |p| f.good(p), f.session_drop, &f.hang_gaps())
    };
    Outcome {
        verdict,
        recovery_seconds,
        max_heartbeat_gap: f.widest.map(|g| g.len()),
        ssh_max: f.ssh_max,
        probe_failures: f.failed.len() as u32,
        reason,
    }
}

/// See the module doc for the definition.
fn recovery(
    probes: &[&Probe],
    good: impl Fn(&Probe) -> bool,
    session_drop: Option<f64>,
    hang_gaps: &[Gap],
) -> Option<f64> {
    if hang_gaps.iter().any(|g| g.open) {
        return None;
    }
    let run_from = probes.iter().rposition(|p| !good(p)).map_or(0, |i| i + 1);
    let after_session = |p: &&&Probe| session_drop.is_none_or(|d| p.at > d);
    let after_hangs = |p: &&&Probe| hang_gaps.iter().all(|g| p.at >= g.end);
    probes[run_from..]
        .iter()
        .filter(after_session)
        .find(after_hangs)
        .map(|p| p.at)
}

/// First time (seconds since the disconnect) at which the server's established count was at
/// most `expected_remaining`, from `(seconds since disconnect, established)` samples. Samples
/// before the disconnect are ignored: a low count during ramp says nothing about draining.
/// `None` if the count never got that low.
pub(crate) fn drain_seconds(samples: &[(f64, u64)], expected_remaining: u64) -> Option<f64> {
    samples
        .iter()
        .filter(|(t, est)| t.is_finite() && *t >= 0.0 && *est <= expected_remaining)
        .map(|(t, _)| *t)
        .min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th() -> Thresholds {
        // Slow threshold with the 1.5 s baseline below: max(4.5, 3.5) = 4.5 s.
        Thresholds {
            hang_gap: Duration::from_secs(5),
            ssh_slow_factor: 3.0,
            ssh_slow_min: Duration::from_secs(2),
        }
    }

    /// Heartbeats every 0.25 s from -2 s (hold) to the end of a 30 s window, skipping (lo, hi).
    fn beats_except(lo: f64, hi: f64) -> Vec<f64> {
        (-8..=120)
            .map(|i| i as f64 * 0.25)
            .filter(|t| !(*t > lo && *t < hi))
            .collect()
    }

    fn ok_probe(at: f64, latency: f64) -> Probe {
        Probe {
            at,
            ok: true,
            latency: Some(latency),
        }
    }

    fn failed_probe(at: f64) -> Probe {
        Probe {
            at,
            ok: false,
            latency: None,
        }
    }

    /// A healthy cell: target reached, steady heartbeat, a 1.5 s probe every 2 s from 0.5 s.
    fn healthy() -> Observation {
        Observation {
            target: 1000,
            peak_established: Some(1000),
            domain_crashed_at: None,
            heartbeat_arrivals: beats_except(0.0, 0.0),
            window: 30.0,
            ssh_baseline: Some(1.5),
            probes: (0..15)
                .map(|i| ok_probe(0.5 + 2.0 * i as f64, 1.5))
                .collect(),
            session_dropped_at: None,
        }
    }

    /// Replaces the probe starting at `at`.
    fn set_probe(o: &mut Observation, probe: Probe) {
        let slot = o
            .probes
            .iter_mut()
            .find(|p| p.at == probe.at)
            .expect("probe times are 0.5 + 2k");
        *slot = probe;
    }

    struct Case {
        name: &'static str,
        obs: Observation,
        verdict: Verdict,
        recovery: Option<f64>,
        /// Text the reason must contain.
        reason: &'static str,
    }

    fn case(
        name: &'static str,
        verdict: Verdict,
        recovery: Option<f64>,
        reason: &'static str,
        edit: impl FnOnce(&mut Observation),
    ) -> Case {
        let mut obs = healthy();
        edit(&mut obs);
        Case {
            name,
            obs,
            verdict,
            recovery,
            reason,
        }
    }

    #[test]
    fn decide_table() {
        let cases = vec![
            case("ok", Verdict::Ok, Some(0.5), "peak established 1000 >= target 1000; 15 SSH probes ok, slowest 1.50 s <= 4.50 s", |_| {}),
            // -- crashed
            case("crashed", Verdict::Crashed, None, "stopped running at 3.00 s", |o| {
                o.domain_crashed_at = Some(3.0);
            }),
            case("crashed beats hung and dropped", Verdict::Crashed, None, "stopped running at 3.00 s", |o| {
                o.domain_crashed_at = Some(3.0);
                o.heartbeat_arrivals = beats_except(3.0, 31.0);
                o.session_dropped_at = Some(4.0);
                o.peak_established = Some(10);
            }),
            case("crashed without any heartbeat", Verdict::Crashed, None, "stopped running", |o| {
                o.domain_crashed_at = Some(1.0);
                o.heartbeat_arrivals.clear();
            }),
            // -- error
            case("no heartbeat ever", Verdict::Error, None, "no heartbeat line ever arrived", |o| {
                o.heartbeat_arrivals.clear();
            }),
            case("heartbeats only after the window", Verdict::Error, None, "no heartbeat line ever arrived", |o| {
                o.heartbeat_arrivals = vec![31.0, 32.0];
            }),
            case("zero window", Verdict::Error, None, "observe window 0 s is not a positive length", |o| {
                o.window = 0.0;
            }),
            // -- hung
            case("hung mid-window, recovered", Verdict::Hung, Some(12.5), "heartbeat silent for 7.00 s (from 5.00 s to 12.00 s) >= hang threshold 5.00 s", |o| {
                o.heartbeat_arrivals = beats_except(5.0, 12.0);
                set_probe(o, failed_probe(6.5));
                set_probe(o, failed_probe(8.5));
                // Started inside the gap and answered once the guest woke: not the recovery.
                set_probe(o, ok_probe(10.5, 2.0));
            }),
            case("gap exactly at threshold is hung", Verdict::Hung, Some(10.5), "silent for 5.00 s", |o| {
                o.heartbeat_arrivals = beats_except(5.0, 10.0);
            }),
            case("gap just under threshold is not", Verdict::Ok, Some(0.5), "max gap 4.75 s < 5.00 s", |o| {
                o.heartbeat_arrivals = beats_except(5.0, 9.75);
            }),
            case("hung to the end of the window", Verdict::Hung, None, "from 20.00 s to the window end 30.00 s, still silent", |o| {
                o.heartbeat_arrivals = beats_except(20.0, 31.0);
            }),
            case("hung from the disconnect on", Verdict::Hung, Some(6.5), "silent for 6.00 s (from 0.00 s to 6.00 s)", |o| {
                o.heartbeat_arrivals = beats_except(-0.1, 6.0);
            }),
            case("silent the whole window after a live hold", Verdict::Hung, None, "silent for 30.00 s (from 0.00 s to the window end", |o| {
                o.heartbeat_arrivals = beats_except(-0.1, 31.0);
            }),
            case("hung beats ssh_dropped and not_reached", Verdict::Hung, Some(14.5), "silent for 7.00 s", |o| {
                o.heartbeat_arrivals = beats_except(5.0, 12.0);
                set_probe(o, failed_probe(12.5));
                o.peak_established = Some(10);
            }),
            // -- ssh_dropped
            case("probe failed, heartbeat alive", Verdict::SshDropped, Some(6.5), "1 of 15 SSH probes failed (first at 4.50 s); heartbeat kept flowing (max gap 0.25 s < 5.00 s)", |o| {
                set_probe(o, failed_probe(4.5));
            }),
            case("session dropped only", Verdict::SshDropped, Some(4.5), "long-lived SSH session dropped at 3.00 s", |o| {
                o.session_dropped_at = Some(3.0);
            }),
            case("dropped beats slow and not_reached", Verdict::SshDropped, Some(10.5), "2 of 15 SSH probes failed (first at 2.50 s); long-lived SSH session dropped at 2.00 s", |o| {
                set_probe(o, failed_probe(2.5));
                set_probe(o, ok_probe(4.5, 9.0));
                set_probe(o, failed_probe(8.5));
                o.session_dropped_at = Some(2.0);
                o.peak_established = None;
            }),
            case("last probe failed: not recovered", Verdict::SshDropped, None, "1 of 15 SSH probes failed (first at 28.50 s)", |o| {
                set_probe(o, failed_probe(28.5));
            }),
            case("session dropped after the last probe", Verdict::SshDropped, None, "dropped at 29.00 s", |o| {
                o.session_dropped_at = Some(29.0);
            }),
            case("session drop after the window is ignored", Verdict::Ok, Some(0.5), "15 SSH probes ok", |o| {
                o.session_dropped_at = Some(45.0);
            }),
            // -- ssh_slow
            case("slow probe", Verdict::SshSlow, Some(8.5), "slowest SSH probe 5.00 s > slow threshold 4.50 s = max(3 x baseline 1.50 s, baseline + 2.00 s)", |o| {
                set_probe(o, ok_probe(4.5, 5.0));
                set_probe(o, ok_probe(6.5, 4.6));
            }),
            case("latency equal to threshold is not slow", Verdict::Ok, Some(0.5), "slowest 4.50 s <= 4.50 s", |o| {
                set_probe(o, ok_probe(4.5, 4.5));
            }),
            case("small baseline uses the additive floor", Verdict::SshSlow, Some(6.5), "slowest SSH probe 2.30 s > slow threshold 2.20 s", |o| {
                o.ssh_baseline = Some(0.2);
                o.probes = (0..15).map(|i| ok_probe(0.5 + 2.0 * i as f64, 0.3)).collect();
                set_probe(o, ok_probe(4.5, 2.3));
            }),
            case("no baseline: ssh_slow_min alone, slow", Verdict::SshSlow, Some(0.5 + 2.0 * 14.0), "slow threshold 2.00 s = no hold baseline: ssh_slow_min 2.00 s", |o| {
                o.ssh_baseline = None;
                o.probes = (0..15).map(|i| ok_probe(0.5 + 2.0 * i as f64, 2.5)).collect();
                set_probe(o, ok_probe(28.5, 1.0));
            }),
            case("no baseline: ssh_slow_min alone, fine", Verdict::Ok, Some(0.5), "slowest 1.50 s <= 2.00 s = no hold baseline", |o| {
                o.ssh_baseline = None;
            }),
            case("slow beats not_reached", Verdict::SshSlow, Some(6.5), "slowest SSH probe 6.00 s", |o| {
                set_probe(o, ok_probe(4.5, 6.0));
                o.peak_established = Some(999);
            }),
            case("slow to the end: not recovered", Verdict::SshSlow, None, "slowest SSH probe 6.00 s", |o| {
                set_probe(o, ok_probe(28.5, 6.0));
            }),
            // -- not_reached
            case("not reached", Verdict::NotReached, Some(0.5), "peak established 999 < target 1000", |o| {
                o.peak_established = Some(999);
            }),
            case("peak unknown", Verdict::NotReached, Some(0.5), "peak established unknown (target 1000)", |o| {
                o.peak_established = None;
            }),
            // -- probes
            case("no probes", Verdict::Ok, None, "no SSH probes ran", |o| {
                o.probes.clear();
            }),
            case("ok probe without latency counts as good", Verdict::Ok, Some(0.5), "15 SSH probes ok", |o| {
                set_probe(o, Probe { at: 0.5, ok: true, latency: None });
            }),
            case("probes outside the window are ignored", Verdict::Ok, Some(0.5), "15 SSH probes ok", |o| {
                o.probes.push(failed_probe(-1.0));
                o.probes.push(failed_probe(31.0));
            }),
            case("probe order does not matter", Verdict::SshDropped, Some(12.5), "1 of 15 SSH probes failed (first at 10.50 s)", |o| {
                set_probe(o, failed_probe(10.5));
                o.probes.reverse();
            }),
        ];
        for c in cases {
            let out = decide(&c.obs, &th());
            assert_eq!(out.verdict, c.verdict, "{}: {}", c.name, out.reason);
            assert_eq!(out.recovery_seconds, c.recovery, "{}: recovery", c.name);
            assert!(
                out.reason.contains(c.reason),
                "{}: reason {:?} lacks {:?}",
                c.name,
                out.reason,
                c.reason
            );
            assert!(!out.reason.contains('\n'), "{}: reason is one line", c.name);
        }
    }

    #[test]
    fn outcome_figures() {
        let mut o = healthy();
        o.heartbeat_arrivals = beats_except(5.0, 12.0);
        set_probe(&mut o, failed_probe(6.5));
        set_probe(&mut o, ok_probe(10.5, 3.25));
        let out = decide(&o, &th());
        assert_eq!(out.max_heartbeat_gap, Some(7.0));
        assert_eq!(out.ssh_max, Some(3.25));
        assert_eq!(out.probe_failures, 1);

        let mut o = healthy();
        o.heartbeat_arrivals.clear();
        o.probes.clear();
        let out = decide(&o, &th());
        assert_eq!(
            (out.max_heartbeat_gap, out.ssh_max, out.probe_failures),
            (None, None, 0)
        );

        // Arrivals unsorted and with junk values still give the right gap.
        let mut o = healthy();
        o.heartbeat_arrivals = vec![f64::NAN, 20.0, -1.0, 10.0, 29.0, 1.0];
        assert_eq!(decide(&o, &th()).max_heartbeat_gap, Some(10.0));
    }

    #[test]
    fn verdict_names_round_trip() {
        let names: Vec<&str> = Verdict::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(
            names,
            [
                "ok",
                "ssh_slow",
                "ssh_dropped",
                "hung",
                "crashed",
                "not_reached",
                "client_dropped",
                "error",
                "not_applicable"
            ]
        );
        for v in Verdict::ALL {
            assert_eq!(v.to_string().parse::<Verdict>(), Ok(v));
        }
        assert_eq!(
            "Hung".parse::<Verdict>(),
            Err(UnknownVerdict("Hung".into()))
        );
    }

    #[test]
    fn drain_table() {
        let samples = [
            (-3.0, 0),
            (-1.0, 3000),
            (0.0, 3000),
            (0.5, 2000),
            (1.0, 900),
            (1.5, 0),
            (2.0, 0),
        ];
        type Samples<'a> = &'a [(f64, u64)];
        // (samples, expected_remaining, want)
        let cases: &[(Samples, u64, Option<f64>)] = &[
            (&samples, 0, Some(1.5)),
            (&samples, 1000, Some(1.0)),
            (&samples, 3000, Some(0.0)),
            // Drained before the disconnect does not count.
            (&samples[..2], 0, None),
            (&samples[..5], 0, None),
            (&[], 0, None),
            // Unsorted input.
            (&[(2.0, 0), (1.0, 5), (1.5, 0)], 0, Some(1.5)),
        ];
        for (s, remaining, want) in cases {
            assert_eq!(drain_seconds(s, *remaining), *want, "{s:?} <= {remaining}");
        }
    }
}
