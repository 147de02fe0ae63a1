//! Per-filter quantities of a conv weight read in place: every filter's squared norm, and the
//! filters scaled to unit norm. The metrics, the probe and the engine's record figures all
//! start from them.

use candle_core::{Tensor, WithDType};
use rayon::prelude::*;

use super::values::{row_dots, with_values, Values};
use crate::Result;

/// The sum of squares of every output filter, accumulated in f64.
pub fn filter_squares(weight: &Tensor) -> Result<Vec<f64>> {
    let s = weight.dim(0)?;
    let len = weight.elem_count() / s.max(1);
    if len == 0 {
        return Ok(vec![0.0; s]);
    }
    row_dots(weight, weight, len)
}

/// Every filter divided by its norm, `squares` holding their squared norms (zero filters stay
/// zero), in one pass over the weight.
pub(crate) fn unit_filters(weight: &Tensor, squares: &[f64]) -> Result<Tensor> {
    let len = weight.elem_count() / squares.len().max(1);
    if len == 0 {
        return Ok(weight.clone());
    }
    let norms: Vec<f64> = squares.iter().map(|q| q.sqrt()).collect();
    let (shape, device) = (weight.shape(), weight.device());
    // f32 and f64 stay as they are; other dtypes are divided in f64.
    Ok(with_values(weight, |values| match values {
        Values::F32(v) => Tensor::from_vec(divided(v, len, &norms), shape, device),
        Values::F64(v) => Tensor::from_vec(divided(v, len, &norms), shape, device),
    })??)
}

/// Rows of `len` values, each divided by its norm (by 1 where the norm is 0).
fn divided<T: WithDType>(values: &[T], len: usize, norms: &[f64]) -> Vec<T> {
    let mut out = values.to_vec();
    out.par_chunks_mut(len).zip(norms).for_each(|(row, &n)| {
        let n = T::from_f64(if n > 0.0 { n } else { 1.0 });
        row.iter_mut().for_each(|x| *x /= n);
    });
    out
}
