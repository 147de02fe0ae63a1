//! Sharded checkpoints: a `model.safetensors.index.json` whose `weight_map` names the shard file
//! of every tensor, in the layout Hugging Face writes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{CheckpointError, Result, SafetensorsFile};

/// The conventional name of the index file.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A parsed and checked index.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    path: PathBuf,
    metadata: Map<String, Value>,
    weight_map: BTreeMap<String, String>,
    shards: Vec<String>,
}

impl ShardIndex {
    /// Reads an index file and checks that every shard it names exists beside it.
    pub fn open(path: &Path) -> Result<Self> {
        let index = Self::parse(path)?;
        for shard in &index.shards {
            if !index.shard_path(shard).is_file() {
                return Err(CheckpointError::BadIndex {
                    path: path.into(),
                    reason: format!(
                        "names shard '{shard}', which does not exist in {}",
                        index.dir().display()
                    ),
                });
            }
        }
        Ok(index)
    }

    /// Reads and checks an index file, whether or not its shards are there yet.
    pub fn parse(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::io(path, e))?;
        Self::from_json(path, &text)
    }

    /// Checks an index's text; `path` is where it is (its shards are beside it) and names it in
    /// errors. Nothing is read from disk.
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let bad = |reason: String| CheckpointError::BadIndex {
            path: path.into(),
            reason,
        };
        let json: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let metadata = match json.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(bad(format!("\"metadata\" is {other}, expected an object"))),
        };
        let Some(Value::Object(map)) = json.get("weight_map") else {
            return Err(bad("no \"weight_map\" object".into()));
        };
        let mut weight_map = BTreeMap::new();
        for (tensor, shard) in map {
            let Value::String(shard) = shard else {
                return Err(bad(format!(
                    "weight_map['{tensor}'] is {shard}, expected a file name"
                )));
            };
            if !is_plain_file_name(shard) {
                return Err(bad(format!(
                    "shard '{shard}' of '{tensor}' is not a plain file name"
                )));
            }
            weight_map.insert(tensor.clone(), shard.clone());
        }
        let mut shards: Vec<String> = weight_map.values().cloned().collect();
        shards.sort();
        shards.dedup();
        Ok(Self {
            path: path.into(),
            metadata,
            weight_map,
            shards,
        })
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the index and its shards.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Shard file names, sorted.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    pub fn shard_path(&self, shard: &str) -> PathBuf {
        self.dir().join(shard)
    }

    /// Tensor name → shard file name.
    pub fn weight_map(&self) -> &BTreeMap<String, String> {
        &self.weight_map
    }

    /// The index's `metadata` object.
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }

    /// Checks that the index and its opened shards (one per [`ShardIndex::shards`], in that
    /// order) agree exactly: every tensor the index names is in the shard it names, and every
    /// tensor of a shard is named by the index for that shard. Anything else (a tensor in two
    /// shards, a stray tensor) would make the output ambiguous.
    pub fn check_shards(&self, files: &[SafetensorsFile]) -> Result<()> {
        let bad = |reason: String| CheckpointError::BadIndex {
            path: self.path.clone(),
            reason,
        };
        if files.len() != self.shards.len() {
            return Err(bad(format!(
                "names {} shard files but {} were opened",
                self.shards.len(),
                files.len()
            )));
        }
        if self.weight_map.is_empty() {
            return Err(bad("its weight_map names no tensor".into()));
        }
        for (name, shard) in &self.weight_map {
            let Ok(i) = self.shards.binary_search(shard) else {
                unreachable!("every shard of the weight map is listed in `shards`")
            };
            if files[i].tensor(name).is_none() {
                return Err(bad(format!(
                    "names '{name}' in {shard}, which has no such tensor"
                )));
            }
        }
        for (shard, file) in self.shards.iter().zip(files) {
            for tensor in file.tensors() {
                match self.weight_map.get(&tensor.name) {
                    Some(listed) if listed == shard => {}
                    Some(listed) => {
                        return Err(bad(format!(
                            "'{}' is in {shard} but the index puts it in {listed}",
                            tensor.name
                        )))
                    }
                    None => {
                        return Err(bad(format!(
                            "{shard} holds '{}', which the index does not list",
                            tensor.name
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` is one file name, nothing else: joined to the index's directory it names a file
/// in it. `./`, `/`, `a/` and `a/.` are one component to `Path::components` too, but not file
/// names.
fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(file)), None) if file == std::ffi::OsStr::new(name)
    )
}

/// An index file's JSON: `metadata` (with `total_size` set to the bytes of all tensors) and the
/// `weight_map` from tensor names to shard file names.
pub fn index_json(
    metadata: &Map<String, Value>,
    weight_map: &BTreeMap<String, String>,
    total_size: usize,
) -> String {
    let mut metadata = metadata.clone();
    metadata.insert("total_size".into(), json!(total_size));
    let json = json!({"metadata": metadata, "weight_map": weight_map});
    serde_json::to_string_pretty(&json).expect("index serializes") + "\n"
}
