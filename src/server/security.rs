//! Who may call the server and how: the API key (a Bearer token compared in constant time),
//! the `application/json` requirement on request bodies, and the CORS policy.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::app::{AppState, REQUEST_ID_HEADER};
use super::error::ApiError;

/// The secret a client sends as `Authorization: Bearer <key>`. Its `Debug` form is redacted,
/// so that logging a configuration never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Whether `presented` is the key, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The key is usable: not empty, visible ASCII only (a header value).
    pub fn check(&self) -> Result<(), String> {
        if self.0.is_empty() || !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("--api-key (MARIO_API_KEY) must be non-empty visible ASCII".into());
        }
        Ok(())
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The access policy of a running server.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Required on every route but the open ones, when set.
    pub api_key: Option<ApiKey>,
    /// Whether `/metrics` needs the key too.
    pub metrics_require_api_key: bool,
}

impl Access {
    /// Whether a request for `path` may skip the key: liveness and readiness probes always,
    /// the playground page (static HTML: the API calls it makes carry the key the visitor
    /// types), and `/metrics` unless `--metrics-require-api-key`.
    fn is_open(&self, path: &str) -> bool {
        matches!(path, "/health" | "/ready" | "/" | "/playground")
            || (path == "/metrics" && !self.metrics_require_api_key)
    }

    /// Checks the `Authorization` header of a request for `path`.
    pub fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        if self.is_open(path) {
            return Ok(());
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer_token(v.as_bytes()));
        match token {
            Some(t) if key.matches(t) => Ok(()),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Middleware: 401 without the API key (when one is configured).
pub async fn require_api_key(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match state.access.authorize(req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// 415 unless the body is declared `application/json` (parameters such as `charset` allowed).
/// A plain-text or form body is what a web page can send cross-origin without a preflight.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            got: if ct.is_empty() {
                "none".into()
            } else {
                ct.chars().take(64).collect()
            },
        })
    }
}

/// Checks one `--cors-allow-origin` value: `*` or an origin `http[s]://host[:port]`.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "--cors-allow-origin {origin:?}: use `*` or an origin such as https://example.com \
             (scheme and host, no path)"
        )
    };
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if rest.is_empty() || rest.contains('/') || HeaderValue::from_str(origin).is_err() {
        return Err(bad());
    }
    Ok(())
}

/// The CORS layer for the allowed origins (checked at start-up), or none: without
/// `--cors-allow-origin` no CORS header is sent and browsers keep other origins out.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let request_id = header::HeaderName::from_static(REQUEST_ID_HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                request_id.clone(),
            ])
            .expose_headers([request_id, header::RETRY_AFTER]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_keys() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
        let key: ApiKey = "s3cret".parse().unwrap();
        assert!(key.matches(b"s3cret"));
        assert!(!key.matches(b"s3cre"));
        assert!(!key.matches(b"s3cret2"));
        assert!(!format!("{key:?}").contains("s3cret"));
        assert!("".parse::<ApiKey>().unwrap().check().is_err());
        assert!("a b".parse::<ApiKey>().unwrap().check().is_err());
    }

    #[test]
    fn the_playground_page_and_probes_are_open_the_api_is_not() {
        let access = Access {
            api_key: Some("s3cret".parse().unwrap()),
            metrics_require_api_key: false,
        };
        let none = HeaderMap::new();
        for open in ["/", "/playground", "/health", "/ready", "/metrics"] {
            assert!(access.authorize(open, &none).is_ok(), "{open}");
        }
        for guarded in ["/info", "/rationalize", "/rationalize/stream", "/docs"] {
            assert_eq!(
                access.authorize(guarded, &none),
                Err(ApiError::Unauthorized)
            );
        }
    }

    #[test]
    fn origins() {
        for ok in ["*", "https://example.com", "http://localhost:3000"] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in ["example.com", "https://", "https://a.com/x", "ftp://a"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
