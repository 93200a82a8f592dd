//! The `kafka` sink against a real broker, its output read back with the official Java client
//! (`tests/kafka/broker.sh dump`, not the bridge's librdkafka): every CloudEvent attribute, the
//! key, per-table order, every task id present; after kill -9 and restarts, every duplicate
//! record carries the same `ce_id`. A topic whose `max.message.bytes` no record fits
//! dead-letters its tasks as permanent errors.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use common::*;
use polaris_bridge::log::{TaskLog, TaskState};
use polaris_bridge::metrics as m;
use polaris_bridge_api::codec;
use polaris_bridge_api::event::timestamp::format_rfc3339_millis;
use polaris_bridge_api::samples::sample_events;
use polaris_bridge_api::{PolarisEvent, TaskId};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// One record as the Java client saw it.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    value: Vec<u8>,
}

/// Every record of `topic`, read by tests/kafka/broker.sh dump (Java's KafkaConsumer).
fn dump(topic: &str) -> Vec<Record> {
    let output = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/kafka/broker.sh"
    ))
    .args(["dump", &bootstrap(), topic])
    .output()
    .expect("run broker.sh dump");
    assert!(
        output.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("dump line");
            let mut headers = BTreeMap::new();
            for pair in v["headers"].as_array().unwrap() {
                let name = pair[0].as_str().unwrap().to_string();
                let value = pair[1].as_str().unwrap_or_default().to_string();
                assert!(
                    headers.insert(name.clone(), value).is_none(),
                    "header {name} twice"
                );
            }
            Record {
                partition: v["partition"].as_i64().unwrap() as i32,
                offset: v["offset"].as_i64().unwrap(),
                key: v["key"].as_str().map(str::to_owned),
                headers,
                value: base64_decode(v["value_b64"].as_str().unwrap()),
            }
        })
        .collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).expect("base64") as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

async fn create_topic_with(name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    for r in admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

fn realm(e: &PolarisEvent) -> String {
    e.realm_id.clone().unwrap_or_else(|| "POLARIS".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_in_binary_mode_keyed_ordered_and_stable_across_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let input = unique("ks-in");
    let out_json = unique("ks-json");
    let out_avro = unique("ks-avro");
    let out_small = unique("ks-small");
    create_topic(&input, 1).await;
    create_topic(&out_json, 4).await;
    create_topic(&out_avro, 4).await;
    create_topic_with(&out_small, 1, &[("max.message.bytes", "200")]).await;
    let events = sample_events(1500, 23);
    let (first, rest) = events.split_at(300);
    produce_json(&input, first).await;

    let extra = format!(
        r#"
[connectors.cloudevents]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{out_json}"
concurrency = 8

[connectors.avro-out]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{out_avro}"
format = "avro"
dataschema = "https://polaris-bridge.example/schemas/polaris_event.avsc"

[connectors.too-large]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{out_small}"

[[routes]]
connector = "cloudevents"
[[routes]]
connector = "avro-out"
[[routes]]
connector = "too-large"
event_types = ["AFTER_CREATE_TABLE"]
"#,
        bootstrap = bootstrap()
    );
    let group = unique("g");
    let store = dir.path().join("store");
    let start = |name: &str| {
        let port = free_port();
        let cfg = config(&input, "polaris-json", &group, &store, port, &extra);
        Bridge::start(dir.path(), name, &cfg, port)
    };

    // Round 1: the first 300 events, delivered in full.
    let mut bridge = start("first");
    wait_until("first 300 acknowledged", Duration::from_secs(120), || {
        bridge.metric(
            m::TASKS_FINISHED,
            Some("connector=\"cloudevents\",state=\"succeeded\""),
        ) >= 300.0
    });
    bridge.kill9();

    // Then the rest, with kill -9 while records are being produced.
    produce_json(&input, rest).await;
    for (round, at) in [150.0, 400.0].into_iter().enumerate() {
        let mut bridge = start(&format!("crash{round}"));
        wait_until("some deliveries", Duration::from_secs(120), || {
            bridge.metric(m::DELIVERIES, Some("connector=\"cloudevents\"")) >= at
        });
        bridge.kill9();
    }
    let mut bridge = start("final");
    let expected_json = expected_ids("cloudevents", &events);
    let expected_avro = expected_ids("avro-out", &events);
    wait_until(
        "every message recorded and every task finished",
        Duration::from_secs(240),
        || {
            bridge.metric(m::BACKLOG, None) == 0.0
                && committed_and_end(&group, &input, 1)
                    .iter()
                    .all(|(committed, end)| committed == end)
                && bridge.metric(m::BACKLOG, None) == 0.0
        },
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    let by_id: HashMap<String, (usize, &PolarisEvent)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                TaskId::for_event("cloudevents", &realm(e), e).to_hex(),
                (i, e),
            )
        })
        .collect();

    // JSON records: every attribute, the key, the data.
    let records = dump(&out_json);
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    let mut value_of_id: HashMap<String, Vec<u8>> = HashMap::new();
    let mut ids_of_value: HashMap<Vec<u8>, HashSet<String>> = HashMap::new();
    for r in &records {
        let h = &r.headers;
        let id = h.get("ce_id").expect("ce_id").clone();
        let (_, event) = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("ce_id {id} is no expected task id"));
        let realm = realm(event);
        assert_eq!(h["ce_specversion"], "1.0");
        let source = match &event.catalog_name {
            Some(catalog) => format!("polaris://{realm}/{catalog}"),
            None => format!("polaris://{realm}"),
        };
        assert_eq!(h["ce_source"], source);
        assert_eq!(
            h["ce_type"],
            format!("org.apache.polaris.{}", event.event_type.name())
        );
        let identity = event.resource_identity("POLARIS");
        assert_eq!(h["ce_subject"], identity);
        assert_eq!(
            h["ce_time"],
            format_rfc3339_millis(event.timestamp_ms.unwrap())
        );
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            h.get("ce_traceparent").is_some(),
            event.otel.trace_id.is_some() && event.otel.span_id.is_some()
        );
        assert_eq!(r.key.as_deref(), Some(identity.as_str()), "key = subject");
        let data = codec::decode_polaris_json(None, &r.value).expect("data is polaris JSON");
        assert_eq!(data.event_id, event.event_id);
        assert_eq!(data.event_type, event.event_type);
        assert_eq!(data.timestamp_ms, event.timestamp_ms);
        // One key, one partition.
        let p = *partition_of_key
            .entry(identity.clone())
            .or_insert(r.partition);
        assert_eq!(p, r.partition, "{identity} in two partitions");
        // A duplicate is the same record again: same ce_id, same bytes.
        let v = value_of_id
            .entry(id.clone())
            .or_insert_with(|| r.value.clone());
        assert_eq!(v, &r.value, "ce_id {id} with two different values");
        ids_of_value.entry(r.value.clone()).or_default().insert(id);
    }
    assert!(
        ids_of_value.values().all(|ids| ids.len() == 1),
        "a duplicate record carries another ce_id"
    );
    let seen: HashSet<String> = value_of_id.keys().cloned().collect();
    assert_eq!(seen, expected_json, "every task id present, nothing else");
    let duplicates = records.len() - seen.len();
    println!(
        "kafka sink: {} records for {} tasks, {duplicates} duplicates after 3 kill -9, each with its task's ce_id",
        records.len(),
        seen.len()
    );

    // Per-table order: within each partition, the first record of each task comes in the
    // order of the input topic (which is not the order of `events`: they were produced with
    // many sends in flight).
    let input_offset: HashMap<String, i64> = dump(&input)
        .iter()
        .map(|r| {
            let e =
                codec::decode_polaris_json(r.key.as_deref().map(str::as_bytes), &r.value).unwrap();
            (e.event_id.unwrap(), r.offset)
        })
        .collect();
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut last_offset: HashMap<String, i64> = HashMap::new();
    let mut first_seen = HashSet::new();
    for r in &sorted {
        let id = &r.headers["ce_id"];
        if !first_seen.insert(id.clone()) {
            continue;
        }
        let (_, event) = by_id[id];
        let offset = input_offset[event.event_id.as_deref().unwrap()];
        let key = r.key.clone().unwrap();
        if let Some(previous) = last_offset.insert(key.clone(), offset) {
            assert!(
                previous < offset,
                "{key}: the event at input offset {offset} came out after the one at {previous}"
            );
        }
    }

    // Avro records.
    let avro = dump(&out_avro);
    let mut avro_ids = HashSet::new();
    for r in &avro {
        assert_eq!(r.headers["content-type"], "application/avro");
        assert_eq!(
            r.headers["ce_dataschema"],
            "https://polaris-bridge.example/schemas/polaris_event.avsc"
        );
        let data = codec::avro::decode_avro_raw(None, &r.value).expect("data is Avro");
        let event = events.iter().find(|e| e.event_id == data.event_id).unwrap();
        assert_eq!(
            r.headers["ce_id"],
            TaskId::for_event("avro-out", &realm(event), event).to_hex()
        );
        avro_ids.insert(r.headers["ce_id"].clone());
    }
    assert_eq!(avro_ids, expected_avro);

    // Records the topic can never take: dead-lettered at the first attempt, with the reason.
    assert!(dump(&out_small).is_empty());
    let log = TaskLog::open(&store, 8).unwrap();
    let mut too_large = 0;
    for entry in log.iter() {
        let (_, record) = entry.unwrap();
        if record.connector == "too-large" {
            too_large += 1;
            let TaskState::Dead { reason } = &record.state else {
                panic!("too-large task not dead: {:?}", record.state)
            };
            assert!(
                reason.starts_with("permanent error") && reason.contains("too large"),
                "{reason}"
            );
        }
    }
    let creates = events
        .iter()
        .filter(|e| e.event_type.name() == "AFTER_CREATE_TABLE")
        .count();
    assert_eq!(too_large, creates);
}
