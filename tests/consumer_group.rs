//! Scaling out against a real broker: two bridge processes in one consumer group split the
//! partitions; when one stops (cleanly, then by kill -9) the other takes its partitions over
//! and nothing is lost.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;
use polaris_bridge_api::PolarisEvent;

fn extra(out: &Path) -> String {
    format!(
        "[connectors.out]\ntype = \"file\"\npath = \"{}\"\n\n[[routes]]\nconnector = \"out\"\n",
        out.display()
    )
}

/// Starts one instance of the group: its own store (`store-{instance}`), its own file sink
/// `out`, a fresh admin port. `name` names its log file.
fn start_instance(
    dir: &Path,
    name: &str,
    instance: &str,
    topic: &str,
    group: &str,
    out: &Path,
) -> Bridge {
    let port = free_port();
    let cfg = config(
        topic,
        "polaris-json",
        group,
        &dir.join(format!("store-{instance}")),
        port,
        &extra(out),
    );
    Bridge::start(dir, name, &cfg, port)
}

/// Produces `events` on a task of its own, so that the test can act while they flow.
fn produce_in_background(topic: &str, events: &[PolarisEvent]) -> tokio::task::JoinHandle<()> {
    let (topic, events) = (topic.to_string(), events.to_vec());
    tokio::spawn(async move { produce_json(&topic, &events).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_lose_nothing_when_one_stops() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("group");
    create_topic(&topic, 4).await;
    let group = unique("g");
    let out_a = dir.path().join("a.jsonl");
    let out_b = dir.path().join("b.jsonl");

    let mut a = start_instance(dir.path(), "a", "a", &topic, &group, &out_a);
    let mut b = start_instance(dir.path(), "b", "b", &topic, &group, &out_b);
    a.wait_ready();
    b.wait_ready();
    wait_until(
        "the group split the partitions",
        Duration::from_secs(60),
        || {
            let (pa, pb) = (
                a.metric(m::ASSIGNED_PARTITIONS, None),
                b.metric(m::ASSIGNED_PARTITIONS, None),
            );
            pa > 0.0 && pb > 0.0 && pa + pb == 4.0
        },
    );

    let first = sample_events(4_000, 21);
    produce_json(&topic, &first).await;
    wait_until("both instances deliver", Duration::from_secs(120), || {
        count_lines(&out_a) > 0 && count_lines(&out_b) > 0
    });

    // B leaves cleanly while events are still flowing.
    let second = sample_events(4_000, 22);
    let producing = produce_in_background(&topic, &second);
    assert!(
        b.terminate(Duration::from_secs(30)).success(),
        "clean stop exits 0"
    );
    producing.await.unwrap();
    wait_until(
        "A took over every partition",
        Duration::from_secs(60),
        || a.metric(m::ASSIGNED_PARTITIONS, None) == 4.0,
    );

    // B comes back on its own store (its recorded tasks are delivered), then A is killed -9
    // in the middle of a third batch and B takes over.
    let b = start_instance(dir.path(), "b-again", "b", &topic, &group, &out_b);
    b.wait_ready();
    let third = sample_events(4_000, 23);
    let producing = produce_in_background(&topic, &third);
    wait_until(
        "both instances consume the third batch",
        Duration::from_secs(60),
        || b.metric(m::EVENTS_CONSUMED, None) > 0.0,
    );
    a.kill9();
    producing.await.unwrap();
    wait_until(
        "B took over every partition",
        Duration::from_secs(90),
        || b.metric(m::ASSIGNED_PARTITIONS, None) == 4.0,
    );
    // A restarts on its store: the tasks it had recorded but not delivered are delivered now.
    let _a = start_instance(dir.path(), "a-again", "a", &topic, &group, &out_a);

    let mut all = first.clone();
    all.extend(second);
    all.extend(third);
    let expected = expected_ids("out", &all);
    let delivered = || -> HashSet<String> {
        [&out_a, &out_b]
            .iter()
            .flat_map(|p| task_ids(&read_lines(p)))
            .collect()
    };
    wait_until(
        "every event delivered by some instance",
        Duration::from_secs(180),
        || delivered().len() >= expected.len(),
    );
    assert_eq!(delivered(), expected, "nothing lost, nothing invented");
    let total: usize = [&out_a, &out_b].iter().map(|p| count_lines(p)).sum();
    println!(
        "consumer group test: {total} deliveries for {} tasks ({} repeated across instances)",
        expected.len(),
        total - expected.len()
    );
}
