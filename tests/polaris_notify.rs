//! The `polaris-notify` sink against a real broker and a real HTTP server that behaves as
//! Polaris's Notification API (tests/receivers/polaris_notification_server.py): strictly newer
//! timestamps or 409, DROP without a timestamp check, VALIDATE as a dry run, 400 for a
//! non-EXTERNAL catalog, 401 for an expired token.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use polaris_bridge::log::{TaskLog, TaskState};
use polaris_bridge::metrics as m;
use polaris_bridge_api::codec;
use polaris_bridge_api::event::{stored, EventType};
use polaris_bridge_api::PolarisEvent;
use serde_json::Value;

const T0: i64 = 1_777_629_600_000;

/// The Notification API stand-in, as a child process.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    state: PathBuf,
    args: Vec<String>,
}

impl Server {
    fn start(dir: &Path, args: &[&str]) -> Server {
        let mut server = Server {
            child: None,
            port: 0,
            log: dir.join("requests.jsonl"),
            state: dir.join("server-state.json"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/receivers/polaris_notification_server.py"
            ))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--log")
            .arg(&self.log)
            .arg("--state")
            .arg(&self.state)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the notification server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .parse()
            .unwrap();
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/api/catalog", self.port)
    }

    /// Every request so far.
    fn requests(&self) -> Vec<Value> {
        read_lines(&self.log)
    }

    /// Notification requests to catalog `mirror` (not token requests, not VALIDATE) as
    /// (type, table, timestamp, status), table as `ns.table`.
    fn notifications(&self) -> Vec<(String, String, i64, u16)> {
        self.requests()
            .iter()
            .filter(|r| {
                r.get("type").is_some() && r["type"] != "VALIDATE" && r["catalog"] == "mirror"
            })
            .map(|r| {
                let mut table: Vec<String> = r["namespace"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap().to_string())
                    .collect();
                table.push(r["table"].as_str().unwrap().to_string());
                (
                    r["type"].as_str().unwrap().to_string(),
                    table.join("."),
                    r["timestamp"].as_i64().unwrap(),
                    r["status"].as_u64().unwrap() as u16,
                )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A table event as the Avro format carries it (uuid and metadata location included).
fn table_event(kind: EventType, table: &str, at: i64, version: u32) -> PolarisEvent {
    let (namespace, name) = table.rsplit_once('.').unwrap();
    let mut e = PolarisEvent::new(kind);
    e.event_id = Some(unique("evt"));
    e.timestamp_ms = Some(T0 + at * 1000);
    e.realm_id = Some("POLARIS".into());
    e.catalog_name = Some("prod".into());
    e.namespace = Some(namespace.split('.').map(str::to_owned).collect());
    e.table_name = Some(name.into());
    e.table_uuid = Some(format!("uuid-of-{table}"));
    e.metadata_location = Some(format!(
        "s3://warehouse/{}/{name}/metadata/{version:05}.metadata.json",
        namespace.replace('.', "/")
    ));
    e
}

fn rename_event(from: &str, to: &str, at: i64) -> PolarisEvent {
    let mut e = table_event(EventType::AfterRenameTable, from, at, 9);
    e.namespace = None;
    e.table_name = None;
    e.rename_source = Some(from.split('.').map(str::to_owned).collect());
    e.rename_destination = Some(to.split('.').map(str::to_owned).collect());
    e
}

/// Produces the events one at a time, so the topic holds them in this order: as Avro, except
/// events without a table uuid, which go as Polaris's stock JSON.
async fn produce_avro(topic: &str, events: &[PolarisEvent]) {
    let producer = producer();
    for e in events {
        let value = if e.table_uuid.is_some() {
            codec::encode_avro_raw(e)
        } else {
            codec::encode_polaris_json(e)
        };
        send(
            &producer,
            topic,
            e.event_id.as_deref().map(str::as_bytes),
            &value,
        )
        .await;
    }
}

/// The same event as Polaris's stock JSON listener sends it: no uuid, no metadata location.
fn stock(mut e: PolarisEvent) -> PolarisEvent {
    e.table_uuid = None;
    e.metadata_location = None;
    e
}

fn notify_connector(name: &str, server: &Server, catalog: &str, state_dir: &Path) -> String {
    format!(
        r#"
[connectors.{name}]
type = "polaris-notify"
uri = "{uri}"
catalog = "{catalog}"
client_id = "bridge"
client_secret_env = "NOTIFY_TEST_SECRET"
state_dir = "{state}"
request_timeout = "2s"
retry = {{ max_attempts = 1000, initial_interval = "200ms", max_interval = "1s" }}
[connectors.{name}.validate]
namespace = ["ns1"]
location = "s3://warehouse/ns1/"
"#,
        uri = server.uri(),
        state = state_dir.display()
    )
}

fn finished(bridge: &Bridge, connector: &str) -> f64 {
    bridge.metric(
        m::TASKS_FINISHED,
        Some(&format!("connector=\"{connector}\"")),
    )
}

fn tasks(store: &Path, connector: &str) -> Vec<(PolarisEvent, TaskState)> {
    let log = TaskLog::open(store, 8).unwrap();
    log.iter()
        .map(|r| r.unwrap().1)
        .filter(|r| r.connector == connector)
        .map(|r| (stored::decode(&r.event_bytes).unwrap(), r.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_in_order_replays_as_409_never_resurrects_and_validates() {
    std::env::set_var("NOTIFY_TEST_SECRET", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--catalog",
            "mirror:EXTERNAL:s3://warehouse/",
            "--catalog",
            "internal:INTERNAL",
        ],
    );
    let topic = unique("notify");
    create_topic(&topic, 1).await;
    use EventType::*;
    let events = vec![
        table_event(AfterCreateTable, "ns1.mixed", 1, 0),
        table_event(AfterCreateTable, "ns1.orders", 1, 0),
        table_event(AfterCreateTable, "ns1.customers", 1, 0),
        table_event(AfterCreateTable, "ns1.clicks", 1, 0),
        table_event(AfterRegisterTable, "ns1.events", 1, 0),
        table_event(BeforeUpdateTable, "ns1.orders", 2, 0),
        table_event(AfterUpdateTable, "ns1.orders", 2, 1),
        table_event(AfterUpdateTable, "ns1.customers", 2, 1),
        table_event(AfterUpdateTable, "ns1.orders", 3, 2),
        // Stock JSON without uuid and metadata location: a table the index never saw
        // dead-letters; one it learned from an Avro event is completed from the index.
        stock(table_event(AfterUpdateTable, "ns1.unknown", 2, 1)),
        stock(table_event(AfterDropTable, "ns1.mixed", 7, 0)),
        table_event(AfterDropTable, "ns1.orders", 4, 2),
        table_event(AfterDropTable, "ns1.clicks", 5, 0),
        // Older than the drop, but later in the topic (another producer, another partition
        // upstream): must not bring the table back.
        table_event(AfterUpdateTable, "ns1.clicks", 3, 1),
        rename_event("ns1.events", "ns2.events_2026", 6),
    ];
    produce_avro(&topic, &events).await;

    let state_dir = dir.path().join("notify-state");
    std::fs::create_dir(&state_dir).unwrap();
    let extra = format!(
        "{}{}\n[[routes]]\nconnector = \"mirror\"\n[[routes]]\nconnector = \"internal\"\nevent_types = [\"AFTER_CREATE_TABLE\"]\ntable = \"orders\"\n",
        notify_connector("mirror", &server, "mirror", &state_dir),
        notify_connector("internal", &server, "internal", &state_dir),
    );
    let store = dir.path().join("store");
    let port = free_port();
    let cfg = config(&topic, "auto", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "bridge", &cfg, port);
    // 14 AFTER events for mirror (the BEFORE one is skipped by the connector), 1 for internal.
    wait_until("every task final", Duration::from_secs(60), || {
        finished(&bridge, "mirror") >= 14.0 && finished(&bridge, "internal") >= 1.0
    });
    assert_eq!(bridge.metric(m::EVENTS_ENRICHED, None), 1.0);
    assert_eq!(
        bridge.metric(m::TASKS_SKIPPED, Some("connector=\"mirror\"")),
        1.0,
        "the BEFORE event is not for polaris-notify"
    );
    assert!(bridge.log().contains("healthcheck ok"), "{}", bridge.log());
    assert!(bridge.terminate(Duration::from_secs(30)).success());

    // The startup healthcheck sent VALIDATE; the internal catalog refused it.
    let validates: Vec<(String, u64)> = server
        .requests()
        .iter()
        .filter(|r| r["type"] == "VALIDATE")
        .map(|r| {
            (
                r["catalog"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(validates.contains(&("mirror".into(), 204)), "{validates:?}");
    assert!(
        validates.contains(&("internal".into(), 400)),
        "{validates:?}"
    );

    let sent = server.notifications();
    let of = |table: &str| -> Vec<(String, i64, u16)> {
        sent.iter()
            .filter(|(_, t, _, _)| t == table)
            .map(|(k, _, ts, status)| (k.clone(), (ts - T0) / 1000, *status))
            .collect()
    };
    let s = |k: &str, at: i64, status: u16| (k.to_string(), at, status);
    assert_eq!(
        of("ns1.orders"),
        vec![
            s("CREATE", 1, 204),
            s("UPDATE", 2, 204),
            s("UPDATE", 3, 204),
            s("DROP", 4, 204)
        ],
        "create/update/drop mirrored in order"
    );
    assert_eq!(
        of("ns1.customers"),
        vec![s("CREATE", 1, 204), s("UPDATE", 2, 204)]
    );
    assert_eq!(
        of("ns1.clicks"),
        vec![s("CREATE", 1, 204), s("DROP", 5, 204)],
        "the stale update after the drop was never sent"
    );
    assert_eq!(
        of("ns1.events"),
        vec![s("CREATE", 1, 204), s("DROP", 6, 204)]
    );
    assert_eq!(of("ns2.events_2026"), vec![s("CREATE", 6, 204)]);
    assert!(of("ns1.unknown").is_empty());
    assert_eq!(
        of("ns1.mixed"),
        vec![s("CREATE", 1, 204), s("DROP", 7, 204)]
    );
    let mixed_drop = server
        .requests()
        .into_iter()
        .find(|r| r["table"] == "mixed" && r["type"] == "DROP")
        .unwrap();
    assert_eq!(
        mixed_drop["table_uuid"], "uuid-of-ns1.mixed",
        "from the table index"
    );
    let internal_creates = server
        .requests()
        .iter()
        .filter(|r| r["catalog"] == "internal" && r["type"] == "CREATE" && r["status"] == 400)
        .count();
    assert_eq!(
        internal_creates, 1,
        "one CREATE refused by the internal catalog"
    );

    for (event, state) in tasks(&store, "mirror") {
        let table = format!(
            "{}.{}",
            event.namespace_path().unwrap_or_default(),
            event.object_name().unwrap_or_default()
        );
        match (table.as_str(), event.event_type.name(), &state) {
            ("ns1.clicks", "AFTER_UPDATE_TABLE", TaskState::Succeeded { note }) => {
                let note = note.as_deref().unwrap_or_default();
                assert!(note.contains("resurrect"), "{note}");
            }
            ("ns1.mixed", "AFTER_DROP_TABLE", TaskState::Succeeded { note: None }) => {
                assert_eq!(
                    event
                        .attributes
                        .get("bridge.enriched_from")
                        .map(String::as_str),
                    Some("table-index")
                );
            }
            ("ns1.unknown", _, TaskState::Dead { reason }) => {
                assert!(
                    reason.contains("table-uuid, metadata-location") && reason.contains("avro"),
                    "{reason}"
                );
            }
            (_, _, TaskState::Succeeded { note: None }) => {}
            other => panic!("unexpected task outcome {other:?}"),
        }
    }
    let internal = tasks(&store, "internal");
    assert_eq!(internal.len(), 1);
    let TaskState::Dead { reason } = &internal[0].1 else {
        panic!("{:?}", internal[0].1)
    };
    assert!(
        reason.contains("Cannot update internal catalog via notifications"),
        "{reason}"
    );

    // On demand: `polaris-bridge healthcheck` sends VALIDATE again.
    let cfg_path = dir.path().join("bridge.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
        .args(["healthcheck", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        !run.status.success(),
        "the internal catalog fails: {stdout}"
    );
    assert!(stdout.contains("mirror (polaris-notify): ok"), "{stdout}");
    assert!(
        stdout.contains("internal (polaris-notify): misconfigured")
            && stdout.contains("Cannot update internal catalog"),
        "{stdout}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
        .args(["healthcheck", "--connector", "mirror", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(run.status.success());
    let validate_count = server
        .requests()
        .iter()
        .filter(|r| r["type"] == "VALIDATE" && r["catalog"] == "mirror")
        .count();
    assert_eq!(validate_count, 3, "startup + two on demand");

    // Replay everything (a fresh store and consumer group, the same drop ledger): CREATE and
    // UPDATE that the target already admitted answer 409 and count as done; DROPs of tables
    // already gone answer 404 and count as done; nothing changes on the target.
    let before = std::fs::read_to_string(&server.state).unwrap();
    let sent_before = sent.len();
    let store2 = dir.path().join("store2");
    let port = free_port();
    let replay_extra = format!(
        "{}\n[[routes]]\nconnector = \"mirror\"\n",
        notify_connector("mirror", &server, "mirror", &state_dir)
    );
    let cfg = config(&topic, "auto", &unique("g"), &store2, port, &replay_extra);
    let mut bridge = Bridge::start(dir.path(), "replay", &cfg, port);
    wait_until("replay final", Duration::from_secs(60), || {
        finished(&bridge, "mirror") >= 14.0
    });
    let already = bridge.metric(
        m::DELIVERIES,
        Some("connector=\"mirror\",outcome=\"already_done\""),
    );
    let success = bridge.metric(
        m::DELIVERIES,
        Some("connector=\"mirror\",outcome=\"success\""),
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
    assert_eq!(success, 0.0, "nothing new was delivered");
    assert_eq!(
        already, 13.0,
        "every mirrored event counted as already done"
    );
    assert_eq!(std::fs::read_to_string(&server.state).unwrap(), before);
    let replayed: Vec<(String, String, i64, u16)> = server.notifications()[sent_before..].to_vec();
    assert!(
        replayed
            .iter()
            .all(|(kind, _, _, status)| (kind == "DROP" && *status == 404)
                || (kind != "DROP" && *status == 409)),
        "{replayed:?}"
    );
    let notes: Vec<String> = tasks(&store2, "mirror")
        .into_iter()
        .filter_map(|(_, s)| match s {
            TaskState::Succeeded { note } => note,
            _ => None,
        })
        .collect();
    assert!(
        notes.iter().any(|n| n == "409: newer state admitted"),
        "{notes:?}"
    );
    assert!(
        notes.iter().filter(|n| n.contains("resurrect")).count() >= 3,
        "orders' create and updates and clicks' stale update skipped: {notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_expired_tokens_and_delivers_after_an_outage() {
    std::env::set_var("NOTIFY_TEST_SECRET", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    // Tokens die after 2 s while the server advertises an hour: the bridge only learns from
    // the 401.
    let mut server = Server::start(
        dir.path(),
        &[
            "--catalog",
            "mirror:EXTERNAL:s3://warehouse/",
            "--token-ttl",
            "2",
            "--advertised-ttl",
            "3600",
        ],
    );
    let topic = unique("notify-outage");
    create_topic(&topic, 1).await;
    let tables: Vec<String> = (0..5).map(|i| format!("ns.t{i}")).collect();
    let creates: Vec<PolarisEvent> = tables
        .iter()
        .map(|t| table_event(EventType::AfterCreateTable, t, 1, 0))
        .collect();
    produce_avro(&topic, &creates).await;

    let state_dir = dir.path().join("notify-state");
    std::fs::create_dir(&state_dir).unwrap();
    let extra = format!(
        "{}\n[[routes]]\nconnector = \"mirror\"\n",
        notify_connector("mirror", &server, "mirror", &state_dir)
    );
    let store = dir.path().join("store");
    let port = free_port();
    let cfg = config(&topic, "avro", &unique("g"), &store, port, &extra);
    let mut bridge = Bridge::start(dir.path(), "bridge", &cfg, port);
    wait_until("creates delivered", Duration::from_secs(60), || {
        finished(&bridge, "mirror") >= 5.0
    });

    // The token expires; the next request gets a 401, the bridge fetches a new token and
    // repeats the request within the same attempt.
    std::thread::sleep(Duration::from_millis(2500));
    let updates: Vec<PolarisEvent> = tables
        .iter()
        .map(|t| table_event(EventType::AfterUpdateTable, t, 2, 1))
        .collect();
    produce_avro(&topic, &updates).await;
    wait_until("updates delivered", Duration::from_secs(60), || {
        finished(&bridge, "mirror") >= 10.0
    });
    assert_eq!(
        bridge.metric(
            m::DELIVERIES,
            Some("connector=\"mirror\",outcome=\"transient\"")
        ),
        0.0,
        "a 401 is refreshed within the attempt"
    );
    let requests = server.requests();
    let first_401 = requests
        .iter()
        .position(|r| r["status"] == 401)
        .expect("the expired token got a 401");
    let token_after = requests[first_401..]
        .iter()
        .position(|r| r["kind"] == "token" && r["status"] == 200)
        .expect("a new token was fetched after the 401");
    assert!(requests[first_401 + token_after..]
        .iter()
        .any(|r| r["type"] == "UPDATE" && r["status"] == 204));
    let token_requests = requests.iter().filter(|r| r["kind"] == "token").count();
    assert!(
        token_requests <= 3,
        "the token is cached: {token_requests} token requests"
    );

    // The target goes down; events keep coming; deliveries fail transiently.
    server.stop();
    let later: Vec<PolarisEvent> = tables
        .iter()
        .map(|t| table_event(EventType::AfterUpdateTable, t, 3, 2))
        .collect();
    produce_avro(&topic, &later).await;
    wait_until(
        "transient failures while down",
        Duration::from_secs(60),
        || {
            bridge.metric(
                m::DELIVERIES,
                Some("connector=\"mirror\",outcome=\"transient\""),
            ) >= 5.0
        },
    );
    // Back (same port, same tables; old tokens unknown to the restarted server).
    server.spawn();
    wait_until(
        "everything delivered after the outage",
        Duration::from_secs(60),
        || finished(&bridge, "mirror") >= 15.0,
    );
    assert_eq!(
        bridge.metric(m::TASKS_FINISHED, Some("state=\"dead\"")),
        0.0
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&server.state).unwrap()).unwrap();
    for t in &tables {
        let (ns, name) = t.split_once('.').unwrap();
        let entry = &state[format!("mirror/{ns}/{name}")];
        assert_eq!(entry["last_timestamp"], T0 + 3000, "{t}: {state}");
        assert!(entry["metadata_location"]
            .as_str()
            .unwrap()
            .ends_with("00002.metadata.json"));
    }
}

/// `[table_lookup]`: stock JSON table events (no metadata location) make the bridge ask
/// Polaris's loadTable (the same spec-following server, with its OAuth2 token endpoint); the
/// answer lands in the table index, so the later drop is enriched with the table's uuid and
/// metadata location, what a purge needs. A table Polaris does not have is counted as
/// not found and its drop stays unenriched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_fill_the_table_index_for_stock_json_drops() {
    let dir = tempfile::tempdir().unwrap();
    let orders_metadata = "s3://warehouse/sales/orders/metadata/00003-abc.metadata.json";
    std::fs::write(
        dir.path().join("server-state.json"),
        serde_json::json!({
            "prod/sales/orders": {
                "last_timestamp": T0,
                "table_uuid": "uuid-orders",
                "metadata_location": orders_metadata,
            }
        })
        .to_string(),
    )
    .unwrap();
    let server = Server::start(dir.path(), &["--catalog", "prod:INTERNAL"]);
    let topic = unique("lookup");
    create_topic(&topic, 1).await;
    let store = dir.path().join("store");
    let out = dir.path().join("drops.jsonl");
    let port = free_port();
    let extra = format!(
        r#"
[table_lookup]
uri = "{uri}"
client_id = "bridge"
client_secret_env = "LOOKUP_TEST_SECRET"
request_timeout = "2s"

[connectors.drops]
type = "file"
path = "{out}"

[[routes]]
connector = "drops"
event_types = ["AFTER_DROP_TABLE"]
"#,
        uri = server.uri(),
        out = out.display()
    );
    let config = config(&topic, "polaris-json", &unique("g"), &store, port, &extra);
    let bridge = Bridge::start_with_env(
        dir.path(),
        "bridge",
        &config,
        port,
        &[("LOOKUP_TEST_SECRET", "s3cret")],
    );
    bridge.wait_ready();

    let update = stock(table_event(
        EventType::AfterUpdateTable,
        "sales.orders",
        1,
        3,
    ));
    let ghost_update = stock(table_event(
        EventType::AfterUpdateTable,
        "sales.ghost",
        1,
        1,
    ));
    produce_json(&topic, &[update, ghost_update]).await;
    let lookups =
        |result: &str| bridge.metric(m::TABLE_LOOKUPS, Some(&format!("result=\"{result}\"")));
    wait_until("both lookups answered", Duration::from_secs(30), || {
        lookups("recorded") == 1.0 && lookups("not_found") == 1.0
    });

    let mut drop = stock(table_event(EventType::AfterDropTable, "sales.orders", 2, 3));
    drop.purge_requested = Some(true);
    let mut ghost_drop = stock(table_event(EventType::AfterDropTable, "sales.ghost", 2, 1));
    ghost_drop.purge_requested = Some(true);
    produce_json(&topic, &[drop, ghost_drop]).await;
    wait_until("both drops written", Duration::from_secs(30), || {
        count_lines(&out) == 2
    });
    assert_eq!(lookups("error"), 0.0);
    assert_eq!(lookups("dropped"), 0.0);

    let lines = read_lines(&out);
    let by_table = |name: &str| {
        lines
            .iter()
            .find(|l| l.to_string().contains(&format!("\"{name}\"")))
            .unwrap_or_else(|| panic!("no drop of {name} in {lines:?}"))
            .clone()
    };
    let orders = by_table("orders").to_string();
    assert!(orders.contains(orders_metadata), "{orders}");
    assert!(orders.contains("uuid-orders"), "{orders}");
    assert!(
        orders.contains("table-index"),
        "marked as enriched: {orders}"
    );
    let ghost = by_table("ghost").to_string();
    assert!(
        !ghost.contains("s3://warehouse"),
        "nothing to enrich it with: {ghost}"
    );

    // The server saw authenticated loadTable calls with the realm header, and a token request.
    let requests = server.requests();
    let loads: Vec<&Value> = requests
        .iter()
        .filter(|r| r["kind"] == "loadTable")
        .collect();
    assert_eq!(loads.len(), 2, "{loads:?}");
    for load in &loads {
        assert_ne!(load["token"], Value::Null);
        assert_eq!(load["realm"], "POLARIS");
        assert_eq!(load["namespace"], serde_json::json!(["sales"]));
    }
    assert!(requests
        .iter()
        .any(|r| r["kind"] == "token" && r["status"] == 200));
}
