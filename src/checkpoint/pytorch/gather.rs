//! Reading the tensors' bytes out of their storages: strided views become contiguous row-major
//! bytes, and no tensor is given more bytes than its storage holds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use super::container::StorageData;
use super::state_dict::Named;
use super::{unreadable, PthTensor};
use crate::checkpoint::CheckpointError;

/// How many times the bytes of the storages read the tensors may take together. Tied weights
/// (one storage under two names) need twice; a file with one storage under thousands of names
/// would otherwise make the output grow with the square of the file's size.
const SHARING_LIMIT: usize = 16;

/// Reads the tensors' bytes. Each storage is loaded once and kept only while tensors still
/// need it; the last tensor of a storage takes its bytes without a copy when it covers the
/// storage exactly.
pub(super) fn materialize(
    path: &Path,
    named: Named,
    data: &mut StorageData,
) -> Result<Vec<PthTensor>, CheckpointError> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (_, tensor) in &named {
        *uses.entry(tensor.storage.key.clone()).or_default() += 1;
    }
    let mut loaded: HashMap<String, Cow<[u8]>> = HashMap::new();
    let mut tensors = Vec::with_capacity(named.len());
    let (mut storage_bytes, mut output_bytes) = (0usize, 0usize);
    for (name, tensor) in named {
        let bad = |reason: String| CheckpointError::BadTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason,
        };
        let storage = &tensor.storage;
        let dtype = tensor
            .dtype
            .ok_or_else(|| bad(format!("unsupported storage type {}", tensor.type_name)))?;
        let bytes = match loaded.remove(&storage.key) {
            Some(bytes) => bytes,
            None => {
                let bytes = data.load(&storage.key).map_err(|e| unreadable(path, e))?;
                storage_bytes = storage_bytes.saturating_add(bytes.len());
                bytes
            }
        };
        let elem = dtype.bitsize() / 8;
        let left = uses.get_mut(&storage.key).map_or(0, |n| {
            *n = n.saturating_sub(1);
            *n
        });
        let start = storage
            .view_offset
            .checked_add(tensor.offset)
            .ok_or_else(|| bad("the storage offset overflows".into()))?;
        let gathered = if left == 0 {
            take_or_gather(bytes, elem, start, &tensor.shape, &tensor.stride)
        } else {
            let gathered = gather(&bytes, elem, start, &tensor.shape, &tensor.stride);
            loaded.insert(storage.key.clone(), bytes);
            gathered
        };
        let data = gathered.map_err(|e| bad(format!("storage '{}': {e}", storage.key)))?;
        // Each view is at most its storage's size (`gather`): the total is what can grow.
        output_bytes = output_bytes.saturating_add(data.len());
        if output_bytes > storage_bytes.saturating_mul(SHARING_LIMIT) {
            return Err(bad(format!(
                "with the tensors before it, it takes {output_bytes} bytes, more than {SHARING_LIMIT} times the {storage_bytes} bytes of the storages they view (one storage under many names); \
                 save the state dict with its tensors cloned ({{k: v.clone() for k, v in state_dict.items()}}) and pass that file"
            )));
        }
        tensors.push(PthTensor {
            name,
            dtype,
            shape: tensor.shape.clone(),
            data,
        });
    }
    Ok(tensors)
}

/// The tensor's bytes, moving `bytes` when they are exactly the tensor.
fn take_or_gather(
    bytes: Cow<[u8]>,
    elem: usize,
    start: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    let exact = |len: usize| {
        start == 0
            && is_contiguous(shape, stride)
            && shape
                .iter()
                .try_fold(elem, |n, &d| n.checked_mul(d))
                .is_some_and(|size| size == len)
    };
    match bytes {
        Cow::Owned(owned) if exact(owned.len()) => Ok(owned),
        bytes => gather(&bytes, elem, start, shape, stride),
    }
}

/// Whether a view with these strides reads its elements in row-major order without gaps.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&size, &step) in shape.iter().zip(stride).rev() {
        if size != 1 && step != expected {
            return false;
        }
        expected = expected.saturating_mul(size);
    }
    true
}

/// Copies the elements of a strided view of `src` (in elements of `elem` bytes, starting at
/// element `start`) into contiguous row-major bytes.
fn gather(
    src: &[u8],
    elem: usize,
    start: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    let overflow = || format!("the shape {shape:?} is too large");
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The last element the view reads; every size is at least 1 here.
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(start, |at, (&size, &step)| {
            (size - 1).checked_mul(step)?.checked_add(at)
        })
        .ok_or_else(overflow)?;
    let available = src.len() / elem;
    if last >= available {
        return Err(format!(
            "a view at offset {start} with size {shape:?} and stride {stride:?} needs {} elements, but the storage holds {available} (truncated or corrupt file?)",
            last + 1
        ));
    }
    if is_contiguous(shape, stride) {
        return Ok(src[start * elem..(start + numel) * elem].to_vec());
    }
    // Only a view that reads some element twice (a stride of 0, as `expand` makes) has more
    // elements than its storage; its size would come from the file's fields alone, not from
    // bytes it holds, so it is refused rather than allocated.
    if numel > available {
        return Err(format!(
            "a view with size {shape:?} and stride {stride:?} repeats elements: its {numel} elements come from a storage of {available}; save it with .contiguous() (or .clone()) first"
        ));
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0usize; shape.len()];
    let mut at = start;
    loop {
        out.extend_from_slice(&src[at * elem..(at + 1) * elem]);
        // Next index, the last dimension fastest; `at` never passes `last`.
        let mut dim = shape.len();
        loop {
            if dim == 0 {
                return Ok(out);
            }
            dim -= 1;
            if index[dim] + 1 < shape[dim] {
                index[dim] += 1;
                at += stride[dim];
                break;
            }
            at -= stride[dim] * index[dim];
            index[dim] = 0;
        }
    }
}
