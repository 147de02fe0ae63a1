//! `/v1/jobs`: create, list, read and cancel jobs. Each handler translates HTTP to one call of
//! the service (on a blocking thread: the store is synchronous SQLite).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::AppState;
use crate::service::Service;
use crate::view::{CreateJob, ErrorBody, JobList, JobView};

/// The longest `Prefer: wait=N` honoured, in seconds.
const MAX_WAIT: u64 = 600;

/// Runs a service call on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    service: &Arc<Service>,
    f: impl FnOnce(&Service) -> Result<T, crate::error::ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    let service = service.clone();
    Ok(tokio::task::spawn_blocking(move || f(&service)).await??)
}

/// What `Prefer` asks for (RFC 7240): `respond-async` (the default) or `wait=SECONDS`.
fn wait_preference(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            let p = p.trim();
            if p == "wait" {
                return Some(MAX_WAIT);
            }
            p.strip_prefix("wait=")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map(|n| n.min(MAX_WAIT))
        })
}

/// Create a job.
///
/// The job is queued and `202 Accepted` is returned at once with the job and its `Location`
/// (Cog's `Prefer: respond-async`, the default here). `Prefer: wait=N` waits up to N seconds for
/// the job to finish and answers `200` when it did. The same input bytes, settings and version
/// as an earlier job that succeeded give a job that has succeeded already, with the same files.
/// An `Idempotency-Key` makes a retried POST return the job the first one created.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = CreateJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the same job"),
        ("Prefer" = Option<String>, Header, description = "`respond-async` (default) or `wait=SECONDS`"),
    ),
    responses(
        (status = 202, description = "Accepted (queued, or already succeeded from the result cache)", body = JobView),
        (status = 200, description = "Finished while `Prefer: wait` waited", body = JobView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "A local path outside --allow-dir", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field, bad setting, unknown input, unreadable checkpoint, no conv layer", body = ErrorBody),
        (status = 429, description = "The queue is full (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CreateJob>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                crate::error::ServiceError::invalid(
                    "bad_idempotency_key",
                    "Idempotency-Key must be visible ASCII",
                )
            })
        })
        .transpose()?;
    let created = blocking(&state.service, move |s| {
        s.create_job(request, key.as_deref())
    })
    .await?;
    let mut job = created.job;
    let wait = wait_preference(&headers);
    let mut status = StatusCode::ACCEPTED;
    if let Some(seconds) = wait {
        if !job.state.is_terminal() {
            job = wait_for_end(&state.service, &job.id, Duration::from_secs(seconds)).await?;
        }
        if job.state.is_terminal() {
            status = StatusCode::OK;
        }
    }
    let mut response = (status, Json(&job)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&job.links.this).expect("ids are ASCII"),
    );
    let applied = match wait {
        Some(seconds) => format!("wait={seconds}"),
        None => "respond-async".into(),
    };
    headers.insert(
        "preference-applied",
        HeaderValue::from_str(&applied).expect("ASCII"),
    );
    if created.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Waits until the job is terminal or `timeout` passed; returns it as it is then.
pub async fn wait_for_end(
    service: &Arc<Service>,
    id: &str,
    timeout: Duration,
) -> Result<JobView, ApiError> {
    let live = service.live.get(id);
    if let Some(live) = live {
        let mut events = live.subscribe();
        let id_owned = id.to_string();
        let current = blocking(service, move |s| s.job(&id_owned)).await?;
        if current.state.is_terminal() {
            return Ok(current);
        }
        let _ = tokio::time::timeout(timeout, async {
            loop {
                match events.recv().await {
                    Ok(event) if event.terminal => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
    }
    let id = id.to_string();
    blocking(service, move |s| s.job(&id)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state: queued, running, succeeded, failed or canceled.
    state: Option<String>,
    /// Jobs per page, 1 to 500 (default 50).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 422, description = "A bad state, limit or cursor", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) = query?;
    let list = blocking(&state.service, move |s| {
        s.list(q.state.as_deref(), q.limit, q.cursor.as_deref())
    })
    .await?;
    Ok(Json(list))
}

/// A job: state, timestamps, input, effective settings, progress, error and result.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobView>, ApiError> {
    let Path(id) = id?;
    Ok(Json(blocking(&state.service, move |s| s.job(&id)).await?))
}

/// Cancel a job.
///
/// A queued job is canceled at once (`200`). A running one is asked to stop: it does within its
/// current layer and leaves no output (`202`; watch its events or poll it).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        (status = 202, description = "Cancel requested; the job stops within its current layer", body = JobView),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has already finished", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let Path(id) = id?;
    let (job, canceled) = blocking(&state.service, move |s| s.cancel(&id)).await?;
    let status = if canceled {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_wait_is_read_from_any_header_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(wait_preference(&h), None);
        h.insert("prefer", HeaderValue::from_static("respond-async"));
        assert_eq!(wait_preference(&h), None);
        h.insert(
            "prefer",
            HeaderValue::from_static("handling=lenient, wait=5"),
        );
        assert_eq!(wait_preference(&h), Some(5));
        h.insert("prefer", HeaderValue::from_static("wait=100000"));
        assert_eq!(wait_preference(&h), Some(MAX_WAIT));
    }
}
