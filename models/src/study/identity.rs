//! Equation 3 at the size of real layers: the inner products of the feature maps of the full
//! cross-correlation, computed from the kernels' and the input's correlations alone, to check the
//! probe's inner products against on the probe's own inputs.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use cs_init::reproduce::identity::shifted_product;
use rayon::prelude::*;

/// `sum_{c1,c2} < W[i,c1] ⊛ W[j,c2], (X[c1] ⊛ X[c2]) over |n| <= k - 1 >` for every filter pair,
/// `[S, S]` in f64, for a conv2d weight `[S, C, kh, kw]` and one input `[C, H, W]`.
///
/// As `W A Wᵀ` with `W` flattened to `[S, C·P]` and `A[(c1, p), (c2, q)] = (X[c1] ⊛ X[c2])[q - p]`:
/// `sum_n (A ⊛ B)[n] T[n] = sum_{p,q} A[p] B[q] T[q - p]`. That costs `C² (2k-1)² H W` for the
/// input's correlations and `S (C P)²` for the products, where the literal sum over channel pairs
/// (`cs_init::reproduce::identity::correlation_form`) costs `S² C² P²` and is out of reach for
/// 256-channel layers. No convolution is involved, so it checks the probe's independently.
pub fn correlation_gram(weight: &Tensor, input: &Tensor) -> Result<Tensor> {
    let (s, c, kh, kw) = weight.dims4()?;
    let (cx, h, w) = input.dims3()?;
    if cx != c {
        bail!("the weight has {c} input channels, the input {cx}");
    }
    let x = input
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (sh, sw) = (2 * kh - 1, 2 * kw - 1);
    // corr[(c1 * C + c2) * sh * sw + (dy + kh - 1) * sw + dx + kw - 1] = (X[c1] ⊛ X[c2])[dy, dx].
    let corr: Vec<f64> = (0..c * c)
        .into_par_iter()
        .flat_map_iter(|pair| {
            let a = &x[(pair / c) * h * w..][..h * w];
            let b = &x[(pair % c) * h * w..][..h * w];
            (0..sh * sw).map(move |d| {
                let dy = (d / sw) as isize - (kh as isize - 1);
                let dx = (d % sw) as isize - (kw as isize - 1);
                shifted_product(a, b, h, w, dy, dx)
            })
        })
        .collect();
    let p = kh * kw;
    let n = c * p;
    let a: Vec<f64> = (0..n * n)
        .into_par_iter()
        .map(|rc| {
            let (row, column) = (rc / n, rc % n);
            let (c1, p1) = (row / p, row % p);
            let (c2, p2) = (column / p, column % p);
            let dy = p2 / kw + kh - 1 - p1 / kw;
            let dx = p2 % kw + kw - 1 - p1 % kw;
            corr[(c1 * c + c2) * sh * sw + dy * sw + dx]
        })
        .collect();
    let a = Tensor::from_vec(a, (n, n), &Device::Cpu)?;
    let w = weight
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .reshape((s, n))?;
    Ok(w.matmul(&a)?.matmul(&w.t()?)?)
}

/// How far measured inner products `[B, S, S]` are from Equation 3's `[S, S]` per input: the
/// largest `|measured - equation| / sqrt(G_ii G_jj)` over inputs and pairs (the scale of a pair's
/// inner product), and `sum |measured - equation| / sum |equation|` over the pairs `i != j`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deviation {
    pub max_pair_error: f64,
    pub relative_error: f64,
}

impl Deviation {
    pub fn between(measured: &[Vec<Vec<f64>>], equation: &[Vec<Vec<f64>>]) -> Deviation {
        let (mut max_pair_error, mut difference, mut total) = (0.0f64, 0.0, 0.0);
        for (g, e) in measured.iter().zip(equation) {
            for i in 0..g.len() {
                for j in 0..g.len() {
                    let scale = (e[i][i] * e[j][j]).sqrt();
                    if scale > 0.0 {
                        max_pair_error = max_pair_error.max((g[i][j] - e[i][j]).abs() / scale);
                    }
                    if i != j {
                        difference += (g[i][j] - e[i][j]).abs();
                        total += e[i][j].abs();
                    }
                }
            }
        }
        Deviation {
            max_pair_error,
            relative_error: if total > 0.0 { difference / total } else { 0.0 },
        }
    }

    /// The worse of two, figure by figure.
    pub fn max(self, other: Deviation) -> Deviation {
        Deviation {
            max_pair_error: self.max_pair_error.max(other.max_pair_error),
            relative_error: self.relative_error.max(other.relative_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matches_the_literal_sum() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..10 {
            let (s, c) = (rng.random_range(1..5), rng.random_range(1..4));
            let (kh, kw) = (rng.random_range(1..4), rng.random_range(1..4));
            let (h, w) = (rng.random_range(1..8), rng.random_range(1..8));
            let mut uniform = |n: usize, lo: f64| -> Vec<f64> {
                (0..n).map(|_| rng.random_range(lo..1.0)).collect()
            };
            let weight =
                Tensor::from_vec(uniform(s * c * kh * kw, -1.0), (s, c, kh, kw), &Device::Cpu)
                    .unwrap();
            let input = Tensor::from_vec(uniform(c * h * w, 0.0), (c, h, w), &Device::Cpu).unwrap();
            let fast = correlation_gram(&weight, &input)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let literal = cs_init::reproduce::identity::correlation_form(&weight, &input).unwrap();
            for (a, b) in fast.iter().zip(&literal) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn deviation_measures_per_pair_and_overall() {
        let equation = vec![vec![vec![4.0, 2.0], vec![2.0, 1.0]]];
        assert_eq!(
            Deviation::between(&equation, &equation),
            Deviation {
                max_pair_error: 0.0,
                relative_error: 0.0
            }
        );
        let measured = vec![vec![vec![4.0, 3.0], vec![1.0, 1.0]]];
        let d = Deviation::between(&measured, &equation);
        // |3 - 2| / sqrt(4 * 1); off the diagonal (1 + 1) / (2 + 2).
        assert_eq!(d.max_pair_error, 0.5);
        assert_eq!(d.relative_error, 0.5);
        assert_eq!(d.max(Deviation::between(&equation, &equation)), d);
    }
}
