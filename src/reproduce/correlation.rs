//! The Pearson correlation of two series, accumulated one pair at a time.
//!
//! An episode records its objective and its feature-map similarity at every iteration; keeping
//! the running co-moments (Welford's update) instead of the whole series keeps a batch's memory
//! independent of the number of iterations, and stays accurate when the objective falls by many
//! orders of magnitude.

/// Running means and co-moments of `(x, y)` pairs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Comoments {
    count: f64,
    mean_x: f64,
    mean_y: f64,
    m2_x: f64,
    m2_y: f64,
    c_xy: f64,
}

impl Comoments {
    /// Adds one pair.
    pub fn push(&mut self, x: f64, y: f64) {
        self.count += 1.0;
        let dx = x - self.mean_x;
        self.mean_x += dx / self.count;
        let dy = y - self.mean_y;
        self.mean_y += dy / self.count;
        self.m2_x += dx * (x - self.mean_x);
        self.m2_y += dy * (y - self.mean_y);
        self.c_xy += dx * (y - self.mean_y);
    }

    /// The Pearson correlation; `None` when a series is constant or not finite, where it is
    /// undefined.
    pub fn pearson(&self) -> Option<f64> {
        let r = self.c_xy / (self.m2_x * self.m2_y).sqrt();
        (self.m2_x > 0.0 && self.m2_y > 0.0 && r.is_finite()).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_two_pass_formula() {
        let x = [1.0, 3.0, 2.0, 7.0, 5.0];
        let y = [2.0, 1.0, 4.0, 8.0, 3.0];
        let mut c = Comoments::default();
        for (a, b) in x.iter().zip(&y) {
            c.push(*a, *b);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mx, my) = (mean(&x), mean(&y));
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        let expected = sxy / (sxx * syy).sqrt();
        assert!((c.pearson().unwrap() - expected).abs() < 1e-14);
    }

    #[test]
    fn constant_series_has_no_correlation() {
        let mut c = Comoments::default();
        for i in 0..4 {
            c.push(i as f64, 2.0);
        }
        assert_eq!(c.pearson(), None);
    }
}
