//! Checkpoints on disk: safetensors files (read through mmap, written atomically), sharded
//! checkpoints with their index, and the resolution of the command line's INPUT.

mod error;
mod hub;
mod pytorch;
mod reader;
mod sharded;
mod source;
mod tensor_bytes;
mod writer;

pub use error::CheckpointError;
pub use hub::{HubEnv, HubSource};
pub use pytorch::{check_pth, looks_like_pth, read_pth, read_pth_bytes, PthCheckpoint, PthTensor};
pub use reader::{SafetensorsFile, TensorInfo};
pub use sharded::{index_json, ShardIndex, INDEX_FILE};
pub use source::{
    built_in_bytes, built_in_file, built_in_names, Input, Opened, PthOptions, ResolveOptions,
};
pub use tensor_bytes::{candle_dtype, tensor_from_bytes, tensor_to_bytes};
pub use writer::{
    remove_pending_outputs, serialize, HeaderEntry, OutputDir, OutputFile, SafetensorsWriter,
};

pub use safetensors::Dtype;

/// Result with a [`CheckpointError`].
pub type Result<T> = std::result::Result<T, CheckpointError>;
