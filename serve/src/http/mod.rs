//! The HTTP layer: one router, built here; handlers that translate HTTP to service calls.

mod auth;
pub mod error;
mod events;
mod files;
mod jobs;
mod limits;
mod system;
mod uploads;

use std::sync::Arc;

use axum::middleware;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::Service;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// The OpenAPI description, serialized once.
    pub openapi: Arc<String>,
    /// Becomes true when the server shuts down: event streams end.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cs-init",
        description = "Decorrelate the conv layers of a checkpoint (Convolutional Similarity minimization) as a job service. \
                       Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    tags(
        (name = "jobs", description = "Create, watch and cancel jobs"),
        (name = "uploads", description = "Checkpoints to run jobs on"),
        (name = "files", description = "A succeeded job's outputs"),
        (name = "system", description = "Health, metrics, this description, the page"),
    )
)]
struct ApiDoc;

/// The routes that need the token when the server has one: every route with data.
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(uploads::create))
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(events::stream))
        .routes(routes!(files::file))
        .routes(routes!(files::report))
        .routes(routes!(files::plot))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
}

/// The routes open to anyone: health, and the page (it holds no data; it asks for the token
/// and sends it with every API call, as a browser cannot send a header when loading a page).
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(system::healthz))
        .routes(routes!(system::page))
}

/// The whole HTTP interface. Every route is registered with its OpenAPI description, so the two
/// match; the token is checked by a layer on the protected routes only.
pub fn router(service: Arc<Service>, shutdown: watch::Receiver<bool>) -> Router {
    let (protected, mut api) = protected().split_for_parts();
    let (public, public_api) = public().split_for_parts();
    api.merge(public_api);
    limits::describe(&mut api, &service.config);
    let state = AppState {
        service,
        openapi: Arc::new(api.to_pretty_json().expect("the description serializes")),
        shutdown,
    };
    protected
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .merge(public)
        .route("/app.js", get(system::script))
        .route("/style.css", get(system::style))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests;
