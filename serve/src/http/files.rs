//! A succeeded job's files, with Content-Length, Range requests (tower-http's `ServeFile`) and
//! their SHA-256 as ETag. Names are looked up in the job's result list, never joined onto a path.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::ApiError;
use super::jobs::blocking;
use super::AppState;
use crate::view::ErrorBody;

async fn serve(
    state: &AppState,
    id: String,
    name: String,
    content_type: Option<&'static str>,
    request: Request,
) -> Result<Response, ApiError> {
    let (path, file) = blocking(&state.service, move |s| s.result_file(&id, &name)).await?;
    let etag = format!("\"{}\"", file.sha256);
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        return Ok(response);
    }
    let mut serve = ServeFile::new(&path);
    if let Some(mime) = content_type {
        serve = ServeFile::new_with_mime(&path, &mime.parse().expect("a valid mime type"));
    }
    let response = serve
        .oneshot(request)
        .await
        .map_err(|e| crate::error::ServiceError::internal(format!("{}: {e}", path.display())))?;
    let mut response = response.map(Body::new);
    if response.status().is_success() {
        if let Some(length) = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            state.service.metrics.served(length);
        }
        let headers = response.headers_mut();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=31536000, immutable"),
        );
    }
    Ok(response)
}

/// A file of the result: the checkpoint, or a shard or the index of a sharded one.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/files/{name}",
    tag = "files",
    params(
        ("id" = String, Path, description = "The job's id"),
        ("name" = String, Path, description = "A name from the job's `result.files`"),
        ("Range" = Option<String>, Header, description = "`bytes=START-END`"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag seen before"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, description = "No such job or file", body = ErrorBody),
        (status = 409, description = "The job has not succeeded", body = ErrorBody),
        (status = 410, description = "Deleted by retention", body = ErrorBody),
        (status = 416, description = "Range not satisfiable"),
    )
)]
pub async fn file(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path((id, name)) = params?;
    serve(&state, id, name, None, request).await
}

/// The JSON report (the command line's report for this job).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report",
    tag = "files",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The report", content_type = "application/json"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has not succeeded", body = ErrorBody),
        (status = 410, description = "Deleted by retention", body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    serve(
        &state,
        id,
        "report.json".into(),
        Some("application/json"),
        request,
    )
    .await
}

/// Every layer's loss curve on a log scale.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/plot.svg",
    tag = "files",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The plot", content_type = "image/svg+xml"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has not succeeded", body = ErrorBody),
        (status = 410, description = "Deleted by retention", body = ErrorBody),
    )
)]
pub async fn plot(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    serve(
        &state,
        id,
        "plot.svg".into(),
        Some("image/svg+xml"),
        request,
    )
    .await
}
