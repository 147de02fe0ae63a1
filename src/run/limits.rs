//! Caps on what one run may ask for, which a shared service sets (`cs-init serve --max-iters`,
//! `--max-probe-pixels`): part of the settings' one check, so that a setting past a cap is
//! refused as any bad setting is, naming the cap. The command line sets none.

use super::settings::SettingsError;

/// The most a run may ask for; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Optimizer iterations per conv layer (`iters`).
    pub max_iters: Option<usize>,
    /// The probe's pixels per layer: inputs × height × width (`probe_batch`, `probe_size`). The
    /// probe's memory and time grow with them, times the layer's filters.
    pub max_probe_pixels: Option<usize>,
}

impl Limits {
    /// No cap: the command line's.
    pub const NONE: Limits = Limits {
        max_iters: None,
        max_probe_pixels: None,
    };

    pub(super) fn check_iters(&self, iters: usize) -> Result<(), SettingsError> {
        match self.max_iters {
            Some(max) if iters > max => Err(SettingsError::over_limit(
                "iters",
                format!("{iters} is over this service's limit of {max} iterations per layer (max_iters)"),
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn check_probe(
        &self,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<(), SettingsError> {
        let pixels = batch.saturating_mul(height).saturating_mul(width);
        match self.max_probe_pixels {
            Some(max) if pixels > max => Err(SettingsError::over_limit(
                "probe_size",
                format!(
                    "{batch} inputs of {height}x{width} are {pixels} pixels per layer, over this \
                     service's limit of {max} (max_probe_pixels): ask for fewer or smaller inputs"
                ),
            )),
            _ => Ok(()),
        }
    }
}
