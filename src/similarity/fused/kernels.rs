//! What every path of the fused engine shares: the [`Kernel`] a path implements, one optimizer
//! step of one unit of filters built on it, and the choice of instruction set the kernels are
//! compiled for.
//!
//! A kernel's bodies are generic and `#[inline(always)]`; thin wrappers compile them once per
//! instruction set (AVX-512, AVX2+FMA, baseline) and [`Isa`] picks one at run time, so the binary
//! stays portable.

use super::records::RecordSpace;
use super::{Real, Update};

/// One way of laying out a layer's filters and computing, per unit of work (one filter, or a
/// block of filters side by side in SIMD lanes), their records (`R_i`: autocorrelations or power
/// spectra, canonical layout `[filter][record_len]`) and their L_CS gradients.
pub(super) trait Kernel<T: Real>: Send + Sync {
    type Scratch: Send;

    /// Filters per unit.
    fn unit_filters(&self) -> usize;
    /// Elements of one unit's weights in the kernel's layout, padding included.
    fn unit_len(&self) -> usize;
    fn scratch(&self) -> Self::Scratch;
    /// PyTorch-layout filters (`n <= unit_filters` of them, `[n][C][P]`) into one unit.
    fn pack(&self, filters: &[T], unit: &mut [T]);
    /// One unit back into PyTorch layout (`filters` holds the unit's real filters only).
    fn unpack(&self, unit: &[T], filters: &mut [T]);
    /// The records of the unit's filters (`records.len()` is `n * record_len`).
    fn records(&self, unit: &[T], records: &mut [T], scratch: &mut Self::Scratch);
    /// The gradient of the unit in its layout, from the doubled gradient weights `g`
    /// (`[n][record_len]`, canonical).
    fn gradient(&self, unit: &[T], g: &[T], gradient: &mut [T], scratch: &mut Self::Scratch);
    /// Sum of squares of each of the unit's filters, accumulated in f64.
    fn sums_of_squares(&self, unit: &[T], sums: &mut [f64]);
    /// Scales each of the unit's filters by its factor.
    fn scale(&self, unit: &mut [T], factors: &[T]);
}

/// Read-only inputs of one iteration.
pub(super) struct StepInputs<'a, T> {
    pub space: &'a RecordSpace,
    /// Records of the current weights, `[S][record_len]`.
    pub records: &'a [T],
    /// `sum_i records[i]` (all-pairs variants only).
    pub total: &'a [T],
    pub update: Update<T>,
    /// Starting norm of every filter when norms are preserved.
    pub norms: Option<&'a [f64]>,
}

/// One unit's mutable state in one iteration.
pub(super) struct UnitJob<'a, T, S> {
    /// Index of the unit's first filter.
    pub first: usize,
    pub weights: &'a mut [T],
    pub state: &'a mut [T],
    /// The unit's slice of the next records (its length says how many real filters it has).
    pub next_records: &'a mut [T],
    pub scratch: &'a mut Scratch<T, S>,
}

/// Per-thread scratch of one kernel.
pub(super) struct Scratch<T, S> {
    pub gradient_weights: Vec<T>,
    pub gradient: Vec<T>,
    sums: Vec<f64>,
    factors: Vec<T>,
    pub kernel: S,
}

impl<T: Real, S> Scratch<T, S> {
    pub fn new<K: Kernel<T, Scratch = S>>(kernel: &K, record_len: usize) -> Self {
        let n = kernel.unit_filters();
        Self {
            gradient_weights: vec![T::zero(); n * record_len],
            gradient: vec![T::zero(); kernel.unit_len()],
            sums: vec![0.0; n],
            factors: vec![T::one(); n],
            kernel: kernel.scratch(),
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

    /// One optimizer step of one unit, then the records of its new weights.
    pub fn step_unit<T: Real, K: Kernel<T>>(
        self,
        kernel: &K,
        inputs: &StepInputs<T>,
        job: UnitJob<T, K::Scratch>,
    ) {
        match self.0 {
            Kind::Baseline => step_unit(kernel, inputs, job),
            // SAFETY: detect() chose this variant only after checking the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::step_unit(kernel, inputs, job) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::step_unit(kernel, inputs, job) },
        }
    }

    /// The records of one unit.
    pub fn records<T: Real, K: Kernel<T>>(
        self,
        kernel: &K,
        unit: &[T],
        records: &mut [T],
        scratch: &mut K::Scratch,
    ) {
        match self.0 {
            Kind::Baseline => kernel.records(unit, records, scratch),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::records(kernel, unit, records, scratch) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::records(kernel, unit, records, scratch) },
        }
    }

    /// The gradient of one unit from its doubled gradient weights.
    pub fn gradient<T: Real, K: Kernel<T>>(
        self,
        kernel: &K,
        unit: &[T],
        g: &[T],
        gradient: &mut [T],
        scratch: &mut K::Scratch,
    ) {
        match self.0 {
            Kind::Baseline => kernel.gradient(unit, g, gradient, scratch),
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => unsafe { avx2::gradient(kernel, unit, g, gradient, scratch) },
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512::gradient(kernel, unit, g, gradient, scratch) },
        }
    }
}

macro_rules! compiled_for {
    ($module:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use super::*;

            #[target_feature(enable = $features)]
            pub(super) unsafe fn step_unit<T: Real, K: Kernel<T>>(
                kernel: &K,
                inputs: &StepInputs<T>,
                job: UnitJob<T, K::Scratch>,
            ) {
                super::step_unit(kernel, inputs, job)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn records<T: Real, K: Kernel<T>>(
                kernel: &K,
                unit: &[T],
                records: &mut [T],
                scratch: &mut K::Scratch,
            ) {
                kernel.records(unit, records, scratch)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn gradient<T: Real, K: Kernel<T>>(
                kernel: &K,
                unit: &[T],
                g: &[T],
                gradient: &mut [T],
                scratch: &mut K::Scratch,
            ) {
                kernel.gradient(unit, g, gradient, scratch)
            }
        }
    };
}

compiled_for!(avx2, "avx2,fma");
compiled_for!(avx512, "avx512f,avx512vl,avx2,fma");

#[inline(always)]
fn step_unit<T: Real, K: Kernel<T>>(
    kernel: &K,
    inputs: &StepInputs<T>,
    job: UnitJob<T, K::Scratch>,
) {
    let UnitJob {
        first,
        weights,
        state,
        next_records,
        scratch,
    } = job;
    let len = inputs.space.record_len;
    let n = next_records.len() / len;
    let g = &mut scratch.gradient_weights[..n * len];
    for (f, g) in g.chunks_exact_mut(len).enumerate() {
        inputs
            .space
            .gradient_weights(inputs.records, inputs.total, first + f, g);
    }
    kernel.gradient(weights, g, &mut scratch.gradient, &mut scratch.kernel);
    inputs.update.apply(weights, state, &scratch.gradient);
    if let Some(norms) = inputs.norms {
        let sums = &mut scratch.sums[..n];
        kernel.sums_of_squares(weights, sums);
        for (f, (factor, &sum)) in scratch.factors.iter_mut().zip(sums.iter()).enumerate() {
            // A zero filter stays zero rather than turning into NaN.
            *factor = if sum > 0.0 {
                T::narrow(norms[first + f] / sum.sqrt())
            } else {
                T::one()
            };
        }
        kernel.scale(weights, &scratch.factors[..n]);
    }
    kernel.records(weights, next_records, &mut scratch.kernel);
}

/// Sum of squares accumulated in f64 (norms must not drift with the filter length), over eight
/// interleaved partial sums: with one, every addition waits for the one before, and a step that
/// keeps norms spent more on its filters' norms than on Adam.
#[inline(always)]
pub(super) fn sum_of_squares<T: Real>(x: &[T]) -> f64 {
    let mut sums = [0.0f64; 8];
    let chunks = x.chunks_exact(sums.len());
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| v.widen() * v.widen())
        .sum();
    for chunk in chunks {
        for (sum, &v) in sums.iter_mut().zip(chunk) {
            let v = v.widen();
            *sum += v * v;
        }
    }
    sums.iter().sum::<f64>() + tail
}

#[inline(always)]
pub(super) fn scale<T: Real>(y: &mut [T], alpha: T) {
    for y in y.iter_mut() {
        *y *= alpha;
    }
}
