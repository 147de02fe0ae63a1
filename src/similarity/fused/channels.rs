//! The channel-vectorized direct kernel: one filter per unit, stored position-major, `[P][C]`.
//!
//! Row `p` holds kernel position `p` of every input channel, so every inner loop is a dot
//! product, an axpy or an elementwise product of rows of length `C`, which the compiler
//! vectorizes. It is the fastest direct layout when `C` fills SIMD registers; with few channels
//! it runs nearly scalar, which is what [`super::blocked`] is for.

use super::kernels::{scale, sum_of_squares, Kernel};
use super::{DirectTables, Real};

/// Elements per accumulator block: independent lanes the compiler maps onto SIMD registers.
const LANES: usize = 16;

pub(super) struct Channels(pub DirectTables);

impl<T: Real> Kernel<T> for Channels {
    /// `G_i` spread over position pairs, `[P][P]`.
    type Scratch = Vec<T>;

    fn unit_filters(&self) -> usize {
        1
    }

    fn unit_len(&self) -> usize {
        self.0.channels * self.0.positions
    }

    fn scratch(&self) -> Vec<T> {
        vec![T::zero(); self.0.positions * self.0.positions]
    }

    fn pack(&self, filter: &[T], unit: &mut [T]) {
        let (c, p) = (self.0.channels, self.0.positions);
        for ch in 0..c {
            for pos in 0..p {
                unit[pos * c + ch] = filter[ch * p + pos];
            }
        }
    }

    fn unpack(&self, unit: &[T], filter: &mut [T]) {
        let (c, p) = (self.0.channels, self.0.positions);
        for ch in 0..c {
            for pos in 0..p {
                filter[ch * p + pos] = unit[pos * c + ch];
            }
        }
    }

    /// `R[h] = sum over pairs (p, q) with shift h of <row_p, row_q>` (or the elementwise product).
    #[inline(always)]
    fn records(&self, rows: &[T], record: &mut [T], _: &mut Vec<T>) {
        let c = self.0.channels;
        record.fill(T::zero());
        for pair in &self.0.pairs {
            let (p, q, h) = (pair.p as usize, pair.q as usize, pair.shift as usize);
            let (a, b) = (&rows[p * c..(p + 1) * c], &rows[q * c..(q + 1) * c]);
            if self.0.per_channel {
                mul_add_assign(&mut record[h * c..(h + 1) * c], a, b);
            } else {
                record[h] += dot(a, b);
            }
        }
    }

    /// `grad_p = sum_q G[shift(p, q)] row_q`.
    ///
    /// With one weight per shift (all-channel variants) the gradient is computed a block of
    /// [`LANES`] channels at a time: each output block is accumulated in registers over all `q`
    /// and stored once, instead of being read and written once per position pair.
    #[inline(always)]
    fn gradient(&self, rows: &[T], weights: &[T], gradient: &mut [T], pair_weights: &mut Vec<T>) {
        let (c, positions) = (self.0.channels, self.0.positions);
        if self.0.per_channel {
            gradient.fill(T::zero());
            for pair in &self.0.pairs {
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
        // `G(p, q)` for groups of four output positions side by side, `[P/4][P][4]`, then the
        // remaining positions' rows `[P mod 4][P]`: the inner loop reads one group's four weights
        // for each `q` with no index to check.
        let quads = positions / 4;
        let weight_of = |p: usize, q: usize| weights[self.0.shift_of[p * positions + q] as usize];
        for (g, group) in pair_weights[..quads * 4 * positions]
            .chunks_exact_mut(4 * positions)
            .enumerate()
        {
            for (q, four) in group.chunks_exact_mut(4).enumerate() {
                for (k, w) in four.iter_mut().enumerate() {
                    *w = weight_of(4 * g + k, q);
                }
            }
        }
        for (p, row) in (4 * quads..positions)
            .zip(pair_weights[quads * 4 * positions..].chunks_exact_mut(positions))
        {
            for (q, w) in row.iter_mut().enumerate() {
                *w = weight_of(p, q);
            }
        }
        let (grouped, rest) = pair_weights.split_at(quads * 4 * positions);
        let full = c - c % LANES;
        for start in (0..full).step_by(LANES) {
            let block = |row: &[T]| -> [T; LANES] {
                row[start..start + LANES].try_into().expect("a whole block")
            };
            // Four output positions at a time: four independent accumulator chains share each load.
            for (g, group) in grouped.chunks_exact(4 * positions).enumerate() {
                let mut acc = [[T::zero(); LANES]; 4];
                for (row, four) in rows.chunks_exact(c).zip(group.chunks_exact(4)) {
                    let row = block(row);
                    for (acc, &h) in acc.iter_mut().zip(four) {
                        for l in 0..LANES {
                            acc[l] += h * row[l];
                        }
                    }
                }
                for (k, acc) in acc.iter().enumerate() {
                    let p = 4 * g + k;
                    gradient[p * c + start..p * c + start + LANES].copy_from_slice(acc);
                }
            }
            for (p, weights) in (4 * quads..positions).zip(rest.chunks_exact(positions)) {
                let mut acc = [T::zero(); LANES];
                for (row, &h) in rows.chunks_exact(c).zip(weights) {
                    let row = block(row);
                    for l in 0..LANES {
                        acc[l] += h * row[l];
                    }
                }
                gradient[p * c + start..p * c + start + LANES].copy_from_slice(&acc);
            }
        }
        // The channels past the last whole block, each still summed over `q` in order.
        for p in 0..positions {
            let out = &mut gradient[p * c + full..(p + 1) * c];
            out.fill(T::zero());
            for (q, row) in rows.chunks_exact(c).enumerate() {
                let h = weight_of(p, q);
                for (g, &w) in out.iter_mut().zip(&row[full..]) {
                    *g += h * w;
                }
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
