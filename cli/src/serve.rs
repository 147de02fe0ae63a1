//! `cs-init serve`: the job service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::output::{Exit, UsageError};
use cs_init::device::DeviceChoice;
use cs_init::run::Limits;
use cs_init_serve::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; 0.0.0.0:8600 for every interface).
    #[arg(long, default_value = "127.0.0.1:8600", value_name = "ADDR")]
    listen: SocketAddr,

    /// Directory of uploads and results, and of the job store unless --store names one
    /// (created if needed). Replicas on one --store share this directory.
    #[arg(long, default_value = "cs-init-data", value_name = "DIR")]
    data: PathBuf,

    /// The job store shared by several replicas: postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (give cs-init a database of its own; its tables are created and migrated at start).
    /// Without it, SQLite in --data, for one server.
    #[arg(
        long,
        env = "CS_INIT_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    store: Option<String>,

    /// Where uploads and results live when replicas do not share a file system:
    /// s3://BUCKET/PREFIX (credentials, region and endpoint from the AWS_* environment
    /// variables) or file:///DIRECTORY; --data is then this server's working copy.
    #[arg(long, env = "CS_INIT_FILES", value_name = "URL")]
    files: Option<String>,

    /// How long a running job stays this server's without a heartbeat; after it, another
    /// replica runs the job (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    lease: Duration,

    /// Runs of a job begun before it ends failed (attempts_exhausted) instead of running
    /// again, when its server keeps stopping mid-run.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,

    /// Jobs that run at once (a job already uses every core).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,

    /// Require `Authorization: Bearer <token>` on every API route, with the token in this file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Largest upload accepted (e.g. 2GB, 500MiB).
    #[arg(long, default_value = "4GB", value_name = "SIZE", value_parser = cs_init::checkpoint::parse_size)]
    max_upload: usize,

    /// Queued jobs beyond which new ones are refused (429, with Retry-After).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_queued: u32,

    /// Delete results and uploads this long after they were made (e.g. 7d, 12h, 30m).
    #[arg(long, default_value = "7d", value_name = "DURATION", value_parser = parse_duration)]
    keep: Duration,

    /// Allow local paths under this directory as job inputs (repeatable; none by default).
    #[arg(long, value_name = "DIR")]
    allow_dir: Vec<PathBuf>,

    /// Device of the workers: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: DeviceChoice,

    /// Most optimizer iterations per layer a job may ask for; more is refused with 422. 0: no
    /// limit.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    max_iters: usize,

    /// Most probe pixels per layer a job may ask for (probe_batch x height x width; the
    /// default is 4 inputs of 256x256); more is refused with 422. 0: no limit.
    #[arg(long, default_value_t = 4 * 256 * 256, value_name = "N")]
    max_probe_pixels: usize,

    /// A job still running this long after it started ends failed, saying so (e.g. 1h, 30m).
    /// 0: no limit.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_time_limit)]
    job_time_limit: TimeLimit,
}

/// `--job-time-limit`: a duration, or none for 0.
#[derive(Debug, Clone, Copy)]
struct TimeLimit(Option<Duration>);

fn parse_time_limit(text: &str) -> Result<TimeLimit, DurationError> {
    if text.trim() == "0" {
        return Ok(TimeLimit(None));
    }
    parse_duration(text).map(|limit| TimeLimit(Some(limit)))
}

/// A count flag where 0 means no limit.
fn limit(n: usize) -> Option<usize> {
    (n > 0).then_some(n)
}

/// Why a `--keep` or `--job-time-limit` value is not a duration.
#[derive(Debug, thiserror::Error)]
enum DurationError {
    #[error("'{text}': {error}; expected e.g. 7d, 12h or 30m")]
    Unreadable {
        text: String,
        error: humantime::DurationError,
    },
    #[error("'{0}': must be longer than zero")]
    Zero(String),
}

fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let duration = humantime::parse_duration(text).map_err(|error| DurationError::Unreadable {
        text: text.into(),
        error,
    })?;
    if duration.is_zero() {
        return Err(DurationError::Zero(text.into()));
    }
    Ok(duration)
}

pub fn run(args: ServeArgs) -> anyhow::Result<Exit> {
    let token = match &args.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(UsageError(format!(
                    "--token-file {}: the file is empty; put the token in it",
                    path.display()
                ))
                .into());
            }
            Some(token)
        }
    };
    if let Some(url) = &args.store {
        if !cs_init_serve::store::PostgresStore::handles(url) {
            return Err(UsageError(format!(
                "--store {}: expected postgres://USER@HOST:PORT/DATABASE; without --store the \
                 store is SQLite in --data",
                cs_init_serve::store::redact_url(url)
            ))
            .into());
        }
    }
    let allow_dirs = args
        .allow_dir
        .iter()
        .map(|d| {
            d.canonicalize()
                .with_context(|| format!("--allow-dir {}", d.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    cs_init_serve::run(Config {
        listen: args.listen,
        data: args.data,
        store: args.store,
        files: args.files,
        lease: args.lease,
        max_attempts: args.max_attempts,
        workers: usize::from(args.workers),
        token,
        max_upload: args.max_upload as u64,
        max_queued: args.max_queued as usize,
        keep: args.keep,
        allow_dirs,
        device: args.device,
        limits: Limits {
            max_iters: limit(args.max_iters),
            max_probe_pixels: limit(args.max_probe_pixels),
        },
        job_time_limit: args.job_time_limit.0,
    })?;
    Ok(Exit::Success)
}
