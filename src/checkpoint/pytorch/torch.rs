//! What torch.save's pickles mean: persistent ids naming storages, and the few globals that
//! rebuild tensors and state dicts. These are the pickle machine's hooks for PyTorch files.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::rc::Rc;

use super::pickle::{Extension, Global, Hooks, Items, Value};
use crate::checkpoint::Dtype;

/// A value of a PyTorch pickle.
pub(super) type TorchValue = Value<TorchObject>;

/// What the hooks build: storages and the tensors viewing them.
#[derive(Clone)]
pub(super) enum TorchObject {
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Extension for TorchObject {
    fn describe(&self) -> String {
        match self {
            TorchObject::Storage(s) => format!("storage '{}'", s.key),
            TorchObject::Tensor(t) => match t.dtype {
                Some(dtype) => format!("tensor {dtype:?} {:?}", t.shape),
                None => format!("tensor of {} {:?}", t.type_name, t.shape),
            },
        }
    }
}

/// The tensor a value is, if it is one.
pub(super) fn as_tensor(value: &TorchValue) -> Option<&Rc<TensorRef>> {
    match value {
        Value::Extension(TorchObject::Tensor(t)) => Some(t),
        _ => None,
    }
}

/// A storage named by a persistent id; its bytes are read once the pickle is done.
pub(super) struct StorageRef {
    pub(super) key: String,
    /// The storage class, e.g. `torch.FloatStorage`, for messages.
    pub(super) class: String,
    /// None for a storage type this reader does not support.
    pub(super) dtype: Option<Dtype>,
    /// Bytes per element, for every class torch.save writes (None for others): the legacy
    /// format's data walk steps over storages of unsupported types too, which only entries that
    /// are dropped may use.
    pub(super) element_size: Option<usize>,
    /// Where a legacy storage view starts inside its key's data, in elements.
    pub(super) view_offset: usize,
}

/// A tensor as pickled: a strided view of a storage, in elements of its dtype.
pub(super) struct TensorRef {
    pub(super) storage: Rc<StorageRef>,
    /// The storage's dtype, or the one `_rebuild_tensor_v3` names for an untyped storage; None
    /// when this reader does not support it.
    pub(super) dtype: Option<Dtype>,
    /// The storage class or dtype as pickled, for messages.
    pub(super) type_name: String,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// The element type and size of a storage class (`torch.cuda` classes come from very old
/// versions). `torch.storage.UntypedStorage` (torch >= 2.1, for dtypes without a class of their
/// own) holds bytes.
fn storage_type(class: &Global) -> (Option<Dtype>, Option<usize>) {
    let typed = class.module == "torch" || class.module == "torch.cuda";
    let (dtype, size) = match (class.module.as_str(), class.name.as_str()) {
        ("torch.storage", "UntypedStorage") => (Some(Dtype::U8), 1),
        (_, _) if !typed => return (None, None),
        (_, "DoubleStorage") => (Some(Dtype::F64), 8),
        (_, "FloatStorage") => (Some(Dtype::F32), 4),
        (_, "HalfStorage") => (Some(Dtype::F16), 2),
        (_, "BFloat16Storage") => (Some(Dtype::BF16), 2),
        (_, "ComplexFloatStorage") => (Some(Dtype::C64), 8),
        (_, "LongStorage") => (Some(Dtype::I64), 8),
        (_, "IntStorage") => (Some(Dtype::I32), 4),
        (_, "ShortStorage") => (Some(Dtype::I16), 2),
        (_, "CharStorage") => (Some(Dtype::I8), 1),
        (_, "ByteStorage") => (Some(Dtype::U8), 1),
        (_, "BoolStorage") => (Some(Dtype::BOOL), 1),
        (_, "ComplexDoubleStorage") => (None, 16),
        (_, "QInt32Storage") => (None, 4),
        (_, "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage") => (None, 1),
        _ => return (None, None),
    };
    (dtype, Some(size))
}

/// The dtype a `torch.<name>` global stands for, as `_rebuild_tensor_v3` names it.
fn named_dtype(dtype: &Global) -> Option<Dtype> {
    if dtype.module != "torch" {
        return None;
    }
    Some(match dtype.name.as_str() {
        "float64" | "double" => Dtype::F64,
        "float32" | "float" => Dtype::F32,
        "float16" | "half" => Dtype::F16,
        "bfloat16" => Dtype::BF16,
        "float8_e4m3fn" => Dtype::F8_E4M3,
        "float8_e5m2" => Dtype::F8_E5M2,
        "complex64" | "cfloat" => Dtype::C64,
        "int64" | "long" => Dtype::I64,
        "int32" | "int" => Dtype::I32,
        "int16" | "short" => Dtype::I16,
        "int8" => Dtype::I8,
        "uint64" => Dtype::U64,
        "uint32" => Dtype::U32,
        "uint16" => Dtype::U16,
        "uint8" => Dtype::U8,
        "bool" => Dtype::BOOL,
        _ => return None,
    })
}

/// Interprets the persistent ids and the globals of torch.save's pickles.
#[derive(Default)]
pub(super) struct TorchHooks {
    /// The first storage met under each key: the legacy format's data walk needs their types.
    pub(super) storages: HashMap<String, Rc<StorageRef>>,
}

impl Hooks for TorchHooks {
    type Extension = TorchObject;

    /// `('storage', torch.FloatStorage, key, location, numel[, view])`, where the legacy
    /// format's `view` is None or `(view_key, offset, size)` inside the key's storage.
    fn persistent_load(&mut self, pid: TorchValue) -> Result<TorchValue, String> {
        let unsupported = || format!("unsupported persistent id: {}", pid.describe());
        let Value::Tuple(fields) = &pid else {
            return Err(unsupported());
        };
        let [Value::Str(kind), Value::Global(class), key, _location, _numel, view @ ..] =
            fields.0.as_slice()
        else {
            return Err(unsupported());
        };
        if &**kind != "storage" {
            return Err(unsupported());
        }
        let view_offset = match view {
            [] | [Value::None] => 0,
            [Value::Tuple(view)] => match view.0.as_slice() {
                [_view_key, offset, _size] => as_usize(offset).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            },
            _ => return Err(unsupported()),
        };
        let (dtype, element_size) = storage_type(class);
        let storage = Rc::new(StorageRef {
            key: key_text(key),
            class: class.to_string(),
            dtype,
            element_size,
            view_offset,
        });
        match self.storages.entry(storage.key.clone()) {
            Entry::Occupied(first) if first.get().dtype != storage.dtype => {
                return Err(format!(
                    "storage '{}' is used both as {} and as {}",
                    storage.key,
                    first.get().class,
                    storage.class
                ))
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(storage.clone());
            }
        }
        Ok(Value::Extension(TorchObject::Storage(storage)))
    }

    fn call(&mut self, global: &Global, args: &[TorchValue]) -> Result<Option<TorchValue>, String> {
        let value = match (global.module.as_str(), global.name.as_str()) {
            ("collections", "OrderedDict") => match ordered_dict(args) {
                Some(dict) => dict,
                // Any other argument (a dict, a generator's leftovers) is not a form torch.save
                // writes: the object stays opaque.
                None => return Ok(None),
            },
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
                rebuild_tensor(args, None)?
            }
            // torch >= 2.1, for dtypes without a storage class (float8, uint16, ...): an
            // untyped storage, and the dtype as the seventh argument.
            ("torch._utils", "_rebuild_tensor_v3") => match args.get(6) {
                Some(Value::Global(dtype)) => rebuild_tensor(args, Some(dtype))?,
                _ => return Err(format!("{global} expects a dtype as its seventh argument")),
            },
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                match args.first() {
                    Some(tensor) if as_tensor(tensor).is_some() => tensor.clone(),
                    _ => return Err(format!("{global} expects a tensor first")),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

/// `OrderedDict()`, as protocol 2 pickles one before its SETITEMS, or `OrderedDict(items)` with
/// a list of `[key, value]` lists (Python 2's `OrderedDict.__reduce__`, so checkpoints saved
/// under Python 2) or of `(key, value)` tuples. None for other arguments.
fn ordered_dict(args: &[TorchValue]) -> Option<TorchValue> {
    let items = match args {
        [] => return Some(Value::dict(Vec::new())),
        [Value::List(items)] => items,
        _ => return None,
    };
    let pair = |item: &TorchValue| {
        let two = |items: &Items<TorchObject>| match items.0.as_slice() {
            [k, v] => Some((k.clone(), v.clone())),
            _ => None,
        };
        match item {
            Value::List(l) => two(&l.borrow()),
            Value::Tuple(t) => two(t),
            _ => None,
        }
    };
    let entries = items.borrow().0.iter().map(pair).collect::<Option<_>>()?;
    Some(Value::dict(entries))
}

/// `_rebuild_tensor(storage, offset, size, stride)`; `_rebuild_tensor_v2` adds arguments
/// (requires_grad, backward hooks, metadata) that do not change the data, `_rebuild_tensor_v3`
/// the `dtype` of an untyped storage's elements.
fn rebuild_tensor(args: &[TorchValue], dtype: Option<&Global>) -> Result<TorchValue, String> {
    let [Value::Extension(TorchObject::Storage(storage)), offset, Value::Tuple(size), Value::Tuple(stride), ..] =
        args
    else {
        return Err("_rebuild_tensor expects (storage, offset, size, stride, ...)".into());
    };
    let dims = |t: &Items<TorchObject>| t.0.iter().map(as_usize).collect::<Option<Vec<_>>>();
    let (Some(offset), Some(shape), Some(stride)) = (as_usize(offset), dims(size), dims(stride))
    else {
        return Err(
            "a tensor's offset, size or stride is not made of non-negative integers".into(),
        );
    };
    if shape.len() != stride.len() {
        return Err(format!(
            "a tensor's size {shape:?} and stride {stride:?} differ in length"
        ));
    }
    let (dtype, type_name) = match dtype {
        Some(global) => (named_dtype(global), global.to_string()),
        None => (storage.dtype, storage.class.clone()),
    };
    Ok(Value::Extension(TorchObject::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        dtype,
        type_name,
        offset,
        shape,
        stride,
    }))))
}

fn as_usize(value: &TorchValue) -> Option<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// A dict key as text: strings as they are, other keys (e.g. an optimizer's parameter
/// numbers) described.
pub(super) fn key_text(key: &TorchValue) -> String {
    match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        other => other.describe(),
    }
}
