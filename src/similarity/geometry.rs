//! Shapes of conv weights and the table of kernel shifts that every engine shares.

use crate::{Error, Result};

/// The shape of one conv weight in PyTorch layout: `[filters, channels, k...]` with one, two or
/// three spatial dimensions (conv1d, conv2d, conv3d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelGeometry {
    /// Output filters `S`.
    pub filters: usize,
    /// Input channels per filter `C`.
    pub channels: usize,
    /// Spatial kernel size, 1 to 3 dimensions.
    pub kernel: Vec<usize>,
}

impl KernelGeometry {
    /// Reads the geometry from a tensor shape; rank 3, 4 or 5 with no zero-sized dimension.
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        if !(3..=5).contains(&dims.len()) {
            return Err(Error::NotAConvWeight {
                shape: dims.to_vec(),
                reason: "expected rank 3, 4 or 5 ([out, in, k], [out, in, kh, kw] or [out, in, kd, kh, kw])",
            });
        }
        if dims.contains(&0) {
            return Err(Error::NotAConvWeight {
                shape: dims.to_vec(),
                reason: "a dimension is zero",
            });
        }
        Ok(Self {
            filters: dims[0],
            channels: dims[1],
            kernel: dims[2..].to_vec(),
        })
    }

    /// Kernel positions per channel plane (`kh * kw` for conv2d).
    pub fn positions(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Elements in one output filter (`C * positions`).
    pub fn filter_len(&self) -> usize {
        self.channels * self.positions()
    }

    /// Elements in the whole weight.
    pub fn len(&self) -> usize {
        self.filters * self.filter_len()
    }

    /// Always false: a geometry has no zero-sized dimension.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shift table of this kernel size.
    pub fn shifts(&self) -> ShiftTable {
        ShiftTable::new(&self.kernel)
    }
}

/// A kernel position pair `p <= q` (flat, row-major indices) and the index of its shift `q - p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionPair {
    pub p: u32,
    pub q: u32,
    pub shift: u32,
}

/// The shifts `n` of a full autocorrelation, of which only the lexicographically non-negative half
/// is stored: an autocorrelation is symmetric, `auto[-n] = auto[n]`.
///
/// Half-shift `0` is the zero shift. A full inner product `sum_n a[n] b[n]` over all shifts equals
/// `sum_h weight[h] a[h] b[h]` over half shifts, with weight 1 for the zero shift and 2 otherwise.
#[derive(Debug, Clone)]
pub struct ShiftTable {
    kernel: [usize; 3],
    half: usize,
    pairs: Vec<PositionPair>,
}

impl ShiftTable {
    /// Builds the table for a kernel of 1 to 3 spatial dimensions.
    pub fn new(kernel: &[usize]) -> Self {
        let mut k = [1usize; 3];
        k[3 - kernel.len()..].copy_from_slice(kernel);
        let full: usize = k.iter().map(|&d| 2 * d - 1).product();
        let positions: usize = k.iter().product();
        let mut pairs = Vec::with_capacity(positions * (positions + 1) / 2);
        for p in 0..positions {
            for q in p..positions {
                let (a, b) = (coords(p, &k), coords(q, &k));
                // Flat order of positions is lexicographic, so q >= p makes the shift lexicographically
                // non-negative and its mixed-radix index lands in the upper half of the full grid.
                let mut index = 0isize;
                for d in 0..3 {
                    index = index * (2 * k[d] as isize - 1) + (b[d] as isize - a[d] as isize);
                }
                pairs.push(PositionPair {
                    p: p as u32,
                    q: q as u32,
                    shift: index as u32,
                });
            }
        }
        Self {
            kernel: k,
            half: full.div_ceil(2),
            pairs,
        }
    }

    /// Number of stored (half) shifts, zero shift included.
    pub fn half_len(&self) -> usize {
        self.half
    }

    /// Number of shifts of the full autocorrelation, `prod(2k - 1)`.
    pub fn full_len(&self) -> usize {
        2 * self.half - 1
    }

    /// Weight of half shift `h` in a full inner product.
    pub fn weight(h: usize) -> f64 {
        if h == 0 {
            1.0
        } else {
            2.0
        }
    }

    /// All position pairs `p <= q` with their shift index.
    pub fn pairs(&self) -> &[PositionPair] {
        &self.pairs
    }

    /// Every full shift as a 3-D offset (leading dimensions of size 1 for conv1d/conv2d).
    pub fn full_shifts(&self) -> Vec<[isize; 3]> {
        let k = self.kernel;
        let mut out = Vec::with_capacity(self.full_len());
        for a in -(k[0] as isize - 1)..k[0] as isize {
            for b in -(k[1] as isize - 1)..k[1] as isize {
                for c in -(k[2] as isize - 1)..k[2] as isize {
                    out.push([a, b, c]);
                }
            }
        }
        out
    }
}

fn coords(flat: usize, k: &[usize; 3]) -> [usize; 3] {
    [flat / (k[1] * k[2]), (flat / k[2]) % k[1], flat % k[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_shift_counts() {
        assert_eq!(ShiftTable::new(&[3, 3]).half_len(), 13);
        assert_eq!(ShiftTable::new(&[1, 1]).half_len(), 1);
        assert_eq!(ShiftTable::new(&[7]).half_len(), 7);
        assert_eq!(ShiftTable::new(&[2, 3]).half_len(), 8);
        assert_eq!(ShiftTable::new(&[3, 3, 3]).half_len(), 63);
    }

    #[test]
    fn pairs_with_equal_offsets_share_a_shift() {
        let table = ShiftTable::new(&[2, 3]);
        let k = [1, 2, 3];
        for a in table.pairs() {
            for b in table.pairs() {
                let da: Vec<isize> = (0..3)
                    .map(|d| {
                        coords(a.q as usize, &k)[d] as isize - coords(a.p as usize, &k)[d] as isize
                    })
                    .collect();
                let db: Vec<isize> = (0..3)
                    .map(|d| {
                        coords(b.q as usize, &k)[d] as isize - coords(b.p as usize, &k)[d] as isize
                    })
                    .collect();
                assert_eq!(da == db, a.shift == b.shift, "{a:?} {b:?}");
            }
            assert!((a.shift as usize) < table.half_len());
        }
    }

    #[test]
    fn rejects_non_conv_shapes() {
        assert!(KernelGeometry::from_dims(&[3, 3]).is_err());
        assert!(KernelGeometry::from_dims(&[1, 2, 3, 4, 5, 6]).is_err());
        assert!(KernelGeometry::from_dims(&[4, 0, 3, 3]).is_err());
        let g = KernelGeometry::from_dims(&[8, 4, 3, 5]).unwrap();
        assert_eq!(
            (g.filters, g.channels, g.positions(), g.len()),
            (8, 4, 15, 480)
        );
    }
}
