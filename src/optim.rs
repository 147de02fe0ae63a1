//! Adam and SGD with PyTorch's semantics.
//!
//! Given the same weights, gradients and hyper-parameters, [`Adam`] follows `torch.optim.Adam`
//! (bias-corrected, `eps` added after the square root, no weight decay, no amsgrad) and [`Sgd`]
//! follows `torch.optim.SGD` (optional momentum with PyTorch's formula `b = μ b + g`, `w -= lr b`,
//! no dampening, no Nesterov). Both implement [`candle_nn::Optimizer`], so they drop into a candle
//! training loop. The fused CPU engine applies the same per-element rules ([`AdamFactors::apply`])
//! in place.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::{Error, Result};

/// Adam hyper-parameters; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    /// The scalar factors of step `t` (1-based), computed in f64 as PyTorch computes them in Python.
    pub fn step(&self, t: usize) -> AdamStep {
        let bias1 = 1.0 - self.beta1.powi(t as i32);
        let bias2 = 1.0 - self.beta2.powi(t as i32);
        AdamStep {
            one_minus_beta1: 1.0 - self.beta1,
            beta2: self.beta2,
            one_minus_beta2: 1.0 - self.beta2,
            step_size: self.lr / bias1,
            bias2_sqrt: bias2.sqrt(),
            eps: self.eps,
        }
    }

    fn validate(&self) -> Result<()> {
        let ok = self.lr.is_finite()
            && self.lr >= 0.0
            && (0.0..1.0).contains(&self.beta1)
            && (0.0..1.0).contains(&self.beta2)
            && self.eps.is_finite()
            && self.eps >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidOptimizer(format!(
                "Adam needs lr >= 0, betas in [0, 1) and eps >= 0; got {self:?}"
            )))
        }
    }
}

/// The per-step factors of Adam, in f64; [`AdamFactors::apply`] is the per-element update.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub one_minus_beta1: f64,
    pub beta2: f64,
    pub one_minus_beta2: f64,
    pub step_size: f64,
    pub bias2_sqrt: f64,
    pub eps: f64,
}

impl AdamStep {
    /// The factors cast once to the element type.
    pub fn factors<T: num_traits::Float>(&self) -> AdamFactors<T> {
        let cast = |x: f64| T::from(x).expect("finite factor");
        AdamFactors {
            one_minus_beta1: cast(self.one_minus_beta1),
            beta2: cast(self.beta2),
            one_minus_beta2: cast(self.one_minus_beta2),
            scaled_step: cast(self.step_size * self.bias2_sqrt),
            scaled_eps: cast(self.eps * self.bias2_sqrt),
        }
    }
}

/// [`AdamStep`] in the element type.
#[derive(Debug, Clone, Copy)]
pub struct AdamFactors<T> {
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    /// `step_size * sqrt(bc2)`.
    scaled_step: T,
    /// `eps * sqrt(bc2)`.
    scaled_eps: T,
}

impl<T: num_traits::Float> AdamFactors<T> {
    /// One element of PyTorch's `_single_tensor_adam`:
    /// `m.lerp_(g, 1-β1)`, `v = β2 v + (1-β2) g²`, `w -= step_size * m / (sqrt(v)/sqrt(bc2) + eps)`,
    /// with the denominator multiplied through by `sqrt(bc2)`: one division per element instead
    /// of two (a division is the slowest operation of the step), equal up to rounding.
    #[inline(always)]
    pub fn apply(&self, w: &mut T, m: &mut T, v: &mut T, g: T) {
        *m = *m + self.one_minus_beta1 * (g - *m);
        *v = *v * self.beta2 + g * g * self.one_minus_beta2;
        *w = *w - self.scaled_step * (*m / (v.sqrt() + self.scaled_eps));
    }
}

/// SGD hyper-parameters (PyTorch's `SGD` with `dampening=0`, `nesterov=False`, no weight decay).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SgdConfig {
    pub lr: f64,
    /// 0 disables momentum (and its buffer).
    pub momentum: f64,
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        if self.lr.is_finite()
            && self.lr >= 0.0
            && self.momentum.is_finite()
            && self.momentum >= 0.0
        {
            Ok(())
        } else {
            Err(Error::InvalidOptimizer(format!(
                "SGD needs lr >= 0 and momentum >= 0; got {self:?}"
            )))
        }
    }
}

/// Which optimizer minimizes L_CS.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(AdamConfig::default())
    }
}

impl OptimizerConfig {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Adam(c) => c.lr,
            OptimizerConfig::Sgd(c) => c.lr,
        }
    }

    /// Rejects settings PyTorch would reject (negative lr, betas outside [0, 1), ...).
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Adam(c) => c.validate(),
            OptimizerConfig::Sgd(c) => c.validate(),
        }
    }

    /// The optimizer's name as used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::Sgd(_) => "sgd",
        }
    }
}

/// `torch.optim.Adam` for candle [`Var`]s.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    params: Vec<(Var, Tensor, Tensor)>,
    steps: usize,
}

impl candle_nn::Optimizer for Adam {
    type Config = AdamConfig;

    fn new(vars: Vec<Var>, config: AdamConfig) -> candle_core::Result<Self> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let params = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| {
                let m = v.zeros_like()?;
                let s = v.zeros_like()?;
                Ok((v, m, s))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            config,
            params,
            steps: 0,
        })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let step = self.config.step(self.steps);
        for (var, m, v) in self.params.iter_mut() {
            let Some(g) = grads.get(var) else { continue };
            *m = (&*m + ((g - &*m)? * step.one_minus_beta1)?)?;
            *v = ((&*v * step.beta2)? + (g.sqr()? * step.one_minus_beta2)?)?;
            let denom = ((v.sqrt()? / step.bias2_sqrt)? + step.eps)?;
            var.set(&(var.as_tensor() - (m.div(&denom)? * step.step_size)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

/// `torch.optim.SGD` (with optional momentum) for candle [`Var`]s.
#[derive(Debug)]
pub struct Sgd {
    config: SgdConfig,
    params: Vec<(Var, Option<Tensor>)>,
}

impl candle_nn::Optimizer for Sgd {
    type Config = SgdConfig;

    fn new(vars: Vec<Var>, config: SgdConfig) -> candle_core::Result<Self> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let params = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .map(|v| (v, None))
            .collect();
        Ok(Self { config, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        for (var, buffer) in self.params.iter_mut() {
            let Some(g) = grads.get(var) else { continue };
            let direction = if self.config.momentum > 0.0 {
                // PyTorch starts the buffer at the first gradient, which equals μ·0 + g.
                let next = match buffer.take() {
                    Some(b) => ((b * self.config.momentum)? + g)?,
                    None => g.clone(),
                };
                buffer.insert(next).clone()
            } else {
                g.clone()
            };
            var.set(&(var.as_tensor() - (direction * self.config.lr)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}
