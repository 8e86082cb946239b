//! Turning errors into HTTP answers: a status and a JSON body naming the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::ConfigError;
use crate::controller::ControlError;

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// One line for humans: "<field>: <reason>".
    pub error: String,
    /// JSON path of the offending field ("body" for the request as a whole, "state" when the
    /// VM is in the wrong state for the request).
    pub field: String,
    pub reason: String,
}

pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ApiError {
            status,
            body: ErrorBody {
                error: format!("{field}: {reason}"),
                field: field.to_string(),
                reason,
            },
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, &e.field, e.reason)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Config(c) => c.into(),
            ControlError::WrongState(msg) => ApiError::new(StatusCode::CONFLICT, "state", msg),
            ControlError::Vm(e) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "vm", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::warn!("API request failed ({}): {}", self.status, self.body.error);
        (self.status, axum::Json(self.body)).into_response()
    }
}
