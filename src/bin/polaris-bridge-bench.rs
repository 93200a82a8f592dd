//! `polaris-bridge-bench`: measures the pipeline against its two physical limits in one run.
//!
//! Against a real broker (`--bootstrap`), it produces N realistic Polaris events (stock JSON
//! and Avro alternating, several partitions) and then measures, side by side:
//! 1. the transport limit: a bare rdkafka `BaseConsumer` reading the topic, doing nothing;
//! 2. the storage limit: the task log alone writing the same records the way the bridge writes
//!    them (same keys, values, batch size, one flush per batch);
//! 3. the bridge end to end (`polaris-bridge run` as a child process, decode, route, dedup,
//!    durable log, offset commit, a blackhole connector): events/s, peak RSS, CPU seconds and
//!    bytes on disk per million events.
//!
//! Each phase runs `--runs` times; medians are reported, with the bridge's ratio to both
//! limits. See BENCHMARKS.md for figures and the command lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use polaris_bridge::log::{now_ms, SourceRecord, TaskLog, TaskRecord};
use polaris_bridge_api::samples::sample_event;
use polaris_bridge_api::{codec, TaskId};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Benchmark options.
#[derive(Parser, Debug)]
#[command(
    name = "polaris-bridge-bench",
    about = "Benchmarks polaris-bridge against its transport and storage limits"
)]
struct Args {
    /// Kafka bootstrap servers (a real broker, e.g. from tests/kafka/broker.sh start).
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    bootstrap: String,
    /// Events to produce and consume per run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Runs of each phase (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Messages per task log flush, as the bridge's `source.batch_size`.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// sled cache in MiB, as the bridge's `store.cache_capacity_mb`.
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// Working directory (stores, configs, logs); a temporary one by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `polaris-bridge` binary (default: next to this one).
    #[arg(long)]
    bridge: Option<PathBuf>,
    /// Internal: run only the storage phase in this process, into this directory, and print
    /// its figures (the parent runs it as a child so that its memory is measured alone).
    #[arg(long, hide = true)]
    storage_child: Option<PathBuf>,
}

/// One phase's result.
#[derive(Debug, Clone, Default)]
struct Figures {
    events_per_s: f64,
    peak_rss_mib: f64,
    cpu_s_per_million: f64,
    disk_bytes_per_million: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.storage_child {
        let f = storage_limit(
            dir,
            args.events,
            args.partitions,
            args.batch_size,
            args.cache_mb,
        )?;
        println!(
            "{} {} {} {}",
            f.events_per_s, f.peak_rss_mib, f.cpu_s_per_million, f.disk_bytes_per_million
        );
        return Ok(());
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("polaris-bridge-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let bridge_bin = match &args.bridge {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory of the bench binary")?
            .join("polaris-bridge"),
    };
    if !bridge_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release` or pass --bridge",
            bridge_bin.display()
        );
    }

    let topic = format!("bench-{}", now_ms());
    create_topic(&args.bootstrap, &topic, args.partitions).await?;
    let started = Instant::now();
    let raw_bytes = produce(&args.bootstrap, &topic, args.events).await?;
    let produce_rate = args.events as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} events ({:.0} bytes average, {:.1} MiB) to {topic} ({} partitions) at {produce_rate:.0}/s",
        args.events,
        raw_bytes as f64 / args.events as f64,
        raw_bytes as f64 / 1048576.0,
        args.partitions
    );

    let mut transport = Vec::new();
    let mut storage = Vec::new();
    let mut bridge = Vec::new();
    for run in 0..args.runs {
        transport.push(bare_consumer(&args.bootstrap, &topic, args.events)?);
        eprintln!(
            "run {run}: transport {:.0} events/s",
            transport[run].events_per_s
        );
        storage.push(storage_in_child(
            &args,
            &dir.join(format!("storage-{run}")),
        )?);
        eprintln!(
            "run {run}: storage {:.0} events/s",
            storage[run].events_per_s
        );
        bridge.push(
            bridge_end_to_end(
                &bridge_bin,
                &dir.join(format!("bridge-{run}")),
                &args,
                &topic,
            )
            .await?,
        );
        eprintln!(
            "run {run}: bridge {:.0} events/s, peak RSS {:.0} MiB",
            bridge[run].events_per_s, bridge[run].peak_rss_mib
        );
    }
    let t = median(transport.iter().map(|f| f.events_per_s));
    let s = median(storage.iter().map(|f| f.events_per_s));
    let b = median(bridge.iter().map(|f| f.events_per_s));
    println!("| phase | events/s (median of {}) | peak RSS MiB | CPU s / M events | disk bytes / M events |", args.runs);
    println!("|---|---|---|---|---|");
    println!("| transport limit (bare BaseConsumer) | {t:.0} | | | |");
    println!(
        "| storage limit (task log alone) | {s:.0} | {:.0} | {:.1} | {:.0} |",
        median(storage.iter().map(|f| f.peak_rss_mib)),
        median(storage.iter().map(|f| f.cpu_s_per_million)),
        median(storage.iter().map(|f| f.disk_bytes_per_million))
    );
    println!(
        "| bridge end to end (blackhole) | {b:.0} | {:.0} | {:.1} | {:.0} |",
        median(bridge.iter().map(|f| f.peak_rss_mib)),
        median(bridge.iter().map(|f| f.cpu_s_per_million)),
        median(bridge.iter().map(|f| f.disk_bytes_per_million))
    );
    println!();
    println!(
        "bridge / storage limit: {:.2}; bridge / transport limit: {:.2}",
        b / s,
        b / t
    );
    println!(
        "raw event bytes per million events: {:.0}",
        raw_bytes as f64 / args.events as f64 * 1e6
    );
    Ok(())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for result in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?
    {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// Produces `count` sample events, stock JSON and Confluent Avro alternating (the same events,
/// seed 2026, that the storage phase writes); returns the bytes of all values.
async fn produce(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut pending = Vec::with_capacity(10_000);
    let mut bytes = 0;
    for i in 0..count {
        let event = bench_event(i);
        let value = if i % 2 == 0 {
            codec::encode_polaris_json(&event)
        } else {
            codec::encode_avro_confluent(&event, 1)
        };
        bytes += value.len();
        let key = codec::record_key(&event);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&value);
        if let Some(key) = &key {
            record = record.key(key);
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if pending.len() >= 10_000 {
            for p in pending.drain(..) {
                p.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(bytes)
}

/// Events per second of Polaris time in the benchmark's stream: the sample events are a
/// second apart, which would give every event a dedup bucket of its own; a busy catalog
/// emits thousands per second, so each second's bucket holds this many random task ids.
const EVENTS_PER_SECOND: i64 = 10_000;

/// The `i`-th benchmark event: a sample event, timed as one of a dense stream.
fn bench_event(i: usize) -> polaris_bridge_api::PolarisEvent {
    let mut event = sample_event(i as u64, 2026);
    event.timestamp_ms = Some(1_790_000_000_000 + i as i64 * 1000 / EVENTS_PER_SECOND);
    event
}

/// Phase 1: a consumer that reads every message and does nothing else.
fn bare_consumer(bootstrap: &str, topic: &str, count: usize) -> anyhow::Result<Figures> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-bare-{}", now_ms()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen = 0usize;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < count {
        if Instant::now() > deadline {
            bail!("bare consumer read only {seen} of {count}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
                seen += 1;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(Figures {
        events_per_s: count as f64 / elapsed.as_secs_f64(),
        ..Figures::default()
    })
}

/// Runs phase 2 in a child process and reads its figures.
fn storage_in_child(args: &Args, dir: &Path) -> anyhow::Result<Figures> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--bootstrap")
        .arg(&args.bootstrap)
        .arg("--events")
        .arg(args.events.to_string())
        .arg("--partitions")
        .arg(args.partitions.to_string())
        .arg("--batch-size")
        .arg(args.batch_size.to_string())
        .arg("--cache-mb")
        .arg(args.cache_mb.to_string())
        .arg("--storage-child")
        .arg(dir)
        .output()?;
    if !output.status.success() {
        bail!(
            "storage phase failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [events_per_s, peak_rss_mib, cpu_s_per_million, disk_bytes_per_million] = v[..] else {
        bail!("unexpected storage phase output: {text}");
    };
    Ok(Figures {
        events_per_s,
        peak_rss_mib,
        cpu_s_per_million,
        disk_bytes_per_million,
    })
}

/// Phase 2: the task log alone, written as the source writes it: one insert per event into
/// the log's layout, one flush per batch. Events are generated and encoded batch by batch
/// outside the timed part (their CPU time is subtracted), so only the store is measured.
fn storage_limit(
    dir: &Path,
    count: usize,
    partitions: i32,
    batch_size: usize,
    cache_mb: u64,
) -> anyhow::Result<Figures> {
    let _ = std::fs::remove_dir_all(dir);
    let cpu_before = cpu_seconds(std::process::id())?;
    let mut preparing_cpu = 0.0;
    let mut storing = Duration::ZERO;
    let log = TaskLog::open(dir, cache_mb)?;
    let connector = log.connector_number("null")?;
    let mut batch = Vec::with_capacity(batch_size);
    let mut next = 0usize;
    while next < count {
        let prepare_started = thread_cpu_seconds();
        batch.clear();
        let now = now_ms();
        for i in next..(next + batch_size).min(count) {
            let e = bench_event(i);
            let realm = e.realm_id.clone().unwrap_or_else(|| "POLARIS".into());
            batch.push(TaskRecord::pending(
                *TaskId::for_event("null", &realm, &e).as_bytes(),
                e.timestamp_ms
                    .and_then(|ms| u32::try_from(ms / 1000).ok())
                    .unwrap_or(0),
                "null",
                e.resource_identity("POLARIS"),
                realm,
                SourceRecord {
                    topic: "bench".to_string(),
                    partition: (i as i32) % partitions,
                    offset: (i as i64) / partitions as i64,
                },
                polaris_bridge_api::event::stored::encode(&e)?,
                now,
            ));
        }
        next += batch.len();
        preparing_cpu += thread_cpu_seconds() - prepare_started;
        let started = Instant::now();
        for record in &batch {
            log.insert(connector, record)?;
        }
        log.flush()?;
        storing += started.elapsed();
    }
    drop(log);
    let cpu = cpu_seconds(std::process::id())? - cpu_before - preparing_cpu;
    let per_million = 1e6 / count as f64;
    Ok(Figures {
        events_per_s: count as f64 / storing.as_secs_f64(),
        peak_rss_mib: peak_rss_mib(std::process::id())?,
        cpu_s_per_million: cpu * per_million,
        disk_bytes_per_million: dir_size(dir) as f64 * per_million,
    })
}

/// CPU seconds used by the calling thread.
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Phase 3: the real bridge process with a blackhole connector.
async fn bridge_end_to_end(
    bin: &Path,
    dir: &Path,
    args: &Args,
    topic: &str,
) -> anyhow::Result<Figures> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = dir.join("store");
    let config = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "bench-bridge-{group}"

[[topics]]
name = "{topic}"
format = "auto"

[store]
path = "{store}"
cache_capacity_mb = {cache}

[source]
batch_size = {batch}
max_backlog = {backlog}
resume_backlog = {resume}

[http]
listen = "127.0.0.1:{port}"

[connectors.null]
type = "blackhole"
concurrency = 64
ordered = false

[[routes]]
connector = "null"
"#,
        bootstrap = args.bootstrap,
        group = now_ms(),
        store = store.display(),
        cache = args.cache_mb,
        batch = args.batch_size,
        backlog = args.events * 2,
        resume = args.events,
    );
    let config_path = dir.join("bridge.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("bridge.log"))?;
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let result = watch_bridge(&mut child, port, args.events).await;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let mut figures = result?;
    figures.disk_bytes_per_million = dir_size(&store) as f64 * 1e6 / args.events as f64;
    Ok(figures)
}

async fn watch_bridge(child: &mut Child, port: u16, events: usize) -> anyhow::Result<Figures> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let pid = child.id();
    let mut first: Option<(Instant, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut cpu_at_first = 0.0;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the bridge exited early: {status}");
        }
        if Instant::now() > deadline {
            bail!("the bridge did not finish within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(text) = scrape(addr) else { continue };
        let consumed =
            polaris_bridge::demo::sum(&text, polaris_bridge::metrics::EVENTS_CONSUMED, None);
        let finished =
            polaris_bridge::demo::sum(&text, polaris_bridge::metrics::TASKS_FINISHED, None);
        if first.is_none() && consumed > 0.0 {
            first = Some((Instant::now(), consumed));
            cpu_at_first = cpu_seconds(pid)?;
        }
        if finished >= events as f64 {
            let (t0, c0) = first.unwrap_or((Instant::now(), 0.0));
            let elapsed = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid)? - cpu_at_first;
            return Ok(Figures {
                events_per_s: (events as f64 - c0) / elapsed,
                peak_rss_mib: peak_rss_mib(pid)?,
                cpu_s_per_million: cpu * 1e6 / (events as f64 - c0),
                disk_bytes_per_million: 0.0,
            });
        }
    }
}

fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// User plus system CPU seconds of process `pid`, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Peak resident set size of process `pid` in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmHWM")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
