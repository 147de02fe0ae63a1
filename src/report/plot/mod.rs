//! Line plots (SVG and PNG), drawn by plotters' `ChartBuilder`: its linear and log axes, mesh and
//! series labels. The loss-curve plot, like Figure 1 of the paper, shows the loss of every layer
//! against the iteration on a log-scale y axis, one line per layer ([`render`]); `models/` draws
//! its training and sweep plots on other [`Axes`] ([`render_with`]).
//!
//! What is this module's own: the axes' ranges (whole decades on a log axis, round numbers past
//! the data on a linear y axis, so that both ends are labeled), a legend in columns that still
//! fits a hundred layers, and for PNG the embedded font's placement and smoothing ([`png`]).

mod png;

use std::path::Path;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{FontDesc, FontFamily};

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry, usually the layer's name (or the training run's).
    pub label: String,
    /// (x, y) pairs in drawing order, such as (iteration, loss). A point with a non-finite
    /// coordinate, or a non-positive one on a log axis, cannot be shown: it is skipped and the
    /// line breaks there. On linear axes every finite point is shown, zero and negative too.
    pub points: Vec<(f64, f64)>,
}

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear, labeled at round numbers.
    Linear,
    /// log10, labeled at powers of ten; for losses, which fall over decades. A non-positive
    /// value cannot be shown.
    Log,
}

/// The axes of a plot: their labels and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axes<'a> {
    /// The label under the x axis, such as "iteration" or "epoch".
    pub x_label: &'a str,
    /// The label beside the y axis, reading upwards.
    pub y_label: &'a str,
    pub x_scale: Scale,
    pub y_scale: Scale,
}

impl Axes<'static> {
    /// The axes of the loss-curve plot, which [`render`] draws: the iteration, and the loss on a
    /// log scale.
    pub const LOSS: Axes<'static> = Axes {
        x_label: "iteration",
        y_label: "L_CS (log scale)",
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
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

/// The loss-curve plot (with [`Axes::LOSS`]) as bytes.
pub fn render(format: PlotFormat, title: &str, curves: &[Series]) -> Vec<u8> {
    render_with(format, title, &Axes::LOSS, curves)
}

/// A plot with `axes` as bytes.
pub fn render_with(format: PlotFormat, title: &str, axes: &Axes, curves: &[Series]) -> Vec<u8> {
    png::register_font();
    match format {
        PlotFormat::Svg => {
            let mut out = String::new();
            {
                let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, 1.0, title, axes, curves).expect("drawing into a String cannot fail");
                root.present().expect("drawing into a String cannot fail");
            }
            out.into_bytes()
        }
        PlotFormat::Png => png::render(WIDTH, HEIGHT, |root, zoom| {
            draw(root, zoom, title, axes, curves)
        }),
    }
}

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 700;
/// The font of every text: monospace, so that the legend knows every label's width. The PNG
/// embeds it ([`png`]); an SVG viewer uses its own.
const FONT: &str = "monospace";
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const LIGHT_GRID: RGBColor = RGBColor(0xf0, 0xf0, 0xf0);
/// Tableau 10: ten colors that stay apart from each other, also for most color-blind readers.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
/// (dash, gap) in pixels for the curves after the first ten, once the palette has cycled (none:
/// solid): with the colors they tell 60 curves apart.
const DASHES: [Option<(u32, u32)>; 6] = [
    None,
    Some((10, 5)),
    Some((2, 4)),
    Some((18, 6)),
    Some((5, 5)),
    Some((1, 8)),
];

fn font(size: f64, zoom: f64) -> TextStyle<'static> {
    FontDesc::new(FontFamily::Name(FONT), size * zoom, FontStyle::Normal).color(&TEXT)
}

/// The width of `chars` characters of `FONT` at `size` (monospace: 0.6 em; plotters' em is
/// the size / 1.24).
fn text_width(chars: usize, size: f64) -> f64 {
    chars as f64 * 0.6 * size / 1.24
}

/// `text` without control characters (no XML, no glyph), cut to at most `chars` characters by
/// replacing its middle with "..": layer names differ at both ends ("layer4.1.downsample.0").
fn fit(text: &str, chars: usize) -> String {
    let text: Vec<char> = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() <= chars {
        return text.into_iter().collect();
    }
    let kept = chars.saturating_sub(2);
    let head = kept.div_ceil(2);
    let tail = &text[text.len() - (kept - head)..];
    text[..head].iter().chain(&['.', '.']).chain(tail).collect()
}

/// Splits a curve into runs of the points the axes can show: a point they cannot ends the run
/// before it, so that the line breaks instead of bridging it. Beyond 1e300 in size on a linear
/// axis, or under 1e-300 on a log axis, a value is drawn nowhere: plotters' pixels are `i32`s.
fn runs(points: &[(f64, f64)], axes: &Axes) -> Vec<Vec<(f64, f64)>> {
    let shown = |v: f64, scale| match scale {
        Scale::Linear => v.abs() <= 1e300,
        Scale::Log => (1e-300..=f64::MAX).contains(&v),
    };
    points
        .split(|&(x, y)| !shown(x, axes.x_scale) || !shown(y, axes.y_scale))
        .filter(|run| !run.is_empty())
        .map(<[_]>::to_vec)
        .collect()
}

/// An axis: plotters' coordinate, and the text of its labels.
type Axis<R> = (R, Box<dyn Fn(&f64) -> String>);

/// A log axis over `values`, out to whole decades (a little beyond, so that float rounding
/// drops no end label).
fn log_axis(values: impl Iterator<Item = f64>) -> Axis<LogCoord<f64>> {
    let (low, high) = bounds(values.map(f64::log10));
    let (mut low, mut high) = match (low, high) {
        (low, high) if low > high => (0.0, 1.0),
        (low, high) => (low.floor(), high.ceil().min(308.0)),
    };
    if low >= high {
        (low, high) = (low - 1.0, high + 1.0);
    }
    // plotters divides the ends: over 300 decades, values at the low end are left out.
    low = low.max(high - 300.0);
    let range = 10f64.powf(low) * (1.0 - 1e-6)..10f64.powf(high) * (1.0 + 1e-6);
    let label = |v: &f64| {
        let exponent = (v.log10() + 1e-9).floor();
        let mantissa = (v / 10f64.powf(exponent)).round();
        if mantissa == 1.0 {
            format!("1e{exponent}")
        } else {
            format!("{mantissa}e{exponent}")
        }
    };
    (range.log_scale().into(), Box::new(label))
}

/// A linear axis over `values`, out to plotters' ticks beyond them if `out`, labeled with the
/// decimals the ticks need.
fn linear_axis(values: impl Iterator<Item = f64>, out: bool) -> Axis<RangedCoordf64> {
    let (low, high) = bounds(values);
    let (low, high) = match (low, high) {
        (low, high) if low > high => (0.0, 1.0),
        (low, high) if low == high => (
            low - (low.abs() * 0.1).max(1.0),
            high + (low.abs() * 0.1).max(1.0),
        ),
        ends => ends,
    };
    let ticks = RangedCoordf64::from(low..high).key_points(LABELS);
    let step = match ticks[..] {
        [a, b, ..] if b > a && (b - a).is_finite() => b - a,
        _ => high - low,
    };
    let decimals = (-step.log10().floor()).clamp(0.0, 300.0) as usize;
    let range = if out {
        (low / step).floor() * step - step * 1e-6..(high / step).ceil() * step + step * 1e-6
    } else {
        low..high
    };
    // Adding zero turns -0 into 0, which would otherwise print as "-0".
    let label = move |v: &f64| format!("{:.*}", decimals, v + 0.0);
    (range.into(), Box::new(label))
}

/// The least and greatest of `values`; (inf, -inf) if there are none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// The most labeled ticks on a linear axis.
const LABELS: usize = 10;

/// The most labeled ticks on an axis: on a log one, fewer than the decades of a wide range.
fn labels(scale: Scale) -> usize {
    match scale {
        Scale::Linear => LABELS,
        Scale::Log => 8,
    }
}

/// What a plot shows: its curves, and the runs of their points that the axes can show.
struct Plot<'a> {
    title: &'a str,
    axes: &'a Axes<'a>,
    curves: &'a [Series],
    runs: Vec<Vec<Vec<(f64, f64)>>>,
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    zoom: f64,
    title: &str,
    axes: &Axes,
    curves: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let runs = curves.iter().map(|c| runs(&c.points, axes)).collect();
    let plot = Plot {
        title,
        axes,
        curves,
        runs,
    };
    let data = || plot.runs.iter().flatten().flatten();
    let (xs, ys) = (data().map(|p| p.0), data().map(|p| p.1));
    // A linear x axis ends at the data (iterations and epochs start at 0), a linear y axis at
    // round numbers past it.
    match (axes.x_scale, axes.y_scale) {
        (Scale::Linear, Scale::Log) => {
            chart(root, zoom, &plot, linear_axis(xs, false), log_axis(ys))
        }
        (Scale::Linear, Scale::Linear) => chart(
            root,
            zoom,
            &plot,
            linear_axis(xs, false),
            linear_axis(ys, true),
        ),
        (Scale::Log, Scale::Linear) => {
            chart(root, zoom, &plot, log_axis(xs), linear_axis(ys, true))
        }
        (Scale::Log, Scale::Log) => chart(root, zoom, &plot, log_axis(xs), log_axis(ys)),
    }
}

fn chart<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    zoom: f64,
    plot: &Plot,
    (x, x_label): Axis<X>,
    (y, y_label): Axis<Y>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let px = |v: f64| (v * zoom).round() as u32;
    root.fill(&WHITE)?;
    let (axes, curves, runs) = (plot.axes, plot.curves, &plot.runs);
    let legend = Legend::new(curves, runs, f64::from(HEIGHT) - 90.0);
    let title_chars = ((f64::from(WIDTH) - 40.0) / text_width(1, 24.0)) as usize;
    let body = root.titled(&fit(plot.title, title_chars), font(24.0, zoom))?;
    let body = body.margin(px(12.0), 0, 0, 0);
    let (plot_area, legend_area) = body.split_horizontally(px(f64::from(WIDTH) - legend.width()));
    let y_chars = y
        .key_points(labels(axes.y_scale))
        .iter()
        .map(|v| y_label(v).len())
        .max();
    // Light grid lines at 2 to 9 times each power of ten, where there is room for them.
    let light = |range: std::ops::Range<f64>, scale| match scale {
        Scale::Log if range.end / range.start < 1.1e10 => 10,
        _ => 0,
    };
    let (x_light, y_light) = (
        light(x.range(), axes.x_scale),
        light(y.range(), axes.y_scale),
    );
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(px(12.0))
        .x_label_area_size(px(56.0))
        .y_label_area_size(px(44.0 + text_width(y_chars.unwrap_or(1), 18.0)))
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .x_labels(labels(axes.x_scale))
        .y_labels(labels(axes.y_scale))
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_max_light_lines(x_light)
        .y_max_light_lines(y_light)
        .label_style(font(18.0, zoom))
        .axis_desc_style(font(20.0, zoom))
        .bold_line_style(GRID.stroke_width(px(1.0)))
        .light_line_style(LIGHT_GRID.stroke_width(px(1.0)))
        .axis_style(TEXT.stroke_width(px(1.0)))
        .set_all_tick_mark_size(px(6.0))
        .draw()?;
    for (index, curve_runs) in runs.iter().enumerate() {
        let (color, dash) = style(index);
        let line = color.stroke_width(px(2.0));
        for run in curve_runs.iter().filter(|run| run.len() > 1) {
            match dash {
                None => chart.draw_series(LineSeries::new(run.iter().copied(), line))?,
                Some((on, off)) => chart.draw_series(DashedLineSeries::new(
                    run.iter().copied(),
                    px(f64::from(on)),
                    px(f64::from(off)),
                    line,
                ))?,
            };
        }
        // A point with no drawable neighbour is a dot, which a line cannot show.
        let dots = curve_runs.iter().filter(|run| run.len() == 1);
        chart.draw_series(dots.map(|run| Circle::new(run[0], px(3.0), color.filled())))?;
    }
    // The plot's frame over the curves' ends, and the legend beside it.
    let (w, h) = chart.plotting_area().dim_in_pixel();
    let frame = Rectangle::new(
        [(0, 0), (w as i32 - 1, h as i32 - 1)],
        TEXT.stroke_width(px(1.0)),
    );
    chart.plotting_area().strip_coord_spec().draw(&frame)?;
    legend.draw(&legend_area, zoom, curves, runs)
}

/// The color and dash pattern of the `index`th curve: the palette, then again with dashes.
fn style(index: usize) -> (RGBColor, Option<(u32, u32)>) {
    (
        PALETTE[index % PALETTE.len()],
        DASHES[index / PALETTE.len() % DASHES.len()],
    )
}

/// The legend, beside the plot on the right: plotters' series labels, in as many columns as it
/// needs. It shrinks as curves are added (smaller font, more columns, shorter labels) so that a
/// hundred layers still fit next to a readable plot; past that it counts the rest.
#[derive(Default)]
struct Legend {
    size: f64,
    rows: usize,
    columns: usize,
    column_width: f64,
    /// The most characters of a label shown.
    chars: usize,
    /// The number of curves listed.
    shown: usize,
}

const LEGEND_MAX_WIDTH: f64 = 480.0;
/// The legend's top, level with the plot's.
const LEGEND_TOP: f64 = 12.0;
const LEGEND_MAX_COLUMNS: usize = 4;
/// The swatch and the gaps around the label.
const LEGEND_ROOM: f64 = 30.0 + 24.0;
const NOT_DRAWN: &str = " (not drawn)";

impl Legend {
    fn new(curves: &[Series], runs: &[Vec<Vec<(f64, f64)>>], height: f64) -> Legend {
        let count = curves.len();
        if count == 0 {
            return Legend::default();
        }
        let chars = |(c, r): (&Series, &Vec<_>)| {
            c.label.chars().count().min(40) + if r.is_empty() { NOT_DRAWN.len() } else { 0 }
        };
        let longest = curves.iter().zip(runs).map(chars).max().unwrap_or(0);
        // plotters spaces the lines of a legend 1.25 times the font's size apart.
        let rows_at = |size: f64| ((height / (1.25 * size)) as usize).max(2);
        for size in [16.0, 12.0] {
            let (rows, column_width) = (rows_at(size), LEGEND_ROOM + text_width(longest, size));
            let columns = count.div_ceil(rows);
            if columns as f64 * column_width <= LEGEND_MAX_WIDTH {
                return Legend {
                    size,
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
        let (size, rows) = (12.0, rows_at(12.0));
        let columns = count.div_ceil(rows).min(LEGEND_MAX_COLUMNS);
        let column_width = LEGEND_MAX_WIDTH / columns as f64;
        let chars = ((column_width - LEGEND_ROOM) / text_width(1, size)) as usize;
        let shown = if count > rows * columns {
            rows * columns - 1
        } else {
            count
        };
        Legend {
            size,
            rows,
            columns,
            column_width,
            chars: chars.max(4),
            shown,
        }
    }

    fn width(&self) -> f64 {
        self.columns as f64 * self.column_width + 10.0
    }

    /// One chart without axes per column, holding one empty series per curve for its label.
    /// plotters' labels share one color, so a curve with nothing to draw (a layer whose loss
    /// never was finite and positive on a log axis) says so, rather than seeming lost.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        zoom: f64,
        curves: &[Series],
        runs: &[Vec<Vec<(f64, f64)>>],
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let px = |v: f64| (v * zoom).round() as i32;
        let mut entries: Vec<(String, Option<usize>)> = (0..self.shown)
            .map(|i| match runs[i].is_empty() {
                true => (
                    fit(
                        &curves[i].label,
                        self.chars.saturating_sub(NOT_DRAWN.len()).max(4),
                    ) + NOT_DRAWN,
                    None,
                ),
                false => (fit(&curves[i].label, self.chars), Some(i)),
            })
            .collect();
        if self.shown < curves.len() {
            entries.push((format!("+{} more", curves.len() - self.shown), None));
        }
        let top = area.margin(px(LEGEND_TOP) as u32, 0, 0, 0);
        for (column, entries) in top
            .split_evenly((1, self.columns.max(1)))
            .iter()
            .zip(entries.chunks(self.rows.max(1)))
        {
            let mut chart = ChartBuilder::on(column).build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
            for (label, index) in entries {
                let series = chart.draw_series(std::iter::empty::<Circle<(f64, f64), u32>>())?;
                series.label(label.as_str());
                if let Some(index) = *index {
                    let (color, dash) = style(index);
                    let line = color.stroke_width(px(3.0) as u32);
                    let swatch = px(30.0);
                    let (on, off) = dash.map_or((swatch, 0), |(on, off)| {
                        (px(f64::from(on)), px(f64::from(off)))
                    });
                    series.legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + swatch, y)], on, off, line)
                    });
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .margin(px(4.0))
                .legend_area_size(px(36.0))
                .border_style(TRANSPARENT)
                .background_style(WHITE)
                .label_font(font(self.size, zoom))
                .draw()?;
        }
        Ok(())
    }
}
