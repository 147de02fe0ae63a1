//! Test accuracy.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use crate::data::{Batches, Dataset, Normalization};
use crate::Network;

/// Images per forward pass when evaluating.
pub const EVAL_BATCH: usize = 500;

/// How many images a network classifies correctly.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Accuracy {
    pub correct: usize,
    pub images: usize,
}

impl Accuracy {
    /// In percent.
    pub fn percent(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            100.0 * self.correct as f64 / self.images as f64
        }
    }
}

/// The number of rows whose largest logit is at the label.
pub fn count_correct(logits: &Tensor, labels: &Tensor) -> candle_core::Result<usize> {
    let predicted = logits.argmax(1)?;
    let hits = predicted.eq(&labels.to_dtype(predicted.dtype())?)?;
    Ok(hits.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize)
}

/// Classifies every image of `dataset` with batch norm in evaluation mode.
pub fn evaluate(
    network: &Network,
    dataset: &Dataset,
    normalization: Normalization,
    device: &Device,
) -> Result<Accuracy> {
    let mut accuracy = Accuracy {
        correct: 0,
        images: 0,
    };
    for batch in Batches::sequential(dataset, EVAL_BATCH, normalization, device) {
        let batch = batch?;
        let logits = network.forward_t(&batch.images, false)?;
        accuracy.correct += count_correct(&logits, &batch.labels)?;
        accuracy.images += batch.labels.dim(0)?;
    }
    Ok(accuracy)
}
