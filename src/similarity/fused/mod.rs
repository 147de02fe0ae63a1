//! The fused CPU engine: per iteration, one parallel pass over the filters computes each filter's
//! gradient from the records `R` (autocorrelations or power spectra) and their sum `T`, applies
//! the optimizer in place, and computes the new `R_i` while the filter is still in cache. A layer
//! runs all its iterations before the next layer is loaded (layers are independent:
//! docs/math.md).
//!
//! Three [`Method`]s compute the same loss and gradient with different layouts, and a cost model
//! picks one per layer shape: [`Method::Channels`] (one filter `[P][C]` per unit, SIMD over input
//! channels), [`Method::Filters`] (16 filters `[P][C][16]` per unit, SIMD over filters, for few
//! channels) and [`Method::Spectral`] (FFT and Parseval, for long kernels). Each works on its own
//! copy of the layer in f32 or f64, not through candle's graph: a graph would materialize every
//! intermediate of every iteration, while here the only memory besides the weights is the
//! optimizer state and two record buffers. [`conv_similarity`] exposes the same kernels to
//! candle's autograd as a custom op, for using L_CS as a regularizer on CPU.
//!
//! Results are bit-identical across runs and thread counts: filters are independent within a
//! step, and every reduction over filters has a fixed order (`records.rs`).

mod blocked;
mod channels;
mod kernels;
mod op;
mod records;
mod spectral;

use std::fmt::Debug;
use std::ops::{AddAssign, MulAssign, SubAssign};

use rayon::prelude::*;

use blocked::Blocked;
use channels::Channels;
use kernels::{Isa, Kernel, Scratch, StepInputs, UnitJob};
pub use op::conv_similarity;
use records::RecordSpace;
use spectral::Spectral;

use super::{KernelGeometry, PositionPair, RecordFigures, ShiftTable, Variant};
use crate::optim::{AdamFactors, OptimizerConfig};

/// The element types the fused engine computes in.
pub trait Real:
    num_traits::Float
    + AddAssign
    + SubAssign
    + MulAssign
    + realfft::FftNum
    + Send
    + Sync
    + Debug
    + 'static
{
    /// Converts from f64, rounding to the nearest value.
    fn narrow(x: f64) -> Self;
    /// Converts to f64 exactly.
    fn widen(self) -> f64;
}

impl Real for f32 {
    fn narrow(x: f64) -> Self {
        x as f32
    }
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn narrow(x: f64) -> Self {
        x
    }
    fn widen(self) -> f64 {
        self
    }
}

/// The optimizer update of one step, in the element type.
#[derive(Clone, Copy)]
pub(crate) enum Update<T> {
    Adam(AdamFactors<T>),
    Sgd { lr: T },
    Momentum { lr: T, momentum: T },
}

impl<T: Real> Update<T> {
    fn for_step(optimizer: &OptimizerConfig, step: usize) -> Self {
        match *optimizer {
            OptimizerConfig::Adam(c) => Update::Adam(c.step(step).factors()),
            OptimizerConfig::Sgd(c) if c.momentum > 0.0 => Update::Momentum {
                lr: T::narrow(c.lr),
                momentum: T::narrow(c.momentum),
            },
            OptimizerConfig::Sgd(c) => Update::Sgd {
                lr: T::narrow(c.lr),
            },
        }
    }

    /// Optimizer state elements per weight.
    fn slots(optimizer: &OptimizerConfig) -> usize {
        match optimizer {
            OptimizerConfig::Adam(_) => 2,
            OptimizerConfig::Sgd(c) if c.momentum > 0.0 => 1,
            OptimizerConfig::Sgd(_) => 0,
        }
    }

    /// Updates `weights` in place; `state` holds `slots` arrays of the weights' length.
    #[inline(always)]
    fn apply(&self, weights: &mut [T], state: &mut [T], gradient: &[T]) {
        match self {
            Update::Adam(factors) => {
                let (m, v) = state.split_at_mut(weights.len());
                for (((w, m), v), &g) in weights.iter_mut().zip(m).zip(v).zip(gradient) {
                    factors.apply(w, m, v, g);
                }
            }
            Update::Momentum { lr, momentum } => {
                for ((w, b), &g) in weights.iter_mut().zip(state.iter_mut()).zip(gradient) {
                    *b = *b * *momentum + g;
                    *w -= *lr * *b;
                }
            }
            Update::Sgd { lr } => {
                for (w, &g) in weights.iter_mut().zip(gradient) {
                    *w -= *lr * g;
                }
            }
        }
    }
}

/// How the fused engine lays out and computes a layer. All methods give the same loss, gradient
/// and optimizer trajectory up to rounding; they differ only in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Direct, one filter per unit, vectorized over input channels: wide layers.
    Channels,
    /// Direct, 16 filters per unit in SIMD lanes: depthwise, grouped and few-channel layers.
    Filters,
    /// FFT and Parseval: long kernels, where `O(N log N)` beats the direct `O(P²)`.
    Spectral,
}

impl Method {
    /// Every path.
    pub const ALL: [Method; 3] = [Method::Channels, Method::Filters, Method::Spectral];

    /// The method with the lowest [`Method::cost`]; ties go to the direct methods. Depends on the
    /// shape alone, so a layer always runs the same arithmetic.
    pub fn choose(geometry: &KernelGeometry, variant: Variant) -> Method {
        Method::ALL
            .into_iter()
            .min_by(|a, b| {
                a.cost(geometry, variant)
                    .total_cmp(&b.cost(geometry, variant))
            })
            .expect("three paths")
    }

    /// The cost model: estimated cycles of one iteration (loss, gradient and Adam step) on one
    /// AVX-512 core in f32, from operation counts calibrated on measured kernels (docs/math.md).
    pub fn cost(self, geometry: &KernelGeometry, variant: Variant) -> f64 {
        let (s, c, p) = (
            geometry.filters as f64,
            geometry.channels as f64,
            geometry.positions() as f64,
        );
        let pairs = p * (p + 1.0) / 2.0;
        let lanes = blocked::LANES as f64;
        let per_channel = variant.same_channel_only();
        match self {
            Method::Channels => {
                // Rows of C: full vectors of 16, then a scalar tail of C mod 16.
                let vectors = (c / lanes).floor();
                let tail = c % lanes;
                let record = if per_channel {
                    pairs * ((c / lanes).ceil() + tail)
                } else {
                    pairs * ((c / lanes).ceil() + COST_REDUCTION + tail)
                };
                let gradient = if per_channel {
                    2.0 * pairs * ((c / lanes).ceil() + tail)
                } else {
                    p * p * (vectors + tail) * COST_GRADIENT
                };
                s * (record + gradient + c * p * COST_UPDATE / lanes)
            }
            Method::Filters => {
                let blocks = (s / lanes).ceil();
                // A unit of 16 wide filters outgrows L1, and every position pair streams it.
                let spill = if lanes * c * p * 4.0 > L1_BYTES {
                    p * p * c * COST_SPILL
                } else {
                    0.0
                };
                blocks
                    * (pairs * (c + COST_PAIR)
                        + p * p * c * COST_GRADIENT
                        + spill
                        + c * p * COST_UPDATE)
            }
            Method::Spectral => {
                let n = spectral::embedding(&geometry.kernel).1 as f64;
                s * c * (COST_FFT * 3.0 * n * n.log2() + n * COST_POINTWISE)
                    + s * c * p * COST_UPDATE / lanes
            }
        }
    }
}

/// Cost model constants, in cycles per 16-lane vector operation unless stated; calibrated with
/// `cargo bench --bench architectures -- --calibrate` (docs/math.md).
const COST_GRADIENT: f64 = 1.0;
/// Horizontal reduction of a dot product, per position pair (channel path).
const COST_REDUCTION: f64 = 4.0;
/// Load, add and store of one record entry per position pair (filter-blocked path).
const COST_PAIR: f64 = 1.0;
/// Extra cost per multiply-add of a filter-blocked unit larger than L1.
const COST_SPILL: f64 = 0.25;
/// The L1 data cache the spill term assumes (bytes).
const L1_BYTES: f64 = 32.0 * 1024.0;
/// The optimizer update of 16 weights.
const COST_UPDATE: f64 = 4.0;
/// Cycles per `N log2 N` of one real FFT of length `N`.
const COST_FFT: f64 = 0.25;
/// Cycles per bin of the spectral path's pointwise work and embedding.
const COST_POINTWISE: f64 = 2.0;

/// Position-pair tables of a direct path.
pub(super) struct DirectTables {
    channels: usize,
    positions: usize,
    /// Half shifts `H`.
    half: usize,
    pairs: Vec<PositionPair>,
    /// Half-shift index of every ordered position pair `(p, q)`, `[P][P]`.
    shift_of: Vec<u32>,
    /// Same-channel variants keep one autocorrelation per channel: `[H][C]` instead of `[H]`.
    per_channel: bool,
}

impl DirectTables {
    fn new(geometry: &KernelGeometry, variant: Variant) -> Self {
        let shifts: ShiftTable = geometry.shifts();
        let p = geometry.positions();
        let mut shift_of = vec![0; p * p];
        for pair in shifts.pairs() {
            let (a, b) = (pair.p as usize, pair.q as usize);
            shift_of[a * p + b] = pair.shift;
            shift_of[b * p + a] = pair.shift;
        }
        Self {
            channels: geometry.channels,
            positions: p,
            half: shifts.half_len(),
            pairs: shifts.pairs().to_vec(),
            shift_of,
            per_channel: variant.same_channel_only(),
        }
    }

    /// The record space of autocorrelations over half shifts (`[H]`, or `[H][C]`).
    fn space(&self, filters: usize, variant: Variant) -> RecordSpace {
        let lanes = if self.per_channel { self.channels } else { 1 };
        RecordSpace {
            filters,
            record_len: self.half * lanes,
            weights: (0..self.half * lanes)
                .map(|k| ShiftTable::weight(k / lanes))
                .collect(),
            adjacent: variant.adjacent_only(),
        }
    }
}

/// Below this estimated cost per iteration (cycles, [`Method::cost`]), a layer runs on the
/// calling thread: waking a second one and splitting the work costs more than it saves (a few
/// microseconds per parallel call, and a tiny layer makes two or three per iteration).
const SERIAL_BELOW_CYCLES: f64 = 15_000.0;

/// The fewest units one parallel task of this layer takes: all of them (no split) for a layer
/// too small to share. Splitting never changes a result: units are independent and every
/// reduction over them has a fixed order.
fn min_units_per_task(path: Method, geometry: &KernelGeometry, variant: Variant) -> usize {
    if path.cost(geometry, variant) < SERIAL_BELOW_CYCLES {
        geometry.filters.max(1)
    } else {
        1
    }
}

/// Calls `visit` with the kernel and record space of `path` for this layer.
fn with_kernel<T: Real, V: Visit<T>>(
    path: Method,
    geometry: &KernelGeometry,
    variant: Variant,
    visit: V,
) -> V::Output {
    let min_units = min_units_per_task(path, geometry, variant);
    match path {
        Method::Channels => {
            let tables = DirectTables::new(geometry, variant);
            let space = tables.space(geometry.filters, variant);
            visit.visit(Channels(tables), space, min_units)
        }
        Method::Filters => {
            let tables = DirectTables::new(geometry, variant);
            let space = tables.space(geometry.filters, variant);
            visit.visit(Blocked(tables), space, min_units)
        }
        Method::Spectral => {
            let per_channel = variant.same_channel_only();
            let kernel = Spectral::<T>::new(geometry.channels, &geometry.kernel, per_channel);
            let (bins, n) = (kernel.length() / 2 + 1, kernel.length());
            let lanes = if per_channel { geometry.channels } else { 1 };
            // Bin f stands for itself and its mirror N - f, except f = 0 and f = N/2.
            let weight = |f: usize| if f == 0 || f == bins - 1 { 1.0 } else { 2.0 };
            let space = RecordSpace {
                filters: geometry.filters,
                record_len: kernel.record_len(),
                weights: (0..bins * lanes)
                    .map(|k| weight(k % bins) / n as f64)
                    .collect(),
                adjacent: variant.adjacent_only(),
            };
            visit.visit(kernel, space, min_units)
        }
    }
}

/// What to do with a layer's kernel: a generic closure.
trait Visit<T: Real> {
    type Output;
    /// `min_units`: the fewest units one parallel task takes ([`min_units_per_task`]).
    fn visit<K: Kernel<T> + 'static>(
        self,
        kernel: K,
        space: RecordSpace,
        min_units: usize,
    ) -> Self::Output;
}

/// A layer prepared for one path: its kernel, its record space and its weights in units.
struct Layer<T, K> {
    kernel: K,
    space: RecordSpace,
    /// `[units][unit_len]`.
    weights: Vec<T>,
    isa: Isa,
    /// The fewest units one parallel task takes.
    min_units: usize,
}

impl<T: Real, K: Kernel<T>> Layer<T, K> {
    /// Packs a PyTorch-layout (`[S][C][P]`) weight into the kernel's units.
    fn new(
        weight: &[T],
        filter_len: usize,
        kernel: K,
        space: RecordSpace,
        min_units: usize,
    ) -> Self {
        let (per_unit, unit_len) = (kernel.unit_filters(), kernel.unit_len());
        let units = space.filters.div_ceil(per_unit);
        let mut weights = vec![T::zero(); units * unit_len];
        // In parallel: for a single loss evaluation (the report's figures) packing costs as
        // much as the records.
        weight
            .par_chunks(per_unit * filter_len)
            .zip(weights.par_chunks_exact_mut(unit_len))
            .with_min_len(min_units)
            .for_each(|(filters, unit)| kernel.pack(filters, unit));
        Self {
            kernel,
            space,
            weights,
            isa: Isa::detect(),
            min_units,
        }
    }

    fn filter_len(&self) -> usize {
        self.weights.len() / self.units() / self.kernel.unit_filters()
    }

    fn units(&self) -> usize {
        self.space.filters.div_ceil(self.kernel.unit_filters())
    }

    /// Unpacks `units` (the weights, or a gradient in the same layout) into PyTorch layout.
    fn unpack(&self, units: &[T], out: &mut [T], filter_len: usize) {
        let per_unit = self.kernel.unit_filters();
        for (unit, filters) in units
            .chunks_exact(self.kernel.unit_len())
            .zip(out.chunks_mut(per_unit * filter_len))
        {
            self.kernel.unpack(unit, filters);
        }
    }

    /// The records of every filter of the current weights.
    fn records(&self, records: &mut [T]) {
        let (isa, kernel) = (self.isa, &self.kernel);
        let per_unit = kernel.unit_filters() * self.space.record_len;
        self.weights
            .par_chunks(kernel.unit_len())
            .zip(records.par_chunks_mut(per_unit))
            .with_min_len(self.min_units)
            .for_each_init(
                || kernel.scratch(),
                |scratch, (unit, records)| isa.records(kernel, unit, records, scratch),
            );
    }

    /// The sum of squares of every filter, in f64.
    fn filter_squares(&self) -> Vec<f64> {
        let (kernel, per_unit) = (&self.kernel, self.kernel.unit_filters());
        let mut squares = vec![0.0; self.units() * per_unit];
        self.weights
            .par_chunks_exact(kernel.unit_len())
            .zip(squares.par_chunks_exact_mut(per_unit))
            .with_min_len(self.min_units)
            .for_each(|(unit, squares)| kernel.sums_of_squares(unit, squares));
        squares.truncate(self.space.filters);
        squares
    }

    /// [`RecordFigures`] of the current weights, whose records are `records`.
    fn figures(&self, records: &[T], total: &[T]) -> RecordFigures {
        let squares = self.filter_squares();
        RecordFigures {
            loss: self.space.loss(records, total),
            unit_loss: self.space.unit_loss(records, &squares),
            filter_squares: squares,
        }
    }

    /// The records of the current weights and their sum `T`.
    fn records_and_total(&self) -> (Vec<T>, Vec<T>) {
        let len = self.space.record_len;
        let mut records = vec![T::zero(); self.space.filters * len];
        let mut total = vec![T::zero(); len];
        self.records(&mut records);
        self.space.total(&records, &mut total);
        (records, total)
    }

    /// L_CS and its gradient in the kernel's layout.
    fn loss_and_gradient(&self) -> (f64, Vec<T>) {
        let (s, len) = (self.space.filters, self.space.record_len);
        let (records, total) = self.records_and_total();
        let loss = self.space.loss(&records, &total);
        let mut gradient = vec![T::zero(); self.weights.len()];
        let (isa, kernel, space) = (self.isa, &self.kernel, &self.space);
        let per_unit = kernel.unit_filters();
        self.weights
            .par_chunks(kernel.unit_len())
            .zip(gradient.par_chunks_mut(kernel.unit_len()))
            .enumerate()
            .with_min_len(self.min_units)
            .for_each_init(
                || Scratch::new(kernel, len),
                |scratch, (u, (unit, out))| {
                    let n = per_unit.min(s - u * per_unit);
                    let g = &mut scratch.gradient_weights[..n * len];
                    for (f, g) in g.chunks_exact_mut(len).enumerate() {
                        space.gradient_weights(&records, &total, u * per_unit + f, g);
                    }
                    isa.gradient(kernel, unit, g, out, &mut scratch.kernel);
                },
            );
        (loss, gradient)
    }
}

/// L_CS of a PyTorch-layout weight, in f64, on the path the cost model picks.
pub fn loss<T: Real>(weight: &[T], geometry: &KernelGeometry, variant: Variant) -> f64 {
    loss_on(Method::choose(geometry, variant), weight, geometry, variant)
}

/// L_CS of a PyTorch-layout weight, in f64, on `path`.
pub fn loss_on<T: Real>(
    path: Method,
    weight: &[T],
    geometry: &KernelGeometry,
    variant: Variant,
) -> f64 {
    struct Loss<'a, T>(&'a [T], usize);
    impl<T: Real> Visit<T> for Loss<'_, T> {
        type Output = f64;
        fn visit<K: Kernel<T>>(self, kernel: K, space: RecordSpace, min_units: usize) -> f64 {
            let layer = Layer::new(self.0, self.1, kernel, space, min_units);
            let (records, total) = layer.records_and_total();
            layer.space.loss(&records, &total)
        }
    }
    check_length(weight, geometry);
    with_kernel(path, geometry, variant, Loss(weight, geometry.filter_len()))
}

/// [`RecordFigures`] of a PyTorch-layout weight, from one pass of its records, on the path the
/// cost model picks.
pub fn record_figures<T: Real>(
    weight: &[T],
    geometry: &KernelGeometry,
    variant: Variant,
) -> RecordFigures {
    struct Figures<'a, T>(&'a [T], usize);
    impl<T: Real> Visit<T> for Figures<'_, T> {
        type Output = RecordFigures;
        fn visit<K: Kernel<T>>(
            self,
            kernel: K,
            space: RecordSpace,
            min_units: usize,
        ) -> Self::Output {
            let layer = Layer::new(self.0, self.1, kernel, space, min_units);
            let (records, total) = layer.records_and_total();
            layer.figures(&records, &total)
        }
    }
    check_length(weight, geometry);
    let path = Method::choose(geometry, variant);
    with_kernel(
        path,
        geometry,
        variant,
        Figures(weight, geometry.filter_len()),
    )
}

/// L_CS and its gradient (PyTorch layout) of a PyTorch-layout weight, on the path the cost
/// model picks.
pub fn loss_and_gradient<T: Real>(
    weight: &[T],
    geometry: &KernelGeometry,
    variant: Variant,
) -> (f64, Vec<T>) {
    loss_and_gradient_on(Method::choose(geometry, variant), weight, geometry, variant)
}

/// L_CS and its gradient (PyTorch layout) of a PyTorch-layout weight, on `path`.
pub fn loss_and_gradient_on<T: Real>(
    path: Method,
    weight: &[T],
    geometry: &KernelGeometry,
    variant: Variant,
) -> (f64, Vec<T>) {
    struct Gradient<'a, T>(&'a [T], usize);
    impl<T: Real> Visit<T> for Gradient<'_, T> {
        type Output = (f64, Vec<T>);
        fn visit<K: Kernel<T>>(
            self,
            kernel: K,
            space: RecordSpace,
            min_units: usize,
        ) -> (f64, Vec<T>) {
            let layer = Layer::new(self.0, self.1, kernel, space, min_units);
            let (loss, gradient) = layer.loss_and_gradient();
            let mut out = vec![T::zero(); self.0.len()];
            layer.unpack(&gradient, &mut out, self.1);
            (loss, out)
        }
    }
    check_length(weight, geometry);
    with_kernel(
        path,
        geometry,
        variant,
        Gradient(weight, geometry.filter_len()),
    )
}

fn check_length<T>(weight: &[T], geometry: &KernelGeometry) {
    assert_eq!(
        weight.len(),
        geometry.len(),
        "weight length does not match {geometry:?}"
    );
}

/// One layer's iterations in the engine: the weights, the optimizer state and the records of
/// the current weights. The loop around it (progress, stopping, divergence) is
/// `crate::minimize::fused`'s.
pub struct Iterations<T> {
    run: Box<dyn Stepper<T>>,
    path: Method,
}

impl<T: Real> Iterations<T> {
    /// Prepares a PyTorch-layout weight on the path the cost model picks. With `keep_norm`,
    /// every step rescales each filter to its starting norm.
    pub fn new(
        weight: &[T],
        geometry: &KernelGeometry,
        variant: Variant,
        optimizer: &OptimizerConfig,
        keep_norm: bool,
    ) -> Self {
        let path = Method::choose(geometry, variant);
        Self::on(path, weight, geometry, variant, optimizer, keep_norm)
    }

    /// [`Iterations::new`] on a given path.
    pub fn on(
        path: Method,
        weight: &[T],
        geometry: &KernelGeometry,
        variant: Variant,
        optimizer: &OptimizerConfig,
        keep_norm: bool,
    ) -> Self {
        struct Prepare<'a, T>(&'a [T], usize, OptimizerConfig, bool);
        impl<T: Real> Visit<T> for Prepare<'_, T> {
            type Output = Box<dyn Stepper<T>>;
            fn visit<K: Kernel<T> + 'static>(
                self,
                kernel: K,
                space: RecordSpace,
                min_units: usize,
            ) -> Self::Output {
                let Prepare(weight, filter_len, optimizer, keep_norm) = self;
                Box::new(Fused::new(
                    Layer::new(weight, filter_len, kernel, space, min_units),
                    optimizer,
                    keep_norm,
                ))
            }
        }
        check_length(weight, geometry);
        let prepare = Prepare(weight, geometry.filter_len(), *optimizer, keep_norm);
        Self {
            run: with_kernel(path, geometry, variant, prepare),
            path,
        }
    }

    /// The path these iterations run on.
    pub fn path(&self) -> Method {
        self.path
    }

    /// L_CS of the current weights.
    pub fn loss(&mut self) -> f64 {
        self.run.loss()
    }

    /// [`RecordFigures`] of the current weights, from their records: a pass over the weights
    /// for the filters' norms, none for the records.
    pub fn figures(&mut self) -> RecordFigures {
        self.run.figures()
    }

    /// Step `step` (from 1) of the optimizer, fused with the next records. Call after
    /// [`Iterations::loss`], which brings the records' sum up to date.
    pub fn step(&mut self, step: usize) {
        self.run.step(step)
    }

    /// True when every weight is finite.
    pub fn finite(&self) -> bool {
        self.run.finite()
    }

    /// Writes the weights back in PyTorch layout.
    pub fn write_back(&self, weight: &mut [T]) {
        self.run.write_back(weight)
    }
}

/// [`Iterations`] on one path, with the path's types erased.
trait Stepper<T>: Send {
    fn loss(&mut self) -> f64;
    fn figures(&mut self) -> RecordFigures;
    fn step(&mut self, step: usize);
    fn finite(&self) -> bool;
    fn write_back(&self, weight: &mut [T]);
}

struct Fused<T, K> {
    layer: Layer<T, K>,
    filter_len: usize,
    optimizer: OptimizerConfig,
    /// One optimizer state per unit (`slots * unit_len`).
    states: Vec<Vec<T>>,
    norms: Option<Vec<f64>>,
    records: Vec<T>,
    next_records: Vec<T>,
    total: Vec<T>,
}

impl<T: Real, K: Kernel<T>> Fused<T, K> {
    fn new(layer: Layer<T, K>, optimizer: OptimizerConfig, keep_norm: bool) -> Self {
        let (s, len) = (layer.space.filters, layer.space.record_len);
        let unit_len = layer.kernel.unit_len();
        let slots = Update::<T>::slots(&optimizer);
        let norms = keep_norm.then(|| {
            let mut norms = layer.filter_squares();
            norms.iter_mut().for_each(|n| *n = n.sqrt());
            norms
        });
        let mut records = vec![T::zero(); s * len];
        layer.records(&mut records);
        Self {
            filter_len: layer.filter_len(),
            states: vec![vec![T::zero(); slots * unit_len]; layer.units()],
            norms,
            next_records: vec![T::zero(); s * len],
            total: vec![T::zero(); len],
            records,
            optimizer,
            layer,
        }
    }
}

impl<T: Real, K: Kernel<T>> Stepper<T> for Fused<T, K> {
    fn loss(&mut self) -> f64 {
        self.layer.space.total(&self.records, &mut self.total);
        self.layer.space.loss(&self.records, &self.total)
    }

    fn figures(&mut self) -> RecordFigures {
        self.layer.space.total(&self.records, &mut self.total);
        self.layer.figures(&self.records, &self.total)
    }

    fn step(&mut self, step: usize) {
        let layer = &mut self.layer;
        let (kernel, isa) = (&layer.kernel, layer.isa);
        let per_unit = kernel.unit_filters();
        let len = layer.space.record_len;
        let inputs = StepInputs {
            space: &layer.space,
            records: &self.records,
            total: &self.total,
            update: Update::for_step(&self.optimizer, step),
            norms: self.norms.as_deref(),
        };
        layer
            .weights
            .par_chunks_mut(kernel.unit_len())
            .zip(self.states.par_iter_mut())
            .zip(self.next_records.par_chunks_mut(per_unit * len))
            .enumerate()
            .with_min_len(layer.min_units)
            .for_each_init(
                || Scratch::new(kernel, len),
                |scratch, (u, ((weights, state), next_records))| {
                    let job = UnitJob {
                        first: u * per_unit,
                        weights,
                        state,
                        next_records,
                        scratch,
                    };
                    isa.step_unit(kernel, &inputs, job);
                },
            );
        std::mem::swap(&mut self.records, &mut self.next_records);
    }

    fn finite(&self) -> bool {
        self.layer.weights.iter().all(|w| w.is_finite())
    }

    fn write_back(&self, weight: &mut [T]) {
        self.layer
            .unpack(&self.layer.weights, weight, self.filter_len)
    }
}
