//! What plotters' bitmap backend does not do: place the embedded font's glyphs right, and smooth
//! lines. The PNG is drawn at twice its size and scaled down, with DejaVu Sans Mono (`font/`) so
//! that nothing depends on the system's fonts.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::backend::BitMapBackend;
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, DrawingAreaErrorKind, IntoDrawingArea};
use plotters_backend::text_anchor::Pos;
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle};
use plotters_backend::{DrawingBackend, DrawingErrorKind, FontFamily, FontStyle, FontTransform};

const FONT_BYTES: &[u8] = include_bytes!("../font/DejaVuSansMono-subset.ttf");
/// Lines and text are drawn at this many times the size and scaled down, which smooths them.
const SUPERSAMPLING: u32 = 2;

/// The embedded font, registered once as [`super::FONT`] for plotters' text layout.
pub(super) fn register_font() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        plotters::style::register_font(super::FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// A `width` x `height` PNG of what `draw` draws on an area of `zoom` times that size.
pub(super) fn render<F>(width: u32, height: u32, draw: F) -> Vec<u8>
where
    F: for<'b> FnOnce(
        &DrawingArea<Glyphs<BitMapBackend<'b>>, Shift>,
        f64,
    ) -> Result<
        (),
        DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>,
    >,
{
    let (w, h) = (width * SUPERSAMPLING, height * SUPERSAMPLING);
    let mut large = vec![0u8; (w * h * 3) as usize];
    {
        let root = Glyphs(BitMapBackend::with_buffer(&mut large, (w, h))).into_drawing_area();
        draw(&root, f64::from(SUPERSAMPLING)).expect("drawing into memory cannot fail");
        root.present().expect("drawing into memory cannot fail");
    }
    let s = SUPERSAMPLING as usize;
    let at = |x: usize, y: usize, c: usize| usize::from(large[(y * w as usize + x) * 3 + c]);
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for (y, x, c) in (0..height as usize)
        .flat_map(|y| (0..width as usize).flat_map(move |x| (0..3).map(move |c| (y, x, c))))
    {
        let sum: usize = (0..s * s)
            .map(|k| at(x * s + k % s, y * s + k / s, c))
            .sum();
        pixels.push((sum / (s * s)) as u8);
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("writing to memory");
    writer.write_image_data(&pixels).expect("writing to memory");
    writer.finish().expect("writing to memory");
    bytes
}

/// A backend that draws text with each glyph at its place: plotters' own glyph renderer
/// (0.3.7) draws every glyph from the pen position without its left side bearing, which makes
/// a monospace "1.0" read "1. 0". Everything else goes to the backend inside.
pub(super) struct Glyphs<B>(B);

impl<B: DrawingBackend> DrawingBackend for Glyphs<B> {
    type ErrorType = B::ErrorType;
    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        at: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_pixel(at, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn blit_bitmap(
        &mut self,
        at: BackendCoord,
        (w, h): (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.blit_bitmap(at, (w, h), src)
    }
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        at: BackendCoord,
    ) -> Result<(), DrawingErrorKind<B::ErrorType>> {
        self.0.draw_text(text, &Placed(style), at)
    }
}

/// A text style whose glyphs are drawn at the pen position plus their left side bearing.
struct Placed<'a, S>(&'a S);

impl<S: BackendTextStyle> BackendTextStyle for Placed<'_, S> {
    type FontError = S::FontError;
    fn color(&self) -> BackendColor {
        self.0.color()
    }
    fn size(&self) -> f64 {
        self.0.size()
    }
    fn transform(&self) -> FontTransform {
        self.0.transform()
    }
    fn style(&self) -> FontStyle {
        self.0.style()
    }
    fn anchor(&self) -> Pos {
        self.0.anchor()
    }
    fn family(&self) -> FontFamily<'_> {
        self.0.family()
    }
    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), S::FontError> {
        self.0.layout_box(text)
    }
    fn draw<E, D: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        (x0, y0): BackendCoord,
        mut draw: D,
    ) -> Result<Result<(), E>, S::FontError> {
        let font = FontRef::try_from_slice(FONT_BYTES).expect("the embedded font is valid");
        let font = font.as_scaled(self.size() as f32);
        let color = self.color();
        let mut pen = 0f32;
        for c in text.chars() {
            let glyph = font.scaled_glyph(c);
            let advance = font.h_advance(glyph.id);
            if let Some(outline) = font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                // Where plotters puts a glyph, plus the bearing (bounds.min.x).
                let dx = x0 + (pen + bounds.min.x) as i32;
                let dy = y0 + (self.size() as f32 / 2.0 + bounds.min.y) as i32;
                let mut result = Ok(());
                outline.draw(|x, y, coverage| {
                    if result.is_ok() {
                        let alpha = color.alpha * f64::from(coverage);
                        let rgb = color.rgb;
                        result = draw(dx + x as i32, dy + y as i32, BackendColor { alpha, rgb });
                    }
                });
                if result.is_err() {
                    return Ok(result);
                }
            }
            pen += advance;
        }
        Ok(Ok(()))
    }
}
