//! Which tensors of a checkpoint are conv weights to optimize, and why (docs/cli.md has the rule).

mod one_channel;
mod weight;

use regex::Regex;
use serde::{Deserialize, Serialize};

use self::one_channel::{Channels, Layer, OneChannel};
use crate::checkpoint::{candle_dtype, TensorInfo};

pub use weight::ConvWeight;

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

/// What a conv weight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKind {
    Standard,
    /// 1x1 (every spatial size 1).
    Pointwise,
    /// One input channel per filter (`[C, 1, k, k]`), each filter its own channel of a C-channel
    /// input (groups = C).
    Depthwise,
    /// One input channel per filter (`[C, 1, k, k]`), every filter the same channel: a conv on a
    /// one-channel input, such as a grayscale network's first.
    SingleChannel,
}

impl ConvKind {
    /// The name in reports and tables: `standard`, `pointwise`, `depthwise`, `single_channel`.
    pub fn name(self) -> &'static str {
        match self {
            ConvKind::Standard => "standard",
            ConvKind::Pointwise => "pointwise",
            ConvKind::Depthwise => "depthwise",
            ConvKind::SingleChannel => "single_channel",
        }
    }
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

/// Decides every tensor of a single-file checkpoint.
pub fn plan(tensors: &[TensorInfo], selection: &Selection) -> Vec<PlanEntry> {
    plan_files(&[tensors], selection)
        .pop()
        .expect("one plan per file")
}

/// Decides every tensor of a checkpoint, one plan per file (shard). The files are planned
/// together: whether a `[C, 1, k...]` weight is depthwise depends on the other layers, which a
/// sharded checkpoint can keep in other shards.
pub fn plan_files(files: &[&[TensorInfo]], selection: &Selection) -> Vec<Vec<PlanEntry>> {
    let layers: Vec<Layer> = files
        .iter()
        .flat_map(|tensors| tensors.iter())
        .filter_map(|t| layer(t, selection.layout))
        .collect();
    let channels = Channels::of(&layers);
    files
        .iter()
        .map(|tensors| {
            tensors
                .iter()
                .map(|t| decide(t, selection, &channels))
                .collect()
        })
        .collect()
}

/// The tensor as a layer making channels: a conv weight, or a linear weight (rank 2).
fn layer(tensor: &TensorInfo, layout: KernelLayout) -> Option<Layer<'_>> {
    if tensor.shape.len() == 2 {
        let linear = candle_dtype(tensor.dtype).is_some()
            && tensor.name.ends_with("weight")
            && !tensor.shape.contains(&0);
        // PyTorch's Linear is `[out, in]`; a Keras/Flax Dense kernel `[in, out]`.
        let out = match layout {
            KernelLayout::Oihw => tensor.shape[0],
            KernelLayout::Hwio => tensor.shape[1],
        };
        return linear.then_some(Layer {
            name: &tensor.name,
            outputs: out,
            inputs: None,
            spatial: false,
        });
    }
    let oihw = conv_shape(tensor, layout).ok()?;
    Some(Layer {
        name: &tensor.name,
        outputs: oihw[0],
        inputs: Some(oihw[1]),
        spatial: oihw[2..].iter().product::<usize>() > 1,
    })
}

/// The PyTorch-layout shape of a conv weight, or why the tensor is not one.
fn conv_shape(tensor: &TensorInfo, layout: KernelLayout) -> Result<Vec<usize>, String> {
    let rank = tensor.shape.len();
    if candle_dtype(tensor.dtype).is_none() {
        return Err(format!("not floating point ({:?})", tensor.dtype));
    }
    if !(3..=5).contains(&rank) {
        return Err(format!("rank {rank} (conv weights have rank 3 to 5)"));
    }
    if !tensor.name.ends_with("weight") {
        return Err("name does not end in 'weight'".into());
    }
    if not_a_conv_name().is_match(&tensor.name) {
        return Err("name of an embedding or token, not a conv".into());
    }
    if tensor.shape.contains(&0) {
        return Err("empty tensor".into());
    }
    Ok(layout.to_oihw(&tensor.shape))
}

fn decide(tensor: &TensorInfo, selection: &Selection, channels: &Channels) -> PlanEntry {
    let entry = |kind, optimize, reason: String| PlanEntry {
        name: tensor.name.clone(),
        dtype: format!("{:?}", tensor.dtype),
        shape: tensor.shape.clone(),
        kind,
        optimize,
        reason,
    };
    let rank = tensor.shape.len();
    let oihw = match conv_shape(tensor, selection.layout) {
        Ok(oihw) => oihw,
        Err(reason) => return entry(None, false, reason),
    };
    let spatial: usize = oihw[2..].iter().product();
    let (kind, why) = if spatial == 1 {
        (ConvKind::Pointwise, String::new())
    } else if oihw[1] == 1 {
        match channels.classify(&tensor.name, oihw[0]) {
            OneChannel::Depthwise => (
                ConvKind::Depthwise,
                format!(" (another layer makes its {} input channels)", oihw[0]),
            ),
            OneChannel::FirstConv => (
                ConvKind::SingleChannel,
                " (the first conv, and the network's input has one channel)".to_string(),
            ),
            OneChannel::NoProducer => (
                ConvKind::SingleChannel,
                format!(
                    " (no other layer makes {} channels for it to read one by one)",
                    oihw[0]
                ),
            ),
        }
    } else {
        (ConvKind::Standard, String::new())
    };
    let kind_name = match kind {
        ConvKind::Standard => "conv",
        ConvKind::Pointwise => "pointwise conv",
        ConvKind::Depthwise => "depthwise conv",
        ConvKind::SingleChannel => "single-channel conv",
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
    entry(Some(kind), true, format!("{kind_name}{why}, rank {rank}"))
}
