//! Guarantees 2 and 5 against a real broker: transient failures are retried until they
//! succeed, permanent ones dead-letter with the reason, and neither delays another connector.

mod common;

use std::time::Duration;

use common::*;
use polaris_bridge::log::{TaskLog, TaskState};
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_connectors_retry_or_dead_letter_without_delaying_others() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("retry");
    create_topic(&topic, 2).await;
    let events = sample_events(200, 5);
    produce_json(&topic, &events).await;

    let healthy = dir.path().join("healthy.jsonl");
    let flaky_dir = dir.path().join("appears-later");
    let flaky = flaky_dir.join("flaky.jsonl");
    let never = dir.path().join("never-created").join("x.jsonl");
    let a_directory = dir.path().join("is-a-directory");
    std::fs::create_dir(&a_directory).unwrap();
    let extra = format!(
        r#"
[connectors.healthy]
type = "file"
path = "{healthy}"

[connectors.flaky]
type = "file"
path = "{flaky}"
retry = {{ max_attempts = 1000, initial_interval = "100ms", max_interval = "500ms" }}

[connectors.exhausted]
type = "file"
path = "{never}"
retry = {{ max_attempts = 3, initial_interval = "50ms", max_interval = "100ms" }}

[connectors.broken]
type = "file"
path = "{broken}"

[[routes]]
connector = "healthy"
[[routes]]
connector = "flaky"
[[routes]]
connector = "exhausted"
[[routes]]
connector = "broken"
"#,
        healthy = healthy.display(),
        flaky = flaky.display(),
        never = never.display(),
        broken = a_directory.display(),
    );
    let port = free_port();
    let store = dir.path().join("store");
    let cfg = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "bridge", &cfg, port);

    // The healthy connector gets everything while the flaky one cannot deliver anything.
    wait_until(
        "healthy connector has every event",
        Duration::from_secs(60),
        || count_lines(&healthy) >= events.len(),
    );
    assert_eq!(count_lines(&flaky), 0, "flaky target still unavailable");
    wait_until(
        "exhausted and broken tasks dead-lettered",
        Duration::from_secs(60),
        || {
            let text = bridge.metrics();
            metric(
                &text,
                m::TASKS_FINISHED,
                Some("connector=\"exhausted\",state=\"dead\""),
            ) >= 200.0
                && metric(
                    &text,
                    m::TASKS_FINISHED,
                    Some("connector=\"broken\",state=\"dead\""),
                ) >= 200.0
        },
    );
    let retries_before = bridge.metric(
        m::DELIVERIES,
        Some("connector=\"flaky\",outcome=\"transient\""),
    );
    assert!(
        retries_before >= 200.0,
        "flaky tasks were attempted and failed transiently"
    );

    // The flaky target comes back: every task is eventually delivered.
    std::fs::create_dir(&flaky_dir).unwrap();
    wait_until(
        "flaky connector catches up",
        Duration::from_secs(60),
        || count_lines(&flaky) >= events.len(),
    );
    assert_eq!(
        count_lines(&healthy),
        events.len(),
        "healthy connector delivered each task once"
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    let log = TaskLog::open(&store, 8).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut flaky_retried = 0;
    for entry in log.iter() {
        let (_, record) = entry.unwrap();
        *seen.entry(record.connector.clone()).or_default() += 1;
        match record.connector.as_str() {
            "healthy" => assert_eq!(record.attempts, 1),
            "flaky" => {
                assert!(matches!(record.state, TaskState::Succeeded { .. }));
                // Tasks behind a retrying task of the same resource wait their turn (ordered
                // delivery), so only the heads of each resource were retried.
                let transient = record
                    .history
                    .iter()
                    .filter(|a| a.outcome == "transient")
                    .count();
                assert_eq!(
                    record.attempts as usize,
                    transient + 1,
                    "failed attempts then one success"
                );
                if transient > 0 {
                    flaky_retried += 1;
                }
            }
            "exhausted" => {
                assert_eq!(record.attempts, 3, "attempt limit");
                let TaskState::Dead { reason } = &record.state else {
                    panic!("exhausted task not dead: {:?}", record.state)
                };
                assert!(reason.contains("gave up after 3 attempts"), "{reason}");
                assert!(
                    reason.contains("never-created"),
                    "the reason names the cause: {reason}"
                );
            }
            "broken" => {
                assert_eq!(record.attempts, 1, "no retry for a configuration error");
                let TaskState::Dead { reason } = &record.state else {
                    panic!("broken task not dead: {:?}", record.state)
                };
                assert!(reason.contains("misconfigured"), "{reason}");
            }
            other => panic!("unexpected connector {other}"),
        }
    }
    assert!(
        flaky_retried > 0,
        "some flaky tasks were retried until they succeeded"
    );
    for connector in ["healthy", "flaky", "exhausted", "broken"] {
        assert_eq!(seen.get(connector), Some(&events.len()), "{connector}");
    }
}
