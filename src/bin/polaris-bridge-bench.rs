//! `polaris-bridge-bench`: measures the pipeline against its limits and a peer in one run.
//!
//! Against a real broker (`--bootstrap`), it produces N realistic Polaris events (stock JSON
//! and Avro alternating, several partitions) and then measures, phase after phase
//! (`--phases`, all by default):
//! 1. `transport`: a bare rdkafka `BaseConsumer` reading the topic, doing nothing;
//! 2. `decode`: the same, decoding every message with the bridge's codec (`auto` format);
//! 3. `storage`: the task log alone writing the same records the way the bridge writes them
//!    (same keys, values, batch size, one flush per batch), in a child process;
//! 4. `bridge`: the bridge end to end (`polaris-bridge run` as a child process, decode, route,
//!    dedup, durable log, offset commit, a blackhole connector): events/s, peak RSS, CPU
//!    seconds and bytes on disk per million events;
//! 5. `latency`: the bridge (blackhole) consuming a fresh topic while events are produced at
//!    a fixed rate (`--latency-rate` for `--latency-seconds`): p50/p99 of its
//!    `polaris_bridge_message_to_durable_seconds` and `polaris_bridge_event_to_delivery_seconds`
//!    histograms over the phase, from `/metrics` scraped before and after;
//! 6. `http`: the HTTP limit: a bare reqwest client built as the webhook connector builds
//!    its client, posting signed CloudEvents requests (bodies built beforehand from the same
//!    events) to a local receiver (in this process, on its own runtime), as many in flight as
//!    the connector, doing nothing else: deliveries/s and the client threads' CPU seconds per
//!    million;
//! 7. `webhook`: the bridge with a signing `webhook` connector posting every event of the
//!    topic to the same receiver: deliveries/s from the first to the last request, peak RSS
//!    and CPU seconds per million of the bridge;
//! 8. `peer`: Redpanda Connect (`bench/peer/build.sh`) reading the same topic with its
//!    `kafka_franz` input and posting every message to the same receiver with `http_client`,
//!    measured the same way;
//! 9. `soak` (only when asked for): the bridge (blackhole) under a paced load for
//!    `--soak-seconds` with a short `store.retention`, its RSS and store size sampled every
//!    10 s, to show whether memory stays flat once compaction keeps up.
//!
//! Each phase runs `--runs` times; medians are reported in tables at the end. See
//! BENCHMARKS.md for figures and the command lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Parser, ValueEnum};
use polaris_bridge::log::{now_ms, SourceRecord, TaskLog, TaskRecord};
use polaris_bridge::metrics as m;
use polaris_bridge_api::samples::sample_event;
use polaris_bridge_api::{codec, PolarisEvent, TaskId};
use polaris_bridge_webhook as webhook;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, DeliveryResult, Message};
use rdkafka::producer::{
    BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext,
};

/// What the benchmark can measure; `--phases` picks some, run in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// A bare consumer reading the topic.
    Transport,
    /// A bare consumer decoding every message with the bridge's codec, nothing else.
    Decode,
    /// The task log alone.
    Storage,
    /// The bridge end to end with a blackhole connector.
    Bridge,
    /// The bridge's latencies under a paced load.
    Latency,
    /// The HTTP limit: a bare reqwest client posting signed requests to the local receiver.
    Http,
    /// The bridge's webhook deliveries to the local receiver.
    Webhook,
    /// Redpanda Connect posting the topic to the local receiver.
    Peer,
    /// The bridge (blackhole) under a paced load for minutes, with a short retention:
    /// whether its memory stays flat. Not among the defaults (it takes `--soak-seconds`).
    Soak,
}

/// Benchmark options.
#[derive(Parser, Debug)]
#[command(
    name = "polaris-bridge-bench",
    about = "Benchmarks polaris-bridge against its transport and storage limits, its latency, and the Redpanda Connect peer"
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
    /// Phases to run, comma-separated (always in the order listed here).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [Phase::Transport, Phase::Decode, Phase::Storage, Phase::Bridge, Phase::Latency, Phase::Http, Phase::Webhook, Phase::Peer]
    )]
    phases: Vec<Phase>,
    /// Messages per task log flush, as the bridge's `source.batch_size`.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// sled cache in MiB, as the bridge's `store.cache_capacity_mb`.
    #[arg(long, default_value_t = 16)]
    cache_mb: u64,
    /// Latency phase: events produced per second (comma-separated: one phase per rate) ...
    #[arg(long, value_delimiter = ',', default_values_t = [20_000])]
    latency_rate: Vec<u64>,
    /// ... for this many seconds ...
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// ... after a warm-up at the same rate for this many seconds, not measured (the
    /// consumer's first fetches and offset reset, cold caches).
    #[arg(long, default_value_t = 2)]
    latency_warmup_seconds: u64,
    /// Soak phase: events produced per second ...
    #[arg(long, default_value_t = 20_000)]
    soak_rate: u64,
    /// ... for this many seconds ...
    #[arg(long, default_value_t = 600)]
    soak_seconds: u64,
    /// ... into a bridge that keeps finished tasks (and their dedup entries) this long
    /// (`store.retention`) and compacts every tenth of it.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    soak_retention: Duration,
    /// Webhook and peer phases: requests in flight (the bridge connector's `concurrency`,
    /// the peer's `max_in_flight`).
    #[arg(long, default_value_t = 64)]
    webhook_concurrency: usize,
    /// Webhook phase: `ordered = true` for the connector (one task at a time per table).
    /// Off by default, as the peer does not order.
    #[arg(long)]
    webhook_ordered: bool,
    /// Receiver: verify the Standard Webhooks signature of every Nth request (1: all).
    #[arg(long, default_value_t = 1)]
    verify_every: u64,
    /// Receiver: worker threads of its runtime.
    #[arg(long, default_value_t = 2)]
    receiver_threads: usize,
    /// Peer phase: idle keep-alive connections per host of the peer's HTTP transport
    /// (`PEER_MAX_IDLE_CONNS_PER_HOST`, see bench/peer/README.md); default
    /// `--webhook-concurrency`, 0 for Go's default (2).
    #[arg(long)]
    peer_idle_conns: Option<usize>,
    /// The Redpanda Connect peer binary (default: where bench/peer/build.sh puts it).
    #[arg(long)]
    peer: Option<PathBuf>,
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

impl Args {
    /// Whether `phase` was asked for.
    fn has(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

/// One throughput phase's result.
#[derive(Debug, Clone, Default)]
struct Figures {
    /// Events (or deliveries) per second.
    events_per_s: f64,
    /// Peak resident set size of the measured process.
    peak_rss_mib: f64,
    /// CPU seconds of the measured process per million events.
    cpu_s_per_million: f64,
    /// Bytes on disk per million events.
    disk_bytes_per_million: f64,
}

/// One delivery phase's result (HTTP limit, webhook or peer), as the receiver saw it.
#[derive(Debug, Clone, Default)]
struct Deliveries {
    /// Requests answered 2xx per second, from the first to the last.
    per_s: f64,
    /// Peak RSS of the sender when it is a process of its own (not the HTTP limit's client,
    /// which runs in the bench process).
    peak_rss_mib: Option<f64>,
    /// The sender's CPU seconds (a process's or its threads', from their start) to the
    /// last delivery, per million deliveries.
    cpu_s_per_million: f64,
    /// The receiver threads' CPU seconds per million deliveries.
    receiver_cpu_s_per_million: f64,
    /// Requests received.
    requests: u64,
    /// Requests whose delivery (webhook-id, or body for the peer) had been received before.
    duplicates: u64,
    /// TCP connections the sender opened to the receiver.
    connections: u64,
    /// Signatures verified (all good: a bad one fails the run).
    verified: u64,
}

impl std::fmt::Display for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} deliveries/s, peak RSS {} MiB, {:.1} CPU s/M (receiver {:.1}), {} requests, {} duplicates, {} connections, {} signatures verified",
            self.per_s,
            self.peak_rss_mib
                .map_or_else(|| "-".to_string(), |mib| format!("{mib:.0}")),
            self.cpu_s_per_million,
            self.receiver_cpu_s_per_million,
            self.requests,
            self.duplicates,
            self.connections,
            self.verified
        )
    }
}

/// p50 and p99 of one histogram over a phase.
#[derive(Debug, Clone, Copy, Default)]
struct Quantiles {
    /// Median, seconds.
    p50: f64,
    /// 99th percentile, seconds.
    p99: f64,
    /// Observations over the phase.
    count: f64,
}

/// One latency run's result.
#[derive(Debug, Clone, Default)]
struct Latency {
    /// Events per second asked for (`--latency-rate`).
    rate: u64,
    /// The Kafka path alone under the same load: message timestamp to a bare consumer's
    /// poll, exact quantiles (millisecond resolution).
    transport: Quantiles,
    /// Events per second the paced producer achieved.
    offered_per_s: f64,
    /// `polaris_bridge_message_to_durable_seconds` over the phase.
    durable: Quantiles,
    /// `polaris_bridge_event_to_delivery_seconds` over the phase, when exported.
    delivery: Option<Quantiles>,
    /// `polaris_bridge_log_flush_duration_seconds` over the phase.
    flush: Option<Quantiles>,
    /// The bridge's CPU over the phase, in cores (1.0 = one core busy).
    cpu_cores: f64,
    /// Peak RSS of the bridge.
    peak_rss_mib: f64,
    /// Seconds from the last event produced to the last task finished: about 0 when the
    /// bridge kept up with the rate, the backlog it built up otherwise.
    drain_s: f64,
}

/// Everything measured, run by run.
#[derive(Debug, Default)]
struct Results {
    /// Transport limit runs.
    transport: Vec<Figures>,
    /// Decode limit runs.
    decode: Vec<Figures>,
    /// Storage limit runs.
    storage: Vec<Figures>,
    /// Bridge (blackhole) runs.
    bridge: Vec<Figures>,
    /// Latency runs.
    latency: Vec<Latency>,
    /// HTTP limit runs.
    http: Vec<Deliveries>,
    /// Bridge webhook runs.
    webhook: Vec<Deliveries>,
    /// Peer runs.
    peer: Vec<Deliveries>,
    /// Soak runs.
    soak: Vec<Soak>,
}

/// One sample of a soak run.
#[derive(Debug, Clone, Copy, Default)]
struct SoakSample {
    /// Seconds since the paced load started.
    at_s: f64,
    /// Resident set size of the bridge (VmRSS).
    rss_mib: f64,
    /// What is allocated with glibc's malloc (librdkafka's buffers and queues, with the
    /// default allocator), MiB, as of the bridge's last 5-second refresh.
    c_heap_mib: f64,
    /// librdkafka's prefetch queues, MiB, as of its last 5-second statistics.
    prefetched_mib: f64,
    /// Size of its store on disk, MiB.
    store_mib: f64,
    /// Tasks finished so far.
    finished: f64,
    /// Tasks compacted away so far.
    compacted: f64,
}

impl SoakSample {
    /// The sample as a row of the soak table (seconds, RSS, C heap, prefetched, store MiB,
    /// finished, compacted).
    fn row(&self) -> String {
        format!(
            "| {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} |",
            self.at_s,
            self.rss_mib,
            self.c_heap_mib,
            self.prefetched_mib,
            self.store_mib,
            self.finished,
            self.compacted
        )
    }
}

/// One soak run: the samples, and the figures over the whole run.
#[derive(Debug, Clone, Default)]
struct Soak {
    /// Events per second the paced producer achieved.
    offered_per_s: f64,
    /// A sample every [`SOAK_SAMPLE_EVERY`], the last one once every task finished.
    samples: Vec<SoakSample>,
    /// Peak RSS of the bridge over the run (VmHWM).
    peak_rss_mib: f64,
    /// The bridge's CPU over the run, in cores.
    cpu_cores: f64,
}

/// The bridge's allocator (the default `mimalloc` feature), so that the phases run in this
/// process (decode, storage, HTTP limit) allocate as the bridge does: with glibc's, the
/// decode phase took 1.3x the CPU per event and the storage phase 1.1-1.6x.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the storage child, or else the chosen phases `--runs` times and prints the medians.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[cfg(feature = "mimalloc")]
    polaris_bridge::allocator::purge_freed_memory_soon();
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
    let peer_bin = match &args.peer {
        Some(p) => p.clone(),
        None => default_peer_path()?,
    };
    if args.has(Phase::Peer) && !peer_bin.exists() {
        bail!(
            "{} not found: build the peer with bench/peer/build.sh, pass --peer, or leave `peer` out of --phases",
            peer_bin.display()
        );
    }

    let topic = format!("bench-{}", now_ms());
    let mut raw_bytes = 0;
    let needs_topic = [
        Phase::Transport,
        Phase::Decode,
        Phase::Bridge,
        Phase::Http,
        Phase::Webhook,
        Phase::Peer,
    ]
    .iter()
    .any(|p| args.has(*p));
    if needs_topic {
        create_topic(&args.bootstrap, &topic, args.partitions).await?;
        let started = Instant::now();
        raw_bytes = produce(&args.bootstrap, &topic, args.events).await?;
        let produce_rate = args.events as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "produced {} events ({:.0} bytes average, {:.1} MiB) to {topic} ({} partitions) at {produce_rate:.0}/s",
            args.events,
            raw_bytes as f64 / args.events as f64,
            raw_bytes as f64 / 1048576.0,
            args.partitions
        );
    }
    let receiver = if args.has(Phase::Http) || args.has(Phase::Webhook) || args.has(Phase::Peer) {
        Some(receiver::Receiver::start(args.receiver_threads)?)
    } else {
        None
    };
    let secret = random_secret()?;

    let mut results = Results::default();
    for run in 0..args.runs {
        if args.has(Phase::Transport) {
            let f = bare_consumer(&args.bootstrap, &topic, args.events, |_| Ok(()))?;
            eprintln!(
                "run {run}: transport {:.0} events/s, {:.1} CPU s/M",
                f.events_per_s, f.cpu_s_per_million
            );
            results.transport.push(f);
        }
        if args.has(Phase::Decode) {
            let f = bare_consumer(&args.bootstrap, &topic, args.events, |message| {
                let value = message.payload().unwrap_or_default();
                codec::decode(codec::WireFormat::Auto, message.key(), value)
                    .map(drop)
                    .map_err(|e| anyhow::anyhow!("a bench event does not decode: {e}"))
            })?;
            eprintln!(
                "run {run}: decode {:.0} events/s, {:.1} CPU s/M",
                f.events_per_s, f.cpu_s_per_million
            );
            results.decode.push(f);
        }
        if args.has(Phase::Storage) {
            let store = dir.join(format!("storage-{run}"));
            let f = storage_in_child(&args, &store)?;
            let _ = std::fs::remove_dir_all(&store);
            eprintln!("run {run}: storage {:.0} events/s", f.events_per_s);
            results.storage.push(f);
        }
        if args.has(Phase::Bridge) {
            let f = bridge_end_to_end(
                &bridge_bin,
                &dir.join(format!("bridge-{run}")),
                &args,
                &topic,
            )
            .await?;
            eprintln!(
                "run {run}: bridge {:.0} events/s, peak RSS {:.0} MiB",
                f.events_per_s, f.peak_rss_mib
            );
            results.bridge.push(f);
        }
        for &rate in args
            .latency_rate
            .iter()
            .filter(|_| args.has(Phase::Latency))
        {
            let l = latency_run(
                &bridge_bin,
                &dir.join(format!("latency-{rate}-{run}")),
                &args,
                rate,
            )
            .await?;
            eprintln!(
                "run {run}: latency at {:.0}/s: Kafka alone p50 {:.0} ms p99 {:.0} ms; to durable p50 {:.1} ms p99 {:.1} ms ({:.0} observations), drained {:.1} s after the last event",
                l.offered_per_s,
                l.transport.p50 * 1e3,
                l.transport.p99 * 1e3,
                l.durable.p50 * 1e3,
                l.durable.p99 * 1e3,
                l.durable.count,
                l.drain_s
            );
            results.latency.push(l);
        }
        if let (true, Some(receiver)) = (args.has(Phase::Http), &receiver) {
            let d = http_limit(&args, run, receiver, &secret).await?;
            eprintln!("run {run}: HTTP limit {d}");
            results.http.push(d);
        }
        if let (true, Some(receiver)) = (args.has(Phase::Webhook), &receiver) {
            let d = webhook_run(
                &bridge_bin,
                &dir.join(format!("webhook-{run}")),
                &args,
                &topic,
                receiver,
                &secret,
            )
            .await?;
            eprintln!("run {run}: webhook {d}");
            results.webhook.push(d);
        }
        if let (true, Some(receiver)) = (args.has(Phase::Peer), &receiver) {
            let d = peer_run(
                &peer_bin,
                &dir.join(format!("peer-{run}")),
                &args,
                &topic,
                receiver,
            )
            .await?;
            eprintln!("run {run}: peer {d}");
            results.peer.push(d);
        }
        if args.has(Phase::Soak) {
            let soak = soak_run(&bridge_bin, &dir.join(format!("soak-{run}")), &args).await?;
            results.soak.push(soak);
        }
    }
    report(&args, &results, raw_bytes);
    Ok(())
}

/// Prints the tables of medians.
fn report(args: &Args, results: &Results, raw_bytes: usize) {
    let med = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f));
    let (t, d, s, b) = (
        med(&results.transport, |f| f.events_per_s),
        med(&results.decode, |f| f.events_per_s),
        med(&results.storage, |f| f.events_per_s),
        med(&results.bridge, |f| f.events_per_s),
    );
    let only_soak = args.phases.iter().all(|p| *p == Phase::Soak);
    if !only_soak {
        println!();
        println!(
            "{} events, {} partitions, medians of {} runs",
            args.events, args.partitions, args.runs
        );
    }
    if !(results.transport.is_empty()
        && results.decode.is_empty()
        && results.storage.is_empty()
        && results.bridge.is_empty())
    {
        println!();
        println!("| phase | events/s | peak RSS MiB | CPU s / M events | disk bytes / M events |");
        println!("|---|---|---|---|---|");
        if !results.transport.is_empty() {
            println!(
                "| transport limit (bare BaseConsumer) | {t:.0} | | {:.1} | |",
                med(&results.transport, |f| f.cpu_s_per_million)
            );
        }
        if !results.decode.is_empty() {
            println!(
                "| decode limit (bare BaseConsumer and the bridge's codec) | {d:.0} | | {:.1} | |",
                med(&results.decode, |f| f.cpu_s_per_million)
            );
        }
        if !results.storage.is_empty() {
            println!(
                "| storage limit (task log alone) | {s:.0} | {:.0} | {:.1} | {:.0} |",
                med(&results.storage, |f| f.peak_rss_mib),
                med(&results.storage, |f| f.cpu_s_per_million),
                med(&results.storage, |f| f.disk_bytes_per_million)
            );
        }
        if !results.bridge.is_empty() {
            println!(
                "| bridge end to end (blackhole) | {b:.0} | {:.0} | {:.1} | {:.0} |",
                med(&results.bridge, |f| f.peak_rss_mib),
                med(&results.bridge, |f| f.cpu_s_per_million),
                med(&results.bridge, |f| f.disk_bytes_per_million)
            );
        }
        println!();
        if b > 0.0 && s > 0.0 {
            println!("bridge / storage limit: {:.2}", b / s);
        }
        if b > 0.0 && t > 0.0 {
            println!("bridge / transport limit: {:.2}", b / t);
        }
        if s > 0.0 && d > 0.0 {
            // What 0.9 of the storage limit asks of the CPUs before any of the bridge's own
            // work (routing, the table index, the dispatch, the commits) or the broker's.
            let per_event_s = (med(&results.storage, |f| f.cpu_s_per_million)
                + med(&results.decode, |f| f.cpu_s_per_million))
                / 1e6;
            println!(
                "0.9 of the storage limit ({:.0} events/s) needs {:.2} cores for the log, consuming and decoding alone (of {} here)",
                0.9 * s,
                0.9 * s * per_event_s,
                std::thread::available_parallelism().map_or(0, usize::from)
            );
        }
    }
    if raw_bytes > 0 {
        println!(
            "raw event bytes per million events: {:.0}",
            raw_bytes as f64 / args.events as f64 * 1e6
        );
    }
    if !results.latency.is_empty() {
        println!();
        println!(
            "Latency: the bridge (blackhole) under a paced load for {} s per run (producer linger 5 ms)",
            args.latency_seconds
        );
        println!();
        println!("| offered events/s | achieved | bridge CPU cores | peak RSS MiB | drain s | Kafka alone p50 ms | p99 ms | to durable p50 ms | p99 ms | to delivery p50 ms | p99 ms | log flush p50 ms | p99 ms |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &rate in &args.latency_rate {
            let l: Vec<&Latency> = results.latency.iter().filter(|l| l.rate == rate).collect();
            let lm = |f: fn(&Latency) -> f64| median(l.iter().map(|l| f(l)));
            let (d50, d99) = quantile_cells(l.iter().filter_map(|l| l.delivery));
            let (f50, f99) = quantile_cells(l.iter().filter_map(|l| l.flush));
            println!(
                "| {rate} | {:.0} | {:.2} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {d50} | {d99} | {f50} | {f99} |",
                lm(|l| l.offered_per_s),
                lm(|l| l.cpu_cores),
                lm(|l| l.peak_rss_mib),
                lm(|l| l.drain_s),
                lm(|l| l.transport.p50) * 1e3,
                lm(|l| l.transport.p99) * 1e3,
                lm(|l| l.durable.p50) * 1e3,
                lm(|l| l.durable.p99) * 1e3,
            );
        }
        println!();
        println!(
            "Kafka alone: message timestamp to a bare consumer's poll; to durable: {}; to delivery: {} (blackhole connector)",
            m::DURABLE_LATENCY,
            m::END_TO_END_LATENCY
        );
    }
    if !(results.http.is_empty() && results.webhook.is_empty() && results.peer.is_empty()) {
        println!();
        println!(
            "Deliveries to the local receiver ({} in flight; the bridge's signatures verified on {})",
            args.webhook_concurrency,
            ordinal(args.verify_every)
        );
        println!();
        println!("| sender | deliveries/s | peak RSS MiB | CPU s / M | receiver CPU s / M | requests | duplicates | connections |");
        println!("|---|---|---|---|---|---|---|---|");
        let row = |name: &str, v: &[Deliveries]| {
            let dm = |f: fn(&Deliveries) -> f64| median(v.iter().map(f));
            let rss: Vec<f64> = v.iter().filter_map(|d| d.peak_rss_mib).collect();
            let rss = if rss.is_empty() {
                String::new()
            } else {
                format!("{:.0}", median(rss.into_iter()))
            };
            println!(
                "| {name} | {:.0} | {rss} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |",
                dm(|d| d.per_s),
                dm(|d| d.cpu_s_per_million),
                dm(|d| d.receiver_cpu_s_per_million),
                dm(|d| d.requests as f64),
                dm(|d| d.duplicates as f64),
                dm(|d| d.connections as f64)
            );
        };
        if !results.http.is_empty() {
            row(
                "HTTP limit: bare reqwest client (signed requests built beforehand, nothing else)",
                &results.http,
            );
        }
        if !results.webhook.is_empty() {
            row(
                "polaris-bridge webhook (signed, deduplicated, durably logged)",
                &results.webhook,
            );
        }
        if !results.peer.is_empty() {
            row("Redpanda Connect kafka_franz -> http_client", &results.peer);
        }
        if !results.peer.is_empty() {
            println!();
            println!(
                "peer: kafka_franz input (own consumer group, from the earliest offset), http_client output (POST, max_in_flight {}, {} idle keep-alive connections per host)",
                args.webhook_concurrency,
                match args.peer_idle_conns.unwrap_or(args.webhook_concurrency) {
                    0 => "Go's default of 2".to_string(),
                    n => n.to_string(),
                }
            );
        }
        let h = median(results.http.iter().map(|d| d.per_s));
        let w = median(results.webhook.iter().map(|d| d.per_s));
        let p = median(results.peer.iter().map(|d| d.per_s));
        if w > 0.0 && p > 0.0 {
            println!();
            println!("bridge / peer deliveries/s: {:.2}", w / p);
        }
        if h > 0.0 && (w > 0.0 || p > 0.0) {
            println!();
            if w > 0.0 {
                println!("bridge / HTTP limit: {:.2}", w / h);
            }
            if p > 0.0 {
                println!("peer / HTTP limit: {:.2}", p / h);
            }
        }
    }
    for (run, soak) in results.soak.iter().enumerate() {
        report_soak(args, run, soak);
    }
}

/// Prints one soak run: its samples a minute apart (and the last), then how RSS moved.
fn report_soak(args: &Args, run: usize, soak: &Soak) {
    println!();
    println!(
        "Soak run {run}: the bridge (blackhole) at {:.0} events/s offered for {} s, store.retention {}, {:.2} CPU cores, peak RSS {:.0} MiB",
        soak.offered_per_s,
        args.soak_seconds,
        humantime::format_duration(args.soak_retention),
        soak.cpu_cores,
        soak.peak_rss_mib
    );
    println!();
    println!("| s | RSS MiB | C heap MiB | prefetched MiB | store MiB | tasks finished | tasks compacted |");
    println!("|---|---|---|---|---|---|---|");
    let per_minute = (60.0 / SOAK_SAMPLE_EVERY.as_secs_f64()).round().max(1.0) as usize;
    let last = soak.samples.len().saturating_sub(1);
    for (i, sample) in soak.samples.iter().enumerate() {
        if (i + 1) % per_minute == 0 || i == last {
            println!("{}", sample.row());
        }
    }
    // Flat: the second half's highest RSS against the first half's (after the first
    // retention period, the log stops growing once compaction keeps up).
    let half = soak.samples.len() / 2;
    let high = |samples: &[SoakSample]| samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let (first, second) = (high(&soak.samples[..half]), high(&soak.samples[half..]));
    if first > 0.0 {
        println!();
        println!(
            "highest RSS, first half {first:.0} MiB, second half {second:.0} MiB (ratio {:.2})",
            second / first
        );
    }
}

/// Table cells of the median p50 and p99 of some runs, in milliseconds ("not exported" when
/// no run had the histogram).
fn quantile_cells(runs: impl Iterator<Item = Quantiles>) -> (String, String) {
    let runs: Vec<Quantiles> = runs.collect();
    if runs.is_empty() {
        return ("not exported".to_string(), String::new());
    }
    (
        format!("{:.1}", median(runs.iter().map(|q| q.p50)) * 1e3),
        format!("{:.1}", median(runs.iter().map(|q| q.p99)) * 1e3),
    )
}

/// "every request", "every 2nd request", "every 100th request" ...
fn ordinal(n: u64) -> String {
    match n {
        0 | 1 => "every request".to_string(),
        2 => "every 2nd request".to_string(),
        3 => "every 3rd request".to_string(),
        n => format!("every {n}th request"),
    }
}

/// The median (the upper one for an even count); 0 for none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Where bench/peer/build.sh puts the peer.
fn default_peer_path() -> anyhow::Result<PathBuf> {
    let cache = match std::env::var_os("POLARIS_BRIDGE_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/polaris-bridge"),
    };
    Ok(cache.join("bin/redpanda-connect-peer"))
}

/// A fresh Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes.
fn random_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

/// Creates `topic` with `partitions` partitions, replication 1.
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

/// The `i`-th message value: stock JSON for even `i`, Confluent Avro for odd `i`.
fn encode_sample(i: usize, event: &PolarisEvent) -> Vec<u8> {
    if i % 2 == 0 {
        codec::encode_polaris_json(event)
    } else {
        codec::encode_avro_confluent(event, 1)
    }
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
        let value = encode_sample(i, &event);
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

/// A plain consumer of `topic` in a new group, from the earliest offset, committing nothing,
/// with the bridge's prefetch settings (its default `source.prefetch_kbytes`, and the 10 ms
/// fetch backoff without which a consumer slower than the broker waits a second whenever its
/// queue is full: the decode phase ran at about 120,000 events/s on half a core).
fn subscribe_bare(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-bare-{}", now_ms()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set(
            "queued.max.messages.kbytes",
            polaris_bridge::config::SourceConfig::default()
                .prefetch_kbytes
                .to_string(),
        )
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Phases 1 and 2: a consumer that reads every message, hands it to `each` and does nothing
/// else: events/s from the first message to the last, and this process's CPU (the polling
/// thread's and librdkafka's; the rest of the bench is idle meanwhile) per million events.
fn bare_consumer(
    bootstrap: &str,
    topic: &str,
    count: usize,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Figures> {
    let cpu_before = cpu_seconds(std::process::id())?;
    let consumer = subscribe_bare(bootstrap, topic)?;
    let mut seen = 0usize;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < count {
        if Instant::now() > deadline {
            bail!("bare consumer read only {seen} of {count}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                started.get_or_insert_with(Instant::now);
                each(&message)?;
                seen += 1;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    let cpu = cpu_seconds(std::process::id())? - cpu_before;
    Ok(Figures {
        events_per_s: count as f64 / elapsed.as_secs_f64(),
        cpu_s_per_million: cpu * 1e6 / count as f64,
        ..Figures::default()
    })
}

/// Runs phase 3 in a child process and reads its figures.
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

/// Phase 3: the task log alone, written as the source writes it: one insert per event into
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

/// A `polaris-bridge run` child process; stopped (SIGTERM, then SIGKILL) when dropped.
struct BridgeProcess {
    /// The process.
    child: Child,
    /// Its `/metrics` address.
    metrics: std::net::SocketAddr,
    /// Its store directory.
    store: PathBuf,
}

/// The blackhole connector of the bridge and latency phases.
const BLACKHOLE: &str = r#"
[connectors.null]
type = "blackhole"
concurrency = 64
ordered = false

[[routes]]
connector = "null"
"#;

impl BridgeProcess {
    /// Writes a configuration into `dir` (emptied first) that reads `topic` from the start
    /// with the bench's batch and cache settings, never pauses below `backlog` unfinished
    /// tasks, and adds `connectors` (TOML of connectors and routes); then starts the bridge
    /// with `env` added to its environment.
    fn start(
        bin: &Path,
        dir: &Path,
        args: &Args,
        topic: &str,
        backlog: usize,
        connectors: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<BridgeProcess> {
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
max_backlog = {max_backlog}
resume_backlog = {resume}

[http]
listen = "127.0.0.1:{port}"
{connectors}"#,
            bootstrap = args.bootstrap,
            group = now_ms(),
            store = store.display(),
            cache = args.cache_mb,
            batch = args.batch_size,
            max_backlog = backlog * 2,
            resume = backlog,
        );
        let config_path = dir.join("bridge.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("bridge.log"))?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(BridgeProcess {
            child,
            metrics: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            store,
        })
    }

    /// The process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the bridge exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the bridge exited early: {status} (see its bridge.log)"),
            None => Ok(()),
        }
    }

    /// Its `/metrics` text, once it answers.
    fn scrape(&self) -> Option<String> {
        scrape(self.metrics)
    }

    /// Waits until `tasks` tasks finished (5 minutes at most); returns the `/metrics` text
    /// that shows it.
    async fn wait_finished(&mut self, tasks: u64) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            self.check_alive()?;
            if let Some(text) = self.scrape() {
                if polaris_bridge::demo::sum(&text, m::TASKS_FINISHED, None) >= tasks as f64 {
                    return Ok(text);
                }
            }
            if Instant::now() > deadline {
                bail!("the bridge did not finish {tasks} tasks within 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the consumer has all `partitions` of its topic assigned.
    async fn wait_assigned(&mut self, partitions: i32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check_alive()?;
            if let Some(text) = self.scrape() {
                if polaris_bridge::demo::sum(&text, m::ASSIGNED_PARTITIONS, None)
                    >= partitions as f64
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the bridge got no partition assignment within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for BridgeProcess {
    /// Stops the bridge and deletes its store (hundreds of MB per run; the configuration
    /// and the log stay).
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// Sends SIGTERM to `child` and waits up to 30 s for it, then kills it.
fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (try_wait above).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Phase 4: the real bridge process with a blackhole connector.
async fn bridge_end_to_end(
    bin: &Path,
    dir: &Path,
    args: &Args,
    topic: &str,
) -> anyhow::Result<Figures> {
    let mut bridge = BridgeProcess::start(bin, dir, args, topic, args.events, BLACKHOLE, &[])?;
    let mut figures = watch_bridge(&mut bridge, args.events).await?;
    terminate(&mut bridge.child);
    figures.disk_bytes_per_million = dir_size(&bridge.store) as f64 * 1e6 / args.events as f64;
    Ok(figures)
}

/// Polls the bridge's metrics until `events` tasks finished; events/s and CPU are counted
/// from the first consumed message.
async fn watch_bridge(bridge: &mut BridgeProcess, events: usize) -> anyhow::Result<Figures> {
    let pid = bridge.pid();
    let mut first: Option<(Instant, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut cpu_at_first = 0.0;
    loop {
        bridge.check_alive()?;
        if Instant::now() > deadline {
            bail!("the bridge did not finish within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(text) = bridge.scrape() else {
            continue;
        };
        let consumed = polaris_bridge::demo::sum(&text, m::EVENTS_CONSUMED, None);
        let finished = polaris_bridge::demo::sum(&text, m::TASKS_FINISHED, None);
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

/// How often a soak run samples the bridge.
const SOAK_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The soak phase: the bridge (blackhole) on a fresh topic, with `--soak-retention`, while
/// events are produced at `--soak-rate` for `--soak-seconds`; RSS, store size and task
/// counts sampled every [`SOAK_SAMPLE_EVERY`] and once more when every task finished.
async fn soak_run(bin: &Path, dir: &Path, args: &Args) -> anyhow::Result<Soak> {
    let count = args.soak_rate * args.soak_seconds;
    let topic = format!("bench-soak-{}", now_ms());
    create_topic(&args.bootstrap, &topic, args.partitions).await?;
    let retention = humantime::format_duration(args.soak_retention).to_string();
    let interval =
        humantime::format_duration((args.soak_retention / 10).max(Duration::from_secs(1)))
            .to_string();
    let env = [
        ("POLARIS_BRIDGE__STORE__RETENTION", retention.as_str()),
        (
            "POLARIS_BRIDGE__STORE__COMPACTION_INTERVAL",
            interval.as_str(),
        ),
    ];
    let backlog = usize::try_from(args.soak_rate * 10)?.max(args.events);
    let mut bridge = BridgeProcess::start(bin, dir, args, &topic, backlog, BLACKHOLE, &env)?;
    bridge.wait_assigned(args.partitions).await?;
    let pid = bridge.pid();
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let (bootstrap, paced_topic, rate) = (args.bootstrap.clone(), topic.clone(), args.soak_rate);
    let mut producer = tokio::task::spawn_blocking(move || {
        produce_paced(&bootstrap, &paced_topic, rate, 0, count)
    });
    let mut offered_per_s = None;
    let mut samples = Vec::new();
    let mut next = started + SOAK_SAMPLE_EVERY;
    loop {
        bridge.check_alive()?;
        if offered_per_s.is_none() && producer.is_finished() {
            offered_per_s = Some((&mut producer).await??);
        }
        // Sampled when due, and after the load until every task finished: a scrape and a
        // walk of the store cost the bridge and the disk something, so not on every turn.
        let done = offered_per_s.is_some();
        let due = Instant::now() >= next;
        if due || done {
            let sample = soak_sample(&bridge, started)?;
            let finished_all = sample.finished >= count as f64;
            if due || finished_all {
                eprintln!("soak {}", sample.row());
                samples.push(sample);
            }
            if due {
                next += SOAK_SAMPLE_EVERY;
            }
            if done && finished_all {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(args.soak_seconds + 300) {
            bail!("the soak run did not finish within 5 minutes of the load's end");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_cores = (cpu_seconds(pid)? - cpu_before) / started.elapsed().as_secs_f64();
    Ok(Soak {
        offered_per_s: offered_per_s.unwrap_or_default(),
        samples,
        peak_rss_mib: peak_rss_mib(pid)?,
        cpu_cores,
    })
}

/// The bridge's RSS, store size and task counters now.
fn soak_sample(bridge: &BridgeProcess, started: Instant) -> anyhow::Result<SoakSample> {
    let text = bridge.scrape().unwrap_or_default();
    Ok(SoakSample {
        at_s: started.elapsed().as_secs_f64(),
        rss_mib: status_mib(bridge.pid(), "VmRSS:")?,
        c_heap_mib: polaris_bridge::demo::sum(&text, m::C_HEAP_BYTES, None) / 1048576.0,
        prefetched_mib: polaris_bridge::demo::sum(&text, m::SOURCE_PREFETCHED_BYTES, None)
            / 1048576.0,
        store_mib: dir_size(&bridge.store) as f64 / 1048576.0,
        finished: polaris_bridge::demo::sum(&text, m::TASKS_FINISHED, None),
        compacted: polaris_bridge::demo::sum(&text, m::TASKS_COMPACTED, None),
    })
}

/// Phase 5: the bridge (blackhole) on a fresh topic while events are produced at `rate`
/// per second for `--latency-seconds`, after a warm-up at the same rate; quantiles of its
/// latency histograms over the measured part, from `/metrics` scraped once the warm-up's
/// tasks finished and again once every task finished.
async fn latency_run(bin: &Path, dir: &Path, args: &Args, rate: u64) -> anyhow::Result<Latency> {
    let warmup = rate * args.latency_warmup_seconds;
    let count = rate * args.latency_seconds;
    let topic = format!("bench-latency-transport-{}", now_ms());
    create_topic(&args.bootstrap, &topic, args.partitions).await?;
    let (bootstrap, partitions) = (args.bootstrap.clone(), args.partitions);
    let transport = tokio::task::spawn_blocking(move || {
        transport_latency(&bootstrap, &topic, partitions, rate, warmup, count)
    })
    .await??;
    let topic = format!("bench-latency-{}", now_ms());
    create_topic(&args.bootstrap, &topic, args.partitions).await?;
    let backlog = usize::try_from(warmup + count)?.max(args.events);
    let mut bridge = BridgeProcess::start(bin, dir, args, &topic, backlog, BLACKHOLE, &[])?;
    bridge.wait_assigned(args.partitions).await?;
    let (bootstrap, paced_topic) = (args.bootstrap.clone(), topic.clone());
    tokio::task::spawn_blocking(move || produce_paced(&bootstrap, &paced_topic, rate, 0, warmup))
        .await??;
    let before = bridge.wait_finished(warmup).await?;
    let pid = bridge.pid();
    let cpu_before = cpu_seconds(pid)?;
    let started = Instant::now();
    let (bootstrap, paced_topic) = (args.bootstrap.clone(), topic.clone());
    let offered_per_s = tokio::task::spawn_blocking(move || {
        produce_paced(&bootstrap, &paced_topic, rate, warmup, count)
    })
    .await??;
    let produced = Instant::now();
    let after = bridge.wait_finished(warmup + count).await?;
    let drain_s = produced.elapsed().as_secs_f64();
    let cpu_cores = (cpu_seconds(pid)? - cpu_before) / started.elapsed().as_secs_f64();
    let peak_rss_mib = peak_rss_mib(pid)?;
    drop(bridge);
    let over_phase = |name: &str| {
        let buckets = histogram_delta(&after, &before, name);
        let count = buckets.last().map_or(0.0, |(_, n)| *n);
        Some(Quantiles {
            p50: histogram_quantile(0.5, &buckets)?,
            p99: histogram_quantile(0.99, &buckets)?,
            count,
        })
    };
    Ok(Latency {
        rate,
        transport,
        offered_per_s,
        durable: over_phase(m::DURABLE_LATENCY)
            .with_context(|| format!("no {} observations over the phase", m::DURABLE_LATENCY))?,
        delivery: over_phase(m::END_TO_END_LATENCY),
        flush: over_phase(m::LOG_FLUSH_DURATION),
        cpu_cores,
        peak_rss_mib,
        drain_s,
    })
}

/// The Kafka path alone: a bare consumer reads `topic` while `warmup + count` events are
/// produced at `rate` per second; exact p50/p99 of message timestamp to poll over the events
/// after the warm-up.
fn transport_latency(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: u64,
    warmup: u64,
    count: u64,
) -> anyhow::Result<Quantiles> {
    let consumer = subscribe_bare(bootstrap, topic)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumer.assignment()?.count() < usize::try_from(partitions)? {
        if Instant::now() > deadline {
            bail!("the bare consumer got no assignment within 2 minutes");
        }
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            eprintln!("bare consumer: {e}");
        }
    }
    let measured_from = now_ms() + i64::try_from(warmup * 1000 / rate.max(1))?;
    let (producer_bootstrap, producer_topic) = (bootstrap.to_string(), topic.to_string());
    let producer = std::thread::spawn(move || {
        produce_paced(
            &producer_bootstrap,
            &producer_topic,
            rate,
            0,
            warmup + count,
        )
    });
    let mut latencies = Vec::with_capacity(usize::try_from(count)?);
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < warmup + count {
        if Instant::now() > deadline {
            bail!("the bare consumer read only {seen} paced messages within 5 minutes");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                seen += 1;
                if let Some(ms) = message.timestamp().to_millis() {
                    if ms >= measured_from {
                        latencies.push((now_ms() - ms).max(0));
                    }
                }
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the paced producer panicked"))??;
    latencies.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1] as f64 / 1000.0
    };
    if latencies.is_empty() {
        bail!("no paced message was read after the warm-up");
    }
    Ok(Quantiles {
        p50: at(0.5),
        p99: at(0.99),
        count: latencies.len() as f64,
    })
}

/// Counts the paced producer's delivery reports.
#[derive(Default)]
struct DeliveryCounter {
    /// Messages the broker refused or that timed out.
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces sample events `first` to `first + count - 1` (seed 7, JSON and Avro
/// alternating) at `rate` per second, each with its event timestamp and Kafka timestamp set
/// to the moment it is produced; returns the rate achieved. The producer lingers 5 ms (the
/// Java client's default).
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    first: u64,
    count: u64,
) -> anyhow::Result<f64> {
    let producer: BaseProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(DeliveryCounter::default())?;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(count);
        while sent < due {
            let mut event = sample_event(first + sent, 7);
            let now = now_ms();
            event.timestamp_ms = Some(now);
            let value = encode_sample(usize::try_from(first + sent)?, &event);
            let key = codec::record_key(&event);
            let mut record = BaseRecord::<[u8], [u8]>::to(topic)
                .payload(&value)
                .timestamp(now);
            if let Some(key) = &key {
                record = record.key(key);
            }
            while let Err((e, back)) = producer.send(record) {
                if e != KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) {
                    bail!("producing: {e}");
                }
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = started.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(60))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {count} paced messages were not delivered to the broker");
    }
    Ok(count as f64 / elapsed)
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` in `after` minus those
/// in `before`, summed over its label sets, by increasing bound (`+Inf` last).
fn histogram_delta(after: &str, before: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let read = |text: &str| {
        let mut by_bound: HashMap<u64, f64> = HashMap::new();
        for (labels, value) in polaris_bridge::demo::series(text, &bucket) {
            let Some(le) = labels
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("le=\""))
                .map(|v| v.trim_end_matches('"'))
            else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            *by_bound.entry(bound.to_bits()).or_default() += value;
        }
        by_bound
    };
    let (a, b) = (read(after), read(before));
    let mut buckets: Vec<(f64, f64)> = a
        .iter()
        .map(|(bits, n)| {
            (
                f64::from_bits(*bits),
                n - b.get(bits).copied().unwrap_or(0.0),
            )
        })
        .collect();
    buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
    buckets
}

/// The `q` quantile of cumulative buckets, as Prometheus's `histogram_quantile` computes it:
/// linear interpolation inside the bucket that holds the rank (from 0 for the first bucket);
/// a rank in the `+Inf` bucket gives the highest finite bound. `None` without observations.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, cumulative) in buckets {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let inside = cumulative - lower.1;
            if inside <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / inside);
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

/// Phase 7: the bridge with a `webhook` connector (signing on, Standard Webhooks headers,
/// `--webhook-concurrency` requests in flight) posting every event of `topic` to the
/// receiver, which verifies the signatures.
async fn webhook_run(
    bin: &Path,
    dir: &Path,
    args: &Args,
    topic: &str,
    receiver: &receiver::Receiver,
    secret: &str,
) -> anyhow::Result<Deliveries> {
    let endpoint = signed_endpoint(args, receiver, secret)?;
    let connectors = format!(
        r#"
[connectors.hook]
type = "webhook"
url = "{url}"
secret_env = "BENCH_WEBHOOK_SECRET"
concurrency = {concurrency}
ordered = {ordered}

[[routes]]
connector = "hook"
"#,
        url = endpoint.url,
        concurrency = args.webhook_concurrency,
        ordered = args.webhook_ordered,
    );
    let mut bridge = BridgeProcess::start(
        bin,
        dir,
        args,
        topic,
        args.events,
        &connectors,
        &[("BENCH_WEBHOOK_SECRET", secret)],
    )?;
    let pid = bridge.pid();
    watch_deliveries(Sender::Process(pid), &endpoint, args.events, || {
        bridge.check_alive()
    })
    .await
}

/// A fresh receiver endpoint that checks the Standard Webhooks signature made with `secret`
/// on every `--verify-every`th request.
fn signed_endpoint(
    args: &Args,
    receiver: &receiver::Receiver,
    secret: &str,
) -> anyhow::Result<receiver::Endpoint> {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_"))?;
    receiver.listen(
        receiver::Check::Signed {
            key,
            every: args.verify_every.max(1),
        },
        args.events,
    )
}

/// The name of the HTTP limit client's threads (so that their CPU is measured apart),
/// followed by the run's number: a runtime of an earlier run may still be winding down.
const HTTP_CLIENT_THREAD: &str = "bench-http-";

/// Distinct request bodies the HTTP limit builds beforehand; request `i` carries body
/// `i % HTTP_BODIES` under its own `webhook-id`.
const HTTP_BODIES: usize = 4096;

/// Phase 6: the HTTP limit. A bare reqwest client, built by the webhook connector's own
/// `build_client`, posts `events` signed CloudEvents requests to the receiver with
/// `--webhook-concurrency` in flight, on a runtime of its own (2 workers, as the bridge has
/// on this machine): the connector's request (same headers, a Standard Webhooks signature
/// made per request) without Kafka, decoding, the task log or the dispatcher. The bodies are
/// the structured CloudEvents of the bench's sample events, built before the phase starts.
async fn http_limit(
    args: &Args,
    run: usize,
    receiver: &receiver::Receiver,
    secret: &str,
) -> anyhow::Result<Deliveries> {
    let endpoint = signed_endpoint(args, receiver, secret)?;
    let problems = |problems: Vec<webhook::config::ConfigProblem>| {
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.problem))
            .collect();
        anyhow::anyhow!("webhook client settings: {}", text.join("; "))
    };
    let config: webhook::config::WebhookConfig = toml::from_str(&format!(
        "url = \"{}\"\nsecret_env = \"BENCH_WEBHOOK_SECRET\"",
        endpoint.url
    ))?;
    let client =
        webhook::client::build_client(&config, args.webhook_concurrency).map_err(problems)?;
    let url = webhook::client::parse_url(&config.url).map_err(|p| problems(vec![p]))?;
    let mut header_problems = Vec::new();
    let headers = webhook::client::static_headers(&config.headers, &mut header_problems);
    if !header_problems.is_empty() {
        return Err(problems(header_problems));
    }
    let secret = webhook::signing::Secret::parse(secret, "bench").map_err(anyhow::Error::msg)?;
    let bodies = (0..HTTP_BODIES.min(args.events))
        .map(|i| {
            let event = bench_event(i);
            let realm = event.realm_id.clone().unwrap_or_else(|| "POLARIS".into());
            let delivery = polaris_bridge_api::Delivery {
                task_id: TaskId::for_event("hook", &realm, &event),
                connector: "hook".to_string(),
                attempt: 1,
                realm,
                event,
                source: polaris_bridge_api::connector::SourcePosition {
                    topic: "bench".to_string(),
                    partition: 0,
                    offset: i as i64,
                },
                checkpoint: None,
            };
            let payload = webhook::payload::build(webhook::config::Mode::Structured, &delivery);
            (payload.headers, axum::body::Bytes::from(payload.body))
        })
        .collect();
    let sender = Arc::new(HttpLimitSender {
        client,
        url,
        headers,
        signer: webhook::signing::Signer::new(vec![secret]),
        bodies,
        events: args.events,
        next: AtomicUsize::new(0),
        failure: Mutex::new(None),
    });
    let threads = format!("{HTTP_CLIENT_THREAD}{run}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(&threads)
        .enable_all()
        .build()?;
    for _ in 0..args.webhook_concurrency.max(1) {
        runtime.spawn(Arc::clone(&sender).send_all());
    }
    let result = watch_deliveries(
        Sender::Threads(&threads),
        &endpoint,
        args.events,
        || match sender.failure.lock().map(|f| f.clone()) {
            Ok(Some(failure)) => bail!("the HTTP limit's client failed: {failure}"),
            Ok(None) => Ok(()),
            Err(_) => bail!("the HTTP limit's client panicked"),
        },
    )
    .await;
    runtime.shutdown_background();
    result
}

/// The HTTP limit's client and its requests, shared by its senders.
struct HttpLimitSender {
    /// Built as the webhook connector builds its client.
    client: reqwest::Client,
    /// The receiver's endpoint.
    url: reqwest::Url,
    /// The endpoint's static headers (none), as the connector keeps them.
    headers: reqwest::header::HeaderMap,
    /// Signs every request (Standard Webhooks).
    signer: webhook::signing::Signer,
    /// CloudEvents headers and bodies, built beforehand.
    bodies: Vec<(Vec<(String, String)>, axum::body::Bytes)>,
    /// Requests to send.
    events: usize,
    /// The next request to send.
    next: AtomicUsize,
    /// The first failure (a request error or a status other than 2xx).
    failure: Mutex<Option<String>>,
}

impl HttpLimitSender {
    /// Sends requests one after the other until all are taken or one fails.
    async fn send_all(self: Arc<Self>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.events {
                return;
            }
            if let Err(failure) = self.send(i).await {
                if let Ok(mut first) = self.failure.lock() {
                    first.get_or_insert(failure);
                }
                return;
            }
        }
    }

    /// Sends request `i` (its `webhook-id` is `i` in 32 hex digits: the receiver counts
    /// distinct ids) with the webhook connector's own request builder.
    async fn send(&self, i: usize) -> Result<(), String> {
        let (payload_headers, body) = &self.bodies[i % self.bodies.len()];
        let id = format!("{i:032x}");
        let response = webhook::client::signed_post(
            &self.client,
            &self.url,
            &self.headers,
            payload_headers,
            &self.signer,
            &id,
            body.clone(),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
        let status = response.status();
        response.bytes().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// Phase 8: Redpanda Connect reading `topic` (its own consumer group, from the earliest
/// offset) and posting every message to the receiver.
async fn peer_run(
    bin: &Path,
    dir: &Path,
    args: &Args,
    topic: &str,
    receiver: &receiver::Receiver,
) -> anyhow::Result<Deliveries> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let endpoint = receiver.listen(receiver::Check::Plain, args.events)?;
    let config = format!(
        r#"http:
  enabled: false
logger:
  level: WARN
metrics:
  none: {{}}
input:
  kafka_franz:
    seed_brokers: [ "{bootstrap}" ]
    topics: [ "{topic}" ]
    consumer_group: "bench-peer-{group}"
    start_offset: earliest
output:
  http_client:
    url: "{url}"
    verb: POST
    headers:
      Content-Type: application/octet-stream
    max_in_flight: {in_flight}
    timeout: 15s
"#,
        bootstrap = args.bootstrap,
        group = now_ms(),
        url = endpoint.url,
        in_flight = args.webhook_concurrency,
    );
    let config_path = dir.join("peer.yaml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("peer.log"))?;
    let mut command = Command::new(bin);
    command.arg("run").arg(&config_path);
    match args.peer_idle_conns.unwrap_or(args.webhook_concurrency) {
        0 => command.env_remove("PEER_MAX_IDLE_CONNS_PER_HOST"),
        n => command.env("PEER_MAX_IDLE_CONNS_PER_HOST", n.to_string()),
    };
    let mut child = command
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let result = watch_deliveries(Sender::Process(pid), &endpoint, args.events, || match child
        .try_wait()?
    {
        Some(status) => bail!("the peer exited early: {status} (see its peer.log)"),
        None => Ok(()),
    })
    .await;
    terminate(&mut child);
    result
}

/// Who sends the requests that a delivery phase measures.
#[derive(Debug, Clone, Copy)]
enum Sender<'a> {
    /// A child process (the bridge, the peer): its CPU from its start, its peak RSS.
    Process(u32),
    /// The threads of this process with this name (the HTTP limit's client, on a runtime
    /// made for the phase under a name of its own): their CPU from their start.
    Threads(&'a str),
}

impl Sender<'_> {
    /// CPU seconds used so far.
    fn cpu_seconds(self) -> anyhow::Result<f64> {
        match self {
            Sender::Process(pid) => cpu_seconds(pid),
            Sender::Threads(name) => threads_cpu_seconds(name),
        }
    }

    /// Peak RSS, for a process of its own.
    fn peak_rss_mib(self) -> anyhow::Result<Option<f64>> {
        match self {
            Sender::Process(pid) => peak_rss_mib(pid).map(Some),
            Sender::Threads(_) => Ok(None),
        }
    }
}

/// Waits until the receiver has `events` distinct deliveries from `sender` and measures it:
/// deliveries/s from the first to the last request, its peak RSS, its CPU to the last
/// delivery, and the receiver's CPU over the same span.
async fn watch_deliveries(
    sender: Sender<'_>,
    endpoint: &receiver::Endpoint,
    events: usize,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Deliveries> {
    let stats = &endpoint.stats;
    let receiver_cpu_before = receiver::cpu_seconds()?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut progress, mut progress_at) = (0, Instant::now());
    loop {
        alive()?;
        let bad = stats.bad.load(Ordering::Relaxed);
        if bad > 0 {
            bail!(
                "{bad} requests failed the receiver's checks (signature, timestamp or webhook-id)"
            );
        }
        let distinct = stats.distinct();
        if distinct >= events as u64 {
            break;
        }
        if distinct > progress {
            (progress, progress_at) = (distinct, Instant::now());
        } else if progress_at.elapsed() > Duration::from_secs(120) {
            bail!("no new delivery for 2 minutes ({distinct} of {events} received)");
        }
        if Instant::now() > deadline {
            bail!("only {distinct} of {events} deliveries within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = sender.cpu_seconds()?;
    let receiver_cpu = receiver::cpu_seconds()? - receiver_cpu_before;
    let requests = stats.requests.load(Ordering::Relaxed);
    let per_million = 1e6 / events as f64;
    Ok(Deliveries {
        per_s: requests as f64 / stats.span().as_secs_f64(),
        peak_rss_mib: sender.peak_rss_mib()?,
        cpu_s_per_million: cpu * per_million,
        receiver_cpu_s_per_million: receiver_cpu * per_million,
        requests,
        duplicates: requests.saturating_sub(stats.distinct()),
        connections: stats.connections.load(Ordering::Relaxed),
        verified: stats.verified.load(Ordering::Relaxed),
    })
}

/// GETs `/metrics` from `addr`; `None` if it does not answer.
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

/// The local HTTP receiver of the webhook and peer phases: axum on its own tokio runtime
/// (threads named `bench-receiver`, so that their CPU is measured apart), keep-alive
/// HTTP/1.1 on 127.0.0.1, answering 204 to every request that passes its checks.
mod receiver {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::serve::ListenerExt;
    use axum::Router;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use tokio::sync::watch;

    /// The name of the receiver's threads.
    const THREAD_NAME: &str = "bench-receiver";
    /// Shards of the set of delivery identities (each behind its own mutex).
    const SHARDS: usize = 16;
    /// Timestamps further than this from now fail verification (Standard Webhooks' window).
    const TOLERANCE_S: i64 = 300;

    /// What the receiver checks on each request.
    pub enum Check {
        /// Standard Webhooks: `webhook-id` (32 hex digits, the delivery's identity) on every
        /// request; `webhook-timestamp` and `webhook-signature` verified with `key` on every
        /// `every`th request.
        Signed {
            /// The HMAC key (the secret's base64 part, decoded).
            key: Vec<u8>,
            /// Verify one request in this many (1: all).
            every: u64,
        },
        /// Nothing: the delivery's identity is a hash of the body (the peer's requests).
        Plain,
    }

    /// What one endpoint saw.
    pub struct Stats {
        /// Requests received (answered 204, or 4xx when a check failed).
        pub requests: AtomicU64,
        /// Signatures verified.
        pub verified: AtomicU64,
        /// Requests that failed a check (missing header, bad signature, stale timestamp).
        pub bad: AtomicU64,
        /// TCP connections accepted.
        pub connections: AtomicU64,
        /// Distinct delivery identities.
        distinct: AtomicU64,
        /// The identities seen, sharded.
        seen: Vec<Mutex<HashSet<u128>>>,
        /// Time origin of `first_ns` and `last_ns`.
        origin: Instant,
        /// Nanoseconds from `origin` to the first request (`u64::MAX` before).
        first_ns: AtomicU64,
        /// Nanoseconds from `origin` to the latest request.
        last_ns: AtomicU64,
    }

    impl Stats {
        /// Empty statistics, sized for `expected` deliveries.
        fn new(expected: usize) -> Stats {
            Stats {
                requests: AtomicU64::new(0),
                verified: AtomicU64::new(0),
                bad: AtomicU64::new(0),
                connections: AtomicU64::new(0),
                distinct: AtomicU64::new(0),
                seen: (0..SHARDS)
                    .map(|_| Mutex::new(HashSet::with_capacity(expected / SHARDS + 1024)))
                    .collect(),
                origin: Instant::now(),
                first_ns: AtomicU64::new(u64::MAX),
                last_ns: AtomicU64::new(0),
            }
        }

        /// Distinct deliveries so far.
        pub fn distinct(&self) -> u64 {
            self.distinct.load(Ordering::Relaxed)
        }

        /// Time from the first to the latest request.
        pub fn span(&self) -> Duration {
            let first = self.first_ns.load(Ordering::Relaxed);
            let last = self.last_ns.load(Ordering::Relaxed);
            Duration::from_nanos(last.saturating_sub(first))
        }

        /// Records a request at `now`.
        fn arrived(&self, now: Instant) -> u64 {
            let ns = u64::try_from(now.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
            self.first_ns.fetch_min(ns, Ordering::Relaxed);
            self.last_ns.fetch_max(ns, Ordering::Relaxed);
            self.requests.fetch_add(1, Ordering::Relaxed)
        }

        /// Records a delivery identity; whether it is new.
        fn remember(&self, identity: u128) -> bool {
            let shard = &self.seen[(identity as usize) % SHARDS];
            let new = shard
                .lock()
                .map(|mut s| s.insert(identity))
                .unwrap_or(false);
            if new {
                self.distinct.fetch_add(1, Ordering::Relaxed);
            }
            new
        }
    }

    /// One endpoint's state, shared by its handlers.
    struct Shared {
        /// What to check.
        check: Check,
        /// Hashes peer bodies.
        hasher: RandomState,
        /// Its counters.
        stats: Arc<Stats>,
    }

    /// The receiver: a runtime on which endpoints are served.
    pub struct Receiver {
        /// The runtime (an `Option` so that `Drop` can shut it down in the background).
        runtime: Option<tokio::runtime::Runtime>,
    }

    /// One listening endpoint; stops serving when dropped.
    pub struct Endpoint {
        /// Where to POST.
        pub url: String,
        /// What it saw.
        pub stats: Arc<Stats>,
        /// Stops the server.
        stop: watch::Sender<bool>,
    }

    impl Drop for Endpoint {
        fn drop(&mut self) {
            let _ = self.stop.send(true);
        }
    }

    impl Receiver {
        /// Starts the runtime with `threads` workers.
        pub fn start(threads: usize) -> anyhow::Result<Receiver> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(THREAD_NAME)
                .enable_all()
                .build()?;
            Ok(Receiver {
                runtime: Some(runtime),
            })
        }

        /// Serves a new endpoint on a free port of 127.0.0.1, with fresh statistics sized
        /// for `expected` deliveries.
        pub fn listen(&self, check: Check, expected: usize) -> anyhow::Result<Endpoint> {
            let runtime = self.runtime.as_ref().context("the receiver is stopped")?;
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            let url = format!("http://{}/hook", listener.local_addr()?);
            let stats = Arc::new(Stats::new(expected));
            let shared = Arc::new(Shared {
                check,
                hasher: RandomState::new(),
                stats: stats.clone(),
            });
            let app = Router::new()
                .route("/hook", post(receive))
                .with_state(shared);
            let (stop, mut stopped) = watch::channel(false);
            let counted = stats.clone();
            runtime.spawn(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("receiver: {e}");
                        return;
                    }
                };
                let listener = listener.tap_io(move |tcp| {
                    counted.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = tcp.set_nodelay(true);
                });
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = served {
                    eprintln!("receiver: {e}");
                }
            });
            Ok(Endpoint { url, stats, stop })
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_background();
            }
        }
    }

    /// The handler: checks the request, records its identity, answers 204.
    async fn receive(
        State(shared): State<Arc<Shared>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let stats = &shared.stats;
        let n = stats.arrived(Instant::now());
        let identity = match &shared.check {
            Check::Plain => u128::from(shared.hasher.hash_one(&body[..])),
            Check::Signed { key, every } => {
                match signed_identity(key, n % every == 0, &headers, &body) {
                    Ok(Some(identity)) => {
                        stats.verified.fetch_add(1, Ordering::Relaxed);
                        identity
                    }
                    Ok(None) => match text(&headers, "webhook-id").and_then(hex_id) {
                        Some(identity) => identity,
                        None => {
                            stats.bad.fetch_add(1, Ordering::Relaxed);
                            return StatusCode::BAD_REQUEST;
                        }
                    },
                    Err(status) => {
                        stats.bad.fetch_add(1, Ordering::Relaxed);
                        return status;
                    }
                }
            }
        };
        stats.remember(identity);
        StatusCode::NO_CONTENT
    }

    /// With `verify`, checks the Standard Webhooks headers of a request and returns its
    /// `webhook-id` as a number; without, `Ok(None)`.
    fn signed_identity(
        key: &[u8],
        verify: bool,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<u128>, StatusCode> {
        if !verify {
            return Ok(None);
        }
        let id = text(headers, "webhook-id").ok_or(StatusCode::BAD_REQUEST)?;
        let stamp = text(headers, "webhook-timestamp").ok_or(StatusCode::BAD_REQUEST)?;
        let signatures = text(headers, "webhook-signature").ok_or(StatusCode::BAD_REQUEST)?;
        let sent: i64 = stamp.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
        if (polaris_bridge::log::now_ms() / 1000 - sent).abs() > TOLERANCE_S {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        for part in [id.as_bytes(), b".", stamp.as_bytes(), b".", body] {
            mac.update(part);
        }
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|tag| mac.clone().verify_slice(&tag).is_ok());
        if !matches {
            return Err(StatusCode::UNAUTHORIZED);
        }
        hex_id(id).map(Some).ok_or(StatusCode::BAD_REQUEST)
    }

    /// A header's value as text.
    fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A 32-hex-digit task id as a number.
    fn hex_id(id: &str) -> Option<u128> {
        if id.len() != 32 {
            return None;
        }
        u128::from_str_radix(id, 16).ok()
    }

    /// CPU seconds used so far by the receiver's threads (live ones: the runtime keeps its
    /// workers for the whole benchmark).
    pub fn cpu_seconds() -> anyhow::Result<f64> {
        super::threads_cpu_seconds(THREAD_NAME)
    }
}

/// CPU seconds used so far by the live threads of this process named `name`.
fn threads_cpu_seconds(name: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(path.join("stat")) {
            total += stat_cpu_seconds(&stat)?;
        }
    }
    Ok(total)
}

/// User plus system CPU seconds of process `pid`, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User plus system CPU seconds in the text of a /proc `stat` file (a process's or a
/// thread's).
fn stat_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Peak resident set size of process `pid` in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// The `field` (e.g. `VmRSS:`) of process `pid`'s /proc status, in MiB.
fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("{field} in /proc/{pid}/status"))?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Bytes of the files under `dir`, recursively.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets_like_prometheus() {
        // 10 observations in (0, 0.1], 80 in (0.1, 0.5], 10 above 0.5.
        let buckets = [(0.1, 10.0), (0.5, 90.0), (f64::INFINITY, 100.0)];
        let q = |q| histogram_quantile(q, &buckets).unwrap();
        assert!((q(0.05) - 0.05).abs() < 1e-9, "{}", q(0.05));
        assert!((q(0.5) - 0.3).abs() < 1e-9, "{}", q(0.5));
        assert_eq!(
            q(0.99),
            0.5,
            "a rank in +Inf gives the highest finite bound"
        );
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
    }

    #[test]
    fn bucket_deltas_sum_the_label_sets() {
        let before =
            "x_bucket{connector=\"a\",le=\"0.1\"} 1\nx_bucket{connector=\"a\",le=\"+Inf\"} 2\n";
        let after = "# TYPE x histogram\nx_bucket{connector=\"a\",le=\"0.1\"} 3\nx_bucket{connector=\"a\",le=\"+Inf\"} 6\nx_bucket{connector=\"b\",le=\"0.1\"} 1\nx_bucket{connector=\"b\",le=\"+Inf\"} 1\nx_sum 4\nx_count 7\n";
        assert_eq!(
            histogram_delta(after, before, "x"),
            vec![(0.1, 3.0), (f64::INFINITY, 5.0)]
        );
    }
}
