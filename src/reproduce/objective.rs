//! What an episode minimizes, with its analytic gradient.
//!
//! Both objectives are tiny (two kernels of at most 16 taps), so they are written as plain loops
//! over slices: a row's thousand episodes then cost microseconds per iteration, where a candle
//! graph per episode would cost milliseconds.

/// The minimized function of two kernels `K1`, `K2` of the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// `<K1, K2>²`: kernel orthogonality (Table 1).
    KernelSimilarity,
    /// `||K1 ⊛ K2||²`, the Convolutional Similarity of Equation 8 (Tables 2, 3 and 6).
    ConvSimilarity,
}

impl Objective {
    /// The objective's value; its gradient with respect to `K1` and `K2` goes to `g1` and `g2`.
    ///
    /// For the Convolutional Similarity, `||K1 ⊛ K2||² = <auto(K1), auto(K2)>` (Parseval for
    /// correlations, docs/math.md) with `auto(K)[m] = sum_p K[p] K[p+m]` symmetric in `m`, so
    /// `dL/dK1[p] = 2 sum_m auto(K2)[m] K1[p+m]` over `m` in `[1-N, N-1]` (and symmetrically for
    /// `K2`). One lag `m >= 0` at a time, both autocorrelation values are computed and their
    /// contributions to the loss and both gradients added, so no buffer is needed.
    pub fn evaluate(self, k1: &[f64], k2: &[f64], g1: &mut [f64], g2: &mut [f64]) -> f64 {
        let n = k1.len();
        assert!(
            k2.len() == n && g1.len() == n && g2.len() == n,
            "kernels and gradients must have the same length"
        );
        match self {
            Objective::KernelSimilarity => {
                let dot: f64 = k1.iter().zip(k2).map(|(a, b)| a * b).sum();
                for ((g1, g2), (a, b)) in g1.iter_mut().zip(g2.iter_mut()).zip(k1.iter().zip(k2)) {
                    *g1 = 2.0 * dot * b;
                    *g2 = 2.0 * dot * a;
                }
                dot * dot
            }
            Objective::ConvSimilarity => {
                g1.fill(0.0);
                g2.fill(0.0);
                let mut loss = 0.0;
                for m in 0..n {
                    let auto = |k: &[f64]| -> f64 { (0..n - m).map(|p| k[p] * k[p + m]).sum() };
                    let (a1, a2) = (auto(k1), auto(k2));
                    // Lags m and -m both count, except m = 0.
                    let weight = if m == 0 { 1.0 } else { 2.0 };
                    loss += weight * a1 * a2;
                    // d auto(K)[m] / dK[p] = K[p+m] + K[p-m]; for m = 0 both terms are K[p].
                    let (s1, s2) = (weight * a2, weight * a1);
                    for p in 0..n - m {
                        g1[p] += s1 * k1[p + m];
                        g1[p + m] += s1 * k1[p];
                        g2[p] += s2 * k2[p + m];
                        g2[p + m] += s2 * k2[p];
                    }
                }
                loss
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // K1 = [1, 2], K2 = [3, 4]: <K1,K2> = 11; K1 ⊛ K2 = [4, 11, 6], squares sum to 173.
        let (k1, k2) = ([1.0, 2.0], [3.0, 4.0]);
        let (mut g1, mut g2) = ([0.0; 2], [0.0; 2]);
        let kernel = Objective::KernelSimilarity.evaluate(&k1, &k2, &mut g1, &mut g2);
        assert_eq!(kernel, 121.0);
        assert_eq!((g1, g2), ([66.0, 88.0], [22.0, 44.0]));
        let conv = Objective::ConvSimilarity.evaluate(&k1, &k2, &mut g1, &mut g2);
        assert_eq!(conv, 173.0);
    }
}
