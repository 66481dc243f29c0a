//! The Kubernetes manifests in `deploy/kubernetes/` cannot drift from the server: every file
//! parses, every `MARIO_*` variable they set is one of `mario-server`'s and its values pass the
//! server's own flag parsing and checks, every HTTP path they name is a route of the server
//! (its OpenAPI document, generated from the code), every port they name is the port the
//! server listens on (or a Service port in front of it), and the autoscaler's metric is one
//! the server exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;
use mario::server::metrics::METRICS;
use mario::server::ServerConfig;
use serde::Deserialize;
use serde_yaml_ng::Value;

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of every file, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
        .expect("deploy/kubernetes/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

/// The Kubernetes objects (documents with a `kind`), by kind.
fn objects() -> BTreeMap<String, Vec<(String, Value)>> {
    let mut by_kind: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (file, v) in documents() {
        if let Some(kind) = v["kind"].as_str() {
            by_kind
                .entry(kind.to_string())
                .or_default()
                .push((file, v.clone()));
        }
    }
    by_kind
}

fn one(objects: &BTreeMap<String, Vec<(String, Value)>>, kind: &str) -> Value {
    let found = objects.get(kind).map(Vec::as_slice).unwrap_or_default();
    assert_eq!(found.len(), 1, "expected one {kind} in deploy/kubernetes/");
    found[0].1.clone()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

/// The server's HTTP paths, from the OpenAPI document the code generates (which a drift test
/// keeps equal to `openapi/openapi.json`).
fn server_paths() -> BTreeSet<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&mario::server::openapi::openapi_json()).unwrap();
    doc["paths"].as_object().unwrap().keys().cloned().collect()
}

/// The mario-server container of the Deployment.
fn container(deployment: &Value) -> Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("mario-server"))
        .expect("a container named mario-server")
        .clone()
}

/// The server's configuration as the container's environment sets it (a stand-in for values
/// that come from Secrets), through the server's own parsing and start-up checks.
fn container_config(c: &Value) -> ServerConfig {
    let cmd = ServerConfig::augment_args(clap::Command::new("mario-server"));
    let by_env: BTreeMap<String, clap::Arg> = cmd
        .get_arguments()
        .filter_map(|a| Some((a.get_env()?.to_string_lossy().to_string(), a.clone())))
        .collect();
    let mut argv: Vec<String> = Vec::new();
    for e in c["env"].as_sequence().expect("env") {
        let name = str_of(&e["name"], "env name");
        let arg = by_env.get(name).unwrap_or_else(|| {
            panic!(
                "the Deployment sets {name}, which mario-server does not read; its variables: \
                 {:?}",
                by_env.keys().collect::<Vec<_>>()
            )
        });
        let long = arg.get_long().expect("every server flag is long");
        let value = match (e.get("value"), e.get("valueFrom")) {
            (Some(v), None) => str_of(v, name).to_string(),
            (None, Some(from)) => {
                assert!(
                    from.get("secretKeyRef").is_some(),
                    "{name}: valueFrom other than a secretKeyRef"
                );
                "secret-from-kubernetes".to_string()
            }
            _ => panic!("{name}: needs value or valueFrom"),
        };
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else if !matches!(value.as_str(), "false" | "0" | "no" | "off" | "") {
            argv.push(format!("--{long}"));
        }
    }
    for a in c["args"].as_sequence().into_iter().flatten() {
        argv.push(str_of(a, "args").to_string());
    }
    let cfg = ServerConfig::from_args(&argv)
        .unwrap_or_else(|e| panic!("the Deployment's settings {argv:?}: {e}"));
    cfg.validate()
        .unwrap_or_else(|e| panic!("the Deployment's settings {argv:?}: {e}"));
    cfg
}

/// A probe's or Service's port (a number or the name of a container port) as a number.
fn resolve_port(port: &Value, named: &BTreeMap<String, u64>, what: &str) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => *named
            .get(s)
            .unwrap_or_else(|| panic!("{what}: no container port named {s}")),
        other => panic!("{what}: port {other:?}"),
    }
}

#[test]
fn every_manifest_parses_and_names_only_what_the_server_has() {
    let docs = documents();
    assert!(docs.len() >= 5, "deploy/kubernetes/ holds {}", docs.len());
    let objects = objects();
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler"] {
        assert!(
            objects.contains_key(kind),
            "no {kind} in deploy/kubernetes/"
        );
    }
    for (kind, list) in &objects {
        for (file, v) in list {
            assert!(
                v["apiVersion"].is_string(),
                "{file}: {kind} has no apiVersion"
            );
        }
    }
    let paths = server_paths();
    let deployment = one(&objects, "Deployment");
    let c = container(&deployment);
    let cfg = container_config(&c);
    assert_eq!(
        cfg.host, "0.0.0.0",
        "the server must listen beyond the pod's loopback"
    );

    // container ports: the one the server listens on
    let mut named = BTreeMap::new();
    for p in c["ports"].as_sequence().expect("ports") {
        let n = p["containerPort"].as_u64().expect("containerPort");
        assert_eq!(
            n, cfg.port as u64,
            "containerPort {n} is not the server's port {}",
            cfg.port
        );
        if let Some(name) = p["name"].as_str() {
            named.insert(name.to_string(), n);
        }
    }

    // probes: readiness on /ready, liveness (and start-up) on /health
    for (probe, want) in [
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/health"),
        ("startupProbe", "/health"),
    ] {
        let get = &c[probe]["httpGet"];
        if probe == "startupProbe" && c.get(probe).is_none() {
            continue;
        }
        let path = str_of(&get["path"], probe);
        assert_eq!(path, want, "{probe}");
        assert!(paths.contains(path), "{probe}: {path} is not a route");
        resolve_port(&get["port"], &named, probe);
    }

    // the API key comes from a Secret
    let key = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("MARIO_API_KEY"))
        .expect("MARIO_API_KEY is set");
    assert!(key["valueFrom"]["secretKeyRef"]["name"].is_string());
    assert!(cfg.api_key.is_some());

    // resources
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][k][r].is_null(), "resources.{k}.{r}");
        }
    }

    // shutdown: the grace period covers the preStop pause and the server's drain deadline
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let pause: u64 = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .and_then(|cmd| cmd.last()?.as_str()?.parse().ok())
        .unwrap_or(0);
    assert!(
        grace > cfg.shutdown_timeout_s + pause,
        "terminationGracePeriodSeconds {grace} <= --shutdown-timeout-s {} + preStop {pause}",
        cfg.shutdown_timeout_s
    );

    // the model: a volume mounted where MARIO_MODEL points
    let model = cfg
        .model
        .as_ref()
        .expect("the Deployment sets MARIO_MODEL")
        .to_string_lossy()
        .to_string();
    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    assert!(
        mounts
            .iter()
            .any(|m| model.starts_with(str_of(&m["mountPath"], "mountPath"))),
        "MARIO_MODEL {model} is not under a mounted volume"
    );

    // Prometheus annotations
    let ann = &deployment["spec"]["template"]["metadata"]["annotations"];
    if let Some(port) = ann.get("prometheus.io/port") {
        let port: u64 = str_of(port, "prometheus.io/port").parse().unwrap();
        assert_eq!(port, cfg.port as u64, "prometheus.io/port");
    }
    if let Some(path) = ann.get("prometheus.io/path") {
        let path = str_of(path, "prometheus.io/path");
        assert!(paths.contains(path), "prometheus.io/path {path}");
    }

    // the Service targets the server's port and selects the Deployment's pods
    let service = one(&objects, "Service");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&labels[k.as_str().unwrap()], v, "Service selector {k:?}");
    }
    let mut service_ports = BTreeSet::new();
    for p in service["spec"]["ports"]
        .as_sequence()
        .expect("Service ports")
    {
        let target = p.get("targetPort").unwrap_or(&p["port"]);
        assert_eq!(
            resolve_port(target, &named, "Service targetPort"),
            cfg.port as u64
        );
        if let Some(name) = p["name"].as_str() {
            service_ports.insert(name.to_string());
        }
    }

    // the ServiceMonitor scrapes a Service port at a server path
    for (_, sm) in objects.get("ServiceMonitor").into_iter().flatten() {
        for ep in sm["spec"]["endpoints"].as_sequence().expect("endpoints") {
            let port = str_of(&ep["port"], "ServiceMonitor port");
            assert!(service_ports.contains(port), "ServiceMonitor port {port}");
            let path = ep["path"].as_str().unwrap_or("/metrics");
            assert!(paths.contains(path), "ServiceMonitor path {path}");
        }
    }

    // the autoscaler scales the Deployment on a metric the server exports
    let exported: BTreeSet<&str> = METRICS.iter().map(|m| m.0).collect();
    let hpa = one(&objects, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let metric_names: Vec<&str> = hpa["spec"]["metrics"]
        .as_sequence()
        .expect("metrics")
        .iter()
        .filter_map(|m| {
            let kind = match m["type"].as_str()? {
                "Pods" => "pods",
                "External" => "external",
                "Object" => "object",
                _ => return None,
            };
            m[kind]["metric"]["name"].as_str()
        })
        .collect();
    assert!(
        metric_names.contains(&"mario_queue_depth"),
        "the HPA scales on {metric_names:?}"
    );
    for name in &metric_names {
        assert!(
            exported.contains(name),
            "the HPA's metric {name} is not exported"
        );
    }

    // the adapter rules (not a Kubernetes object) query exported metrics only
    let rules: Vec<&Value> = docs
        .iter()
        .filter(|(f, _)| f == "prometheus-adapter-rules.yaml")
        .flat_map(|(_, v)| v["rules"]["custom"].as_sequence().into_iter().flatten())
        .collect();
    assert!(!rules.is_empty(), "no prometheus-adapter rules");
    for r in rules {
        let served = str_of(&r["name"]["as"], "rule name.as");
        assert!(exported.contains(served), "adapter rule serves {served}");
        let query = str_of(&r["seriesQuery"], "seriesQuery");
        let series = query.split('{').next().unwrap();
        assert!(exported.contains(series), "adapter rule queries {series}");
    }

    // kustomization lists existing files
    for (_, k) in objects.get("Kustomization").into_iter().flatten() {
        for r in k["resources"].as_sequence().expect("resources") {
            let f = str_of(r, "resource");
            assert!(manifest_dir().join(f).is_file(), "kustomization: {f}");
        }
    }
}
