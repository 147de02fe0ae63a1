//! Line plots (SVG and PNG). The loss-curve plot, like Figure 1 of the paper, shows the loss
//! of every layer against the iteration on a log-scale y axis, one line per layer
//! ([`write_plot`]); other plots, such as the test accuracy of several training runs per epoch,
//! choose their axis labels and a linear y axis ([`write_plot_with`] and [`Axes`]).
//!
//! The plot is laid out once as a list of shapes in pixel coordinates, which is then
//! either written out as SVG or rasterized and encoded as PNG, so that both formats show the
//! same picture. The rasterizer and its bitmap font live here so that writing a PNG needs no
//! drawing library, system font or other file at run time.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// The plot is written to a temporary file in the same directory and renamed over `path`, so
/// that a failed write leaves no partial file and readers never see a half-written one.
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
    write_atomically(path, &render_with(format, title, axes, curves))
}

/// The loss-curve plot as bytes, for tests and for writing atomically.
pub fn render(format: PlotFormat, title: &str, curves: &[Curve]) -> Vec<u8> {
    render_with(format, title, &Axes::LOSS, curves)
}

/// A plot with `axes` as bytes.
pub fn render_with(format: PlotFormat, title: &str, axes: &Axes, curves: &[Curve]) -> Vec<u8> {
    let shapes = layout(title, axes, curves);
    match format {
        PlotFormat::Svg => svg(title, &shapes),
        PlotFormat::Png => png(&shapes),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // The process id and a counter keep concurrent writers, in this process or another, off
    // each other's temporary files; `create_new` makes sure none is clobbered anyway.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = path.with_file_name(name);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, path));
    if result.is_err() {
        // Best effort: the temporary file may not even exist, and the error worth reporting
        // is the one that got us here.
        let _ = fs::remove_file(&temporary);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Layout

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 700;
const PLOT_TOP: f64 = 50.0;
const PLOT_BOTTOM: f64 = HEIGHT as f64 - 70.0;
/// The x of the baseline of the y axis's label, which reads upwards with its glyphs to the left.
const Y_LABEL_BASELINE: f64 = 30.0;
/// The font scale of the title, the axis labels and the tick labels: the bitmap font doubled.
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
    /// The size in multiples of the bitmap font's pixels.
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

/// The width of `chars` characters of the bitmap font (also the advance of SVG's monospace
/// font at the size the SVG gives it).
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
            out.push(Shape::Line((x, y), (x + SWATCH, y), style(i)));
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
// SVG

fn svg(title: &str, shapes: &[Shape]) -> Vec<u8> {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"monospace\">\n\
         <title>{}</title>\n\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n\
         <g stroke-linecap=\"round\" stroke-linejoin=\"round\">\n",
        escape(title)
    );
    for shape in shapes {
        out += &match shape {
            Shape::Line(from, to, stroke) => format!(
                "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"{}/>\n",
                from.0,
                from.1,
                to.0,
                to.1,
                stroke_attributes(stroke)
            ),
            Shape::Curve {
                lines,
                dots,
                stroke,
            } => {
                let mut elements = String::new();
                if !lines.is_empty() {
                    let mut d = String::new();
                    for line in lines {
                        for (i, p) in line.iter().enumerate() {
                            let command = if i == 0 { 'M' } else { 'L' };
                            d += &format!("{command}{:.1} {:.1}", p.0, p.1);
                        }
                    }
                    elements += &format!(
                        "<path d=\"{d}\" fill=\"none\"{}/>\n",
                        stroke_attributes(stroke)
                    );
                }
                for (x, y) in dots {
                    elements += &format!(
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{DOT_RADIUS}\" fill=\"{}\"/>\n",
                        hex(stroke.color)
                    );
                }
                elements
            }
            Shape::Text(text) => {
                let anchor = match text.anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let (x, y) = text.at;
                let rotation = if text.vertical {
                    format!(" transform=\"rotate(-90 {x:.1} {y:.1})\"")
                } else {
                    String::new()
                };
                format!(
                    "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{}\" text-anchor=\"{anchor}\" \
                     fill=\"{}\"{rotation}>{}</text>\n",
                    // Monospace fonts advance about 0.6 em, which makes a character as wide
                    // as one of the bitmap font's, six pixels a scale.
                    10 * text.scale,
                    hex(text.color),
                    escape(&text.content)
                )
            }
        };
    }
    out += "</g>\n</svg>\n";
    out.into_bytes()
}

fn stroke_attributes(stroke: &Stroke) -> String {
    let mut attributes = format!(
        " stroke=\"{}\" stroke-width=\"{}\"",
        hex(stroke.color),
        stroke.width
    );
    if !stroke.dash.is_empty() {
        let dash: Vec<String> = stroke.dash.iter().map(f64::to_string).collect();
        attributes += &format!(" stroke-dasharray=\"{}\"", dash.join(" "));
    }
    attributes
}

fn hex(color: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", color.0, color.1, color.2)
}

/// `text` made safe for XML content and attribute values. Control characters are not allowed
/// in XML 1.0 even as references, so they become '?', as they do in the PNG's font.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped += "&amp;",
            '<' => escaped += "&lt;",
            '>' => escaped += "&gt;",
            '"' => escaped += "&quot;",
            '\'' => escaped += "&apos;",
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => escaped.push('?'),
            c => escaped.push(c),
        }
    }
    escaped
}

// ---------------------------------------------------------------------------------------------
// PNG

fn png(shapes: &[Shape]) -> Vec<u8> {
    let mut canvas = Canvas::new(WIDTH as usize, HEIGHT as usize);
    for shape in shapes {
        match shape {
            Shape::Line(from, to, stroke) => canvas.stroke(&[vec![*from, *to]], &[], stroke),
            Shape::Curve {
                lines,
                dots,
                stroke,
            } => canvas.stroke(lines, dots, stroke),
            Shape::Text(text) => canvas.text(text),
        }
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Encoding can only fail on a write error or a buffer of the wrong size, and this one
    // writes to memory a buffer made for the size in the header.
    let mut writer = encoder
        .write_header()
        .expect("writing a PNG header to memory cannot fail");
    writer
        .write_image_data(&canvas.rgb)
        .expect("the canvas has the size in the PNG header");
    writer
        .finish()
        .expect("finishing a PNG in memory cannot fail");
    bytes
}

/// An RGB image that lines are drawn on with anti-aliasing.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    /// How much of each pixel the stroke being drawn covers, from 0 to 1. A stroke's coverage
    /// is collected first and blended once, so that where its segments overlap (at every joint
    /// of a polyline) the edges are not blended twice and darkened.
    coverage: Vec<f32>,
    /// The pixels with non-zero coverage, so that blending does not scan the whole canvas.
    touched: Vec<usize>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![0xff; width * height * 3],
            coverage: vec![0.0; width * height],
            touched: Vec::new(),
        }
    }

    /// Draws `lines` with `stroke`, and a dot of its color at each of `dots`.
    fn stroke(&mut self, lines: &[Vec<Point>], dots: &[Point], stroke: &Stroke) {
        let half_width = stroke.width / 2.0;
        for &dot in dots {
            // A disc is a segment of length zero as wide as the disc.
            self.cover_segment(dot, dot, DOT_RADIUS);
        }
        for line in lines {
            for piece in dashes(line, stroke.dash) {
                match piece[..] {
                    [single] => self.cover_segment(single, single, half_width),
                    _ => {
                        for pair in piece.windows(2) {
                            self.cover_segment(pair[0], pair[1], half_width);
                        }
                    }
                }
            }
        }
        let color = [stroke.color.0, stroke.color.1, stroke.color.2];
        for &i in &self.touched {
            let alpha = self.coverage[i];
            self.coverage[i] = 0.0;
            for (channel, target) in self.rgb[3 * i..3 * i + 3].iter_mut().zip(color) {
                let blended = f32::from(*channel) * (1.0 - alpha) + f32::from(target) * alpha;
                *channel = blended.round() as u8;
            }
        }
        self.touched.clear();
    }

    /// Covers the pixels within `half_width` of the segment from `a` to `b` (round caps),
    /// each by the part of it inside the line, approximated from its center's distance.
    fn cover_segment(&mut self, a: Point, b: Point, half_width: f64) {
        let reach = half_width + 1.0;
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let length_squared = dx * dx + dy * dy;
        let rows = pixel_range(a.1.min(b.1) - reach, a.1.max(b.1) + reach, self.height);
        for row in rows {
            let cy = row as f64 + 0.5;
            // The part of the segment within reach of this row, to visit only the pixels near
            // it and not the whole bounding box of a long diagonal.
            let (t0, t1) = if dy.abs() < 1e-9 {
                (0.0, 1.0)
            } else {
                let (ta, tb) = ((cy - reach - a.1) / dy, (cy + reach - a.1) / dy);
                (ta.min(tb).max(0.0), ta.max(tb).min(1.0))
            };
            let (xa, xb) = (a.0 + dx * t0, a.0 + dx * t1);
            for column in pixel_range(xa.min(xb) - reach, xa.max(xb) + reach, self.width) {
                let cx = column as f64 + 0.5;
                let t = if length_squared > 0.0 {
                    (((cx - a.0) * dx + (cy - a.1) * dy) / length_squared).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let distance = (cx - a.0 - t * dx).hypot(cy - a.1 - t * dy);
                let cover = (half_width + 0.5 - distance).clamp(0.0, 1.0) as f32;
                if cover > 0.0 {
                    let i = row * self.width + column;
                    if self.coverage[i] == 0.0 {
                        self.touched.push(i);
                    }
                    self.coverage[i] = self.coverage[i].max(cover);
                }
            }
        }
    }

    fn text(&mut self, text: &Text) {
        let scale = f64::from(text.scale);
        let length = text.content.chars().count();
        let start = match text.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -text_width(length, text.scale) / 2.0,
            Anchor::End => -text_width(length, text.scale),
        };
        for (i, c) in text.content.chars().enumerate() {
            for (column, bits) in glyph(c).iter().enumerate() {
                for row in (0..8).filter(|row| bits >> row & 1 == 1) {
                    // Along the text from the anchor, and down from the baseline, which lies
                    // under the seventh row: the eighth holds descenders.
                    let along = start + (6 * i + column) as f64 * scale;
                    let down = (row as f64 - 7.0) * scale;
                    let corner = if text.vertical {
                        (text.at.0 + down, text.at.1 - along - scale)
                    } else {
                        (text.at.0 + along, text.at.1 + down)
                    };
                    self.fill_square(corner, text.scale as usize, text.color);
                }
            }
        }
    }

    fn fill_square(&mut self, corner: Point, size: usize, color: Rgb) {
        let (x, y) = (corner.0.round(), corner.1.round());
        for row in pixel_range(y, y + size as f64, self.height) {
            for column in pixel_range(x, x + size as f64, self.width) {
                let i = 3 * (row * self.width + column);
                self.rgb[i..i + 3].copy_from_slice(&[color.0, color.1, color.2]);
            }
        }
    }
}

/// The pixels whose centers may lie between `from` and `to`, within `0..limit`.
fn pixel_range(from: f64, to: f64, limit: usize) -> std::ops::Range<usize> {
    // Float-to-int casts saturate, and NaN becomes 0, so any input gives a valid range.
    let start = from.floor().max(0.0) as usize;
    let end = (to.ceil().max(0.0) as usize).min(limit);
    start.min(end)..end
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

/// The columns of the bitmap font's glyph for `c`, bit 0 at the top; '?' for characters it
/// lacks.
fn glyph(c: char) -> [u8; 5] {
    let index = match c {
        ' '..='~' => c as usize - ' ' as usize,
        _ => '?' as usize - ' ' as usize,
    };
    FONT[index]
}

/// The classic 5x7 LCD font for ASCII 32 to 126: five columns per character, bit 0 at the
/// top, bit 7 for descenders.
const FONT: [[u8; 5]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x00, 0x00, 0x5f, 0x00, 0x00], // !
    [0x00, 0x07, 0x00, 0x07, 0x00], // "
    [0x14, 0x7f, 0x14, 0x7f, 0x14], // #
    [0x24, 0x2a, 0x7f, 0x2a, 0x12], // $
    [0x23, 0x13, 0x08, 0x64, 0x62], // %
    [0x36, 0x49, 0x56, 0x20, 0x50], // &
    [0x00, 0x08, 0x07, 0x03, 0x00], // '
    [0x00, 0x1c, 0x22, 0x41, 0x00], // (
    [0x00, 0x41, 0x22, 0x1c, 0x00], // )
    [0x2a, 0x1c, 0x7f, 0x1c, 0x2a], // *
    [0x08, 0x08, 0x3e, 0x08, 0x08], // +
    [0x00, 0x80, 0x70, 0x30, 0x00], // ,
    [0x08, 0x08, 0x08, 0x08, 0x08], // -
    [0x00, 0x00, 0x60, 0x60, 0x00], // .
    [0x20, 0x10, 0x08, 0x04, 0x02], // /
    [0x3e, 0x51, 0x49, 0x45, 0x3e], // 0
    [0x00, 0x42, 0x7f, 0x40, 0x00], // 1
    [0x72, 0x49, 0x49, 0x49, 0x46], // 2
    [0x21, 0x41, 0x49, 0x4d, 0x33], // 3
    [0x18, 0x14, 0x12, 0x7f, 0x10], // 4
    [0x27, 0x45, 0x45, 0x45, 0x39], // 5
    [0x3c, 0x4a, 0x49, 0x49, 0x31], // 6
    [0x41, 0x21, 0x11, 0x09, 0x07], // 7
    [0x36, 0x49, 0x49, 0x49, 0x36], // 8
    [0x46, 0x49, 0x49, 0x29, 0x1e], // 9
    [0x00, 0x00, 0x14, 0x00, 0x00], // :
    [0x00, 0x40, 0x34, 0x00, 0x00], // ;
    [0x00, 0x08, 0x14, 0x22, 0x41], // <
    [0x14, 0x14, 0x14, 0x14, 0x14], // =
    [0x00, 0x41, 0x22, 0x14, 0x08], // >
    [0x02, 0x01, 0x59, 0x09, 0x06], // ?
    [0x3e, 0x41, 0x5d, 0x59, 0x4e], // @
    [0x7c, 0x12, 0x11, 0x12, 0x7c], // A
    [0x7f, 0x49, 0x49, 0x49, 0x36], // B
    [0x3e, 0x41, 0x41, 0x41, 0x22], // C
    [0x7f, 0x41, 0x41, 0x41, 0x3e], // D
    [0x7f, 0x49, 0x49, 0x49, 0x41], // E
    [0x7f, 0x09, 0x09, 0x09, 0x01], // F
    [0x3e, 0x41, 0x41, 0x51, 0x73], // G
    [0x7f, 0x08, 0x08, 0x08, 0x7f], // H
    [0x00, 0x41, 0x7f, 0x41, 0x00], // I
    [0x20, 0x40, 0x41, 0x3f, 0x01], // J
    [0x7f, 0x08, 0x14, 0x22, 0x41], // K
    [0x7f, 0x40, 0x40, 0x40, 0x40], // L
    [0x7f, 0x02, 0x1c, 0x02, 0x7f], // M
    [0x7f, 0x04, 0x08, 0x10, 0x7f], // N
    [0x3e, 0x41, 0x41, 0x41, 0x3e], // O
    [0x7f, 0x09, 0x09, 0x09, 0x06], // P
    [0x3e, 0x41, 0x51, 0x21, 0x5e], // Q
    [0x7f, 0x09, 0x19, 0x29, 0x46], // R
    [0x26, 0x49, 0x49, 0x49, 0x32], // S
    [0x03, 0x01, 0x7f, 0x01, 0x03], // T
    [0x3f, 0x40, 0x40, 0x40, 0x3f], // U
    [0x1f, 0x20, 0x40, 0x20, 0x1f], // V
    [0x3f, 0x40, 0x38, 0x40, 0x3f], // W
    [0x63, 0x14, 0x08, 0x14, 0x63], // X
    [0x03, 0x04, 0x78, 0x04, 0x03], // Y
    [0x61, 0x59, 0x49, 0x4d, 0x43], // Z
    [0x00, 0x7f, 0x41, 0x41, 0x41], // [
    [0x02, 0x04, 0x08, 0x10, 0x20], // \
    [0x00, 0x41, 0x41, 0x41, 0x7f], // ]
    [0x04, 0x02, 0x01, 0x02, 0x04], // ^
    [0x40, 0x40, 0x40, 0x40, 0x40], // _
    [0x00, 0x03, 0x07, 0x08, 0x00], // `
    [0x20, 0x54, 0x54, 0x78, 0x40], // a
    [0x7f, 0x28, 0x44, 0x44, 0x38], // b
    [0x38, 0x44, 0x44, 0x44, 0x28], // c
    [0x38, 0x44, 0x44, 0x28, 0x7f], // d
    [0x38, 0x54, 0x54, 0x54, 0x18], // e
    [0x00, 0x08, 0x7e, 0x09, 0x02], // f
    [0x18, 0xa4, 0xa4, 0x9c, 0x78], // g
    [0x7f, 0x08, 0x04, 0x04, 0x78], // h
    [0x00, 0x44, 0x7d, 0x40, 0x00], // i
    [0x20, 0x40, 0x40, 0x3d, 0x00], // j
    [0x7f, 0x10, 0x28, 0x44, 0x00], // k
    [0x00, 0x41, 0x7f, 0x40, 0x00], // l
    [0x7c, 0x04, 0x78, 0x04, 0x78], // m
    [0x7c, 0x08, 0x04, 0x04, 0x78], // n
    [0x38, 0x44, 0x44, 0x44, 0x38], // o
    [0xfc, 0x18, 0x24, 0x24, 0x18], // p
    [0x18, 0x24, 0x24, 0x18, 0xfc], // q
    [0x7c, 0x08, 0x04, 0x04, 0x08], // r
    [0x48, 0x54, 0x54, 0x54, 0x24], // s
    [0x04, 0x04, 0x3f, 0x44, 0x24], // t
    [0x3c, 0x40, 0x40, 0x20, 0x7c], // u
    [0x1c, 0x20, 0x40, 0x20, 0x1c], // v
    [0x3c, 0x40, 0x30, 0x40, 0x3c], // w
    [0x44, 0x28, 0x10, 0x28, 0x44], // x
    [0x4c, 0x90, 0x90, 0x90, 0x7c], // y
    [0x44, 0x64, 0x54, 0x4c, 0x44], // z
    [0x00, 0x08, 0x36, 0x41, 0x00], // {
    [0x00, 0x00, 0x77, 0x00, 0x00], // |
    [0x00, 0x41, 0x36, 0x08, 0x00], // }
    [0x02, 0x01, 0x02, 0x04, 0x02], // ~
];
