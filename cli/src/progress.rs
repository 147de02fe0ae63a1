//! Progress on stderr: a bar per layer on a terminal, one log line per layer otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use cs_init::report::{shape, LayerOutcome, LayerReport};
use cs_init::run::{LayerStart, Observer};

pub struct Progress {
    quiet: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
    prefix: String,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            prefix: String::new(),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn layer_started(&mut self, layer: &LayerStart) {
        self.prefix = format!(
            "[{}/{}] {} {}",
            layer.position,
            layer.count,
            layer.name,
            shape(layer.shape)
        );
        if self.quiet || !self.terminal {
            return;
        }
        self.finish();
        let bar = ProgressBar::new(layer.iterations as u64).with_style(
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} it, ETA {eta} {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(self.prefix.clone());
        self.bar = Some(bar);
    }

    fn iteration(&mut self, iteration: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(iteration as u64);
            bar.set_message(format!("L_CS {loss:.3e}"));
        }
    }

    fn layer_finished(&mut self, layer: &LayerReport) {
        self.finish();
        let line = match &layer.outcome {
            _ if self.quiet => return,
            LayerOutcome::Skipped { .. } => return,
            LayerOutcome::Optimized {
                before,
                after,
                work,
                ..
            } => format!(
                "{}: L_CS {:.3e} -> {:.3e} ({:.1}%) in {:.2} s",
                self.prefix,
                before.metrics.loss,
                after.metrics.loss,
                layer.reduction_percent().unwrap_or(0.0),
                work.seconds
            ),
            LayerOutcome::Diverged { reason, .. } => format!("{}: {reason}", self.prefix),
        };
        eprintln!("{line}");
    }
}
