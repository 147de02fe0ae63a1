//! A worker: takes the oldest queued job, runs the library's pipeline on it on its own thread
//! pool, and records how it ended. Files are written to the job's staging directory and
//! published (renamed) before the store says the job succeeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::run_error_code;
use super::layout::Layout;
use super::live::{Event, LiveJob};
use super::service::{cache_key, Service};
use super::store::{Ending, JobRow, JobState};
use super::view::{Progress, StoredFile, StoredResult};
use cs_init::report::LayerReport;
use cs_init::run::{
    hex, prepare, Destination, Execution, InputAccess, LayerStart, Observer, RunError, RunSettings,
};

/// How often a listener is sent the current layer's loss, at most.
const ITERATION_EVENTS: Duration = Duration::from_millis(50);

/// Runs jobs until the service shuts down. `threads` sizes this worker's pool.
pub fn run(service: Arc<Service>, index: usize, threads: usize) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("cs-init-worker-{index}-{i}"))
        .start_handler(|_| lower_priority())
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("worker {index}: cannot start its thread pool: {e}");
            return;
        }
    };
    let mut seen = 0;
    while !service.live.shutting_down() {
        match service.claim_next() {
            Ok(Some(job)) => run_job(&service, &pool, job),
            Ok(None) => service.wait_for_work(&mut seen, Duration::from_secs(1)),
            Err(e) => {
                tracing::error!("worker {index}: job store: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Computation yields to request handling, so the server answers while a job runs.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread (who = 0 is the calling thread on Linux) only
    // changes its scheduling niceness.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 5);
    }
}

pub(crate) fn run_job(service: &Service, pool: &rayon::ThreadPool, job: JobRow) {
    let started = Instant::now();
    let live = service.live.job(&job.id);
    live.set_progress(Some(Progress {
        layer: 0,
        layers: 0,
        tensor: None,
        iteration: 0,
        iterations: 0,
        loss: None,
        layers_done: 0,
    }));
    service.announce(&job);
    let outcome = execute(service, pool, &job, &live);
    let staging = service.layout.staging(&job.id, job.attempts);
    if outcome.is_err() {
        if let Err(e) = Layout::remove(&staging) {
            tracing::error!("job {}: cannot remove {}: {e}", job.id, staging.display());
        }
    }
    if live.lost() {
        // Another server may be running it: whatever this run made is not the job's.
        service.forget_lost(&job.id);
        tracing::warn!("job {}: stopped here, as this server lost it", job.id);
        return;
    }
    // Counted before the store says so, so that whoever sees the job ended sees it counted.
    let ended = match &outcome {
        Ok(_) => Some(JobState::Succeeded),
        Err(Failure::Stopped) if live.cancel_requested() => Some(JobState::Canceled),
        Err(Failure::Stopped) => None,
        Err(Failure::Failed { .. }) => Some(JobState::Failed),
    };
    if let Some(state) = ended {
        service
            .metrics
            .job_finished(state, started.elapsed().as_secs_f64());
    }
    let finished = match outcome {
        Ok((result, key, cached_from)) => service.finish(
            &job.id,
            &Ending::Succeeded {
                result: &result,
                cache_key: &key,
                cached_from: cached_from.as_deref(),
            },
        ),
        Err(Failure::Stopped) if live.cancel_requested() => {
            service.finish(&job.id, &Ending::Canceled)
        }
        // A shutdown: the job runs again after the restart.
        Err(Failure::Stopped) => service.release(&job.id),
        Err(Failure::Failed { code, message }) => service.finish(
            &job.id,
            &Ending::Failed {
                code,
                message: &message,
            },
        ),
    };
    match finished {
        Ok(Some(row)) => {
            if row.state.is_terminal() {
                tracing::info!(
                    "job {} {} in {:.2} s",
                    row.id,
                    row.state.as_str(),
                    started.elapsed().as_secs_f64()
                );
            }
            service.announce(&row);
        }
        Ok(None) => tracing::warn!("job {} was no longer running when it ended", job.id),
        Err(e) => tracing::error!("job {}: cannot record how it ended: {e}", job.id),
    }
}

enum Failure {
    Stopped,
    Failed { code: &'static str, message: String },
}

/// Runs the job (or reuses an earlier result) and publishes its files; returns the stored
/// result, the cache key and the job it was reused from.
fn execute(
    service: &Service,
    pool: &rayon::ThreadPool,
    job: &JobRow,
    live: &Arc<LiveJob>,
) -> Result<(StoredResult, String, Option<String>), Failure> {
    let failed = |code, message: String| Failure::Failed {
        code,
        message: service.redact(&message),
    };
    let input = service
        .parse_input(&job.input)
        .map_err(|e| failed(e.code, e.message))?;
    let settings: RunSettings = serde_json::from_str(&job.settings)
        .map_err(|e| failed("internal", format!("stored settings: {e}")))?;
    let run_failed = |e: RunError| match e {
        RunError::Stopped => Failure::Stopped,
        e => failed(run_error_code(&e), input.relabel(&e.to_string())),
    };
    if let Some(id) = job.input.strip_prefix("upload:") {
        service
            .fetch_upload(id)
            .map_err(|e| failed("input_unavailable", e.message))?;
    }
    let access = InputAccess {
        progress: false,
        cache_only: false,
    };
    let prepared = prepare(&input.source, &settings, &access).map_err(run_failed)?;
    let key = cache_key(&prepared.input_sha256().map_err(run_failed)?, &job.settings);
    let internal = |e: super::error::ServiceError| failed("internal", e.message);
    let stop = || live.cancel_requested() || live.lost() || service.live.shutting_down();
    if let Some((source, result)) = service
        .shared_result(&job.id, &key, stop)
        .map_err(internal)?
    {
        service
            .link_result(&source, &job.id, job.attempts)
            .map_err(internal)?;
        return Ok((result, key, Some(source.id)));
    }

    let staging = service.layout.staging(&job.id, job.attempts);
    let io = |e: std::io::Error| failed("internal", format!("{}: {e}", staging.display()));
    Layout::remove(&staging).map_err(io)?;
    std::fs::create_dir_all(&staging).map_err(io)?;
    let checkpoint = if prepared.sharded() {
        format!("{}.cs", input.stem)
    } else {
        format!("{}.cs.safetensors", input.stem)
    };
    let execution = Execution {
        destination: Destination {
            checkpoint: Some(staging.join(&checkpoint)),
            report: Some(staging.join("report.json")),
            plot: Some(staging.join("plot.svg")),
            force: false,
        },
        device: service.device.clone(),
        command_line: format!("cs-init serve (job {})", job.id),
        input_label: Some(job.input.clone()),
    };
    let deadline = service
        .config
        .job_time_limit
        .map(|limit| (Instant::now() + limit, limit));
    let mut observer = JobObserver::new(service, &job.id, live.clone(), deadline);
    // A cancel asked for wins: the job ends canceled, as asked.
    let timed_out = |observer: &JobObserver| {
        let limit = observer
            .past_deadline()
            .filter(|_| !live.cancel_requested());
        limit.map(|limit| {
            failed(
                "time_limit",
                format!(
                    "the job ran past this service's per-job time limit of {} (job_time_limit); \
                     ask for fewer iterations or a smaller probe",
                    humantime::format_duration(limit)
                ),
            )
        })
    };
    let outcome = pool
        .install(|| prepared.execute(&execution, &mut observer))
        .map_err(|e| match e {
            RunError::Stopped => timed_out(&observer).unwrap_or(Failure::Stopped),
            e => run_failed(e),
        })?;

    let relative = |path: &std::path::Path| {
        path.strip_prefix(&staging)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let files = outcome
        .files
        .iter()
        .map(|f| StoredFile {
            name: f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: relative(&f.path),
            size: f.size,
            sha256: f.sha256.clone(),
        })
        .collect();
    let described = |name: &str| -> Result<StoredFile, Failure> {
        let bytes = std::fs::read(staging.join(name)).map_err(io)?;
        Ok(StoredFile {
            name: name.into(),
            path: name.into(),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        })
    };
    let result = StoredResult {
        files,
        report: described("report.json")?,
        plot: described("plot.svg")?,
        totals: serde_json::to_value(&outcome.report.totals).expect("totals serialize"),
        diverged: outcome.diverged(),
    };
    // The last chance to stop: once published, the job has succeeded.
    if observer.stop_requested() {
        return Err(timed_out(&observer).unwrap_or(Failure::Stopped));
    }
    service.layout.publish(&job.id, job.attempts).map_err(io)?;
    // In the object store before the row names it.
    service
        .share_result(&job.id, &result)
        .map_err(|e| failed("internal", e.message))?;
    Ok((result, key, None))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(sha2::Sha256::digest(bytes).as_slice())
}

/// Turns the pipeline's progress into the job's live progress, its events and its durable
/// per-layer record; stops the run on cancel, shutdown or the per-job time limit.
struct JobObserver<'a> {
    service: &'a Service,
    id: &'a str,
    live: Arc<LiveJob>,
    /// When the run must end, and the limit that set it.
    deadline: Option<(Instant, Duration)>,
    /// Conv tensors finished so far.
    finished: usize,
    position: usize,
    last_event: Instant,
}

impl<'a> JobObserver<'a> {
    fn new(
        service: &'a Service,
        id: &'a str,
        live: Arc<LiveJob>,
        deadline: Option<(Instant, Duration)>,
    ) -> Self {
        Self {
            service,
            id,
            live,
            deadline,
            finished: 0,
            position: 0,
            last_event: Instant::now(),
        }
    }

    /// The time limit, once the run is past it.
    fn past_deadline(&self) -> Option<Duration> {
        self.deadline
            .filter(|(deadline, _)| Instant::now() >= *deadline)
            .map(|(_, limit)| limit)
    }

    fn send(&self, name: &'static str, data: serde_json::Value) {
        self.live.send(Event {
            name,
            data: data.to_string(),
            terminal: false,
        });
    }
}

impl Observer for JobObserver<'_> {
    fn layer_started(&mut self, layer: &LayerStart) {
        self.position = layer.position;
        self.live.set_progress(Some(Progress {
            layer: layer.position,
            layers: layer.count,
            tensor: Some(layer.name.to_string()),
            iteration: 0,
            iterations: layer.iterations,
            loss: None,
            layers_done: self.finished,
        }));
        self.live.start_curve();
        self.send(
            "layer_started",
            serde_json::json!({
                "position": layer.position,
                "count": layer.count,
                "name": layer.name,
                "shape": layer.shape,
                "iterations": layer.iterations,
            }),
        );
        self.last_event = Instant::now();
    }

    fn iteration(&mut self, iteration: usize, loss: f64) {
        self.live.update_progress(|p| {
            p.iteration = iteration;
            p.loss = Some(loss);
        });
        let last = self
            .live
            .progress()
            .is_some_and(|p| iteration == p.iterations);
        if iteration == 0 || last || self.last_event.elapsed() >= ITERATION_EVENTS {
            self.last_event = Instant::now();
            self.live.extend_curve((iteration, loss));
            self.send(
                "iteration",
                serde_json::json!({
                    "position": self.position,
                    "iteration": iteration,
                    "loss": finite(loss),
                }),
            );
        }
    }

    fn layer_finished(&mut self, layer: &LayerReport) {
        self.finished += 1;
        let optimized = layer.status() != cs_init::report::Status::Skipped;
        self.live.update_progress(|p| p.layers_done = self.finished);
        let progress = self.live.progress();
        let record = serde_json::json!({
            "ordinal": self.finished,
            "position": optimized.then_some(self.position),
            "layer": layer,
        });
        let text = record.to_string();

        if let Err(e) = self
            .service
            .record_layer(self.id, self.finished, &text, progress.as_ref())
        {
            tracing::warn!("job {}: cannot record layer {}: {e}", self.id, layer.name);
        }
        self.live.send(Event {
            name: "layer_finished",
            data: text,
            terminal: false,
        });
    }

    fn stop_requested(&self) -> bool {
        self.live.cancel_requested()
            || self.live.lost()
            || self.service.live.shutting_down()
            || self.past_deadline().is_some()
    }
}

/// JSON has no NaN or infinity: a diverging loss is sent as null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
