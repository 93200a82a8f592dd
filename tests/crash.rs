//! Guarantees 1, 2, 3 and 4 against a real broker: kill -9 at several points, restart, and
//! every task is still delivered, and recorded once.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_several_points_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("crash");
    create_topic(&topic, 4).await;
    let events = sample_events(10_000, 11);
    produce_json(&topic, &events).await;

    let out = dir.path().join("out.jsonl");
    let extra = format!(
        r#"
[connectors.out]
type = "file"
path = "{}"
concurrency = 4

[[routes]]
connector = "out"
"#,
        out.display()
    );
    let group = unique("g");
    let store = dir.path().join("store");
    // Kill points: by delivered lines, then one kill right after start (mid-recovery).
    let kill_points = [1_000usize, 4_000, 7_000];
    for (round, at) in kill_points.iter().enumerate() {
        let port = free_port();
        let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
        let mut bridge = Bridge::start(dir.path(), &format!("round{round}"), &cfg, port);
        wait_until(
            &format!("{at} lines delivered"),
            Duration::from_secs(180),
            || count_lines(&out) >= *at,
        );
        bridge.kill9();
    }
    {
        let port = free_port();
        let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
        let mut bridge = Bridge::start(dir.path(), "early-kill", &cfg, port);
        std::thread::sleep(Duration::from_millis(300));
        bridge.kill9();
    }
    let port = free_port();
    let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "final", &cfg, port);
    let expected = expected_ids("out", &events);
    wait_until(
        "every task delivered after the crashes",
        Duration::from_secs(240),
        || {
            let ids: HashSet<String> = task_ids(&read_lines(&out)).into_iter().collect();
            ids.len() >= expected.len() && bridge.metric(m::BACKLOG, None) == 0.0
        },
    );
    let ids = task_ids(&read_lines(&out));
    let unique_ids: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique_ids, expected, "no task missing, no stray task");
    let repeated = ids.len() - unique_ids.len();
    println!(
        "crash test: {} deliveries for {} tasks: {repeated} repeated after 4 kill -9",
        ids.len(),
        unique_ids.len()
    );
    // The offsets were committed past every message once the last run settled.
    let status = bridge.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    for (partition, (committed, end)) in
        committed_and_end(&group, &topic, 4).into_iter().enumerate()
    {
        assert_eq!(committed, end, "partition {partition} fully committed");
    }
    // Each redelivered message found its task's claim (written before the kill, read back
    // from disk after it): one task per id, and the store checks clean.
    let log = polaris_bridge::log::TaskLog::open(&store, 8).unwrap();
    assert_eq!(
        log.len(),
        expected.len(),
        "one task per id after the crashes"
    );
    let report = log.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.tasks, expected.len() as u64);
}
