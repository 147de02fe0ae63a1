//! `cs_init._native`: the cs-init library behind PyO3, for the pure-Python layer in `cs_init/`.
//!
//! Arrays cross as numpy arrays (f32/f64 for the loss and its gradient) or as raw little-endian
//! bytes with a safetensors dtype name (a model's weights, any float dtype, bf16 included): the
//! bytes the command line reads from a checkpoint, read by the same function, so that a weight
//! goes through exactly the pipeline's per-tensor work. Rust runs on a worker thread with the GIL
//! released; the calling thread waits for it, hands its progress events to the Python callback,
//! and checks for signals, so that Ctrl-C stops a run within a layer.

mod cli;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::Device;
use numpy::{
    Element, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use cs_init::checkpoint::{Dtype, TensorInfo};
use cs_init::report::LayerReport;
use cs_init::run::{
    prepare, run_in_memory, with_threads, Destination, Execution, InputAccess, LayerStart,
    Observer, RunError, RunLabels, RunSettings, SettingsError, StateDict,
};
use cs_init::similarity::fused::{self, Real};
use cs_init::{KernelGeometry, Variant};

/// One of the exception classes of `cs_init._errors`, raised with `message`.
fn error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py
        .import("cs_init._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)));
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

fn settings_error(py: Python<'_>, e: &SettingsError) -> PyErr {
    let err = error(py, "SettingsError", e.to_string());
    let _ = err.value(py).setattr("field", e.field);
    err
}

/// A run's error as the Python exception of its kind.
fn run_error(py: Python<'_>, e: RunError) -> PyErr {
    let class = match &e {
        RunError::Settings(s) => return settings_error(py, s),
        RunError::Checkpoint(_) => "CheckpointError",
        RunError::Device(_) => "DeviceError",
        RunError::NoConvLayers { .. } | RunError::NothingSelected { .. } => "NoConvLayersError",
        RunError::Output(_) => "OutputError",
        RunError::Stopped => "StoppedError",
        RunError::Compute(_) => "ComputeError",
    };
    error(py, class, e.to_string())
}

fn variant(py: Python<'_>, name: &str) -> PyResult<Variant> {
    name.parse::<Variant>()
        .map_err(|message| error(py, "SettingsError", format!("variant: {message}")))
}

/// The settings from their JSON object (the keywords of the Python call), checked as the command
/// line checks its flags. A value of the wrong type is named by its field.
fn settings(py: Python<'_>, json: &str) -> PyResult<RunSettings> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| PyValueError::new_err(e.to_string()))?;
    match serde_json::from_value::<RunSettings>(value.clone()) {
        Ok(settings) => {
            settings.check().map_err(|e| settings_error(py, &e))?;
            Ok(settings)
        }
        Err(whole) => {
            // Find the field serde refused, so that the message names it.
            if let serde_json::Value::Object(map) = value {
                for (key, v) in map {
                    let mut one = serde_json::Map::new();
                    one.insert(key.clone(), v);
                    let one = serde_json::Value::Object(one);
                    if let Err(e) = serde_json::from_value::<RunSettings>(one) {
                        let message = e.to_string();
                        if message.starts_with("unknown field") {
                            return Err(PyTypeError::new_err(format!(
                                "unexpected keyword argument '{key}'"
                            )));
                        }
                        let err = error(py, "SettingsError", format!("{key}: {message}"));
                        let _ = err.value(py).setattr("field", key);
                        return Err(err);
                    }
                }
            }
            Err(error(py, "SettingsError", whole.to_string()))
        }
    }
}

/// The command line's defaults, as a JSON object keyed by keyword.
#[pyfunction]
fn default_settings() -> String {
    serde_json::to_string(&RunSettings::default()).expect("settings serialize")
}

/// Checks settings given as a JSON object; raises what a run would raise.
#[pyfunction]
fn check_settings(py: Python<'_>, json: &str) -> PyResult<()> {
    settings(py, json).map(|_| ())
}

/// What the worker thread tells the calling thread.
enum Event {
    Started {
        name: String,
        shape: Vec<usize>,
        position: usize,
        count: usize,
        iterations: usize,
    },
    Iteration {
        iteration: usize,
        loss: f64,
    },
    Finished(Box<LayerReport>),
}

/// The observer on the worker thread: events go to the calling thread (iterations at most every
/// 50 ms), and a stop asked for there ends the run.
struct Relay<'a> {
    events: Sender<Event>,
    stop: &'a AtomicBool,
    last_iteration: Instant,
    iterations: usize,
}

impl Observer for Relay<'_> {
    fn layer_started(&mut self, layer: &LayerStart) {
        self.iterations = layer.iterations;
        let _ = self.events.send(Event::Started {
            name: layer.name.to_string(),
            shape: layer.shape.to_vec(),
            position: layer.position,
            count: layer.count,
            iterations: layer.iterations,
        });
    }

    fn iteration(&mut self, iteration: usize, loss: f64) {
        let last = iteration == self.iterations;
        if last || self.last_iteration.elapsed() >= Duration::from_millis(50) {
            self.last_iteration = Instant::now();
            let _ = self.events.send(Event::Iteration { iteration, loss });
        }
    }

    fn layer_finished(&mut self, layer: &LayerReport) {
        let _ = self.events.send(Event::Finished(Box::new(layer.clone())));
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn event_dict<'py>(py: Python<'py>, event: Event) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match event {
        Event::Started {
            name,
            shape,
            position,
            count,
            iterations,
        } => {
            d.set_item("event", "layer_started")?;
            d.set_item("name", name)?;
            d.set_item("shape", shape)?;
            d.set_item("position", position)?;
            d.set_item("count", count)?;
            d.set_item("iterations", iterations)?;
        }
        Event::Iteration { iteration, loss } => {
            d.set_item("event", "iteration")?;
            d.set_item("iteration", iteration)?;
            d.set_item("loss", loss)?;
        }
        Event::Finished(layer) => {
            d.set_item("event", "layer_finished")?;
            d.set_item("name", &layer.name)?;
            d.set_item(
                "layer",
                serde_json::to_string(&*layer).expect("a layer report serializes"),
            )?;
        }
    }
    Ok(d)
}

/// Runs `work` on a worker thread with the GIL released, on a pool of `threads` threads. The
/// calling thread passes its events to `progress` and checks for signals every 50 ms; a signal's
/// exception (KeyboardInterrupt) or the callback's stops the work and is raised once it ended.
fn drive<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&mut Relay) -> T + Send,
) -> PyResult<T> {
    let stop = AtomicBool::new(false);
    let (sender, events) = mpsc::channel();
    // Waited on with the GIL released, which wants what it borrows to be shareable.
    let events = Mutex::new(events);
    let mut pending: Option<PyErr> = None;
    let result = std::thread::scope(|scope| {
        let stop = &stop;
        let worker = scope.spawn(move || {
            let mut relay = Relay {
                events: sender,
                stop,
                last_iteration: Instant::now(),
                iterations: 0,
            };
            with_threads(threads, || work(&mut relay))
        });
        loop {
            let received = py.allow_threads(|| {
                let events = events.lock().unwrap_or_else(|e| e.into_inner());
                events.recv_timeout(Duration::from_millis(50))
            });
            match received {
                Ok(event) => {
                    if let (Some(callback), None) = (progress, &pending) {
                        let called = event_dict(py, event).and_then(|d| callback.call1((d,)));
                        if let Err(e) = called {
                            pending = Some(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if pending.is_none() {
                if let Err(e) = py.check_signals() {
                    pending = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        match py.allow_threads(|| worker.join()) {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    if let Some(e) = pending {
        return Err(e);
    }
    result.map_err(|e| error(py, "Error", e.to_string()))
}

/// The command's pipeline on a checkpoint: returns the report's JSON and what was written.
#[pyfunction]
#[pyo3(signature = (input, settings_json, output=None, report=None, plot=None, force=false,
    threads=None, progress=None, command_line=String::new(), cache_only=false))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    input: String,
    settings_json: &str,
    output: Option<PathBuf>,
    report: Option<PathBuf>,
    plot: Option<PathBuf>,
    force: bool,
    threads: Option<usize>,
    progress: Option<Bound<'py, PyAny>>,
    command_line: String,
    cache_only: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let settings = settings(py, settings_json)?;
    let access = InputAccess {
        progress: false,
        cache_only,
    };
    let execution = Execution {
        destination: Destination {
            checkpoint: output,
            report,
            plot,
            force,
        },
        device: Device::Cpu,
        command_line,
        input_label: None,
    };
    let outcome = drive(py, threads, progress.as_ref(), |relay| {
        let prepared = prepare(&input, &settings, &access)?;
        prepared.execute(&execution, relay)
    })?;
    let outcome = outcome.map_err(|e| run_error(py, e))?;
    let d = PyDict::new(py);
    d.set_item("report", outcome.report.to_json())?;
    d.set_item("checkpoint", outcome.checkpoint)?;
    d.set_item("report_path", outcome.report_path)?;
    d.set_item("plot_path", outcome.plot_path)?;
    let files = PyList::empty(py);
    for f in &outcome.files {
        files.append((f.path.clone(), f.size, f.sha256.clone()))?;
    }
    d.set_item("files", files)?;
    Ok(d)
}

/// A safetensors dtype by its name in a file's header (`F32`, `BF16`, `I64`, ...).
fn dtype(py: Python<'_>, name: &str) -> PyResult<Dtype> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| error(py, "Error", format!("unknown dtype name '{name}'")))
}

/// The pipeline's per-tensor work on a model's conv weights, as `cs-init` does it on the model's
/// state dict saved with safetensors (`cs_init::run::run_in_memory`).
///
/// `tensors` is every entry of the state dict (name, safetensors dtype name, shape), as the
/// planner sees a checkpoint; `weights` the conv modules' weights among them (index into
/// `tensors`, little-endian bytes in the given dtype and shape, filters along the first axis).
/// Returns the report's JSON and every optimized weight's new bytes (index, bytes).
#[pyfunction]
#[pyo3(signature = (tensors, weights, settings_json, threads=None, progress=None,
    command_line=String::new(), input_label=String::new()))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn decorrelate<'py>(
    py: Python<'py>,
    tensors: Vec<(String, String, Vec<usize>)>,
    weights: Vec<(usize, PyReadonlyArray1<'py, u8>)>,
    settings_json: &str,
    threads: Option<usize>,
    progress: Option<Bound<'py, PyAny>>,
    command_line: String,
    input_label: String,
) -> PyResult<(String, Vec<(usize, Bound<'py, PyArray1<u8>>)>)> {
    let checked = settings(py, settings_json)?
        .check()
        .map_err(|e| settings_error(py, &e))?;
    let tensors = tensors
        .iter()
        .map(|(name, dtype_name, shape)| {
            Ok(TensorInfo {
                name: name.clone(),
                dtype: dtype(py, dtype_name)?,
                shape: shape.clone(),
                begin: 0,
                end: 0,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let bytes = weight_bytes(&tensors, &weights)?;
    let dict = StateDict { tensors, bytes };
    let labels = RunLabels {
        command_line,
        input: input_label,
    };
    let work = |relay: &mut Relay| run_in_memory(&dict, &checked, &labels, relay);
    let outcome = drive(py, threads, progress.as_ref(), work)?.map_err(|e| run_error(py, e))?;
    let written = outcome
        .weights
        .into_iter()
        .map(|(i, b)| (i, PyArray1::from_vec(py, b)))
        .collect();
    Ok((outcome.report.to_json(), written))
}

/// Each weight's bytes by its index into `tensors`, checked against its shape and dtype.
fn weight_bytes<'a>(
    tensors: &[TensorInfo],
    weights: &'a [(usize, PyReadonlyArray1<'_, u8>)],
) -> PyResult<Vec<Option<&'a [u8]>>> {
    let mut bytes: Vec<Option<&[u8]>> = vec![None; tensors.len()];
    for (index, array) in weights {
        let slot = bytes
            .get_mut(*index)
            .ok_or_else(|| PyValueError::new_err(format!("weight index {index} out of range")))?;
        let data = array
            .as_slice()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let info = &tensors[*index];
        let expected = info.shape.iter().product::<usize>() * info.dtype.bitsize() / 8;
        if data.len() != expected {
            return Err(PyValueError::new_err(format!(
                "{}: {} bytes for shape {:?} in {:?} ({expected} expected)",
                info.name,
                data.len(),
                info.shape,
                info.dtype
            )));
        }
        *slot = Some(data);
    }
    Ok(bytes)
}

/// A conv weight's geometry, or TypeError/ValueError as Python users expect.
fn geometry(shape: &[usize]) -> PyResult<KernelGeometry> {
    KernelGeometry::from_dims(shape).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// L_CS of a C-contiguous numpy array, and its gradient when `grad`.
fn loss_of<'py, T: Real + Element>(
    py: Python<'py>,
    array: PyReadonlyArrayDyn<'py, T>,
    variant: Variant,
    grad: bool,
) -> PyResult<(f64, Option<Bound<'py, PyArrayDyn<T>>>)> {
    let geometry = geometry(array.shape())?;
    let data = array
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    if !grad {
        let loss = py.allow_threads(|| fused::loss(data, &geometry, variant));
        return Ok((loss, None));
    }
    let (loss, gradient) = py.allow_threads(|| fused::loss_and_gradient(data, &geometry, variant));
    let gradient = PyArray1::from_vec(py, gradient).reshape(array.shape())?;
    Ok((loss, Some(gradient)))
}

/// L_CS of a `[out, in/groups, k...]` weight (a C-contiguous f32 or f64 numpy array) with the
/// fused engine, and its gradient (same dtype and shape) when `grad`: `(loss, gradient or None)`.
#[pyfunction]
#[pyo3(signature = (array, variant="paper", grad=false))]
fn conv_similarity<'py>(
    py: Python<'py>,
    array: &Bound<'py, PyAny>,
    variant: &str,
    grad: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let variant = self::variant(py, variant)?;
    if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f32>>() {
        return Ok(loss_of(py, a, variant, grad)?.into_pyobject(py)?.into_any());
    }
    if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'py, f64>>() {
        return Ok(loss_of(py, a, variant, grad)?.into_pyobject(py)?.into_any());
    }
    let dtype = array
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| array.get_type().to_string());
    Err(PyTypeError::new_err(format!(
        "conv_similarity takes a numpy array of float32 or float64, got {dtype}"
    )))
}

/// Names of the settings' fields, for the Python layer's keyword checks.
#[pyfunction]
fn setting_names() -> Vec<String> {
    match serde_json::to_value(RunSettings::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The four variants' names, as on the command line.
#[pyfunction]
fn variants() -> Vec<&'static str> {
    Variant::ALL.iter().map(|v| v.name()).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(check_settings, m)?)?;
    m.add_function(wrap_pyfunction!(setting_names, m)?)?;
    m.add_function(wrap_pyfunction!(variants, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(decorrelate, m)?)?;
    m.add_function(wrap_pyfunction!(conv_similarity, m)?)?;
    m.add_function(wrap_pyfunction!(cli::cli_main, m)?)?;
    Ok(())
}
