//! `POST /v1/uploads`: a checkpoint's raw bytes as the body, streamed to disk (from blocking
//! threads: the runtime's threads only move bytes).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::jobs::blocking;
use super::AppState;
use crate::error::{ErrorKind, ServiceError};
use crate::uploads::PendingUpload;
use crate::view::{ErrorBody, UploadView};

/// Bytes of the body gathered before they are written.
const WRITE_BATCH: usize = 4 << 20;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name (`resnet20.th`): names the outputs of jobs on it.
    name: Option<String>,
}

/// Upload a checkpoint (safetensors or a PyTorch file) as the raw request body.
///
/// The bytes are written to disk as they arrive while their SHA-256 is computed; the file is
/// then read as a checkpoint. A truncated or foreign file gets `422` and is deleted; one over
/// the server's `--max-upload` gets `413` and nothing is kept.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "uploads",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Accepted", body = UploadView),
        (status = 413, description = "Over --max-upload", body = ErrorBody),
        (status = 422, description = "Not a readable checkpoint (truncated, foreign, empty)", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, HeaderMap, Json<UploadView>), ApiError> {
    let Query(query) = query?;
    let service = state.service.clone();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    PendingUpload::check_length(service.config.max_upload, declared)?;
    let name = query.name.clone();
    let mut pending = blocking(&service, move |s| PendingUpload::begin(s, name.as_deref())).await?;
    // The body arrives on the runtime; the file is written and hashed on blocking threads, a
    // batch at a time.
    let mut chunks = body.into_data_stream();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let chunk = chunks.next().await.transpose().map_err(|e| {
            ServiceError::new(
                ErrorKind::Malformed,
                "upload_interrupted",
                format!("the upload was cut off: {e}"),
            )
        })?;
        if let Some(chunk) = &chunk {
            pending.check_size(chunk.len())?;
            batch.extend_from_slice(chunk);
        }
        if batch.len() >= WRITE_BATCH || (chunk.is_none() && !batch.is_empty()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
            pending = blocking(&service, move |_| pending.write(&full).map(|()| pending)).await?;
        }
        if chunk.is_none() {
            break;
        }
    }
    let upload = blocking(&service, move |s| pending.finish(s)).await?;
    let view = UploadView::from(&upload);
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::LOCATION,
        format!("/v1/uploads/{}", upload.id)
            .parse()
            .expect("ids are ASCII"),
    );
    Ok((StatusCode::CREATED, response_headers, Json(view)))
}
