//! The FFT (Parseval) kernel: one filter per unit, in PyTorch layout `[C][P]`; the record of a
//! filter is its power spectrum instead of its autocorrelation.
//!
//! A kernel plane of 1 to 3 dimensions is embedded in one line with the strides of the grid
//! `prod(2k - 1)` (position `x` goes to `sum_d x_d stride_d`, `stride_d = prod_{e > d}(2k_e - 1)`).
//! With those strides every difference of two positions has its own offset, so the 1-D full
//! correlation of two embedded planes holds exactly the entries of their N-D full correlation,
//! and zeros elsewhere: the squared norms agree. Zero-padded to `N >= 2 L - 1` (`L` the embedded
//! length), circular correlation equals linear correlation, and Parseval gives
//!
//! ```text
//! ||a ⊛ b||² = (1/N) sum_f |A_f|² |B_f|²,
//! ```
//!
//! so everything the direct kernels do with autocorrelations `R_i` works with the power spectra
//! `P_i(f) = sum_c |A_ic(f)|²` over the `N/2 + 1` bins of a real FFT (bin weights in
//! `RecordSpace`), and the gradient of a plane is `(1/N) IFFT(G_i A_ic)` (docs/math.md).
//! Per plane it costs three real FFTs of length `N` per iteration (the spectrum of the current
//! weights for the gradient, the inverse, the spectrum of the new weights), `O(N log N)` against
//! the direct kernels' `O(P²)`.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::kernels::{scale, sum_of_squares, Kernel};
use super::Real;

pub(super) struct Spectral<T> {
    channels: usize,
    /// Offset of every kernel position in the embedded line.
    offsets: Vec<usize>,
    /// Bins of the real FFT, `N/2 + 1`.
    bins: usize,
    per_channel: bool,
    inverse_length: T,
    forward: Arc<dyn RealToComplex<T>>,
    inverse: Arc<dyn ComplexToReal<T>>,
}

/// Per-thread scratch: one real line, one spectrum and the FFTs' own scratch.
pub(super) struct SpectralScratch<T> {
    line: Vec<T>,
    spectrum: Vec<Complex<T>>,
    fft: Vec<Complex<T>>,
}

/// The embedding of a kernel box: each position's offset, and the FFT length.
pub(super) fn embedding(kernel: &[usize]) -> (Vec<usize>, usize) {
    let mut k = [1usize; 3];
    k[3 - kernel.len()..].copy_from_slice(kernel);
    let stride = [(2 * k[1] - 1) * (2 * k[2] - 1), 2 * k[2] - 1, 1];
    let mut offsets = Vec::with_capacity(k.iter().product());
    for a in 0..k[0] {
        for b in 0..k[1] {
            for c in 0..k[2] {
                offsets.push(a * stride[0] + b * stride[1] + c * stride[2]);
            }
        }
    }
    let embedded = offsets.last().expect("a kernel has a position") + 1;
    (offsets, fft_length(2 * embedded - 1))
}

/// The smallest even `2^a 3^b 5^c` (`a >= 1`) not below `n`: lengths the FFT does fastest.
fn fft_length(n: usize) -> usize {
    let smooth = |mut m: usize| {
        for f in [2, 3, 5] {
            while m.is_multiple_of(f) {
                m /= f;
            }
        }
        m == 1
    };
    (n.max(2)..)
        .find(|&m| m.is_multiple_of(2) && smooth(m))
        .expect("smooth numbers are unbounded")
}

impl<T: Real> Spectral<T> {
    pub fn new(channels: usize, kernel: &[usize], per_channel: bool) -> Self {
        let (offsets, length) = embedding(kernel);
        let mut planner = RealFftPlanner::<T>::new();
        Self {
            channels,
            offsets,
            bins: length / 2 + 1,
            per_channel,
            inverse_length: T::narrow(1.0 / length as f64),
            forward: planner.plan_fft_forward(length),
            inverse: planner.plan_fft_inverse(length),
        }
    }

    /// The FFT length `N`.
    pub fn length(&self) -> usize {
        self.forward.len()
    }

    /// Elements of one filter's record: `N/2 + 1` bins, or `C` times that for same-channel
    /// variants (`[C][bins]`).
    pub fn record_len(&self) -> usize {
        self.bins * if self.per_channel { self.channels } else { 1 }
    }

    /// The spectrum of one plane into `scratch.spectrum`.
    #[inline(always)]
    fn transform(&self, plane: &[T], scratch: &mut SpectralScratch<T>) {
        scratch.line.fill(T::zero());
        for (&x, &offset) in plane.iter().zip(&self.offsets) {
            scratch.line[offset] = x;
        }
        self.forward
            .process_with_scratch(&mut scratch.line, &mut scratch.spectrum, &mut scratch.fft)
            .expect("buffers sized by the plan");
    }
}

impl<T: Real> Kernel<T> for Spectral<T> {
    type Scratch = SpectralScratch<T>;

    fn unit_filters(&self) -> usize {
        1
    }

    fn unit_len(&self) -> usize {
        self.channels * self.offsets.len()
    }

    fn scratch(&self) -> SpectralScratch<T> {
        let fft = self
            .forward
            .get_scratch_len()
            .max(self.inverse.get_scratch_len());
        SpectralScratch {
            line: vec![T::zero(); self.length()],
            spectrum: vec![Complex::new(T::zero(), T::zero()); self.bins],
            fft: vec![Complex::new(T::zero(), T::zero()); fft],
        }
    }

    fn pack(&self, filter: &[T], unit: &mut [T]) {
        unit.copy_from_slice(filter);
    }

    fn unpack(&self, unit: &[T], filter: &mut [T]) {
        filter.copy_from_slice(unit);
    }

    #[inline(always)]
    fn records(&self, unit: &[T], record: &mut [T], scratch: &mut SpectralScratch<T>) {
        let p = self.offsets.len();
        // The record buffers are reused across steps: every channel adds into a zeroed record.
        record.fill(T::zero());
        for (ch, plane) in unit.chunks_exact(p).enumerate() {
            self.transform(plane, scratch);
            let out = if self.per_channel {
                &mut record[ch * self.bins..(ch + 1) * self.bins]
            } else {
                &mut record[..]
            };
            for (r, a) in out.iter_mut().zip(&scratch.spectrum) {
                *r += a.re * a.re + a.im * a.im;
            }
        }
    }

    #[inline(always)]
    fn gradient(&self, unit: &[T], g: &[T], gradient: &mut [T], scratch: &mut SpectralScratch<T>) {
        let p = self.offsets.len();
        for (ch, (plane, out)) in unit
            .chunks_exact(p)
            .zip(gradient.chunks_exact_mut(p))
            .enumerate()
        {
            self.transform(plane, scratch);
            let weights = if self.per_channel {
                &g[ch * self.bins..(ch + 1) * self.bins]
            } else {
                g
            };
            for (a, &w) in scratch.spectrum.iter_mut().zip(weights) {
                *a = *a * w;
            }
            // The spectrum of a real line: the first and last bins are real. Rounding cannot
            // change that (they are scaled by real weights), but the inverse checks it.
            let last = self.bins - 1;
            scratch.spectrum[0].im = T::zero();
            scratch.spectrum[last].im = T::zero();
            self.inverse
                .process_with_scratch(&mut scratch.spectrum, &mut scratch.line, &mut scratch.fft)
                .expect("buffers sized by the plan, real end bins");
            for (o, &offset) in out.iter_mut().zip(&self.offsets) {
                *o = scratch.line[offset] * self.inverse_length;
            }
        }
    }

    fn sums_of_squares(&self, unit: &[T], sums: &mut [f64]) {
        sums[0] = sum_of_squares(unit);
    }

    fn scale(&self, unit: &mut [T], factors: &[T]) {
        scale(unit, factors[0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_lengths_are_smooth_even_and_minimal() {
        assert_eq!(fft_length(1), 2);
        assert_eq!(fft_length(511), 512);
        assert_eq!(fft_length(13), 16);
        assert_eq!(fft_length(25), 30);
        assert_eq!(fft_length(1023), 1024);
    }

    #[test]
    fn embedded_differences_are_distinct() {
        for kernel in [
            vec![5],
            vec![3, 4],
            vec![2, 3, 2],
            vec![7, 1],
            vec![1, 1, 1],
        ] {
            let (offsets, length) = embedding(&kernel);
            let mut seen = std::collections::HashMap::new();
            let coords = |p: usize| {
                let mut k = [1usize; 3];
                k[3 - kernel.len()..].copy_from_slice(&kernel);
                [p / (k[1] * k[2]), (p / k[2]) % k[1], p % k[2]]
            };
            for (p, &a) in offsets.iter().enumerate() {
                for (q, &b) in offsets.iter().enumerate() {
                    let (x, y) = (coords(p), coords(q));
                    let delta: Vec<isize> = (0..3).map(|d| y[d] as isize - x[d] as isize).collect();
                    let offset = b as isize - a as isize;
                    assert_eq!(*seen.entry(offset).or_insert(delta.clone()), delta);
                }
            }
            assert!(length >= 2 * (offsets.last().unwrap() + 1) - 1);
        }
    }
}
