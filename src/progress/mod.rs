//! Typed engine events. The engine never draws: it sends events, and a reporter turns them into
//! progress bars (a watching human on a TTY) or plain log lines (CI, pipes, files).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::phase::Phase;
use crate::model::verdict::Verdict;
use crate::support::markup::or_dash;

/// How a cell x repetition ended: the one thing its `CellFinished` event carries.
#[derive(Clone, Debug, PartialEq)]
pub enum CellEnd {
    /// It ran; the verdict is a result (a hang included).
    Verdict { verdict: Verdict, detail: String },
    /// The harness failed in `phase`.
    Error { phase: Phase, message: String },
    /// A signal ended the run during this cell; it was torn down and has no row.
    Interrupted { signal: &'static str },
    /// This host cannot run the cell as asked; recorded, not run.
    NotApplicable { reason: String },
}

impl CellEnd {
    /// The word shown for it.
    pub(crate) fn word(&self) -> String {
        match self {
            CellEnd::Verdict { verdict, .. } => verdict.to_string(),
            CellEnd::Error { phase, .. } => format!("error in {phase}"),
            CellEnd::Interrupted { signal } => format!("interrupted by {signal}"),
            CellEnd::NotApplicable { .. } => Verdict::NotApplicable.to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    Banner(String),
    CellStarted {
        index: usize,
        total: usize,
        label: String,
        cell_id: String,
        repetition: u32,
    },
    CellSkipped {
        label: String,
        cell_id: String,
        reason: String,
    },
    Phase {
        phase: Phase,
        detail: String,
    },
    GuestReady {
        vm: String,
        secs: f64,
    },
    /// Per-client established counts and the total, with the total's rate.
    Ramp {
        clients: Vec<u64>,
        target: u64,
        rate: f64,
    },
    RampEnded {
        peak: u64,
        target: u64,
        secs: f64,
        why: String,
    },
    Observe {
        at: f64,
        window: f64,
        ssh_ok: Option<bool>,
        established: Option<u64>,
        hb_gap: Option<f64>,
    },
    /// Exactly one per cell x repetition that started, on every path.
    CellFinished {
        label: String,
        cell_id: String,
        repetition: u32,
        end: CellEnd,
    },
    Warning(String),
}

pub trait Reporter: Send + Sync {
    fn event(&self, e: &Event);
}

/// Picks bars for a human at a TTY, plain lines otherwise (or when CI is set).
pub(crate) fn reporter() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
        Box::new(Bars::default())
    } else {
        Box::new(Plain {
            last_ramp: Mutex::new(None),
            started: Instant::now(),
        })
    }
}

/// Plain lines on stderr; ramp and observe updates are thinned to one every 5 s. Phase
/// lines end with the seconds since the run began, so a log shows where time went.
pub(crate) struct Plain {
    last_ramp: Mutex<Option<Instant>>,
    started: Instant,
}

impl Plain {
    fn thinned(&self) -> bool {
        let mut last = self.last_ramp.lock().unwrap();
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return true;
        }
        *last = Some(Instant::now());
        false
    }
}

impl Reporter for Plain {
    fn event(&self, e: &Event) {
        let line = match e {
            Event::Ramp {
                clients,
                target,
                rate,
            } => {
                if self.thinned() {
                    return;
                }
                let total: u64 = clients.iter().sum();
                format!("  ramp {total}/{target} ({rate:.0}/s) per client {clients:?}")
            }
            Event::Observe { .. } => {
                if self.thinned() {
                    return;
                }
                format!("  {}", observe_line(e))
            }
            Event::Phase { .. } => format!(
                "{} [t+{:.1}s]",
                plain_line(e),
                self.started.elapsed().as_secs_f64()
            ),
            other => plain_line(other),
        };
        eprintln!("{line}");
    }
}

fn observe_line(e: &Event) -> String {
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

fn plain_line(e: &Event) -> String {
    match e {
        Event::Banner(s) => s.clone(),
        Event::CellStarted {
            index,
            total,
            label,
            cell_id,
            repetition,
        } => {
            format!(
                "[{}/{total}] cell {cell_id} {label} (repetition {repetition})",
                index + 1
            )
        }
        Event::CellSkipped {
            label,
            cell_id,
            reason,
        } => format!("skip cell {cell_id} {label}: {reason}"),
        Event::Phase { phase, detail } => format!("  {phase}: {detail}"),
        Event::GuestReady { vm, secs } => format!("  {vm} ready after {secs:.0}s"),
        Event::RampEnded {
            peak,
            target,
            secs,
            why,
        } => format!("  ramp ended: {peak}/{target} in {secs:.1}s ({why})"),
        Event::CellFinished { label, end, .. } => match end {
            CellEnd::Verdict { detail, .. } => format!("  => {label}: {} {detail}", end.word()),
            CellEnd::Error { message, .. } => format!("  => {label}: {}: {message}", end.word()),
            CellEnd::Interrupted { .. } => format!("  => {label}: {}", end.word()),
            CellEnd::NotApplicable { reason } => format!("  => {label}: {}: {reason}", end.word()),
        },
        Event::Warning(w) => format!("  warning: {w}"),
        Event::Ramp { .. } | Event::Observe { .. } => unreachable!("thinned in Plain::event"),
    }
}

/// indicatif bars: one per client and a total during the ramp, a spinner otherwise.
#[derive(Default)]
pub(crate) struct Bars {
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    multi: Option<MultiProgress>,
    bars: Vec<ProgressBar>,
    status: Option<ProgressBar>,
}

impl BarState {
    fn multi(&mut self) -> &MultiProgress {
        self.multi
            .get_or_insert_with(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    }

    fn status(&mut self) -> ProgressBar {
        if self.status.is_none() {
            let pb = self.multi().add(ProgressBar::new_spinner());
            pb.enable_steady_tick(Duration::from_millis(200));
            self.status = Some(pb);
        }
        self.status.clone().unwrap()
    }

    fn clear(&mut self) {
        for b in self.bars.drain(..) {
            b.finish_and_clear();
        }
        if let Some(s) = self.status.take() {
            s.finish_and_clear();
        }
    }
}

impl Reporter for Bars {
    fn event(&self, e: &Event) {
        let mut st = self.state.lock().unwrap();
        match e {
            Event::Ramp {
                clients,
                target,
                rate,
            } => {
                if st.bars.is_empty() {
                    let style =
                        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {msg}")
                            .expect("static template")
                            .progress_chars("=> ");
                    let per = target.div_ceil(clients.len().max(1) as u64);
                    for i in 0..clients.len() {
                        let pb = st
                            .multi()
                            .add(ProgressBar::new(per).with_style(style.clone()));
                        pb.set_prefix(format!("client{}", i + 1));
                        st.bars.push(pb);
                    }
                    let total = st.multi().add(ProgressBar::new(*target).with_style(style));
                    total.set_prefix("total");
                    st.bars.push(total);
                }
                for (pb, n) in st.bars.iter().zip(clients) {
                    pb.set_position(*n);
                }
                if let Some(total) = st.bars.last() {
                    total.set_position(clients.iter().sum());
                    total.set_message(format!("{rate:.0}/s"));
                }
            }
            Event::Observe { .. } => st.status().set_message(observe_line(e)),
            Event::Phase { phase, detail } => {
                st.clear();
                let pb = st.status();
                pb.set_message(format!("{phase}: {detail}"));
                let _ = st.multi().println(plain_line(e));
            }
            other => {
                if matches!(other, Event::RampEnded { .. } | Event::CellFinished { .. }) {
                    st.clear();
                }
                let _ = st.multi().println(plain_line(other));
            }
        }
    }
}
