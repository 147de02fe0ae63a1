//! Errors as HTTP responses: `{"error": {"code", "message"}}` with the status of their kind, and
//! axum's own rejections (bad JSON, a bad query) in the same shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::{ErrorKind, ServiceError};
use crate::view::{ErrorBody, ErrorDetail};

/// A [`ServiceError`] on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: ServiceError,
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Malformed => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self {
            status: status_of(error.kind),
            error,
        }
    }
}

impl ApiError {
    /// An error with a status that no service error has (401, 405, 415).
    pub fn http(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ServiceError::new(ErrorKind::Malformed, code, message),
        }
    }

    pub fn unauthorized() -> Self {
        Self::http(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs `Authorization: Bearer <token>` (the token of its --token-file)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}: {}", self.error.code, self.error.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error.code.into(),
                message: self.error.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.error.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => {
                ServiceError::invalid("invalid_request", text).into()
            }
            JsonRejection::JsonSyntaxError(_) => {
                ServiceError::new(ErrorKind::Malformed, "malformed_json", text).into()
            }
            JsonRejection::MissingJsonContentType(_) => Self::http(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON with `Content-Type: application/json`",
            ),
            _ => ServiceError::new(ErrorKind::Malformed, "bad_body", text).into(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ServiceError::invalid("bad_query", rejection.body_text()).into()
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ServiceError::not_found("not_found", rejection.body_text()).into()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServiceError::internal(format!("a request task failed: {e}")).into()
    }
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ServiceError::not_found("not_found", "no such route; GET /openapi.json lists them").into()
}

/// A known route with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /openapi.json lists the routes",
    )
}
