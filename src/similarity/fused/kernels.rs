//! Per-filter kernels of the fused engine, and the choice of instruction set they are compiled for.
//!
//! A filter is stored position-major, `[P][C]`: row `p` holds kernel position `p` of every input
//! channel, so every inner loop is a dot product, an axpy or an elementwise product of rows of
//! length `C`, which the compiler vectorizes. The bodies are generic and `#[inline(always)]`; thin
//! wrappers compile them once per instruction set (AVX-512, AVX2+FMA, baseline) and [`Isa`] picks
//! one at run time, so the binary stays portable.

use super::{Real, Update};
use crate::similarity::PositionPair;

/// Elements per accumulator block: independent lanes the compiler maps onto SIMD registers.
const LANES: usize = 16;

/// What a layer's kernels need to know, shared by all filters.
pub(super) struct LayerShape {
    pub filters: usize,
    pub channels: usize,
    pub positions: usize,
    pub pairs: Vec<PositionPair>,
    /// Half-shift index of every ordered position pair `(p, q)`, `[P][P]`.
    pub shift_of: Vec<u32>,
    /// Same-channel variants keep one autocorrelation per channel: `[H][C]` instead of `[H]`.
    pub per_channel: bool,
    pub adjacent: bool,
    /// Length of one filter's autocorrelation record (`H` or `H * C`).
    pub record_len: usize,
}

/// Read-only inputs of one iteration.
pub(super) struct IterationInputs<'a, T> {
    pub shape: &'a LayerShape,
    /// Autocorrelations of the current weights, `[S][record_len]`.
    pub records: &'a [T],
    /// `sum_i records[i]` (all-pairs variants only).
    pub total: &'a [T],
    pub update: Update<T>,
    /// Starting norm of every filter when norms are preserved.
    pub norms: Option<&'a [f64]>,
}

/// One filter's mutable state in one iteration.
pub(super) struct FilterJob<'a, T> {
    pub index: usize,
    pub weights: &'a mut [T],
    pub state: &'a mut [T],
    pub next_record: &'a mut [T],
    pub scratch: &'a mut Scratch<T>,
}

/// Per-thread scratch: the filter's gradient, its gradient weights `G_i`, and `G_i` spread over
/// position pairs.
pub(super) struct Scratch<T> {
    pub gradient: Vec<T>,
    pub gradient_weights: Vec<T>,
    pub pair_weights: Vec<T>,
}

impl<T: Real> Scratch<T> {
    pub fn new(shape: &LayerShape) -> Self {
        Self {
            gradient: vec![T::zero(); shape.positions * shape.channels],
            gradient_weights: vec![T::zero(); shape.record_len],
            pair_weights: vec![T::zero(); shape.positions * shape.positions],
        }
    }
}

/// The instruction set the kernels run with. Only [`Isa::detect`] makes one, so holding an
/// `Isa` proves the CPU has its features: that is what makes the dispatch below sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Isa(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                return Isa(Kind::Avx512);
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa(Kind::Avx2);
            }
        }
        Isa(Kind::Baseline)
    }

    /// One optimizer step of one filter, then the autocorrelation of its new weights.
    pub fn step_filter<T: Real>(self, inputs: &IterationInputs<T>, job: FilterJob<T>) {
        match self.0 {
            Kind::Baseline => step_filter(inputs, job),
            // SAFETY: detect() chose this variant only after checking the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::step_filter(inputs, job) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::step_filter(inputs, job) },
        }
    }

    /// The autocorrelation record of one filter.
    pub fn autocorrelate<T: Real>(self, shape: &LayerShape, rows: &[T], record: &mut [T]) {
        match self.0 {
            Kind::Baseline => autocorrelate(shape, rows, record),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::autocorrelate(shape, rows, record) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::autocorrelate(shape, rows, record) },
        }
    }

    /// The L_CS gradient of one filter from its (already doubled) gradient weights.
    /// `pair_weights` is `[P][P]` scratch.
    pub fn gradient<T: Real>(
        self,
        shape: &LayerShape,
        rows: &[T],
        weights: &[T],
        pair_weights: &mut [T],
        gradient: &mut [T],
    ) {
        let pw = pair_weights;
        match self.0 {
            Kind::Baseline => gradient_of(shape, rows, weights, pw, gradient),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::gradient_of(shape, rows, weights, pw, gradient) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::gradient_of(shape, rows, weights, pw, gradient) },
        }
    }
}

macro_rules! compiled_for {
    ($module:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use super::*;

            #[target_feature(enable = $features)]
            pub(super) unsafe fn step_filter<T: Real>(
                inputs: &IterationInputs<T>,
                job: FilterJob<T>,
            ) {
                super::step_filter(inputs, job)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn autocorrelate<T: Real>(
                shape: &LayerShape,
                rows: &[T],
                record: &mut [T],
            ) {
                super::autocorrelate(shape, rows, record)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn gradient_of<T: Real>(
                shape: &LayerShape,
                rows: &[T],
                weights: &[T],
                pair_weights: &mut [T],
                gradient: &mut [T],
            ) {
                super::gradient_of(shape, rows, weights, pair_weights, gradient)
            }
        }
    };
}

compiled_for!(avx2, "avx2,fma");
compiled_for!(avx512, "avx512f,avx512vl,avx2,fma");

#[inline(always)]
fn step_filter<T: Real>(inputs: &IterationInputs<T>, job: FilterJob<T>) {
    let shape = inputs.shape;
    let FilterJob {
        index,
        weights,
        state,
        next_record,
        scratch,
    } = job;
    let (len, i) = (shape.record_len, index);
    let g = &mut scratch.gradient_weights;
    // G_i = dL/dR_i, doubled here once instead of in every gradient term.
    let two = T::one() + T::one();
    if shape.adjacent {
        g.fill(T::zero());
        if i > 0 {
            add_assign(g, &inputs.records[(i - 1) * len..i * len]);
        }
        if i + 1 < shape.filters {
            add_assign(g, &inputs.records[(i + 1) * len..(i + 2) * len]);
        }
        scale(g, two);
    } else {
        let own = &inputs.records[i * len..(i + 1) * len];
        for ((g, &t), &r) in g.iter_mut().zip(inputs.total).zip(own) {
            *g = two * (t - r);
        }
    }
    gradient_of(
        shape,
        weights,
        g,
        &mut scratch.pair_weights,
        &mut scratch.gradient,
    );
    inputs.update.apply(weights, state, &scratch.gradient);
    if let Some(norms) = inputs.norms {
        let norm = sum_of_squares(weights).sqrt();
        if norm > 0.0 {
            scale(weights, T::narrow(norms[i] / norm));
        }
    }
    autocorrelate(shape, weights, next_record);
}

/// `R[h] = sum over pairs (p, q) with shift h of <row_p, row_q>` (or the elementwise product).
#[inline(always)]
fn autocorrelate<T: Real>(shape: &LayerShape, rows: &[T], record: &mut [T]) {
    let c = shape.channels;
    record.fill(T::zero());
    for pair in &shape.pairs {
        let (p, q, h) = (pair.p as usize, pair.q as usize, pair.shift as usize);
        let (a, b) = (&rows[p * c..(p + 1) * c], &rows[q * c..(q + 1) * c]);
        if shape.per_channel {
            mul_add_assign(&mut record[h * c..(h + 1) * c], a, b);
        } else {
            record[h] += dot(a, b);
        }
    }
}

/// `grad_p = sum_q G[shift(p, q)] row_q`.
///
/// With one weight per shift (all-channel variants) the gradient is computed a block of
/// [`LANES`] channels at a time: each output block is accumulated in registers over all `q` and
/// stored once, instead of being read and written once per position pair.
#[inline(always)]
fn gradient_of<T: Real>(
    shape: &LayerShape,
    rows: &[T],
    weights: &[T],
    pair_weights: &mut [T],
    gradient: &mut [T],
) {
    let (c, positions) = (shape.channels, shape.positions);
    if shape.per_channel {
        gradient.fill(T::zero());
        for pair in &shape.pairs {
            let (p, q, h) = (pair.p as usize, pair.q as usize, pair.shift as usize);
            let (row_p, row_q) = (&rows[p * c..(p + 1) * c], &rows[q * c..(q + 1) * c]);
            let g = &weights[h * c..(h + 1) * c];
            mul_add_assign(&mut gradient[p * c..(p + 1) * c], g, row_q);
            if p != q {
                mul_add_assign(&mut gradient[q * c..(q + 1) * c], g, row_p);
            }
        }
        return;
    }
    for (w, &h) in pair_weights.iter_mut().zip(&shape.shift_of) {
        *w = weights[h as usize];
    }
    let full = c - c % LANES;
    for start in (0..full).step_by(LANES) {
        // Four output positions at a time: four independent accumulator chains share each load.
        let mut p = 0;
        while p + 4 <= positions {
            let mut acc = [[T::zero(); LANES]; 4];
            for q in 0..positions {
                let row = &rows[q * c + start..q * c + start + LANES];
                for (k, acc) in acc.iter_mut().enumerate() {
                    let h = pair_weights[(p + k) * positions + q];
                    for l in 0..LANES {
                        acc[l] += h * row[l];
                    }
                }
            }
            for (k, acc) in acc.iter().enumerate() {
                gradient[(p + k) * c + start..(p + k) * c + start + LANES].copy_from_slice(acc);
            }
            p += 4;
        }
        for p in p..positions {
            let mut acc = [T::zero(); LANES];
            for (q, &h) in pair_weights[p * positions..(p + 1) * positions]
                .iter()
                .enumerate()
            {
                let row = &rows[q * c + start..q * c + start + LANES];
                for l in 0..LANES {
                    acc[l] += h * row[l];
                }
            }
            gradient[p * c + start..p * c + start + LANES].copy_from_slice(&acc);
        }
    }
    for ch in full..c {
        for p in 0..positions {
            let mut acc = T::zero();
            for (q, &h) in pair_weights[p * positions..(p + 1) * positions]
                .iter()
                .enumerate()
            {
                acc += h * rows[q * c + ch];
            }
            gradient[p * c + ch] = acc;
        }
    }
}

#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = T::zero();
    for (&x, &y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().fold(tail, |s, &x| s + x)
}

#[inline(always)]
fn mul_add_assign<T: Real>(y: &mut [T], a: &[T], b: &[T]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y += a * b;
    }
}

#[inline(always)]
fn add_assign<T: Real>(y: &mut [T], x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

#[inline(always)]
fn scale<T: Real>(y: &mut [T], alpha: T) {
    for y in y.iter_mut() {
        *y *= alpha;
    }
}

/// Sum of squares accumulated in f64 (norms must not drift with the filter length).
#[inline(always)]
pub(super) fn sum_of_squares<T: Real>(x: &[T]) -> f64 {
    x.iter()
        .map(|&v| {
            let v = v.widen();
            v * v
        })
        .sum()
}
