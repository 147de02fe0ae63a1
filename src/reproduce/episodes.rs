//! One row of an experiment: all its episodes drawn, optimized and measured together.
//!
//! An episode draws an input `X ~ U(0,1)` of [`INPUT_SIZE`] values and two kernels
//! `K1, K2 ~ U(-1,1)` of `N` taps, minimizes an [`Objective`] of the kernels with Adam or SGD, and
//! records, before the first step and after every step, the objective and the similarity of the
//! feature maps `K1 ⊛ X`, `K2 ⊛ X`. The row's state is one `[episodes, 2, N]` array of kernels
//! (plus Adam's first and second moment of every weight), updated together, iteration by
//! iteration, as a batched PyTorch implementation would do.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::correlation::Comoments;
use super::{window_gram, Objective, Similarity};
use crate::optim::AdamConfig;

/// Size `M` of the input vector of every episode (paper, Section 3.1).
pub const INPUT_SIZE: usize = 64;

/// The optimizer of a row, with PyTorch's semantics: `torch.optim.Adam` with default betas and
/// eps, or `torch.optim.SGD` without momentum (`w -= lr * g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    Sgd,
}

impl Optimizer {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Adam => "adam",
            Optimizer::Sgd => "sgd",
        }
    }
}

/// Everything that defines one row's run.
#[derive(Debug, Clone, Copy)]
pub struct RowSetup {
    /// Kernel size `N`.
    pub n: usize,
    pub objective: Objective,
    /// Zeros on each side of the input when computing feature maps (`N - 1` for full, 0 for valid).
    pub pad: usize,
    pub similarity: Similarity,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub iterations: usize,
    pub episodes: usize,
    /// Seeds the draws: rows with the same seed and `N` see the same inputs and kernels, episode
    /// by episode, so they are paired comparisons.
    pub seed: u64,
}

/// What one episode measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// `|similarity|` of the feature maps before the first step.
    pub start: f64,
    /// `|similarity|` after the last step.
    pub end: f64,
    /// Pearson correlation between the objective and `|similarity|` over the iterations; `None`
    /// where undefined (a constant series).
    pub correlation: Option<f64>,
}

impl Episode {
    /// Whether the kernels blew up (SGD with a learning rate too large for the draw).
    pub fn diverged(&self) -> bool {
        !self.end.is_finite()
    }

    /// The relative change `r = (|s_start| - |s_end|) / |s_start|`: a decrease when positive.
    pub fn change(&self) -> f64 {
        (self.start - self.end) / self.start
    }
}

/// Runs every episode of a row. Deterministic for a seed.
pub fn run_episodes(setup: &RowSetup) -> Vec<Episode> {
    let RowSetup { n, episodes, .. } = *setup;
    let width = 2 * n;
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let mut kernels = vec![0.0; episodes * width];
    let mut grams = Vec::with_capacity(episodes * n * n);
    for pair in kernels.chunks_exact_mut(width) {
        let x: Vec<f64> = (0..INPUT_SIZE).map(|_| rng.random::<f64>()).collect();
        grams.extend(window_gram(&x, n, setup.pad));
        pair.iter_mut()
            .for_each(|k| *k = rng.random_range(-1.0..1.0));
    }
    let mut moments = match setup.optimizer {
        Optimizer::Adam => vec![(0.0, 0.0); kernels.len()],
        Optimizer::Sgd => Vec::new(),
    };
    let adam = AdamConfig {
        lr: setup.lr,
        ..AdamConfig::default()
    };

    let mut traces = vec![Comoments::default(); episodes];
    let mut start = vec![0.0; episodes];
    let mut end = vec![0.0; episodes];
    let mut grad = vec![0.0; width];
    for t in 0..=setup.iterations {
        let factors = adam.step(t + 1).factors::<f64>();
        for (e, pair) in kernels.chunks_exact_mut(width).enumerate() {
            let (k1, k2) = pair.split_at(n);
            let similarity = setup
                .similarity
                .measure(k1, k2, &grams[e * n * n..][..n * n])
                .abs();
            let (g1, g2) = grad.split_at_mut(n);
            let loss = setup.objective.evaluate(k1, k2, g1, g2);
            traces[e].push(loss, similarity);
            if t == 0 {
                start[e] = similarity;
            }
            if t == setup.iterations {
                end[e] = similarity;
                continue;
            }
            match setup.optimizer {
                Optimizer::Adam => {
                    let state = &mut moments[e * width..][..width];
                    for ((w, (m, v)), g) in pair.iter_mut().zip(state).zip(&grad) {
                        factors.apply(w, m, v, *g);
                    }
                }
                Optimizer::Sgd => {
                    for (w, g) in pair.iter_mut().zip(&grad) {
                        *w -= setup.lr * g;
                    }
                }
            }
        }
    }
    (0..episodes)
        .map(|e| Episode {
            start: start[e],
            end: end[e],
            correlation: traces[e].pearson(),
        })
        .collect()
}
