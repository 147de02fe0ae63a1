//! The layers the networks are built from, with PyTorch's initializations.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use candle_core::{DType, Module, ModuleT, Tensor, Var};
use candle_nn::{BatchNorm, Linear};

use super::conv_op::Conv2dOp;
use super::cpu_ops::BatchNormTrain;

use crate::params::{Fill, Scope};

/// How a conv or linear weight starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// PyTorch's default: `kaiming_uniform_(a=√5)`, i.e. `U(±1/√fan_in)`.
    TorchDefault,
    /// `kaiming_normal_` (fan-in, ReLU gain): `N(0, 2/fan_in)`, as `pytorch_resnet_cifar10` does.
    KaimingNormal,
}

impl WeightInit {
    fn fill(self, fan_in: usize) -> Fill {
        match self {
            WeightInit::TorchDefault => Fill::Uniform(1.0 / (fan_in as f32).sqrt()),
            WeightInit::KaimingNormal => Fill::Normal((2.0 / fan_in as f32).sqrt()),
        }
    }
}

/// The shape of a square 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

/// A conv layer that remembers the name of its weight, for L_CS.
pub struct Conv {
    pub weight_name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv {
    pub fn new(scope: &Scope, spec: ConvSpec, init: WeightInit) -> Result<Self> {
        let fan_in = spec.in_channels * spec.kernel * spec.kernel;
        let weight = scope.get(
            "weight",
            &[
                spec.out_channels,
                spec.in_channels,
                spec.kernel,
                spec.kernel,
            ],
            init.fill(fan_in),
        )?;
        let bias = if spec.bias {
            let bound = 1.0 / (fan_in as f32).sqrt();
            Some(scope.get("bias", &[spec.out_channels], Fill::Uniform(bound))?)
        } else {
            None
        };
        Ok(Self {
            weight_name: scope.name("weight"),
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
        })
    }
}

thread_local! {
    /// The input of every conv forward on this thread, by weight name, while
    /// [`capture_conv_inputs`] runs.
    static CAPTURED: RefCell<Option<Vec<(String, Tensor)>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns its result with the input of every conv it ran on this thread (the
/// networks run their layers on the calling thread), in the order they ran.
pub fn capture_conv_inputs<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, Tensor)>) {
    let outer = CAPTURED.replace(Some(Vec::new()));
    let result = f();
    let captured = CAPTURED.replace(outer).unwrap_or_default();
    (result, captured)
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        CAPTURED.with_borrow_mut(|captured| {
            if let Some(list) = captured {
                list.push((self.weight_name.clone(), x.clone()));
            }
        });
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = Conv2dOp {
                stride: self.stride,
                padding: self.padding,
            };
            let bias = match &self.bias {
                Some(bias) => bias.clone(),
                None => Tensor::zeros(self.weight.dim(0)?, DType::F32, x.device())?,
            };
            return x.contiguous()?.apply_op3(&self.weight, &bias, op);
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// `BatchNorm2d` with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub struct BatchNorm2d {
    /// candle-nn's layer over the same variables, for evaluation mode.
    layer: BatchNorm,
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
    /// The weight of a new batch in the running statistics, as f64 bits: 0.1, or 1/(k+1) for
    /// the k-th batch while recalibrating (a plain average of the batches' statistics).
    momentum: AtomicU64,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    pub fn new(scope: &Scope, features: usize) -> Result<Self> {
        let running_mean =
            Var::from_tensor(&scope.get("running_mean", &[features], Fill::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&scope.get("running_var", &[features], Fill::Const(1.0))?)?;
        let weight = scope.get("weight", &[features], Fill::Const(1.0))?;
        let bias = scope.get("bias", &[features], Fill::Const(0.0))?;
        let layer = BatchNorm::new(
            features,
            running_mean.as_tensor().clone(),
            running_var.as_tensor().clone(),
            weight.clone(),
            bias.clone(),
            BN_EPS,
        )?;
        Ok(Self {
            layer,
            running_mean,
            running_var,
            weight,
            bias,
            momentum: AtomicU64::new(BN_MOMENTUM.to_bits()),
        })
    }

    /// Sets the weight of the next batches in the running statistics.
    pub fn set_momentum(&self, momentum: f64) {
        self.momentum.store(momentum.to_bits(), Ordering::Relaxed);
    }

    /// Back to PyTorch's default momentum, 0.1.
    pub fn reset_momentum(&self) {
        self.set_momentum(BN_MOMENTUM);
    }

    /// Batch statistics (and a running-statistics update) when `train`, running ones otherwise.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let momentum = f64::from_bits(self.momentum.load(Ordering::Relaxed));
        if !train {
            return self.layer.forward_t(x, false);
        }
        if !(x.device().is_cpu() && x.dtype() == DType::F32) {
            return BatchNorm::new_with_momentum(
                self.running_mean.dim(0)?,
                self.running_mean.as_tensor().clone(),
                self.running_var.as_tensor().clone(),
                self.weight.clone(),
                self.bias.clone(),
                BN_EPS,
                momentum,
            )?
            .forward_t(x, true);
        }
        let statistics = Arc::new(Mutex::new(Vec::new()));
        let op = BatchNormTrain {
            eps: BN_EPS,
            statistics: statistics.clone(),
        };
        let y = x.contiguous()?.apply_op3(&self.weight, &self.bias, op)?;
        let (batch, _, height, width) = x.dims4()?;
        let n = (batch * height * width) as f64;
        let statistics = statistics.lock().expect("statistics poisoned");
        let update = |var: &Var, value: &dyn Fn(f64, f64) -> f64| {
            let old = var.as_tensor().to_vec1::<f32>()?;
            let new: Vec<f32> = old
                .iter()
                .zip(statistics.iter())
                .map(|(&r, &(mean, variance))| {
                    ((1.0 - momentum) * f64::from(r) + momentum * value(mean, variance)) as f32
                })
                .collect();
            var.set(&Tensor::new(new, x.device())?)
        };
        update(&self.running_mean, &|mean, _| mean)?;
        // PyTorch keeps the unbiased variance.
        update(&self.running_var, &|_, variance| {
            variance * n / (n - 1.0).max(1.0)
        })?;
        Ok(y)
    }
}

/// `nn.Linear` with a bias.
pub fn linear(scope: &Scope, inputs: usize, outputs: usize, init: WeightInit) -> Result<Linear> {
    let weight = scope.get("weight", &[outputs, inputs], init.fill(inputs))?;
    let bound = 1.0 / (inputs as f32).sqrt();
    let bias = scope.get("bias", &[outputs], Fill::Uniform(bound))?;
    Ok(Linear::new(weight, Some(bias)))
}
