//! Guarantees 1, 2 and 4 for the webhook connector: kill -9 while deliveries are in flight,
//! restart, and every task reaches the receiver; a task delivered twice carries the same
//! `webhook-id` (and the same CloudEvent) both times.

mod common;
mod webhook_common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;
use webhook_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_deliveries_loses_nothing_and_repeats_carry_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("wh-crash");
    create_topic(&topic, 4).await;
    let events = sample_events(600, 25);
    produce_json(&topic, &events).await;

    // 20 ms per answer, 8 in flight: a kill always interrupts deliveries.
    let receiver = Receiver::start(dir.path(), "crash", &[SECRET_A], &["--delay-all", "0.02"]);
    let secret = secret_file(dir.path(), "a.secret", SECRET_A);
    let extra = format!(
        "\n[connectors.hook]\ntype = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{}\"\nconcurrency = 8\n\n[[routes]]\nconnector = \"hook\"\n",
        receiver.url,
        secret.display()
    );
    let group = unique("g");
    let store = dir.path().join("store");
    for (round, at) in [150usize, 350].into_iter().enumerate() {
        let port = free_port();
        let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
        let mut bridge = Bridge::start(dir.path(), &format!("round{round}"), &cfg, port);
        wait_until(
            &format!("{at} requests received"),
            Duration::from_secs(120),
            || receiver.records().len() >= at,
        );
        bridge.kill9();
    }
    let port = free_port();
    let cfg = config(&topic, "polaris-json", &group, &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "final", &cfg, port);
    let expected = expected_ids("hook", &events);
    wait_until(
        "every task delivered after the crashes",
        Duration::from_secs(180),
        || receiver.delivered_ids() == expected && bridge.metric(m::BACKLOG, None) == 0.0,
    );
    let records = receiver.records();
    let grouped = by_id(&records);
    assert_eq!(
        grouped.keys().cloned().collect::<HashSet<_>>(),
        expected,
        "no task missing, no stray id"
    );
    let mut repeated = 0;
    for (id, deliveries) in &grouped {
        let events: HashSet<String> = deliveries
            .iter()
            .map(|r| {
                assert!(r.verified, "{r:?}");
                let ce = r.json();
                assert_eq!(ce["id"], id.as_str());
                ce["data"].to_string()
            })
            .collect();
        assert_eq!(events.len(), 1, "a repeat carries the same event");
        repeated += deliveries.len() - 1;
    }
    println!(
        "webhook crash test: {} requests for {} tasks: {repeated} repeated after 2 kill -9, each with its task's webhook-id",
        records.len(),
        grouped.len()
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
}
