//! The probe's 3x3 feature maps by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks"): every 2x2 block of outputs from a 4x4
//! tile of the input in 16 products instead of 36. The maps of a layer are then 16 matrix
//! products `[S, C] x [C, B T]` (`T` tiles per input) with 4/9 of the multiply-adds of the
//! patches' one, and the tiles take 16/36 of the patches' memory. The identity is exact; in f32
//! its transforms add a few roundings, far below the probe's reported digits.

use candle_core::{Tensor, WithDType};
use num_traits::Float;
use rayon::prelude::*;

use crate::host::gemm::{product, Strided};
use crate::host::values::{with_values, Values};
use crate::Result;

/// Values of a transformed tile.
const TILE: usize = 16;

/// Whether F(2x2, 3x3) computes the maps of a `kh x kw` kernel with outputs `oh x ow`: whole
/// 2x2 blocks only.
pub(super) fn applies((kh, kw): (usize, usize), (oh, ow): (usize, usize)) -> bool {
    (kh, kw) == (3, 3) && oh % 2 == 0 && ow % 2 == 0 && oh * ow > 0
}

/// The transformed tiles `Bᵀ d B` of padded inputs `[B, C, oh + 2, ow + 2]` (row-major
/// `values`), `[C][16][B T]`: tile `t` of input `b` is column `b T + t` of each of the 16 rows
/// of its channel.
pub(super) fn input_tiles<T: WithDType + Float>(
    values: &[T],
    (b, c): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<T> {
    let (ph, pw) = (oh + 2, ow + 2);
    let per_input = (oh / 2) * (ow / 2);
    let columns = b * per_input;
    let mut tiles = vec![T::zero(); c * TILE * columns];
    tiles
        .par_chunks_exact_mut(TILE * columns)
        .enumerate()
        .for_each(|(ci, rows)| {
            for bi in 0..b {
                let image = &values[(bi * c + ci) * ph * pw..][..ph * pw];
                for t in 0..per_input {
                    let (ty, tx) = (t / (ow / 2), t % (ow / 2));
                    let mut d = [[T::zero(); 4]; 4];
                    for (i, row) in d.iter_mut().enumerate() {
                        row.copy_from_slice(&image[(2 * ty + i) * pw + 2 * tx..][..4]);
                    }
                    let column = bi * per_input + t;
                    for (k, value) in sandwich(&d, input_rows).iter().flatten().enumerate() {
                        rows[k * columns + column] = *value;
                    }
                }
            }
        });
    tiles
}

/// The transformed filters `G g Gᵀ` of a weight `[S, C, 3, 3]` (row-major `values`),
/// `[S][C][16]`.
fn filter_tiles<T: WithDType + Float>(values: &[T]) -> Vec<T> {
    let mut tiles = vec![T::zero(); values.len() / 9 * TILE];
    tiles
        .par_chunks_exact_mut(TILE)
        .zip(values.par_chunks_exact(9))
        .for_each(|(u, g)| {
            let g = [[g[0], g[1], g[2]], [g[3], g[4], g[5]], [g[6], g[7], g[8]]];
            // `columns[j]` is column `j` of `G g`; each row of `G g` goes through `G` again.
            let columns = [0, 1, 2].map(|j| filter_rows([g[0][j], g[1][j], g[2][j]]));
            for (i, row) in u.chunks_exact_mut(4).enumerate() {
                row.copy_from_slice(&filter_rows([columns[0][i], columns[1][i], columns[2][i]]));
            }
        });
    tiles
}

/// The maps `[B, S, oh ow]` (positions row-major) of a weight `[S, C, 3, 3]` (row-major
/// `weight`) on the transformed tiles of [`input_tiles`]: the 16 products `M_k = U_k V_k`
/// (`[S][16][B T]`), then `Aᵀ M A` per tile.
fn maps_of<T: WithDType + Float>(
    weight: &[T],
    tiles: &[T],
    (b, s, c): (usize, usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<T> {
    let per_input = (oh / 2) * (ow / 2);
    let columns = b * per_input;
    let filters = filter_tiles(weight);
    let mut products = vec![T::zero(); s * TILE * columns];
    let out = Shared(products.as_mut_ptr());
    // The 16 products side by side, one task each: each is too small to split well.
    (0..TILE).into_par_iter().for_each(|k| {
        // SAFETY: `filters` holds `[S][C][16]` values, `tiles` `[C][16][columns]` and
        // `products` `[S][16][columns]`; plane `k` of each is read or written with those
        // strides only, so the tasks write disjoint values of `products`, which outlives them.
        unsafe {
            product(
                (s, c, columns),
                out.at(k * columns),
                (TILE * columns) as isize,
                Strided {
                    first: filters[k..].as_ptr(),
                    row: (c * TILE) as isize,
                    column: TILE as isize,
                },
                Strided {
                    first: tiles[k * columns..].as_ptr(),
                    row: (TILE * columns) as isize,
                    column: 1,
                },
                gemm::Parallelism::None,
            )
        }
    });
    let mut maps = vec![T::zero(); b * s * oh * ow];
    // Map `(bi, si)` is run `bi S + si`.
    maps.par_chunks_exact_mut(oh * ow)
        .enumerate()
        .for_each(|(run, map)| {
            let (bi, si) = (run / s, run % s);
            let block = &products[si * TILE * columns..][..TILE * columns];
            for t in 0..per_input {
                let (ty, tx) = (t / (ow / 2), t % (ow / 2));
                let mut tile = [[T::zero(); 4]; 4];
                for (k, value) in tile.iter_mut().flatten().enumerate() {
                    *value = block[k * columns + bi * per_input + t];
                }
                for (dy, row) in output_block(&tile).iter().enumerate() {
                    map[(2 * ty + dy) * ow + 2 * tx..][..2].copy_from_slice(row);
                }
            }
        });
    maps
}

/// The maps of a weight `[S, C, 3, 3]` on transformed tiles ([`input_tiles`], as a flat
/// tensor), `[B, S, oh ow]` in the tiles' dtype.
pub(super) fn maps(
    weight: &Tensor,
    tiles: &Tensor,
    batch: usize,
    (oh, ow): (usize, usize),
) -> Result<Tensor> {
    let (s, c, _, _) = weight.dims4()?;
    let weight = weight.to_dtype(tiles.dtype())?;
    let (sizes, shape) = ((batch, s, c), (batch, s, oh * ow));
    let device = tiles.device();
    // Read where they lie: a copy of the tiles costs as much as a product.
    let maps = with_values(&weight, |w| {
        with_values(tiles, |t| match (w, t) {
            (Values::F64(w), Values::F64(t)) => {
                Tensor::from_vec(maps_of(w, t, sizes, (oh, ow)), shape, device)
            }
            (Values::F32(w), Values::F32(t)) => {
                Tensor::from_vec(maps_of(w, t, sizes, (oh, ow)), shape, device)
            }
            _ => unreachable!("the weight has the tiles' dtype"),
        })
    })???;
    Ok(maps)
}

/// A buffer that tasks write disjoint parts of through gemm's raw pointers.
struct Shared<T>(*mut T);

// SAFETY: tasks only write values no other task reads or writes (see `maps_of`).
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer `offset` values in.
    ///
    /// # Safety
    /// `offset` is within the buffer.
    unsafe fn at(&self, offset: usize) -> *mut T {
        self.0.add(offset)
    }
}

/// `Bᵀ r` of four values: the input transform's rows.
fn input_rows<T: Float>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `G r` of three values: the filter transform's rows.
fn filter_rows<T: Float>([g0, g1, g2]: [T; 3]) -> [T; 4] {
    let half = T::from(0.5).expect("a float");
    let (outer, middle) = ((g0 + g2) * half, g1 * half);
    [g0, outer + middle, outer - middle, g2]
}

/// `Xᵀ d X` of a 4x4 tile for a transform `r -> Xᵀ r` of its rows: columns, then rows.
#[inline(always)]
fn sandwich<T: Float>(d: &[[T; 4]; 4], transform: impl Fn([T; 4]) -> [T; 4]) -> [[T; 4]; 4] {
    let columns = [0, 1, 2, 3].map(|j| transform([d[0][j], d[1][j], d[2][j], d[3][j]]));
    [0, 1, 2, 3].map(|i| transform([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]))
}

/// `Aᵀ m A` of a 4x4 tile of products: its 2x2 outputs.
fn output_block<T: Float>(m: &[[T; 4]; 4]) -> [[T; 2]; 2] {
    let rows = |[m0, m1, m2, m3]: [T; 4]| [m0 + m1 + m2, m1 - m2 - m3];
    let columns = [0, 1, 2, 3].map(|j| rows([m[0][j], m[1][j], m[2][j], m[3][j]]));
    [0, 1].map(|i| rows([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::{largest_difference, standard_normal};
    use candle_core::{DType, Device};
    use rand::{Rng, SeedableRng};

    #[test]
    fn maps_are_candles_convolution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let device = Device::Cpu;
        for draw in 0..24 {
            let (b, s, c) = (
                rng.random_range(1..4),
                rng.random_range(1..9),
                rng.random_range(1..6),
            );
            // Padded inputs whose 3x3 maps come in whole 2x2 blocks, square or not.
            let (oh, ow) = (2 * rng.random_range(1..6), 2 * rng.random_range(1..6));
            assert!(applies((3, 3), (oh, ow)));
            let dtype = [DType::F32, DType::F64][draw % 2];
            let random = |dims: &[usize]| standard_normal(dims, dtype);
            let (x, w) = (random(&[b, c, oh + 2, ow + 2]), random(&[s, c, 3, 3]));
            let flat = x.flatten_all().unwrap();
            let tiles = match dtype {
                DType::F64 => {
                    let t = input_tiles(&flat.to_vec1::<f64>().unwrap(), (b, c), (oh, ow));
                    let n = t.len();
                    Tensor::from_vec(t, n, &device).unwrap()
                }
                _ => {
                    let t = input_tiles(&flat.to_vec1::<f32>().unwrap(), (b, c), (oh, ow));
                    let n = t.len();
                    Tensor::from_vec(t, n, &device).unwrap()
                }
            };
            let got = maps(&w, &tiles, b, (oh, ow)).unwrap();
            let want = x.conv2d(&w, 0, 1, 1, 1).unwrap().flatten_from(2).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(got.dtype(), dtype);
            let diff = largest_difference(&got, &want);
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(diff <= tol, "{:?} {dtype:?}: {diff}", (b, s, c, oh, ow));
        }
    }

    #[test]
    fn only_3x3_kernels_with_whole_blocks_of_outputs_apply() {
        assert!(applies((3, 3), (16, 16)));
        assert!(applies((3, 3), (2, 14)));
        assert!(!applies((3, 3), (15, 16)));
        assert!(!applies((3, 3), (16, 9)));
        assert!(!applies((3, 1), (16, 16)));
        assert!(!applies((5, 5), (16, 16)));
        assert!(!applies((3, 3), (0, 0)));
    }
}
