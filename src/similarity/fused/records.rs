//! The per-filter records `R_i` of every path (autocorrelations over half shifts, or power
//! spectra over the bins of a real FFT) and what is computed from them alone: their sum `T`,
//! L_CS, and each filter's gradient weights `dL/dR_i`.
//!
//! Every reduction here has a fixed order that depends only on the layer's shape, never on how
//! rayon splits the work, so results are bit-identical for any thread count.

use rayon::prelude::*;

use super::Real;

/// Filters per partial sum of the loss.
const LOSS_CHUNK: usize = 64;
/// Record entries per parallel task of `T = sum_i R_i`.
const TOTAL_CHUNK: usize = 4096;

/// The shape of a layer's records.
pub(super) struct RecordSpace {
    pub filters: usize,
    pub record_len: usize,
    /// The weight of each record entry in an inner product of two records: 1 or 2 for half
    /// shifts (the zero shift counts once, every other for itself and its mirror), `w_f / N` for
    /// spectral bins.
    pub weights: Vec<f64>,
    /// Adjacent variants pair filter `i` with `i + 1` only.
    pub adjacent: bool,
}

impl RecordSpace {
    fn dot<T: Real>(&self, a: &[T], b: &[T]) -> f64 {
        a.iter()
            .zip(b)
            .zip(&self.weights)
            .map(|((&x, &y), &w)| w * x.widen() * y.widen())
            .sum()
    }

    /// `sum_i dot(R_i, R_i)` over whole records, in filter order. Four filters' sums run side by
    /// side, each the same additions in the same order as [`RecordSpace::dot`]: one sum at a time,
    /// every addition waited on the one before, which made the loss a tenth of a depthwise
    /// layer's iteration.
    fn own_products<T: Real>(&self, records: &[T]) -> f64 {
        let len = self.record_len;
        let mut groups = records.chunks_exact(4 * len);
        // `-0.0`, as `Iterator::sum` starts from, is the additive identity.
        let mut own = -0.0;
        for group in &mut groups {
            let (r0, rest) = group.split_at(len);
            let (r1, rest) = rest.split_at(len);
            let (r2, r3) = rest.split_at(len);
            let mut sums = [-0.0f64; 4];
            for ((((&w, &a), &b), &c), &d) in self.weights.iter().zip(r0).zip(r1).zip(r2).zip(r3) {
                for (sum, x) in sums.iter_mut().zip([a, b, c, d]) {
                    let x = x.widen();
                    *sum += w * x * x;
                }
            }
            for sum in sums {
                own += sum;
            }
        }
        for record in groups.remainder().chunks_exact(len) {
            own += self.dot(record, record);
        }
        own
    }

    /// `T = sum_i R_i`, for all-pairs variants.
    pub fn total<T: Real>(&self, records: &[T], total: &mut [T]) {
        if self.adjacent {
            return;
        }
        let len = self.record_len;
        total
            .par_chunks_mut(TOTAL_CHUNK)
            .enumerate()
            .for_each(|(b, out)| {
                out.fill(T::zero());
                for record in records.chunks_exact(len) {
                    for (o, &r) in out.iter_mut().zip(&record[b * TOTAL_CHUNK..]) {
                        *o += r;
                    }
                }
            });
    }

    /// L_CS from the records (and their sum), accumulated in f64: partial sums over fixed chunks
    /// of filters, added in order.
    pub fn loss<T: Real>(&self, records: &[T], total: &[T]) -> f64 {
        let len = self.record_len;
        if self.adjacent {
            let pairs = self.filters.saturating_sub(1);
            let partial: Vec<f64> = (0..pairs.div_ceil(LOSS_CHUNK))
                .into_par_iter()
                .map(|chunk| {
                    (chunk * LOSS_CHUNK..((chunk + 1) * LOSS_CHUNK).min(pairs))
                        .map(|i| {
                            self.dot(
                                &records[i * len..(i + 1) * len],
                                &records[(i + 1) * len..(i + 2) * len],
                            )
                        })
                        .sum()
                })
                .collect();
            partial.iter().sum()
        } else {
            let partial: Vec<f64> = records
                .par_chunks(LOSS_CHUNK * len)
                .map(|chunk| self.own_products(chunk))
                .collect();
            let own: f64 = partial.iter().sum();
            0.5 * (self.dot(total, total) - own)
        }
    }

    /// L_CS of the filters scaled to unit norm, from the records of the filters as they are:
    /// a record is quadratic in its filter, so filter `i`'s is scaled by `1 / squares[i]`, its
    /// squared norm (a zero filter's record is zero either way).
    pub fn unit_loss<T: Real>(&self, records: &[T], squares: &[f64]) -> f64 {
        let mut scaled = records.to_vec();
        scaled
            .par_chunks_mut(self.record_len)
            .zip(squares)
            .for_each(|(record, &square)| {
                let factor = T::narrow(if square > 0.0 { 1.0 / square } else { 1.0 });
                record.iter_mut().for_each(|r| *r *= factor);
            });
        let mut total = vec![T::zero(); self.record_len];
        self.total(&scaled, &mut total);
        self.loss(&scaled, &total)
    }

    /// `2 dL/dR_i` (unweighted), the gradient weights of filter `i`: `2 (T - R_i)`, or
    /// `2 (R_{i-1} + R_{i+1})` for adjacent variants. The factor 2 of the gradient is applied
    /// here once instead of in every gradient term.
    #[inline(always)]
    pub fn gradient_weights<T: Real>(&self, records: &[T], total: &[T], i: usize, g: &mut [T]) {
        let len = self.record_len;
        let two = T::one() + T::one();
        if self.adjacent {
            g.fill(T::zero());
            if i > 0 {
                for (g, &r) in g.iter_mut().zip(&records[(i - 1) * len..i * len]) {
                    *g += r;
                }
            }
            if i + 1 < self.filters {
                for (g, &r) in g.iter_mut().zip(&records[(i + 1) * len..(i + 2) * len]) {
                    *g += r;
                }
            }
            for g in g.iter_mut() {
                *g *= two;
            }
        } else {
            let own = &records[i * len..(i + 1) * len];
            for ((g, &t), &r) in g.iter_mut().zip(total).zip(own) {
                *g = two * (t - r);
            }
        }
    }
}
