//! The Kafka source: consumes Polaris events and makes them durable as tasks.
//!
//! One thread polls a `BaseConsumer`. Each message is decoded, routed and written to the task
//! log (or recorded as rejected). After a batch the log is flushed, and only then are the
//! batch's offsets stored, so a partition's committed offset never passes a message whose
//! tasks are not durable (DESIGN.md guarantee 1). Messages of a partition are handled in
//! order, so the stored offset is a contiguous watermark, also over messages that were
//! filtered out, deduplicated or rejected. On revocation the revoked work is flushed and
//! committed before the partitions are let go. When the backlog of unfinished tasks passes
//! `source.max_backlog` the assigned partitions are paused until it drops below
//! `source.resume_backlog` (guarantee 6).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use polaris_bridge_api::codec::{self, WireFormat};
use polaris_bridge_api::event::stored;
use polaris_bridge_api::{Connector, TaskId, TaskPlan};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Statistics};
use tokio::sync::Notify;

use crate::config::{Config, SourceConfig};
use crate::log::{
    now_ms, InsertOutcome, LogError, RejectedRecord, SourceRecord, TableIndex, TaskLog, TaskRecord,
    TaskState,
};
use crate::metrics as m;
use crate::route::Router;
use crate::table_lookup::TableLookup;

/// A failure that stops the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The consumer could not be created or subscribed.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    /// The task log failed: nothing can be made durable, so consuming stops.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Observable state of the source, shared with the HTTP server.
#[derive(Debug, Default)]
pub struct SourceStatus {
    /// Set once the consumer has received its first assignment from the group.
    pub joined: AtomicBool,
    /// Set while partitions are paused for backpressure.
    pub paused: AtomicBool,
    /// Partitions currently assigned.
    pub assigned: AtomicU64,
    /// Set when the bridge begins to shut down (readiness turns false).
    pub stopping: AtomicBool,
}

/// Unfinished tasks across all connectors: the source adds, dispatchers subtract.
///
/// A dispatcher may finish a task before the source has counted it (a record is visible to
/// the dispatcher as soon as it is inserted), so the count is signed and may dip below zero
/// for a moment; it is read as zero then, and every increment and decrement is kept.
pub struct Backlog {
    count: AtomicI64,
    /// The backlog gauge, registered once (with the recorder installed when the backlog is
    /// made): a lookup per task cost the source thread about 2% of its time.
    gauge: metrics::Gauge,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            count: AtomicI64::new(0),
            gauge: gauge!(m::BACKLOG),
        }
    }
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Backlog").field(&self.count).finish()
    }
}

impl Backlog {
    /// Current count.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed).max(0) as u64
    }
    /// Adds `n` new unfinished tasks.
    pub fn add(&self, n: u64) {
        let v = self.count.fetch_add(n as i64, Ordering::Relaxed) + n as i64;
        self.gauge.set(v.max(0) as f64);
    }
    /// Removes one finished task.
    pub fn finish_one(&self) {
        let v = self.count.fetch_sub(1, Ordering::Relaxed) - 1;
        self.gauge.set(v.max(0) as f64);
    }
}

/// Reads a per-connector unfinished count that the source increments and a dispatcher
/// decrements in either order (wrapping arithmetic): a value that wrapped below zero reads 0.
pub fn unfinished_count(counter: &AtomicU64) -> u64 {
    (counter.load(Ordering::Relaxed) as i64).max(0) as u64
}

/// One routing target as the source sees it.
pub struct Target {
    /// Connector instance name.
    pub name: String,
    /// The connector, asked for its [`TaskPlan`] of each routed event.
    pub connector: Arc<dyn Connector>,
    /// Its number in the task log.
    pub number: u16,
    /// Wakes its dispatcher when new tasks arrive.
    pub notify: Arc<Notify>,
    /// Its unfinished tasks (the source adds, its dispatcher subtracts).
    pub unfinished: Arc<AtomicU64>,
}

/// Per-topic decoding settings, with the topic's per-event counters (registered once, so
/// the hot path neither allocates labels nor looks the series up).
#[derive(Clone)]
struct TopicSettings {
    format: WireFormat,
    default_realm: String,
    consumed: metrics::Counter,
    unrouted: metrics::Counter,
    enriched: metrics::Counter,
}

impl TopicSettings {
    fn new(topic: &str, format: WireFormat, default_realm: String) -> Self {
        TopicSettings {
            format,
            default_realm,
            consumed: counter!(m::EVENTS_CONSUMED, "topic" => topic.to_string()),
            unrouted: counter!(m::EVENTS_UNROUTED, "topic" => topic.to_string()),
            enriched: counter!(m::EVENTS_ENRICHED, "topic" => topic.to_string()),
        }
    }
}

/// A target's per-task counters, registered once.
struct TargetCounters {
    created: metrics::Counter,
    deduplicated: metrics::Counter,
    skipped: metrics::Counter,
}

/// State shared between the polling loop and librdkafka's rebalance callbacks.
struct SourceContext {
    log: Arc<TaskLog>,
    status: Arc<SourceStatus>,
    /// Highest processed (but not yet stored) offset per partition.
    pending: Mutex<HashMap<(String, i32), i64>>,
    /// The (topic, partition) series of the lag gauge last reported.
    lag_series: Mutex<HashSet<(String, i32)>>,
}

impl SourceContext {
    /// Flushes the log and stores the pending offsets of the partitions `keep` selects.
    fn flush_and_store(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        keep: impl Fn(&str, i32) -> bool,
    ) -> Result<(), LogError> {
        let started = Instant::now();
        self.log.flush()?;
        histogram!(m::LOG_FLUSH_DURATION).record(started.elapsed().as_secs_f64());
        let Ok(mut pending) = self.pending.lock() else {
            return Err(LogError::Refused(
                "source offset table lock poisoned".into(),
            ));
        };
        pending.retain(|(topic, partition), offset| {
            if !keep(topic, *partition) {
                return true;
            }
            if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
                // The partition is no longer ours: its new owner re-reads from the last commit.
                tracing::debug!(topic, partition, offset, error = %e, "offset not stored");
            }
            false
        });
        Ok(())
    }
}

impl ClientContext for SourceContext {
    /// Publishes the consumer lag of each assigned partition: messages between the high
    /// watermark and the stored offset (what is not yet durable in the log). Partitions no
    /// longer assigned drop to 0. Also the bytes in librdkafka's prefetch queue.
    fn stats(&self, statistics: Statistics) {
        let mut current = HashSet::new();
        let mut prefetched = 0u64;
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                // The partitions' queues forward to the consumer's one queue, and each
                // reports that queue's size: the largest is the total, not the sum.
                prefetched = prefetched.max(p.fetchq_size);
                let lag = if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else {
                    p.consumer_lag
                };
                if lag < 0 {
                    continue;
                }
                gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(lag as f64);
                current.insert((topic.clone(), *partition));
            }
        }
        gauge!(m::SOURCE_PREFETCHED_BYTES).set(prefetched as f64);
        if let Ok(mut last) = self.lag_series.lock() {
            for (topic, partition) in last.difference(&current) {
                gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(0.0);
            }
            *last = current;
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            counter!(m::REBALANCES, "kind" => "revoke").increment(1);
            let revoked: Vec<(String, i32)> = revoked
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let is_revoked = |t: &str, p: i32| revoked.iter().any(|(rt, rp)| rt == t && *rp == p);
            if let Err(e) = self.flush_and_store(consumer, is_revoked) {
                tracing::error!(error = %e, "could not make revoked partitions' tasks durable; their offsets stay uncommitted");
                return;
            }
            let result = consumer.commit_consumer_state(CommitMode::Sync);
            record_commit(&result);
            tracing::info!(partitions = revoked.len(), "revoked partitions committed");
        }
    }

    /// Counts every commit, automatic (each second) or explicit (revocation, shutdown).
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        match result {
            Ok(()) => counter!(m::OFFSET_COMMITS, "result" => "ok").increment(1),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                counter!(m::OFFSET_COMMITS, "result" => "error").increment(1);
                tracing::debug!(error = %e, "offset commit failed; retried with the next commit");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                counter!(m::REBALANCES, "kind" => "assign").increment(1);
                if self.status.paused.load(Ordering::Relaxed) && assigned.count() > 0 {
                    if let Err(e) = consumer.pause(assigned) {
                        tracing::warn!(error = %e, "could not pause newly assigned partitions");
                    }
                }
                self.status.joined.store(true, Ordering::Relaxed);
            }
            Rebalance::Revoke(_) | Rebalance::Error(_) => {}
        }
        let count = consumer.assignment().map(|a| a.count()).unwrap_or(0) as u64;
        self.status.assigned.store(count, Ordering::Relaxed);
        gauge!(m::ASSIGNED_PARTITIONS).set(count as f64);
    }
}

/// Logs the result of an explicit commit (the commit callback counts every commit).
fn record_commit(result: &Result<(), KafkaError>) {
    match result {
        Ok(()) => {}
        // Nothing stored since the last commit: not an error.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "offset commit failed; stored offsets are committed again later");
        }
    }
}

/// The source: owns the consumer; run it on a thread of its own with [`Source::run`].
pub struct Source {
    consumer: BaseConsumer<SourceContext>,
    pipeline: Arc<Pipeline>,
    settings: SourceConfig,
}

impl Source {
    /// Creates the consumer and subscribes to the configured topics.
    pub fn new(
        config: &Config,
        pipeline: Arc<Pipeline>,
        status: Arc<SourceStatus>,
    ) -> Result<Source, SourceError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.kafka.bootstrap_servers)
            .set("group.id", &config.kafka.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set(
                "queued.max.messages.kbytes",
                config.source.prefetch_kbytes.to_string(),
            )
            // When the prefetch queue is over its bound, librdkafka postpones the partition's
            // next fetch by this long (1 s by default): the queue drained in less than that
            // and the source waited, which capped a source that keeps up at about 58,000
            // events/s (BENCHMARKS.md). 0 would poll the queue in a busy loop.
            .set("fetch.queue.backoff.ms", "10")
            // Consumer lag per partition comes from librdkafka's statistics.
            .set("statistics.interval.ms", "5000");
        for (key, value) in &config.kafka.properties {
            client.set(key, value);
        }
        let context = SourceContext {
            log: pipeline.log().clone(),
            status,
            pending: Mutex::new(HashMap::new()),
            lag_series: Mutex::new(HashSet::new()),
        };
        let consumer: BaseConsumer<SourceContext> = client.create_with_context(context)?;
        let names: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&names)?;
        Ok(Source {
            consumer,
            pipeline,
            settings: config.source.clone(),
        })
    }

    /// Consumes until `stop` is set, then flushes, stores and commits.
    pub fn run(self, stop: &AtomicBool) -> Result<(), SourceError> {
        let mut routed = Vec::new();
        let mut touched = vec![false; self.pipeline.targets.len()];
        let mut timestamps = Vec::with_capacity(self.settings.batch_size);
        let durable_latency = histogram!(m::DURABLE_LATENCY);
        while !stop.load(Ordering::Relaxed) {
            let batch_started = Instant::now();
            let mut in_batch = 0usize;
            while in_batch < self.settings.batch_size {
                let left = self
                    .settings
                    .batch_linger
                    .saturating_sub(batch_started.elapsed());
                let wait = if in_batch == 0 {
                    Duration::from_millis(100)
                } else {
                    left
                };
                match self.consumer.poll(wait) {
                    None => {
                        if in_batch > 0 || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        self.apply_backpressure();
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka poll error; librdkafka retries");
                    }
                    Some(Ok(message)) => {
                        self.process(&message, &mut routed, &mut touched)?;
                        if let Some(ms) = message.timestamp().to_millis() {
                            timestamps.push(ms);
                        }
                        in_batch += 1;
                    }
                }
                if in_batch > 0 && batch_started.elapsed() >= self.settings.batch_linger {
                    break;
                }
            }
            if in_batch > 0 {
                self.consumer
                    .context()
                    .flush_and_store(&self.consumer, |_, _| true)?;
                let durable_ms = now_ms();
                for ms in timestamps.drain(..) {
                    durable_latency.record(((durable_ms - ms).max(0) as f64) / 1000.0);
                }
                histogram!(m::SOURCE_BATCH_SIZE).record(in_batch as f64);
                for (target, hit) in self.pipeline.targets.iter().zip(touched.iter_mut()) {
                    if std::mem::take(hit) {
                        target.notify.notify_one();
                    }
                }
            }
            self.apply_backpressure();
        }
        self.consumer
            .context()
            .flush_and_store(&self.consumer, |_, _| true)?;
        let result = self.consumer.commit_consumer_state(CommitMode::Sync);
        record_commit(&result);
        tracing::info!("source stopped; offsets committed");
        Ok(())
    }

    /// Records one consumed message and its offset.
    fn process(
        &self,
        message: &BorrowedMessage<'_>,
        routed: &mut Vec<usize>,
        touched: &mut [bool],
    ) -> Result<(), LogError> {
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        let context = self.consumer.context();
        self.pipeline.count_consumed(topic);
        let input = Input {
            topic,
            partition,
            offset,
            key: message.key(),
            value: message.payload().unwrap_or(&[]),
        };
        self.pipeline.ingest(&input, routed, touched, None)?;
        let Ok(mut pending) = context.pending.lock() else {
            return Err(LogError::Refused(
                "source offset table lock poisoned".into(),
            ));
        };
        pending.insert((topic.to_string(), partition), offset);
        Ok(())
    }

    /// Pauses or resumes the assigned partitions according to the backlog.
    fn apply_backpressure(&self) {
        let status = &self.consumer.context().status;
        let backlog = self.pipeline.backlog.get();
        let paused = status.paused.load(Ordering::Relaxed);
        let change = if !paused && backlog > self.settings.max_backlog {
            Some(true)
        } else if paused && backlog <= self.settings.resume_backlog {
            Some(false)
        } else {
            None
        };
        let Some(pause) = change else { return };
        let assignment = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read assignment for backpressure");
                return;
            }
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => {
                status.paused.store(pause, Ordering::Relaxed);
                gauge!(m::SOURCE_PAUSED).set(if pause { 1.0 } else { 0.0 });
                tracing::info!(
                    backlog,
                    paused = pause,
                    partitions = assignment.count(),
                    "backpressure"
                );
            }
            Err(e) => tracing::warn!(error = %e, "pause/resume failed"),
        }
    }
}

/// One message to make into tasks: consumed from Kafka, or a rejected message replayed by an
/// operator.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Kafka topic (its configured format and default realm apply).
    pub topic: &'a str,
    /// Kafka partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: &'a [u8],
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// It does not decode: recorded as rejected.
    Rejected {
        /// Bounded error class.
        kind: String,
        /// What is wrong, and where.
        error: String,
    },
    /// No route matched.
    Unrouted,
    /// Routed: tasks created, or found already in the log.
    Routed {
        /// New tasks.
        created: u32,
        /// Tasks already in the log.
        duplicates: u32,
        /// Connectors whose own filters turned the event down.
        skipped: u32,
    },
}

/// One task a message mapped to (reported to an operator's replay).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedTask {
    /// Connector instance.
    pub connector: String,
    /// The task id.
    pub task_id: TaskId,
    /// New (true) or already in the log (false).
    pub created: bool,
}

/// Decode -> route -> record: the path every message takes into the task log, shared by the
/// consumer and the admin API's replay of rejected messages.
pub struct Pipeline {
    log: Arc<TaskLog>,
    /// Per-target counters, in `targets` order.
    counters: Vec<TargetCounters>,
    /// Fills in the table uuid and locations of table events that lack them.
    table_index: TableIndex,
    /// Asks Polaris about tables whose events lack the metadata location (optional).
    lookup: Option<TableLookup>,
    topics: HashMap<String, TopicSettings>,
    router: Router,
    targets: Vec<Target>,
    backlog: Arc<Backlog>,
}

impl Pipeline {
    /// The pipeline of `config`'s topics into `targets`.
    pub fn new(
        config: &Config,
        log: Arc<TaskLog>,
        router: Router,
        targets: Vec<Target>,
        backlog: Arc<Backlog>,
    ) -> Result<Pipeline, LogError> {
        let topics = config
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    TopicSettings::new(&t.name, t.format.0, t.default_realm.clone()),
                )
            })
            .collect();
        let counters = targets
            .iter()
            .map(|t| TargetCounters {
                created: counter!(m::TASKS_CREATED, "connector" => t.name.clone()),
                deduplicated: counter!(m::TASKS_DEDUPLICATED, "connector" => t.name.clone()),
                skipped: counter!(m::TASKS_SKIPPED, "connector" => t.name.clone()),
            })
            .collect();
        Ok(Pipeline {
            lookup: None,
            counters,
            table_index: log.table_index()?,
            log,
            topics,
            router,
            targets,
            backlog,
        })
    }

    /// Counts a message read from Kafka (replays through the admin API are not counted).
    pub fn count_consumed(&self, topic: &str) {
        match self.topics.get(topic) {
            Some(settings) => settings.consumed.increment(1),
            None => counter!(m::EVENTS_CONSUMED, "topic" => topic.to_string()).increment(1),
        }
    }

    /// Asks Polaris for the metadata location of tables whose events lack it.
    pub fn with_table_lookup(mut self, lookup: TableLookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// The task log.
    pub fn log(&self) -> &Arc<TaskLog> {
        &self.log
    }

    /// The routing targets (connectors), in router order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The unfinished-task count across connectors.
    pub fn backlog(&self) -> &Arc<Backlog> {
        &self.backlog
    }

    /// Decodes, routes and records one message (not flushed: the caller flushes before it
    /// acknowledges anything). Sets `touched[i]` for each target that got a new task; reports
    /// each task into `report` when given.
    pub fn ingest(
        &self,
        message: &Input<'_>,
        routed: &mut Vec<usize>,
        touched: &mut [bool],
        mut report: Option<&mut Vec<IngestedTask>>,
    ) -> Result<Ingested, LogError> {
        let Input {
            topic,
            partition,
            offset,
            key,
            value,
        } = *message;
        let fallback;
        let settings = match self.topics.get(topic) {
            Some(settings) => settings,
            None => {
                fallback = TopicSettings::new(topic, WireFormat::Auto, "POLARIS".into());
                &fallback
            }
        };
        match codec::decode(settings.format, key, value) {
            Err(error) => {
                let kind = error.kind().to_string();
                tracing::warn!(topic, partition, offset, kind, %error, "message rejected");
                counter!(m::EVENTS_REJECTED, "topic" => topic.to_string(), "kind" => kind.clone())
                    .increment(1);
                self.log.insert_rejected(&RejectedRecord {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    key: key.map(<[u8]>::to_vec),
                    kind: kind.clone(),
                    error: error.to_string(),
                    value_prefix: value[..value.len().min(RejectedRecord::VALUE_PREFIX)].to_vec(),
                    value_len: value.len(),
                    rejected_ms: now_ms(),
                })?;
                gauge!(m::REJECTED_KEPT).set(self.log.rejected_len() as f64);
                Ok(Ingested::Rejected {
                    kind,
                    error: error.to_string(),
                })
            }
            Ok(mut event) => {
                let realm = event
                    .realm_id
                    .clone()
                    .unwrap_or_else(|| settings.default_realm.clone());
                // Task ids derive from the event as decoded, never from what the index adds.
                let decoded = event.event_id.is_none().then(|| event.clone());
                let carried_location = event.metadata_location.is_some();
                match self.table_index.observe(&mut event, &realm) {
                    Ok(true) => settings.enriched.increment(1),
                    Ok(false) => {}
                    // The index only completes events: without it they flow as decoded.
                    Err(e) => {
                        tracing::warn!(topic, partition, offset, error = %e, "table index not consulted")
                    }
                }
                if let Some(lookup) = &self.lookup {
                    lookup.consider(&event, &realm, carried_location);
                }
                let id_source = decoded.as_ref().unwrap_or(&event);
                let _span = tracing::debug_span!(
                    "message",
                    topic,
                    partition,
                    offset,
                    event_type = event.event_type.name(),
                    trace_id = event.trace_id()
                )
                .entered();
                self.router.route(&event, routed);
                if routed.is_empty() {
                    settings.unrouted.increment(1);
                    return Ok(Ingested::Unrouted);
                }
                let (mut created, mut duplicates, mut skipped) = (0, 0, 0);
                let ordering_key = event.resource_identity(&settings.default_realm);
                let event_bytes = stored::encode(&event).map_err(|e| LogError::Corrupt {
                    key: format!("{topic}/{partition}/{offset}"),
                    message: format!("event does not serialise: {e}"),
                })?;
                let now = now_ms();
                // Copies of one event share its time: the dedup index's bucket for them.
                let event_bucket = id_source
                    .timestamp_ms
                    .and_then(|ms| u32::try_from(ms / 1000).ok())
                    .unwrap_or(0);
                for &index in routed.iter() {
                    let target = &self.targets[index];
                    let counters = &self.counters[index];
                    let (task_id, dedup_bucket) = match target.connector.plan(&event) {
                        TaskPlan::Skip => {
                            counters.skipped.increment(1);
                            skipped += 1;
                            continue;
                        }
                        TaskPlan::PerEvent => (
                            TaskId::for_event(&target.name, &realm, id_source),
                            event_bucket,
                        ),
                        TaskPlan::Keyed(key) => (TaskId::for_key(&target.name, &realm, &key), 0),
                    };
                    let record = TaskRecord {
                        task_id: *task_id.as_bytes(),
                        dedup_bucket,
                        connector: target.name.clone(),
                        state: TaskState::Pending,
                        attempts: 0,
                        created_ms: now,
                        updated_ms: now,
                        ordering_key: ordering_key.clone(),
                        realm: realm.clone(),
                        source: SourceRecord {
                            topic: topic.to_string(),
                            partition,
                            offset,
                        },
                        event_bytes: event_bytes.clone(),
                        history: Vec::new(),
                        checkpoint: None,
                    };
                    let outcome = self.log.insert(target.number, &record)?;
                    let new = matches!(outcome, InsertOutcome::Created(_));
                    if new {
                        self.backlog.add(1);
                        target.unfinished.fetch_add(1, Ordering::Relaxed);
                        touched[index] = true;
                        counters.created.increment(1);
                        created += 1;
                    } else {
                        counters.deduplicated.increment(1);
                        duplicates += 1;
                    }
                    if let Some(report) = report.as_deref_mut() {
                        report.push(IngestedTask {
                            connector: target.name.clone(),
                            task_id,
                            created: new,
                        });
                    }
                }
                Ok(Ingested::Routed {
                    created,
                    duplicates,
                    skipped,
                })
            }
        }
    }
}

#[cfg(test)]
mod counter_tests {
    use super::*;

    #[test]
    fn counts_survive_a_decrement_that_arrives_before_its_increment() {
        let backlog = Backlog::default();
        backlog.finish_one();
        assert_eq!(backlog.get(), 0, "reads as zero while below");
        backlog.add(1);
        assert_eq!(backlog.get(), 0, "the early decrement is not lost");
        backlog.add(2);
        assert_eq!(backlog.get(), 2);

        let unfinished = AtomicU64::new(0);
        unfinished.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(unfinished_count(&unfinished), 0);
        unfinished.fetch_add(3, Ordering::Relaxed);
        assert_eq!(unfinished_count(&unfinished), 2);
    }
}
