//! The playground: one self-contained HTML page (`playground.html`, embedded at compile time;
//! no external assets, no build step) served at `/` and `/playground`, and the example
//! questions `/info` offers it.
//!
//! The page is public even with `--api-key` (it is static; the API calls it makes carry the
//! key typed into it, see [`super::security`]). It reads `/info` (model, rewards and their
//! bins, examples, limits) and streams one question under two control settings side by side
//! from `POST /rationalize/stream`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::Example;
use crate::checkpoint;

/// The page.
pub const PAGE: &str = include_str!("playground.html");

/// What the page may load: nothing from elsewhere (its script and style are inline, its
/// requests go to this server), and no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Examples offered when the checkpoint ships no `examples.json`: plain yes/no questions that
/// need no task format. (question, gold answer)
pub const GENERIC_EXAMPLES: &[(&str, &str)] = &[
    ("Would a pear sink in water?", "no"),
    ("Is the Sun larger than the Moon?", "yes"),
    ("Could a cat fit inside a teacup?", "no"),
];

/// The examples `/info` lists: the checkpoint's own, else [`GENERIC_EXAMPLES`].
pub fn examples(shipped: &[checkpoint::Example]) -> Vec<Example> {
    if shipped.is_empty() {
        return GENERIC_EXAMPLES
            .iter()
            .map(|&(q, gold)| Example {
                question: q.into(),
                gold: Some(gold.into()),
            })
            .collect();
    }
    shipped
        .iter()
        .map(|e| Example {
            question: e.question.clone(),
            gold: e.gold.clone(),
        })
        .collect()
}

fn html() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// The playground (the same page as `/playground`).
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, description = "The playground page (no API key needed; the page sends the key it is given)", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    html()
}

/// The playground: one question under two control settings side by side, streamed; example
/// questions, reward bins and limits come from `/info`.
#[utoipa::path(get, path = "/playground", tag = "service", responses((status = 200, description = "The playground page (no API key needed; the page sends the key it is given)", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    html()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoints_examples_come_first_else_generic_ones() {
        let generic = examples(&[]);
        assert_eq!(generic.len(), GENERIC_EXAMPLES.len());
        assert!(generic.iter().all(|e| e.gold.is_some()));
        let own = examples(&[checkpoint::Example {
            question: "Q?".into(),
            gold: None,
        }]);
        assert_eq!(
            own,
            vec![Example {
                question: "Q?".into(),
                gold: None
            }]
        );
    }

    #[test]
    fn the_page_is_one_file_with_nothing_from_elsewhere() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in ["http://", "https://", "src=\"/", "<link"] {
            assert!(!PAGE.contains(external), "the page refers to {external}");
        }
        // what the page reads and calls
        for used in ["/info", "/rationalize/stream", "Bearer "] {
            assert!(PAGE.contains(used), "{used}");
        }
    }
}
