//! The figures the paper reports for one row, computed from its episodes.

use super::Episode;

/// One row of Tables 1-3 and 6, percentages as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Figures {
    /// Mean over episodes of the Pearson correlation between the objective and `|similarity|`.
    pub corr_mean: f64,
    /// Their standard deviation.
    pub corr_std: f64,
    /// Percentage of episodes whose `|similarity|` decreased.
    pub reduction_frequency: f64,
    /// Mean relative decrease `100 (|s_start| - |s_end|) / |s_start|` over decreasing episodes.
    pub decrease_mean: f64,
    pub decrease_std: f64,
    /// Mean relative growth `100 (|s_end| - |s_start|) / |s_start|` over the other episodes.
    pub increase_mean: f64,
    pub increase_std: f64,
}

impl Figures {
    /// Summarizes a row's episodes. Standard deviations are population ones (the paper reports 0
    /// for a single increasing episode, which a sample deviation could not give); the mean and
    /// deviation of an empty set are reported as 0, as the paper does. An episode whose kernels
    /// diverged (non-finite similarity at the end) counts as not reduced, and is left out of the
    /// increase and correlation figures, which it would turn into NaN.
    pub fn summarize(episodes: &[Episode]) -> Self {
        let correlations: Vec<f64> = episodes.iter().filter_map(|e| e.correlation).collect();
        let (decreases, others): (Vec<f64>, Vec<f64>) =
            episodes.iter().map(Episode::change).partition(|&r| r > 0.0);
        let decreases: Vec<f64> = decreases.iter().map(|r| 100.0 * r).collect();
        let increases: Vec<f64> = others
            .iter()
            .filter(|r| r.is_finite())
            .map(|r| -100.0 * r)
            .collect();
        let (decrease_mean, decrease_std) = mean_std(&decreases);
        let (increase_mean, increase_std) = mean_std(&increases);
        let (corr_mean, corr_std) = mean_std(&correlations);
        Self {
            corr_mean,
            corr_std,
            reduction_frequency: 100.0 * decreases.len() as f64 / episodes.len() as f64,
            decrease_mean,
            decrease_std,
            increase_mean,
            increase_std,
        }
    }
}

/// Mean and population standard deviation; `(0, 0)` for an empty slice.
fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(start: f64, end: f64) -> Episode {
        Episode {
            start,
            end,
            correlation: Some(0.5),
        }
    }

    #[test]
    fn splits_decreases_and_increases() {
        let f = Figures::summarize(&[episode(2.0, 1.0), episode(4.0, 0.0), episode(1.0, 3.0)]);
        assert!((f.reduction_frequency - 200.0 / 3.0).abs() < 1e-12);
        assert_eq!((f.decrease_mean, f.decrease_std), (75.0, 25.0));
        assert_eq!((f.increase_mean, f.increase_std), (200.0, 0.0));
        assert_eq!((f.corr_mean, f.corr_std), (0.5, 0.0));
    }

    #[test]
    fn diverged_episodes_count_as_not_reduced() {
        let diverged = Episode {
            start: 1.0,
            end: f64::NAN,
            correlation: None,
        };
        let f = Figures::summarize(&[episode(2.0, 1.0), diverged]);
        assert_eq!(f.reduction_frequency, 50.0);
        assert_eq!((f.increase_mean, f.increase_std), (0.0, 0.0));
    }
}
