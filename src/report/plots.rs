//! One SVG plot per cell and metric, drawn with plotters' SVG backend: the repetitions of a
//! cell overlaid, one colour each, with the phases marked (ramp, hold, the disconnect and its
//! spread, observe). Text is left to the browser's fonts (plotters without `ttf` only
//! estimates text sizes), so no font library is needed to build or run.

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::timeseries::{Phase, TimeSeries};

/// Pixel size of one plot.
pub const SIZE: (u32, u32) = (580, 310);

/// Colours of repetitions 1, 2, ... (Paul Tol's "bright" scheme, told apart with colour
/// blindness too); repeats after seven.
pub const REP_COLORS: [RGBColor; 7] = [
    RGBColor(0x44, 0x77, 0xAA),
    RGBColor(0xEE, 0x66, 0x77),
    RGBColor(0x22, 0x88, 0x33),
    RGBColor(0xCC, 0xBB, 0x44),
    RGBColor(0x66, 0xCC, 0xEE),
    RGBColor(0xAA, 0x33, 0x77),
    RGBColor(0x99, 0x99, 0x99),
];

/// The colour of repetition `index` (0-based position in the cell's list).
pub fn rep_color(index: usize) -> RGBColor {
    REP_COLORS[index % REP_COLORS.len()]
}

/// CSS text of a colour.
pub fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// One repetition's samples to draw.
pub struct RepTrace<'a> {
    /// "rep 1", shown in the legend.
    pub label: String,
    pub color: RGBColor,
    pub ts: &'a TimeSeries,
    /// Seconds the disconnect took (the row's kill_spread_seconds).
    pub kill_spread: Option<f64>,
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
enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// One line of one repetition.
struct Line {
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
pub fn render(metric: Metric, reps: &[RepTrace]) -> Result<Option<String>> {
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
        draw(
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

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// An entry of the legend drawn above the plot.
enum Key {
    /// A repetition's colour.
    Rep(RGBColor, String),
    /// A line style, in black.
    Style(Dash, &'static str),
    /// The failed-probe mark.
    Failed,
}

/// Legend entries laid out left to right from `left`, wrapping before `right`: (x, row, key).
fn layout_keys(keys: Vec<Key>, left: i32, right: i32) -> Vec<(i32, i32, Key)> {
    let mut out = vec![];
    let (mut x, mut row) = (left, 0);
    for k in keys {
        let text = match &k {
            Key::Rep(_, t) => t.len(),
            Key::Style(_, t) => t.len(),
            Key::Failed => FAILED.len(),
        };
        // Sample, gap, text at about 6.6 px a character (11.3 px sans-serif: plotters divides
        // sizes by 1.24), gap.
        let w = 22 + 4 + (text as f64 * 6.6) as i32 + 14;
        if x + w > right && x > left {
            x = left;
            row += 1;
        }
        out.push((x, row, k));
        x += w;
    }
    out
}

const FAILED: &str = "failed probe (at its start)";
const TITLE_H: u32 = 24;
const KEY_ROW_H: u32 = 16;
const PHASE_H: u32 = 16;

#[allow(clippy::too_many_arguments)]
fn draw(
    root: &Area,
    metric: Metric,
    reps: &[RepTrace],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    lines: &[Line],
    ok_probes: &[(RGBColor, Vec<(f64, f64)>)],
    failed_probes: &[(RGBColor, Vec<f64>)],
    styles_used: &[(Dash, &'static str)],
) -> DrawResult {
    root.fill(&WHITE)?;
    // Legend: a colour per repetition when there are several, a line style per column drawn, and the failure mark when one is drawn. It sits above the plot,
    // between the title and the phase names, so it never hides data.
    let mut keys = vec![];
    if reps.len() > 1 {
        keys.extend(reps.iter().map(|r| Key::Rep(r.color, r.label.clone())));
    }
    if !styles_used.is_empty() {
        keys.extend(styles_used.iter().map(|(d, t)| Key::Style(*d, t)));
    }
    if failed_probes.iter().any(|(_, f)| !f.is_empty()) {
        keys.push(Key::Failed);
    }
    let (left, right) = (6 + 62, SIZE.0 as i32 - 14);
    let keys = layout_keys(keys, left, right);
    let key_rows = keys.iter().map(|(_, row, _)| row + 1).max().unwrap_or(0) as u32;
    let strip = TITLE_H + key_rows * KEY_ROW_H + PHASE_H;
    let (top, body) = root.split_vertically(strip);
    top.draw(&Text::new(
        metric.title(),
        (SIZE.0 as i32 / 2, 5),
        ("sans-serif", 20)
            .into_font()
            .style(FontStyle::Bold)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let key_font = ("sans-serif", 14).into_font().color(&BLACK);
    for (x, row, key) in &keys {
        let y = TITLE_H as i32 + row * KEY_ROW_H as i32 + KEY_ROW_H as i32 / 2;
        let (sample, text): (Vec<(i32, i32, RGBColor, u32)>, &str) = match key {
            Key::Rep(c, t) => (vec![(0, 22, *c, 4)], t),
            Key::Style(Dash::Solid, t) => (vec![(0, 22, BLACK, 2)], t),
            Key::Style(Dash::Dashed, t) => (vec![(0, 7, BLACK, 2), (11, 18, BLACK, 2)], t),
            Key::Style(Dash::Dotted, t) => {
                ((0..5).map(|i| (i * 5, i * 5 + 2, BLACK, 2)).collect(), t)
            }
            Key::Failed => (vec![], FAILED),
        };
        for (a, b, c, w) in sample {
            top.draw(&PathElement::new(
                vec![(x + a, y), (x + b, y)],
                c.stroke_width(w),
            ))?;
        }
        if matches!(key, Key::Failed) {
            top.draw(&Cross::new((x + 11, y), 5, BLACK.stroke_width(2)))?;
        }
        top.draw(&Text::new(
            text.to_owned(),
            (x + 26, y),
            key_font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }

    let mut chart = ChartBuilder::on(&body)
        .margin(6)
        .margin_top(0)
        .margin_right(14)
        .x_label_area_size(42)
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc(metric.y_desc())
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|x| compact(*x))
        .y_label_formatter(&|y| compact(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .draw()?;

    draw_phases(root, &mut chart, reps, (y0, y1))?;

    for l in lines {
        let style = ShapeStyle::from(&l.color).stroke_width(2);
        match l.dash {
            Dash::Solid => {
                chart.draw_series(LineSeries::new(l.points.iter().copied(), style))?;
            }
            Dash::Dashed => {
                chart.draw_series(DashedLineSeries::new(l.points.iter().copied(), 7, 4, style))?;
            }
            Dash::Dotted => {
                chart.draw_series(DashedLineSeries::new(l.points.iter().copied(), 2, 3, style))?;
            }
        }
        // A lone sample draws no line: mark it.
        if l.points.len() == 1 {
            chart.draw_series(
                l.points
                    .iter()
                    .map(|p| Circle::new(*p, 3, l.color.filled())),
            )?;
        }
    }
    for (color, points) in ok_probes {
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            ShapeStyle::from(color.mix(0.5)).stroke_width(1),
        ))?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    let top_y = y1 - (y1 - y0) * 0.05;
    for (color, at) in failed_probes {
        chart.draw_series(
            at.iter()
                .map(|a| Cross::new((*a, top_y), 5, ShapeStyle::from(color).stroke_width(2))),
        )?;
    }
    Ok(())
}

/// Phase boundaries: the disconnect at t = 0 with its spread shaded (the longest of the
/// repetitions'), each repetition's ramp-to-hold change in its colour where the file records
/// phases, and the phase names above the plot (from the first repetition that has them).
fn draw_phases<'a>(
    root: &Area,
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    reps: &[RepTrace],
    (y0, y1): (f64, f64),
) -> DrawResult {
    let grey = RGBColor(0x66, 0x66, 0x66);
    let spread = reps
        .iter()
        .filter_map(|r| r.kill_spread)
        .fold(0.0f64, f64::max);
    if spread > 0.0 {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y0), (spread, y1)],
            grey.mix(0.15).filled(),
        )))?;
    }
    chart.draw_series(DashedLineSeries::new(
        [(0.0, y0), (0.0, y1)],
        5,
        3,
        grey.stroke_width(1),
    ))?;
    for r in reps {
        for (phase, t) in r.ts.phase_starts() {
            if phase == Phase::Hold {
                chart.draw_series(DashedLineSeries::new(
                    [(t, y0), (t, y1)],
                    5,
                    3,
                    r.color.stroke_width(1),
                ))?;
            }
        }
    }

    // Names above the plotting area, centred on each phase of the first repetition that
    // records phases; without phases only the window after the disconnect was recorded.
    let (x0, x1) = {
        let r = chart.x_range();
        (r.start, r.end)
    };
    let mut names: Vec<(String, f64)> = vec![];
    match reps
        .iter()
        .map(|r| r.ts.phase_starts())
        .find(|p| !p.is_empty())
    {
        Some(starts) => {
            for (i, (phase, t)) in starts.iter().enumerate() {
                let end = starts.get(i + 1).map_or(x1, |(_, t)| *t);
                let (a, b) = match phase {
                    Phase::Observe => (t.max(spread), end),
                    Phase::Hold => (*t, end.min(0.0)),
                    Phase::Ramp => (*t, end),
                };
                names.push((phase.as_str().into(), (a + b) / 2.0));
            }
        }
        None => names.push(("observe".into(), (spread + x1) / 2.0)),
    }
    names.push(("disconnect".into(), 0.0));
    let (px0, py_top) = chart.backend_coord(&(x0, y1));
    let (px1, _) = chart.backend_coord(&(x1, y1));
    let font = ("sans-serif", 14).into_font().color(&grey);
    for (name, x) in names {
        let (px, _) = chart.backend_coord(&(x, y1));
        // Keep a name inside the plot's width (the disconnect sits at its left edge for
        // files that start there).
        let half = (name.len() as f64 * 6.6 / 2.0) as i32;
        let px = px.clamp(px0 + half, px1 - half);
        root.draw(&Text::new(
            name,
            (px, py_top - 3),
            font.pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))?;
    }
    Ok(())
}

/// An axis number: 0, 2.5, 150, 3k, 1.2M.
pub fn compact(v: f64) -> String {
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
