//! The metric catalogue: every metric the service exports, with its type and meaning.
//!
//! Labels are bounded: topic, partition, connector, state, outcome and error kind; never a
//! task id, table or event id.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Messages read from Kafka. Labels: `topic`.
pub const EVENTS_CONSUMED: &str = "polaris_bridge_events_consumed_total";
/// Messages that could not be decoded, recorded as rejected. Labels: `topic`, `kind`.
pub const EVENTS_REJECTED: &str = "polaris_bridge_events_rejected_total";
/// Events that matched no route (their offsets still advance). Labels: `topic`.
pub const EVENTS_UNROUTED: &str = "polaris_bridge_events_unrouted_total";
/// Events given a table uuid or metadata location from the table index.
pub const EVENTS_ENRICHED: &str = "polaris_bridge_events_enriched_total";
/// New tasks recorded in the log. Labels: `connector`.
pub const TASKS_CREATED: &str = "polaris_bridge_tasks_created_total";
/// Tasks whose id was already in the log (redelivery, replay, duplicate event). Labels: `connector`.
pub const TASKS_DEDUPLICATED: &str = "polaris_bridge_tasks_deduplicated_total";
/// Tasks that reached a final state. Labels: `connector`, `state` (succeeded, dead, cancelled).
pub const TASKS_FINISHED: &str = "polaris_bridge_tasks_finished_total";
/// Unfinished tasks. Labels: `connector`, `state` (pending, running, retrying).
pub const TASKS: &str = "polaris_bridge_tasks";
/// Delivery attempts by result. Labels: `connector`, `outcome` (success, already_done,
/// transient, permanent, misconfigured).
pub const DELIVERIES: &str = "polaris_bridge_deliveries_total";
/// 1 while a connector's deliveries are paused (by an operator, or a target that disabled
/// itself). Labels: `connector`.
pub const CONNECTOR_PAUSED: &str = "polaris_bridge_connector_paused";
/// Events a connector's own filters turned down. Labels: `connector`.
pub const TASKS_SKIPPED: &str = "polaris_bridge_tasks_skipped_total";
/// Time of one delivery attempt. Labels: `connector`.
pub const DELIVERY_DURATION: &str = "polaris_bridge_delivery_duration_seconds";
/// Time from an event's creation in Polaris to its task's success. Labels: `connector`.
pub const END_TO_END_LATENCY: &str = "polaris_bridge_event_to_delivery_seconds";
/// Time of one task log flush.
pub const LOG_FLUSH_DURATION: &str = "polaris_bridge_log_flush_duration_seconds";
/// Time from a message's Kafka timestamp to the flush that made its tasks durable (offsets
/// may advance from then on).
pub const DURABLE_LATENCY: &str = "polaris_bridge_message_to_durable_seconds";
/// Polaris table lookups. Labels: `result` (queued, dropped, recorded, superseded,
/// not_found, error).
pub const TABLE_LOOKUPS: &str = "polaris_bridge_table_lookups_total";
/// Messages per flushed batch.
pub const SOURCE_BATCH_SIZE: &str = "polaris_bridge_source_batch_messages";
/// Unfinished tasks across connectors: what backpressure compares with `source.max_backlog`.
pub const BACKLOG: &str = "polaris_bridge_backlog";
/// 1 while the consumer's partitions are paused for backpressure.
pub const SOURCE_PAUSED: &str = "polaris_bridge_source_paused";
/// Partitions assigned to this instance.
pub const ASSIGNED_PARTITIONS: &str = "polaris_bridge_assigned_partitions";
/// Rebalance events. Labels: `kind` (assign, revoke).
pub const REBALANCES: &str = "polaris_bridge_rebalances_total";
/// Offset commits. Labels: `result` (ok, error).
pub const OFFSET_COMMITS: &str = "polaris_bridge_offset_commits_total";
/// Finished tasks removed after the retention window.
pub const TASKS_COMPACTED: &str = "polaris_bridge_tasks_compacted_total";
/// Rejected messages kept in the log.
pub const REJECTED_KEPT: &str = "polaris_bridge_rejected_messages";

/// Messages between a partition's high watermark and the offset stored after its tasks were
/// made durable, from librdkafka's statistics every 5 s; 0 once the partition is no longer
/// assigned. Labels: `topic`, `partition` (bounded by the topics' partitions).
pub const CONSUMER_LAG: &str = "polaris_bridge_consumer_lag";
/// Bytes of fetched messages librdkafka holds for the source and has not yet handed over
/// (its prefetch queue, bounded by `source.prefetch_kbytes` give or take a fetch), from its
/// statistics every 5 s.
pub const SOURCE_PREFETCHED_BYTES: &str = "polaris_bridge_source_prefetched_bytes";
/// Bytes allocated with the C allocator (glibc's `malloc`; Linux with glibc only) and not
/// freed, every 5 s. With the default mimalloc build only C libraries allocate there,
/// librdkafka above all (fetch buffers, queued messages); with the system allocator Rust's
/// allocations too.
pub const C_HEAP_BYTES: &str = "polaris_bridge_c_heap_bytes";
/// Rejected messages an operator replayed. Labels: `outcome` (routed, unrouted, rejected).
pub const REJECTED_REPLAYED: &str = "polaris_bridge_rejected_replayed_total";
/// Operator actions through the admin API or the `tasks` CLI. Labels: `action` (retry,
/// cancel, replay, pause, resume), `result` (ok, refused).
pub const ADMIN_ACTIONS: &str = "polaris_bridge_admin_actions_total";
/// Files a purge connector deleted (not-found counts as deleted). Labels: `connector`.
/// Emitted by purge connectors only.
pub const PURGE_FILES_DELETED: &str = "polaris_bridge_purge_files_deleted_total";
/// Bytes a purge connector deleted (as listed in the table's manifests). Labels: `connector`.
/// Emitted by purge connectors only.
pub const PURGE_BYTES_DELETED: &str = "polaris_bridge_purge_bytes_deleted_total";
/// Purge tasks running now. Labels: `connector`. Emitted by purge connectors only.
pub const PURGE_TASKS_IN_PROGRESS: &str = "polaris_bridge_purge_in_progress";
/// Object store requests of purges (reads and deletes). Labels: `connector`. Emitted by
/// purge connectors only.
pub const PURGE_REQUESTS: &str = "polaris_bridge_purge_requests_total";
/// Failed delete tries and reads of purges. Labels: `connector`. Emitted by purge connectors
/// only.
pub const PURGE_FAILURES: &str = "polaris_bridge_purge_failures_total";

/// Metrics only some connector types emit: `(metric, connector type)`. A dashboard may query
/// them although a given deployment never exports them.
pub const CONNECTOR_METRICS: &[(&str, &str)] = &[
    (PURGE_FILES_DELETED, "purge"),
    (PURGE_BYTES_DELETED, "purge"),
    (PURGE_TASKS_IN_PROGRESS, "purge"),
    (PURGE_REQUESTS, "purge"),
    (PURGE_FAILURES, "purge"),
];

/// Latency buckets, in seconds, shared by the histograms.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// Installs the Prometheus recorder for this process and describes every metric.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SOURCE_BATCH_SIZE.into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(EVENTS_CONSUMED, "Messages read from Kafka");
    describe_counter!(
        EVENTS_REJECTED,
        "Messages that could not be decoded, kept as rejected records"
    );
    describe_counter!(EVENTS_UNROUTED, "Events that matched no route");
    describe_counter!(
        EVENTS_ENRICHED,
        "Table events completed from the table index (uuid, metadata location)"
    );
    describe_counter!(TASKS_CREATED, "New tasks recorded in the log");
    describe_counter!(
        TASKS_DEDUPLICATED,
        "Tasks already in the log, counted and not run again"
    );
    describe_counter!(TASKS_FINISHED, "Tasks that reached a final state");
    describe_gauge!(TASKS, "Unfinished tasks by state");
    describe_counter!(DELIVERIES, "Delivery attempts by outcome");
    describe_gauge!(
        CONNECTOR_PAUSED,
        "1 while a connector's deliveries are paused"
    );
    describe_counter!(
        TASKS_SKIPPED,
        "Events a connector's own filters turned down"
    );
    describe_histogram!(
        DELIVERY_DURATION,
        Unit::Seconds,
        "Duration of one delivery attempt"
    );
    describe_histogram!(
        END_TO_END_LATENCY,
        Unit::Seconds,
        "Event timestamp to successful delivery"
    );
    describe_histogram!(
        LOG_FLUSH_DURATION,
        Unit::Seconds,
        "Duration of one task log flush"
    );
    describe_histogram!(
        DURABLE_LATENCY,
        Unit::Seconds,
        "Kafka message timestamp to the task log flush that made it durable"
    );
    describe_histogram!(SOURCE_BATCH_SIZE, "Messages per flushed batch");
    describe_counter!(
        TABLE_LOOKUPS,
        "Polaris loadTable lookups for table events without a metadata location, by result"
    );
    describe_gauge!(BACKLOG, "Unfinished tasks across connectors");
    describe_gauge!(
        SOURCE_PAUSED,
        "1 while partitions are paused for backpressure"
    );
    describe_gauge!(ASSIGNED_PARTITIONS, "Partitions assigned to this instance");
    describe_counter!(REBALANCES, "Consumer group rebalances");
    describe_counter!(OFFSET_COMMITS, "Offset commits by result");
    describe_counter!(TASKS_COMPACTED, "Finished tasks removed after retention");
    describe_gauge!(REJECTED_KEPT, "Rejected messages kept in the log");
    describe_gauge!(
        CONSUMER_LAG,
        "Messages between the high watermark and the stored offset, per assigned partition"
    );
    describe_gauge!(
        SOURCE_PREFETCHED_BYTES,
        Unit::Bytes,
        "Fetched messages librdkafka holds for the source, not yet polled"
    );
    describe_gauge!(
        C_HEAP_BYTES,
        Unit::Bytes,
        "Bytes allocated with the C allocator and not freed (librdkafka's buffers and queues)"
    );
    describe_counter!(
        REJECTED_REPLAYED,
        "Rejected messages replayed by an operator"
    );
    describe_counter!(ADMIN_ACTIONS, "Operator actions by result");
    describe_counter!(PURGE_FILES_DELETED, "Files deleted by purge tasks");
    describe_counter!(
        PURGE_BYTES_DELETED,
        Unit::Bytes,
        "Bytes deleted by purge tasks"
    );
    describe_gauge!(PURGE_TASKS_IN_PROGRESS, "Purge tasks running now");
}
