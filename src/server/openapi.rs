//! The OpenAPI document (utoipa) and an offline documentation page rendered from it.

use utoipa::OpenApi;

use super::api;
use super::playground;
use super::routes;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mario-server",
        description = "Self-rationalization with MaRio-trained T5 models: a question in, a short \
                       rationale and an answer out (\"... So the answer is no.\"), steered by one \
                       control token per reward.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::rationalize,
        routes::rationalize_stream,
        routes::info,
        routes::health,
        routes::ready,
        routes::metrics,
        routes::openapi_json,
        routes::docs,
        playground::index,
        playground::page
    ),
    components(schemas(
        api::RationalizeRequest,
        api::Parameters,
        api::ControlSpec,
        api::GoldSpec,
        api::RationalizeResponse,
        api::RationaleResult,
        api::ControlUsed,
        api::Timings,
        api::FinishReasonApi,
        api::StreamToken,
        api::ErrorResponse,
        api::Info,
        api::RewardInfo,
        api::Example,
        api::Limits,
        api::Health
    )),
    tags(
        (name = "generation", description = "Rationales and answers"),
        (name = "service", description = "Health, metrics, documentation, the playground")
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `openapi/openapi.json` holds).
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
        + "\n"
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page describing every route and schema (no scripts, no CDN).
pub fn docs_html() -> String {
    let doc: serde_json::Value =
        serde_json::from_str(&openapi_json()).expect("the document is JSON");
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mario-server API</title>\
         <style>body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}\
         code,pre{background:#f4f4f4;padding:2px 4px}pre{padding:8px;overflow-x:auto}\
         .m{font-weight:bold;text-transform:uppercase;margin-right:8px}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>{} {}</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a></p>",
        esc(doc["info"]["title"].as_str().unwrap_or("")),
        esc(doc["info"]["version"].as_str().unwrap_or("")),
        esc(doc["info"]["description"].as_str().unwrap_or(""))
    ));
    html.push_str("<h2>Routes</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                html.push_str(&format!(
                    "<h3><span class=\"m\">{}</span><code>{}</code></h3><p>{}</p><p>{}</p>",
                    esc(method),
                    esc(path),
                    esc(op["summary"].as_str().unwrap_or("")),
                    esc(op["description"].as_str().unwrap_or(""))
                ));
                if let Some(body) = op["requestBody"]["content"].as_object() {
                    for (ct, c) in body {
                        html.push_str(&format!(
                            "<p>Request body ({}): <code>{}</code></p>",
                            esc(ct),
                            esc(c["schema"]["$ref"]
                                .as_str()
                                .unwrap_or("")
                                .rsplit('/')
                                .next()
                                .unwrap_or(""))
                        ));
                    }
                }
                html.push_str("<ul>");
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    html.push_str(&format!(
                        "<li><code>{}</code> {}</li>",
                        esc(status),
                        esc(r["description"].as_str().unwrap_or(""))
                    ));
                }
                html.push_str("</ul>");
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            html.push_str(&format!(
                "<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>",
                esc(name),
                esc(&serde_json::to_string_pretty(schema).unwrap_or_default())
            ));
        }
    }
    html.push_str("</body></html>");
    html
}
