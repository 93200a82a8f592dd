//! The command line: decode, schema, check-config, run's startup errors, and the demo.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bridge(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const STOCK: &str = r#"{"event_type":"AFTER_REFRESH_TABLE","event_id":"3f2b0c6e-8d7a-4a51-9c3e-2f1d0b9a8c7e","timestamp":"2026-05-01T10:00:00Z","table_identifier":["test_namespace","test_table"],"catalog_name":"test_catalog","realm_id":"test-realm","principal":"test-user","activated_roles":["role1","role2"]}"#;

#[test]
fn decode_prints_the_event() {
    let out = bridge(
        &["decode", "--format", "polaris-json"],
        Some(STOCK.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["event_type"], "AFTER_REFRESH_TABLE");
    assert_eq!(event["catalog_name"], "test_catalog");
    assert_eq!(event["activated_roles"][1], "role2");
}

#[test]
fn decode_names_field_and_position_of_bad_input() {
    let out = bridge(
        &["decode", "--format", "polaris-json"],
        Some(br#"{"event_type":"AFTER_CREATE_TABLE","namespace":5}"#),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("namespace") && err.contains("column"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.avro");
    std::fs::write(&path, b"\x48abcdef").unwrap();
    let out = bridge(
        &[
            "decode",
            "--format",
            "avro",
            "--file",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("byte"), "{err}");

    let out = bridge(&["decode", "--format", "xml"], Some(b"{}"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("polaris-json"),
        "the error lists the formats"
    );

    let out = bridge(&["decode"], Some(b""));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("empty"), "{}", text(&out.stderr));
}

#[test]
fn schema_is_the_bundled_avro_schema() {
    let out = bridge(&["schema"], None);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["name"], "PolarisEvent");
    assert_eq!(schema["fields"][0]["name"], "event_id");
}

#[test]
fn event_types_lists_all_149() {
    let out = bridge(&["event-types"], None);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), 149);
    assert!(listing.contains("AFTER_DROP_TABLE\t"), "{listing}");
}

#[test]
fn check_config_accepts_good_and_explains_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n[[topics]]\nname = \"t\"\n[connectors.a]\ntype = \"file\"\npath = \"/tmp/a.jsonl\"\n[[routes]]\nconnector = \"a\"\n",
    )
    .unwrap();
    let out = bridge(&["check-config", good.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("connector a (file)"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n[connectors.a]\ntype = \"file\"\npath = \"/tmp/a\"\npaht = \"x\"\n[[routes]]\nconnector = \"b\"\n",
    )
    .unwrap();
    let out = bridge(&["check-config", bad.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("routes[0].connector") && err.contains("Fix:"),
        "{err}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[kafka]\nbootstrap_servers = \"x\"\n[[topics]]\nname = \"t\"\n[connectors.a]\ntype = \"file\"\npath = \"/tmp/a\"\npaht = \"x\"\n").unwrap();
    let out = bridge(&["check-config", typo.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("paht"), "{}", text(&out.stderr));
}

#[test]
fn run_refuses_a_store_held_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = |port: u16| {
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[[topics]]\nname = \"t\"\n[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.path().join("store").display()
        )
    };
    let first_cfg = dir.path().join("first.toml");
    std::fs::write(&first_cfg, config(0)).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
        .args(["run", "--config", first_cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.path().join("store").join("conf").exists()
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let second_cfg = dir.path().join("second.toml");
    std::fs::write(&second_cfg, config(0)).unwrap();
    let out = bridge(&["run", "--config", second_cfg.to_str().unwrap()], None);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
}

#[test]
fn demo_once_runs_the_pipeline_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = bridge(
        &[
            "demo",
            "--once",
            "--events",
            "60",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("reached a final state"), "{stdout}");
    assert!(stdout.contains("rejected (kept):     4"), "{stdout}");
    assert!(stdout.contains("tasks dead:          0"), "{stdout}");
    // The built-in webhook receiver verified every signature and saw no duplicate.
    assert!(stdout.contains("verification failed: 0"), "{stdout}");
    assert!(stdout.contains("duplicate ids:       0"), "{stdout}");
    let verified: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("signatures verified: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(verified > 5, "{stdout}");
    let audit = std::fs::read_to_string(dir.path().join("audit-log.jsonl")).unwrap();
    assert!(audit.lines().count() > 10, "{audit}");
    for line in audit.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["event"]["event_type"]
                .as_str()
                .unwrap()
                .starts_with("AFTER_"),
            "route phase = after"
        );
    }
}
