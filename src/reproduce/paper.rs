//! The paper's published rows: the setting of each (kernel size, optimizer, and the learning rate
//! and iteration count of Tables 7, 8 and 9) and the figures it reports (Tables 1, 2/3 and 6), as
//! cleaned in paper-tables.md (the text extraction garbled the `N` column; rows are N = 2, 9, 16,
//! each with Adam then SGD). Table 3's correlation columns are Table 2's.

use super::{Figures, Optimizer};

/// One published row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRow {
    pub n: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub iterations: usize,
    pub figures: Figures,
}

/// `[corr mean, corr std, reduction frequency, decrease mean, decrease std, increase mean,
/// increase std]`, in the paper's column order.
const fn row(n: usize, optimizer: Optimizer, lr: f64, iterations: usize, f: [f64; 7]) -> PaperRow {
    PaperRow {
        n,
        optimizer,
        lr,
        iterations,
        figures: Figures {
            corr_mean: f[0],
            corr_std: f[1],
            reduction_frequency: f[2],
            decrease_mean: f[3],
            decrease_std: f[4],
            increase_mean: f[5],
            increase_std: f[6],
        },
    }
}

use Optimizer::{Adam, Sgd};

/// Table 1: minimizing `<K1,K2>²`; hyper-parameters from Table 7.
pub const TABLE1: [PaperRow; 6] = [
    row(
        2,
        Adam,
        0.1,
        250,
        [0.67, 0.28, 91.8, 92.95, 15.24, 14.12e3, 71.12e3],
    ),
    row(
        2,
        Sgd,
        0.1,
        250,
        [0.35, 0.85, 67.5, 78.75, 24.71, 13.82e4, 10.60e5],
    ),
    row(
        9,
        Adam,
        0.1,
        250,
        [0.54, 0.33, 82.0, 86.12, 21.14, 17.52e4, 20.85e5],
    ),
    row(
        9,
        Sgd,
        0.1,
        250,
        [0.25, 0.87, 60.7, 67.82, 29.42, 55.76e4, 87.15e5],
    ),
    row(
        16,
        Adam,
        0.1,
        250,
        [0.47, 0.36, 77.6, 81.88, 23.48, 17.10e4, 20.50e5],
    ),
    row(
        16,
        Sgd,
        0.1,
        300,
        [0.54, 0.33, 71.6, 69.84, 28.19, 97.62e2, 74.75e3],
    ),
];

/// Tables 2 and 3: minimizing `||K1 ⊛ K2||²`, full cross-correlation; hyper-parameters from
/// Table 8.
pub const TABLE3: [PaperRow; 6] = [
    row(
        2,
        Adam,
        0.1,
        300,
        [0.80, 0.27, 100.0, 100.00, 0.00, 0.0, 0.0],
    ),
    row(2, Sgd, 0.2, 350, [0.90, 0.21, 100.0, 99.91, 1.28, 0.0, 0.0]),
    row(
        9,
        Adam,
        0.1,
        400,
        [0.78, 0.27, 100.0, 99.98, 0.23, 0.0, 0.0],
    ),
    row(
        9,
        Sgd,
        0.07,
        550,
        [0.85, 0.25, 100.0, 99.68, 3.21, 0.0, 0.0],
    ),
    row(
        16,
        Adam,
        0.2,
        450,
        [0.71, 0.30, 100.0, 99.95, 1.26, 0.0, 0.0],
    ),
    row(
        16,
        Sgd,
        0.035,
        1500,
        [0.86, 0.25, 100.0, 99.78, 3.04, 0.0, 0.0],
    ),
];

/// Table 6: minimizing `||K1 ⊛ K2||²`, feature maps from valid cross-correlation;
/// hyper-parameters from Table 9.
pub const TABLE6: [PaperRow; 6] = [
    row(
        2,
        Adam,
        0.1,
        300,
        [0.798, 0.272, 100.0, 99.99, 0.02, 0.0, 0.0],
    ),
    row(
        2,
        Sgd,
        0.1,
        300,
        [0.90, 0.19, 99.6, 99.86, 1.34, 216.04, 154.33],
    ),
    row(
        9,
        Adam,
        0.1,
        300,
        [0.751, 0.296, 100.0, 99.96, 0.385, 0.0, 0.0],
    ),
    row(
        9,
        Sgd,
        0.05,
        400,
        [0.86, 0.23, 99.5, 99.57, 3.77, 3336.06, 5322.40],
    ),
    row(
        16,
        Adam,
        0.05,
        500,
        [0.77, 0.28, 99.9, 99.80, 2.49, 688.54, 0.0],
    ),
    row(
        16,
        Sgd,
        0.01,
        700,
        [0.851, 0.23, 98.6, 98.68, 8.20, 10.90e4, 40.35e4],
    ),
];
