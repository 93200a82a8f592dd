//! The dispatcher: delivers one connector's tasks from the log, at least once.
//!
//! Each connector instance has its own dispatcher task, so a slow or failing connector delays
//! only its own tasks (DESIGN.md guarantee 5). A dispatcher holds a bounded window of the
//! connector's unfinished tasks, read from the log in creation order, runs at most
//! `concurrency` deliveries at once, and on the result moves the record to `retrying` (with
//! exponential backoff and jitter from the `backoff` crate, or the target's retry-after),
//! `dead` (attempts exhausted, permanent or configuration error) or `succeeded`. With
//! `ordered` set, tasks with the same ordering key (the resource identity) run one at a time
//! in event order (guarantee 8). Running tasks whose owner is a previous process (the store's
//! lock proves it is gone) or whose lease expired are taken over (guarantee 4).
//!
//! Writes are kept off the common path (see [`crate::log::store`]): a task's first attempt
//! starts without a write (its lease lives in this dispatcher; a crash simply leaves the task
//! pending), and a first-attempt success writes nothing either: the connector's head, the
//! sequence below which every task is finished, moves past it and is persisted every 250 ms
//! (`REPORT_INTERVAL`). A success above a head held back by a retrying task is written as its
//! own status after a second (`UNPERSISTED_SUCCESS_AGE`), and at shutdown. Deliveries that
//! outlive a third of their lease, checkpoints, failures and cancellations write a status,
//! with compare-and-swap.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use metrics::{counter, gauge, histogram};
use polaris_bridge_api::connector::{CheckpointError, SourcePosition};
use polaris_bridge_api::event::stored;
use polaris_bridge_api::{
    Connector, Delivery, DeliveryError, DeliveryOutcome, PolarisEvent, TaskContext, TaskId,
};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::RetryConfig;
use crate::log::{now_ms, AttemptRecord, LogError, RecordKey, TaskLog, TaskRecord, TaskState};
use crate::metrics as m;
use crate::source::Backlog;

/// How a dispatcher runs its connector.
#[derive(Debug, Clone)]
pub struct DispatchPolicy {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Lease of a running task.
    pub lease: Duration,
    /// Unfinished tasks held in memory.
    pub window: usize,
    /// One task at a time per ordering key, in order.
    pub ordered: bool,
    /// Time in-flight deliveries get at shutdown before their leases are released.
    pub drain_timeout: Duration,
}

/// The wait before retry number `attempt` (1 = the first retry), from the `backoff` crate's
/// exponential policy with jitter.
pub fn retry_delay(retry: &RetryConfig, attempt: u32) -> Duration {
    let mut policy = ExponentialBackoff {
        current_interval: retry.initial_interval,
        initial_interval: retry.initial_interval,
        randomization_factor: retry.jitter,
        multiplier: retry.multiplier,
        max_interval: retry.max_interval,
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    };
    let mut delay = retry.initial_interval;
    for _ in 0..attempt.max(1) {
        delay = policy.next_backoff().unwrap_or(retry.max_interval);
    }
    delay
}

/// Operator control of one connector's dispatcher: pause and resume, and cancellation of
/// its tasks (carried out by the dispatcher itself, which knows whether the task is in its
/// window, so that its backlog accounting stays exact).
#[derive(Debug, Default)]
pub struct ConnectorControl {
    paused: AtomicBool,
    /// Why it is paused (an operator's note, or what the target said when it disabled itself).
    reason: std::sync::Mutex<Option<String>>,
    wake: Notify,
    /// Cancellations waiting for the dispatcher (bounded by [`ConnectorControl::MAX_QUEUED`]).
    cancels: std::sync::Mutex<Vec<CancelRequest>>,
}

/// An operator's cancellation, answered by the dispatcher.
#[derive(Debug)]
struct CancelRequest {
    key: RecordKey,
    reason: String,
    reply: oneshot::Sender<Result<TaskRecord, LogError>>,
}

impl ConnectorControl {
    /// Stops starting new deliveries (those in flight finish); tasks wait in the log.
    pub fn pause(&self, reason: impl Into<String>) {
        if let Ok(mut r) = self.reason.lock() {
            *r = Some(reason.into());
        }
        self.paused.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Starts delivering again.
    pub fn resume(&self) {
        if let Ok(mut r) = self.reason.lock() {
            *r = None;
        }
        self.paused.store(false, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Whether deliveries are paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Why deliveries are paused, if they are.
    pub fn pause_reason(&self) -> Option<String> {
        if !self.is_paused() {
            return None;
        }
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// Most cancellations queued for the dispatcher at once.
    pub const MAX_QUEUED: usize = 1024;

    /// Asks the dispatcher to cancel the task at `key` (pending, retrying or running: an
    /// attempt under way finishes, but its result is not recorded). The answer is the
    /// cancelled record, or why not. The receiver fails if the dispatcher has stopped.
    pub fn cancel(
        &self,
        key: RecordKey,
        reason: String,
    ) -> oneshot::Receiver<Result<TaskRecord, LogError>> {
        let (reply, answer) = oneshot::channel();
        match self.cancels.lock() {
            Ok(mut queue) if queue.len() < Self::MAX_QUEUED => {
                queue.push(CancelRequest { key, reason, reply });
            }
            _ => {
                let _ = reply.send(Err(LogError::Refused(
                    "too many cancellations queued; try again".into(),
                )));
            }
        }
        self.wake.notify_one();
        answer
    }

    fn take_cancels(&self) -> Vec<CancelRequest> {
        self.cancels
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}

/// How often the per-state gauges are refreshed and the head is persisted.
const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// How long a success may stay unrecorded above a head that does not move (a crash in that
/// time redelivers it, which at-least-once allows).
const UNPERSISTED_SUCCESS_AGE: Duration = Duration::from_secs(1);

/// How far the head may advance before it is written to the store again.
const HEAD_PERSIST_STEP: u64 = 1024;

/// The gauges of one connector, registered once.
struct StateGauges {
    pending: metrics::Gauge,
    running: metrics::Gauge,
    retrying: metrics::Gauge,
    paused: metrics::Gauge,
}

impl StateGauges {
    fn new(connector: &str) -> Self {
        let gauge = |state: &'static str| gauge!(m::TASKS, "connector" => connector.to_string(), "state" => state);
        StateGauges {
            pending: gauge("pending"),
            running: gauge("running"),
            retrying: gauge("retrying"),
            paused: gauge!(m::CONNECTOR_PAUSED, "connector" => connector.to_string()),
        }
    }
}

/// Where a task in the window stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// May start now.
    Ready,
    /// Retrying; may start at this time (ms).
    Waiting(i64),
    /// A delivery is under way.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    key: RecordKey,
    ordering_key: String,
    slot: Slot,
    /// The record as loaded, kept until its first start (its body never changes; its status
    /// is checked again before use).
    loaded: Option<TaskRecord>,
    /// When the current attempt started (ms), while in flight.
    started_ms: i64,
}

/// The result of one delivery, sent back to the dispatcher loop.
struct Completion {
    seq: u64,
    started_ms: i64,
    elapsed: Duration,
    event_ms: Option<i64>,
    result: Result<DeliveryOutcome, DeliveryError>,
}

/// Saves checkpoints of one running task into its record.
struct LogTaskContext {
    log: Arc<TaskLog>,
    key: RecordKey,
    owner: String,
    lease: Duration,
}

impl TaskContext for LogTaskContext {
    fn checkpoint(&self, state: &[u8]) -> Result<(), CheckpointError> {
        let lease_until_ms = now_ms() + self.lease.as_millis() as i64;
        self.log
            .update(self.key, |r| {
                hold(r, &self.owner)?;
                r.checkpoint = Some(state.to_vec());
                r.state = TaskState::Running {
                    owner: self.owner.clone(),
                    lease_until_ms,
                };
                Ok(())
            })
            .map(|_| ())
            .map_err(|e| CheckpointError(e.to_string()))
    }
}

/// Checks that `owner` holds the task whose record is about to change: running under its
/// lease, or pending in the log while its first attempt runs unrecorded (that attempt is
/// counted now).
fn hold(record: &mut TaskRecord, owner: &str) -> Result<(), LogError> {
    match &record.state {
        TaskState::Running { owner: holder, .. } if holder == owner => Ok(()),
        TaskState::Pending => {
            record.attempts += 1;
            Ok(())
        }
        other => Err(LogError::Refused(format!(
            "task is {} and no longer held by this process",
            other.name()
        ))),
    }
}

/// Delivers one connector's tasks. Run it with [`Dispatcher::run`].
pub struct Dispatcher {
    name: String,
    number: u16,
    log: Arc<TaskLog>,
    connector: Arc<dyn Connector>,
    policy: DispatchPolicy,
    /// This process instance: the owner written into leases.
    owner: String,
    notify: Arc<Notify>,
    backlog: Arc<Backlog>,
    /// This connector's unfinished tasks (the source adds, this dispatcher subtracts).
    unfinished: Arc<AtomicU64>,
    /// Pause and resume.
    control: Arc<ConnectorControl>,
    /// Metric handles of the common path, registered once.
    metrics: DeliveryMetrics,
}

/// The per-delivery metric handles of one connector, registered once so that recording a
/// delivery neither allocates labels nor looks the series up. Rarer outcomes are recorded
/// through the macros.
struct DeliveryMetrics {
    duration: metrics::Histogram,
    end_to_end: metrics::Histogram,
    delivered: metrics::Counter,
    succeeded: metrics::Counter,
}

impl DeliveryMetrics {
    fn new(connector: &str) -> Self {
        DeliveryMetrics {
            duration: histogram!(m::DELIVERY_DURATION, "connector" => connector.to_string()),
            end_to_end: histogram!(m::END_TO_END_LATENCY, "connector" => connector.to_string()),
            delivered: counter!(m::DELIVERIES, "connector" => connector.to_string(), "outcome" => "success"),
            succeeded: counter!(m::TASKS_FINISHED, "connector" => connector.to_string(), "state" => "succeeded"),
        }
    }

    /// One delivery of `connector` and its result.
    fn delivery(
        &self,
        connector: &str,
        result: &Result<DeliveryOutcome, DeliveryError>,
        elapsed: Duration,
    ) {
        self.duration.record(elapsed.as_secs_f64());
        if matches!(result, Ok(DeliveryOutcome::Delivered)) {
            self.delivered.increment(1);
        } else {
            counter!(m::DELIVERIES, "connector" => connector.to_string(), "outcome" => outcome_label(result))
                .increment(1);
        }
    }

    /// A task of `connector` reached the final state `state` at `now_ms`; a success also
    /// records the time since its event (`event_ms`).
    fn finished(&self, connector: &str, state: &TaskState, event_ms: Option<i64>, now_ms: i64) {
        if !matches!(state, TaskState::Succeeded { .. }) {
            counter!(m::TASKS_FINISHED, "connector" => connector.to_string(), "state" => state.name())
                .increment(1);
            return;
        }
        if let Some(event_ms) = event_ms {
            self.end_to_end
                .record(((now_ms - event_ms).max(0) as f64) / 1000.0);
        }
        self.succeeded.increment(1);
    }
}

/// A delivery's outcome as the deliveries metric and the attempt history name it.
fn outcome_label(result: &Result<DeliveryOutcome, DeliveryError>) -> &'static str {
    match result {
        Ok(DeliveryOutcome::Delivered) => "success",
        Ok(DeliveryOutcome::AlreadyDone(_)) => "already_done",
        Err(e) => e.label(),
    }
}

impl Dispatcher {
    /// Creates a dispatcher for connector `name` (number `number` in the log).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        number: u16,
        log: Arc<TaskLog>,
        connector: Arc<dyn Connector>,
        policy: DispatchPolicy,
        owner: String,
        notify: Arc<Notify>,
        backlog: Arc<Backlog>,
        unfinished: Arc<AtomicU64>,
        control: Arc<ConnectorControl>,
    ) -> Self {
        Dispatcher {
            metrics: DeliveryMetrics::new(&name),
            name,
            number,
            log,
            connector,
            policy,
            owner,
            notify,
            backlog,
            unfinished,
            control,
        }
    }

    /// Runs until `shutdown` turns true, then drains in-flight deliveries for at most the
    /// policy's drain timeout and releases the leases of those still running.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
        let mut deliveries = Deliveries::default();
        let mut window: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut next_from = self.log.head(self.number)?;
        let mut head = next_from;
        let mut unpersisted: BTreeMap<u64, Instant> = BTreeMap::new();
        let gauges = StateGauges::new(&self.name);
        let mut last_report = Instant::now()
            .checked_sub(REPORT_INTERVAL)
            .unwrap_or_else(Instant::now);
        let mut renew = tokio::time::interval(self.policy.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.apply_cancels(&mut window, &unpersisted);
            if window.len() < self.policy.window {
                let room = self.policy.window - window.len();
                let batch = self.log.unfinished_from(self.number, next_from, room)?;
                if let Some(last) = batch.last_seen {
                    next_from = last + 1;
                }
                for (key, record) in batch.records {
                    window.insert(key.seq, self.entry(key, record));
                }
            }
            let paused = self.control.is_paused();
            let next_wake = if paused {
                None
            } else {
                self.start_ready(&mut window, &mut deliveries)?
            };
            let unreported = last_report.elapsed() < REPORT_INTERVAL;
            self.advance_head(&window, next_from, &mut head, !unreported)?;
            if !unreported {
                self.persist_successes(head, &mut unpersisted, UNPERSISTED_SUCCESS_AGE)?;
                self.report(&window, &gauges, paused);
                last_report = Instant::now();
            }
            let report_in = REPORT_INTERVAL.saturating_sub(last_report.elapsed());
            let sleep_for = next_wake
                .map(|at| Duration::from_millis((at - now_ms()).max(1) as u64))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                Some(done) = deliveries.next(), if !deliveries.is_empty() => {
                    self.complete(&mut window, done, &mut unpersisted)?;
                    while let Some(done) = deliveries.try_next() {
                        self.complete(&mut window, done, &mut unpersisted)?;
                    }
                }
                () = self.notify.notified() => {}
                () = self.control.wake.notified() => {}
                // Refresh the gauges once more before idling, so they never stay stale.
                () = tokio::time::sleep(report_in), if unreported => {}
                () = tokio::time::sleep(sleep_for) => {}
                _ = renew.tick() => self.renew_leases(&window),
                _ = shutdown.changed() => {}
            }
        }
        self.drain(window, deliveries, next_from, head, unpersisted)
            .await
    }

    /// Carries out the operators' cancellations.
    fn apply_cancels(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        unpersisted: &BTreeMap<u64, Instant>,
    ) {
        for request in self.control.take_cancels() {
            let result = if request.key.connector == self.number
                && unpersisted.contains_key(&request.key.seq)
            {
                Err(LogError::Refused(
                    "task is already succeeded: only pending, retrying or running tasks can be cancelled"
                        .into(),
                ))
            } else {
                self.cancel(window, request.key, &request.reason)
            };
            let _ = request.reply.send(result);
        }
    }

    /// Cancels one task. A task in flight keeps its window entry until its attempt ends (its
    /// result is then refused and the entry dropped, counted once); a task not in the window
    /// will never be loaded (it is final), so it leaves the count here.
    fn cancel(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        key: RecordKey,
        reason: &str,
    ) -> Result<TaskRecord, LogError> {
        if key.connector != self.number {
            return Err(LogError::Refused(format!(
                "the task is not a task of connector {}",
                self.name
            )));
        }
        let now = now_ms();
        let record = self
            .log
            .update(key, |r| r.cancel(reason, now).map_err(LogError::Refused))?;
        counter!(m::TASKS_FINISHED, "connector" => self.name.clone(), "state" => "cancelled")
            .increment(1);
        match window.get(&key.seq).map(|e| e.slot) {
            Some(Slot::InFlight) => {}
            Some(_) => {
                window.remove(&key.seq);
                self.finished_elsewhere();
            }
            None => self.finished_elsewhere(),
        }
        tracing::info!(connector = %self.name, task_id = %TaskId::from_bytes(record.task_id), reason, "task cancelled by an operator");
        Ok(record)
    }

    /// Builds the window entry of a loaded record.
    fn entry(&self, key: RecordKey, record: TaskRecord) -> Entry {
        let slot = match &record.state {
            TaskState::Retrying { not_before_ms, .. } => Slot::Waiting(*not_before_ms),
            TaskState::Running {
                lease_until_ms,
                owner,
            } if owner == &self.owner => {
                // Ours but not in flight: a delivery we lost track of. Wait out the lease.
                Slot::Waiting(*lease_until_ms)
            }
            _ => Slot::Ready,
        };
        Entry {
            key,
            ordering_key: if self.policy.ordered {
                record.ordering_key.clone()
            } else {
                String::new()
            },
            slot,
            loaded: Some(record),
            started_ms: 0,
        }
    }

    /// Starts every task that may start; returns the earliest time a waiting task is due.
    fn start_ready(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        deliveries: &mut Deliveries,
    ) -> Result<Option<i64>, LogError> {
        let now = now_ms();
        let mut next_wake: Option<i64> = None;
        let mut blocked: HashSet<String> = HashSet::new();
        let mut finished = Vec::new();
        for (seq, entry) in window.iter_mut() {
            if deliveries.len() >= self.policy.concurrency {
                break;
            }
            if self.policy.ordered && blocked.contains(&entry.ordering_key) {
                continue;
            }
            match entry.slot {
                Slot::InFlight => {}
                Slot::Waiting(at) if at > now => {
                    next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                }
                Slot::Ready | Slot::Waiting(_) => match self.start(entry, deliveries)? {
                    Start::Started => {}
                    Start::Waiting(at) => next_wake = Some(next_wake.map_or(at, |w| w.min(at))),
                    Start::Finished => finished.push(*seq),
                },
            }
            if self.policy.ordered {
                blocked.insert(entry.ordering_key.clone());
            }
        }
        for seq in finished {
            window.remove(&seq);
        }
        Ok(next_wake)
    }

    /// Claims one task and spawns its delivery.
    fn start(&self, entry: &mut Entry, deliveries: &mut Deliveries) -> Result<Start, LogError> {
        let now = now_ms();
        let lease_until_ms = now + self.policy.lease.as_millis() as i64;
        // A task without a stored status is pending in the log: its first attempt starts
        // without a write (the lease lives here until it outlives a third of it).
        if let Some(mut record) = entry.loaded.take() {
            if !self.log.has_status(entry.key)? {
                record.attempts += 1;
                return Ok(self.spawn_delivery(entry, record, now, deliveries));
            }
        }
        let claimed = self.log.update(entry.key, |r| {
            // The store's lock proves that any other owner is a process that is gone.
            if !r.claimable(&self.owner, now, true) {
                return Err(LogError::Refused(format!("task is {}", r.state.name())));
            }
            if let TaskState::Running { owner, .. } = &r.state {
                let attempt = r.attempts;
                r.push_history(AttemptRecord {
                    attempt,
                    started_ms: r.updated_ms,
                    finished_ms: now,
                    outcome: "abandoned".into(),
                    message: Some(format!("owner {owner} stopped before finishing")),
                });
            }
            r.attempts += 1;
            r.state = TaskState::Running {
                owner: self.owner.clone(),
                lease_until_ms,
            };
            Ok(())
        });
        let record = match claimed {
            Ok(record) => record,
            Err(LogError::Refused(_)) | Err(LogError::NotFound(_)) => {
                let current = self.log.get(entry.key)?;
                return match current {
                    Some(r) if !r.state.is_final() => {
                        *entry = self.entry(entry.key, r);
                        let lease_ms = self.policy.lease.as_millis() as i64;
                        Ok(Start::Waiting(match entry.slot {
                            Slot::Waiting(at) if at > now => at,
                            _ => now + lease_ms.min(1000),
                        }))
                    }
                    _ => {
                        self.finished_elsewhere();
                        Ok(Start::Finished)
                    }
                };
            }
            Err(e) => return Err(e),
        };
        Ok(self.spawn_delivery(entry, record, now, deliveries))
    }

    /// Spawns the delivery of a claimed task (`record.attempts` counts this attempt).
    fn spawn_delivery(
        &self,
        entry: &mut Entry,
        record: TaskRecord,
        now: i64,
        deliveries: &mut Deliveries,
    ) -> Start {
        entry.started_ms = now;
        let event: PolarisEvent = match stored::decode(&record.event_bytes) {
            Ok(event) => event,
            Err(e) => {
                let outcome = Err(DeliveryError::permanent(format!(
                    "stored event does not decode: {e}"
                )));
                entry.slot = Slot::InFlight;
                let done = Completion {
                    seq: entry.key.seq,
                    started_ms: now,
                    elapsed: Duration::ZERO,
                    event_ms: None,
                    result: outcome,
                };
                deliveries.start(done.seq, now, async move { done });
                return Start::Started;
            }
        };
        entry.slot = Slot::InFlight;
        let task_id = TaskId::from_bytes(record.task_id);
        let delivery = Delivery {
            task_id,
            connector: self.name.clone(),
            attempt: record.attempts,
            realm: record.realm,
            source: SourcePosition {
                topic: record.source.topic,
                partition: record.source.partition,
                offset: record.source.offset,
            },
            checkpoint: record.checkpoint,
            event,
        };
        let context = LogTaskContext {
            log: self.log.clone(),
            key: entry.key,
            owner: self.owner.clone(),
            lease: self.policy.lease,
        };
        let connector = self.connector.clone();
        let seq = entry.key.seq;
        let span = tracing::info_span!(
            "delivery",
            connector = %self.name,
            task_id = %task_id,
            attempt = record.attempts,
            trace_id = delivery.event.trace_id().unwrap_or_default()
        );
        deliveries.start(
            seq,
            now,
            async move {
                let started = Instant::now();
                let result = connector.deliver(&delivery, &context).await;
                Completion {
                    seq,
                    started_ms: now,
                    elapsed: started.elapsed(),
                    event_ms: delivery.event.timestamp_ms,
                    result,
                }
            }
            .instrument(span),
        );
        Start::Started
    }

    /// Records the result of one delivery.
    fn complete(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        done: Completion,
        unpersisted: &mut BTreeMap<u64, Instant>,
    ) -> Result<(), LogError> {
        let Some(entry) = window.get_mut(&done.seq) else {
            return Ok(());
        };
        self.metrics
            .delivery(&self.name, &done.result, done.elapsed);
        let now = now_ms();
        if matches!(done.result, Ok(DeliveryOutcome::Delivered))
            && !self.log.has_status(entry.key)?
        {
            // A first-attempt success: nothing to write, the head will pass it.
            self.metrics.finished(
                &self.name,
                &TaskState::Succeeded { note: None },
                done.event_ms,
                now,
            );
            window.remove(&done.seq);
            unpersisted.insert(done.seq, Instant::now());
            self.unfinished.fetch_sub(1, Ordering::Relaxed);
            self.backlog.finish_one();
            return Ok(());
        }
        let retry = &self.policy.retry;
        let result = self.log.update(entry.key, |r| {
            hold(r, &self.owner)?;
            let (state, message) = match &done.result {
                Ok(DeliveryOutcome::Delivered) => (TaskState::Succeeded { note: None }, None),
                Ok(DeliveryOutcome::AlreadyDone(note)) => (
                    TaskState::Succeeded {
                        note: Some(note.clone()),
                    },
                    Some(note.clone()),
                ),
                Err(DeliveryError::Deferred {
                    reason,
                    retry_after,
                }) => {
                    r.attempts = r.attempts.saturating_sub(1);
                    (
                        TaskState::Retrying {
                            not_before_ms: now + retry_after.as_millis() as i64,
                            last_error: format!("deferred: {reason}"),
                        },
                        Some(reason.clone()),
                    )
                }
                Err(DeliveryError::Disabled { reason }) => {
                    r.attempts = r.attempts.saturating_sub(1);
                    (
                        TaskState::Retrying {
                            not_before_ms: now,
                            last_error: format!("target disabled: {reason}"),
                        },
                        Some(reason.clone()),
                    )
                }
                Err(DeliveryError::Transient {
                    message,
                    retry_after,
                }) => {
                    let too_old = retry
                        .max_age
                        .is_some_and(|age| now - r.created_ms > age.as_millis() as i64);
                    if too_old {
                        (
                            TaskState::Dead {
                                reason: format!(
                                    "gave up after {} attempts: older than retry.max_age; last error: {message}",
                                    r.attempts
                                ),
                            },
                            Some(message.clone()),
                        )
                    } else if r.attempts >= retry.max_attempts {
                        (
                            TaskState::Dead {
                                reason: format!(
                                    "gave up after {} attempts; last error: {message}",
                                    r.attempts
                                ),
                            },
                            Some(message.clone()),
                        )
                    } else {
                        let wait =
                            retry_delay(retry, r.attempts).max(retry_after.unwrap_or_default());
                        (
                            TaskState::Retrying {
                                not_before_ms: now + wait.as_millis() as i64,
                                last_error: message.clone(),
                            },
                            Some(message.clone()),
                        )
                    }
                }
                Err(DeliveryError::Permanent { message }) => (
                    TaskState::Dead {
                        reason: format!("permanent error: {message}"),
                    },
                    Some(message.clone()),
                ),
                Err(DeliveryError::Misconfigured { message }) => (
                    TaskState::Dead {
                        reason: format!("connector misconfigured: {message}"),
                    },
                    Some(message.clone()),
                ),
            };
            let attempt = r.attempts;
            r.push_history(AttemptRecord {
                attempt,
                started_ms: done.started_ms,
                finished_ms: now,
                outcome: outcome_label(&done.result).to_string(),
                message,
            });
            r.state = state;
            Ok(())
        });
        if let Err(DeliveryError::Disabled { reason }) = &done.result {
            tracing::warn!(connector = %self.name, %reason, "the target disabled itself: deliveries paused until an operator resumes them");
            self.control.pause(format!("target disabled: {reason}"));
        }
        let record = match result {
            Ok(record) => record,
            Err(LogError::Refused(reason)) => {
                // Cancelled or taken over meanwhile: the record's state stands.
                tracing::info!(connector = %self.name, seq = done.seq, %reason, "delivery result not recorded");
                match self.log.get(entry.key)? {
                    Some(r) if !r.state.is_final() => *entry = self.entry(entry.key, r),
                    _ => {
                        window.remove(&done.seq);
                        self.finished_elsewhere();
                    }
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match &record.state {
            TaskState::Retrying {
                not_before_ms,
                last_error,
            } => {
                tracing::debug!(connector = %self.name, attempt = record.attempts, error = %last_error, "delivery failed; will retry");
                entry.slot = Slot::Waiting(*not_before_ms);
            }
            state => {
                if let TaskState::Dead { reason } = state {
                    tracing::warn!(connector = %self.name, task_id = %TaskId::from_bytes(record.task_id), %reason, "task dead-lettered");
                }
                self.metrics.finished(&self.name, state, done.event_ms, now);
                window.remove(&done.seq);
                self.unfinished.fetch_sub(1, Ordering::Relaxed);
                self.backlog.finish_one();
            }
        }
        Ok(())
    }

    /// A task left the window because something else finished it.
    fn finished_elsewhere(&self) {
        self.unfinished.fetch_sub(1, Ordering::Relaxed);
        self.backlog.finish_one();
    }

    /// Persists the lowest unfinished sequence: every task below it is finished, and those
    /// without a stored status succeeded. Written every [`HEAD_PERSIST_STEP`] sequences and
    /// on each report (`due`): a stale head only means a restart redelivers the successes
    /// since.
    fn advance_head(
        &self,
        window: &BTreeMap<u64, Entry>,
        next_from: u64,
        head: &mut u64,
        due: bool,
    ) -> Result<(), LogError> {
        let lowest = window.keys().next().copied().unwrap_or(next_from);
        if lowest > *head && (lowest - *head >= HEAD_PERSIST_STEP || due) {
            self.log.set_head(self.number, lowest)?;
            *head = lowest;
        }
        Ok(())
    }

    /// Writes a status for each success above the head older than `age` (the head is held
    /// back by a task still retrying), and forgets those the head has passed.
    fn persist_successes(
        &self,
        head: u64,
        unpersisted: &mut BTreeMap<u64, Instant>,
        age: Duration,
    ) -> Result<(), LogError> {
        *unpersisted = unpersisted.split_off(&head);
        let old: Vec<(u64, Instant)> = unpersisted
            .iter()
            .filter(|(_, finished)| finished.elapsed() >= age)
            .map(|(seq, at)| (*seq, *at))
            .collect();
        for (seq, _) in old {
            unpersisted.remove(&seq);
            let key = RecordKey {
                connector: self.number,
                seq,
            };
            let now = now_ms();
            let written = self.log.update(key, |r| {
                if r.state != TaskState::Pending {
                    // Cancelled meanwhile, or already written: the stored state stands.
                    return Err(LogError::Refused(format!("task is {}", r.state.name())));
                }
                r.attempts = 1;
                r.push_history(AttemptRecord {
                    attempt: 1,
                    started_ms: now,
                    finished_ms: now,
                    outcome: "success".into(),
                    message: Some("recorded after the fact (ahead of the head)".into()),
                });
                r.state = TaskState::Succeeded { note: None };
                Ok(())
            });
            match written {
                Ok(_) | Err(LogError::Refused(_)) | Err(LogError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Extends the leases of in-flight tasks.
    /// A first attempt that has run for a third of its lease is recorded as running now.
    fn renew_leases(&self, window: &BTreeMap<u64, Entry>) {
        let now = now_ms();
        let lease_ms = self.policy.lease.as_millis() as i64;
        let lease_until_ms = now + lease_ms;
        for entry in window.values().filter(|e| e.slot == Slot::InFlight) {
            if now - entry.started_ms < lease_ms / 3 {
                continue;
            }
            let renewed = self.log.update(entry.key, |r| {
                hold(r, &self.owner)?;
                r.state = TaskState::Running {
                    owner: self.owner.clone(),
                    lease_until_ms,
                };
                Ok(())
            });
            if let Err(e) = renewed {
                tracing::debug!(connector = %self.name, error = %e, "lease not renewed");
            }
        }
    }

    /// Publishes the per-state gauges of this connector.
    fn report(&self, window: &BTreeMap<u64, Entry>, gauges: &StateGauges, paused: bool) {
        let (mut running, mut retrying) = (0u64, 0u64);
        for entry in window.values() {
            match entry.slot {
                Slot::InFlight => running += 1,
                Slot::Waiting(_) => retrying += 1,
                Slot::Ready => {}
            }
        }
        let unfinished = crate::source::unfinished_count(&self.unfinished);
        let pending = unfinished.saturating_sub(running + retrying);
        gauges.pending.set(pending as f64);
        gauges.running.set(running as f64);
        gauges.retrying.set(retrying as f64);
        gauges.paused.set(if paused { 1.0 } else { 0.0 });
    }

    /// Waits for in-flight deliveries up to the drain timeout, then releases the rest.
    async fn drain(
        self,
        mut window: BTreeMap<u64, Entry>,
        mut deliveries: Deliveries,
        next_from: u64,
        mut head: u64,
        mut unpersisted: BTreeMap<u64, Instant>,
    ) -> Result<(), LogError> {
        for request in self.control.take_cancels() {
            let _ = request.reply.send(Err(LogError::Refused(
                "the bridge is shutting down; cancel the task after the restart".into(),
            )));
        }
        let deadline = tokio::time::Instant::now() + self.policy.drain_timeout;
        while !deliveries.is_empty() {
            match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(Some(done)) => {
                    self.complete(&mut window, done, &mut unpersisted)?;
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.advance_head(&window, next_from, &mut head, true)?;
        self.persist_successes(head, &mut unpersisted, Duration::ZERO)?;
        let now = now_ms();
        let mut released = 0;
        for entry in window.values().filter(|e| e.slot == Slot::InFlight) {
            if !self.log.has_status(entry.key)? {
                // Pending in the log already: nothing to release.
                continue;
            }
            let result = self.log.update(entry.key, |r| {
                hold(r, &self.owner)?;
                r.attempts = r.attempts.saturating_sub(1);
                r.state = TaskState::Retrying {
                    not_before_ms: now,
                    last_error: "released at shutdown before the delivery finished".into(),
                };
                Ok(())
            });
            if result.is_ok() {
                released += 1;
            }
        }
        tracing::info!(connector = %self.name, released, "dispatcher stopped");
        Ok(())
    }
}

/// The deliveries under way. Each is polled once by the dispatcher itself: one that finishes
/// at once (a connector that only hands the event on, or a failure found before any I/O) is
/// completed without a task, and the rest continue as a tokio task each. A spawn costs a
/// cross-thread wake-up (an `eventfd` write) whenever the other runtime worker is idle, about
/// 6% of the bridge's CPU end to end when every delivery was spawned (BENCHMARKS.md). A
/// delivery that panics is reported as a transient failure of its task.
#[derive(Default)]
struct Deliveries {
    tasks: JoinSet<Completion>,
    /// Sequence and start (ms) of each spawned delivery, by tokio task id.
    started: HashMap<tokio::task::Id, (u64, i64)>,
    /// Deliveries that finished on their first poll, not yet taken.
    finished: VecDeque<Completion>,
}

impl Deliveries {
    /// Starts the delivery of task `seq`: polls it once, and spawns it if it is not finished.
    fn start(
        &mut self,
        seq: u64,
        started_ms: i64,
        delivery: impl Future<Output = Completion> + Send + 'static,
    ) {
        let mut delivery = Box::pin(delivery);
        // A waker that does nothing is enough: a delivery still pending is spawned at once,
        // and tokio polls it again with the task's own waker.
        let mut context = Context::from_waker(Waker::noop());
        match std::panic::catch_unwind(AssertUnwindSafe(|| delivery.as_mut().poll(&mut context))) {
            Ok(Poll::Ready(done)) => self.finished.push_back(done),
            Ok(Poll::Pending) => {
                let handle = self.tasks.spawn(delivery);
                self.started.insert(handle.id(), (seq, started_ms));
            }
            Err(panic) => self.finished.push_back(Completion {
                seq,
                started_ms,
                elapsed: Duration::ZERO,
                event_ms: None,
                result: Err(DeliveryError::transient(format!(
                    "connector task failed: it panicked: {}",
                    panic_message(panic.as_ref())
                ))),
            }),
        }
    }

    fn len(&self) -> usize {
        self.tasks.len() + self.finished.len()
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.finished.is_empty()
    }

    /// The next delivery to finish; `None` when none is under way.
    async fn next(&mut self) -> Option<Completion> {
        if let Some(done) = self.finished.pop_front() {
            return Some(done);
        }
        let joined = self.tasks.join_next_with_id().await?;
        Some(self.completion(joined))
    }

    /// A delivery that has already finished, if any.
    fn try_next(&mut self) -> Option<Completion> {
        if let Some(done) = self.finished.pop_front() {
            return Some(done);
        }
        let joined = self.tasks.try_join_next_with_id()?;
        Some(self.completion(joined))
    }

    fn completion(
        &mut self,
        joined: Result<(tokio::task::Id, Completion), tokio::task::JoinError>,
    ) -> Completion {
        match joined {
            Ok((id, done)) => {
                self.started.remove(&id);
                done
            }
            Err(join) => {
                let (seq, started_ms) = self.started.remove(&join.id()).unwrap_or((0, 0));
                Completion {
                    seq,
                    started_ms,
                    elapsed: Duration::ZERO,
                    event_ms: None,
                    result: Err(DeliveryError::transient(format!(
                        "connector task failed: {join}"
                    ))),
                }
            }
        }
    }
}

/// The text of a panic's payload (a `&str` or a `String`), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// What became of an attempt to start a task.
enum Start {
    /// A delivery is under way.
    Started,
    /// Not claimable yet (for example held under another lease); look again at this time (ms).
    Waiting(i64),
    /// The task is finished (for example cancelled by an operator) and leaves the window.
    Finished,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{InsertOutcome, SourceRecord};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A connector scripted per event id: fails with the scripted errors in turn, then
    /// succeeds; records the order of attempts and the peak concurrency.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<std::collections::HashMap<String, Vec<DeliveryError>>>,
        attempts: Mutex<Vec<String>>,
        running: AtomicU64,
        peak: AtomicU64,
        delay: Duration,
    }

    #[async_trait]
    impl Connector for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn deliver(
            &self,
            d: &Delivery,
            _: &dyn TaskContext,
        ) -> Result<DeliveryOutcome, DeliveryError> {
            let id = d.event.event_id.clone().unwrap_or_default();
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.attempts.lock().unwrap().push(id.clone());
            let next = self
                .script
                .lock()
                .unwrap()
                .get_mut(&id)
                .and_then(|s| (!s.is_empty()).then(|| s.remove(0)));
            match next {
                Some(e) => Err(e),
                None => Ok(DeliveryOutcome::Delivered),
            }
        }
    }

    struct Harness {
        log: Arc<TaskLog>,
        number: u16,
        control: Arc<ConnectorControl>,
        notify: Arc<Notify>,
        backlog: Arc<Backlog>,
        unfinished: Arc<AtomicU64>,
        _dir: tempfile::TempDir,
    }

    fn harness() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(TaskLog::open(dir.path(), 8).unwrap());
        let number = log.connector_number("c").unwrap();
        Harness {
            log,
            number,
            control: Arc::new(ConnectorControl::default()),
            notify: Arc::new(Notify::new()),
            backlog: Arc::new(Backlog::default()),
            unfinished: Arc::new(AtomicU64::new(0)),
            _dir: dir,
        }
    }

    impl Harness {
        fn add(&self, event_id: &str, ordering_key: &str) {
            let mut event = PolarisEvent::new(polaris_bridge_api::event::EventType::from_name(
                "AFTER_UPDATE_TABLE",
            ));
            event.event_id = Some(event_id.to_string());
            let record = TaskRecord {
                task_id: *TaskId::for_event("c", "R", &event).as_bytes(),
                dedup_bucket: 0,
                connector: "c".into(),
                state: TaskState::Pending,
                attempts: 0,
                created_ms: now_ms(),
                updated_ms: now_ms(),
                ordering_key: ordering_key.into(),
                realm: "R".into(),
                source: SourceRecord {
                    topic: "t".into(),
                    partition: 0,
                    offset: 0,
                },
                event_bytes: serde_json::to_vec(&event).unwrap(),
                history: vec![],
                checkpoint: None,
            };
            assert!(matches!(
                self.log.insert(self.number, &record).unwrap(),
                InsertOutcome::Created(_)
            ));
            // What the source does before it wakes a dispatcher.
            self.log.flush().unwrap();
            self.unfinished.fetch_add(1, Ordering::SeqCst);
            self.backlog.add(1);
            self.notify.notify_one();
        }

        fn spawn(
            &self,
            connector: Arc<Scripted>,
            concurrency: usize,
            ordered: bool,
        ) -> (
            watch::Sender<bool>,
            tokio::task::JoinHandle<Result<(), LogError>>,
        ) {
            self.spawn_with(connector, concurrency, ordered)
        }

        fn spawn_with(
            &self,
            connector: Arc<dyn Connector>,
            concurrency: usize,
            ordered: bool,
        ) -> (
            watch::Sender<bool>,
            tokio::task::JoinHandle<Result<(), LogError>>,
        ) {
            let policy = DispatchPolicy {
                concurrency,
                retry: RetryConfig {
                    max_attempts: 3,
                    initial_interval: Duration::from_millis(10),
                    max_interval: Duration::from_millis(20),
                    multiplier: 2.0,
                    jitter: 0.0,
                    max_age: None,
                },
                lease: Duration::from_secs(5),
                window: 64,
                ordered,
                drain_timeout: Duration::from_secs(1),
            };
            let (tx, rx) = watch::channel(false);
            let d = Dispatcher::new(
                "c".into(),
                self.number,
                self.log.clone(),
                connector,
                policy,
                "me".into(),
                self.notify.clone(),
                self.backlog.clone(),
                self.unfinished.clone(),
                self.control.clone(),
            );
            (tx, tokio::spawn(d.run(rx)))
        }

        fn states(&self) -> std::collections::HashMap<String, TaskRecord> {
            self.log
                .iter()
                .map(|e| e.unwrap().1)
                .map(|r| {
                    let event: PolarisEvent = stored::decode(&r.event_bytes).unwrap();
                    (event.event_id.unwrap(), r)
                })
                .collect()
        }

        fn id(&self, event_id: &str) -> TaskId {
            let mut event = PolarisEvent::new(polaris_bridge_api::event::EventType::from_name(
                "AFTER_UPDATE_TABLE",
            ));
            event.event_id = Some(event_id.to_string());
            TaskId::for_event("c", "R", &event)
        }

        async fn settle(&self) {
            for _ in 0..300 {
                // Drained, and the log shows it (the head is persisted every report).
                if self.backlog.get() == 0 && self.log.count_unfinished(self.number).unwrap() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("backlog did not drain: {}", self.backlog.get());
        }
    }

    #[tokio::test]
    async fn same_key_runs_in_order_one_at_a_time_and_other_keys_run_alongside() {
        let h = harness();
        let connector = Arc::new(Scripted {
            delay: Duration::from_millis(20),
            ..Default::default()
        });
        connector
            .script
            .lock()
            .unwrap()
            .insert("a1".into(), vec![DeliveryError::transient("blip")]);
        for (id, key) in [
            ("a1", "A"),
            ("b1", "B"),
            ("a2", "A"),
            ("b2", "B"),
            ("a3", "A"),
        ] {
            h.add(id, key);
        }
        let (stop, task) = h.spawn(connector.clone(), 4, true);
        h.settle().await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let order = connector.attempts.lock().unwrap().clone();
        let a: Vec<&String> = order.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(
            a,
            vec!["a1", "a1", "a2", "a3"],
            "key A waits for its failed head"
        );
        let b_done = order.iter().position(|id| id == "b2").unwrap();
        let a2 = order.iter().position(|id| id == "a2").unwrap();
        assert!(
            b_done < a2,
            "key B is not held up by key A's retry: {order:?}"
        );
        assert!(connector.peak.load(Ordering::SeqCst) <= 2, "one per key");
        let states = h.states();
        assert_eq!(states["a1"].attempts, 2);
        assert!(states
            .values()
            .all(|r| matches!(r.state, TaskState::Succeeded { .. })));
    }

    #[tokio::test]
    async fn concurrency_limit_and_dead_letters() {
        let h = harness();
        let connector = Arc::new(Scripted {
            delay: Duration::from_millis(20),
            ..Default::default()
        });
        {
            let mut script = connector.script.lock().unwrap();
            script.insert(
                "perm".into(),
                vec![DeliveryError::permanent("400 bad request")],
            );
            script.insert(
                "flaky".into(),
                vec![
                    DeliveryError::transient("e1"),
                    DeliveryError::transient("e2"),
                    DeliveryError::transient("e3"),
                ],
            );
        }
        h.add("perm", "");
        h.add("flaky", "");
        for i in 0..10 {
            h.add(&format!("ok{i}"), "");
        }
        let (stop, task) = h.spawn(connector.clone(), 3, false);
        h.settle().await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        assert!(connector.peak.load(Ordering::SeqCst) <= 3);
        assert!(
            connector.peak.load(Ordering::SeqCst) >= 2,
            "runs in parallel"
        );
        let states = h.states();
        let TaskState::Dead { reason } = &states["perm"].state else {
            panic!()
        };
        assert!(reason.contains("400 bad request"), "{reason}");
        assert_eq!(states["perm"].attempts, 1);
        let TaskState::Dead { reason } = &states["flaky"].state else {
            panic!()
        };
        assert!(
            reason.contains("gave up after 3 attempts") && reason.contains("e3"),
            "{reason}"
        );
        assert_eq!(states["flaky"].history.len(), 3);
    }

    #[tokio::test]
    async fn deferred_is_not_an_attempt_and_disabled_pauses_the_connector() {
        let h = harness();
        let connector = Arc::new(Scripted::default());
        {
            let mut script = connector.script.lock().unwrap();
            script.insert(
                "d".into(),
                vec![
                    DeliveryError::Deferred {
                        reason: "circuit open".into(),
                        retry_after: Duration::from_millis(5),
                    },
                    DeliveryError::Deferred {
                        reason: "circuit open".into(),
                        retry_after: Duration::from_millis(5),
                    },
                    DeliveryError::Deferred {
                        reason: "circuit open".into(),
                        retry_after: Duration::from_millis(5),
                    },
                    DeliveryError::Deferred {
                        reason: "circuit open".into(),
                        retry_after: Duration::from_millis(5),
                    },
                ],
            );
            script.insert(
                "gone".into(),
                vec![DeliveryError::Disabled {
                    reason: "410 Gone".into(),
                }],
            );
        }
        h.add("d", "");
        let (stop, task) = h.spawn(connector.clone(), 1, false);
        h.settle().await;
        assert_eq!(
            h.states()["d"].attempts,
            1,
            "deferrals are not attempts (max is 3)"
        );

        h.add("gone", "");
        for _ in 0..200 {
            if h.control.is_paused() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(h.control.pause_reason().unwrap().contains("410 Gone"));
        h.add("after", "");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let states = h.states();
        assert!(
            matches!(states["gone"].state, TaskState::Retrying { .. }),
            "waits, not dead"
        );
        assert_eq!(states["after"].attempts, 0, "nothing starts while paused");
        h.control.resume();
        h.settle().await;
        let states = h.states();
        assert!(matches!(states["gone"].state, TaskState::Succeeded { .. }));
        assert!(matches!(states["after"].state, TaskState::Succeeded { .. }));
        assert_eq!(states["gone"].attempts, 1);
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn first_attempt_successes_write_nothing_and_survive_a_restart() {
        let h = harness();
        let connector = Arc::new(Scripted::default());
        // "stuck" defers for a minute: the head cannot pass it.
        connector.script.lock().unwrap().insert(
            "stuck".into(),
            vec![DeliveryError::Deferred {
                reason: "later".into(),
                retry_after: Duration::from_secs(60),
            }],
        );
        let (stop, task) = h.spawn(connector.clone(), 4, false);
        h.add("first", "");
        h.settle().await;
        let key = h.log.find(&h.id("first")).unwrap().unwrap().0;
        assert!(!h.log.has_status(key).unwrap(), "no write for the success");
        assert_eq!(
            h.log.get(key).unwrap().unwrap().state,
            TaskState::Succeeded { note: None },
            "the head passed it"
        );

        h.add("stuck", "");
        for i in 0..5 {
            h.add(&format!("after{i}"), "");
        }
        for _ in 0..300 {
            if h.backlog.get() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(h.backlog.get(), 1, "only the deferred task is left");
        // Held above the head, the successes get their own status within about a second.
        let after0 = h.log.find(&h.id("after0")).unwrap().unwrap().0;
        for _ in 0..300 {
            if h.log.has_status(after0).unwrap() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let states = h.states();
        for i in 0..5 {
            let r = &states[&format!("after{i}")];
            assert_eq!(r.state, TaskState::Succeeded { note: None }, "after{i}");
            assert_eq!(r.attempts, 1);
        }
        assert!(matches!(states["stuck"].state, TaskState::Retrying { .. }));
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();

        // A new dispatcher delivers only the deferred task (once it is due), none of the
        // successes again.
        let again = Arc::new(Scripted::default());
        h.log
            .update(h.log.find(&h.id("stuck")).unwrap().unwrap().0, |r| {
                r.state = TaskState::Retrying {
                    not_before_ms: 0,
                    last_error: "due now".into(),
                };
                Ok(())
            })
            .unwrap();
        let (stop, task) = h.spawn(again.clone(), 4, false);
        h.settle().await;
        assert_eq!(*again.attempts.lock().unwrap(), vec!["stuck".to_string()]);
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    /// Panics on its first delivery, then succeeds; with `after_await`, the panic comes after
    /// the delivery has waited once (so in a spawned task, not in the dispatcher's first poll).
    #[derive(Default)]
    struct PanicsOnce {
        calls: AtomicU64,
        after_await: bool,
    }

    #[async_trait]
    impl Connector for PanicsOnce {
        fn kind(&self) -> &'static str {
            "panics-once"
        }
        async fn deliver(
            &self,
            _: &Delivery,
            _: &dyn TaskContext,
        ) -> Result<DeliveryOutcome, DeliveryError> {
            if self.after_await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("connector bug");
            }
            Ok(DeliveryOutcome::Delivered)
        }
    }

    #[tokio::test]
    async fn a_panicking_delivery_is_a_transient_failure_of_its_task() {
        for after_await in [false, true] {
            let h = harness();
            let connector = Arc::new(PanicsOnce {
                after_await,
                ..Default::default()
            });
            let (stop, task) = h.spawn_with(connector.clone(), 2, false);
            h.add("boom", "");
            h.settle().await;
            let r = &h.states()["boom"];
            assert_eq!(r.state, TaskState::Succeeded { note: None });
            assert_eq!(r.attempts, 2);
            assert_eq!(r.history[0].outcome, "transient");
            let message = r.history[0].message.as_deref().unwrap();
            assert!(
                message.contains("connector task failed") && message.contains("connector bug"),
                "{message}"
            );
            assert_eq!(connector.calls.load(Ordering::SeqCst), 2);
            stop.send(true).unwrap();
            task.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn cancel_through_the_dispatcher_keeps_the_counts_exact() {
        let h = harness();
        let connector = Arc::new(Scripted {
            delay: Duration::from_millis(300),
            ..Default::default()
        });
        h.add("running", "");
        h.add("waiting", "");
        h.add("delivered", "");
        let (stop, task) = h.spawn(connector.clone(), 1, false);
        for _ in 0..200 {
            if connector.running.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let key_of = |id: &str| {
            h.log
                .iter()
                .map(|e| e.unwrap())
                .find(|(_, r)| {
                    stored::decode(&r.event_bytes).unwrap().event_id.as_deref() == Some(id)
                })
                .unwrap()
                .0
        };
        // In the window, not in flight: leaves at once.
        let cancelled = h
            .control
            .cancel(key_of("waiting"), "not needed".into())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(cancelled.state, TaskState::Cancelled { .. }));
        assert_eq!(h.backlog.get(), 2);
        // In flight: the attempt finishes, its result is not recorded.
        h.control
            .cancel(key_of("running"), "stop it".into())
            .await
            .unwrap()
            .unwrap();
        let again = h
            .control
            .cancel(key_of("running"), "twice".into())
            .await
            .unwrap();
        assert!(matches!(again, Err(LogError::Refused(_))), "{again:?}");
        h.settle().await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(h.backlog.get(), 0);
        assert_eq!(h.unfinished.load(Ordering::SeqCst), 0);
        let states = h.states();
        let TaskState::Cancelled { reason } = &states["running"].state else {
            panic!("{:?}", states["running"].state)
        };
        assert_eq!(reason, "stop it");
        assert!(matches!(
            states["waiting"].state,
            TaskState::Cancelled { .. }
        ));
        assert!(matches!(
            states["delivered"].state,
            TaskState::Succeeded { .. }
        ));
        let attempted = connector.attempts.lock().unwrap().clone();
        assert!(!attempted.contains(&"waiting".to_string()), "{attempted:?}");
    }

    #[test]
    fn retry_delay_grows_with_jitter_and_is_capped() {
        let retry = RetryConfig {
            max_attempts: 10,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
            max_age: None,
        };
        let first = retry_delay(&retry, 1);
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(150),
            "{first:?}"
        );
        let third = retry_delay(&retry, 3);
        assert!(
            third >= Duration::from_millis(200) && third <= Duration::from_millis(600),
            "{third:?}"
        );
        for _ in 0..20 {
            assert!(
                retry_delay(&retry, 30) <= Duration::from_secs(3),
                "capped (with jitter)"
            );
        }
        let no_jitter = RetryConfig {
            jitter: 0.0,
            ..retry
        };
        assert_eq!(retry_delay(&no_jitter, 2), Duration::from_millis(200));
    }
}
