//! The models crate's tests (networks, data, the trainer's command line), one module per concept
//! in one test binary.

mod common;

mod checkpoints;
mod cli;
mod conv_op;
mod cpu_ops;
mod data;
mod networks;
mod pretrained;
