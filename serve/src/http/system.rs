//! Health, metrics, the OpenAPI description and the web page.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::jobs::blocking;
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` while the server answers and its store does; `degraded` when the store does not.
    status: &'static str,
    version: &'static str,
    store: BackendHealth,
    files: BackendHealth,
}

/// A backend the server depends on.
#[derive(Serialize, ToSchema)]
pub struct BackendHealth {
    /// Which one, and where (no credentials): `sqlite (...)`, `postgresql (user@host:port/db)`,
    /// `directory (...)`.
    backend: String,
    /// Whether it answered just now.
    ok: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl BackendHealth {
    fn of(backend: String, answer: Result<(), crate::error::ServiceError>) -> Self {
        let error = answer.err().map(|e| e.message);
        Self {
            backend,
            ok: error.is_none(),
            error,
        }
    }
}

/// Liveness and the backends: answers while the server runs (no token needed), with 503 when
/// the job store or the file directory does not answer.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses(
        (status = 200, description = "The server and its backends are up", body = Health),
        (status = 503, description = "A backend does not answer", body = Health),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let service = state.service.clone();
    let health = tokio::task::spawn_blocking(move || {
        let (store, store_answer) = service.store_health();
        let (files, files_answer) = service.files_health();
        Health {
            status: if store_answer.is_ok() && files_answer.is_ok() {
                "ok"
            } else {
                "degraded"
            },
            version: env!("CARGO_PKG_VERSION"),
            store: BackendHealth::of(store, store_answer),
            files: BackendHealth::of(files, files_answer),
        }
    })
    .await;
    match health {
        Ok(health) => {
            let status = if health.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(health)).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Metrics in the Prometheus (OpenMetrics) text format: jobs by state, queue depth, job seconds,
/// bytes uploaded and served.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = blocking(&state.service, |s| s.job_counts()).await?;
    let text = state.service.metrics.encode(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This description, generated from the handlers.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    responses((status = 200, description = "OpenAPI 3 description", content_type = "application/json"))
)]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_ref().clone(),
    )
        .into_response()
}

/// The web page: submit jobs, watch them, download results.
#[utoipa::path(
    get,
    path = "/",
    tag = "system",
    responses((status = 200, description = "The page", content_type = "text/html"))
)]
pub async fn page() -> Html<&'static str> {
    Html(include_str!("../page/index.html"))
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../page/app.js"),
    )
        .into_response()
}

pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../page/style.css"),
    )
        .into_response()
}
