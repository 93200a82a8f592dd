//! The admin API and the `tasks` CLI against a real broker and the real binary: bearer-token
//! auth on every admin route; retry of a dead task and replay of a rejected message deliver
//! them; cancel, pause and resume; the offline CLI on a stopped bridge's store.

mod common;

use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::codec;
use polaris_bridge_api::samples::sample_events;
use serde_json::Value;

const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Every admin route with a method, as the OpenAPI document lists them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/00000000000000000000000000000000"),
    (
        "POST",
        "/api/v1/tasks/00000000000000000000000000000000/retry",
    ),
    (
        "POST",
        "/api/v1/tasks/00000000000000000000000000000000/cancel",
    ),
    ("GET", "/api/v1/rejected"),
    ("GET", "/api/v1/rejected/t/0/0"),
    ("POST", "/api/v1/rejected/t/0/0/replay"),
    ("GET", "/api/v1/connectors"),
    ("GET", "/api/v1/connectors/out"),
    ("POST", "/api/v1/connectors/out/pause"),
    ("POST", "/api/v1/connectors/out/resume"),
    ("GET", "/api/v1/no-such-route"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("auth");
    create_topic(&topic, 1).await;
    let extra = format!(
        "[connectors.out]\ntype = \"file\"\npath = \"{}\"\n[[routes]]\nconnector = \"out\"\n",
        dir.path().join("out.jsonl").display()
    );
    let port = free_port();
    let store = dir.path().join("store");
    let cfg = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start_with_env(
        dir.path(),
        "auth",
        &cfg,
        port,
        &[("POLARIS_BRIDGE_ADMIN_TOKEN", TOKEN)],
    );
    for (method, path) in ROUTES {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let (status, body) = http_request(bridge.http, method, path, token, None);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert!(error["error"].as_str().unwrap().contains("token"), "{body}");
        }
        let (status, body) = http_request(bridge.http, method, path, Some(TOKEN), None);
        assert_ne!(status, 401, "{method} {path} with the token: {body}");
        assert!(status < 500, "{method} {path}: {status} {body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_ok(),
            "{method} {path}: JSON error body: {body}"
        );
    }
    // Health and metrics need no token.
    for path in ["/metrics", "/healthz"] {
        let (status, _) = http_request(bridge.http, "GET", path, None, None);
        assert_eq!(status, 200, "{path}");
    }
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    // Without a configured token the admin API refuses everything, with the reason.
    let port = free_port();
    let cfg = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "no-token", &cfg, port);
    let (status, body) = http_request(bridge.http, "GET", "/api/v1/tasks", Some(TOKEN), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("POLARIS_BRIDGE_ADMIN_TOKEN"), "{body}");
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}

fn cli(args: &[&str]) -> (bool, String, String) {
    run_cli(args, &[("POLARIS_BRIDGE_ADMIN_TOKEN", TOKEN)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_replay_deliver_and_cancel_pause_resume_work() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("ops");
    create_topic(&topic, 1).await;
    let events = sample_events(4, 31);
    // Two good JSON events, two Avro ones that a `polaris-json` topic rejects.
    let producer = producer();
    for event in &events[..2] {
        send(
            &producer,
            &topic,
            codec::record_key(event).as_deref(),
            &codec::encode_polaris_json(event),
        )
        .await;
    }
    for event in &events[2..] {
        send(&producer, &topic, None, &codec::encode_avro_raw(event)).await;
    }

    let out_dir = dir.path().join("appears-later");
    let out = out_dir.join("out.jsonl");
    let extra = format!(
        r#"
[connectors.out]
type = "file"
path = "{}"
retry = {{ max_attempts = 1 }}

[[routes]]
connector = "out"
"#,
        out.display()
    );
    let group = unique("g");
    let store = dir.path().join("store");
    let store_arg = store.display().to_string();
    let port = free_port();
    let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
    let env = [("POLARIS_BRIDGE_ADMIN_TOKEN", TOKEN)];
    let mut bridge = Bridge::start_with_env(dir.path(), "first", &cfg, port, &env);
    let url = format!("http://{}", bridge.http);

    // Both tasks die (their directory is missing, one attempt allowed), both Avro messages
    // are rejected.
    wait_until("two dead tasks", Duration::from_secs(60), || {
        api(bridge.http, "GET", "/api/v1/tasks?state=dead", TOKEN, None)["tasks"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let rejected = api(bridge.http, "GET", "/api/v1/rejected", TOKEN, None);
    assert_eq!(
        rejected["rejected"].as_array().unwrap().len(),
        2,
        "{rejected}"
    );
    let dead = api(
        bridge.http,
        "GET",
        "/api/v1/tasks?state=dead&connector=out",
        TOKEN,
        None,
    );
    let ids: Vec<String> = dead["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect();
    let one = api(
        bridge.http,
        "GET",
        &format!("/api/v1/tasks/{}", ids[0]),
        TOKEN,
        None,
    );
    assert_eq!(one["state"], "dead");
    assert!(
        one["state_detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 1 attempts"),
        "{one}"
    );
    assert_eq!(one["history"].as_array().unwrap().len(), 1);
    assert!(one["event"]["event_type"].is_string(), "{one}");

    // The offline CLI refuses a store a bridge holds, and says what to do.
    let (ok, _, err) = cli(&["tasks", "--store", &store_arg, "list"]);
    assert!(!ok);
    assert!(
        err.contains("held by a running polaris-bridge") && err.contains("--api"),
        "{err}"
    );

    // A retry of a task that is not dead is refused.
    let (status, body) = http_request(
        bridge.http,
        "POST",
        &format!("/api/v1/tasks/{}/cancel", ids[0]),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 409, "cancel a dead task: {body}");

    // The fix: the directory appears. Retry one through the API, one through the CLI.
    std::fs::create_dir(&out_dir).unwrap();
    let retried = api(
        bridge.http,
        "POST",
        &format!("/api/v1/tasks/{}/retry", ids[0]),
        TOKEN,
        None,
    );
    assert_eq!(retried["state"], "pending", "{retried}");
    assert_eq!(retried["attempts"], 0);
    let (ok, stdout, err) = cli(&["tasks", "--api", &url, "retry", &ids[1]]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains(&ids[1]) && stdout.contains("pending"),
        "{stdout}"
    );
    wait_until("retried tasks delivered", Duration::from_secs(30), || {
        count_lines(&out) == 2
    });
    wait_until("retried tasks succeeded", Duration::from_secs(10), || {
        ids.iter().all(|id| {
            api(
                bridge.http,
                "GET",
                &format!("/api/v1/tasks/{id}"),
                TOKEN,
                None,
            )["state"]
                == "succeeded"
        })
    });
    let delivered: Vec<String> = task_ids(&read_lines(&out));
    let mut sorted = ids.clone();
    sorted.sort();
    let mut got = delivered.clone();
    got.sort();
    assert_eq!(
        got, sorted,
        "each retried task delivered once, under its own id"
    );
    let (status, _) = http_request(
        bridge.http,
        "POST",
        &format!("/api/v1/tasks/{}/retry", ids[0]),
        Some(TOKEN),
        None,
    );
    assert_eq!(status, 409, "a succeeded task is not retried");
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    // The configuration fix for the rejected messages: the topic carries Avro too.
    let port = free_port();
    let cfg = config(&topic, "auto", &group, &store, port, &extra);
    let mut bridge = Bridge::start_with_env(dir.path(), "second", &cfg, port, &env);
    bridge.wait_ready();
    let url = format!("http://{}", bridge.http);
    let rejected = api(bridge.http, "GET", "/api/v1/rejected", TOKEN, None);
    let list = rejected["rejected"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|r| r["replayable"] == true && r["replay"].is_null()),
        "{rejected}"
    );
    let first = list[0]["id"].as_str().unwrap().to_string();
    let second = list[1]["id"].as_str().unwrap().to_string();
    let detail = api(
        bridge.http,
        "GET",
        &format!("/api/v1/rejected/{first}"),
        TOKEN,
        None,
    );
    assert!(
        detail["value_hex"].is_string(),
        "Avro is shown as hex: {detail}"
    );
    let replay = api(
        bridge.http,
        "POST",
        &format!("/api/v1/rejected/{first}/replay"),
        TOKEN,
        None,
    );
    assert_eq!(replay["outcome"], "routed", "{replay}");
    assert_eq!(replay["tasks_created"], 1, "{replay}");
    let parts: Vec<&str> = second.rsplitn(3, '/').collect();
    let (ok, stdout, err) = cli(&[
        "tasks", "--api", &url, "replay", parts[2], parts[1], parts[0],
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("routed") && stdout.contains("created"),
        "{stdout}"
    );
    wait_until(
        "replayed messages delivered",
        Duration::from_secs(30),
        || count_lines(&out) == 4,
    );
    let expected = expected_ids("out", &events);
    let delivered: std::collections::HashSet<String> =
        task_ids(&read_lines(&out)).into_iter().collect();
    assert_eq!(delivered, expected, "all four events delivered");
    // A second replay finds the task already there.
    let again = api(
        bridge.http,
        "POST",
        &format!("/api/v1/rejected/{first}/replay"),
        TOKEN,
        None,
    );
    assert_eq!(again["tasks_created"], 0);
    assert_eq!(again["duplicates"], 1);
    let rejected = api(bridge.http, "GET", "/api/v1/rejected", TOKEN, None);
    assert!(
        rejected["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["replay"]["outcome"] == "routed"),
        "marked replayed: {rejected}"
    );

    // Pause the connector; a new event waits; cancel it; resume: it is never delivered.
    let paused = api(
        bridge.http,
        "POST",
        "/api/v1/connectors/out/pause",
        TOKEN,
        Some(r#"{"reason":"maintenance"}"#),
    );
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["enabled"], false);
    assert_eq!(paused["pause_reason"], "maintenance");
    let late = sample_events(1, 77);
    produce_json(&topic, &late).await;
    let late_id = expected_ids("out", &late).into_iter().next().unwrap();
    wait_until("the new task is pending", Duration::from_secs(30), || {
        let (status, body) = http_request(
            bridge.http,
            "GET",
            &format!("/api/v1/tasks/{late_id}"),
            Some(TOKEN),
            None,
        );
        status == 200 && body.contains("\"state\":\"pending\"")
    });
    let connectors = api(bridge.http, "GET", "/api/v1/connectors", TOKEN, None);
    let out_status = &connectors["connectors"][0];
    assert_eq!(out_status["name"], "out");
    assert_eq!(out_status["type"], "file");
    assert_eq!(out_status["backlog"], 1, "{connectors}");
    assert_eq!(out_status["healthy"], true);
    let (ok, stdout, err) = cli(&[
        "tasks",
        "--api",
        &url,
        "cancel",
        &late_id,
        "--reason",
        "not wanted",
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("cancelled"), "{stdout}");
    let (ok, stdout, err) = cli(&["tasks", "--api", &url, "resume", "out"]);
    assert!(ok && stdout.contains("delivering"), "{stdout}{err}");
    wait_until("backlog back to 0", Duration::from_secs(10), || {
        bridge.metric(m::BACKLOG, None) == 0.0
            && api(bridge.http, "GET", "/api/v1/connectors/out", TOKEN, None)["backlog"] == 0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_lines(&out), 4, "the cancelled task was not delivered");
    let cancelled = api(
        bridge.http,
        "GET",
        &format!("/api/v1/tasks/{late_id}"),
        TOKEN,
        None,
    );
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["state_detail"]["reason"], "not wanted");
    let text = bridge.metrics();
    assert!(
        metric(
            &text,
            m::ADMIN_ACTIONS,
            Some("action=\"replay\",result=\"ok\"")
        ) >= 1.0,
        "{text}"
    );
    assert!(metric(&text, m::REJECTED_REPLAYED, Some("outcome=\"routed\"")) >= 2.0);
    assert_eq!(
        metric(
            &text,
            m::TASKS_FINISHED,
            Some("connector=\"out\",state=\"cancelled\"")
        ),
        1.0
    );

    // CLI views through the API.
    let (ok, stdout, err) = cli(&["tasks", "--api", &url, "list", "--state", "succeeded"]);
    assert!(ok, "{err}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" succeeded ")).count(),
        4,
        "{stdout}"
    );
    let (ok, stdout, _) = cli(&["tasks", "--api", &url, "connectors"]);
    assert!(
        ok && stdout.contains("out") && stdout.contains("file"),
        "{stdout}"
    );
    let (ok, _, err) = cli(&[
        "tasks",
        "--api",
        &url,
        "--token",
        "wrong-token-0123456789",
        "list",
    ]);
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, _, err) = cli(&["tasks", "--api", &url, "show", "nope"]);
    assert!(
        !ok && err.contains("400") && err.contains("not a task id"),
        "{err}"
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    // Offline, on the stopped bridge's store.
    let (ok, stdout, err) = cli(&["tasks", "--store", &store_arg, "--json", "list", "--all"]);
    assert!(ok, "{err}");
    let listing: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listing["tasks"].as_array().unwrap().len(), 5);
    let (ok, stdout, _) = cli(&["tasks", "--store", &store_arg, "rejected"]);
    assert!(ok && stdout.contains("routed"), "{stdout}");
    let (ok, stdout, _) = cli(&["tasks", "--store", &store_arg, "show", &ids[0]]);
    assert!(
        ok && stdout.contains("\"retried\""),
        "the history notes the retry: {stdout}"
    );
    let (ok, _, err) = cli(&["tasks", "--store", &store_arg, "replay", "t", "0", "0"]);
    assert!(!ok && err.contains("--api"), "{err}");
    let (ok, stdout, err) = cli(&["store", "check", "--path", &store_arg]);
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("ok: every record decodes"), "{stdout}");
}
