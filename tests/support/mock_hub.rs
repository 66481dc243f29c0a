//! A local stand-in for the Hugging Face Hub, for tests that must not reach the network: an
//! axum server on 127.0.0.1 that serves in-memory repositories under the Hub's URL layout, the
//! part of it that `hf-hub`'s blocking client calls:
//!
//! - `GET /api/models/{owner}/{name}/revision/{revision}`: `{"sha": ..., "siblings": [...]}`;
//! - `GET /{owner}/{name}/resolve/{revision}/{file}`: the file, with `ETag`, `X-Repo-Commit`
//!   and, for a `Range: bytes=a-b` / `bytes=a-` request, 206 and `Content-Range` (the client
//!   first asks for `bytes=0-0` to learn the size, then for the rest).
//!
//! A revision is `main` or the repository's commit; anything else is 404, like an unknown
//! repository. A repository with a token answers 401 to requests without `Authorization:
//! Bearer <token>`. Every request is recorded (`GET <path>`), so tests can count them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};

/// One repository: its files and its commit.
#[derive(Clone, Debug)]
pub struct MockRepo {
    pub files: BTreeMap<String, Vec<u8>>,
    pub commit: String,
    /// When set, requests need `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl MockRepo {
    /// A public repository with these files at the commit `a1b2…` (40 hex digits).
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> Self {
        Self {
            files,
            commit: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678".into(),
            token: None,
        }
    }

    /// The files of a folder (plain files only).
    pub fn from_dir(dir: &std::path::Path) -> Self {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                files.insert(
                    entry.file_name().to_string_lossy().to_string(),
                    std::fs::read(entry.path()).unwrap(),
                );
            }
        }
        Self::new(files)
    }
}

/// The running mock hub; stops when dropped.
pub struct MockHub {
    /// `http://127.0.0.1:<port>`, for `HF_ENDPOINT`.
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    repos: BTreeMap<String, MockRepo>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl MockHub {
    /// Serves `repos` (keyed by `owner/name`) on a free loopback port.
    pub fn start(repos: BTreeMap<String, MockRepo>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            repos,
            requests: requests.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |req: Request<Body>| {
                    let state = state.clone();
                    async move { handle(&state, req) }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            url,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request so far, as `GET <path>`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests so far whose path contains `part`.
    pub fn count(&self, part: &str) -> usize {
        self.requests().iter().filter(|r| r.contains(part)).count()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("x-error-code", code), ("content-type", "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// A stable ETag of a file's bytes (the real Hub sends a sha256 or git blob id).
fn etag(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}{:08x}", h.finish(), bytes.len())
}

fn handle(state: &State, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {path}", req.method()));
    let headers = req.headers();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/models/{owner}/{name}/revision/{revision}
    if let ["api", "models", owner, name, "revision", revision] = parts.as_slice() {
        let repo = match find(state, owner, name, revision, headers) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let siblings: Vec<_> = repo
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({
            "id": format!("{owner}/{name}"),
            "modelId": format!("{owner}/{name}"),
            "sha": repo.commit,
            "siblings": siblings,
        });
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    // /{owner}/{name}/resolve/{revision}/{file}
    if let [owner, name, "resolve", revision, file @ ..] = parts.as_slice() {
        let repo = match find(state, owner, name, revision, headers) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let file = file.join("/");
        let Some(bytes) = repo.files.get(&file) else {
            return error(
                StatusCode::NOT_FOUND,
                "EntryNotFound",
                &format!("{file} not found"),
            );
        };
        let total = bytes.len();
        let range = headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| {
                let start: usize = a.parse().unwrap_or(0);
                let end: usize = b
                    .parse()
                    .unwrap_or(total.saturating_sub(1))
                    .min(total.saturating_sub(1));
                (start, end)
            });
        let common = [
            ("etag", format!("\"{}\"", etag(bytes))),
            ("x-repo-commit", repo.commit.clone()),
            ("accept-ranges", "bytes".to_string()),
        ];
        let mut resp = match range {
            Some((start, end)) if start < total && start <= end => {
                let mut r = Response::new(Body::from(bytes[start..=end].to_vec()));
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                r.headers_mut().insert(
                    "content-range",
                    format!("bytes {start}-{end}/{total}").parse().unwrap(),
                );
                r
            }
            Some(_) => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                r.headers_mut()
                    .insert("content-range", format!("bytes */{total}").parse().unwrap());
                r
            }
            None => Response::new(Body::from(bytes.clone())),
        };
        for (k, v) in common {
            resp.headers_mut().insert(k, v.parse().unwrap());
        }
        return resp;
    }
    error(StatusCode::NOT_FOUND, "NotFound", "no such route")
}

/// The repository at a revision, checking the token; or the Hub's refusal.
#[allow(clippy::result_large_err)]
fn find<'a>(
    state: &'a State,
    owner: &str,
    name: &str,
    revision: &str,
    headers: &HeaderMap,
) -> Result<&'a MockRepo, Response> {
    let Some(repo) = state.repos.get(&format!("{owner}/{name}")) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        ));
    };
    if let Some(token) = &repo.token {
        let sent = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "RepoNotFound",
                "Invalid credentials in Authorization header",
            ));
        }
    }
    let revision = revision.replace("%2F", "/");
    if revision != "main" && revision != repo.commit {
        return Err(error(
            StatusCode::NOT_FOUND,
            "RevisionNotFound",
            &format!("Invalid rev id: {revision}"),
        ));
    }
    Ok(repo)
}
