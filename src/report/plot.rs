//! Line plots (SVG and PNG). The loss-curve plot, like Figure 1 of the paper, shows the loss
//! of every layer against the iteration on a log-scale y axis, one line per layer
//! ([`write_plot`]); other plots, such as the test accuracy of several training runs per epoch,
//! choose their axis labels and a linear y axis ([`write_plot_with`] and [`Axes`]).
//!
//! The plot is laid out once as a list of shapes in pixel coordinates (axes, ticks and legend
//! are this module's choices), which plotters then draws with its SVG backend, or its bitmap
//! backend and an embedded font (DejaVu Sans Mono, `font/`) for PNG, so that both formats show
//! the same picture and nothing depends on the system's fonts.

use std::io::{self, Write};
use std::path::Path;
use std::sync::OnceLock;

use plotters::backend::{BitMapBackend, DrawingBackend, SVGBackend};
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, DrawingAreaErrorKind, IntoDrawingArea};
use plotters::element::{Circle, PathElement, Text as TextElement};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, FontStyle, FontTransform, IntoFont, RGBColor, ShapeStyle, WHITE};

use crate::checkpoint::OutputFile;

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The legend entry, usually the layer's name (or the training run's).
    pub label: String,
    /// (x, y) pairs in drawing order, such as (iteration, loss). A point with a non-finite
    /// coordinate, or a non-positive one on a log axis, cannot be shown: it is skipped and the
    /// line breaks there. On linear axes every finite point is shown, zero and negative too.
    pub points: Vec<(f64, f64)>,
}

/// How the y axis maps values to heights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YScale {
    /// log10, labeled at powers of ten; for losses, which fall over decades.
    Log,
    /// Linear, labeled at round numbers; for values like an accuracy in percent.
    Linear,
}

/// How the x axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    /// Linear, labeled at round numbers.
    Linear,
    /// log10, labeled at powers of ten; for iteration counts spread over decades. A point with
    /// a non-positive x cannot be shown.
    Log,
}

/// The axes of a plot: their labels and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axes<'a> {
    /// The label under the x axis, such as "iteration" or "epoch".
    pub x_label: &'a str,
    /// The label beside the y axis, reading upwards.
    pub y_label: &'a str,
    pub x_scale: XScale,
    pub y_scale: YScale,
}

impl Axes<'static> {
    /// The axes of the loss-curve plot, which [`write_plot`] and [`render`] draw: the
    /// iteration, and the loss on a log scale.
    pub const LOSS: Axes<'static> = Axes {
        x_label: "iteration",
        y_label: "L_CS (log scale)",
        x_scale: XScale::Linear,
        y_scale: YScale::Log,
    };
}

/// The file formats a plot can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Png,
}

impl PlotFormat {
    /// The format named by `path`'s extension, `.svg` or `.png` in any case.
    pub fn from_path(path: &Path) -> Option<PlotFormat> {
        let extension = path.extension()?.to_str()?;
        if extension.eq_ignore_ascii_case("svg") {
            Some(PlotFormat::Svg)
        } else if extension.eq_ignore_ascii_case("png") {
            Some(PlotFormat::Png)
        } else {
            None
        }
    }
}

/// Renders the loss-curve plot (with [`Axes::LOSS`]) in the format chosen by `path`'s
/// extension and writes it to `path`.
///
/// The plot goes through [`OutputFile`], like every file cs-init writes: a temporary file renamed
/// over `path` when complete, deleted on failure or Ctrl-C.
pub fn write_plot(path: &Path, title: &str, curves: &[Curve]) -> io::Result<()> {
    write_plot_with(path, title, &Axes::LOSS, curves)
}

/// Renders a plot with `axes` in the format chosen by `path`'s extension and writes it to
/// `path`, atomically as [`write_plot`] does.
pub fn write_plot_with(path: &Path, title: &str, axes: &Axes, curves: &[Curve]) -> io::Result<()> {
    let format = PlotFormat::from_path(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot write a plot to {}: the file name must end in .svg or .png",
                path.display()
            ),
        )
    })?;
    let mut out = OutputFile::create(path, true).map_err(io::Error::other)?;
    out.write_all(&render_with(format, title, axes, curves))?;
    out.commit().map_err(io::Error::other)
}

/// The loss-curve plot as bytes, for tests and for writing atomically.
pub fn render(format: PlotFormat, title: &str, curves: &[Curve]) -> Vec<u8> {
    render_with(format, title, &Axes::LOSS, curves)
}

/// A plot with `axes` as bytes.
pub fn render_with(format: PlotFormat, title: &str, axes: &Axes, curves: &[Curve]) -> Vec<u8> {
    let shapes = layout(title, axes, curves);
    match format {
        PlotFormat::Svg => svg(&shapes),
        PlotFormat::Png => png(&shapes),
    }
}

// ---------------------------------------------------------------------------------------------
// Layout

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 700;
const PLOT_TOP: f64 = 50.0;
const PLOT_BOTTOM: f64 = HEIGHT as f64 - 70.0;
/// The x of the baseline of the y axis's label, which reads upwards with its glyphs to the left.
const Y_LABEL_BASELINE: f64 = 30.0;
/// The font scale of the title, the axis labels and the tick labels (a scale is 6 pixels of
/// advance and 7 of capital height).
const TEXT_SCALE: u32 = 2;
const TEXT_COLOR: Rgb = Rgb(0x22, 0x22, 0x22);
const GRID: Stroke = Stroke {
    color: Rgb(0xe2, 0xe2, 0xe2),
    width: 1.0,
    dash: &[],
};
const AXIS: Stroke = Stroke {
    color: Rgb(0x22, 0x22, 0x22),
    width: 1.0,
    dash: &[],
};
const CURVE_WIDTH: f64 = 1.6;
/// The radius of the dot that shows a point with no drawable neighbour, which a line cannot.
const DOT_RADIUS: f64 = 3.0;

/// Tableau 10: ten colors that stay apart from each other, also for most color-blind readers.
const PALETTE: [Rgb; 10] = [
    Rgb(0x1f, 0x77, 0xb4),
    Rgb(0xff, 0x7f, 0x0e),
    Rgb(0x2c, 0xa0, 0x2c),
    Rgb(0xd6, 0x27, 0x28),
    Rgb(0x94, 0x67, 0xbd),
    Rgb(0x8c, 0x56, 0x4b),
    Rgb(0xe3, 0x77, 0xc2),
    Rgb(0x7f, 0x7f, 0x7f),
    Rgb(0xbc, 0xbd, 0x22),
    Rgb(0x17, 0xbe, 0xcf),
];

/// Dash patterns (on, off, ... in pixels) for the curves after the first ten, once the palette
/// has cycled: with the colors they tell 60 curves apart.
const DASHES: [&[f64]; 6] = [
    &[],
    &[10.0, 5.0],
    &[1.0, 4.0],
    &[10.0, 4.0, 1.0, 4.0],
    &[18.0, 6.0],
    &[10.0, 4.0, 1.0, 4.0, 1.0, 4.0],
];

/// A point in pixels, y down.
type Point = (f64, f64);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rgb(u8, u8, u8);

#[derive(Debug, Clone, Copy)]
struct Stroke {
    color: Rgb,
    width: f64,
    /// On and off lengths in pixels, starting with on; empty for a solid line.
    dash: &'static [f64],
}

#[derive(Debug, Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

#[derive(Debug)]
struct Text {
    /// The anchor point on the baseline.
    at: Point,
    content: String,
    /// The size in scales: 6 pixels of advance, 7 of capital height each.
    scale: u32,
    anchor: Anchor,
    color: Rgb,
    /// Rotated a quarter turn counterclockwise, to read upwards.
    vertical: bool,
}

/// What the plot is made of, in pixel coordinates that are all finite.
#[derive(Debug)]
enum Shape {
    Line(Point, Point, Stroke),
    /// A data curve: lines through the points of each run, and a solid dot (not dashed, to
    /// stay visible) for each run of one point.
    Curve {
        lines: Vec<Vec<Point>>,
        dots: Vec<Point>,
        stroke: Stroke,
    },
    Text(Text),
}

/// The plot area in pixels.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    /// The pixel at fractions `fx` of the width from the left and `fy` of the height from the
    /// bottom.
    fn at(&self, fx: f64, fy: f64) -> Point {
        (
            self.left + fx * (self.right - self.left),
            self.bottom - fy * (self.bottom - self.top),
        )
    }
}

fn layout(title: &str, axes: &Axes, curves: &[Curve]) -> Vec<Shape> {
    let runs: Vec<Vec<Vec<Point>>> = curves
        .iter()
        .map(|c| drawable_runs(&c.points, axes))
        .collect();
    let data = || runs.iter().flatten().flatten();
    // Unlike the y axis, a linear x axis ends at the data: iterations and epochs start at 0.
    let x_axis = match axes.x_scale {
        XScale::Linear => Axis::Linear(LinearAxis::new(data().map(|p| p.0))),
        XScale::Log => Axis::Log(LogAxis::new(data().map(|p| p.0))),
    };
    let y_axis = Axis::new(axes.y_scale, data().map(|p| p.1));
    let legend = Legend::new(curves, PLOT_BOTTOM - PLOT_TOP);

    let y_labels = y_axis.labels();
    let y_label_chars = y_labels.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    // Room for the rotated axis label, then the tick labels, then the ticks.
    let left = Y_LABEL_BASELINE + 12.0 + text_width(y_label_chars, TEXT_SCALE) + 10.0;
    let right = if legend.width() > 0.0 {
        f64::from(WIDTH) - 10.0 - legend.width() - 20.0
    } else {
        f64::from(WIDTH) - 30.0
    };
    let frame = Frame {
        left,
        top: PLOT_TOP,
        right,
        bottom: PLOT_BOTTOM,
    };

    let mut shapes = Vec::new();
    let text = |at, content: String, anchor, vertical| {
        Shape::Text(Text {
            at,
            content,
            scale: TEXT_SCALE,
            anchor,
            color: TEXT_COLOR,
            vertical,
        })
    };
    let scale = f64::from(TEXT_SCALE);

    // Grid, then the curves over it, then the frame and the ticks over the curves' ends.
    let x_pixel = |value| crisp(frame.at(x_axis.fraction(value), 0.0).0);
    let x_ticks: Vec<(f64, String)> = x_axis
        .labels()
        .into_iter()
        .map(|(v, label)| (x_pixel(v), label))
        .collect();
    for x in x_ticks
        .iter()
        .map(|t| t.0)
        .chain(x_axis.gridded_minors().into_iter().map(x_pixel))
    {
        shapes.push(Shape::Line((x, frame.top), (x, frame.bottom), GRID));
    }
    let y_pixel = |value| crisp(frame.at(0.0, y_axis.fraction(value)).1);
    for value in y_labels
        .iter()
        .map(|&(v, _)| v)
        .chain(y_axis.gridded_minors())
    {
        let y = y_pixel(value);
        shapes.push(Shape::Line((frame.left, y), (frame.right, y), GRID));
    }

    for (index, curve_runs) in runs.iter().enumerate() {
        let (mut lines, mut dots) = (Vec::new(), Vec::new());
        for run in curve_runs {
            // Only a range too wide for f64 (from -MAX to MAX) yields non-finite pixels.
            let pixels: Vec<Point> = run
                .iter()
                .map(|&(x, y)| frame.at(x_axis.fraction(x), y_axis.fraction(y)))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            match pixels[..] {
                [] => {}
                [single] => dots.push(single),
                _ => lines.push(pixels),
            }
        }
        if !lines.is_empty() || !dots.is_empty() {
            shapes.push(Shape::Curve {
                lines,
                dots,
                stroke: style(index),
            });
        }
    }

    let (left, top, right, bottom) = (
        crisp(frame.left),
        crisp(frame.top),
        crisp(frame.right),
        crisp(frame.bottom),
    );
    for (from, to) in [
        ((left, top), (right, top)),
        ((right, top), (right, bottom)),
        ((right, bottom), (left, bottom)),
        ((left, bottom), (left, top)),
    ] {
        shapes.push(Shape::Line(from, to, AXIS));
    }
    for (x, label) in x_ticks {
        shapes.push(Shape::Line((x, bottom), (x, bottom + 6.0), AXIS));
        shapes.push(text(
            (x, bottom + 10.0 + 7.0 * scale),
            label,
            Anchor::Middle,
            false,
        ));
    }
    for value in x_axis.minors() {
        let x = x_pixel(value);
        shapes.push(Shape::Line((x, bottom), (x, bottom + 3.0), AXIS));
    }
    for (value, label) in y_labels {
        let y = y_pixel(value);
        shapes.push(Shape::Line((left - 6.0, y), (left, y), AXIS));
        shapes.push(text(
            (left - 10.0, y + 3.5 * scale),
            label,
            Anchor::End,
            false,
        ));
    }
    for value in y_axis.minors() {
        let y = y_pixel(value);
        shapes.push(Shape::Line((left - 3.0, y), (left, y), AXIS));
    }

    let title_chars = ((f64::from(WIDTH) - 40.0) / text_width(1, TEXT_SCALE)) as usize;
    shapes.push(text(
        (f64::from(WIDTH) / 2.0, 32.0),
        fit(title, title_chars),
        Anchor::Middle,
        false,
    ));
    shapes.push(text(
        ((frame.left + frame.right) / 2.0, f64::from(HEIGHT) - 15.0),
        axes.x_label.to_string(),
        Anchor::Middle,
        false,
    ));
    shapes.push(text(
        (Y_LABEL_BASELINE, (frame.top + frame.bottom) / 2.0),
        axes.y_label.to_string(),
        Anchor::Middle,
        true,
    ));

    legend.draw(
        curves,
        &runs,
        (f64::from(WIDTH) - 10.0 - legend.width(), frame.top),
        &mut shapes,
    );
    shapes
}

/// Splits a curve into runs of drawable points, as (x, y) the way the axes take them (log10 of
/// the value on a log scale): a point that the axes cannot show ends the run before it, so that
/// the line breaks instead of bridging it.
fn drawable_runs(points: &[(f64, f64)], axes: &Axes) -> Vec<Vec<Point>> {
    let x_log = axes.x_scale == XScale::Log;
    let y_log = axes.y_scale == YScale::Log;
    let drawable = |&(x, y): &(f64, f64)| {
        x.is_finite() && y.is_finite() && (!x_log || x > 0.0) && (!y_log || y > 0.0)
    };
    let axis = |v: f64, log: bool| if log { v.log10() } else { v };
    points
        .split(|point| !drawable(point))
        .filter(|run| !run.is_empty())
        .map(|run| {
            run.iter()
                .map(|&(x, y)| (axis(x, x_log), axis(y, y_log)))
                .collect()
        })
        .collect()
}

/// The stroke of the `index`th curve: the palette's colors, then again with other dashes.
fn style(index: usize) -> Stroke {
    Stroke {
        color: PALETTE[index % PALETTE.len()],
        width: CURVE_WIDTH,
        dash: DASHES[index / PALETTE.len() % DASHES.len()],
    }
}

/// The middle of the pixel holding `v`, where a one-pixel line is sharp rather than smeared
/// over two.
fn crisp(v: f64) -> f64 {
    v.floor() + 0.5
}

/// The width of `chars` characters of the monospace font at `scale`.
fn text_width(chars: usize, scale: u32) -> f64 {
    chars as f64 * 6.0 * f64::from(scale)
}

/// `text` cut to at most `chars` characters by replacing its middle with "..": layer names
/// differ at both ends ("layer4.1.downsample.0"), so both are kept.
fn fit(text: &str, chars: usize) -> String {
    let length = text.chars().count();
    if length <= chars {
        return text.to_string();
    }
    let kept = chars.saturating_sub(2);
    let head = kept.div_ceil(2);
    let mut cut: String = text.chars().take(head).collect();
    cut.push_str("..");
    cut.extend(text.chars().skip(length - (kept - head)));
    cut
}

/// A linear axis over the data's range, with ticks at round numbers.
struct LinearAxis {
    min: f64,
    max: f64,
    step: f64,
}

impl LinearAxis {
    fn new(values: impl Iterator<Item = f64>) -> LinearAxis {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (min, max) = if min > max {
            (0.0, 1.0)
        } else if min == max {
            let pad = (min.abs() * 0.1).max(1.0);
            (min - pad, max + pad)
        } else {
            (min, max)
        };
        LinearAxis {
            min,
            max,
            step: round_step(max - min),
        }
    }

    /// The axis widened to the ticks just outside the data, so that both ends are labeled (as
    /// on a y axis) rather than the data touching the frame.
    fn out_to_ticks(self) -> LinearAxis {
        // A millionth of a step beyond the end ticks, far less than a pixel: a multiple of the
        // step divided by the step need not give back a whole number, and `multiples` would
        // then drop the end tick.
        let hair = self.step * 1e-6;
        let (min, max) = (
            (self.min / self.step).floor() * self.step - hair,
            (self.max / self.step).ceil() * self.step + hair,
        );
        // Only a range near the largest f64 rounds out to infinity, or one so wide that the
        // step is infinite out to NaN: that axis stays as it was.
        if min.is_finite() && max.is_finite() {
            LinearAxis { min, max, ..self }
        } else {
            self
        }
    }

    fn fraction(&self, v: f64) -> f64 {
        (v - self.min) / (self.max - self.min)
    }

    fn ticks(&self) -> Vec<f64> {
        multiples(self.min, self.max, self.step)
    }

    fn label(&self, v: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10().floor()) as usize
        };
        // Adding zero turns -0 into 0, which would otherwise print as "-0".
        format!("{:.*}", decimals, v + 0.0)
    }
}

/// An axis in the scale the plot asks for. Its values are those of [`drawable_runs`]: log10 of
/// the data on a log scale.
enum Axis {
    Log(LogAxis),
    Linear(LinearAxis),
}

impl Axis {
    /// A y axis.
    fn new(scale: YScale, values: impl Iterator<Item = f64>) -> Axis {
        match scale {
            YScale::Log => Axis::Log(LogAxis::new(values)),
            YScale::Linear => Axis::Linear(LinearAxis::new(values).out_to_ticks()),
        }
    }

    fn fraction(&self, value: f64) -> f64 {
        match self {
            Axis::Log(axis) => axis.fraction(value),
            Axis::Linear(axis) => axis.fraction(value),
        }
    }

    /// The labeled ticks: (value, label).
    fn labels(&self) -> Vec<(f64, String)> {
        match self {
            Axis::Log(axis) => axis.labels(),
            // A range from -MAX to MAX has an infinite step, whose multiple 0 * step is NaN.
            Axis::Linear(axis) => axis
                .ticks()
                .into_iter()
                .filter(|v| v.is_finite() && axis.fraction(*v).is_finite())
                .map(|v| (v, axis.label(v)))
                .collect(),
        }
    }

    /// The unlabeled ticks.
    fn minors(&self) -> Vec<f64> {
        match self {
            Axis::Log(axis) => axis.minors(),
            Axis::Linear(_) => Vec::new(),
        }
    }

    /// The grid lines besides those at the labeled ticks.
    fn gridded_minors(&self) -> Vec<f64> {
        match self {
            Axis::Log(axis) => axis.gridded_minors(),
            Axis::Linear(_) => Vec::new(),
        }
    }
}

/// A log axis (the loss axis, or iterations): log10, over whole decades so that both ends are
/// labeled. Values are log10 of the data.
struct LogAxis {
    /// The exponents of the ends.
    low: f64,
    high: f64,
    /// Decades between labels, more than one when the range is wide.
    step: f64,
}

impl LogAxis {
    fn new(log_values: impl Iterator<Item = f64>) -> LogAxis {
        let (low, high) = log_values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (low, high) = if low > high {
            (0.0, 1.0)
        } else if low.floor() == high.ceil() {
            // A single power of ten: put it in the middle.
            (low - 1.0, high + 1.0)
        } else {
            (low.floor(), high.ceil())
        };
        let step = round_step(high - low).max(1.0);
        LogAxis {
            low: (low / step).floor() * step,
            high: (high / step).ceil() * step,
            step,
        }
    }

    fn fraction(&self, log_value: f64) -> f64 {
        (log_value - self.low) / (self.high - self.low)
    }

    /// The labeled ticks: (log10 value, label).
    fn labels(&self) -> Vec<(f64, String)> {
        multiples(self.low, self.high, self.step)
            .into_iter()
            .map(|e| (e, format!("1e{}", e as i64)))
            .collect()
    }

    /// Unlabeled ticks at 2..9 times each power of ten, where there is room for them.
    fn minors(&self) -> Vec<f64> {
        if self.step > 1.0 || self.high - self.low > 10.0 {
            return Vec::new();
        }
        multiples(self.low, self.high - 1.0, 1.0)
            .into_iter()
            .flat_map(|decade| (2..10).map(move |m| decade + f64::from(m).log10()))
            .collect()
    }

    /// Grid lines at 2 and 5 times each power of ten when the axis spans so few decades that
    /// the labeled ones alone would leave the reader guessing.
    fn gridded_minors(&self) -> Vec<f64> {
        if self.high - self.low > 2.0 {
            return Vec::new();
        }
        multiples(self.low, self.high - 1.0, 1.0)
            .into_iter()
            .flat_map(|decade| [2.0f64, 5.0].map(|m| decade + m.log10()))
            .collect()
    }
}

/// The smallest of 1, 2 and 5 times a power of ten that cuts `span` into at most 8 steps.
fn round_step(span: f64) -> f64 {
    let magnitude = 10f64.powf((span / 8.0).log10().floor());
    [1.0, 2.0, 5.0]
        .map(|m| m * magnitude)
        .into_iter()
        .find(|&step| span / step <= 8.0)
        .unwrap_or(10.0 * magnitude)
}

/// The multiples of `step` from `min` to `max`, at most 17 so that no input makes this loop
/// forever or allocate without bound.
fn multiples(min: f64, max: f64, step: f64) -> Vec<f64> {
    let (first, last) = ((min / step).ceil(), (max / step).floor());
    // None when the range is empty or not a number.
    let count = if last >= first {
        (last - first).min(16.0) as usize + 1
    } else {
        0
    };
    (0..count).map(|i| (first + i as f64) * step).collect()
}

/// The legend, beside the plot on the right. It shrinks as curves are added (smaller font, more
/// columns, shorter labels) so that a hundred layers still fit next to a readable plot.
struct Legend {
    scale: u32,
    rows: usize,
    columns: usize,
    column_width: f64,
    /// The most characters of a label shown.
    chars: usize,
    /// The number of curves listed; the rest are counted in a last entry.
    shown: usize,
}

const LEGEND_MAX_WIDTH: f64 = 480.0;
const LEGEND_MAX_COLUMNS: usize = 4;
const LEGEND_MAX_CHARS: usize = 40;
/// The length of the line drawn in a legend entry: long enough to show every dash pattern.
const SWATCH: f64 = 30.0;
/// Its width: a little more than a curve's, so that its color reads at a glance.
const SWATCH_WIDTH: f64 = 3.0;
/// The space between the swatch and the label, plus the space between columns.
const LEGEND_GAPS: f64 = 6.0 + 12.0;

impl Legend {
    fn new(curves: &[Curve], height: f64) -> Legend {
        let count = curves.len();
        let longest = curves
            .iter()
            .map(|c| c.label.chars().count())
            .max()
            .unwrap_or(0)
            .min(LEGEND_MAX_CHARS);
        let rows_at = |scale| ((height / Legend::row_height(scale)) as usize).max(1);
        for scale in [TEXT_SCALE, 1] {
            let rows = rows_at(scale);
            let columns = count.div_ceil(rows);
            let column_width = SWATCH + LEGEND_GAPS + text_width(longest, scale);
            if columns as f64 * column_width <= LEGEND_MAX_WIDTH {
                return Legend {
                    scale,
                    rows,
                    columns,
                    column_width,
                    chars: longest,
                    shown: count,
                };
            }
        }
        // Even the small font is too wide: shorten the labels to fit, and beyond the most
        // columns list what fits and count the rest.
        let rows = rows_at(1);
        let columns = count.div_ceil(rows).min(LEGEND_MAX_COLUMNS);
        let column_width = LEGEND_MAX_WIDTH / columns as f64;
        let chars = ((column_width - SWATCH - LEGEND_GAPS) / text_width(1, 1)) as usize;
        let capacity = rows * columns;
        Legend {
            scale: 1,
            rows,
            columns,
            column_width,
            chars: chars.clamp(4, longest.max(4)),
            shown: if count > capacity {
                capacity - 1
            } else {
                count
            },
        }
    }

    fn row_height(scale: u32) -> f64 {
        f64::from(10 * scale + 4)
    }

    fn width(&self) -> f64 {
        self.columns as f64 * self.column_width
    }

    /// Adds the entries with their top left corner at `origin`. Labels of curves with nothing
    /// to draw are grayed out, so that a layer whose loss never was finite and positive (on a
    /// log axis; finite on a linear one) stands out rather than seeming lost behind the others.
    fn draw(
        &self,
        curves: &[Curve],
        runs: &[Vec<Vec<Point>>],
        origin: Point,
        out: &mut Vec<Shape>,
    ) {
        let row_height = Legend::row_height(self.scale);
        let scale = f64::from(self.scale);
        let slot = |i: usize| {
            (
                origin.0 + (i / self.rows) as f64 * self.column_width,
                origin.1 + ((i % self.rows) as f64 + 0.5) * row_height,
            )
        };
        let label = |at: Point, content, color| {
            Shape::Text(Text {
                at: (at.0 + SWATCH + 6.0, at.1 + 3.5 * scale),
                content,
                scale: self.scale,
                anchor: Anchor::Start,
                color,
                vertical: false,
            })
        };
        for (i, (curve, curve_runs)) in curves.iter().zip(runs).take(self.shown).enumerate() {
            let (x, y) = slot(i);
            out.push(Shape::Curve {
                lines: vec![vec![(x, y), (x + SWATCH, y)]],
                dots: Vec::new(),
                stroke: Stroke {
                    width: SWATCH_WIDTH,
                    ..style(i)
                },
            });
            let color = if curve_runs.is_empty() {
                Rgb(0x99, 0x99, 0x99)
            } else {
                TEXT_COLOR
            };
            out.push(label((x, y), fit(&curve.label, self.chars), color));
        }
        if self.shown < curves.len() {
            let more = format!("+{} more", curves.len() - self.shown);
            out.push(label(slot(self.shown), more, TEXT_COLOR));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// PNGs are drawn at this many times their size and scaled down, which smooths lines and text.
const SUPERSAMPLING: u32 = 2;

/// The font of every text: monospace, so that the layout knows every label's width.
const FONT: &str = "monospace";

fn svg(shapes: &[Shape]) -> Vec<u8> {
    let mut out = String::new();
    {
        let area = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&area, shapes, 1.0, Glyphs::Whole).expect("drawing into a String cannot fail");
        area.present().expect("drawing into a String cannot fail");
    }
    out.into_bytes()
}

fn png(shapes: &[Shape]) -> Vec<u8> {
    let (w, h) = (WIDTH * SUPERSAMPLING, HEIGHT * SUPERSAMPLING);
    let mut large = vec![0u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut large, (w, h)).into_drawing_area();
        draw(&area, shapes, f64::from(SUPERSAMPLING), Glyphs::OneByOne)
            .expect("drawing into memory cannot fail");
        area.present().expect("drawing into memory cannot fail");
    }
    let pixels = downsample(&large, w as usize, SUPERSAMPLING as usize);
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("writing to memory");
    writer.write_image_data(&pixels).expect("writing to memory");
    writer.finish().expect("writing to memory");
    bytes
}

/// An RGB image `factor` times smaller, each pixel the mean of its block.
fn downsample(rgb: &[u8], width: usize, factor: usize) -> Vec<u8> {
    let (small_width, small_height) = (width / factor, rgb.len() / 3 / width / factor);
    let mut out = Vec::with_capacity(small_width * small_height * 3);
    for y in 0..small_height {
        for x in 0..small_width {
            for channel in 0..3 {
                let sum: usize = (0..factor * factor)
                    .map(|k| {
                        let (dy, dx) = (k / factor, k % factor);
                        usize::from(
                            rgb[((y * factor + dy) * width + x * factor + dx) * 3 + channel],
                        )
                    })
                    .sum();
                out.push((sum / (factor * factor)) as u8);
            }
        }
    }
    out
}

const FONT_BYTES: &[u8] = include_bytes!("font/DejaVuSansMono-subset.ttf");

/// The embedded font, registered once for plotters' glyph renderer.
fn register_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// How a text reaches the backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Glyphs {
    /// As one string: the SVG viewer lays it out.
    Whole,
    /// Glyph by glyph, each at its place in the font: plotters' own glyph renderer (0.3.7)
    /// draws every glyph from the pen position without its left side bearing, which makes a
    /// monospace "1.0" read "1. 0".
    OneByOne,
}

/// Where each character of `text` starts, along the line from its start, at `size` pixels:
/// the pen position plus the glyph's left side bearing.
fn glyph_offsets(text: &str, size: f64) -> (Vec<(char, f64)>, f64) {
    use ab_glyph::{Font, ScaleFont};
    let font = ab_glyph::FontRef::try_from_slice(FONT_BYTES).expect("the embedded font is valid");
    let font = font.as_scaled(size as f32);
    let mut pen = 0.0f64;
    let offsets = text
        .chars()
        .map(|c| {
            let glyph = font.scaled_glyph(c);
            let id = glyph.id;
            let bearing = font
                .outline_glyph(glyph)
                .map_or(0.0, |g| f64::from(g.px_bounds().min.x));
            let at = (c, pen + bearing);
            pen += f64::from(font.h_advance(id));
            at
        })
        .collect();
    (offsets, pen)
}

fn color(rgb: Rgb) -> RGBColor {
    RGBColor(rgb.0, rgb.1, rgb.2)
}

/// Draws the shapes, every coordinate and size times `zoom`.
fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    shapes: &[Shape],
    zoom: f64,
    glyphs: Glyphs,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    register_font();
    let at = |p: Point| ((p.0 * zoom).round() as i32, (p.1 * zoom).round() as i32);
    let line_style = |stroke: &Stroke| ShapeStyle {
        color: color(stroke.color).to_rgba(),
        filled: false,
        stroke_width: (stroke.width * zoom).round().max(1.0) as u32,
    };
    area.fill(&WHITE)?;
    for shape in shapes {
        match shape {
            Shape::Line(from, to, stroke) => area.draw(&PathElement::new(
                vec![at(*from), at(*to)],
                line_style(stroke),
            ))?,
            Shape::Curve {
                lines,
                dots,
                stroke,
            } => {
                for line in lines {
                    for piece in dashes(line, stroke.dash) {
                        let points: Vec<_> = piece.into_iter().map(at).collect();
                        area.draw(&PathElement::new(points, line_style(stroke)))?;
                    }
                }
                for &dot in dots {
                    let radius = (DOT_RADIUS * zoom).round() as i32;
                    area.draw(&Circle::new(at(dot), radius, color(stroke.color).filled()))?;
                }
            }
            Shape::Text(text) => {
                // Control characters (a tab, a bell in a tensor name) are no XML and no glyph.
                let content: String = text
                    .content
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                // The layout gives the baseline; plotters places the middle of the letters.
                let middle = 3.5 * f64::from(text.scale);
                let (x, y) = if text.vertical {
                    (text.at.0 - middle, text.at.1)
                } else {
                    (text.at.0, text.at.1 - middle)
                };
                // Monospace fonts advance about 0.6 em, so a character is six pixels a scale
                // wide, as the layout counts; plotters' SVG divides the size by 1.24.
                let size = 12.4 * f64::from(text.scale) * zoom;
                let style = |h_pos| {
                    let style = (FONT, size)
                        .into_font()
                        .color(&color(text.color))
                        .pos(Pos::new(h_pos, VPos::Center));
                    if text.vertical {
                        style.transform(FontTransform::Rotate270)
                    } else {
                        style
                    }
                };
                if glyphs == Glyphs::Whole {
                    let h_pos = match text.anchor {
                        Anchor::Start => HPos::Left,
                        Anchor::Middle => HPos::Center,
                        Anchor::End => HPos::Right,
                    };
                    area.draw(&TextElement::new(content, at((x, y)), style(h_pos)))?;
                    continue;
                }
                let (offsets, width) = glyph_offsets(&content, size);
                let start = match text.anchor {
                    Anchor::Start => 0.0,
                    Anchor::Middle => -width / 2.0,
                    Anchor::End => -width,
                } / zoom;
                // plotters' renderer puts the baseline 0.5 - 1/2.48 of the size below the point
                // it centers on (ab_glyph.rs), not where the layout's middle is.
                let baseline_offset = (0.5 - 1.0 / 2.48) * size / zoom;
                for (c, offset) in offsets {
                    let along = start + offset / zoom;
                    // A vertical text reads upwards.
                    let point = if text.vertical {
                        (x, y - along)
                    } else {
                        (x + along, text.at.1 - baseline_offset)
                    };
                    area.draw(&TextElement::new(
                        c.to_string(),
                        at(point),
                        style(HPos::Left),
                    ))?;
                }
            }
        }
    }
    Ok(())
}

/// The pieces of the polyline `points` that are drawn with the dash pattern `dash` (on, off,
/// ... lengths in pixels; empty for a solid line), which runs on across the corners.
fn dashes(points: &[Point], dash: &[f64]) -> Vec<Vec<Point>> {
    let Some(&first) = points.first() else {
        return Vec::new();
    };
    if dash.is_empty() {
        return vec![points.to_vec()];
    }
    let mut pieces = Vec::new();
    let mut piece = vec![first];
    let (mut index, mut left, mut on) = (0, dash[0], true);
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let length = (b.0 - a.0).hypot(b.1 - a.1);
        let mut done = 0.0;
        while length - done > left {
            done += left;
            let t = done / length;
            let p = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            if on {
                piece.push(p);
                pieces.push(std::mem::take(&mut piece));
            } else {
                piece = vec![p];
            }
            on = !on;
            index = (index + 1) % dash.len();
            left = dash[index];
        }
        left -= length - done;
        if on {
            piece.push(b);
        }
    }
    if on {
        pieces.push(piece);
    }
    pieces
}
