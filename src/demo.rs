//! `polaris-bridge demo`: the whole pipeline on librdkafka's in-process mock cluster.
//!
//! Nothing has to be installed: the demo starts an embedded Kafka cluster, produces sample
//! Polaris events (the stock listener's JSON on one topic, Avro on another, with duplicates
//! and a few malformed messages), runs the bridge against it and prints a summary as it goes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use polaris_bridge_api::codec;
use polaris_bridge_api::samples;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::Config;
use crate::{app, metrics};

mod receiver;

/// JSON topic of the demo.
const JSON_TOPIC: &str = "polaris-events";
/// Avro topic of the demo.
const AVRO_TOPIC: &str = "polaris-events-avro";

/// Options of `polaris-bridge demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use this file's connectors and routes (its kafka and topics are replaced by the
    /// embedded cluster's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit once every sample task reached a final state, printing the counts.
    #[arg(long)]
    pub once: bool,
    /// Sample events to produce (each is produced as JSON or Avro; every 10th twice).
    #[arg(long, default_value_t = 200)]
    pub events: usize,
    /// Working directory for the store and the output files (default: a new temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The default configuration: every event to a JSON-lines file, table drops to a second
/// file, everything to a blackhole, and AFTER events on tables, views and namespaces to the
/// built-in webhook receiver.
fn default_config(
    dir: &std::path::Path,
    webhook_url: &str,
    secret_file: &std::path::Path,
) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "mock"

[store]
path = "{store}"

[http]
listen = "127.0.0.1:0"

[connectors.audit-log]
type = "file"
path = "{audit}"

[connectors.table-drops]
type = "file"
path = "{drops}"

[connectors.null]
type = "blackhole"

[connectors.webhook]
type = "webhook"
url = "{webhook_url}"
secret_file = "{secret_file}"
concurrency = 4
filter = {{ phase = "after", categories = ["TABLE", "VIEW", "NAMESPACE"] }}

[[routes]]
connector = "audit-log"
phase = "after"

[[routes]]
connector = "table-drops"
event_types = ["AFTER_DROP_TABLE"]

[[routes]]
connector = "null"

[[routes]]
connector = "webhook"
"#,
        store = dir.join("store").display(),
        audit = dir.join("audit-log.jsonl").display(),
        drops = dir.join("table-drops.jsonl").display(),
        secret_file = secret_file.display(),
    )
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("polaris-bridge-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cluster = MockCluster::new(1).context("cannot start the embedded Kafka cluster")?;
    cluster
        .create_topic(JSON_TOPIC, 4, 1)
        .context("creating the demo JSON topic")?;
    cluster
        .create_topic(AVRO_TOPIC, 2, 1)
        .context("creating the demo Avro topic")?;
    let bootstrap = cluster.bootstrap_servers();

    // The built-in webhook receiver, with a fresh signing secret in a file.
    let secret = demo_secret();
    let secret_file = dir.join("webhook-secret");
    write_secret(&secret_file, &secret)?;
    let receiver = receiver::Receiver::start(&secret)
        .await
        .context("starting the demo webhook receiver")?;

    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => default_config(&dir, &receiver.url, &secret_file),
    };
    let mut document: toml::Table =
        toml::from_str(&text).context("parsing the demo configuration")?;
    let mut kafka = toml::Table::new();
    kafka.insert("bootstrap_servers".into(), bootstrap.clone().into());
    kafka.insert("group_id".into(), "polaris-bridge-demo".into());
    let mut properties = toml::Table::new();
    properties.insert("session.timeout.ms".into(), "6000".into());
    kafka.insert("properties".into(), properties.into());
    document.insert("kafka".into(), kafka.into());
    let topic = |name: &str, format: &str| {
        let mut t = toml::Table::new();
        t.insert("name".into(), name.into());
        t.insert("format".into(), format.into());
        toml::Value::Table(t)
    };
    document.insert(
        "topics".into(),
        vec![topic(JSON_TOPIC, "polaris-json"), topic(AVRO_TOPIC, "avro")].into(),
    );
    let origin = args
        .config
        .as_ref()
        .map_or("demo defaults".to_string(), |p| p.display().to_string());
    let config = Config::from_toml(&toml::to_string(&document)?, &origin, std::env::vars())?;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("creating the demo producer")?;
    let produced = produce_samples(&producer, args.events)?;
    println!("polaris-bridge demo");
    println!(
        "  embedded Kafka: {bootstrap}; topics {JSON_TOPIC} (stock JSON), {AVRO_TOPIC} (Avro)"
    );
    println!(
        "  produced {} messages: {} sample events, {} duplicates, {} malformed",
        produced.messages, produced.events, produced.duplicates, produced.malformed
    );
    println!("  working directory: {}", dir.display());
    println!(
        "  webhook receiver: {} (verifies every signature with the secret in {})",
        receiver.url,
        secret_file.display()
    );

    let handle = metrics::install().context("cannot install the metrics recorder")?;
    let bridge = app::start(&config, handle.clone()).await?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut extra = 0u64;
    let outcome = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
        }
        let summary = Summary::read(&handle.render());
        println!(
            "  [{:>3}s] {} | {}",
            started.elapsed().as_secs(),
            summary.line(),
            webhook_line(&receiver.stats)
        );
        let expected = produced.messages + extra;
        if args.once {
            if summary.consumed >= expected as f64
                && summary.backlog == 0.0
                && bridge
                    .source_status
                    .joined
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                println!();
                println!(
                    "all {} sample tasks reached a final state",
                    summary.finished
                );
                println!("{}", summary.report());
                println!("{}", webhook_report(&receiver.stats));
                break Ok(ExitCode::SUCCESS);
            }
            if started.elapsed() > Duration::from_secs(120) {
                println!("{}", summary.report());
                break Err(anyhow::anyhow!("the demo did not finish within 120 s"));
            }
        } else if started.elapsed() > Duration::from_secs(5) {
            // Keep it live: a trickle of new events every second.
            extra += produce_trickle(&producer, extra)?;
        }
    };
    bridge.stop().await?;
    receiver.stop();
    drop(producer);
    drop(cluster);
    outcome
}

/// A fresh `whsec_` secret: 32 random bytes.
fn demo_secret() -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Writes the secret readable by the owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn webhook_line(stats: &receiver::ReceiverStats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "webhook verified {} failed {} duplicates {}",
        stats.verified.load(Relaxed),
        stats.failed.load(Relaxed),
        stats.duplicates.load(Relaxed)
    )
}

fn webhook_report(stats: &receiver::ReceiverStats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "webhook receiver:\n  signatures verified: {}\n  verification failed: {}\n  deliveries accepted: {}\n  duplicate ids:       {}\n  first attempts refused (503, retried): {}",
        stats.verified.load(Relaxed),
        stats.failed.load(Relaxed),
        stats.accepted(),
        stats.duplicates.load(Relaxed),
        stats.refused_first.load(Relaxed)
    )
}

/// What was produced.
struct Produced {
    messages: u64,
    events: u64,
    duplicates: u64,
    malformed: u64,
}

fn produce_samples(producer: &BaseProducer, count: usize) -> anyhow::Result<Produced> {
    let events = samples::sample_events(count, 42);
    let mut produced = Produced {
        messages: 0,
        events: events.len() as u64,
        duplicates: 0,
        malformed: 0,
    };
    for (i, event) in events.iter().enumerate() {
        let key = codec::record_key(event);
        let (topic, value) = if i % 2 == 0 {
            (JSON_TOPIC, codec::encode_polaris_json(event))
        } else if i % 4 == 1 {
            (AVRO_TOPIC, codec::encode_avro_confluent(event, 1))
        } else {
            (AVRO_TOPIC, codec::encode_avro_raw(event))
        };
        let copies = if i % 10 == 0 { 2 } else { 1 };
        for _ in 0..copies {
            send(producer, topic, key.as_deref(), &value)?;
            produced.messages += 1;
        }
        produced.duplicates += copies - 1;
    }
    let malformed: [(&str, &[u8]); 4] = [
        (JSON_TOPIC, b"\x00\x13\x37 not json at all"),
        (JSON_TOPIC, br#"{"event_type": 42}"#),
        (JSON_TOPIC, b""),
        (AVRO_TOPIC, b"\x48abc"),
    ];
    for (topic, value) in malformed {
        send(producer, topic, None, value)?;
        produced.messages += 1;
        produced.malformed += 1;
    }
    producer
        .flush(Duration::from_secs(10))
        .context("flushing sample events")?;
    Ok(produced)
}

fn produce_trickle(producer: &BaseProducer, already: u64) -> anyhow::Result<u64> {
    let events = samples::sample_events(3, 1000 + already);
    for event in &events {
        send(
            producer,
            JSON_TOPIC,
            codec::record_key(event).as_deref(),
            &codec::encode_polaris_json(event),
        )?;
    }
    producer.poll(Duration::ZERO);
    Ok(events.len() as u64)
}

fn send(
    producer: &BaseProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer
        .send(record)
        .map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    producer.poll(Duration::ZERO);
    Ok(())
}

/// Figures read back from the metrics.
struct Summary {
    consumed: f64,
    rejected: f64,
    created: f64,
    deduplicated: f64,
    finished: f64,
    succeeded: f64,
    dead: f64,
    backlog: f64,
    per_connector: Vec<(String, f64)>,
}

impl Summary {
    fn read(rendered: &str) -> Summary {
        let per_connector = series(rendered, crate::metrics::TASKS_FINISHED)
            .into_iter()
            .filter(|(labels, _)| labels.contains("state=\"succeeded\""))
            .map(|(labels, v)| (label(&labels, "connector"), v))
            .collect();
        Summary {
            consumed: sum(rendered, crate::metrics::EVENTS_CONSUMED, None),
            rejected: sum(rendered, crate::metrics::EVENTS_REJECTED, None),
            created: sum(rendered, crate::metrics::TASKS_CREATED, None),
            deduplicated: sum(rendered, crate::metrics::TASKS_DEDUPLICATED, None),
            finished: sum(rendered, crate::metrics::TASKS_FINISHED, None),
            succeeded: sum(
                rendered,
                crate::metrics::TASKS_FINISHED,
                Some("state=\"succeeded\""),
            ),
            dead: sum(
                rendered,
                crate::metrics::TASKS_FINISHED,
                Some("state=\"dead\""),
            ),
            backlog: sum(rendered, crate::metrics::BACKLOG, None),
            per_connector,
        }
    }

    fn line(&self) -> String {
        format!(
            "consumed {} | rejected {} | tasks created {} deduplicated {} | succeeded {} dead {} | backlog {}",
            self.consumed, self.rejected, self.created, self.deduplicated, self.succeeded, self.dead, self.backlog
        )
    }

    fn report(&self) -> String {
        let mut out = format!(
            "messages consumed:   {}\nrejected (kept):     {}\ntasks created:       {}\ntasks deduplicated:  {}\ntasks succeeded:     {}\ntasks dead:          {}\n",
            self.consumed, self.rejected, self.created, self.deduplicated, self.succeeded, self.dead
        );
        for (connector, n) in &self.per_connector {
            out.push_str(&format!("  {connector}: {n} succeeded\n"));
        }
        out
    }
}

/// Every series of metric `name` in a Prometheus text rendering: (labels, value).
pub fn series(rendered: &str, name: &str) -> Vec<(String, f64)> {
    rendered
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
                let end = rest.find('}')?;
                (rest[..end].to_string(), rest[end + 1..].trim())
            } else if rest.starts_with(' ') {
                (String::new(), rest.trim())
            } else {
                return None;
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The sum of metric `name` over the series whose labels contain `filter`.
pub fn sum(rendered: &str, name: &str, filter: Option<&str>) -> f64 {
    series(rendered, name)
        .into_iter()
        .filter(|(labels, _)| filter.is_none_or(|f| labels.contains(f)))
        .fold(0.0, |total, (_, v)| total + v)
}

fn label(labels: &str, name: &str) -> String {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}
