//! The webhook connector against real HTTP servers on 127.0.0.1 (a Python receiver that
//! verifies Standard Webhooks signatures with its own code) and a real broker.

mod common;
mod webhook_common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use polaris_bridge::log::{TaskLog, TaskState};
use polaris_bridge::metrics as m;
use polaris_bridge_api::event::{Category, Phase};
use polaris_bridge_api::samples::sample_events;
use polaris_bridge_api::PolarisEvent;
use webhook_common::*;

const PAUSED: &str = "polaris_bridge_connector_paused";
const ENABLED: &str = "polaris_bridge_webhook_endpoint_enabled";
const CIRCUIT_OPENED: &str = "polaris_bridge_webhook_circuit_opened_total";
const ATTEMPTS: &str = "polaris_bridge_webhook_attempts_total";
const DEFERRED: &str = "polaris_bridge_webhook_deferred_total";

fn webhook(name: &str, url: &str, secret_files: &[&std::path::Path], extra: &str) -> String {
    let files: Vec<String> = secret_files
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        "\n[connectors.{name}]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret_file = [{}]\n{extra}\n\n[[routes]]\nconnector = \"{name}\"\n",
        files.join(", ")
    )
}

fn label(connector: &str) -> String {
    format!("connector=\"{connector}\"")
}

/// Starts `polaris-bridge run` on `topic` (stock JSON) in consumer group `group`, its store at
/// `store`, with `extra` (connectors and routes) added to the configuration.
fn start_bridge(
    dir: &std::path::Path,
    name: &str,
    topic: &str,
    group: &str,
    store: &std::path::Path,
    extra: &str,
) -> Bridge {
    let port = free_port();
    let cfg = config(topic, "polaris-json", group, store, port, extra);
    Bridge::start(dir, name, &cfg, port)
}

#[test]
fn python_receiver_checks_the_reference_vector() {
    let out = std::process::Command::new("python3")
        .arg(script())
        .arg("--self-test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_and_tampering_or_a_wrong_secret_fails() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-sign");
    create_topic(&topic, 2).await;
    let events = sample_events(30, 21);
    produce_json(&topic, &events).await;

    // Rotation: the bridge signs with the old and the new secret; this receiver knows only
    // the new one. The second receiver expects a secret the bridge does not have.
    let rotating = Receiver::start(dir.path(), "rotating", &[SECRET_B], &[]);
    let stranger = Receiver::start(dir.path(), "stranger", &[SECRET_C], &[]);
    let old = secret_file(dir.path(), "old.secret", SECRET_A);
    let new = secret_file(dir.path(), "new.secret", SECRET_B);
    let extra = webhook("rotating", &rotating.url, &[&old, &new], "ordered = false")
        + &webhook("wrong", &stranger.url, &[&old], "ordered = false");
    let store = dir.path().join("store");
    let mut bridge = start_bridge(dir.path(), "bridge", &topic, &unique("g"), &store, &extra);

    let expected = expected_ids("rotating", &events);
    wait_until("every event delivered", Duration::from_secs(60), || {
        rotating.delivered_ids() == expected
    });
    wait_until(
        "wrong-secret tasks dead-lettered",
        Duration::from_secs(60),
        || {
            bridge.metric(
                m::TASKS_FINISHED,
                Some("connector=\"wrong\",state=\"dead\""),
            ) >= events.len() as f64
        },
    );
    let records = rotating.records();
    assert_eq!(records.len(), events.len(), "one request per task");
    for r in &records {
        assert!(r.verified, "{r:?}");
        let signatures: Vec<&str> = r.headers["webhook-signature"].split(' ').collect();
        assert_eq!(signatures.len(), 2, "signed with both secrets");
        assert!(signatures.iter().all(|s| s.starts_with("v1,")));
        let ce = r.json();
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(
            ce["id"],
            r.id.as_str(),
            "CloudEvent id = webhook-id = task id"
        );
        assert_eq!(
            r.headers["content-type"], "application/cloudevents+json",
            "structured mode"
        );
        let event: PolarisEvent = serde_json::from_value(ce["data"].clone()).unwrap();
        let realm = event.realm_id.clone().unwrap_or_else(|| "POLARIS".into());
        assert_eq!(
            ce["type"],
            format!("org.apache.polaris.{}", event.event_type.name())
        );
        assert_eq!(ce["subject"], event.resource_identity(&realm));
        let source = ce["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("polaris://{realm}")),
            "{source}"
        );
        assert!(ce["time"].as_str().unwrap().ends_with('Z'));
    }
    let wrong = stranger.records();
    assert_eq!(wrong.len(), events.len(), "401 is not retried");
    assert!(wrong
        .iter()
        .all(|r| !r.verified && r.error.as_deref() == Some("no signature matches")));

    // Replays straight to the receiver: the original verifies, a tampered body does not.
    let original = &records[0];
    let headers: Vec<(&str, &str)> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (*h, original.headers[*h].as_str()))
        .collect();
    let path = "/hooks/rotating";
    assert_eq!(
        post(rotating.port, path, &headers, original.body.as_bytes()),
        200
    );
    let tampered = original
        .body
        .replacen("\"specversion\"", "\"specversion\" ", 1);
    assert_ne!(tampered, original.body);
    assert_eq!(
        post(rotating.port, path, &headers, tampered.as_bytes()),
        401
    );
    let last = rotating.records().pop().unwrap();
    assert!(!last.verified && last.body == tampered, "{last:?}");

    assert!(bridge.terminate(Duration::from_secs(30)).success());
    assert!(
        !bridge.log().contains("MfKQ9r8") && !bridge.log().contains("3q2+7w"),
        "no secret in the log"
    );
    let log = TaskLog::open(&store, 8).unwrap();
    for entry in log.iter() {
        let (_, record) = entry.unwrap();
        if record.connector == "wrong" {
            let TaskState::Dead { reason } = &record.state else {
                panic!("{:?}", record.state)
            };
            assert!(
                reason.contains("401") && reason.contains("no signature matches"),
                "{reason}"
            );
            assert_eq!(record.attempts, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_endpoints_get_every_task_with_one_id_and_retries_keep_their_distance() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-flaky");
    create_topic(&topic, 2).await;
    let events = sample_events(20, 22);
    produce_json(&topic, &events).await;

    let flaky = Receiver::start(
        dir.path(),
        "flaky",
        &[SECRET_A],
        &["--mode", "flaky", "--k", "2"],
    );
    let throttle = Receiver::start(
        dir.path(),
        "throttle",
        &[SECRET_A],
        &["--mode", "throttle", "--retry-after", "2"],
    );
    let slow = Receiver::start(
        dir.path(),
        "slow",
        &[SECRET_A],
        &["--mode", "slow", "--delay", "1.5"],
    );
    // Nothing listens on this one until the test has seen its circuit open.
    let refused_port = free_port();
    let refused_url = format!("http://127.0.0.1:{refused_port}/hooks/refused");
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    // initial 300ms, x2, jitter 0.2: retry n waits at least 0.8 * 300ms * 2^(n-1).
    let common = "ordered = false\nconcurrency = 4\nretry = { max_attempts = 50, initial_interval = \"300ms\", max_interval = \"5s\", multiplier = 2.0, jitter = 0.2 }";
    let extra = webhook(
        "flaky",
        &flaky.url,
        &[&secret],
        &format!("{common}\ncircuit_breaker = {{ failures = 0 }}"),
    ) + &webhook(
        "throttle",
        &throttle.url,
        &[&secret],
        &format!("{common}\ncircuit_breaker = {{ failures = 0 }}"),
    ) + &webhook(
        "slow",
        &slow.url,
        &[&secret],
        &format!("{common}\ntimeout = \"500ms\"\ncircuit_breaker = {{ failures = 0 }}"),
    ) + &webhook(
        "refused",
        &refused_url,
        &[&secret],
        &format!("{common}\ncircuit_breaker = {{ failures = 3, cooldown = \"1s\" }}"),
    );
    let store = dir.path().join("store");
    let mut bridge = start_bridge(dir.path(), "bridge", &topic, &unique("g"), &store, &extra);

    // Connection refused for a while: the circuit opens, probes fail, then the receiver
    // starts.
    wait_until(
        "the refused endpoint's circuit opens",
        Duration::from_secs(60),
        || bridge.metric(CIRCUIT_OPENED, Some(&label("refused"))) >= 1.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    let refused = Receiver::start_on(dir.path(), "refused", refused_port, &[SECRET_A], &[]);

    let receivers = [
        ("flaky", &flaky),
        ("throttle", &throttle),
        ("slow", &slow),
        ("refused", &refused),
    ];
    for (name, receiver) in receivers {
        let expected = expected_ids(name, &events);
        wait_until(
            &format!("{name}: every task delivered"),
            Duration::from_secs(90),
            || receiver.delivered_ids() == expected,
        );
    }
    // A retry is scheduled from when the bridge got the answer, which the receiver sent
    // after recording the arrival: gaps are at least the wait, up to clock rounding. The
    // timeout, though, runs from when the bridge sent the request, a little before the
    // receiver records it: the slow endpoint gets more slack.
    let tolerance = 0.02;
    for (name, receiver) in receivers {
        let records = receiver.records();
        let grouped = by_id(&records);
        let mut first_gaps: Vec<f64> = grouped
            .values()
            .filter(|a| a.len() > 1)
            .map(|a| a[1].t - a[0].t)
            .collect();
        first_gaps.sort_by(f64::total_cmp);
        if let (Some(min), Some(max)) = (first_gaps.first(), first_gaps.last()) {
            println!(
                "{name}: {} requests for {} tasks; first retry after {min:.3}s to {max:.3}s",
                records.len(),
                grouped.len()
            );
        }
        assert_eq!(
            grouped.len(),
            events.len(),
            "{name}: one webhook-id per task"
        );
        for (id, attempts) in &grouped {
            for r in attempts {
                assert!(r.verified, "{name}: {r:?}");
                assert_eq!(r.json()["id"], id.as_str(), "{name}: same id in the body");
            }
            let bodies: HashSet<String> = attempts
                .iter()
                .map(|r| r.json()["data"].to_string())
                .collect();
            assert_eq!(bodies.len(), 1, "{name}: the same event on every retry");
            let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1].t - w[0].t).collect();
            match name {
                "flaky" => {
                    assert_eq!(attempts.len(), 3, "{name}: 500, 500, 200");
                    assert!(gaps[0] >= 0.24 - tolerance, "{name}: backoff 1: {gaps:?}");
                    assert!(gaps[1] >= 0.48 - tolerance, "{name}: backoff 2: {gaps:?}");
                }
                "throttle" => {
                    assert_eq!(attempts.len(), 2, "{name}: 429, 200");
                    assert!(gaps[0] >= 2.0 - tolerance, "{name}: Retry-After: {gaps:?}");
                }
                "slow" => {
                    assert_eq!(attempts.len(), 2, "{name}: timeout, 200");
                    assert!(
                        gaps[0] >= 0.5 + 0.24 - 0.1,
                        "{name}: timeout then backoff: {gaps:?}"
                    );
                }
                _ => {}
            }
        }
    }
    // The breaker stopped the bridge from hammering the refusing endpoint: without it, 20
    // tasks retried every 0.3-2.4 s for 3 s would have made some 60 connection attempts.
    let metrics = bridge.metrics();
    let refused_label = label("refused");
    assert!(metric(&metrics, CIRCUIT_OPENED, Some(&refused_label)) >= 1.0);
    assert!(
        metric(
            &metrics,
            DEFERRED,
            Some("connector=\"refused\",reason=\"circuit_open\"")
        ) >= 1.0
    );
    let refused_attempts = metric(
        &metrics,
        ATTEMPTS,
        Some("connector=\"refused\",result=\"connect\""),
    );
    println!("refused endpoint: {refused_attempts} connection attempts while it was down");
    assert!(
        (3.0..=20.0).contains(&refused_attempts),
        "{refused_attempts}"
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_and_bad_request_dead_letters_while_a_healthy_endpoint_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-gone");
    create_topic(&topic, 2).await;
    let events = sample_events(40, 23);
    produce_json(&topic, &events).await;

    let gone_port = free_port();
    let mut gone = Receiver::start_on(
        dir.path(),
        "gone",
        gone_port,
        &[SECRET_A],
        &["--mode", "gone"],
    );
    let bad = Receiver::start(dir.path(), "bad", &[SECRET_A], &["--mode", "bad"]);
    let healthy = Receiver::start(dir.path(), "healthy", &[SECRET_A], &[]);
    // 2 s per answer, one at a time: it would need 80 s for its 40 tasks.
    let slow = Receiver::start(dir.path(), "slow", &[SECRET_A], &["--delay-all", "2"]);
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    let extra = webhook("gone", &gone.url, &[&secret], "concurrency = 4")
        + &webhook("bad", &bad.url, &[&secret], "concurrency = 4")
        + &webhook("healthy", &healthy.url, &[&secret], "concurrency = 4")
        + &webhook(
            "slow",
            &slow.url,
            &[&secret],
            "concurrency = 1\ntimeout = \"10s\"",
        );
    let store = dir.path().join("store");
    let group = unique("g");
    let mut bridge = start_bridge(dir.path(), "bridge", &topic, &group, &store, &extra);

    let expected = expected_ids("healthy", &events);
    let started = std::time::Instant::now();
    wait_until(
        "healthy endpoint has everything",
        Duration::from_secs(60),
        || healthy.delivered_ids() == expected,
    );
    let took = started.elapsed();
    let slow_done = slow.delivered_ids().len();
    println!("healthy endpoint: 40 tasks in {took:?} while the slow one finished {slow_done}");
    assert!(
        slow_done < 20,
        "the slow endpoint is still at it: {slow_done}"
    );
    wait_until(
        "bad requests dead-lettered",
        Duration::from_secs(60),
        || bridge.metric(m::TASKS_FINISHED, Some("connector=\"bad\",state=\"dead\"")) >= 40.0,
    );
    wait_until("gone endpoint disabled", Duration::from_secs(30), || {
        bridge.metric(PAUSED, Some(&label("gone"))) == 1.0
    });
    let metrics = bridge.metrics();
    assert_eq!(metric(&metrics, ENABLED, Some(&label("gone"))), 0.0);
    assert_eq!(metric(&metrics, ENABLED, Some(&label("healthy"))), 1.0);
    assert_eq!(
        metric(&metrics, m::TASKS_FINISHED, Some(&label("gone"))),
        0.0,
        "gone tasks wait, none is dead"
    );
    assert!(bridge.log().contains("410 Gone"), "logged");
    // Only the deliveries already in flight reached the gone endpoint.
    std::thread::sleep(Duration::from_secs(1));
    let gone_requests = gone.records().len();
    assert!((1..=4).contains(&gone_requests), "{gone_requests}");
    assert_eq!(bad.records().len(), 40, "400 is not retried");
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    {
        let log = TaskLog::open(&store, 8).unwrap();
        for entry in log.iter() {
            let (_, record) = entry.unwrap();
            match record.connector.as_str() {
                "bad" => {
                    let TaskState::Dead { reason } = &record.state else {
                        panic!("{:?}", record.state)
                    };
                    assert!(
                        reason.contains("HTTP 400 Bad Request")
                            && reason.contains("schema mismatch: field subject is not accepted"),
                        "status and body in the reason: {reason}"
                    );
                }
                "gone" => assert!(!record.state.is_final(), "{:?}", record.state),
                _ => {}
            }
        }
    }

    // The endpoint comes back; a restart (the 410 state is not persisted) re-enables it and
    // every waiting task is delivered.
    gone.stop();
    let back = Receiver::start_on(dir.path(), "back", gone_port, &[SECRET_A], &[]);
    let mut bridge = start_bridge(dir.path(), "bridge-2", &topic, &group, &store, &extra);
    let expected = expected_ids("gone", &events);
    wait_until("waiting tasks delivered", Duration::from_secs(60), || {
        back.delivered_ids() == expected
    });
    assert_eq!(bridge.metric(ENABLED, Some(&label("gone"))), 1.0);
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_send_only_matching_events_and_the_rate_limit_paces() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-filter");
    create_topic(&topic, 2).await;
    let events = sample_events(200, 24);
    produce_json(&topic, &events).await;

    let tables = Receiver::start(dir.path(), "tables", &[SECRET_A], &[]);
    let sales = Receiver::start(dir.path(), "sales", &[SECRET_A], &[]);
    let drops = Receiver::start(dir.path(), "drops", &[SECRET_A], &[]);
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    let extra = webhook(
        "tables",
        &tables.url,
        &[&secret],
        "filter = { categories = [\"TABLE\"], phase = \"after\" }\nrate_limit = 40.0\nrate_burst = 5",
    ) + &webhook(
        "sales",
        &sales.url,
        &[&secret],
        "filter = { catalog = \"prod\", namespace = \"sales.*\", table = \"o*\" }\nmode = \"binary\"",
    ) + &webhook(
        "drops",
        &drops.url,
        &[&secret],
        "filter = { event_types = [\"AFTER_DROP_*\", \"BEFORE_CREATE_VIEW\"] }",
    );
    let mut bridge = start_bridge(
        dir.path(),
        "bridge",
        &topic,
        &unique("g"),
        &store(&dir),
        &extra,
    );

    let glob =
        |p: &str, v: Option<String>| v.is_some_and(|v| glob::Pattern::new(p).unwrap().matches(&v));
    let select = |name: &str, keep: &dyn Fn(&PolarisEvent) -> bool| {
        let chosen: Vec<PolarisEvent> = events.iter().filter(|e| keep(e)).cloned().collect();
        assert!(
            !chosen.is_empty(),
            "{name}: the samples have matching events"
        );
        assert!(chosen.len() < events.len(), "{name}: and others");
        expected_ids(name, &chosen)
    };
    let expected_tables = select("tables", &|e| {
        e.category() == Some(Category::Table) && e.phase() == Some(Phase::After)
    });
    let expected_sales = select("sales", &|e| {
        e.catalog_name.as_deref() == Some("prod")
            && glob("sales.*", e.namespace_path())
            && glob("o*", e.object_name().map(str::to_string))
    });
    let expected_drops = select("drops", &|e| {
        e.event_type.name().starts_with("AFTER_DROP_")
            || e.event_type.name() == "BEFORE_CREATE_VIEW"
    });
    for (name, receiver, expected) in [
        ("tables", &tables, &expected_tables),
        ("sales", &sales, &expected_sales),
        ("drops", &drops, &expected_drops),
    ] {
        wait_until(
            &format!("{name} delivered"),
            Duration::from_secs(60),
            || receiver.delivered_ids().len() >= expected.len(),
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            &receiver.delivered_ids(),
            expected,
            "{name}: exactly the matching events"
        );
        assert_eq!(
            bridge.metric(m::TASKS_SKIPPED, Some(&label(name))),
            (events.len() - expected.len()) as f64,
            "{name}: the others are counted as skipped"
        );
    }
    // Binary mode: attributes in ce- headers, the event as the body.
    for r in sales.records() {
        assert!(r.verified);
        assert_eq!(r.headers["ce-id"], r.id);
        assert_eq!(r.headers["ce-specversion"], "1.0");
        assert!(r.headers["ce-type"].starts_with("org.apache.polaris."));
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.json()["event_type"].is_string(), "the body is the event");
    }
    // Rate limit: 40/s after a burst of 5.
    let mut times: Vec<f64> = tables.records().iter().map(|r| r.t).collect();
    times.sort_by(f64::total_cmp);
    let span = times.last().unwrap() - times.first().unwrap();
    let floor = (times.len() as f64 - 5.0) / 40.0;
    println!(
        "rate limit: {} requests in {span:.2}s (floor {floor:.2}s)",
        times.len()
    );
    // Arrival times are taken by the receiver, after connection set-up: allow 10%. Without
    // the limit the whole lot arrives in a fraction of the floor.
    assert!(span >= floor * 0.9, "{span} < {floor}");
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}

fn store(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_custom_ca_and_an_untrusted_certificate_is_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-tls");
    create_topic(&topic, 1).await;
    let events = sample_events(10, 26);
    produce_json(&topic, &events).await;

    let (ca, cert, key) = make_certificates(dir.path());
    let tls = Receiver::start(
        dir.path(),
        "tls",
        &[SECRET_A],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = tls.url.replace("http://", "https://");
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    let extra = webhook(
        "trusting",
        &url,
        &[&secret],
        &format!("ca_file = \"{}\"", ca.display()),
    ) + &webhook(
        "untrusting",
        &url,
        &[&secret],
        "retry = { max_attempts = 3, initial_interval = \"100ms\", max_interval = \"200ms\" }\ncircuit_breaker = { failures = 0 }",
    );
    let mut bridge = start_bridge(
        dir.path(),
        "bridge",
        &topic,
        &unique("g"),
        &store(&dir),
        &extra,
    );
    let expected = expected_ids("trusting", &events);
    wait_until("delivered over https", Duration::from_secs(60), || {
        tls.delivered_ids() == expected
    });
    wait_until(
        "untrusted certificate: dead after 3 attempts",
        Duration::from_secs(60),
        || {
            bridge.metric(
                m::TASKS_FINISHED,
                Some("connector=\"untrusting\",state=\"dead\""),
            ) >= 10.0
        },
    );
    assert!(tls.records().iter().all(|r| r.verified));
    assert_eq!(
        tls.records().len(),
        events.len(),
        "nothing from the endpoint that does not trust the certificate"
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
    let log = TaskLog::open(&store(&dir), 8).unwrap();
    for entry in log.iter() {
        let (_, record) = entry.unwrap();
        if record.connector == "untrusting" {
            let TaskState::Dead { reason } = &record.state else {
                panic!("{:?}", record.state)
            };
            assert!(reason.contains("certificate"), "{reason}");
        }
    }
}

/// Polls `check` every 100 ms without blocking the runtime.
async fn poll_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// In process, so the test can act as the operator (the admin API calls the same
/// `ConnectorControl::resume`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resume_re_enables_a_gone_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-resume");
    create_topic(&topic, 1).await;
    let events = sample_events(10, 27);
    produce_json(&topic, &events).await;

    let receiver_port = free_port();
    let mut gone = Receiver::start_on(
        dir.path(),
        "gone",
        receiver_port,
        &[SECRET_A],
        &["--mode", "gone"],
    );
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    let extra = webhook("hook", &gone.url, &[&secret], "");
    let cfg = config(
        &topic,
        "polaris-json",
        &unique("g"),
        &store(&dir),
        free_port(),
        &extra,
    );
    let config =
        polaris_bridge::config::Config::from_toml(&cfg, "test", Vec::<(String, String)>::new())
            .unwrap();
    // The only test of this binary that installs the recorder in its own process.
    let metrics = polaris_bridge::metrics::install().unwrap();
    let bridge = polaris_bridge::app::start(&config, metrics.clone())
        .await
        .unwrap();
    let control = bridge
        .controls
        .iter()
        .find(|(name, _)| name == "hook")
        .unwrap()
        .1
        .clone();
    poll_until("410 disables the endpoint", Duration::from_secs(60), || {
        control.is_paused()
    })
    .await;
    let reason = control.pause_reason().unwrap();
    assert!(reason.contains("410 Gone"), "{reason}");
    assert_eq!(
        metric(&metrics.render(), ENABLED, Some(&label("hook"))),
        0.0
    );

    // The endpoint is back, but nothing is sent until the operator resumes.
    gone.stop();
    let back = Receiver::start_on(dir.path(), "back", receiver_port, &[SECRET_A], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(back.records().is_empty(), "paused: tasks wait");
    control.resume();
    let expected = expected_ids("hook", &events);
    poll_until("delivered after resume", Duration::from_secs(60), || {
        back.delivered_ids() == expected
    })
    .await;
    assert_eq!(
        metric(&metrics.render(), ENABLED, Some(&label("hook"))),
        1.0
    );
    assert_eq!(
        metric(
            &metrics.render(),
            m::TASKS_FINISHED,
            Some("connector=\"hook\",state=\"dead\"")
        ),
        0.0
    );
    bridge.stop().await.unwrap();
}
