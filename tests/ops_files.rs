//! The operating files in the repository: docker-compose.yml, the Dockerfile, the Prometheus
//! scrape config, Grafana's provisioning and dashboard, the metrics catalogue in the README.
//! They are checked statically (Docker is not needed), and the dashboard's queries against a
//! live bridge's /metrics.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn dashboard() -> Value {
    let path = root().join("deploy/grafana/dashboards/polaris-bridge.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON parses")
}

/// Every `polaris_bridge_*` metric a dashboard query uses, by its exported family name
/// (histogram `_bucket`/`_sum`/`_count` series map to the histogram).
fn dashboard_metrics(dashboard: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut exprs = Vec::new();
    fn walk(v: &Value, exprs: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr" {
                        exprs.push(v.as_str().unwrap_or_default().to_string());
                    } else {
                        walk(v, exprs);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, exprs)),
            _ => {}
        }
    }
    walk(dashboard, &mut exprs);
    assert!(exprs.len() > 20, "the dashboard has its queries");
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("polaris_bridge_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// The metric names of the README's metrics table.
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `polaris_bridge_"))
        .map(|l| format!("polaris_bridge_{}", &l[..l.find('`').unwrap()]))
        .collect()
}

#[test]
fn compose_file_is_complete_and_local_only() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for needed in [
        "kafka",
        "minio",
        "prometheus",
        "grafana",
        "webhook-receiver",
        "bridge",
    ] {
        let service = services
            .get(needed)
            .unwrap_or_else(|| panic!("service {needed}"));
        assert!(
            service["healthcheck"]["test"].is_array(),
            "{needed} has a healthcheck"
        );
    }
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().expect("ports as strings");
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: port {port} bound to 127.0.0.1 only"
            );
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(
                    root().join(host).exists(),
                    "{name}: {host} exists in the repo"
                );
            }
        }
    }
    // Kafka in KRaft mode, no ZooKeeper.
    let kafka = &services["kafka"]["environment"];
    assert_eq!(kafka["KAFKA_PROCESS_ROLES"], "broker,controller");
    assert!(!services.keys().any(|k| k.contains("zookeeper")));
    assert!(services["kafka"]["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    // The bridge is built from the Dockerfile and waits for what it needs.
    let bridge = &services["bridge"];
    assert_eq!(bridge["build"]["dockerfile"], "Dockerfile");
    for dependency in ["kafka", "webhook-receiver"] {
        assert!(
            bridge["depends_on"][dependency]["condition"].is_string(),
            "{dependency}"
        );
    }
    assert!(bridge["environment"]["POLARIS_BRIDGE_ADMIN_TOKEN"].is_string());
    // Grafana gets the dashboard and its provisioning; Prometheus its scrape config.
    let grafana: Vec<&str> = services["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        grafana
            .iter()
            .any(|v| v.starts_with("./deploy/grafana/dashboards:")),
        "{grafana:?}"
    );
    assert!(
        grafana
            .iter()
            .any(|v| v.starts_with("./deploy/grafana/provisioning:")),
        "{grafana:?}"
    );
    let dashboards_at = grafana
        .iter()
        .find(|v| v.starts_with("./deploy/grafana/dashboards:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    let provider = yaml("deploy/grafana/provisioning/dashboards/polaris-bridge.yml");
    assert_eq!(provider["providers"][0]["options"]["path"], dashboards_at);
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(datasource["datasources"][0]["type"], "prometheus");
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    assert_eq!(
        dashboard()["panels"][1]["datasource"]["uid"],
        uid,
        "the dashboard uses the provisioned datasource"
    );
    let prometheus: Vec<&str> = services["prometheus"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(prometheus
        .iter()
        .any(|v| v.starts_with("./deploy/prometheus/prometheus.yml:")));
    let scrape = yaml("deploy/prometheus/prometheus.yml");
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(job["static_configs"][0]["targets"][0], "bridge:9464");
}

#[test]
fn openapi_document_parses_and_lists_the_admin_routes() {
    let spec = yaml("openapi.yaml");
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/retry",
        "/api/v1/tasks/{id}/cancel",
        "/api/v1/rejected",
        "/api/v1/rejected/{topic}/{partition}/{offset}",
        "/api/v1/rejected/{topic}/{partition}/{offset}/replay",
        "/api/v1/connectors",
        "/api/v1/connectors/{name}",
        "/api/v1/connectors/{name}/pause",
        "/api/v1/connectors/{name}/resume",
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} documented"));
        for (_, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"]["401"].is_object(),
                "{path}: 401 documented"
            );
        }
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
}

#[test]
fn dockerfile_is_multi_stage_and_runs_unprivileged() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage: {stages} FROM lines");
    let last_stage = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        last_stage.contains("\nUSER bridge"),
        "runs as a non-root user"
    );
    assert!(last_stage.contains("HEALTHCHECK"), "has a healthcheck");
    assert!(last_stage.contains("ENTRYPOINT [\"polaris-bridge\"]"));
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        for source in line
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .split_last()
            .unwrap()
            .1
        {
            assert!(root().join(source).exists(), "COPY source {source} exists");
        }
    }
}

#[test]
fn compose_bridge_config_is_valid() {
    let path = root().join("deploy/bridge/bridge.toml");
    let (ok, stdout, stderr) = run_cli(&["check-config", path.to_str().unwrap()], &[]);
    assert!(ok, "{stdout}{stderr}");
}

#[test]
fn every_dashboard_metric_is_in_the_catalogue() {
    let documented = readme_metrics();
    assert!(
        documented.len() >= 25,
        "the README catalogue: {documented:?}"
    );
    for name in dashboard_metrics(&dashboard()) {
        assert!(
            documented.contains(&name),
            "{name} is queried by the dashboard but not in the README"
        );
    }
    for (name, _) in m::CONNECTOR_METRICS {
        assert!(documented.contains(*name), "{name} in the README");
    }
}

/// Whether a rendered /metrics exports the metric family `name`.
fn exported(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name).is_some_and(|rest| {
            rest.starts_with(['{', ' ']) || rest.starts_with("_bucket") || rest.starts_with("_sum")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported_by_a_live_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("dash");
    create_topic(&topic, 2).await;
    let events = sample_events(50, 3);
    produce_json(&topic, &events).await;
    produce_json(&topic, &events[..5]).await;
    send(&producer(), &topic, None, b"{ not json").await;

    let out = dir.path().join("out.jsonl");
    let extra = format!(
        "[connectors.out]\ntype = \"file\"\npath = \"{}\"\n[connectors.broken]\ntype = \"file\"\npath = \"{}\"\n[[routes]]\nconnector = \"out\"\n[[routes]]\nconnector = \"broken\"\n",
        out.display(),
        dir.path().display()
    );
    let port = free_port();
    let store = dir.path().join("store");
    let token = "dashboard-test-token-0123456789";
    let cfg = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start_with_env(
        dir.path(),
        "dash",
        &cfg,
        port,
        &[("POLARIS_BRIDGE_ADMIN_TOKEN", token)],
    );
    wait_until("delivered", Duration::from_secs(60), || {
        count_lines(&out) >= events.len()
    });
    // One operator action and one replay, so their counters exist.
    let rejected = api(bridge.http, "GET", "/api/v1/rejected", token, None);
    let id = rejected["rejected"][0]["id"].as_str().unwrap().to_string();
    api(
        bridge.http,
        "POST",
        &format!("/api/v1/rejected/{id}/replay"),
        token,
        None,
    );
    api(
        bridge.http,
        "POST",
        "/api/v1/connectors/out/pause",
        token,
        None,
    );
    api(
        bridge.http,
        "POST",
        "/api/v1/connectors/out/resume",
        token,
        None,
    );
    // librdkafka's statistics (and so the lag gauge) come every 5 s.
    wait_until("consumer lag reported", Duration::from_secs(30), || {
        exported(&bridge.metrics(), m::CONSUMER_LAG)
    });
    let text = bridge.metrics();
    let lag_series = text
        .lines()
        .filter(|l| l.starts_with(m::CONSUMER_LAG) && l.contains(&topic))
        .count();
    assert_eq!(
        lag_series, 2,
        "one lag series per assigned partition:\n{text}"
    );
    // The same statistics give the prefetch queue's size; the C heap is measured on the
    // same 5 s tick (librdkafka alone has allocated something by now).
    assert!(exported(&text, m::SOURCE_PREFETCHED_BYTES), "{text}");
    let c_heap = polaris_bridge::demo::sum(&text, m::C_HEAP_BYTES, None);
    assert!(c_heap > 0.0, "C heap in use, bytes: {c_heap}\n{text}");

    let connector_only: Vec<&str> = m::CONNECTOR_METRICS.iter().map(|(n, _)| *n).collect();
    let mut skipped = Vec::new();
    for name in dashboard_metrics(&dashboard()) {
        if exported(&text, &name) {
            continue;
        }
        if let Some((_, kind)) = m::CONNECTOR_METRICS.iter().find(|(n, _)| *n == name) {
            skipped.push(format!(
                "{name} (emitted by {kind} connectors; none is configured in this test)"
            ));
            continue;
        }
        panic!("the dashboard queries {name}, which the bridge does not export:\n{text}");
    }
    for s in &skipped {
        println!("skipped: {s}");
    }
    assert!(skipped.len() <= connector_only.len());

    // The catalogue is complete: everything exported is documented.
    let documented = readme_metrics();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split_whitespace().next().unwrap();
        assert!(
            documented.contains(name),
            "{name} is exported but not in the README's catalogue"
        );
    }
    // Labels stay bounded: no task or event id in any series.
    for id in expected_ids("out", &events).iter().take(5) {
        assert!(!text.contains(id.as_str()), "a task id in /metrics");
    }
    assert!(bridge.terminate(Duration::from_secs(30)).success());
    assert!(Path::new(&out).exists());
}

#[test]
fn webhook_receiver_records_what_it_gets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("webhooks.jsonl");
    let mut child = std::process::Command::new("python3")
        .arg(root().join("deploy/webhook-receiver/receiver.py"))
        .env("RECEIVER_PORT", port.to_string())
        .env("RECEIVER_LOG", &log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs the receiver");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("receiver up", Duration::from_secs(20), || {
        http_get(addr, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    let (status, _) = http_request(addr, "POST", "/polaris", None, Some(r#"{"id":"t1"}"#));
    assert_eq!(status, 204);
    let (status, body) = http_request(addr, "GET", "/received", None, None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    let received: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(received[0]["body"]["id"], "t1");
    assert_eq!(received[0]["path"], "/polaris");
    assert!(std::fs::read_to_string(&log).unwrap().contains("t1"));
}
