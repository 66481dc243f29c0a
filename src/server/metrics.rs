//! Prometheus metrics. Every metric is listed (name, type, labels, meaning) in [`METRICS`],
//! which README's metrics table reproduces and a test keeps in step with the registry.

use prometheus::{
    exponential_buckets, linear_buckets, Encoder, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// (name, type, labels, help) of every metric.
pub const METRICS: &[(&str, &str, &str, &str)] = &[
    (
        "mario_http_requests_total",
        "counter",
        "route, status",
        "HTTP requests by route and status code (499: the client left before the response)",
    ),
    (
        "mario_http_request_duration_seconds",
        "histogram",
        "route",
        "HTTP request duration, arrival to the end of the response body (of a stream: its end)",
    ),
    (
        "mario_requests_in_flight",
        "gauge",
        "",
        "HTTP requests being handled (a stream until it ends)",
    ),
    (
        "mario_queue_depth",
        "gauge",
        "",
        "rows waiting in the queue",
    ),
    (
        "mario_queue_duration_seconds",
        "histogram",
        "",
        "time a row waits in the queue",
    ),
    (
        "mario_inference_duration_seconds",
        "histogram",
        "",
        "time from a row joining a batch to its last token",
    ),
    (
        "mario_decode_step_duration_seconds",
        "histogram",
        "",
        "duration of one decoding step of the running batch",
    ),
    (
        "mario_batch_size",
        "histogram",
        "",
        "rows in the running batch at each decoding step",
    ),
    (
        "mario_generated_tokens_total",
        "counter",
        "",
        "tokens generated",
    ),
    (
        "mario_rows_cancelled_total",
        "counter",
        "reason",
        "rows removed before finishing: disconnect or timeout",
    ),
];

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// `mario_http_requests_total{route, status}`.
    pub requests: IntCounterVec,
    /// `mario_http_request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `mario_requests_in_flight`.
    pub in_flight: IntGauge,
    /// `mario_queue_depth`.
    pub queue_depth: IntGauge,
    /// `mario_queue_duration_seconds`.
    pub queue_duration: Histogram,
    /// `mario_inference_duration_seconds`.
    pub inference_duration: Histogram,
    /// `mario_decode_step_duration_seconds`.
    pub step_duration: Histogram,
    /// `mario_batch_size`.
    pub batch_size: Histogram,
    /// `mario_generated_tokens_total`.
    pub generated_tokens: IntCounter,
    /// `mario_rows_cancelled_total{reason}`.
    pub rows_cancelled: IntCounterVec,
}

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|m| m.0 == name)
        .map(|m| m.3)
        .expect("every metric is documented in METRICS")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let secs = exponential_buckets(0.0005, 2.0, 18).expect("valid buckets");
        let hist = |name: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help(name)).buckets(secs.clone()))
                .expect("valid histogram")
        };
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "mario_http_requests_total",
                    help("mario_http_requests_total"),
                ),
                &["route", "status"],
            )
            .expect("valid counter"),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "mario_http_request_duration_seconds",
                    help("mario_http_request_duration_seconds"),
                )
                .buckets(secs.clone()),
                &["route"],
            )
            .expect("valid histogram"),
            in_flight: IntGauge::new("mario_requests_in_flight", help("mario_requests_in_flight"))
                .expect("valid gauge"),
            queue_depth: IntGauge::new("mario_queue_depth", help("mario_queue_depth"))
                .expect("valid gauge"),
            queue_duration: hist("mario_queue_duration_seconds"),
            inference_duration: hist("mario_inference_duration_seconds"),
            step_duration: hist("mario_decode_step_duration_seconds"),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("mario_batch_size", help("mario_batch_size"))
                    .buckets(linear_buckets(1.0, 1.0, 64).expect("valid buckets")),
            )
            .expect("valid histogram"),
            generated_tokens: IntCounter::new(
                "mario_generated_tokens_total",
                help("mario_generated_tokens_total"),
            )
            .expect("valid counter"),
            rows_cancelled: IntCounterVec::new(
                Opts::new(
                    "mario_rows_cancelled_total",
                    help("mario_rows_cancelled_total"),
                ),
                &["reason"],
            )
            .expect("valid counter"),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone())).expect("register");
        r.register(Box::new(m.request_duration.clone()))
            .expect("register");
        r.register(Box::new(m.in_flight.clone())).expect("register");
        r.register(Box::new(m.queue_depth.clone()))
            .expect("register");
        r.register(Box::new(m.queue_duration.clone()))
            .expect("register");
        r.register(Box::new(m.inference_duration.clone()))
            .expect("register");
        r.register(Box::new(m.step_duration.clone()))
            .expect("register");
        r.register(Box::new(m.batch_size.clone()))
            .expect("register");
        r.register(Box::new(m.generated_tokens.clone()))
            .expect("register");
        r.register(Box::new(m.rows_cancelled.clone()))
            .expect("register");
        m
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// Names of the registered metric families.
    pub fn names(&self) -> Vec<String> {
        self.registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The README table of the metrics.
pub fn markdown_table() -> String {
    let mut s = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for (name, kind, labels, help) in METRICS {
        s.push_str(&format!("| `{name}` | {kind} | {labels} | {help} |\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_metric_is_documented_and_vice_versa() {
        let m = Metrics::new();
        // label-vector families appear once a label set exists
        m.requests.with_label_values(&["/x", "200"]).inc();
        m.request_duration.with_label_values(&["/x"]).observe(0.1);
        m.rows_cancelled.with_label_values(&["timeout"]).inc();
        let mut names = m.names();
        names.sort();
        let mut documented: Vec<String> = METRICS.iter().map(|m| m.0.to_string()).collect();
        documented.sort();
        assert_eq!(names, documented);
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's metrics table is out of date; it must contain:\n{}",
            markdown_table()
        );
    }
}
