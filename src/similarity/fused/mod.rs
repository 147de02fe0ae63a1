//! The fused CPU engine: per iteration, one parallel pass over the filters computes each filter's
//! gradient from the autocorrelations `R` and their sum `T`, applies the optimizer in place, and
//! computes the new `R_i` while the filter is still in cache. A layer runs all its iterations before
//! the next layer is loaded (layers are independent: docs/math.md).
//!
//! The engine works on its own copy of the layer in `[S][P][C]` layout (position-major filters) in
//! f32 or f64, not through candle's graph: a graph would materialize every intermediate of every
//! iteration, while here the only memory besides the weights is the optimizer state and two
//! autocorrelation buffers. [`conv_similarity`] exposes the same kernels to candle's autograd as a
//! custom op, for using L_CS as a regularizer on CPU.

mod kernels;
mod op;

use std::fmt::Debug;
use std::ops::{AddAssign, MulAssign, SubAssign};

use rayon::prelude::*;

use kernels::{FilterJob, Isa, IterationInputs, LayerShape, Scratch};
pub use op::conv_similarity;

use super::{KernelGeometry, ShiftTable, Variant};
use crate::optim::{AdamFactors, OptimizerConfig};

/// The element types the fused engine computes in.
pub trait Real:
    num_traits::Float + AddAssign + SubAssign + MulAssign + Send + Sync + Debug + 'static
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

/// A layer prepared for the engine: its shape tables and its weights in `[S][P][C]` layout.
struct Layer<T> {
    shape: LayerShape,
    weights: Vec<T>,
    isa: Isa,
}

impl<T: Real> Layer<T> {
    /// Copies a PyTorch-layout (`[S][C][P]`) weight into the engine's layout.
    fn new(weight: &[T], geometry: &KernelGeometry, variant: Variant) -> Self {
        assert_eq!(
            weight.len(),
            geometry.len(),
            "weight length does not match {geometry:?}"
        );
        let shifts: ShiftTable = geometry.shifts();
        let (c, p) = (geometry.channels, geometry.positions());
        let per_channel = variant.same_channel_only();
        let shape = LayerShape {
            filters: geometry.filters,
            channels: c,
            positions: p,
            record_len: if per_channel {
                shifts.half_len() * c
            } else {
                shifts.half_len()
            },
            pairs: shifts.pairs().to_vec(),
            shift_of: shift_of(&shifts, p),
            per_channel,
            adjacent: variant.adjacent_only(),
        };
        let mut weights = vec![T::zero(); weight.len()];
        for (src, dst) in weight
            .chunks_exact(c * p)
            .zip(weights.chunks_exact_mut(c * p))
        {
            for ch in 0..c {
                for pos in 0..p {
                    dst[pos * c + ch] = src[ch * p + pos];
                }
            }
        }
        Self {
            shape,
            weights,
            isa: Isa::detect(),
        }
    }

    /// Writes the weights back in PyTorch layout.
    fn write_back(&self, weight: &mut [T]) {
        self.transpose_out(&self.weights, weight)
    }

    fn transpose_out(&self, src: &[T], dst: &mut [T]) {
        let (c, p) = (self.shape.channels, self.shape.positions);
        for (src, dst) in src.chunks_exact(c * p).zip(dst.chunks_exact_mut(c * p)) {
            for ch in 0..c {
                for pos in 0..p {
                    dst[ch * p + pos] = src[pos * c + ch];
                }
            }
        }
    }

    fn filter_len(&self) -> usize {
        self.shape.channels * self.shape.positions
    }

    /// `R_i` for every filter of the current weights.
    fn autocorrelate_all(&self, records: &mut [T]) {
        let (isa, shape) = (self.isa, &self.shape);
        self.weights
            .par_chunks(self.filter_len())
            .zip(records.par_chunks_mut(shape.record_len))
            .for_each(|(rows, record)| isa.autocorrelate(shape, rows, record));
    }

    /// `T = sum_i R_i`, for all-pairs variants.
    fn sum_records(&self, records: &[T], total: &mut [T]) {
        if self.shape.adjacent {
            return;
        }
        let len = self.shape.record_len;
        const BLOCK: usize = 4096;
        total
            .par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(b, out)| {
                out.fill(T::zero());
                for record in records.chunks_exact(len) {
                    for (o, &r) in out.iter_mut().zip(&record[b * BLOCK..]) {
                        *o += r;
                    }
                }
            });
    }

    /// L_CS from the autocorrelations (and their sum), accumulated in f64.
    fn loss(&self, records: &[T], total: &[T]) -> f64 {
        let shape = &self.shape;
        let lanes = if shape.per_channel { shape.channels } else { 1 };
        let weighted_dot = |a: &[T], b: &[T]| -> f64 {
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(k, (&x, &y))| ShiftTable::weight(k / lanes) * x.widen() * y.widen())
                .sum()
        };
        let len = shape.record_len;
        if shape.adjacent {
            (1..shape.filters)
                .into_par_iter()
                .map(|i| {
                    weighted_dot(
                        &records[(i - 1) * len..i * len],
                        &records[i * len..(i + 1) * len],
                    )
                })
                .sum()
        } else {
            let own: f64 = records.par_chunks(len).map(|r| weighted_dot(r, r)).sum();
            0.5 * (weighted_dot(total, total) - own)
        }
    }

    /// L_CS and its gradient in the engine's layout.
    fn loss_and_gradient(&self) -> (f64, Vec<T>) {
        let shape = &self.shape;
        let (s, len) = (shape.filters, shape.record_len);
        let mut records = vec![T::zero(); s * len];
        let mut total = vec![T::zero(); len];
        self.autocorrelate_all(&mut records);
        self.sum_records(&records, &mut total);
        let loss = self.loss(&records, &total);
        let mut gradient = vec![T::zero(); self.weights.len()];
        let two = T::one() + T::one();
        let isa = self.isa;
        self.weights
            .par_chunks(self.filter_len())
            .zip(gradient.par_chunks_mut(self.filter_len()))
            .enumerate()
            .for_each_init(
                || Scratch::new(shape),
                |scratch, (i, (rows, out))| {
                    let g = &mut scratch.gradient_weights;
                    for (k, g) in g.iter_mut().enumerate() {
                        let r = |j: usize| records[j * len + k];
                        *g = two
                            * if shape.adjacent {
                                (if i > 0 { r(i - 1) } else { T::zero() })
                                    + (if i + 1 < s { r(i + 1) } else { T::zero() })
                            } else {
                                total[k] - r(i)
                            };
                    }
                    isa.gradient(shape, rows, g, &mut scratch.pair_weights, out);
                },
            );
        (loss, gradient)
    }
}

/// The half-shift index of every ordered position pair, `[P][P]`.
fn shift_of(shifts: &ShiftTable, positions: usize) -> Vec<u32> {
    let mut table = vec![0; positions * positions];
    for pair in shifts.pairs() {
        let (p, q) = (pair.p as usize, pair.q as usize);
        table[p * positions + q] = pair.shift;
        table[q * positions + p] = pair.shift;
    }
    table
}

/// L_CS of a PyTorch-layout weight, in f64.
pub fn loss<T: Real>(weight: &[T], geometry: &KernelGeometry, variant: Variant) -> f64 {
    let layer = Layer::new(weight, geometry, variant);
    let len = layer.shape.record_len;
    let mut records = vec![T::zero(); geometry.filters * len];
    let mut total = vec![T::zero(); len];
    layer.autocorrelate_all(&mut records);
    layer.sum_records(&records, &mut total);
    layer.loss(&records, &total)
}

/// L_CS and its gradient (PyTorch layout) of a PyTorch-layout weight.
pub fn loss_and_gradient<T: Real>(
    weight: &[T],
    geometry: &KernelGeometry,
    variant: Variant,
) -> (f64, Vec<T>) {
    let layer = Layer::new(weight, geometry, variant);
    let (loss, gradient) = layer.loss_and_gradient();
    let mut out = vec![T::zero(); gradient.len()];
    layer.transpose_out(&gradient, &mut out);
    (loss, out)
}

/// One layer's iterations in the engine: the weights, the optimizer state and the
/// autocorrelations of the current weights. The loop around it (progress, stopping, divergence)
/// is `crate::minimize::fused`'s.
pub struct Iterations<T> {
    layer: Layer<T>,
    optimizer: OptimizerConfig,
    states: Vec<Vec<T>>,
    norms: Option<Vec<f64>>,
    records: Vec<T>,
    next_records: Vec<T>,
    total: Vec<T>,
}

impl<T: Real> Iterations<T> {
    /// Prepares a PyTorch-layout weight. With `keep_norm`, every step rescales each filter to its
    /// starting norm.
    pub fn new(
        weight: &[T],
        geometry: &KernelGeometry,
        variant: Variant,
        optimizer: &OptimizerConfig,
        keep_norm: bool,
    ) -> Self {
        let layer = Layer::new(weight, geometry, variant);
        let (s, len, filter_len) = (geometry.filters, layer.shape.record_len, layer.filter_len());
        let slots = Update::<T>::slots(optimizer);
        let norms = keep_norm.then(|| {
            layer
                .weights
                .chunks_exact(filter_len)
                .map(|f| kernels::sum_of_squares(f).sqrt())
                .collect()
        });
        let mut records = vec![T::zero(); s * len];
        layer.autocorrelate_all(&mut records);
        Self {
            states: vec![vec![T::zero(); slots * filter_len]; s],
            norms,
            next_records: vec![T::zero(); s * len],
            total: vec![T::zero(); len],
            records,
            optimizer: *optimizer,
            layer,
        }
    }

    /// L_CS of the current weights.
    pub fn loss(&mut self) -> f64 {
        self.layer.sum_records(&self.records, &mut self.total);
        self.layer.loss(&self.records, &self.total)
    }

    /// Step `step` (from 1) of the optimizer, fused with the next autocorrelations. Call after
    /// [`Iterations::loss`], which brings the records' sum up to date.
    pub fn step(&mut self, step: usize) {
        let layer = &mut self.layer;
        let filter_len = layer.filter_len();
        let len = layer.shape.record_len;
        let inputs = IterationInputs {
            shape: &layer.shape,
            records: &self.records,
            total: &self.total,
            update: Update::for_step(&self.optimizer, step),
            norms: self.norms.as_deref(),
        };
        let isa = layer.isa;
        layer
            .weights
            .par_chunks_mut(filter_len)
            .zip(self.states.par_iter_mut())
            .zip(self.next_records.par_chunks_mut(len))
            .enumerate()
            .for_each_init(
                || Scratch::new(&layer.shape),
                |scratch, (index, ((weights, state), next_record))| {
                    let job = FilterJob {
                        index,
                        weights,
                        state,
                        next_record,
                        scratch,
                    };
                    isa.step_filter(&inputs, job);
                },
            );
        std::mem::swap(&mut self.records, &mut self.next_records);
    }

    /// True when every weight is finite.
    pub fn finite(&self) -> bool {
        self.layer.weights.iter().all(|w| w.is_finite())
    }

    /// Writes the weights back in PyTorch layout.
    pub fn write_back(&self, weight: &mut [T]) {
        self.layer.write_back(weight)
    }
}
