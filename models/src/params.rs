//! A network's parameters by name: created from a seed, or loaded from a checkpoint.
//!
//! candle-nn's `VarMap` draws initial values from an unseeded generator; experiments need
//! every arm and seed to be reproducible, so the networks ask this store for their tensors
//! instead. A store loaded from a checkpoint is strict: a missing tensor or a wrong shape is an
//! error naming the tensor, and tensors the network never asked for are reported by
//! [`Params::unused`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// How a new tensor is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Const(f32),
    /// `U(-bound, bound)`.
    Uniform(f32),
    /// `N(0, std²)`.
    Normal(f32),
}

enum Origin {
    Seeded(Box<StdRng>),
    Checkpoint(String),
}

struct State {
    vars: BTreeMap<String, Var>,
    asked: BTreeSet<String>,
    origin: Origin,
}

/// The parameter store.
pub struct Params {
    state: Mutex<State>,
    device: Device,
}

impl Params {
    /// An empty store that creates tensors on request from a generator seeded with `seed`.
    pub fn seeded(seed: u64, device: &Device) -> Self {
        Self::with(
            BTreeMap::new(),
            Origin::Seeded(Box::new(StdRng::seed_from_u64(seed))),
            device,
        )
    }

    /// The float tensors of a safetensors checkpoint, as f32 variables on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        let mut vars = BTreeMap::new();
        for (name, tensor) in tensors {
            if tensor.dtype().is_float() {
                let tensor = tensor.to_dtype(DType::F32)?.to_device(device)?;
                vars.insert(name, Var::from_tensor(&tensor)?);
            }
        }
        Ok(Self::with(
            vars,
            Origin::Checkpoint(path.display().to_string()),
            device,
        ))
    }

    fn with(vars: BTreeMap<String, Var>, origin: Origin, device: &Device) -> Self {
        Self {
            state: Mutex::new(State {
                vars,
                asked: BTreeSet::new(),
                origin,
            }),
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tensor `name` of shape `dims`, created with `fill` if the store is seeded.
    pub fn get(&self, name: &str, dims: &[usize], fill: Fill) -> Result<Tensor> {
        let mut state = self.state.lock().expect("parameter store poisoned");
        state.asked.insert(name.to_string());
        if let Some(var) = state.vars.get(name) {
            if var.dims() != dims {
                bail!(
                    "{}: tensor `{name}` has shape {:?}, the network expects {dims:?}; is --model right?",
                    state.origin.describe(),
                    var.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let rng = match &mut state.origin {
            Origin::Seeded(rng) => rng,
            Origin::Checkpoint(path) => {
                bail!("{path}: no tensor `{name}` (the network expects shape {dims:?}); is --model right?")
            }
        };
        let count = dims.iter().product();
        let values: Vec<f32> = match fill {
            Fill::Const(value) => vec![value; count],
            Fill::Uniform(bound) => (0..count)
                .map(|_| rng.random_range(-bound..=bound))
                .collect(),
            Fill::Normal(std) => {
                let normal = Normal::new(0.0, std).context("invalid standard deviation")?;
                (0..count).map(|_| normal.sample(rng)).collect()
            }
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, dims, &self.device)?)?;
        state.vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    /// Checkpoint tensors the network did not ask for (empty for a seeded store).
    pub fn unused(&self) -> Vec<String> {
        let state = self.state.lock().expect("parameter store poisoned");
        state
            .vars
            .keys()
            .filter(|name| !state.asked.contains(*name))
            .cloned()
            .collect()
    }

    /// The variable `name`, if the store has it.
    pub fn var(&self, name: &str) -> Option<Var> {
        let state = self.state.lock().expect("parameter store poisoned");
        state.vars.get(name).cloned()
    }

    /// All variables, by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let state = self.state.lock().expect("parameter store poisoned");
        state
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// Writes every variable to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: std::collections::HashMap<String, Tensor> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Seeded(_) => "the new network".to_string(),
            Origin::Checkpoint(path) => path.clone(),
        }
    }
}

/// A name prefix into a store, like candle-nn's `VarBuilder::pp`.
#[derive(Clone)]
pub struct Scope<'a> {
    params: &'a Params,
    prefix: String,
}

impl<'a> Scope<'a> {
    pub fn root(params: &'a Params) -> Self {
        Self {
            params,
            prefix: String::new(),
        }
    }

    /// The scope one level down, `prefix.child`.
    pub fn pp(&self, child: impl std::fmt::Display) -> Scope<'a> {
        Scope {
            params: self.params,
            prefix: self.name(&child.to_string()),
        }
    }

    pub fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    pub fn get(&self, leaf: &str, dims: &[usize], fill: Fill) -> Result<Tensor> {
        self.params.get(&self.name(leaf), dims, fill)
    }
}
