//! The `__metadata__` of the output: the input's own keys, plus what defines the result. Nothing
//! that depends on where or how the run was started (paths, the command line), so that the same
//! input and settings give the same bytes.

use std::collections::BTreeMap;

use super::CheckedSettings;
use crate::optim::OptimizerConfig;

/// Every key this run adds starts with this.
const PREFIX: &str = "cs_init.";

/// Provenance keys added to `__metadata__`.
pub fn provenance(settings: &CheckedSettings) -> BTreeMap<String, String> {
    let minimize = &settings.minimize;
    let mut m = BTreeMap::new();
    let mut put = |key: &str, value: String| m.insert(format!("{PREFIX}{key}"), value);
    put("version", env!("CARGO_PKG_VERSION").into());
    put("variant", minimize.variant.to_string());
    put("iters", minimize.iterations.to_string());
    put("lr", minimize.optimizer.lr().to_string());
    put("optimizer", minimize.optimizer.name().into());
    if let OptimizerConfig::Sgd(c) = minimize.optimizer {
        put("momentum", c.momentum.to_string());
    }
    put("keep_norm", minimize.keep_norm.to_string());
    put("seed", settings.seed.to_string());
    m
}

/// The input's metadata with the provenance of this run. Keys of an earlier cs-init run are
/// dropped: they describe weights that this run replaced.
pub fn merged(
    input: Option<&BTreeMap<String, String>>,
    provenance: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = input
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.extend(provenance.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}
