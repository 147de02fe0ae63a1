//! Checkpoints on disk: safetensors files (read through mmap, written atomically), sharded
//! checkpoints with their index (and how an output is split into shards), PyTorch files, and the Hugging Face Hub's references and cache.

mod error;
pub(crate) mod hub;
mod output;
mod pytorch;
mod reader;
mod sharded;
mod sharding;
mod tensor_bytes;
mod writer;

pub use error::CheckpointError;
pub use hub::{HubEnv, HubSource};
pub use output::{CheckpointOutput, ShardWriter};
pub use pytorch::{
    check_pth, looks_like_pth, read_pth, read_pth_bytes, ContainerError, EntryError, NotPthError,
    OpError, PickleError, PthCheckpoint, PthTensor, StateDictError, StorageError, TensorDataError,
    TorchError, ViewError,
};
pub use reader::{HeaderError, SafetensorsFile, TensorEntryError, TensorInfo};
pub use sharded::{index_json, ShardIndex, INDEX_FILE};
pub use sharding::{parse_size, Shard, Sharding, SizeError};
pub use tensor_bytes::{candle_dtype, tensor_from_bytes, tensor_to_bytes};
pub use writer::{
    remove_pending_outputs, serialize, HeaderEntry, OutputDir, OutputFile, SafetensorsWriter,
};

pub use safetensors::Dtype;

/// Result with a [`CheckpointError`].
pub type Result<T> = std::result::Result<T, CheckpointError>;
