//! How the output checkpoint is split into files: one file, the input's shards, or new shards of
//! at most `--max-shard-size` bytes in Hugging Face's layout (`model-00001-of-0000N.safetensors`
//! plus `model.safetensors.index.json`).

use std::ops::Range;

use super::{SafetensorsFile, ShardIndex};

/// One output shard: its file name and the range of the run's tensors (in input order) it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub name: String,
    pub tensors: Range<usize>,
}

/// The files of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sharding {
    /// One safetensors file: one shard, without an index.
    Single,
    /// A directory of shards with an index.
    Shards(Vec<Shard>),
}

impl Sharding {
    /// True for a directory of shards with an index, false for one file.
    pub fn has_index(&self) -> bool {
        matches!(self, Sharding::Shards(_))
    }

    /// The shards to write, in order, for `tensors` tensors: a single file is one shard named
    /// `file_name` holding them all.
    pub fn shards(&self, tensors: usize, file_name: &str) -> Vec<Shard> {
        match self {
            Sharding::Single => vec![Shard {
                name: file_name.to_string(),
                tensors: 0..tensors,
            }],
            Sharding::Shards(shards) => shards.clone(),
        }
    }

    /// Keeps the input's sharding, unless `max_shard_size` is given: then a checkpoint larger
    /// than it is split into shards no larger than it (a single larger tensor gets a shard of its
    /// own), and a smaller one is written as one file.
    pub fn choose(
        files: &[SafetensorsFile],
        index: Option<&ShardIndex>,
        max_shard_size: Option<usize>,
    ) -> Self {
        let sizes: Vec<usize> = files
            .iter()
            .flat_map(|f| f.tensors().iter().map(|t| t.end - t.begin))
            .collect();
        match (max_shard_size, index) {
            (Some(max), _) if sizes.iter().sum::<usize>() > max => {
                Sharding::Shards(split(&sizes, max))
            }
            (Some(_), _) | (None, None) => Sharding::Single,
            (None, Some(index)) => {
                let mut start = 0;
                let shards = index
                    .shards()
                    .iter()
                    .zip(files)
                    .map(|(name, file)| {
                        let tensors = start..start + file.tensors().len();
                        start = tensors.end;
                        Shard {
                            name: name.clone(),
                            tensors,
                        }
                    })
                    .collect();
                Sharding::Shards(shards)
            }
        }
    }
}

/// Greedy split of consecutive tensors into groups of at most `max` bytes.
fn split(sizes: &[usize], max: usize) -> Vec<Shard> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut current = 0..0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if current.end > current.start && bytes + size > max {
            ranges.push(current.clone());
            current = i..i;
            bytes = 0;
        }
        current.end = i + 1;
        bytes += size;
    }
    if current.end > current.start {
        ranges.push(current);
    }
    let n = ranges.len();
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, tensors)| Shard {
            name: format!("model-{:05}-of-{n:05}.safetensors", i + 1),
            tensors,
        })
        .collect()
}

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}': {expected}")]
pub struct SizeError {
    pub text: String,
    pub expected: &'static str,
}

/// Parses a size: bytes, or with a unit `KB`/`MB`/`GB` (powers of 1000, as Hugging Face uses)
/// or `KiB`/`MiB`/`GiB` (powers of 1024), e.g. `5GB`, `500MiB`, `1.5GB`.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let refuse = |expected| SizeError {
        text: text.into(),
        expected,
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(refuse("unknown unit; use B, KB, MB, GB, KiB, MiB or GiB")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| refuse("expected a size like 5GB or 500MiB"))?;
    let bytes = (value * factor).round();
    if !(bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(refuse("the size must be at least one byte"));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5kb"), Ok(1500));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("GB").is_err());
    }

    #[test]
    fn split_keeps_order_and_limits() {
        let shards = split(&[4, 4, 4, 10, 1, 1], 8);
        let ranges: Vec<_> = shards.iter().map(|s| s.tensors.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(shards[0].name, "model-00001-of-00004.safetensors");
        assert_eq!(shards[3].name, "model-00004-of-00004.safetensors");
    }
}
