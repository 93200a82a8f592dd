//! Guarantee 7 against a real broker: bad input never stops the pipeline and never vanishes.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use polaris_bridge::log::TaskLog;
use polaris_bridge::metrics as m;
use polaris_bridge_api::codec;
use polaris_bridge_api::samples::sample_events;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_rejected_records_and_good_ones_flow() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("malformed");
    create_topic(&topic, 3).await;
    let producer = producer();
    let events = sample_events(300, 3);
    let truncated = {
        let full = codec::encode_avro_raw(&events[0]);
        full[..full.len() / 2].to_vec()
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", b"\xff\xfe\x00\x17garbage\x01\x02".to_vec()),
        ("json array", b"[1, 2, 3]".to_vec()),
        (
            "json wrong field type",
            br#"{"event_type":"AFTER_CREATE_TABLE","namespace":5}"#.to_vec(),
        ),
        (
            "invalid event type",
            br#"{"event_type":"not a type","event_id":"x"}"#.to_vec(),
        ),
        ("truncated avro", truncated),
        ("empty value", Vec::new()),
    ];
    let unknown_type = br#"{"event_type":"AFTER_SOMETHING_NEWER","event_id":"6b0c1f7e-0000-4000-8000-00000000abcd","realm_id":"POLARIS","catalog_name":"c"}"#;

    let mut bad_positions: HashMap<(i32, i64), &str> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        let key = codec::record_key(event);
        let value = if i % 2 == 0 {
            codec::encode_polaris_json(event)
        } else {
            codec::encode_avro_confluent(event, 7)
        };
        send(&producer, &topic, key.as_deref(), &value).await;
        if i % 50 == 25 {
            for (what, value) in &bad {
                let pos = send(&producer, &topic, Some(what.as_bytes()), value).await;
                bad_positions.insert(pos, what);
            }
        }
        if i == 150 {
            send(&producer, &topic, None, unknown_type).await;
        }
    }
    let total = events.len() + bad_positions.len() + 1;

    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let store = dir.path().join("store");
    let group = unique("g");
    let extra = format!(
        "[connectors.out]\ntype = \"file\"\npath = \"{}\"\n\n[[routes]]\nconnector = \"out\"\n",
        out.display()
    );
    let cfg = config(&topic, "auto", &group, &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "bridge", &cfg, port);
    wait_until(
        "all messages consumed and delivered",
        Duration::from_secs(120),
        || {
            let text = bridge.metrics();
            metric(&text, m::EVENTS_CONSUMED, None) >= total as f64
                && metric(&text, m::BACKLOG, None) == 0.0
        },
    );
    let text = bridge.metrics();
    assert_eq!(
        metric(&text, m::EVENTS_REJECTED, None),
        bad_positions.len() as f64
    );
    assert!(bridge.exited().is_none(), "the pipeline keeps running");

    let lines = read_lines(&out);
    let delivered: HashSet<String> = lines
        .iter()
        .map(|l| {
            l["event"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for event in &events {
        assert!(
            delivered.contains(event.event_id.as_deref().unwrap()),
            "good event delivered"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["event"]["event_type"] == "AFTER_SOMETHING_NEWER"),
        "an unknown but well-formed event type keeps flowing"
    );
    assert_eq!(lines.len(), events.len() + 1);

    assert!(bridge.terminate(Duration::from_secs(30)).success());
    for (partition, (committed, end)) in
        committed_and_end(&group, &topic, 3).into_iter().enumerate()
    {
        assert_eq!(
            committed, end,
            "partition {partition}: offsets advanced past every message"
        );
    }
    let log = TaskLog::open(&store, 8).unwrap();
    let rejected = log.rejected(1000).unwrap();
    assert_eq!(rejected.len(), bad_positions.len());
    for r in &rejected {
        let what = bad_positions
            .get(&(r.partition, r.offset))
            .unwrap_or_else(|| panic!("unexpected rejected record {r:?}"));
        assert_eq!(r.topic, topic);
        assert_eq!(r.key.as_deref(), Some(what.as_bytes()));
        assert!(!r.error.is_empty());
        let expected_kind = match *what {
            "empty value" => "empty",
            "invalid event type" => "invalid_event_type",
            "truncated avro" | "random bytes" => "avro",
            _ => r.kind.as_str(),
        };
        assert_eq!(r.kind, expected_kind, "{what}: {}", r.error);
        assert!(r.value_prefix.len() <= 512);
    }
}
