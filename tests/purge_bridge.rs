//! The purge connector through the whole bridge: Avro AFTER_DROP_TABLE events on a real Kafka
//! broker, the real binary, pyiceberg tables on the local filesystem.
//!
//! - a purge-requested drop (sent twice) purges the table once; a drop without purge does
//!   nothing; the sibling table survives;
//! - a corrupt manifest, a missing manifest list and a metadata file pointing outside the
//!   table: retried, then dead-lettered with the reason, nothing deleted;
//! - kill -9 in the middle of a purge: the restarted bridge resumes from the checkpoint and
//!   finishes without errors for the files already deleted.

mod common;
mod purge_support;

use std::path::Path;
use std::time::Duration;

use common::*;
use polaris_bridge_api::codec::encode_avro_confluent;
use polaris_bridge_api::event::EventType;
use polaris_bridge_api::PolarisEvent;
use purge_support::{list, make_tables, Table};

fn drop_event(table: &Table, purge: bool, id: &str) -> PolarisEvent {
    let mut e = PolarisEvent::new(EventType::from_name("AFTER_DROP_TABLE"));
    e.event_id = Some(id.to_string());
    e.realm_id = Some("POLARIS".into());
    e.catalog_name = Some("prod".into());
    e.namespace = Some(vec!["db".into()]);
    e.table_name = Some(table.name.clone());
    e.table_uuid = Some(table.table_uuid.clone());
    e.table_location = Some(table.location.clone());
    e.metadata_location = Some(table.metadata_location.clone());
    e.purge_requested = Some(purge);
    e.timestamp_ms = Some(1_790_000_000_000);
    e
}

async fn produce_avro(topic: &str, events: &[PolarisEvent]) {
    let producer = producer();
    for e in events {
        send(
            &producer,
            topic,
            e.event_id.as_deref().map(str::as_bytes),
            &encode_avro_confluent(e, 1),
        )
        .await;
    }
}

fn purge_config(topic: &str, store: &Path, http: u16, settings: &str) -> String {
    config(
        topic,
        "avro",
        &unique("purge-group"),
        store,
        http,
        &format!(
            r#"
[connectors.purge]
type = "purge"
concurrency = 2
retry = {{ max_attempts = 3, initial_interval = "100ms", max_interval = "300ms" }}
{settings}

[[routes]]
connector = "purge"
event_types = ["AFTER_DROP_TABLE"]
"#
        ),
    )
}

fn finished(bridge: &Bridge, state: &str) -> f64 {
    bridge.metric(
        "polaris_bridge_tasks_finished_total",
        Some(&format!("connector=\"purge\",state=\"{state}\"")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_events_purge_the_table_once() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let tables = make_tables(&format!("file://{}", wh.display()), "t,t_2", false, &[]);
    let t = tables.iter().find(|t| t.name == "t").unwrap();
    let t2 = tables.iter().find(|t| t.name == "t_2").unwrap();
    let sibling_before = list(&t2.location);
    assert!(!list(&t.location).is_empty());

    let topic = unique("purge-drops");
    create_topic(&topic, 2).await;
    let http = free_port();
    let bridge = Bridge::start(
        dir.path(),
        "bridge",
        &purge_config(&topic, &dir.path().join("store"), http, "batch_size = 5"),
        http,
    );
    bridge.wait_ready();
    // The same drop twice (a duplicate event), and a drop of the sibling without PURGE.
    produce_avro(
        &topic,
        &[
            drop_event(t, true, "00000000-0000-4000-8000-000000000001"),
            drop_event(t, true, "00000000-0000-4000-8000-000000000002"),
            drop_event(t2, false, "00000000-0000-4000-8000-000000000003"),
        ],
    )
    .await;
    wait_until("the purge succeeds", Duration::from_secs(60), || {
        finished(&bridge, "succeeded") >= 1.0
    });
    wait_until(
        "all three events are routed",
        Duration::from_secs(30),
        || {
            bridge.metric(
                "polaris_bridge_tasks_skipped_total",
                Some("connector=\"purge\""),
            ) >= 1.0
                && bridge.metric(
                    "polaris_bridge_tasks_deduplicated_total",
                    Some("connector=\"purge\""),
                ) >= 1.0
        },
    );
    assert!(
        list(&t.location).is_empty(),
        "left: {:?}",
        list(&t.location)
    );
    assert_eq!(
        list(&t2.location),
        sibling_before,
        "the sibling table changed"
    );
    let m = bridge.metrics();
    let get = |name: &str| metric(&m, name, Some("connector=\"purge\""));
    assert_eq!(get("polaris_bridge_tasks_created_total"), 1.0, "{m}");
    assert_eq!(get("polaris_bridge_tasks_deduplicated_total"), 1.0);
    assert!(
        get("polaris_bridge_purge_files_deleted_total") >= 40.0,
        "{m}"
    );
    assert!(get("polaris_bridge_purge_bytes_deleted_total") > 0.0);
    assert!(get("polaris_bridge_purge_requests_total") > 0.0);
    assert_eq!(get("polaris_bridge_purge_failures_total"), 0.0);
    assert_eq!(get("polaris_bridge_purge_in_progress"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_tables_are_retried_then_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let tables = make_tables(
        &format!("file://{}", wh.display()),
        "t,ta,tb,t_2",
        false,
        &[],
    );
    let by = |n: &str| tables.iter().find(|t| t.name == n).unwrap().clone();
    let (t, ta, tb, t2) = (by("t"), by("ta"), by("tb"), by("t_2"));
    let read_meta = |table: &Table| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(table.metadata_location.trim_start_matches("file://"))
                .unwrap(),
        )
        .unwrap()
    };
    // t: a corrupt manifest.
    let manifest = list(&t.location)
        .into_keys()
        .find(|k| k.ends_with("-m0.avro"))
        .unwrap();
    std::fs::write(&manifest, b"Obj\x01 this is not a manifest").unwrap();
    // ta: a missing manifest list.
    let ta_meta = read_meta(&ta);
    let list_path = ta_meta["snapshots"][1]["manifest-list"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(list_path.trim_start_matches("file://")).unwrap();
    // tb: its metadata file points at the sibling's manifest list.
    let mut tb_meta = read_meta(&tb);
    tb_meta["snapshots"][0]["manifest-list"] =
        read_meta(&t2)["snapshots"][0]["manifest-list"].clone();
    std::fs::write(
        tb.metadata_location.trim_start_matches("file://"),
        serde_json::to_vec(&tb_meta).unwrap(),
    )
    .unwrap();
    let before = list(&format!("file://{}", wh.display()));

    let topic = unique("purge-damaged");
    create_topic(&topic, 1).await;
    let http = free_port();
    let bridge = Bridge::start(
        dir.path(),
        "bridge",
        &purge_config(&topic, &dir.path().join("store"), http, ""),
        http,
    );
    bridge.wait_ready();
    // And a drop whose event carries no metadata location.
    let mut unknown = drop_event(&t2, true, "00000000-0000-4000-8000-0000000000d4");
    unknown.metadata_location = None;
    unknown.table_uuid = None;
    produce_avro(
        &topic,
        &[
            drop_event(&t, true, "00000000-0000-4000-8000-0000000000d1"),
            drop_event(&ta, true, "00000000-0000-4000-8000-0000000000d2"),
            drop_event(&tb, true, "00000000-0000-4000-8000-0000000000d3"),
            unknown,
        ],
    )
    .await;
    wait_until("four dead purges", Duration::from_secs(90), || {
        finished(&bridge, "dead") >= 4.0
    });
    let log = bridge.log();
    let dead: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("task dead-lettered"))
        .collect();
    assert_eq!(dead.len(), 4, "{log}");
    let has = |needle: &str| dead.iter().any(|l| l.contains(needle));
    assert!(
        has("gave up after 3 attempts") && has("is corrupt"),
        "{dead:#?}"
    );
    assert!(
        has("manifest list of snapshot") && has("not found"),
        "{dead:#?}"
    );
    assert!(has("refusing") && has("t_2"), "{dead:#?}");
    assert!(has("metadata location unknown"), "{dead:#?}");
    // Three attempts each for the three damaged tables, one for the unknown location.
    assert_eq!(
        bridge.metric(
            "polaris_bridge_deliveries_total",
            Some("connector=\"purge\",outcome=\"transient\"")
        ),
        9.0
    );
    assert_eq!(
        list(&format!("file://{}", wh.display())),
        before,
        "nothing may be deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_purge_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let tables = make_tables(
        &format!("file://{}", wh.display()),
        "",
        false,
        &["--files", "3000", "--snapshots", "3", "--name", "big"],
    );
    let big = &tables[0];
    let total = list(&big.location).len();
    assert!(total > 3000, "{total}");

    let topic = unique("purge-kill");
    create_topic(&topic, 1).await;
    let http = free_port();
    let store = dir.path().join("store");
    // Slow enough to be caught in the middle: 600 files/s in batches of 20.
    let settings = "batch_size = 20\nmax_files_per_second = 600";
    let mut bridge = Bridge::start(
        dir.path(),
        "first",
        &purge_config(&topic, &store, http, settings),
        http,
    );
    bridge.wait_ready();
    produce_avro(
        &topic,
        &[drop_event(
            big,
            true,
            "00000000-0000-4000-8000-00000000000b",
        )],
    )
    .await;
    wait_until(
        "a third of the files deleted",
        Duration::from_secs(60),
        || list(&big.location).len() < total * 2 / 3,
    );
    bridge.kill9();
    let left = list(&big.location).len();
    assert!(left > 500, "killed too late: {left} files left");

    let http2 = free_port();
    let bridge = Bridge::start(
        dir.path(),
        "second",
        &purge_config(&topic, &store, http2, settings),
        http2,
    );
    wait_until(
        "the purge succeeds after the restart",
        Duration::from_secs(60),
        || finished(&bridge, "succeeded") >= 1.0,
    );
    assert!(list(&big.location).is_empty());
    let m = bridge.metrics();
    let get = |name: &str| metric(&m, name, Some("connector=\"purge\""));
    let resumed = get("polaris_bridge_purge_files_deleted_total");
    println!("{total} files; {left} left at kill -9; the second process deleted {resumed}");
    // It continued from the checkpoint: at most a few batches in flight were redone.
    assert!(resumed <= (left + 4 * 20 + 10) as f64, "{resumed} > {left}");
    assert_eq!(get("polaris_bridge_purge_failures_total"), 0.0, "{m}");
    let log = bridge.log();
    assert!(
        !log.contains("purge attempt failed") && !log.contains("delete batch incomplete"),
        "{log}"
    );
}
