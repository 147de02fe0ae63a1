//! One layer's measurements. A run measures each layer twice, before and after minimizing it,
//! on the same inputs; drawing the noise and copying it into patches cost as much as measuring
//! a wide layer's sample of filters, so a session makes them once for the layer and its
//! measurements share them. A session lives as long as its layer: nothing is kept between
//! layers.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{DType, Tensor};

use super::measurement::Measurement;
use super::pair_sums::{factored_similarity, FeatureSimilarity};
use super::patches::{PatchLayout, Patches};
use super::sample::MeanResponse;
use super::{feature_maps, gram, Probe, ProbePadding};
use crate::host::filter_squares;
use crate::host::values::run_moments;
use crate::{Error, Result};

/// Patches up to this size, or twice the layer's, are kept for a layer's second measurement
/// (about what the default probe makes of a `[512, 512, 3, 3]` layer).
const KEEP_PATCHES_BYTES: usize = 16 << 20;

/// The probe's measurements of one layer ([`Probe::layer`]).
pub struct LayerSession<'a> {
    probe: &'a Probe,
    layer: u64,
    inputs: OnceLock<LayerInputs>,
}

impl<'a> LayerSession<'a> {
    pub(super) fn new(probe: &'a Probe, layer: u64) -> Self {
        Self {
            probe,
            layer,
            inputs: OnceLock::new(),
        }
    }

    /// Mean `|cos|` between the feature maps of filter pairs of a conv2d weight `[S, C, kh, kw]`.
    /// `None` for weights that are not conv2d or have a single filter.
    pub fn feature_cosine(&self, weight: &Tensor) -> Result<Option<f64>> {
        Ok(self.feature_similarity(weight, None)?.map(|f| f.cosine))
    }

    /// Both figures of a conv2d weight `[S, C, kh, kw]`; `None` for weights that are not conv2d
    /// or have a single filter. `squares` are the filters' squared norms
    /// ([`crate::host::filter_squares`]) where the caller has them: a wide layer's estimate
    /// needs them.
    pub fn feature_similarity(
        &self,
        weight: &Tensor,
        squares: Option<&[f64]>,
    ) -> Result<Option<FeatureSimilarity>> {
        let padding = self.probe.settings.padding;
        self.with_inputs(weight, |inputs| {
            let (s, _, kh, kw) = weight.dims4()?;
            let sample = self.probe.settings.sample.for_layer(s, self.layer);
            let plan = Measurement::plan(weight, &inputs.inputs, padding, &sample)?;
            // The same for the layer's second measurement: made once.
            let layer_bytes = weight.elem_count() * weight.dtype().size_in_bytes();
            let keep = KEEP_PATCHES_BYTES.max(2 * layer_bytes);
            let patches = inputs.patches((kh, kw), padding, plan.dtype, plan.layout, keep)?;
            let figures = if plan.factored {
                factored_similarity(&plan.measured, &patches)?
            } else {
                FeatureSimilarity::from_maps(&patches.maps(&plan.measured)?)?
            };
            match sample.picks().filter(|_| plan.estimated) {
                Some(picks) => {
                    let squares = match squares {
                        Some(squares) => squares.to_vec(),
                        None => filter_squares(weight)?,
                    };
                    let response =
                        MeanResponse::new(weight, &squares, inputs.variance()?, &patches)?;
                    Ok(response.estimate(&figures, picks))
                }
                None => Ok(figures),
            }
        })
    }

    /// `<F_i, F_j>` for every input and filter pair, `[B, S, S]` in f64 (see
    /// [`super::feature_gram`]). `None` for weights that are not conv2d or have a single filter.
    pub fn inner_products(&self, weight: &Tensor) -> Result<Option<Tensor>> {
        let padding = self.probe.settings.padding;
        self.with_inputs(weight, |x| gram(&feature_maps(weight, &x.inputs, padding)?))
    }

    /// `measure` of the layer's inputs for a conv2d weight; `None` for weights that are not
    /// conv2d or have a single filter.
    fn with_inputs<R>(
        &self,
        weight: &Tensor,
        measure: impl FnOnce(&LayerInputs) -> Result<R>,
    ) -> Result<Option<R>> {
        let &[s, c, _, _] = weight.dims() else {
            return Ok(None);
        };
        if s < 2 {
            return Ok(None);
        }
        let figures = measure(self.inputs(c)?).map_err(|e| match e {
            Error::Probe(m) => Error::Probe(format!("{m}; use a larger --probe-size")),
            other => other,
        })?;
        Ok(Some(figures))
    }

    /// The layer's inputs, drawn at the first measurement.
    fn inputs(&self, channels: usize) -> Result<&LayerInputs> {
        if let Some(inputs) = self.inputs.get() {
            if inputs.channels() != channels {
                return Err(Error::Probe(format!(
                    "layer {}: measured with {channels} input channels after {}; a session \
                     measures one layer",
                    self.layer,
                    inputs.channels()
                )));
            }
            return Ok(inputs);
        }
        let inputs = LayerInputs::new(self.probe.inputs(channels, self.layer)?);
        Ok(self.inputs.get_or_init(|| inputs))
    }
}

/// A layer's inputs and what the probe derives from them.
struct LayerInputs {
    inputs: Tensor,
    /// The variance of the inputs' values, once asked for ([`MeanResponse`]).
    variance: OnceLock<f64>,
    /// The patches last asked for, by kernel size, dtype and layout.
    patches: Mutex<Option<(PatchKey, Arc<Patches>)>>,
}

type PatchKey = ((usize, usize), DType, PatchLayout);

impl LayerInputs {
    fn new(inputs: Tensor) -> Self {
        Self {
            inputs,
            variance: OnceLock::new(),
            patches: Mutex::new(None),
        }
    }

    fn channels(&self) -> usize {
        self.inputs.dim(1).unwrap_or(0)
    }

    /// The patches for a kernel, kept for the next call if they take at most `keep_bytes`: they
    /// stay in memory while the layer is minimized, which must not grow much past the layer
    /// and its optimizer state.
    pub(super) fn patches(
        &self,
        kernel: (usize, usize),
        padding: ProbePadding,
        dtype: DType,
        layout: PatchLayout,
        keep_bytes: usize,
    ) -> Result<Arc<Patches>> {
        let mut last = self.patches.lock().unwrap_or_else(|e| e.into_inner());
        let key = (kernel, dtype, layout);
        // Taken, not borrowed: patches for another kernel are dropped before new ones are made.
        if let Some((k, patches)) = last.take() {
            if k == key {
                *last = Some((k, patches.clone()));
                return Ok(patches);
            }
        }
        let patches = Arc::new(Patches::new(&self.inputs, kernel, padding, dtype, layout)?);
        if patches.bytes() <= keep_bytes {
            *last = Some((key, patches.clone()));
        }
        Ok(patches)
    }

    /// The variance of the inputs' values.
    fn variance(&self) -> Result<f64> {
        if let Some(&variance) = self.variance.get() {
            return Ok(variance);
        }
        // Runs of equal length: the means over all values are the means of the runs' means.
        let (h, w) = (self.inputs.dim(2)?, self.inputs.dim(3)?);
        let runs = run_moments(&self.inputs, h * w)?;
        let count = runs.len() as f64;
        let mean = runs.iter().map(|[m, _]| m).sum::<f64>() / count;
        let square = runs.iter().map(|[_, q]| q).sum::<f64>() / count;
        let variance = (square - mean * mean).max(0.0);
        Ok(*self.variance.get_or_init(|| variance))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter_sample::PairSampling;
    use crate::probe::{ProbeSettings, ProbeSource};
    use candle_core::Device;

    fn probe() -> Probe {
        let settings = ProbeSettings {
            source: ProbeSource::Random { seed: 1 },
            batch: 3,
            height: 9,
            width: 7,
            padding: ProbePadding::Same,
            sample: PairSampling::EXACT,
        };
        Probe::new(settings, &Device::Cpu).unwrap()
    }

    #[test]
    fn patches_are_kept_for_the_second_measurement_within_their_bound() {
        let inputs = LayerInputs::new(probe().inputs(4, 0).unwrap());
        let patches = |keep: usize, kernel: (usize, usize)| {
            inputs
                .patches(
                    kernel,
                    ProbePadding::Same,
                    DType::F32,
                    PatchLayout::Rows,
                    keep,
                )
                .unwrap()
        };
        let first = patches(usize::MAX, (3, 3));
        assert!(Arc::ptr_eq(&first, &patches(0, (3, 3))));
        // Another kernel replaces them; patches over the bound are not kept.
        let other = patches(0, (1, 3));
        assert!(!Arc::ptr_eq(&other, &patches(0, (1, 3))));
        assert!(!Arc::ptr_eq(&first, &patches(usize::MAX, (3, 3))));
        assert_eq!(first.bytes(), 4 * 9 * 3 * 9 * 7 * 4);
    }

    #[test]
    fn a_session_measures_on_the_layers_inputs_and_refuses_another_layers_shape() {
        let probe = probe();
        let session = probe.layer(3);
        let weight = Tensor::randn(0f32, 1., (5, 4, 3, 3), &Device::Cpu).unwrap();
        let first = session.feature_similarity(&weight, None).unwrap().unwrap();
        // The same figures as a measurement of its own on the inputs of layer 3, not layer 4's.
        assert_eq!(probe.feature_similarity(&weight, 3).unwrap(), Some(first));
        assert_ne!(probe.feature_similarity(&weight, 4).unwrap(), Some(first));
        let wider = Tensor::randn(0f32, 1., (5, 6, 3, 3), &Device::Cpu).unwrap();
        let error = session.feature_similarity(&wider, None).unwrap_err();
        assert!(
            error.to_string().contains("6 input channels after 4"),
            "{error}"
        );
    }
}
