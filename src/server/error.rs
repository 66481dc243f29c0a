//! The server's one error type, and its mapping to HTTP (the only place statuses are chosen).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::ErrorResponse;

/// Seconds a refused client is told to wait (`Retry-After`) when the server is overloaded
/// ([`ApiError::Overloaded`]) or its queue is full ([`ApiError::QueueFull`]): both clear as
/// soon as running requests finish, so the shortest whole-second hint.
pub const RETRY_AFTER_S: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON.
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// The body exceeds the size limit.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request is well-formed JSON but not acceptable.
    #[error("{0}")]
    Validation(String),
    /// Too many requests in flight.
    #[error("too many concurrent requests (limit {limit}); retry later")]
    Overloaded {
        /// The concurrency limit.
        limit: usize,
        /// Suggested wait in seconds.
        retry_after_s: u64,
    },
    /// The queue is full.
    #[error("the queue is full ({capacity} waiting); retry later")]
    QueueFull {
        /// The queue capacity.
        capacity: usize,
        /// Suggested wait in seconds.
        retry_after_s: u64,
    },
    /// The model is not loaded or warmed up yet, or the worker stopped.
    #[error("{0}")]
    NotReady(String),
    /// The client did not send the body in time.
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout {
        /// The body-read timeout.
        seconds: u64,
    },
    /// The request took longer than the configured timeout.
    #[error("the request did not finish within {seconds} s")]
    Timeout {
        /// The timeout.
        seconds: u64,
    },
    /// A failure inside the server.
    #[error("internal error: {0}")]
    Internal(String),
    /// No such route.
    #[error("no such route; see /docs")]
    NotFoundRoute,
    /// The API key is missing or wrong.
    #[error("missing or invalid API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The body is not declared as JSON.
    #[error("the request body must be `content-type: application/json` (got {got})")]
    UnsupportedMediaType {
        /// The content type sent (cut to 64 characters), or `none`.
        got: String,
    },
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueFull { .. } | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFoundRoute => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The stable `error_type` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Validation(_) => "validation",
            Self::Overloaded { .. } => "overloaded",
            Self::QueueFull { .. } => "queue_full",
            Self::NotReady(_) => "not_ready",
            Self::Timeout { .. } => "timeout",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Internal(_) => "internal",
            Self::NotFoundRoute => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
        }
    }

    /// The JSON body. An internal error's detail (file paths, device errors) stays out of it:
    /// see [`ApiError::client_body`].
    pub fn body(&self) -> ErrorResponse {
        let error = match self {
            Self::Internal(_) => "internal error; the server log has the details".to_string(),
            _ => self.to_string(),
        };
        ErrorResponse {
            error,
            error_type: self.error_type().to_string(),
        }
    }

    /// The body a client gets for request `request_id`; an internal error is logged here with
    /// its detail and answered with a generic message that names the request id.
    pub fn client_body(&self, request_id: &str) -> ErrorResponse {
        match self {
            Self::Internal(detail) => {
                tracing::error!(request_id, "internal error: {detail}");
                ErrorResponse {
                    error: format!(
                        "internal error (request id {request_id}); the server log has the details"
                    ),
                    error_type: self.error_type().to_string(),
                }
            }
            _ => self.body(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Overloaded { retry_after_s, .. } | Self::QueueFull { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            Self::NotReady(_) => Some(5),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if matches!(self, Self::Internal(_)) {
            // for the middleware that logs it with the request id (app::report_internal_errors)
            resp.extensions_mut().insert(self.clone());
        }
        if let Some(s) = self.retry_after() {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&s.to_string()).expect("digits are a valid header"),
            );
        }
        if matches!(self, Self::BodyTimeout { .. }) {
            // the rest of the body is still on its way: this connection cannot carry another
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types() {
        let cases = [
            (ApiError::BadJson("x".into()), 400, "bad_json"),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (ApiError::Validation("x".into()), 422, "validation"),
            (
                ApiError::Overloaded {
                    limit: 1,
                    retry_after_s: 1,
                },
                429,
                "overloaded",
            ),
            (
                ApiError::QueueFull {
                    capacity: 1,
                    retry_after_s: 1,
                },
                503,
                "queue_full",
            ),
            (ApiError::NotReady("x".into()), 503, "not_ready"),
            (ApiError::Timeout { seconds: 1 }, 504, "timeout"),
            (ApiError::BodyTimeout { seconds: 1 }, 408, "body_timeout"),
            (ApiError::Internal("x".into()), 500, "internal"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (
                ApiError::UnsupportedMediaType { got: "none".into() },
                415,
                "unsupported_media_type",
            ),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.error_type(), kind);
            let resp = e.clone().into_response();
            let has_retry = resp.headers().contains_key(header::RETRY_AFTER);
            assert_eq!(has_retry, matches!(status, 429 | 503), "{e:?}");
        }
    }
}
