//! Which tensors of a checkpoint are conv weights to optimize, and why (docs/cli.md has the rule).

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{candle_dtype, TensorInfo};

/// How kernels are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelLayout {
    /// PyTorch: `[out, in, k...]`.
    #[default]
    Oihw,
    /// Keras/Flax: `[k..., in, out]`.
    Hwio,
}

impl KernelLayout {
    /// The PyTorch-layout shape of a stored kernel shape.
    pub fn to_oihw(self, shape: &[usize]) -> Vec<usize> {
        match self {
            KernelLayout::Oihw => shape.to_vec(),
            KernelLayout::Hwio => {
                let r = shape.len();
                let mut out = vec![shape[r - 1], shape[r - 2]];
                out.extend_from_slice(&shape[..r - 2]);
                out
            }
        }
    }

    /// The permutation taking a stored tensor to `[out, in, k...]`.
    pub fn to_oihw_permutation(self, rank: usize) -> Vec<usize> {
        match self {
            KernelLayout::Oihw => (0..rank).collect(),
            KernelLayout::Hwio => {
                let mut p = vec![rank - 1, rank - 2];
                p.extend(0..rank - 2);
                p
            }
        }
    }

    /// The permutation taking `[out, in, k...]` back to the stored layout.
    pub fn from_oihw_permutation(self, rank: usize) -> Vec<usize> {
        let forward = self.to_oihw_permutation(rank);
        let mut inverse = vec![0; rank];
        for (i, &p) in forward.iter().enumerate() {
            inverse[p] = i;
        }
        inverse
    }
}

/// The user's selection rules.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub skip_pointwise: bool,
    pub layout: KernelLayout,
}

/// What a conv weight looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    Standard,
    /// 1x1 (every spatial size 1).
    Pointwise,
    /// One input channel per filter (`[C, 1, k, k]`): a depthwise conv.
    Depthwise,
}

/// The decision for one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Set for tensors that pass the conv-weight rule, whether or not they are then selected.
    pub kind: Option<ConvKind>,
    pub optimize: bool,
    pub reason: String,
}

/// Name patterns of tensors that can have a conv weight's rank without being one.
fn not_a_conv_name() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(^|[._])(pos_embed|absolute_pos_embed|pos_embedding|position_embeddings?|rel_pos\w*|relative_position\w*|\w*_token|cls_token|mask_token)([._]|$)")
            .expect("valid regex")
    })
}

/// Decides every tensor of a file.
pub fn plan(tensors: &[TensorInfo], selection: &Selection) -> Vec<PlanEntry> {
    tensors.iter().map(|t| decide(t, selection)).collect()
}

fn decide(tensor: &TensorInfo, selection: &Selection) -> PlanEntry {
    let entry = |kind, optimize, reason: String| PlanEntry {
        name: tensor.name.clone(),
        dtype: format!("{:?}", tensor.dtype),
        shape: tensor.shape.clone(),
        kind,
        optimize,
        reason,
    };
    let rank = tensor.shape.len();
    if candle_dtype(tensor.dtype).is_none() {
        return entry(
            None,
            false,
            format!("not floating point ({:?})", tensor.dtype),
        );
    }
    if !(3..=5).contains(&rank) {
        return entry(
            None,
            false,
            format!("rank {rank} (conv weights have rank 3 to 5)"),
        );
    }
    if !tensor.name.ends_with("weight") {
        return entry(None, false, "name does not end in 'weight'".into());
    }
    if not_a_conv_name().is_match(&tensor.name) {
        return entry(
            None,
            false,
            "name of an embedding or token, not a conv".into(),
        );
    }
    if tensor.shape.contains(&0) {
        return entry(None, false, "empty tensor".into());
    }
    let oihw = selection.layout.to_oihw(&tensor.shape);
    let spatial: usize = oihw[2..].iter().product();
    let kind = if spatial == 1 {
        ConvKind::Pointwise
    } else if oihw[1] == 1 {
        ConvKind::Depthwise
    } else {
        ConvKind::Standard
    };
    let kind_name = match kind {
        ConvKind::Standard => "conv",
        ConvKind::Pointwise => "pointwise conv",
        ConvKind::Depthwise => "depthwise conv",
    };
    if oihw[0] < 2 {
        return entry(
            Some(kind),
            false,
            format!("{kind_name} with a single filter: L_CS is 0"),
        );
    }
    if !selection.include.is_empty()
        && !selection.include.iter().any(|re| re.is_match(&tensor.name))
    {
        return entry(
            Some(kind),
            false,
            format!("{kind_name}, not matched by any --include"),
        );
    }
    if let Some(re) = selection
        .exclude
        .iter()
        .find(|re| re.is_match(&tensor.name))
    {
        return entry(
            Some(kind),
            false,
            format!("{kind_name}, excluded by --exclude '{re}'"),
        );
    }
    if kind == ConvKind::Pointwise && selection.skip_pointwise {
        return entry(
            Some(kind),
            false,
            "pointwise conv, skipped by --skip-pointwise".into(),
        );
    }
    entry(Some(kind), true, format!("{kind_name}, rank {rank}"))
}
