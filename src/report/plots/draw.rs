//! Drawing one plot: the title and legend strip above it, the chart with its axes, the phase
//! marks (the disconnect and its spread, each repetition's hold) and the lines and probes.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{compact, Dash, Line, Metric, RepTrace, SIZE, X_DESC};
use crate::report::timeseries::Phase;

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

/// A chart on an area borrowed for `'a` of a backend that lives for `'b`.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one plot on `root` from what `render` gathered: the ranges, the lines, the probes
/// and the line styles the legend names.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plot(
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
    let (left, right) = (6 + 62, SIZE.0 as i32 - 14);
    let keys = layout_keys(legend(reps, failed_probes, styles_used), left, right);
    let key_rows = keys.iter().map(|(_, row, _)| row + 1).max().unwrap_or(0) as u32;
    let strip = TITLE_H + key_rows * KEY_ROW_H + PHASE_H;
    let (top, body) = root.split_vertically(strip);
    draw_strip(&top, metric, &keys)?;
    let mut chart = chart(&body, metric, (x0, x1), (y0, y1))?;
    draw_phases(root, &mut chart, reps, (y0, y1))?;
    draw_lines(&mut chart, lines)?;
    draw_probes(&mut chart, ok_probes, failed_probes, (y0, y1))
}

/// The legend: a colour per repetition when there are several, a line style per column
/// drawn, and the failure mark when one is drawn.
fn legend(
    reps: &[RepTrace],
    failed_probes: &[(RGBColor, Vec<f64>)],
    styles_used: &[(Dash, &'static str)],
) -> Vec<Key> {
    let mut keys = vec![];
    if reps.len() > 1 {
        keys.extend(reps.iter().map(|r| Key::Rep(r.color, r.label.clone())));
    }
    keys.extend(styles_used.iter().map(|(d, t)| Key::Style(*d, t)));
    if failed_probes.iter().any(|(_, f)| !f.is_empty()) {
        keys.push(Key::Failed);
    }
    keys
}

/// The strip above the plot: the title, then the legend between it and the phase names, so
/// the legend never hides data.
fn draw_strip(top: &Area, metric: Metric, keys: &[(i32, i32, Key)]) -> DrawResult {
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
    for (x, row, key) in keys {
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
    Ok(())
}

/// The chart's axes and mesh on `body`.
fn chart<'a, 'b>(
    body: &'a Area<'b>,
    metric: Metric,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<Chart<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    let mut chart = ChartBuilder::on(body)
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
    Ok(chart)
}

/// Each line in its colour and dash; a lone sample, which draws no line, as a dot.
fn draw_lines(chart: &mut Chart, lines: &[Line]) -> DrawResult {
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
        if l.points.len() == 1 {
            chart.draw_series(
                l.points
                    .iter()
                    .map(|p| Circle::new(*p, 3, l.color.filled())),
            )?;
        }
    }
    Ok(())
}

/// Successful probes as dots on a faint line; failed ones as crosses near the top, at their
/// start.
fn draw_probes(
    chart: &mut Chart,
    ok_probes: &[(RGBColor, Vec<(f64, f64)>)],
    failed_probes: &[(RGBColor, Vec<f64>)],
    (y0, y1): (f64, f64),
) -> DrawResult {
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
fn draw_phases<'a, 'b>(
    root: &Area,
    chart: &mut Chart<'a, 'b>,
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
