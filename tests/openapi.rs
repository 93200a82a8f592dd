//! The OpenAPI document (`openapi.yaml`) matches the server: schemathesis (PyPI) fuzzes every
//! admin operation of a live bridge holding real tasks (succeeded, dead) and rejected
//! messages, and fails on any 5xx, undocumented status code, wrong content type or response
//! that violates its schema.
//!
//! `tests/run.sh` installs schemathesis (tests/schemathesis.sh) and sets `SCHEMATHESIS` and
//! `POLARIS_BRIDGE_REQUIRE_SCHEMATHESIS=1`; a plain `cargo test` without it skips this test
//! and says so.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use polaris_bridge_api::samples::sample_events;

const TOKEN: &str = "openapi-test-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_schema_violation() {
    let Some(schemathesis) = std::env::var_os("SCHEMATHESIS") else {
        assert!(
            std::env::var_os("POLARIS_BRIDGE_REQUIRE_SCHEMATHESIS").is_none(),
            "SCHEMATHESIS is not set but required"
        );
        println!("skipped: SCHEMATHESIS is not set (tests/run.sh installs it and sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("openapi");
    create_topic(&topic, 2).await;
    let events = sample_events(30, 13);
    produce_json(&topic, &events).await;
    let producer = producer();
    for bad in [&b"{ not json"[..], b"\x00\x01\x02", b""] {
        send(&producer, &topic, None, bad).await;
    }
    let out = dir.path().join("out.jsonl");
    let extra = format!(
        r#"
[connectors.out]
type = "file"
path = "{out}"

[connectors.dead]
type = "file"
path = "{missing}"
retry = {{ max_attempts = 1 }}

[connectors.slow]
type = "blackhole"
delay = "1h"
concurrency = 2

[[routes]]
connector = "out"
[[routes]]
connector = "dead"
[[routes]]
connector = "slow"
"#,
        out = out.display(),
        missing = dir.path().join("missing").join("x.jsonl").display(),
    );
    let port = free_port();
    let store = dir.path().join("store");
    let cfg = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start_with_env(
        dir.path(),
        "openapi",
        &cfg,
        port,
        &[("POLARIS_BRIDGE_ADMIN_TOKEN", TOKEN)],
    );
    wait_until("tasks delivered and dead", Duration::from_secs(60), || {
        count_lines(&out) >= events.len()
            && api(
                bridge.http,
                "GET",
                "/api/v1/tasks?state=dead&limit=1000",
                TOKEN,
                None,
            )["tasks"]
                .as_array()
                .unwrap()
                .len()
                >= events.len()
    });

    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    let base = format!("http://{}", bridge.http);
    // First with generated parameters (mostly unknown ids: 400s and 404s), then with real
    // ones (a dead task, a rejected message, a connector), so the 200 answers are checked
    // against their schemas too.
    let dead = api(
        bridge.http,
        "GET",
        "/api/v1/tasks?state=dead&limit=1",
        TOKEN,
        None,
    );
    let rejected = api(bridge.http, "GET", "/api/v1/rejected?limit=1", TOKEN, None);
    let rejected = &rejected["rejected"][0];
    let real = dir.path().join("schemathesis.toml");
    std::fs::write(
        &real,
        format!(
            "[parameters]\n\"path.id\" = \"{}\"\n\"path.topic\" = \"{}\"\n\"path.partition\" = {}\n\"path.offset\" = {}\n\"path.name\" = \"out\"\n",
            dead["tasks"][0]["task_id"].as_str().unwrap(),
            rejected["topic"].as_str().unwrap(),
            rejected["partition"],
            rejected["offset"],
        ),
    )
    .unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let mut failures = Vec::new();
    for (round, config) in [("generated ids", &empty), ("real ids", &real)] {
        let output = Command::new(&schemathesis)
            // It keeps a cache in the working directory.
            .current_dir(dir.path())
            .arg("--config-file")
            .arg(config)
            .arg("run")
            .arg(&spec)
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "50"])
            .args(["--workers", "2"])
            .args(["--request-timeout", "20"])
            .args(["--suppress-health-check", "all"])
            .args(["--warnings", "off"])
            .arg("--continue-on-failure")
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("run schemathesis");
        println!(
            "==== schemathesis, {round} ====\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            failures.push(round);
        }
    }
    assert!(
        bridge.exited().is_none(),
        "the bridge survived the fuzzing; log:\n{}",
        bridge.log()
    );
    let log = bridge.log();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        failures.is_empty(),
        "schemathesis found failures with {failures:?} (see above); the bridge log's end:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}
