//! What a run tells its caller while it works, and how the caller stops it.

use crate::report::LayerReport;

/// A conv tensor about to be optimized.
#[derive(Debug, Clone, Copy)]
pub struct LayerStart<'a> {
    pub name: &'a str,
    /// Shape as stored in the file.
    pub shape: &'a [usize],
    /// Counts from 1 over the tensors selected for optimization.
    pub position: usize,
    /// How many tensors are selected.
    pub count: usize,
    pub iterations: usize,
}

/// Hooks into a run: progress for a display or a job's status, and a way to stop it.
pub trait Observer {
    fn layer_started(&mut self, _layer: &LayerStart) {}
    /// An iteration of the current layer (called with the loss before each step and once after).
    fn iteration(&mut self, _iteration: usize, _loss: f64) {}
    /// A conv tensor is done (optimized, skipped or diverged).
    fn layer_finished(&mut self, _layer: &LayerReport) {}
    /// Asked at every iteration and between tensors: true ends the run with
    /// [`super::RunError::Stopped`], writing nothing.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// An observer that shows nothing and never stops the run.
pub struct Silent;
impl Observer for Silent {}
