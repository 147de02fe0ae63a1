//! `cs-init plan`: which tensors would be optimized, and why. Writes nothing.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::output::{print_json, Exit};
use super::{check_settings, resolve_input, PthArgs, SelectionArgs};
use cs_init::plan::{plan_files, PlanEntry};
use cs_init::report::{plan_table, SCHEMA_VERSION};
use cs_init::run::RunSettings;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A .safetensors file, a sharded checkpoint, a PyTorch file, hf://OWNER/NAME, or a built-in
    /// architecture (cnn1, cnn2, resnet18, resnet50).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,

    #[command(flatten)]
    selection: SelectionArgs,

    #[command(flatten)]
    pth: PthArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PlanReport {
    schema_version: u32,
    input: String,
    optimized: usize,
    /// What reading the input changed (a PyTorch file's key, stripped prefix, dropped entries).
    notes: Vec<String>,
    tensors: Vec<PlanEntry>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Exit> {
    let mut settings = RunSettings::default();
    args.selection.apply(&mut settings);
    args.pth.apply(&mut settings);
    let checked = check_settings(&settings)?;
    let input = resolve_input(&args.input, &checked, true)?;
    let selection = checked.selection;
    let opened = input.open(0)?;
    let tensors: Vec<_> = opened.files.iter().map(|f| f.tensors()).collect();
    let entries: Vec<PlanEntry> = plan_files(&tensors, &selection)
        .into_iter()
        .flatten()
        .collect();
    let optimized = entries.iter().filter(|e| e.optimize).count();
    if args.json {
        print_json(&PlanReport {
            schema_version: SCHEMA_VERSION,
            input: input.describe(),
            optimized,
            notes: opened.notes,
            tensors: entries,
        })?;
    } else {
        for note in &opened.notes {
            println!("note: {note}");
        }
        print!("{}", plan_table(&entries));
        println!(
            "\n{optimized} of {} tensors would be optimized.",
            entries.len()
        );
    }
    Ok(Exit::Success)
}
