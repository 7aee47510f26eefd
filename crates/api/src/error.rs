//! API errors and their two wire formats, mapped once here.
//!
//! The `/webhook` profile answers
//! `{"success":false,"error","error_code","timestamp"[,"details"][,"available_events"]}`;
//! everything else answers `{"error":{"code","message"[,"details"]}}`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use hookrelay_core::{rfc3339_now, FieldError};
use hookrelay_store::StoreError;
use serde_json::json;
use tracing::error;

/// Which envelope an error is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The vendor-compatible `/webhook` envelope.
    Profile,
    /// The `/v1` envelope.
    Native,
}

/// What went wrong, independent of the envelope.
#[derive(Debug)]
pub(crate) enum ApiError {
    Validation {
        message: String,
        details: Vec<FieldError>,
        available_events: Option<Vec<String>>,
    },
    Unauthorized(&'static str),
    NotFound(String),
    Conflict(String),
    MethodNotAllowed,
    PayloadTooLarge,
    /// The request body did not arrive in time.
    RequestTimeout,
    UnsupportedMediaType,
    Unavailable(String),
    RateLimited,
    /// The tenant holds its share of the pending deliveries.
    OverShare(String),
    Internal,
}

/// Seconds a tenant over its pending share is told to wait.
const OVER_SHARE_RETRY_AFTER: &str = "5";

impl ApiError {
    pub(crate) fn validation(message: impl Into<String>, details: Vec<FieldError>) -> Self {
        Self::Validation {
            message: message.into(),
            details,
            available_events: None,
        }
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Validation { message, .. } => {
                (StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message.clone())
            }
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", (*m).to_owned()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "NOT_FOUND", m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, "CONFLICT", m.clone()),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route".to_owned(),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body is over {} bytes", crate::MAX_BODY_BYTES),
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the request body did not arrive in time".to_owned(),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "request body must be application/json".to_owned(),
            ),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m.clone()),
            Self::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests for this token; retry after the Retry-After delay".to_owned(),
            ),
            Self::OverShare(m) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", m.clone()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error".to_owned(),
            ),
        }
    }

    /// Writes the error in `format`.
    pub(crate) fn into_format(self, format: Format) -> Response {
        let (status, code, message) = self.parts();
        let mut body = match format {
            Format::Profile => json!({
                "success": false,
                "error": message,
                "error_code": code,
                "timestamp": rfc3339_now(),
            }),
            Format::Native => json!({"error": {"code": code, "message": message}}),
        };
        if let Self::Validation {
            details,
            available_events,
            ..
        } = &self
        {
            if !details.is_empty() {
                let d = json!(details);
                match format {
                    Format::Profile => body["details"] = d,
                    Format::Native => body["error"]["details"] = d,
                }
            }
            if let Some(events) = available_events {
                match format {
                    Format::Profile => body["available_events"] = json!(events),
                    Format::Native => body["error"]["available_events"] = json!(events),
                }
            }
        }
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::RequestTimeout) {
            // The rest of a trickled body is not waited for.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::OverShare(_)) {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(OVER_SHARE_RETRY_AFTER),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => Self::NotFound(format!("{what} not found")),
            StoreError::Conflict { what } => Self::Conflict(format!("{what} already exists")),
            StoreError::Limit { what, max } => Self::Conflict(format!(
                "limit reached: at most {max} {what}; delete one first"
            )),
            StoreError::Io(_) | StoreError::Unavailable { .. } => {
                error!(error = %e, "storage failure while serving a request");
                Self::Unavailable("storage unavailable; retry later".to_owned())
            }
            StoreError::DiskFull { .. } => Self::Unavailable(e.to_string()),
            other => {
                error!(error = %other, "storage failure while serving a request");
                Self::Internal
            }
        }
    }
}

/// Native-format errors for `/v1` handlers.
pub(crate) struct Native(pub(crate) ApiError);

impl IntoResponse for Native {
    fn into_response(self) -> Response {
        self.0.into_format(Format::Native)
    }
}

impl<E: Into<ApiError>> From<E> for Native {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// Profile-format errors for `/webhook` handlers.
pub(crate) struct Profile(pub(crate) ApiError);

impl IntoResponse for Profile {
    fn into_response(self) -> Response {
        self.0.into_format(Format::Profile)
    }
}

impl<E: Into<ApiError>> From<E> for Profile {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

pub(crate) async fn not_found_route() -> Response {
    ApiError::NotFound("no such route".to_owned()).into_format(Format::Native)
}

pub(crate) async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_format(Format::Native)
}
