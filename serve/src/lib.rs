//! `cs-init serve`: the main job as a long-running service. Checkpoints come in (uploaded, from
//! the Hugging Face Hub, a built-in architecture, or a local path the operator allows), the same
//! pipeline as the command line runs on them, and the decorrelated checkpoint and its report go
//! out. The data flows request → store → worker (the library's pipeline) → store → response.
//!
//! - [`store`]: the durable record of every upload and job: SQLite for one server, PostgreSQL
//!   for replicas.
//! - [`service`]: the job logic (create, cancel, cache, retention, recovery), without HTTP.
//! - [`worker`]: runs jobs on its own thread pool.
//! - [`http`]: the routes, their OpenAPI description, and the web page.

pub mod error;
pub mod http;
mod input;
pub mod layout;
pub mod live;
pub mod metrics;
mod objects;
pub mod service;
pub mod store;
mod uploads;
pub mod view;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

pub use service::{Config, Service};

/// Starts the service and runs it until SIGTERM or Ctrl-C. Prints the address it listens on.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cs-init-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let workers = config.workers.max(1);
    let service = tokio::task::spawn_blocking(move || Service::open(config))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen there"))?;
    let address = listener.local_addr()?;
    eprintln!(
        "cs-init serve: listening on http://{address} (server {}, files in {}, store {}, {workers} worker{})",
        service.server_id(),
        service.layout.root().display(),
        service.store_description(),
        if workers == 1 { "" } else { "s" }
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / workers).max(1);
    let worker_threads: Vec<_> = (0..workers)
        .map(|index| {
            let service = service.clone();
            std::thread::Builder::new()
                .name(format!("cs-init-worker-{index}"))
                .spawn(move || worker::run(service, index, threads))
        })
        .collect::<Result<_, _>>()?;
    let heartbeat_stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (service, stop) = (service.clone(), heartbeat_stop.clone());
        std::thread::Builder::new()
            .name("cs-init-heartbeat".into())
            .spawn(move || heartbeat(&service, &stop))?
    };
    let follower = service
        .store_shared()
        .then(|| {
            let (service, stop) = (service.clone(), heartbeat_stop.clone());
            std::thread::Builder::new()
                .name("cs-init-follower".into())
                .spawn(move || follow(&service, &stop))
        })
        .transpose()?;
    let sweeper = tokio::spawn(sweep(service.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = http::router(service.clone(), shutdown_rx);
    let stopping = service.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            eprintln!("cs-init serve: stopping (a running job is queued again)");
            stopping.begin_shutdown();
            let _ = shutdown_tx.send(true);
        })
        .await
        .context("serving HTTP")?;

    sweeper.abort();
    service.begin_shutdown();
    for thread in worker_threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    // Renewed until every worker has released its job.
    heartbeat_stop.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = heartbeat.join();
        follower.map(std::thread::JoinHandle::join)
    })
    .await;
    let store = service.clone();
    tokio::task::spawn_blocking(move || store.checkpoint_store()).await??;
    eprintln!("cs-init serve: stopped");
    Ok(())
}

/// Renews this server's leases and releases the jobs of servers that stopped, until `stop`.
fn heartbeat(service: &Service, stop: &AtomicBool) {
    let every = service.heartbeat_interval();
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = service.heartbeat() {
            tracing::error!("heartbeat: {e}");
        }
        std::thread::sleep(every);
    }
}

/// Passes on other replicas' progress on the jobs clients here follow, until `stop`.
fn follow(service: &Service, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = service.pass_on_changes(Duration::from_secs(1)) {
            tracing::warn!("following other replicas' jobs: {e}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Deletes expired results and uploads, every so often.
async fn sweep(service: Arc<Service>) {
    let every =
        (service.config.keep / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        let service = service.clone();
        match tokio::task::spawn_blocking(move || service.sweep()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("retention sweep: {e}"),
            Err(e) => tracing::error!("retention sweep: {e}"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
