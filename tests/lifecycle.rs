//! Lifecycle against a real broker and the real binary: SIGTERM with deliveries in flight
//! exits 0 within the drain timeout, releases leases, loses nothing, and a restart continues;
//! a second signal exits at once without corrupting the store; readiness; config and store
//! errors at startup exit non-zero with what to fix.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use polaris_bridge::log::{TaskLog, TaskState};
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_events;

fn slow_connector(delay: &str) -> String {
    format!(
        r#"
[connectors.slow]
type = "blackhole"
delay = "{delay}"
concurrency = 4
ordered = false

[[routes]]
connector = "slow"
"#
    )
}

/// Every task's state, by task id.
fn states(store: &std::path::Path) -> Vec<(String, TaskState)> {
    let log = TaskLog::open(store, 8).unwrap();
    log.iter()
        .map(|e| {
            let (_, r) = e.unwrap();
            (hex::encode(r.task_id), r.state)
        })
        .collect()
}

/// Restarts the bridge on `store` with a fast connector and checks that every task of
/// `events` is delivered: the set of task ids is exactly the expected one, all succeeded.
fn restart_and_deliver_everything(
    dir: &std::path::Path,
    topic: &str,
    group: &str,
    store: &std::path::Path,
    events: &[polaris_bridge_api::PolarisEvent],
) {
    let port = free_port();
    let cfg = config(
        topic,
        "polaris-json",
        group,
        store,
        port,
        &slow_connector("5ms"),
    );
    let mut bridge = Bridge::start(dir, "second", &cfg, port);
    wait_until(
        "all delivered after restart",
        Duration::from_secs(60),
        || {
            bridge.metric(m::BACKLOG, None) == 0.0
                && bridge.metric(m::TASKS_FINISHED, Some("state=\"succeeded\"")) > 0.0
        },
    );
    assert!(bridge.terminate(Duration::from_secs(30)).success());
    let finals = states(store);
    let got: HashSet<String> = finals.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        got,
        expected_ids("slow", events),
        "nothing lost, nothing extra"
    );
    assert!(
        finals
            .iter()
            .all(|(_, s)| matches!(s, TaskState::Succeeded { .. })),
        "{finals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flight_drains_exits_zero_and_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("sigterm");
    create_topic(&topic, 2).await;
    let events = sample_events(40, 5);
    produce_json(&topic, &events).await;
    let group = unique("g");
    let store = dir.path().join("store");
    let drain = |cfg: String, timeout: &str| {
        cfg.replace(
            "drain_timeout = \"5s\"",
            &format!("drain_timeout = \"{timeout}\""),
        )
    };

    let port = free_port();
    let cfg = drain(
        config(
            &topic,
            "polaris-json",
            &group,
            &store,
            port,
            &slow_connector("3s"),
        ),
        "1s",
    );
    let mut bridge = Bridge::start(dir.path(), "first", &cfg, port);
    bridge.wait_ready();
    // Four deliveries of 3 s each are in flight.
    wait_until("deliveries in flight", Duration::from_secs(30), || {
        bridge.metric(m::TASKS, Some("state=\"running\"")) >= 4.0
    });
    let started = Instant::now();
    let status = bridge.terminate(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status:?}\n{}",
        bridge.log()
    );
    assert!(
        took < Duration::from_secs(8),
        "drained within the timeout (1 s drain): {took:?}"
    );
    let log = bridge.log();
    assert!(log.contains("released="), "{log}");
    let after_first = states(&store);
    assert_eq!(
        after_first.len(),
        events.len(),
        "every task recorded before exit"
    );
    assert!(
        after_first
            .iter()
            .all(|(_, s)| !matches!(s, TaskState::Running { .. })),
        "no lease left held: {after_first:?}"
    );
    // A first attempt starts without a write, so one cut short is simply pending again; one
    // that had outlived a third of its lease (recorded as running) is released.
    assert!(
        after_first.iter().all(|(_, s)| matches!(s, TaskState::Pending)
            || matches!(s, TaskState::Retrying { last_error, .. } if last_error.contains("released at shutdown"))),
        "in-flight deliveries are pending again or released, none finished: {after_first:?}"
    );
    // The offsets of everything recorded were committed.
    for (committed, end) in committed_and_end(&group, &topic, 2) {
        assert_eq!(committed, end, "offsets committed on the way out");
    }

    // Restart with a fast connector: everything is delivered.
    restart_and_deliver_everything(dir.path(), &topic, &group, &store, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_and_the_store_survives() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("twice");
    create_topic(&topic, 1).await;
    let events = sample_events(30, 9);
    produce_json(&topic, &events).await;
    let group = unique("g");
    let store = dir.path().join("store");
    let port = free_port();
    let cfg = config(
        &topic,
        "polaris-json",
        &group,
        &store,
        port,
        &slow_connector("20s"),
    )
    .replace("drain_timeout = \"5s\"", "drain_timeout = \"60s\"");
    let mut bridge = Bridge::start(dir.path(), "first", &cfg, port);
    bridge.wait_ready();
    wait_until("deliveries in flight", Duration::from_secs(30), || {
        bridge.metric(m::TASKS, Some("state=\"running\"")) >= 4.0
    });
    bridge.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        bridge.exited().is_none(),
        "the first signal drains (60 s allowed)"
    );
    let started = Instant::now();
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(3), "exits at once");
    assert!(
        !status.success(),
        "an abrupt exit is not a clean one: {status:?}"
    );
    assert!(bridge.log().contains("second signal"), "{}", bridge.log());

    let (ok, stdout, stderr) = run_cli(&["store", "check", "--path", store.to_str().unwrap()], &[]);
    assert!(ok, "the store is intact: {stdout}{stderr}");

    restart_and_deliver_everything(dir.path(), &topic, &group, &store, &events);
}

#[test]
fn startup_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[[topics]]\nname = \"t\"\n[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("store").display()
    );
    let run = |name: &str, text: &str, env: &[(&str, &str)]| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        run_cli(&["run", "--config", path.to_str().unwrap()], env)
    };
    let missing = dir.path().join("no-such-token-file");
    let (ok, _, err) = run(
        "token-file.toml",
        &format!("{base}admin_token_file = \"{}\"\n", missing.display()),
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("http.admin_token_file") && err.contains("Fix:"),
        "{err}"
    );
    let (ok, _, err) = run(
        "short.toml",
        &base,
        &[("POLARIS_BRIDGE_ADMIN_TOKEN", "short")],
    );
    assert!(!ok);
    assert!(
        err.contains("POLARIS_BRIDGE_ADMIN_TOKEN") && err.contains("16 characters"),
        "{err}"
    );
    let (ok, _, err) = run("typo.toml", &base.replace("listen", "lisen"), &[]);
    assert!(!ok);
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn a_foreign_or_damaged_store_is_refused_never_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    {
        // A sled database that is not a task log: data, no format version.
        let db = sled::open(&store).unwrap();
        db.open_tree("tasks").unwrap().insert(b"x", b"y").unwrap();
        db.flush().unwrap();
    }
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[[topics]]\nname = \"t\"\n[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            store.display()
        ),
    )
    .unwrap();
    let (ok, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        err.contains("cannot be opened")
            && err.contains("never reset")
            && err.contains("store check"),
        "{err}"
    );
    let (ok, _, err) = run_cli(&["store", "check", "--path", store.to_str().unwrap()], &[]);
    assert!(!ok, "store check refuses it too: {err}");
    // Still there, untouched.
    let db = sled::open(&store).unwrap();
    assert_eq!(
        db.open_tree("tasks").unwrap().get(b"x").unwrap().as_deref(),
        Some(&b"y"[..])
    );
}
