//! Harness shared by the integration tests: a real Kafka broker (from `KAFKA_BOOTSTRAP`, set
//! by `tests/run.sh`), the real `polaris-bridge` binary as a child process, and helpers to
//! produce events, scrape metrics and read connector output.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use polaris_bridge_api::{codec, PolarisEvent, TaskId};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;

/// The broker the tests run against.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "KAFKA_BOOTSTRAP is not set. Run the suite with tests/run.sh (it starts a real Kafka \
             broker), or point KAFKA_BOOTSTRAP at an existing broker."
        )
    })
}

/// A name unique to this test run (topics, groups).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic with `partitions` partitions and waits until it exists.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    for r in results {
        r.expect("topic created");
    }
}

/// A producer with acks=all.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

/// Produces `value` with `key`; returns (partition, offset).
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> (i32, i64) {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    (delivery.partition, delivery.offset)
}

/// Produces every event as stock Polaris JSON (key = event id), many in flight at once.
pub async fn produce_json(topic: &str, events: &[PolarisEvent]) {
    let producer = producer();
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let key = codec::record_key(event);
        let value = codec::encode_polaris_json(event);
        let producer = producer.clone();
        let topic = topic.to_string();
        pending.push(tokio::spawn(async move {
            send(&producer, &topic, key.as_deref(), &value).await
        }));
        if pending.len() >= 2000 {
            for p in pending.drain(..) {
                p.await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
}

/// The task ids `events` get for connector `connector` (realm from the event, else POLARIS).
pub fn expected_ids(connector: &str, events: &[PolarisEvent]) -> HashSet<String> {
    events
        .iter()
        .map(|e| {
            let realm = e.realm_id.clone().unwrap_or_else(|| "POLARIS".into());
            TaskId::for_event(connector, &realm, e).to_hex()
        })
        .collect()
}

/// The committed offsets of `group` on `topic`, and the topic's high watermarks.
pub fn committed_and_end(group: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let c = committed
                .find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(-1);
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (c, high)
        })
        .collect()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 100 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Minimal HTTP GET against the bridge; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body_start = response.find("\r\n\r\n")? + 4;
    let mut body = response[body_start..].to_string();
    if response[..body_start]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Some((status, body))
}

/// One HTTP request against the bridge with an optional bearer token and JSON body;
/// returns (status, body). Panics if the bridge does not answer.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body_start = response.find("\r\n\r\n").map_or(response.len(), |i| i + 4);
    let mut body = response[body_start..].to_string();
    if response[..body_start]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

/// An admin API call that must succeed (2xx); returns the JSON body.
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> serde_json::Value {
    let (status, text) = http_request(addr, method, path, Some(token), body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
}

/// Runs the `polaris-bridge` binary with `args` and `env`; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"));
    command.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run polaris-bridge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(line_end) = rest.find("\r\n") {
        let size = usize::from_str_radix(rest[..line_end].trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.push_str(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    out
}

/// Sum of a metric's series whose labels contain `filter`.
pub fn metric(rendered: &str, name: &str, filter: Option<&str>) -> f64 {
    polaris_bridge::demo::sum(rendered, name, filter)
}

/// A bridge process under test.
pub struct Bridge {
    child: Option<Child>,
    /// The HTTP address (metrics, health).
    pub http: SocketAddr,
    /// The config file it runs with.
    pub config_path: PathBuf,
    /// Its log file (stderr).
    pub log_path: PathBuf,
}

impl Bridge {
    /// Starts `polaris-bridge run` with `config` (TOML) written into `dir`; `name` tells
    /// instances apart in file names. Waits until /healthz answers.
    pub fn start(dir: &Path, name: &str, config: &str, http_port: u16) -> Bridge {
        Bridge::start_with_env(dir, name, config, http_port, &[])
    }

    /// [`Bridge::start`] with extra environment variables (an admin token, say).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        config: &str,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> Bridge {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_polaris-bridge"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,librdkafka=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn polaris-bridge");
        let bridge = Bridge {
            child: Some(child),
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            config_path,
            log_path,
        };
        let started = Instant::now();
        while http_get(bridge.http, "/healthz").is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                panic!("bridge {name} did not come up; log:\n{}", bridge.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bridge
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The current /metrics text (empty if unreachable).
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// One metric, summed over series matching `filter`.
    pub fn metric(&self, name: &str, filter: Option<&str>) -> f64 {
        metric(&self.metrics(), name, filter)
    }

    /// Waits until the consumer has joined its group.
    pub fn wait_ready(&self) {
        wait_until("readyz", Duration::from_secs(60), || {
            matches!(http_get(self.http, "/readyz"), Some((200, _)))
        });
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > timeout {
                child.kill().unwrap();
                panic!(
                    "bridge did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }

    /// Waits up to `timeout` for the exit status (after a signal sent with [`Bridge::signal`]).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status;
            }
            if started.elapsed() > timeout {
                panic!(
                    "bridge did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A configuration for tests: `extra` holds connectors and routes.
pub fn config(
    topic: &str,
    format: &str,
    group: &str,
    store: &Path,
    http_port: u16,
    extra: &str,
) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[[topics]]
name = "{topic}"
format = "{format}"

[store]
path = "{store}"

[source]
batch_size = 500
batch_linger = "10ms"

[http]
listen = "127.0.0.1:{http_port}"

[dispatcher]
lease = "5s"
drain_timeout = "5s"
[dispatcher.retry]
initial_interval = "100ms"
max_interval = "1s"

{extra}
"#,
        bootstrap = bootstrap(),
        store = store.display(),
    )
}

/// The JSON lines of a file connector's output (missing file: none).
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

/// Line count of a file (0 if missing).
pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

/// The task ids in a file connector's output.
pub fn task_ids(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["task_id"].as_str().expect("task_id").to_string())
        .collect()
}
