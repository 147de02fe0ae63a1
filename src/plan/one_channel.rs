//! A `[C, 1, k...]` conv weight gives each filter one input channel. Either the layer is
//! depthwise (groups = C: filter i reads channel i of a C-channel input), or it reads a
//! one-channel input with ordinary filters (the first conv of a grayscale network), where every
//! filter reads the same channel and the paper's argument holds as for any conv. The weight alone
//! cannot tell them apart; the rest of the checkpoint can (docs/cli.md states the rule and when
//! it is wrong):
//!
//! 1. a depthwise conv reads C channels that another layer makes: if no other conv has C
//!    filters and no linear layer C outputs, the weight reads a one-channel input;
//! 2. a network has one input, read by its first conv. If some conv reads a number of channels
//!    (2 or more) that no layer makes, that conv is the first (an RGB stem reads 3), and every
//!    `[C, 1, k...]` weight with a producer is depthwise. Otherwise the network's input has one
//!    channel, and its first conv reads it: the first conv named as a stem (a name component
//!    `stem`, as timm and torchvision's RegNet name it), else the first in the natural order of
//!    names (`layers.2` before `layers.10`). If that is a `[C, 1, k...]` weight, it is
//!    single-channel, and the others depthwise.
//!
//! Names are compared in natural order rather than file order because safetensors writers sort
//! tensors by name (and dtype), so that a checkpoint gets the same kinds in every format; the
//! stem's name matters because timm's `blocks.` and `stages.` sort before its `conv_stem`.

use std::cmp::Ordering;
use std::collections::HashMap;

/// One layer of the checkpoint, as the rule sees it.
pub(super) struct Layer<'a> {
    pub(super) name: &'a str,
    /// Filters of a conv, outputs of a linear layer.
    pub(super) outputs: usize,
    /// Input channels per filter of a conv (`None` for a linear layer).
    pub(super) inputs: Option<usize>,
    /// Whether the conv has a spatial extent (not 1x1): a 1x1 weight is pointwise whatever
    /// its input.
    pub(super) spatial: bool,
}

/// What the rule decided for a `[C, 1, k...]` weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OneChannel {
    /// Another layer makes its C channels and it is not the network's first conv.
    Depthwise,
    /// The network's first conv, on a one-channel input.
    FirstConv,
    /// No other layer makes C channels for it to read one by one.
    NoProducer,
}

/// The checkpoint-wide facts the rule needs.
pub(super) struct Channels<'a> {
    /// How many layers make each channel count.
    produced: HashMap<usize, usize>,
    /// The first conv, when the network's input has one channel and that conv is a
    /// `[C, 1, k...]` weight.
    first: Option<&'a str>,
}

impl<'a> Channels<'a> {
    pub(super) fn of(layers: &[Layer<'a>]) -> Self {
        let mut produced = HashMap::new();
        for layer in layers {
            *produced.entry(layer.outputs).or_insert(0usize) += 1;
        }
        let convs = || layers.iter().filter(|l| l.inputs.is_some());
        let multi_channel_input = convs().any(|l| {
            l.inputs
                .is_some_and(|i| i >= 2 && !produced.contains_key(&i))
        });
        let first = if multi_channel_input {
            None
        } else {
            let earliest = |a: &&Layer, b: &&Layer| natural_cmp(a.name, b.name);
            convs()
                .filter(|l| is_stem(l.name))
                .min_by(earliest)
                .or_else(|| convs().min_by(earliest))
                .filter(|l| l.inputs == Some(1) && l.spatial)
                .map(|l| l.name)
        };
        Self { produced, first }
    }

    /// Decides for the `[C, 1, k...]` weight `name` with `outputs` filters.
    pub(super) fn classify(&self, name: &str, outputs: usize) -> OneChannel {
        // The weight itself makes `outputs` channels: another producer must exist.
        let others = self
            .produced
            .get(&outputs)
            .copied()
            .unwrap_or(0)
            .saturating_sub(1);
        if others == 0 {
            OneChannel::NoProducer
        } else if self.first == Some(name) {
            OneChannel::FirstConv
        } else {
            OneChannel::Depthwise
        }
    }
}

/// Whether a name has the component `stem` (`conv_stem.weight`, `stem.0.weight`).
fn is_stem(name: &str) -> bool {
    name.split(['.', '_']).any(|part| part == "stem")
}

/// Names compared with their digit runs as numbers: `layers.2` < `layers.10`.
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                // Without leading zeros, a longer run is a larger number.
                let (ta, tb) = (trim_zeros(da), trim_zeros(db));
                let order = ta
                    .len()
                    .cmp(&tb.len())
                    .then(ta.cmp(tb))
                    .then(da.len().cmp(&db.len()));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let n = digits.iter().take_while(|&&b| b == b'0').count();
    &digits[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_reads_numbers() {
        let mut names = vec![
            "layers.10.weight",
            "layers.2.weight",
            "conv_stem.weight",
            "blocks.0.0.weight",
            "layers.02.weight",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "blocks.0.0.weight",
                "conv_stem.weight",
                "layers.2.weight",
                "layers.02.weight",
                "layers.10.weight"
            ]
        );
        assert_eq!(natural_cmp("a9", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("x1y", "x1y"), Ordering::Equal);
    }
}
