//! Guarantee 3 against a real broker: every event produced twice, each task runs once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_produced_twice_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("dedup");
    create_topic(&topic, 4).await;
    let events = sample_events(10_000, 7);
    produce_json(&topic, &events).await;
    produce_json(&topic, &events).await;

    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let extra = format!(
        r#"
[connectors.out]
type = "file"
path = "{}"
concurrency = 16

[[routes]]
connector = "out"
"#,
        out.display()
    );
    let cfg = config(
        &topic,
        "polaris-json",
        &unique("g"),
        &dir.path().join("store"),
        port,
        &extra,
    );
    let bridge = Bridge::start(dir.path(), "bridge", &cfg, port);
    wait_until(
        "20,000 messages consumed and the backlog drained",
        Duration::from_secs(180),
        || {
            let text = bridge.metrics();
            metric(&text, m::EVENTS_CONSUMED, None) >= 20_000.0
                && metric(&text, m::BACKLOG, None) == 0.0
        },
    );

    let text = bridge.metrics();
    assert_eq!(
        metric(&text, m::TASKS_CREATED, Some("connector=\"out\"")),
        10_000.0
    );
    assert_eq!(
        metric(&text, m::TASKS_DEDUPLICATED, Some("connector=\"out\"")),
        10_000.0
    );
    assert_eq!(
        metric(&text, m::TASKS_FINISHED, Some("state=\"succeeded\"")),
        10_000.0,
        "exactly 10,000 tasks succeeded"
    );
    assert_eq!(metric(&text, m::EVENTS_REJECTED, None), 0.0);

    let lines = read_lines(&out);
    let ids = task_ids(&lines);
    let unique_ids: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        10_000,
        "each task delivered once in a run without crashes"
    );
    assert_eq!(
        unique_ids,
        expected_ids("out", &events),
        "the task ids follow the formula"
    );
}
