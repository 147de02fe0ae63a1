//! `GET /metrics`: jobs by state, queue depth, job durations and bytes moved, in the Prometheus
//! text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::store::JobState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

pub struct Metrics {
    registry: Registry,
    jobs: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    job_seconds: Histogram,
    uploaded_bytes: Counter,
    served_bytes: Counter,
    /// Mean duration of recent jobs (exponentially weighted), for Retry-After.
    mean_job_seconds: Mutex<Option<f64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cs_init");
        let jobs = Family::<StateLabel, Gauge>::default();
        let queue_depth = Gauge::default();
        // 0.1 s to about 55 minutes.
        let job_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        let uploaded_bytes = Counter::default();
        let served_bytes = Counter::default();
        registry.register("jobs", "Jobs in the store, by state", jobs.clone());
        registry.register(
            "queue_depth",
            "Jobs waiting for a worker",
            queue_depth.clone(),
        );
        registry.register(
            "job_seconds",
            "Time from a worker taking a job to its end (succeeded, failed or canceled)",
            job_seconds.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Bytes of accepted uploads",
            uploaded_bytes.clone(),
        );
        registry.register(
            "served_bytes",
            "Bytes of result files served",
            served_bytes.clone(),
        );
        Self {
            registry,
            jobs,
            queue_depth,
            job_seconds,
            uploaded_bytes,
            served_bytes,
            mean_job_seconds: Mutex::new(None),
        }
    }

    pub fn job_finished(&self, state: JobState, seconds: f64) {
        self.job_seconds.observe(seconds);
        if state == JobState::Succeeded {
            let mut mean = self
                .mean_job_seconds
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *mean = Some(match *mean {
                Some(m) => 0.8 * m + 0.2 * seconds,
                None => seconds,
            });
        }
    }

    pub fn mean_job_seconds(&self) -> Option<f64> {
        *self
            .mean_job_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn uploaded(&self, bytes: u64) {
        self.uploaded_bytes.inc_by(bytes);
    }

    pub fn served(&self, bytes: u64) {
        self.served_bytes.inc_by(bytes);
    }

    /// The text exposition, with the job counts read from the store just now.
    pub fn encode(&self, counts: &BTreeMap<JobState, u64>) -> String {
        for (state, n) in counts {
            self.jobs
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(*n as i64);
        }
        self.queue_depth
            .set(counts.get(&JobState::Queued).copied().unwrap_or(0) as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}
