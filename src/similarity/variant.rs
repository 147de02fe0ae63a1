//! Which kernel pairs the Convolutional Similarity sums over.

use std::fmt;
use std::str::FromStr;

/// The pair set of the loss. Each term is `|| W[i,c1] ⊛ W[j,c2] ||²` (full cross-correlation).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The paper's Equation 10: all filter pairs `i < j`, all input-channel pairs `(c1, c2)`.
    #[default]
    Paper,
    /// All filter pairs `i < j`, same input channel only (`c1 = c2`).
    SameChannel,
    /// Adjacent filters `(i, i+1)` only, all input-channel pairs.
    Adjacent,
    /// Adjacent filters, same channel: what the paper authors' released CUDA kernel computes.
    AdjacentSameChannel,
}

impl Variant {
    /// Every variant, in the order of the CLI's `--variant` values.
    pub const ALL: [Variant; 4] = [
        Variant::Paper,
        Variant::SameChannel,
        Variant::Adjacent,
        Variant::AdjacentSameChannel,
    ];

    /// True when only filters `(i, i+1)` are paired.
    pub fn adjacent_only(self) -> bool {
        matches!(self, Variant::Adjacent | Variant::AdjacentSameChannel)
    }

    /// True when only equal input channels are paired.
    pub fn same_channel_only(self) -> bool {
        matches!(self, Variant::SameChannel | Variant::AdjacentSameChannel)
    }

    /// Whether the term `(i, c1) ⊛ (j, c2)` belongs to the loss, straight from the definition.
    pub fn includes(self, i: usize, c1: usize, j: usize, c2: usize) -> bool {
        let filters = if self.adjacent_only() {
            j == i + 1
        } else {
            i < j
        };
        filters && (!self.same_channel_only() || c1 == c2)
    }

    /// Number of filter pairs in the loss for `filters` output filters.
    pub fn filter_pairs(self, filters: usize) -> usize {
        if self.adjacent_only() {
            filters.saturating_sub(1)
        } else {
            filters * filters.saturating_sub(1) / 2
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Paper => "paper",
            Variant::SameChannel => "same-channel",
            Variant::Adjacent => "adjacent",
            Variant::AdjacentSameChannel => "adjacent-same-channel",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!("unknown variant '{s}': expected paper, same-channel, adjacent or adjacent-same-channel")
            })
    }
}
