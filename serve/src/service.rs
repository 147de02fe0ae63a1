//! The job service without HTTP: creating, reading, listing and canceling jobs, the result cache,
//! retention, and what a restart does. Every change goes through the store before anyone hears
//! of it (`announce` runs after the commit).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::error::{ErrorKind, ServiceError};
use super::input::{allowed_path, JobInput};
use super::layout::{new_id, Layout};
use super::live::{Event, Live};
use super::metrics::Metrics;
use super::objects::ObjectFiles;
use super::store::{
    self, Abandoned, Cancel, Clock, CreateError, Created, Ending, JobRow, JobState, JobStore,
    Lease, NewJob, StoreError, SystemClock, UploadRow,
};
use super::view::{CreateJob, JobList, JobView, Progress, StoredFile, StoredResult};
use cs_init::checkpoint::HubEnv;
use cs_init::device::DeviceChoice;
use cs_init::run::{hex, Limits};

/// How the service runs (`cs-init serve`'s flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// `postgres://…` for a store shared by replicas; `None` for SQLite in `data`.
    pub store: Option<String>,
    /// `s3://BUCKET/PREFIX` or `file:///DIR`: where uploads and results live, `data` being this
    /// server's working copy; `None` for `data` alone.
    pub files: Option<String>,
    /// How long a claimed job stays this server's without a heartbeat.
    pub lease: Duration,
    /// Runs of a job begun before it ends `failed` rather than run again (its server kept
    /// stopping mid-run).
    pub max_attempts: u32,
    /// Jobs run at once, each on its own thread pool.
    pub workers: usize,
    /// Required as `Authorization: Bearer TOKEN` on every route but `/healthz` and the page.
    pub token: Option<String>,
    /// Largest upload accepted, in bytes.
    pub max_upload: u64,
    /// Queued jobs beyond which new ones are refused with 429.
    pub max_queued: usize,
    /// Results and uploads older than this are deleted.
    pub keep: Duration,
    /// Local paths under these (canonical) directories may be inputs.
    pub allow_dirs: Vec<PathBuf>,
    pub device: DeviceChoice,
    /// Caps on a job's settings, refused with 422 when a request is over one.
    pub limits: Limits,
    /// A job still running this long after its run started ends `failed` (`time_limit`).
    pub job_time_limit: Option<Duration>,
}

/// The service's state, shared by the HTTP handlers, the workers and the sweeper. The store is
/// behind the service's methods: the worker and the handlers change a job only through them.
pub struct Service {
    pub config: Config,
    pub layout: Layout,
    store: Box<dyn JobStore>,
    /// The object store the files live in, when `--files` names one.
    objects: Option<ObjectFiles>,
    clock: Arc<dyn Clock>,
    /// This server's hold on the jobs it runs (its id is new at every start).
    lease: Lease,
    /// Jobs this server's workers are running.
    running: Mutex<HashSet<String>>,
    /// Jobs that clients here follow while another server may be running them.
    followed: Mutex<HashMap<String, Followed>>,
    pub live: Live,
    pub metrics: Metrics,
    pub device: candle_core::Device,
    /// Values never to show in a response or a log line (the Hub token, the API token).
    secrets: Vec<String>,
    /// Wakes the workers when a job is queued.
    queue: (Mutex<u64>, Condvar),
}

/// What a follower has passed on of a job another server runs.
struct Followed {
    /// Layers sent (the run's first `layers` records).
    layers: usize,
    state: JobState,
    /// The run they belong to: a new run records its layers from the first again.
    attempts: i64,
}

/// What `create_job` did.
pub struct CreatedJob {
    pub job: JobView,
    /// The same `Idempotency-Key` was seen before with the same request.
    pub replayed: bool,
}

impl Service {
    /// Opens the data directory and the store, and puts everything back in order after a crash:
    /// running jobs are queued again, half-written files are deleted, and a succeeded job whose
    /// files are gone runs again.
    pub fn open(config: Config) -> Result<Arc<Self>, ServiceError> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Service::open`] with the store's time from `clock`.
    pub fn open_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ServiceError> {
        let layout = Layout::create(&config.data)?;
        let store =
            store::open(config.store.as_deref(), &layout.store(), clock.clone()).map_err(|e| {
                let place = match &config.store {
                    Some(url) => format!("--store {}", store::redact_url(url)),
                    None => layout.store().display().to_string(),
                };
                ServiceError::internal(format!("{place}: {e}"))
            })?;
        let objects = config
            .files
            .as_deref()
            .map(|url| {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    ServiceError::internal("--files: an object store needs the server's runtime")
                })?;
                ObjectFiles::open(url, runtime)
            })
            .transpose()?;
        let opened = config
            .device
            .open()
            .map_err(|e| ServiceError::internal(e.to_string()))?;
        if let Some(notice) = &opened.notice {
            tracing::warn!("{notice}");
        }
        let mut secrets: Vec<String> = HubEnv::from_env()
            .token()
            .map(str::to_string)
            .into_iter()
            .collect();
        secrets.extend(config.token.clone());
        secrets.extend(config.store.as_deref().and_then(store::url_password));
        secrets.retain(|s| !s.is_empty());
        let service = Arc::new(Self {
            metrics: Metrics::new(),
            device: opened.device,
            secrets,
            queue: (Mutex::new(0), Condvar::new()),
            live: Live::default(),
            lease: Lease {
                owner: new_id(),
                duration_ms: config.lease.as_millis() as i64,
            },
            running: Mutex::new(HashSet::new()),
            followed: Mutex::new(HashMap::new()),
            config,
            layout,
            store,
            objects,
            clock,
        });
        service.recover()?;
        Ok(service)
    }

    fn recover(&self) -> Result<(), ServiceError> {
        // Alone on its store, this server knows that no running job has a live server.
        let abandoned = self
            .store
            .release_abandoned(!self.store.shared(), self.config.max_attempts.into())?;
        self.report_abandoned(&abandoned);
        if !self.store.shared() {
            if self.objects.is_none() {
                self.forget_lost_uploads()?;
            }
            self.remove_leftovers(None)?;
        }
        // Job directories: only succeeded, unexpired jobs have one, complete.
        for job in self.store.live_results()? {
            if !self.result_files_present(&job) {
                tracing::warn!("job {} lost its result files; queued again", job.id);
                self.store.requeue_lost_result(&job.id)?;
            }
        }
        Ok(())
    }

    /// Logs and announces what became of jobs whose server stopped.
    fn report_abandoned(&self, abandoned: &Abandoned) {
        for id in &abandoned.requeued {
            tracing::info!("job {id} was running on a server that stopped; queued again");
        }
        for id in &abandoned.canceled {
            tracing::info!("job {id} was being canceled on a server that stopped; canceled");
        }
        for id in &abandoned.failed {
            tracing::warn!("job {id}: its server stopped on every attempt; failed");
        }
        for id in abandoned
            .requeued
            .iter()
            .chain(&abandoned.canceled)
            .chain(&abandoned.failed)
        {
            if let Ok(Some(row)) = self.store.job(id) {
                self.announce(&row);
            }
        }
        if !abandoned.requeued.is_empty() {
            self.notify_queued();
        }
    }

    /// Files no row names: cut-off uploads, staging directories, expired results; only those
    /// last modified before `modified_before`, when given. A server alone on its data directory
    /// removes them all at start; replicas sharing one cannot tell another's work in progress
    /// from a leftover, so their sweepers remove only those older than `--keep`.
    fn remove_leftovers(&self, modified_before: Option<SystemTime>) -> Result<(), ServiceError> {
        let old_enough = |entry: &std::fs::DirEntry| match modified_before {
            None => true,
            Some(cutoff) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff),
        };
        let uploads: HashSet<String> = self.store.upload_ids()?.into_iter().collect();
        for entry in std::fs::read_dir(self.layout.uploads())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !uploads.contains(&name) && old_enough(&entry) {
                Layout::remove(&entry.path())?;
            }
        }
        let results: HashSet<String> = self
            .store
            .live_results()?
            .into_iter()
            // A complete copy here; the object store need not be asked.
            .filter(|job| {
                job.result
                    .as_ref()
                    .is_some_and(|result| self.result_files_here(&job.id, result))
            })
            .map(|job| job.id)
            .collect();
        for entry in std::fs::read_dir(self.layout.jobs())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !results.contains(&name) && old_enough(&entry) {
                Layout::remove(&entry.path())?;
            }
        }
        Layout::sync_dir(&self.layout.jobs())?;
        Layout::sync_dir(&self.layout.uploads())?;
        Ok(())
    }

    /// Forgets uploads whose file is gone (a server alone on its directory, at start).
    fn forget_lost_uploads(&self) -> Result<(), ServiceError> {
        for id in self.store.upload_ids()? {
            if !self.layout.upload(&id).is_file() {
                tracing::warn!("upload {id} lost its file; forgotten");
                self.store.delete_upload(&id)?;
            }
        }
        Ok(())
    }

    /// Whether a succeeded job's files are all here, or else all in the object store.
    fn result_files_present(&self, job: &JobRow) -> bool {
        let Some(result) = &job.result else {
            return false;
        };
        self.result_files_here(&job.id, result)
            || self.objects.as_ref().is_some_and(|objects| {
                objects.result_present(
                    &job.id,
                    result.all_files().map(|f| (f.path.as_str(), f.size)),
                )
            })
    }

    /// Whether a result's files are all in this server's data directory.
    fn result_files_here(&self, id: &str, result: &StoredResult) -> bool {
        let dir = self.layout.job(id);
        result.all_files().all(|f| {
            std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.is_file() && m.len() == f.size)
        })
    }

    /// Puts a complete upload's file in the object store, if the files live in one.
    pub fn share_upload(&self, id: &str) -> Result<(), ServiceError> {
        match &self.objects {
            Some(objects) => objects.put_upload(id, &self.layout.upload(id)),
            None => Ok(()),
        }
    }

    /// Puts a published result's files in the object store, if the files live in one.
    pub fn share_result(&self, id: &str, result: &StoredResult) -> Result<(), ServiceError> {
        match &self.objects {
            Some(objects) => objects.put_result(id, &self.layout.job(id), result.paths()),
            None => Ok(()),
        }
    }

    /// Makes an upload's file present here, fetching it from the object store if needed.
    pub fn fetch_upload(&self, id: &str) -> Result<(), ServiceError> {
        let path = self.layout.upload(id);
        match &self.objects {
            Some(objects) if !path.is_file() => objects.fetch_upload(id, &path),
            _ => Ok(()),
        }
    }

    /// Makes a result's files present here, fetching them from the object store if needed.
    fn fetch_result(&self, id: &str, result: &StoredResult) -> Result<(), ServiceError> {
        let Some(objects) = &self.objects else {
            return Ok(());
        };
        if self.result_files_here(id, result) {
            return Ok(());
        }
        let fetching = self.layout.fetching(id);
        let fetched = objects
            .fetch_result(id, &fetching, result.paths())
            .and_then(|()| Ok(self.layout.publish_from(&fetching, id)?));
        if fetched.is_err() {
            let _ = Layout::remove(&fetching);
        }
        fetched
    }

    /// Deletes a result's or an upload's copy in the object store (retention).
    fn delete_shared(
        &self,
        result: Option<(&str, &StoredResult)>,
        upload: Option<&str>,
    ) -> Result<(), ServiceError> {
        let Some(objects) = &self.objects else {
            return Ok(());
        };
        if let Some((id, result)) = result {
            objects.delete_result(id, result.paths())?;
        }
        if let Some(id) = upload {
            objects.delete_upload(id)?;
        }
        Ok(())
    }

    /// A message without any secret in it.
    pub fn redact(&self, message: &str) -> String {
        self.secrets.iter().fold(message.to_string(), |m, s| {
            m.replace(s.as_str(), "[redacted]")
        })
    }

    /// Tells listeners about a job's new state (after the store has it).
    pub fn announce(&self, row: &JobRow) {
        let live = self.live.get(&row.id);
        let view = JobView::new(row, live.as_ref().and_then(|l| l.progress()));
        if let Some(live) = live {
            live.send(Event {
                name: "job",
                data: serde_json::to_string(&view).expect("a job serializes"),
                terminal: row.state.is_terminal(),
            });
        }
        if row.state.is_terminal() {
            self.live.remove(&row.id);
        }
    }

    /// Wakes a worker.
    pub fn notify_queued(&self) {
        let (count, wake) = &self.queue;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        wake.notify_all();
    }

    /// Waits until a job may have been queued, or `timeout` passed.
    pub fn wait_for_work(&self, seen: &mut u64, timeout: Duration) {
        let (count, wake) = &self.queue;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = wake
            .wait_timeout_while(guard, timeout, |c| {
                *c == *seen && !self.live.shutting_down()
            })
            .unwrap_or_else(|e| e.into_inner());
        *seen = *guard;
    }

    /// Stops workers taking jobs, and the running ones at their next iteration.
    pub fn begin_shutdown(&self) {
        self.live.begin_shutdown();
        self.queue.1.notify_all();
    }

    /// Creates a job. Its input and settings are checked as the command line checks them (a
    /// bad one is refused, with the command line's message); an earlier result for the same
    /// input bytes, settings and version is reused at once.
    pub fn create_job(
        &self,
        request: CreateJob,
        idempotency_key: Option<&str>,
    ) -> Result<CreatedJob, ServiceError> {
        let settings_json = serde_json::to_string(&request.settings).expect("settings serialize");
        let request_sha256 = {
            let mut h = Sha256::new();
            h.update(request.input.as_bytes());
            h.update(b"\n");
            h.update(settings_json.as_bytes());
            hex(h.finalize().as_slice())
        };
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(ServiceError::invalid(
                    "bad_idempotency_key",
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
        }
        // A retried request gets its job back without being checked again: its upload may be
        // gone by now, and the answer must not change.
        if let Some(created) = self.replay(idempotency_key, &request_sha256)? {
            return Ok(created);
        }
        self.check_request(&request)?;
        let created = self
            .store
            .create_job(&NewJob {
                id: &new_id(),
                input: &request.input,
                settings: &settings_json,
                idempotency: idempotency_key.map(|k| (k, request_sha256.as_str())),
                max_queued: self.config.max_queued,
            })
            .map_err(|e| self.create_error(e))?;
        let (row, replayed) = match created {
            Created::New(row) => (row, false),
            // A concurrent request with the same key won the race.
            Created::Replayed(row) => (row, true),
        };
        if !replayed && row.state == JobState::Queued {
            self.live.job(&row.id);
            self.notify_queued();
        }
        Ok(CreatedJob {
            job: self.view_of(&row),
            replayed,
        })
    }

    fn replay(
        &self,
        key: Option<&str>,
        request_sha256: &str,
    ) -> Result<Option<CreatedJob>, ServiceError> {
        let Some(key) = key else {
            return Ok(None);
        };
        let earlier = self.store.job_by_idempotency_key(key)?;
        match earlier {
            None => Ok(None),
            Some((row, digest)) if digest.as_deref() == Some(request_sha256) => {
                Ok(Some(CreatedJob {
                    job: self.view_of(&row),
                    replayed: true,
                }))
            }
            Some((row, _)) => {
                Err(self.create_error(CreateError::IdempotencyConflict { job: row.id }))
            }
        }
    }

    fn create_error(&self, e: CreateError) -> ServiceError {
        match e {
            CreateError::QueueFull { queued } => ServiceError {
                kind: ErrorKind::Busy,
                code: "queue_full",
                message: format!(
                    "{queued} jobs are already queued (the server's --max-queued); retry later"
                ),
                retry_after: Some(self.retry_after(queued)),
            },
            CreateError::IdempotencyConflict { job } => ServiceError::invalid(
                "idempotency_key_reused",
                format!("this Idempotency-Key created job {job} for a different request; use a new key for a new request"),
            ),
            CreateError::Store(e) => e.into(),
        }
    }

    /// Seconds until a queue slot is likely free: the mean job time, times the jobs ahead per
    /// worker.
    fn retry_after(&self, queued: usize) -> u64 {
        let mean = self.metrics.mean_job_seconds().unwrap_or(10.0);
        let workers = self.config.workers.max(1) as f64;
        (mean * (queued as f64 / workers).max(1.0))
            .ceil()
            .clamp(1.0, 3600.0) as u64
    }

    /// A job's input (`upload:`, `builtin:`, `hf://`, an allowed local path), as far as it can
    /// be checked without reading it.
    pub fn parse_input(&self, input: &str) -> Result<JobInput, ServiceError> {
        JobInput::parse(input, &*self.store, &self.layout, &self.config.allow_dirs)
    }

    /// The oldest queued job, now running here (its attempt counted), if any.
    pub fn claim_next(&self) -> Result<Option<JobRow>, ServiceError> {
        // Held across the claim, so that the heartbeat never sees a job claimed here and not
        // yet known to be running here.
        let mut running = self.running_here();
        let job = self.store.claim_next(&self.lease)?;
        if let Some(job) = &job {
            running.insert(job.id.clone());
        }
        Ok(job)
    }

    /// This server's id, as jobs it runs show it (`server`).
    pub fn server_id(&self) -> &str {
        &self.lease.owner
    }

    fn running_here(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews this server's leases, passes on cancels asked for through any server, stops jobs
    /// whose lease was lost, and releases the jobs of servers that stopped renewing theirs.
    pub fn heartbeat(&self) -> Result<(), ServiceError> {
        let running_before = self.running_here().clone();
        let held = self.store.heartbeat(&self.lease)?;
        for job in &held {
            if job.cancel_requested {
                if let Some(live) = self.live.get(&job.id) {
                    live.request_cancel();
                }
            }
        }
        let lost: Vec<&String> = running_before
            .iter()
            .filter(|id| !held.iter().any(|h| &h.id == *id))
            .collect();
        for id in lost {
            if let Some(live) = self.live.get(id) {
                if !live.lost() {
                    tracing::warn!("job {id}: this server's lease on it expired; stopping it");
                    live.lose();
                }
            }
        }
        // Held here but run by no worker: a claim or an ending whose answer the store lost
        // (a dropped connection). Released, to run again.
        let orphans: Vec<String> = {
            let running = self.running_here();
            held.into_iter()
                .filter(|h| !running.contains(&h.id))
                .map(|h| h.id)
                .collect()
        };
        for id in orphans {
            if let Some(row) = self.store.release(&id, &self.lease)? {
                tracing::warn!("job {id}: held here without a worker; queued again");
                self.announce(&row);
                self.notify_queued();
            }
        }
        let abandoned = self
            .store
            .release_abandoned(false, self.config.max_attempts.into())?;
        self.report_abandoned(&abandoned);
        Ok(())
    }

    /// Follows, for a client here, a job another server may be running: what that server
    /// records reaches this server's live channel of the job. `layers_sent`: the layers the
    /// client already has.
    pub fn follow(&self, row: &JobRow, layers_sent: usize) {
        if !self.store.shared() || row.state.is_terminal() {
            return;
        }
        self.followed_jobs()
            .entry(row.id.clone())
            .or_insert(Followed {
                layers: layers_sent,
                state: row.state,
                attempts: row.attempts,
            });
    }

    fn followed_jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Followed>> {
        self.followed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for other servers' changes, then passes on those of the jobs
    /// followed here (all of them after a quiet `timeout`, in case a notice was missed).
    pub fn pass_on_changes(&self, timeout: Duration) -> Result<(), ServiceError> {
        let changed = self.store.wait_for_changes(timeout)?;
        let followed: Vec<String> = self.followed_jobs().keys().cloned().collect();
        for id in followed {
            if changed.is_empty() || changed.contains(&id) {
                self.pass_on(&id)?;
            }
        }
        Ok(())
    }

    /// Sends a followed job's new layers, and its new state, to its listeners here.
    fn pass_on(&self, id: &str) -> Result<(), ServiceError> {
        let live = self.live.get(id);
        let local = self.running_here().contains(id);
        let (Some(live), false, Some(row)) = (live, local, self.store.job(id)?) else {
            // Nobody listens, or this server runs it now and sends its events itself.
            self.followed_jobs().remove(id);
            return Ok(());
        };
        let layers = self.store.layers(id)?;
        let announce = {
            let mut followed = self.followed_jobs();
            let Some(entry) = followed.get_mut(id) else {
                return Ok(());
            };
            if row.attempts != entry.attempts {
                entry.layers = 0;
            }
            for layer in layers.iter().skip(entry.layers) {
                live.send(Event {
                    name: "layer_finished",
                    data: layer.clone(),
                    terminal: false,
                });
            }
            entry.layers = layers.len();
            let changed = (row.state, row.attempts) != (entry.state, entry.attempts);
            (entry.state, entry.attempts) = (row.state, row.attempts);
            if row.state.is_terminal() {
                followed.remove(id);
            }
            changed
        };
        if announce {
            self.announce(&row);
        }
        Ok(())
    }

    /// How often the heartbeat runs: several times per lease, and often enough that a cancel
    /// sent to another server stops a job within a layer.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.config.lease / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// The file directory or object store, and whether it answers.
    pub fn files_health(&self) -> (String, Result<(), ServiceError>) {
        if let Some(objects) = &self.objects {
            return (objects.describe(), objects.check());
        }
        (
            format!("directory ({})", self.layout.root().display()),
            std::fs::read_dir(self.layout.jobs())
                .map(drop)
                .map_err(ServiceError::from),
        )
    }

    /// Whether other servers may share this one's store (and so run its jobs).
    pub fn store_shared(&self) -> bool {
        self.store.shared()
    }

    /// The store's kind and place, without credentials.
    pub fn store_description(&self) -> String {
        self.store.describe()
    }

    /// The store's kind and place (no credentials), and whether it answers.
    pub fn store_health(&self) -> (String, Result<(), ServiceError>) {
        (
            self.store.describe(),
            self.store.ping().map_err(ServiceError::from),
        )
    }

    /// Records a finished layer of a running job (the catch-up log of its events) and its
    /// progress.
    pub fn record_layer(
        &self,
        id: &str,
        ordinal: usize,
        layer: &str,
        progress: Option<&Progress>,
    ) -> Result<(), ServiceError> {
        Ok(self
            .store
            .record_layer(id, &self.lease, ordinal, layer, progress)?)
    }

    /// The finished layers a job recorded, in order.
    pub fn layer_records(&self, id: &str) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.layers(id)?)
    }

    /// Ends a job running here; `None` if it was no longer running here.
    pub fn finish(&self, id: &str, ending: &Ending) -> Result<Option<JobRow>, ServiceError> {
        let row = retried(|| self.store.finish(id, &self.lease, ending));
        self.running_here().remove(id);
        Ok(row?)
    }

    /// Queues a job running here again (a shutdown stopped it).
    pub fn release(&self, id: &str) -> Result<Option<JobRow>, ServiceError> {
        let row = retried(|| self.store.release(id, &self.lease));
        self.running_here().remove(id);
        Ok(row?)
    }

    /// Stops tracking a job this server lost (another server may be running it now).
    pub fn forget_lost(&self, id: &str) {
        self.running_here().remove(id);
    }

    /// Records a complete upload, whose file is already in place.
    pub fn insert_upload(&self, upload: &UploadRow) -> Result<(), ServiceError> {
        Ok(self.store.insert_upload(upload)?)
    }

    /// How many jobs are in each state.
    pub fn job_counts(&self) -> Result<BTreeMap<JobState, u64>, ServiceError> {
        Ok(self.store.counts()?)
    }

    /// Writes the store's log into its main file, for a clean stop.
    pub fn checkpoint_store(&self) -> Result<(), ServiceError> {
        Ok(self.store.close()?)
    }

    /// The input and settings, as far as they can be checked without reading the input: the
    /// worker reads, plans and hashes it, so that a request answers at once whatever its size.
    fn check_request(&self, request: &CreateJob) -> Result<(), ServiceError> {
        self.parse_input(&request.input)?;
        request
            .settings
            .check_within(&self.config.limits)
            .map_err(|e| {
                let code = if e.over_limit {
                    "over_limit"
                } else {
                    "invalid_setting"
                };
                ServiceError::invalid(code, format!("settings.{e}"))
            })?;
        if let Some(dir) = &request.settings.probe_images {
            allowed_path(&dir.display().to_string(), &self.config.allow_dirs).map_err(|e| {
                ServiceError {
                    message: format!("settings.probe_images: {}", e.message),
                    ..e
                }
            })?;
        }
        Ok(())
    }

    /// A succeeded job with this cache key whose files are all present, and its result.
    pub fn cached_result(&self, key: &str) -> Result<Option<(JobRow, StoredResult)>, ServiceError> {
        let Some(row) = self.store.cached(key)? else {
            return Ok(None);
        };
        match (&row.result, self.result_files_present(&row)) {
            (Some(result), true) => {
                let result = result.clone();
                Ok(Some((row, result)))
            }
            _ => Ok(None),
        }
    }

    /// The result of `key` computed by another run, waited for when one is under way: the same
    /// input and settings are computed once, however many replicas got them at once. `None`
    /// when this job is to compute it (no other run has it, or that run ended without it).
    pub fn shared_result(
        &self,
        id: &str,
        key: &str,
        stop: impl Fn() -> bool,
    ) -> Result<Option<(JobRow, StoredResult)>, ServiceError> {
        if let Some(found) = self.cached_result(key)? {
            return Ok(Some(found));
        }
        let Some(earlier) = self.store.running_with_key(id, &self.lease, key)? else {
            return Ok(None);
        };
        tracing::info!("job {id}: job {earlier} is computing the same result; waiting for it");
        while !stop() {
            if let Some(found) = self.cached_result(key)? {
                return Ok(Some(found));
            }
            if self
                .store
                .job(&earlier)?
                .is_none_or(|row| row.state != JobState::Running)
            {
                // It ended without the result (failed, canceled, or queued again).
                return self.cached_result(key);
            }
            std::thread::sleep(SHARED_RESULT_POLL);
        }
        Ok(None)
    }

    /// Hard-links (or copies, across file systems) a job's result files into `target`'s
    /// directory, which appears whole; `attempt` is the run of `target` doing it.
    pub fn link_result(
        &self,
        source: &JobRow,
        target: &str,
        attempt: i64,
    ) -> Result<(), ServiceError> {
        let result = source
            .result
            .clone()
            .ok_or_else(|| ServiceError::internal(format!("job {} has no result", source.id)))?;
        self.fetch_result(&source.id, &result)?;
        let staging = self.layout.staging(target, attempt);
        Layout::remove(&staging)?;
        let from = self.layout.job(&source.id);
        for file in result.all_files() {
            let to = staging.join(&file.path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if std::fs::hard_link(from.join(&file.path), &to).is_err() {
                std::fs::copy(from.join(&file.path), &to)?;
            }
        }
        self.layout.publish(target, attempt)?;
        self.share_result(target, &result)
    }

    /// A job, with its live progress.
    pub fn job(&self, id: &str) -> Result<JobView, ServiceError> {
        let row = self.job_row(id)?;
        Ok(self.view_of(&row))
    }

    pub fn job_row(&self, id: &str) -> Result<JobRow, ServiceError> {
        let missing = || ServiceError::not_found("job_not_found", format!("no job {id}"));
        if !super::layout::is_id(id) {
            return Err(missing());
        }
        self.store.job(id)?.ok_or_else(missing)
    }

    pub fn view_of(&self, row: &JobRow) -> JobView {
        let live = self.live.get(&row.id).and_then(|l| l.progress());
        JobView::new(row, live)
    }

    /// Jobs newest first. `cursor` is a previous page's `next_cursor`.
    pub fn list(
        &self,
        state: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<JobList, ServiceError> {
        let state = state
            .map(|s| {
                JobState::parse(s).ok_or_else(|| {
                    ServiceError::invalid(
                        "bad_query",
                        format!(
                            "state={s}: expected queued, running, succeeded, failed or canceled"
                        ),
                    )
                })
            })
            .transpose()?;
        let limit = limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ServiceError::invalid(
                "bad_query",
                format!("limit={limit}: expected 1 to 500"),
            ));
        }
        let before = cursor
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    ServiceError::invalid(
                        "bad_query",
                        format!("cursor={c}: not a cursor this server returned"),
                    )
                })
            })
            .transpose()?;
        let rows = self.store.list_jobs(state, before, limit + 1)?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        Ok(JobList {
            jobs: rows.iter().map(|r| self.view_of(r)).collect(),
            next_cursor: more
                .then(|| rows.last().map(|r| r.seq.to_string()))
                .flatten(),
        })
    }

    /// Cancels a queued job at once; a running one stops within its current layer.
    pub fn cancel(&self, id: &str) -> Result<(JobView, bool), ServiceError> {
        self.job_row(id)?;
        let outcome = self
            .store
            .cancel(id)?
            .ok_or_else(|| ServiceError::not_found("job_not_found", format!("no job {id}")))?;
        match outcome {
            Cancel::Canceled(row) => {
                self.announce(&row);
                Ok((self.view_of(&row), true))
            }
            Cancel::Requested(row) => {
                if let Some(live) = self.live.get(id) {
                    live.request_cancel();
                }
                self.announce(&row);
                Ok((self.view_of(&row), false))
            }
            Cancel::Finished(row) => Err(ServiceError::new(
                ErrorKind::Conflict,
                "job_finished",
                format!("job {id} already {}; nothing to cancel", row.state.as_str()),
            )),
        }
    }

    /// A file of a succeeded job, found by name in its result list (never joined onto a path).
    pub fn result_file(&self, id: &str, name: &str) -> Result<(PathBuf, StoredFile), ServiceError> {
        let row = self.job_row(id)?;
        let Some(result) = row.result.clone() else {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "no_result",
                format!(
                    "job {id} is {}; files exist once it has succeeded",
                    row.state.as_str()
                ),
            ));
        };
        let file = result
            .all_files()
            .find(|f| f.name == name)
            .cloned()
            .ok_or_else(|| {
                ServiceError::not_found(
                    "file_not_found",
                    format!(
                        "job {id} has no file {name:?}; its files are {}",
                        result
                            .all_files()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        if row.expired_at.is_some() {
            return Err(ServiceError::new(
                ErrorKind::Gone,
                "result_expired",
                format!(
                    "job {id}'s files were deleted after the server's --keep; run the job again"
                ),
            ));
        }
        self.fetch_result(id, &result)?;
        Ok((self.layout.job(id).join(&file.path), file))
    }

    /// Milliseconds since the Unix epoch, by the service's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Deletes results and uploads older than `--keep`.
    pub fn sweep(&self) -> Result<(), ServiceError> {
        let cutoff = self.now_ms() - self.config.keep.as_millis() as i64;
        // Marked first, then deleted: a crash in between leaves files a restart deletes, never a
        // succeeded job without its files.
        for id in self.store.expire(cutoff)? {
            if let Some(result) = self.store.job(&id)?.and_then(|row| row.result) {
                self.delete_shared(Some((&id, &result)), None)?;
            }
            Layout::remove(&self.layout.job(&id))?;
            tracing::info!("job {id}: result expired and deleted");
        }
        for id in self.store.stale_uploads(cutoff)? {
            self.store.delete_upload(&id)?;
            self.delete_shared(None, Some(&id))?;
            Layout::remove(&self.layout.upload(&id))?;
            tracing::info!("upload {id}: expired and deleted");
        }
        if let Some(cutoff) = SystemTime::now().checked_sub(self.config.keep) {
            if self.store.shared() {
                self.remove_leftovers(Some(cutoff))?;
            }
        }
        Ok(())
    }
}

/// How often a run waiting for another run's identical result looks for it.
const SHARED_RESULT_POLL: Duration = Duration::from_millis(200);

/// How a run's ending reaches a store that is briefly away (a database restarting): tried
/// again for this long before the job is left to its lease.
const ENDING_RETRIES: (usize, Duration) = (30, Duration::from_secs(1));

/// `store_call`, tried again while it fails, up to [`ENDING_RETRIES`].
fn retried<T>(mut store_call: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let (tries, pause) = ENDING_RETRIES;
    let mut outcome = store_call();
    for _ in 1..tries {
        match &outcome {
            Err(e) => {
                tracing::warn!("the job store: {e}; trying again");
                std::thread::sleep(pause);
                outcome = store_call();
            }
            Ok(_) => break,
        }
    }
    outcome
}

/// Jobs with equal keys have equal results: the same input bytes, settings and cs-init version.
pub fn cache_key(input_sha256: &str, settings_json: &str) -> String {
    let mut h = Sha256::new();
    for part in [env!("CARGO_PKG_VERSION"), input_sha256, settings_json] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    hex(h.finalize().as_slice())
}
