//! The feature maps of one episode and how they are compared.
//!
//! Every feature map of an episode is a cross-correlation of the same input `X` with a kernel, so
//! each inner product of two of them is a quadratic form of the kernels in the Gram matrix of the
//! input's windows: with `F_a[o] = sum_p K_a[p] X̃[o+p]` (`X̃` the zero-padded input),
//! `<F_a, F_b> = sum_{p,q} K_a[p] G[p,q] K_b[q]` with `G[p,q] = sum_o X̃[o+p] X̃[o+q]`. `G` is
//! computed once per episode, and then every similarity costs `O(N²)` instead of `O(M N)`, with
//! the same value as the feature maps themselves give (up to rounding).

/// How much zero padding a cross-correlation adds (paper, Section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// `k - 1` zeros on each side: every overlap of kernel and input (Equations 1, 2).
    Full,
    /// `(k - 1) / 2` zeros on each side: the output has the input's size (odd `k` only).
    Same,
    /// No padding: only the positions where the kernel lies inside the input.
    Valid,
}

impl Padding {
    /// Zeros added on each side of the input for a kernel of `k` taps; `None` for `Same` with an
    /// even `k`, which has no symmetric padding.
    pub fn amount(self, k: usize) -> Option<usize> {
        match self {
            Padding::Full => Some(k - 1),
            Padding::Same => (k % 2 == 1).then_some((k - 1) / 2),
            Padding::Valid => Some(0),
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Padding::Full => "full",
            Padding::Same => "same",
            Padding::Valid => "valid",
        }
    }
}

/// How the similarity of two feature maps is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// `<F1, F2>`, the quantity of the paper's Equation 3.
    Inner,
    /// `<F1, F2> / (||F1|| ||F2||)`: the inner product with the kernels' scale divided out.
    Cosine,
    /// `<F1, F2>²`, squared like the objectives `<K1,K2>²` and `||K1 ⊛ K2||²`. Not in
    /// paper-tables.md's reading, but it reproduces most of the paper's decrease, increase and
    /// correlation figures much more closely (docs/reproduction.md).
    Squared,
}

impl Similarity {
    /// The similarity of the feature maps of `k1` and `k2` on the input whose window Gram matrix
    /// (row-major `[N, N]`, from [`window_gram`]) is `gram`.
    pub fn measure(self, k1: &[f64], k2: &[f64], gram: &[f64]) -> f64 {
        let form = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .zip(gram.chunks_exact(b.len()))
                .map(|(x, row)| x * row.iter().zip(b).map(|(g, y)| g * y).sum::<f64>())
                .sum()
        };
        let inner = form(k1, k2);
        match self {
            Similarity::Inner => inner,
            Similarity::Cosine => inner / (form(k1, k1) * form(k2, k2)).sqrt(),
            Similarity::Squared => inner * inner,
        }
    }
}

/// The Gram matrix `G[p,q] = sum_o X̃[o+p] X̃[o+q]` (row-major `[n, n]`) of the length-`n` windows
/// of `x` padded with `pad` zeros on each side: the inner product of the cross-correlations of
/// kernels `a` and `b` with `x` is `aᵀ G b`.
pub fn window_gram(x: &[f64], n: usize, pad: usize) -> Vec<f64> {
    let padded: Vec<f64> = std::iter::repeat_n(0.0, pad)
        .chain(x.iter().copied())
        .chain(std::iter::repeat_n(0.0, pad))
        .collect();
    let mut gram = vec![0.0; n * n];
    for window in padded.windows(n) {
        for (p, row) in gram.chunks_exact_mut(n).enumerate() {
            for (g, xq) in row.iter_mut().zip(window) {
                *g += window[p] * xq;
            }
        }
    }
    gram
}
