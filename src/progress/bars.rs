//! indicatif bars for a human at a TTY: one per client and a total during the ramp, a spinner
//! with the current step or observe status otherwise; every other event is printed above them
//! in the words of text.rs.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::text;
use super::{Event, Reporter};

#[derive(Default)]
pub struct Bars {
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

    /// The ramp's bars, made at its first update: one per client and the total.
    fn ramp(&mut self, clients: &[u64], target: u64, rate: f64) {
        if self.bars.is_empty() {
            let style = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {msg}")
                .expect("static template")
                .progress_chars("=> ");
            let per = target.div_ceil(clients.len().max(1) as u64);
            for i in 0..clients.len() {
                let pb = self
                    .multi()
                    .add(ProgressBar::new(per).with_style(style.clone()));
                pb.set_prefix(format!("client{}", i + 1));
                self.bars.push(pb);
            }
            let total = self.multi().add(ProgressBar::new(target).with_style(style));
            total.set_prefix("total");
            self.bars.push(total);
        }
        for (pb, n) in self.bars.iter().zip(clients) {
            pb.set_position(*n);
        }
        if let Some(total) = self.bars.last() {
            total.set_position(clients.iter().sum());
            total.set_message(format!("{rate:.0}/s"));
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
            } => st.ramp(clients, *target, *rate),
            Event::Observe { .. } => st.status().set_message(text::observe_status(e)),
            Event::Phase(step) => {
                st.clear();
                let pb = st.status();
                pb.set_message(format!("{}: {}", step.phase(), text::step_text(step)));
                let _ = st.multi().println(text::line(e));
            }
            other => {
                if matches!(other, Event::RampEnded { .. } | Event::CellFinished { .. }) {
                    st.clear();
                }
                let _ = st.multi().println(text::line(other));
            }
        }
    }
}
