//! What is happening now, in memory: each unfinished job's event channel, its progress within the
//! current layer, and its cancel flag. Everything here can be lost with the process; what must
//! survive is in the store first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::view::Progress;

/// One Server-Sent Event, serialized once for every listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `job`, `layer_started`, `iteration`, `iterations` or `layer_finished`.
    pub name: &'static str,
    /// JSON.
    pub data: String,
    /// The job reached a terminal state: the stream ends after this event.
    pub terminal: bool,
}

/// Events a slow listener may fall behind by before it is sent a fresh snapshot instead.
const CHANNEL: usize = 1024;

/// An unfinished job.
pub struct LiveJob {
    events: broadcast::Sender<Arc<Event>>,
    cancel: AtomicBool,
    /// This server's lease on the job expired: another server may be running it.
    lost: AtomicBool,
    progress: Mutex<Option<Progress>>,
    /// The current layer's points so far, for listeners that connect mid-layer.
    curve: Mutex<Vec<(usize, f64)>>,
}

impl LiveJob {
    fn new() -> Self {
        Self {
            events: broadcast::channel(CHANNEL).0,
            cancel: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            progress: Mutex::new(None),
            curve: Mutex::new(Vec::new()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn send(&self, event: Event) {
        // No listener is not an error.
        let _ = self.events.send(Arc::new(event));
    }

    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn progress(&self) -> Option<Progress> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update_progress(&self, f: impl FnOnce(&mut Progress)) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = progress.as_mut() {
            f(p);
        }
    }

    pub fn set_progress(&self, progress: Option<Progress>) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = progress;
    }

    pub fn curve(&self) -> Vec<(usize, f64)> {
        self.curve.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn start_curve(&self) {
        self.curve.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn extend_curve(&self, point: (usize, f64)) {
        self.curve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(point);
    }
}

/// Every unfinished job, and whether the server is shutting down.
#[derive(Default)]
pub struct Live {
    jobs: Mutex<HashMap<String, Arc<LiveJob>>>,
    shutdown: AtomicBool,
}

impl Live {
    /// The job's live state, created on first use.
    pub fn job(&self, id: &str) -> Arc<LiveJob> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(LiveJob::new()))
            .clone()
    }

    /// The job's live state, if it has one.
    pub fn get(&self, id: &str) -> Option<Arc<LiveJob>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets a finished job (listeners already subscribed still get what was sent).
    pub fn remove(&self, id: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}
