//! The filter-blocked direct kernel: [`LANES`] filters side by side in SIMD lanes, one unit
//! stored `[P][C][LANES]`.
//!
//! Every arithmetic operation acts on the same element of `LANES` different filters, so the
//! vectors are full whatever the channel count: a depthwise `[C, 1, k, k]` weight, a grouped conv
//! with four channels per group or a three-channel stem runs at the speed of a wide layer. The
//! cost per filter is the same `O(C P²)` as the channel-vectorized kernel's. A last block with
//! fewer filters is padded with zero filters, which have zero records and zero gradients and stay
//! zero under every optimizer.

use super::kernels::Kernel;
use super::{DirectTables, Real};

/// Filters per block: one AVX-512 register of f32 (two of f64).
pub(super) const LANES: usize = 16;

type Lanes<T> = [T; LANES];

pub(super) struct Blocked(pub DirectTables);

/// Per-thread scratch: records and gradient weights of one block, lane-major (`[record][LANES]`).
pub(super) struct BlockScratch<T> {
    records: Vec<T>,
    gradient_weights: Vec<T>,
}

impl Blocked {
    fn record_len(&self) -> usize {
        self.0.half
            * if self.0.per_channel {
                self.0.channels
            } else {
                1
            }
    }
}

#[inline(always)]
fn lanes<T>(x: &[T], index: usize) -> &Lanes<T> {
    x[index * LANES..(index + 1) * LANES]
        .try_into()
        .expect("a whole block of lanes")
}

#[inline(always)]
fn lanes_mut<T>(x: &mut [T], index: usize) -> &mut Lanes<T> {
    (&mut x[index * LANES..(index + 1) * LANES])
        .try_into()
        .expect("a whole block of lanes")
}

impl<T: Real> Kernel<T> for Blocked {
    type Scratch = BlockScratch<T>;

    fn unit_filters(&self) -> usize {
        LANES
    }

    fn unit_len(&self) -> usize {
        self.0.positions * self.0.channels * LANES
    }

    fn scratch(&self) -> BlockScratch<T> {
        let len = self.record_len() * LANES;
        BlockScratch {
            records: vec![T::zero(); len],
            gradient_weights: vec![T::zero(); len],
        }
    }

    fn pack(&self, filters: &[T], unit: &mut [T]) {
        let (c, p) = (self.0.channels, self.0.positions);
        unit.fill(T::zero());
        for (l, filter) in filters.chunks_exact(c * p).enumerate() {
            for ch in 0..c {
                for pos in 0..p {
                    unit[(pos * c + ch) * LANES + l] = filter[ch * p + pos];
                }
            }
        }
    }

    fn unpack(&self, unit: &[T], filters: &mut [T]) {
        let (c, p) = (self.0.channels, self.0.positions);
        for (l, filter) in filters.chunks_exact_mut(c * p).enumerate() {
            for ch in 0..c {
                for pos in 0..p {
                    filter[ch * p + pos] = unit[(pos * c + ch) * LANES + l];
                }
            }
        }
    }

    /// `R[h] = sum over pairs (p, q) with shift h, over channels, of w[p][c] w[q][c]`, lane by
    /// lane; four `q` at a time so that each `w[p][c]` load feeds four independent sums.
    #[inline(always)]
    fn records(&self, unit: &[T], records: &mut [T], scratch: &mut BlockScratch<T>) {
        let t = &self.0;
        let acc = &mut scratch.records;
        acc.fill(T::zero());
        for p in 0..t.positions {
            let mut q = p;
            while q + 4 <= t.positions {
                self.record_tile::<T, 4>(unit, p, q, acc);
                q += 4;
            }
            while q < t.positions {
                self.record_tile::<T, 1>(unit, p, q, acc);
                q += 1;
            }
        }
        let len = self.record_len();
        for (l, record) in records.chunks_exact_mut(len).enumerate() {
            for (k, r) in record.iter_mut().enumerate() {
                *r = acc[k * LANES + l];
            }
        }
    }

    /// `grad[p][c] = sum_q G[shift(p, q)] w[q][c]`, lane by lane, eight positions at a time so
    /// that each `w[q][c]` load feeds eight independent sums held in registers.
    #[inline(always)]
    fn gradient(&self, unit: &[T], g: &[T], gradient: &mut [T], scratch: &mut BlockScratch<T>) {
        let t = &self.0;
        let len = self.record_len();
        let gl = &mut scratch.gradient_weights;
        gl.fill(T::zero());
        for (l, record) in g.chunks_exact(len).enumerate() {
            for (k, &v) in record.iter().enumerate() {
                gl[k * LANES + l] = v;
            }
        }
        for ch in 0..t.channels {
            let mut p = 0;
            while p + 8 <= t.positions {
                self.gradient_tile::<T, 8>(unit, gl, p, ch, gradient);
                p += 8;
            }
            while p + 4 <= t.positions {
                self.gradient_tile::<T, 4>(unit, gl, p, ch, gradient);
                p += 4;
            }
            while p < t.positions {
                self.gradient_tile::<T, 1>(unit, gl, p, ch, gradient);
                p += 1;
            }
        }
    }

    fn sums_of_squares(&self, unit: &[T], sums: &mut [f64]) {
        sums.fill(0.0);
        for block in unit.chunks_exact(LANES) {
            for (s, &w) in sums.iter_mut().zip(block) {
                let w = w.widen();
                *s += w * w;
            }
        }
    }

    fn scale(&self, unit: &mut [T], factors: &[T]) {
        for block in unit.chunks_exact_mut(LANES) {
            for (w, &f) in block.iter_mut().zip(factors) {
                *w *= f;
            }
        }
    }
}

// The tiles copy lanes into locals and write them back whole: stored through the scratch slice
// element by element, LLVM cannot prove the stores leave the tables alone and does not vectorize.
impl Blocked {
    #[inline(always)]
    fn record_tile<T: Real, const TQ: usize>(&self, unit: &[T], p: usize, q: usize, acc: &mut [T]) {
        let t = &self.0;
        let c = t.channels;
        let shifts: [u32; TQ] = t.shift_of[p * t.positions + q..p * t.positions + q + TQ]
            .try_into()
            .expect("TQ shifts");
        if t.per_channel {
            for ch in 0..c {
                let a = *lanes(unit, p * c + ch);
                for (j, &h) in shifts.iter().enumerate() {
                    let b = *lanes(unit, (q + j) * c + ch);
                    let index = h as usize * c + ch;
                    let mut out = *lanes(acc, index);
                    for l in 0..LANES {
                        out[l] += a[l] * b[l];
                    }
                    *lanes_mut(acc, index) = out;
                }
            }
            return;
        }
        let mut sums = [[T::zero(); LANES]; TQ];
        for ch in 0..c {
            let a = *lanes(unit, p * c + ch);
            for (j, sum) in sums.iter_mut().enumerate() {
                let b = *lanes(unit, (q + j) * c + ch);
                for l in 0..LANES {
                    sum[l] += a[l] * b[l];
                }
            }
        }
        for (sum, &h) in sums.iter().zip(&shifts) {
            let mut out = *lanes(acc, h as usize);
            for l in 0..LANES {
                out[l] += sum[l];
            }
            *lanes_mut(acc, h as usize) = out;
        }
    }

    #[inline(always)]
    fn gradient_tile<T: Real, const TP: usize>(
        &self,
        unit: &[T],
        gl: &[T],
        p: usize,
        ch: usize,
        gradient: &mut [T],
    ) {
        let t = &self.0;
        let (c, positions) = (t.channels, t.positions);
        let rows = &t.shift_of[p * positions..(p + TP) * positions];
        // Per-channel records are `[H][C]`: the weight of channel `ch` at shift `h` is `h*C + ch`.
        let (stride, offset) = if t.per_channel { (c, ch) } else { (1, 0) };
        let mut sums = [[T::zero(); LANES]; TP];
        for q in 0..positions {
            let b = *lanes(unit, q * c + ch);
            for (j, sum) in sums.iter_mut().enumerate() {
                let h = rows[j * positions + q] as usize;
                let gv = *lanes(gl, h * stride + offset);
                for l in 0..LANES {
                    sum[l] += gv[l] * b[l];
                }
            }
        }
        for (j, sum) in sums.iter().enumerate() {
            *lanes_mut(gradient, (p + j) * c + ch) = *sum;
        }
    }
}
