//! Health, metrics, the OpenAPI description and the web page.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::jobs::blocking;
use super::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` while the server answers.
    status: &'static str,
    version: &'static str,
}

/// Liveness: answers while the server runs (no token needed).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
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
