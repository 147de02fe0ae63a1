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
    /// lane; four `q` at a time so that each `w[p][c]` load feeds four independent sums (one at
    /// a time for one-channel units, [`Blocked::single_channel_records`]).
    #[inline(always)]
    fn records(&self, unit: &[T], records: &mut [T], scratch: &mut BlockScratch<T>) {
        let t = &self.0;
        let acc = &mut scratch.records;
        acc.fill(T::zero());
        if t.channels == 1 {
            self.single_channel_records(unit, acc);
        } else {
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
        }
        to_filters(acc, self.record_len(), records);
    }

    /// `grad[p][c] = sum_q G[shift(p, q)] w[q][c]`, lane by lane, eight positions at a time so
    /// that each `w[q][c]` load feeds eight independent sums held in registers.
    #[inline(always)]
    fn gradient(&self, unit: &[T], g: &[T], gradient: &mut [T], scratch: &mut BlockScratch<T>) {
        let t = &self.0;
        let len = self.record_len();
        let gl = &mut scratch.gradient_weights;
        to_lanes(g, len, gl);
        if t.per_channel && t.channels > 1 {
            self.gradient_tiles::<T, true>(unit, gl, gradient);
        } else {
            self.gradient_tiles::<T, false>(unit, gl, gradient);
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

/// Lane-major `[len][LANES]` into filter-major `[n][len]` (`n = filters.len() / len`), through
/// square tiles held in registers: element by element, the strided side made the two copies a
/// fifth of a depthwise layer's step.
#[inline(always)]
fn to_filters<T: Real>(lanes_major: &[T], len: usize, filters: &mut [T]) {
    let whole = len - len % LANES;
    for k in (0..whole).step_by(LANES) {
        let tile: [Lanes<T>; LANES] = std::array::from_fn(|j| *lanes(lanes_major, k + j));
        for (l, filter) in filters.chunks_exact_mut(len).enumerate() {
            let column: Lanes<T> = std::array::from_fn(|j| tile[j][l]);
            filter[k..k + LANES].copy_from_slice(&column);
        }
    }
    for (l, filter) in filters.chunks_exact_mut(len).enumerate() {
        for (k, f) in filter.iter_mut().enumerate().skip(whole) {
            *f = lanes_major[k * LANES + l];
        }
    }
}

/// Filter-major `[n][len]` into lane-major `[len][LANES]`, lanes past `n` zero.
#[inline(always)]
fn to_lanes<T: Real>(filters: &[T], len: usize, lanes_major: &mut [T]) {
    let n = filters.len() / len;
    let whole = len - len % LANES;
    for k in (0..whole).step_by(LANES) {
        let mut tile = [[T::zero(); LANES]; LANES];
        // Indexed, not zipped with `filters.chunks_exact(len)`: that form compiled to gathers.
        for (l, row) in tile.iter_mut().enumerate().take(n) {
            *row = filters[l * len + k..l * len + k + LANES]
                .try_into()
                .expect("a tile row");
        }
        for (j, index) in (k..k + LANES).enumerate() {
            *lanes_mut(lanes_major, index) = std::array::from_fn(|l| tile[l][j]);
        }
    }
    for k in whole..len {
        let mut out = [T::zero(); LANES];
        for (o, filter) in out.iter_mut().zip(filters.chunks_exact(len)) {
            *o = filter[k];
        }
        *lanes_mut(lanes_major, k) = out;
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

    /// The records of a one-channel unit (depthwise convs): the tiles' loop over channels would
    /// cost several times the one product it does per pair. The sums run in the same order.
    #[inline(always)]
    fn single_channel_records<T: Real>(&self, unit: &[T], acc: &mut [T]) {
        let positions = self.0.positions;
        for p in 0..positions {
            let a = *lanes(unit, p);
            let shifts = &self.0.shift_of[p * positions + p..(p + 1) * positions];
            let (later, _) = unit[p * LANES..positions * LANES].as_chunks::<LANES>();
            for (&h, b) in shifts.iter().zip(later) {
                let mut out = *lanes(acc, h as usize);
                for l in 0..LANES {
                    out[l] += a[l] * b[l];
                }
                *lanes_mut(acc, h as usize) = out;
            }
        }
    }

    /// Per-channel records are `[H][C]`: the weight of channel `ch` at shift `h` is `h*C + ch`.
    /// With one channel both layouts are `[H]`, which the caller passes as `PER_CHANNEL = false`.
    #[inline(always)]
    fn gradient_tiles<T: Real, const PER_CHANNEL: bool>(
        &self,
        unit: &[T],
        gl: &[T],
        gradient: &mut [T],
    ) {
        let positions = self.0.positions;
        for ch in 0..self.0.channels {
            let mut p = 0;
            while p + 8 <= positions {
                self.gradient_tile::<T, 8, PER_CHANNEL>(unit, gl, p, ch, gradient);
                p += 8;
            }
            while p + 4 <= positions {
                self.gradient_tile::<T, 4, PER_CHANNEL>(unit, gl, p, ch, gradient);
                p += 4;
            }
            while p < positions {
                self.gradient_tile::<T, 1, PER_CHANNEL>(unit, gl, p, ch, gradient);
                p += 1;
            }
        }
    }

    /// The table is symmetric, so the shifts of rows `p..p + TP` at column `q` are one
    /// contiguous run of row `q`: one bounds check per `q` instead of one per pair.
    #[inline(always)]
    fn gradient_tile<T: Real, const TP: usize, const PER_CHANNEL: bool>(
        &self,
        unit: &[T],
        gl: &[T],
        p: usize,
        ch: usize,
        gradient: &mut [T],
    ) {
        let t = &self.0;
        let (c, positions) = (t.channels, t.positions);
        let (gl, _) = gl.as_chunks::<LANES>();
        let mut sums = [[T::zero(); LANES]; TP];
        for q in 0..positions {
            let b = *lanes(unit, q * c + ch);
            let shifts: &[u32; TP] = t.shift_of[q * positions + p..q * positions + p + TP]
                .try_into()
                .expect("TP shifts");
            for (sum, &h) in sums.iter_mut().zip(shifts) {
                let index = if PER_CHANNEL {
                    h as usize * c + ch
                } else {
                    h as usize
                };
                let gv = gl[index];
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
