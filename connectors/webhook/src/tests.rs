//! The connector against a scripted HTTP server on 127.0.0.1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use polaris_bridge_api::connector::{CheckpointError, SourcePosition};
use polaris_bridge_api::event::EventType;
use polaris_bridge_api::TaskId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct NoContext;
impl TaskContext for NoContext {
    fn checkpoint(&self, _: &[u8]) -> Result<(), CheckpointError> {
        Ok(())
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// A server answering each request with the next scripted response (then 200).
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<Mutex<usize>>,
}

async fn server(script: Vec<&'static str>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook?token=s3cr3t",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(Mutex::new(0));
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (s, c) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            *c.lock().unwrap() += 1;
            let (seen, script) = (s.clone(), script.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // Read one request: head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            n.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buffer.len() < head_end + length {
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buffer[head_end..head_end + length].to_vec();
                    buffer.drain(..head_end + length);
                    if head.starts_with("POST") {
                        seen.lock().unwrap().push(Seen { head, body });
                    }
                    let response = script.lock().unwrap().pop_front().unwrap_or("200 OK");
                    let (status, extra) = response.split_once('|').unwrap_or((response, ""));
                    let reply_body = format!("answer {status}");
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n{reply_body}",
                        reply_body.len()
                    );
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server {
        url,
        seen,
        connections,
    }
}

fn connector(url: &str, extra: &str) -> WebhookConnector {
    let text = format!("url = \"{url}\"\nsecret_env = \"HOOK_SECRET\"\n{extra}");
    let config: WebhookConfig = toml::from_str(&text).unwrap();
    WebhookConnector::new("hook", config, 4, |var| {
        (var == "HOOK_SECRET").then(|| SECRET.to_string())
    })
    .unwrap()
}

fn delivery(n: u32) -> Delivery {
    let mut event = PolarisEvent::new(EventType::AfterCreateTable);
    event.event_id = Some(format!("00000000-0000-0000-0000-{n:012}"));
    event.catalog_name = Some("prod".into());
    event.namespace = Some(vec!["sales".into()]);
    event.table_name = Some(format!("t{n}"));
    Delivery {
        task_id: TaskId::for_event("hook", "POLARIS", &event),
        connector: "hook".into(),
        attempt: 1,
        realm: "POLARIS".into(),
        event,
        source: SourcePosition {
            topic: "t".into(),
            partition: 0,
            offset: n as i64,
        },
        checkpoint: None,
    }
}

#[tokio::test]
async fn delivers_a_signed_cloudevent_over_one_kept_alive_connection() {
    let server = server(vec![]).await;
    let hook = connector(&server.url, "headers = { X-Team = \"data\" }");
    for n in 0..3 {
        hook.deliver(&delivery(n), &NoContext).await.unwrap();
    }
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(*server.connections.lock().unwrap(), 1, "keep-alive");
    let first = &seen[0];
    let id = first.header("webhook-id").unwrap();
    assert_eq!(id, delivery(0).task_id.to_hex());
    let timestamp: i64 = first.header("webhook-timestamp").unwrap().parse().unwrap();
    let secret = Secret::parse(SECRET, "test").unwrap();
    assert_eq!(
        first.header("webhook-signature").unwrap(),
        secret.sign(&id, timestamp, &first.body)
    );
    assert_eq!(first.header("x-team").as_deref(), Some("data"));
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert!(first.head.starts_with("POST /hook?token=s3cr3t HTTP/1.1"));
    let ce: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(ce["id"], id.as_str());
    assert_eq!(ce["source"], "polaris://POLARIS/prod");
    // The URL's query is not shown.
    assert!(!hook.url().contains("s3cr3t") && !format!("{hook:?}").contains("s3cr3t"));
    // The operator status names the circuit state and never the secret or the query.
    let status = Connector::status(&hook);
    assert_eq!(status["circuit"], "closed");
    assert_eq!(status["enabled"], true);
    let shown = status.to_string();
    assert!(
        !shown.contains("s3cr3t") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[tokio::test]
async fn responses_become_delivery_errors() {
    let server = server(vec![
        "500 Internal Server Error",
        "429 Too Many Requests|Retry-After: 3\r\n",
        "400 Bad Request",
        "410 Gone",
        "200 OK",
    ])
    .await;
    let hook = connector(&server.url, "");
    let d = delivery(1);
    let err = hook.deliver(&d, &NoContext).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Transient { retry_after: None, message } if message.contains("500")),
        "{err:?}"
    );
    let err = hook.deliver(&d, &NoContext).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Transient { retry_after: Some(w), .. } if *w == Duration::from_secs(3)),
        "{err:?}"
    );
    let err = hook.deliver(&d, &NoContext).await.unwrap_err();
    assert_eq!(
        err,
        DeliveryError::permanent("HTTP 400 Bad Request: answer 400 Bad Request")
    );
    let err = hook.deliver(&d, &NoContext).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Disabled { .. }), "{err:?}");
    assert!(!hook.is_enabled());
    hook.deliver(&d, &NoContext).await.unwrap();
    assert!(hook.is_enabled(), "resumed: enabled again");
    let seen = server.seen.lock().unwrap();
    let ids: Vec<_> = seen.iter().map(|s| s.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id across retries"
    );
}

#[tokio::test]
async fn breaker_opens_defers_and_probes() {
    // Nothing listens on this port: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = connector(
        &format!("http://127.0.0.1:{port}/x"),
        "circuit_breaker = { failures = 2, cooldown = \"200ms\" }",
    );
    let d = delivery(1);
    for _ in 0..2 {
        let err = hook.deliver(&d, &NoContext).await.unwrap_err();
        assert!(
            matches!(&err, DeliveryError::Transient { message, .. } if message.contains("connection failed")),
            "{err:?}"
        );
    }
    assert_eq!(hook.circuit_state(), CircuitState::Open);
    let err = hook.deliver(&d, &NoContext).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Deferred { retry_after, .. } if *retry_after <= Duration::from_millis(200)),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The probe fails: open again.
    assert!(matches!(
        hook.deliver(&d, &NoContext).await,
        Err(DeliveryError::Transient { .. })
    ));
    assert_eq!(hook.circuit_state(), CircuitState::Open);
}

#[tokio::test]
async fn rate_limit_defers_and_config_can_disable() {
    let server = server(vec![]).await;
    let hook = connector(&server.url, "rate_limit = 2.0\nrate_burst = 1");
    hook.deliver(&delivery(1), &NoContext).await.unwrap();
    let err = hook.deliver(&delivery(2), &NoContext).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Deferred { retry_after, .. } if *retry_after > Duration::from_millis(400)),
        "{err:?}"
    );
    let off = connector(&server.url, "enabled = false");
    assert!(matches!(
        off.deliver(&delivery(1), &NoContext).await,
        Err(DeliveryError::Disabled { .. })
    ));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn timeouts_are_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream); // never answers
        }
    });
    let hook = connector(&format!("http://{addr}/x"), "timeout = \"200ms\"");
    let started = Instant::now();
    let err = hook.deliver(&delivery(1), &NoContext).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(
        matches!(&err, DeliveryError::Transient { message, .. } if message.contains("timeout")),
        "{err:?}"
    );
}

#[test]
fn configuration_problems_name_the_key_and_the_fix() {
    let problems = |extra: &str, env: &dyn Fn(&str) -> Option<String>| {
        let text = format!("url = \"ftp://x\"\n{extra}");
        let config: WebhookConfig = toml::from_str(&text).unwrap();
        WebhookConnector::new("hook", config, 1, env).unwrap_err()
    };
    let none = |_: &str| -> Option<String> { None };
    let p = problems("", &none);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["url", "secret_env"]);
    assert!(p[1].fix.contains("secret_file"), "{p:?}");

    let p = problems(
        "secret_env = [\"MISSING\", \"BAD\"]\nsecret_file = \"/nonexistent/x\"\nrate_limit = -1.0",
        &|v: &str| (v == "BAD").then(|| "not-a-whsec-secret".to_string()),
    );
    let text = format!("{p:?}");
    assert!(text.contains("MISSING is not set"), "{text}");
    assert!(text.contains("does not start with `whsec_`"), "{text}");
    assert!(
        !text.contains("not-a-whsec-secret"),
        "the secret is not echoed: {text}"
    );
    assert!(text.contains("/nonexistent/x"), "{text}");
    assert!(p.iter().any(|p| p.key == "rate_limit"), "{text}");
}
