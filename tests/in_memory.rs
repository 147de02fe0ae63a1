//! A state dict in memory (the Python package's path, `run_in_memory`) against the pipeline on
//! the same tensors saved as safetensors: the same new bytes and the same report.

use std::collections::HashMap;

use candle_core::Tensor;
use cs_init::arch::Architecture;
use cs_init::checkpoint::SafetensorsFile;
use cs_init::run::{
    prepare, run_in_memory, Destination, Execution, InputAccess, RunError, RunLabels, RunSettings,
    Silent, StateDict,
};

/// The report's layers less their timings, which differ between two runs.
fn layers_without_timings(report: &cs_init::report::RunReport) -> serde_json::Value {
    let mut layers = serde_json::to_value(&report.layers).unwrap();
    for layer in layers.as_array_mut().unwrap() {
        let layer = layer.as_object_mut().unwrap();
        layer.retain(|key, _| !key.ends_with("seconds"));
    }
    layers
}

#[test]
fn a_state_dict_in_memory_gets_the_pipelines_bytes_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cnn2.safetensors");
    let tensors: HashMap<String, Tensor> =
        Architecture::Cnn2.tensors(3).unwrap().into_iter().collect();
    candle_core::safetensors::save(&tensors, &input).unwrap();
    let settings = RunSettings {
        iters: 7,
        seed: 3,
        exclude: vec!["^conv1".into()],
        ..RunSettings::default()
    };

    let output = dir.path().join("out.safetensors");
    let prepared = prepare(input.to_str().unwrap(), &settings, &InputAccess::default()).unwrap();
    let execution = Execution {
        destination: Destination {
            checkpoint: Some(output.clone()),
            ..Destination::default()
        },
        device: candle_core::Device::Cpu,
        command_line: "test".into(),
        input_label: None,
    };
    let piped = prepared.execute(&execution, &mut Silent).unwrap();

    let file = SafetensorsFile::open(&input).unwrap();
    let dict = StateDict {
        tensors: file.tensors().to_vec(),
        bytes: file.tensors().iter().map(|t| Some(file.data(t))).collect(),
    };
    let labels = RunLabels {
        command_line: "test".into(),
        input: "a model".into(),
    };
    let checked = settings.check().unwrap();
    let in_memory = run_in_memory(&dict, &checked, &labels, &mut Silent).unwrap();

    let written = SafetensorsFile::open(&output).unwrap();
    assert_eq!(in_memory.weights.len(), piped.report.totals.optimized);
    assert!(
        in_memory.weights.len() >= 2,
        "{} optimized",
        in_memory.weights.len()
    );
    for (index, bytes) in &in_memory.weights {
        let name = &dict.tensors[*index].name;
        assert!(!name.starts_with("conv1"), "{name} was excluded");
        let out = written.tensor(name).unwrap();
        assert!(
            bytes == written.data(out),
            "{name}: bytes differ from the pipeline's"
        );
    }
    assert_eq!(
        layers_without_timings(&in_memory.report),
        layers_without_timings(&piped.report)
    );
    assert_eq!(
        in_memory.report.totals.loss_after,
        piped.report.totals.loss_after
    );
    assert_eq!(in_memory.report.input, "a model");

    // Nothing selected: every weight given and its reason.
    let none = RunSettings {
        include: vec!["^nothing".into()],
        ..RunSettings::default()
    };
    let refused = run_in_memory(&dict, &none.check().unwrap(), &labels, &mut Silent);
    let Err(e @ RunError::NothingSelected { .. }) = refused else {
        panic!("expected NothingSelected");
    };
    let message = e.to_string();
    assert!(message.starts_with("a model: no conv layer"), "{message}");
    assert!(message.contains("conv1.weight: "), "{message}");
}
