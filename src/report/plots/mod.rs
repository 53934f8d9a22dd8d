//! One SVG plot per cell and metric, drawn with plotters' SVG backend: the repetitions of a
//! cell overlaid, one colour each, with the phases marked (ramp, hold, the disconnect and its
//! spread, observe). Text is left to the browser's fonts (plotters without `ttf` only
//! estimates text sizes), so no font library is needed to build or run. This file says what a
//! plot shows (metrics, their lines, the ranges); draw.rs draws it.

mod draw;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::timeseries::TimeSeries;

/// Pixel size of one plot.
pub(crate) const SIZE: (u32, u32) = (580, 310);

/// Colours of repetitions 1, 2, ... (Paul Tol's "bright" scheme, told apart with colour
/// blindness too); repeats after seven.
pub(crate) const REP_COLORS: [RGBColor; 7] = [
    RGBColor(0x44, 0x77, 0xAA),
    RGBColor(0xEE, 0x66, 0x77),
    RGBColor(0x22, 0x88, 0x33),
    RGBColor(0xCC, 0xBB, 0x44),
    RGBColor(0x66, 0xCC, 0xEE),
    RGBColor(0xAA, 0x33, 0x77),
    RGBColor(0x99, 0x99, 0x99),
];

/// The colour of repetition `index` (0-based position in the cell's list).
pub(crate) fn rep_color(index: usize) -> RGBColor {
    REP_COLORS[index % REP_COLORS.len()]
}

/// CSS text of a colour.
pub(crate) fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// One repetition's samples to draw.
pub(crate) struct RepTrace<'a> {
    /// "rep 1", shown in the legend.
    pub(crate) label: String,
    pub(crate) color: RGBColor,
    pub(crate) ts: &'a TimeSeries,
    /// Seconds the disconnect took (the row's kill_spread_seconds).
    pub(crate) kill_spread: Option<f64>,
}

/// What a plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Established,
    SshLatency,
    Heartbeat,
    Cpu,
    Conntrack,
    TapDrops,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Established,
        Metric::SshLatency,
        Metric::Heartbeat,
        Metric::Cpu,
        Metric::Conntrack,
        Metric::TapDrops,
    ];

    /// Stable name, used in the page's ids and classes.
    pub fn id(self) -> &'static str {
        match self {
            Metric::Established => "established",
            Metric::SshLatency => "ssh",
            Metric::Heartbeat => "heartbeat",
            Metric::Cpu => "cpu",
            Metric::Conntrack => "conntrack",
            Metric::TapDrops => "tap-drops",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Metric::Established => "Server: established connections",
            Metric::SshLatency => "SSH probe latency (a new connection each)",
            Metric::Heartbeat => "Server heartbeat (serial port)",
            Metric::Cpu => "Server CPU",
            Metric::Conntrack => "Host conntrack table",
            Metric::TapDrops => "Server tap: frames dropped on the way into the VM",
        }
    }

    /// The y axis title, with its unit.
    pub fn y_desc(self) -> &'static str {
        match self {
            Metric::Established => "connections",
            Metric::SshLatency => "latency (seconds)",
            Metric::Heartbeat => "seconds",
            Metric::Cpu => "percent",
            Metric::Conntrack => "entries",
            Metric::TapDrops => "frames since the ramp began",
        }
    }

    /// The columns drawn, each with its line style and legend text.
    fn lines(self) -> &'static [(&'static str, Dash, &'static str)] {
        match self {
            Metric::Established => &[("server_established", Dash::Solid, "")],
            Metric::SshLatency => &[],
            Metric::Heartbeat => &[
                ("hb_age", Dash::Solid, "since the last heartbeat"),
                ("hb_max_gap", Dash::Dashed, "largest gap since t = 0"),
            ],
            Metric::Cpu => &[
                ("softirq_pct", Dash::Solid, "softirq (guest)"),
                ("vcpu_pct", Dash::Dashed, "busiest vCPU thread (host)"),
                ("busy_pct", Dash::Dotted, "busy, all CPUs (guest)"),
            ],
            Metric::Conntrack => &[("conntrack", Dash::Solid, "")],
            Metric::TapDrops => &[("tap_tx_dropped", Dash::Solid, "")],
        }
    }
}

/// The x axis title shared by every plot.
pub const X_DESC: &str = "seconds since the disconnect (t = 0)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// One line of one repetition.
pub(crate) struct Line {
    color: RGBColor,
    dash: Dash,
    points: Vec<(f64, f64)>,
}

/// The points of `column` in `ts`; for established connections the heartbeat's count stands in
/// where storm-load's stream gave none.
fn column_points(ts: &TimeSeries, column: &str) -> Vec<(f64, f64)> {
    let points = ts.points(column);
    if points.is_empty() && column == "server_established" {
        return ts.points("hb_est");
    }
    points
}

/// The plot of `metric` over `reps` as an SVG document; None when no repetition has a value
/// for it (an older run that did not record it).
pub(crate) fn render(metric: Metric, reps: &[RepTrace]) -> Result<Option<String>> {
    let mut lines: Vec<Line> = vec![];
    let mut ok_probes: Vec<(RGBColor, Vec<(f64, f64)>)> = vec![];
    let mut failed_probes: Vec<(RGBColor, Vec<f64>)> = vec![];
    let mut styles_used: Vec<(Dash, &'static str)> = vec![];
    for rep in reps {
        if metric == Metric::SshLatency {
            let probes = rep.ts.probes();
            ok_probes.push((
                rep.color,
                probes
                    .iter()
                    .filter_map(|p| p.latency.filter(|_| p.ok).map(|l| (p.at, l)))
                    .collect(),
            ));
            failed_probes.push((
                rep.color,
                probes.iter().filter(|p| !p.ok).map(|p| p.at).collect(),
            ));
            continue;
        }
        for (column, dash, legend) in metric.lines() {
            let points = column_points(rep.ts, column);
            if points.is_empty() {
                continue;
            }
            if !legend.is_empty() && !styles_used.iter().any(|(d, _)| d == dash) {
                styles_used.push((*dash, legend));
            }
            lines.push(Line {
                color: rep.color,
                dash: *dash,
                points,
            });
        }
    }
    let any_failed = failed_probes.iter().any(|(_, f)| !f.is_empty());
    let any_ok = ok_probes.iter().any(|(_, p)| !p.is_empty());
    if lines.is_empty() && !any_ok && !any_failed {
        return Ok(None);
    }

    // Ranges: every sample of every repetition and t = 0; y from 0.
    let xs = reps
        .iter()
        .filter_map(|r| r.ts.t_range())
        .flat_map(|(a, b)| [a, b])
        .chain(failed_probes.iter().flat_map(|(_, f)| f.iter().copied()))
        .chain([0.0]);
    let (x0, x1) = bounds(xs);
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(ok_probes.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)))
        .chain([0.0]);
    let (y0, mut y1) = bounds(ys);
    match metric {
        Metric::Cpu => y1 = y1.max(100.0),
        // Counts: no fractional ticks on a flat line at 0.
        Metric::Established | Metric::Conntrack | Metric::TapDrops => y1 = y1.max(5.0),
        Metric::SshLatency | Metric::Heartbeat => {}
    }
    // Headroom: failed probes are marked along the top, above every latency.
    let y1 = y1 * if any_failed { 1.15 } else { 1.04 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw::plot(
            &root,
            metric,
            reps,
            (x0, x1),
            (y0, y1),
            &lines,
            &ok_probes,
            &failed_probes,
            &styles_used,
        )
        .map_err(|e| anyhow!("drawing the {} plot: {e:?}", metric.id()))?;
        root.present()
            .map_err(|e| anyhow!("writing the {} plot: {e:?}", metric.id()))?;
    }
    Ok(Some(svg))
}

/// (min, max) of `values`, widened when they are all one value.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// An axis number: 0, 2.5, 150, 3k, 1.2M.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    let s = if s == "-0" { "0".to_owned() } else { s };
    format!("{s}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0001, "0"),
            (2.5, "2.5"),
            (0.25, "0.25"),
            (150.0, "150"),
            (2000.0, "2000"),
            (30000.0, "30k"),
            (12500.0, "12.5k"),
            (1_200_000.0, "1.2M"),
            (-20.0, "-20"),
        ] {
            assert_eq!(compact(v), want, "{v}");
        }
    }

    #[test]
    fn plot_has_axis_titles_and_nothing_is_drawn_without_data() {
        let ts = TimeSeries::parse(
            "t,server_established,probe_at,probe_ok,probe_latency\n\
             0.5,3000,0.5,true,1.5\n1.5,2000,0.5,true,1.5\n2.5,2000,2.0,false,\n",
        )
        .unwrap();
        let reps = [
            RepTrace {
                label: "rep 1".into(),
                color: rep_color(0),
                ts: &ts,
                kill_spread: Some(0.4),
            },
            RepTrace {
                label: "rep 2".into(),
                color: rep_color(1),
                ts: &ts,
                kill_spread: None,
            },
        ];
        let svg = render(Metric::Established, &reps).unwrap().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in [X_DESC, "connections", "rep 2", "disconnect", "observe"] {
            assert!(svg.contains(text), "{text} missing");
        }
        let ssh = render(Metric::SshLatency, &reps).unwrap().unwrap();
        assert!(ssh.contains("failed probe"));
        assert!(ssh.contains("latency (seconds)"));
        assert_eq!(render(Metric::TapDrops, &reps).unwrap(), None);
        assert_eq!(render(Metric::Established, &[]).unwrap(), None);
    }
}
