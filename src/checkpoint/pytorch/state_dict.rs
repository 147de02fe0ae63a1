//! Finding the state dict in what a checkpoint pickled (a bare state dict, a training checkpoint
//! holding one beside its optimizer and epoch, a Lightning checkpoint), and naming its tensors.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use super::pickle::{Entries, Value};
use super::torch::{as_tensor, key_text, TensorRef, TorchObject, TorchValue};

/// Entries tried in order, when the top level is not itself the state dict.
const STATE_DICT_KEYS: [&str; 8] = [
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "network",
    "module",
    "state",
    "weights",
];

/// The prefix `torch.nn.DataParallel` adds to every name.
const DATA_PARALLEL_PREFIX: &str = "module.";

/// Tensors by name, in the state dict's order.
pub(super) type Named = Vec<(String, Rc<TensorRef>)>;

/// The state dict picked from a checkpoint: its tensors by name, and what was left out.
pub(super) struct Selected {
    pub(super) tensors: Named,
    pub(super) key: Option<String>,
    pub(super) dropped: Vec<(String, String)>,
}

/// Finds the state dict: the top level when all its values are tensors, else the entry `key`,
/// else the first of [`STATE_DICT_KEYS`] that is a dict holding tensors, else the top level if
/// it holds tensors among other things.
pub(super) fn select_state_dict(root: &TorchValue, key: Option<&str>) -> Result<Selected, String> {
    let top = match root {
        Value::Dict(top) => top,
        Value::Object(class) => {
            return Err(format!(
                "the checkpoint holds a {class} object, not a dict of tensors: a whole pickled model (or another Python object), which cs-init does not rebuild since that would run its Python code; \
                 load it in Python and save its weights instead, with torch.save(model.state_dict(), 'weights.pth'), then pass that file"
            ))
        }
        other => {
            return Err(format!(
                "the checkpoint holds a {}, not a dict of tensors; save a state dict (torch.save(model.state_dict(), 'weights.pth')) and pass that file",
                other.describe()
            ))
        }
    };
    let top = top.borrow();
    let entries = top.0.as_slice();
    let is_tensor = |v: &TorchValue| as_tensor(v).is_some();
    let position = |name: &str| {
        entries
            .iter()
            .position(|(k, _)| matches!(k, Value::Str(s) if &**s == name))
    };

    let chosen = match key {
        Some(key) => {
            let i = position(key).ok_or_else(|| {
                format!(
                    "no entry '{key}' at the top level of the checkpoint; its keys are {}",
                    list_keys(entries)
                )
            })?;
            let (_, value) = &entries[i];
            let dict = tensor_dict(value).ok_or_else(|| {
                format!(
                    "entry '{key}' is a {}, not a dict of tensors",
                    value.describe()
                )
            })?;
            Some((i, dict))
        }
        None if !entries.is_empty() && entries.iter().all(|(_, v)| is_tensor(v)) => None,
        None => {
            let found = STATE_DICT_KEYS.iter().find_map(|name| {
                let i = position(name)?;
                Some((i, tensor_dict(&entries[i].1)?))
            });
            if found.is_none() && !entries.iter().any(|(_, v)| is_tensor(v)) {
                return Err(format!(
                    "no state dict found: none of the top-level entries {} is a dict of tensors; name the one that holds the state dict",
                    list_keys(entries)
                ));
            }
            found
        }
    };

    let mut selected = Selected {
        tensors: Vec::new(),
        key: None,
        dropped: Vec::new(),
    };
    let mut sort = |entries: &[(TorchValue, TorchValue)]| {
        for (k, v) in entries {
            match as_tensor(v) {
                Some(t) => selected.tensors.push((key_text(k), t.clone())),
                None => selected.dropped.push((key_text(k), v.describe())),
            }
        }
    };
    match chosen {
        Some((i, state)) => {
            sort(&state.borrow().0);
            for (j, (k, v)) in entries.iter().enumerate() {
                if j == i {
                    selected.key = Some(key_text(k));
                } else {
                    selected.dropped.push((key_text(k), v.describe()));
                }
            }
        }
        None => sort(entries),
    }
    Ok(selected)
}

/// The entries of `value` if it is a dict holding at least one tensor.
fn tensor_dict(value: &TorchValue) -> Option<&RefCell<Entries<TorchObject>>> {
    match value {
        Value::Dict(dict) if dict.borrow().0.iter().any(|(_, v)| as_tensor(v).is_some()) => {
            Some(dict)
        }
        _ => None,
    }
}

/// Up to 20 keys, quoted, for messages.
fn list_keys(entries: &[(TorchValue, TorchValue)]) -> String {
    let mut keys: Vec<String> = entries
        .iter()
        .take(20)
        .map(|(k, _)| format!("'{}'", key_text(k)))
        .collect();
    if entries.len() > keys.len() {
        keys.push(format!("... ({} more)", entries.len() - keys.len()));
    }
    if keys.is_empty() {
        "none (the dict is empty)".into()
    } else {
        keys.join(", ")
    }
}

/// Removes `strip_prefix` (None: a `module.` prefix that every name has) from the names that
/// have it, and checks that the names stay distinct and non-empty.
pub(super) fn strip_names(
    tensors: Named,
    strip_prefix: Option<&str>,
) -> Result<(Named, Option<String>), String> {
    let prefix = match strip_prefix {
        Some("") => None,
        Some(p) if tensors.iter().any(|(name, _)| name.starts_with(p)) => Some(p),
        Some(p) => {
            let first = tensors.first().map_or("", |(name, _)| name.as_str());
            return Err(format!(
                "no tensor name starts with the prefix '{p}' to strip (the first name is '{first}')"
            ));
        }
        None => (!tensors.is_empty()
            && tensors
                .iter()
                .all(|(name, _)| name.starts_with(DATA_PARALLEL_PREFIX)))
        .then_some(DATA_PARALLEL_PREFIX),
    };
    let mut seen = HashSet::new();
    let mut named = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let name = match prefix.and_then(|p| name.strip_prefix(p)) {
            Some(stripped) => stripped.to_string(),
            None => name,
        };
        if name.is_empty() {
            return Err("a tensor's name is empty".into());
        }
        if !seen.insert(name.clone()) {
            let after = prefix.map_or(String::new(), |p| format!(" once '{p}' is removed"));
            return Err(format!("two tensors are named '{name}'{after}"));
        }
        named.push((name, tensor));
    }
    Ok((named, prefix.map(String::from)))
}

/// The first name component (`model.` in `model.conv1.weight`) that every name starts with
/// and that leaves every name non-empty, when there are at least two names: the mark of a
/// wrapper such as a LightningModule's attribute, which loaders of the bare network would not
/// expect.
pub(super) fn shared_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut names = names.into_iter();
    let first = names.next()?;
    let (component, _) = first.split_once('.')?;
    let prefix = format!("{component}.");
    let mut count = 1;
    for name in names {
        if !name.starts_with(&prefix) || name.len() == prefix.len() {
            return None;
        }
        count += 1;
    }
    (count >= 2 && first.len() > prefix.len()).then_some(prefix)
}
