//! Loss-curve plots, plots on a linear y axis and on a log x axis: the SVG parses (with a real
//! XML parser) and shows what it should, the PNG decodes, and odd data does not panic.

use std::path::Path;

use cs_init::report::plot::{render, render_with, Axes, PlotFormat, Scale, Series};

fn curve(label: &str, points: impl IntoIterator<Item = (f64, f64)>) -> Series {
    Series {
        label: label.to_string(),
        points: points.into_iter().collect(),
    }
}

/// A loss falling from `start` by a factor `rate` per iteration over `n` iterations.
fn decay(label: &str, start: f64, rate: f64, n: usize) -> Series {
    curve(
        label,
        (0..n).map(|i| (i as f64, start * rate.powi(i as i32))),
    )
}

fn svg(title: &str, curves: &[Series]) -> String {
    String::from_utf8(render(PlotFormat::Svg, title, curves)).expect("the SVG is UTF-8")
}

/// What a plot's SVG shows, read with an XML parser.
struct Drawn {
    /// Every text, in document order.
    texts: Vec<String>,
    /// The tick labels of the y axis (the texts anchored at their end).
    y_labels: Vec<String>,
    /// The polylines drawn in a curve's style (not the grid, the frame or a legend swatch),
    /// each as its points; a dashed curve is drawn as one polyline per dash.
    lines: Vec<Vec<(f64, f64)>>,
    /// Their stroke colors, in the same order.
    line_colors: Vec<String>,
    /// The dots of points with no drawable neighbour.
    dots: usize,
}

/// The width of a curve's line in the SVG (a legend swatch's is 3, the grid's and frame's 1).
const CURVE_STROKE: &str = "2";

fn parse(document: &str) -> Drawn {
    let doc = roxmltree::Document::parse(document)
        .unwrap_or_else(|e| panic!("the SVG is not well-formed XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("viewBox"), Some("0 0 1200 700"));
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let mut drawn = Drawn {
        texts: Vec::new(),
        y_labels: Vec::new(),
        lines: Vec::new(),
        line_colors: Vec::new(),
        dots: 0,
    };
    for node in doc.descendants().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "text" => {
                let text = node
                    .text()
                    .unwrap_or_default()
                    .trim_matches('\n')
                    .to_string();
                if node.attribute("text-anchor") == Some("end") {
                    drawn.y_labels.push(text.clone());
                }
                drawn.texts.push(text);
            }
            "polyline" if node.attribute("stroke-width") == Some(CURVE_STROKE) => {
                let points = node
                    .attribute("points")
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').expect("x,y");
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                drawn.lines.push(points);
                drawn
                    .line_colors
                    .push(node.attribute("stroke").unwrap_or_default().to_uppercase());
            }
            "circle" => drawn.dots += 1,
            _ => {}
        }
    }
    drawn
}

impl Drawn {
    fn has_text(&self, text: &str) -> bool {
        self.texts.iter().any(|t| t == text)
    }

    /// The y tick labels as numbers, bottom to top.
    fn y_ticks(&self) -> Vec<f64> {
        self.y_labels
            .iter()
            .map(|label| {
                label
                    .parse()
                    .unwrap_or_else(|_| panic!("numeric label {label:?}"))
            })
            .collect()
    }
}

/// The image size and its pixels as RGB(A) bytes.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut pixels).expect("PNG image data");
    pixels.truncate(info.buffer_size());
    (info.width, info.height, pixels)
}

/// True when some pixel is within `tolerance` of `color` in every channel: PNG lines are
/// smoothed, so their middle is the color and their edges blend into the background.
fn has_color(pixels: &[u8], channels: usize, color: [u8; 3], tolerance: u8) -> bool {
    pixels.chunks(channels).any(|p| {
        p[..3]
            .iter()
            .zip(color)
            .all(|(&a, b)| a.abs_diff(b) <= tolerance)
    })
}

/// Renders both formats, and returns what the SVG shows.
fn render_both(curves: &[Series]) -> Drawn {
    let (width, height, _) = decode_png(&render(PlotFormat::Png, "edge case", curves));
    assert_eq!((width, height), (1200, 700));
    parse(&svg("edge case", curves))
}

#[test]
fn svg_is_well_formed_with_a_view_box_and_one_path_per_drawable_curve() {
    let curves = [
        decay("layer1.0.conv1", 100.0, 0.9, 200),
        decay("layer1.0.conv2", 10.0, 0.95, 200),
        decay("layer2.0.conv1", 1.0, 0.97, 150),
        curve("never finite", [(0.0, f64::NAN), (1.0, f64::INFINITY)]),
        curve("empty", []),
    ];
    let document = svg("ResNet-18", &curves);
    let drawn = parse(&document);
    assert_eq!(drawn.lines.len(), 3, "one line per drawable curve");
    assert_eq!(drawn.line_colors, ["#1F77B4", "#FF7F0E", "#2CA02C"]);
    for label in ["layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1"] {
        assert!(drawn.has_text(label), "{label} is in the legend");
    }
    // Curves with nothing to draw say so in the legend.
    for label in ["never finite", "empty"] {
        let entry = format!("{label} (not drawn)");
        assert!(drawn.has_text(&entry), "{entry}: {:?}", drawn.texts);
    }
    for text in ["ResNet-18", "iteration", "L_CS (log scale)"] {
        assert!(drawn.has_text(text), "{text}");
    }
    assert!(!document.contains("href"), "no external resources");
}

#[test]
fn svg_escapes_labels_and_title() {
    let label = r#"a<b & "c" 'd'>"#;
    let curves = [decay(label, 1.0, 0.9, 10)];
    let document = svg("<Title> & co", &curves);
    let drawn = parse(&document);
    assert!(drawn.has_text(label), "{:?}", drawn.texts);
    assert!(drawn.has_text("<Title> & co"));
    assert!(!document.contains("<b"));
    assert!(!document.contains("<Title>"));
}

#[test]
fn svg_has_a_label_at_every_decade_of_the_data() {
    let curves = [curve(
        "conv",
        (0..=6).map(|i| (i as f64 * 100.0, 10f64.powi(3 - i))),
    )];
    let drawn = parse(&svg("decades", &curves));
    for exponent in -3..=3 {
        assert!(drawn.has_text(&format!("1e{exponent}")), "1e{exponent}");
    }
    for x in ["0", "100", "200", "300", "400", "500", "600"] {
        assert!(drawn.has_text(x), "x tick {x}");
    }
}

#[test]
fn svg_labels_fewer_decades_on_a_wide_range() {
    let curves = [curve("wide", [(0.0, 1e-100), (1.0, 1e100)])];
    let drawn = parse(&svg("wide", &curves));
    let decade_labels = drawn
        .y_labels
        .iter()
        .filter(|t| t.starts_with("1e"))
        .count();
    assert!(
        (3..=10).contains(&decade_labels),
        "{decade_labels} decade labels"
    );
    // plotters' log axis labels every few decades from the low end, but no value under
    // f64::EPSILON (it takes those for its zero point), and need not label the high end.
    assert!(drawn.has_text("1e84"), "{:?}", drawn.y_labels);
}

#[test]
fn svg_breaks_the_line_at_unplottable_losses() {
    let curves = [curve(
        "gappy",
        [
            (0.0, 1.0),
            (1.0, 0.5),
            (2.0, f64::NAN),
            (3.0, 0.2),
            (4.0, 0.1),
            (5.0, 0.0),
            (6.0, -1.0),
            (7.0, 0.05),
            (8.0, 0.04),
            (9.0, f64::INFINITY),
            (10.0, 0.03),
        ],
    )];
    let drawn = parse(&svg("gaps", &curves));
    let lengths: Vec<usize> = drawn.lines.iter().map(Vec::len).collect();
    assert_eq!(lengths, [2, 2, 2], "three runs of two points");
    assert_eq!(drawn.dots, 1, "the last point alone is a dot");
}

#[test]
fn png_has_the_signature_and_decodes_to_a_drawn_image() {
    let curves = [
        decay("layer1.0.conv1", 100.0, 0.9, 200),
        decay("layer1.0.conv2", 10.0, 0.95, 200),
    ];
    let bytes = render(PlotFormat::Png, "ResNet-18", &curves);
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (width, height, pixels) = decode_png(&bytes);
    assert_eq!((width, height), (1200, 700));
    let channels = pixels.len() / (width * height) as usize;
    assert!(channels >= 3);
    let first = &pixels[..channels];
    assert!(pixels.chunks(channels).any(|pixel| pixel != first));
    // The first curve's color (Tableau blue) is drawn somewhere.
    assert!(has_color(&pixels, channels, [0x1f, 0x77, 0xb4], 8));
}

#[test]
fn edge_cases_render_without_panicking() {
    assert_eq!(render_both(&[]).lines.len(), 0);

    let zeros_and_nan = [curve(
        "bad",
        [
            (0.0, 0.0),
            (1.0, f64::NAN),
            (2.0, -3.0),
            (3.0, f64::NEG_INFINITY),
        ],
    )];
    assert_eq!(render_both(&zeros_and_nan).lines.len(), 0);

    let constant = [curve("flat", (0..100).map(|i| (i as f64, 0.25)))];
    assert_eq!(render_both(&constant).lines.len(), 1);

    let power_of_ten = [curve("one", (0..100).map(|i| (i as f64, 1.0)))];
    let drawn = render_both(&power_of_ten);
    assert_eq!(drawn.lines.len(), 1);
    assert!(drawn.has_text("1e0"));

    // A single point has no line through it: it is drawn as a dot.
    let single = [curve("single", [(1.0, 3.0)])];
    let drawn = render_both(&single);
    assert_eq!((drawn.lines.len(), drawn.dots), (0, 1));

    let odd_x = [curve(
        "odd x",
        [
            (f64::NAN, 1.0),
            (-5.0, 2.0),
            (f64::INFINITY, 3.0),
            (1e12, 4.0),
            (f64::MAX, 5.0),
            (-f64::MAX, 6.0),
        ],
    )];
    render_both(&odd_x);

    let extremes = [curve(
        "extremes",
        [(0.0, f64::MIN_POSITIVE / 1e10), (1.0, f64::MAX), (2.0, 1.0)],
    )];
    assert_eq!(render_both(&extremes).lines.len(), 1);

    // A label too long for the legend keeps both ends, which is where layer names differ.
    let long_label = [decay(&format!("start{}end", "x".repeat(1000)), 1.0, 0.5, 5)];
    let drawn = render_both(&long_label);
    assert!(drawn
        .texts
        .iter()
        .any(|t| t.starts_with("startx") && t.contains("x..x") && t.ends_with("xend")));

    let odd_text = [decay("tab\tnewline\n\u{7}bell ünï", 1.0, 0.5, 5)];
    render_both(&odd_text);
}

#[test]
fn many_curves_get_a_path_and_a_legend_entry_each() {
    let curves: Vec<Series> = (0..100)
        .map(|i| decay(&format!("layer{i}.conv"), 1.0 + i as f64, 0.99, 1000))
        .collect();
    let drawn = parse(&svg("100 layers", &curves));
    for curve in &curves {
        assert!(drawn.has_text(&curve.label));
    }
    // The palette's ten colors, solid: one line each; past them the curves are told apart by
    // dashes, drawn as many short lines.
    let mut colors = drawn.line_colors[..10].to_vec();
    assert!(
        drawn.lines[..10].iter().all(|l| l.len() > 100),
        "solid lines"
    );
    colors.dedup();
    assert_eq!(colors.len(), 10);
    assert!(drawn.lines.len() > 200, "{} lines", drawn.lines.len());
    render_both(&curves);
}

#[test]
fn too_many_curves_for_the_legend_are_counted() {
    let curves: Vec<Series> = (0..500)
        .map(|i| decay(&format!("a rather long layer name {i}"), 1.0, 0.9, 3))
        .collect();
    let drawn = render_both(&curves);
    assert!(drawn.lines.len() >= 500);
    assert!(
        drawn.texts.iter().any(|t| t.ends_with(" more")),
        "{:?}",
        drawn.texts.last()
    );
}

#[test]
fn format_is_chosen_by_extension_in_any_case() {
    let format = |path: &str| PlotFormat::from_path(Path::new(path));
    assert_eq!(format("loss.svg"), Some(PlotFormat::Svg));
    assert_eq!(format("out/Loss.SVG"), Some(PlotFormat::Svg));
    assert_eq!(format("loss.png"), Some(PlotFormat::Png));
    assert_eq!(format("loss.PNG"), Some(PlotFormat::Png));
    assert_eq!(format("loss.txt"), None);
    assert_eq!(format("loss"), None);
    assert_eq!(format(".svg"), None);
}

// ---------------------------------------------------------------------------------------------
// A linear y axis with labels of one's own

const ACCURACY: Axes<'static> = Axes {
    x_label: "epoch",
    y_label: "test accuracy (%)",
    x_scale: Scale::Linear,
    y_scale: Scale::Linear,
};

fn linear_svg(title: &str, curves: &[Series]) -> String {
    String::from_utf8(render_with(PlotFormat::Svg, title, &ACCURACY, curves))
        .expect("the SVG is UTF-8")
}

/// Test accuracy in percent per epoch for a training run.
fn accuracy(label: &str, values: &[f64]) -> Series {
    curve(
        label,
        values.iter().enumerate().map(|(i, &v)| (i as f64 + 1.0, v)),
    )
}

#[test]
fn loss_axes_are_what_render_uses() {
    let curves = [decay("a", 100.0, 0.9, 50), decay("b", 1.0, 0.8, 50)];
    for format in [PlotFormat::Svg, PlotFormat::Png] {
        assert_eq!(
            render_with(format, "t", &Axes::LOSS, &curves),
            render(format, "t", &curves)
        );
    }
    assert_eq!(Axes::LOSS.y_scale, Scale::Log);
    assert_eq!(Axes::LOSS.x_scale, Scale::Linear);
    assert_eq!(Axes::LOSS.x_label, "iteration");
}

#[test]
fn linear_svg_has_the_custom_labels_and_ticks_that_span_the_data() {
    let curves = [
        accuracy("run 1", &[10.0, 35.0, 52.0, 61.0, 70.0, 74.0, 78.0, 80.0]),
        accuracy("run 2", &[12.0, 30.0, 45.0, 58.0, 66.0, 71.0, 75.0, 77.0]),
    ];
    let document = linear_svg("CIFAR-10", &curves);
    let drawn = parse(&document);
    assert_eq!(drawn.lines.len(), 2);
    for text in ["CIFAR-10", "epoch", "test accuracy (%)", "run 1", "run 2"] {
        assert!(drawn.has_text(text), "{text}");
    }
    assert!(!drawn.has_text("iteration"));
    assert!(!document.contains("L_CS"));
    assert!(
        !drawn.texts.iter().any(|t| t.starts_with("1e")),
        "no decade labels on a linear axis"
    );
    assert_eq!(
        drawn.y_ticks(),
        [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    );
    for epoch in 1..=8 {
        assert!(drawn.has_text(&epoch.to_string()), "epoch {epoch}");
    }
}

#[test]
fn linear_axis_is_labeled_at_round_numbers_beyond_both_ends_of_the_data() {
    let curves = [accuracy("run", &[12.5, 40.25, 63.0, 78.75])];
    let ticks = parse(&linear_svg("", &curves)).y_ticks();
    assert!(ticks.len() >= 3, "{ticks:?}");
    assert!(
        ticks[0] <= 12.5 && *ticks.last().unwrap() >= 78.75,
        "{ticks:?}"
    );
    assert!(ticks.windows(2).all(|pair| pair[0] < pair[1]), "{ticks:?}");
    assert!(ticks.iter().all(|t| t.fract() == 0.0), "{ticks:?}");

    // Steps finer than one get the decimals they need, and the ends are still labeled however
    // the multiples of the step round.
    for (low, high) in [(0.3, 0.7), (-1.23, 4.56), (0.1, 0.3), (1e-6, 3e-6)] {
        let drawn = parse(&linear_svg("", &[accuracy("run", &[low, high])]));
        let ticks = drawn.y_ticks();
        assert!(ticks.len() >= 2, "{ticks:?}");
        assert!(
            ticks[0] <= low && *ticks.last().unwrap() >= high,
            "{low} {high}: {ticks:?}"
        );
        let labels = drawn.y_labels.clone();
        let mut distinct = labels.clone();
        distinct.dedup();
        assert_eq!(distinct, labels, "labels differ from their neighbours");
    }
}

#[test]
fn linear_axis_draws_zero_and_negative_values() {
    let points = [
        (0.0, -5.0),
        (1.0, 0.0),
        (2.0, 5.0),
        (3.0, f64::NAN),
        (4.0, -1.0),
    ];
    let curves = [curve("signed", points)];
    let drawn = parse(&linear_svg("signed", &curves));
    let lengths: Vec<usize> = drawn.lines.iter().map(Vec::len).collect();
    assert_eq!(lengths, [3], "one run of three points");
    assert_eq!(drawn.dots, 1, "the point after the NaN is a dot");
    let ticks = drawn.y_ticks();
    assert!(
        ticks[0] <= -5.0 && *ticks.last().unwrap() >= 5.0,
        "{ticks:?}"
    );
    assert!(drawn.y_labels.contains(&"0".to_string()));

    // The same curve on the log axis keeps only the positive value, as a dot.
    let drawn = parse(&svg("signed", &curves));
    assert_eq!((drawn.lines.len(), drawn.dots), (0, 1));

    // A curve of zeros is drawn, and its legend entry does not say it is not.
    let zeros = [curve("zeros", (0..10).map(|i| (i as f64, 0.0)))];
    let drawn = parse(&linear_svg("", &zeros));
    assert_eq!(drawn.lines.len(), 1);
    assert!(drawn.has_text("zeros"), "{:?}", drawn.texts);
}

#[test]
fn linear_png_has_the_signature_and_decodes_to_a_drawn_image() {
    let curves = [
        accuracy("run 1", &[10.0, 35.0, 52.0, 61.0, 70.0, 80.0]),
        accuracy("run 2", &[-3.0, 0.0, 20.0, 40.0, 41.0, 42.0]),
    ];
    let bytes = render_with(PlotFormat::Png, "accuracy", &ACCURACY, &curves);
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (width, height, pixels) = decode_png(&bytes);
    assert_eq!((width, height), (1200, 700));
    let channels = pixels.len() / (width * height) as usize;
    assert!(channels >= 3);
    for color in [[0x1f, 0x77, 0xb4], [0xff, 0x7f, 0x0e]] {
        assert!(
            has_color(&pixels, channels, color, 8),
            "{color:x?} is drawn"
        );
    }
    assert_ne!(bytes, render(PlotFormat::Png, "accuracy", &curves));
}

#[test]
fn linear_edge_cases_render_without_panicking() {
    let render_linear = |curves: &[Series]| {
        let (width, height, _) =
            decode_png(&render_with(PlotFormat::Png, "edge", &ACCURACY, curves));
        assert_eq!((width, height), (1200, 700));
        let document = linear_svg("edge", curves);
        let drawn = parse(&document);
        assert!(!document.contains("NaN") && !document.contains("inf"));
        (drawn.lines.len(), drawn.dots)
    };
    assert_eq!(render_linear(&[]), (0, 0));
    let never_finite = [curve("bad", [(0.0, f64::NAN), (1.0, f64::INFINITY)])];
    assert_eq!(render_linear(&never_finite), (0, 0));
    let constant = [curve("flat", (0..10).map(|i| (i as f64, 50.0)))];
    assert_eq!(render_linear(&constant), (1, 0));
    assert!(parse(&linear_svg("", &constant)).y_ticks().contains(&50.0));
    assert_eq!(render_linear(&[curve("single", [(1.0, -3.0)])]), (0, 1));
    let extremes = [curve(
        "extremes",
        [(0.0, -f64::MAX), (1.0, f64::MAX), (2.0, 0.0)],
    )];
    render_linear(&extremes);
    let huge = [curve("huge", [(0.0, 0.0), (1.0, f64::MAX)])];
    render_linear(&huge);
    let tiny = [curve("tiny", [(0.0, 0.0), (1.0, f64::MIN_POSITIVE)])];
    render_linear(&tiny);
}

// ---------------------------------------------------------------------------------------------
// A log x axis

const SWEEP: Axes<'static> = Axes {
    x_label: "iterations (log scale)",
    y_label: "change",
    x_scale: Scale::Log,
    y_scale: Scale::Linear,
};

#[test]
fn log_x_axis_spaces_decades_equally_and_skips_non_positive_x() {
    let points = [
        (0.0, 0.0),
        (1.0, -0.1),
        (10.0, 0.2),
        (100.0, 0.3),
        (1000.0, -0.2),
    ];
    let curves = [curve("run", points)];
    let document = String::from_utf8(render_with(PlotFormat::Svg, "t", &SWEEP, &curves)).unwrap();
    let drawn = parse(&document);
    assert_eq!(drawn.lines.len(), 1);
    let xs: Vec<f64> = drawn.lines[0].iter().map(|p| p.0).collect();
    assert_eq!(xs.len(), 4, "x = 0 cannot be shown: {xs:?}");
    let steps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps[0] > 0.0, "{xs:?}");
    assert!(
        steps.iter().all(|s| (s - steps[0]).abs() <= 1.0),
        "{steps:?}"
    );
    for label in ["1e0", "1e1", "1e2", "1e3", "iterations (log scale)"] {
        assert!(drawn.has_text(label), "{label}");
    }
    // The y axis stays linear: it labels zero and negative values.
    let ticks = drawn.y_ticks();
    assert!(ticks.contains(&0.0) && ticks[0] <= -0.2, "{ticks:?}");
    let (width, height, _) = decode_png(&render_with(PlotFormat::Png, "t", &SWEEP, &curves));
    assert_eq!((width, height), (1200, 700));
}

#[test]
fn log_x_edge_cases_render_without_panicking() {
    for points in [
        vec![],
        vec![(0.0, 1.0), (-1.0, 2.0)],
        vec![(5.0, 1.0)],
        vec![(1e-300, 1.0), (1e300, 2.0)],
        vec![(3.0, 1.0), (3.0, 2.0)],
    ] {
        let curves = [curve("edge", points)];
        let document =
            String::from_utf8(render_with(PlotFormat::Svg, "edge", &SWEEP, &curves)).unwrap();
        parse(&document);
        assert!(!document.contains("NaN") && !document.contains("inf"));
        render_with(PlotFormat::Png, "edge", &SWEEP, &curves);
    }
}
