//! Arithmetic on tensors in CPU memory, the leaf of the compute core: everything above it (the
//! engines' figures, the metrics, the probe) calls down into it, and it calls nothing of theirs.
//!
//! - [`gemm`]: matrix products straight through gemm, operands read with their strides.
//! - [`values`]: a tensor's values read in place; row dot products, moments, partial sums.
//! - [`upper_gram`]: the sums over the upper triangle of a Gram matrix, in cache-sized tiles.
//! - [`filters`]: every filter's squared norm, and the filters scaled to unit norm.

pub(crate) mod filters;
pub(crate) mod gemm;
mod upper_gram;
pub(crate) mod values;

pub(crate) use filters::{filter_squares, unit_filters};
pub(crate) use upper_gram::UpperGram;
