//! The `models` command line: one file per subcommand.

mod data_args;
pub mod eval;
pub mod init;
pub mod plot;
pub mod study;
pub mod train;

use clap::{Parser, Subcommand};

pub use data_args::DataArgs;

/// Evaluate and train the paper's networks on CIFAR-10, with cs-init.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Test accuracy of a checkpoint.
    Eval(eval::EvalArgs),
    /// Train a network (one arm of the paper's Table 5) and log every epoch as JSON lines.
    Train(train::TrainArgs),
    /// Write a newly initialized network to a safetensors file (for example to run `cs-init` on it
    /// and train from the result with `train --init-from`).
    Init(init::InitArgs),
    /// Plot test accuracy (or another --metric) per epoch from training logs, one line per arm
    /// (mean over seeds), and print a Markdown table of each arm's best and final value.
    Plot(plot::PlotArgs),
    /// The feature-map similarity study: sweep cs-init settings, check Equation 3, report.
    #[command(subcommand)]
    Study(study::StudyCommand),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Eval(args) => eval::run(args),
            Command::Train(args) => train::run(args),
            Command::Init(args) => init::run(args),
            Command::Plot(args) => plot::run(args),
            Command::Study(command) => command.run(),
        }
    }
}
