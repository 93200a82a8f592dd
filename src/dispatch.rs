//! The dispatcher: delivers one connector's tasks from the log, at least once.
//!
//! Each connector instance has its own dispatcher task, so a slow or failing connector delays
//! only its own tasks (DESIGN.md guarantee 5). A dispatcher holds a bounded window of the
//! connector's unfinished tasks, read from the log in creation order. It starts a task by
//! moving its record to `running` with a lease (compare-and-swap), runs at most
//! `concurrency` deliveries at once, and on the result moves the record to `succeeded`,
//! `retrying` (with exponential backoff and jitter from the `backoff` crate, or the target's
//! retry-after) or `dead` (attempts exhausted, permanent or configuration error). With
//! `ordered` set, tasks with the same ordering key (the resource identity) run one at a time
//! in event order (guarantee 8). Running tasks whose owner is a previous process (the store's
//! lock proves it is gone) or whose lease expired are taken over (guarantee 4).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use metrics::{counter, gauge, histogram};
use polaris_bridge_api::connector::{CheckpointError, SourcePosition};
use polaris_bridge_api::{
    Connector, Delivery, DeliveryError, DeliveryOutcome, PolarisEvent, TaskContext, TaskId,
};
use tokio::sync::{mpsc, watch, Notify};
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
                ensure_owned(r, &self.owner)?;
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

fn ensure_owned(record: &TaskRecord, owner: &str) -> Result<(), LogError> {
    match &record.state {
        TaskState::Running { owner: holder, .. } if holder == owner => Ok(()),
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
    ) -> Self {
        Dispatcher {
            name,
            number,
            log,
            connector,
            policy,
            owner,
            notify,
            backlog,
            unfinished,
        }
    }

    /// Runs until `shutdown` turns true, then drains in-flight deliveries for at most the
    /// policy's drain timeout and releases the leases of those still running.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), LogError> {
        let (done_tx, mut done_rx) = mpsc::channel::<Completion>(self.policy.concurrency.max(1));
        let mut window: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut next_from = self.log.head(self.number)?;
        let mut head = next_from;
        let mut in_flight = 0usize;
        let mut renew = tokio::time::interval(self.policy.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                break;
            }
            if window.len() < self.policy.window {
                let room = self.policy.window - window.len();
                let batch = self.log.unfinished_from(self.number, next_from, room)?;
                if let Some(last) = batch.last_seen {
                    next_from = last + 1;
                }
                for (key, record) in batch.records {
                    window.insert(key.seq, self.entry(key, &record));
                }
            }
            let next_wake = self.start_ready(&mut window, &mut in_flight, &done_tx)?;
            self.advance_head(&window, next_from, &mut head)?;
            self.report(&window);
            let sleep_for = next_wake
                .map(|at| Duration::from_millis((at - now_ms()).max(1) as u64))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                Some(done) = done_rx.recv() => {
                    in_flight -= 1;
                    self.complete(&mut window, done)?;
                    while let Ok(done) = done_rx.try_recv() {
                        in_flight -= 1;
                        self.complete(&mut window, done)?;
                    }
                }
                () = self.notify.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
                _ = renew.tick() => self.renew_leases(&window),
                _ = shutdown.changed() => {}
            }
        }
        self.drain(window, in_flight, done_rx).await
    }

    /// Builds the window entry of a loaded record.
    fn entry(&self, key: RecordKey, record: &TaskRecord) -> Entry {
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
        }
    }

    /// Starts every task that may start; returns the earliest time a waiting task is due.
    fn start_ready(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        in_flight: &mut usize,
        done_tx: &mpsc::Sender<Completion>,
    ) -> Result<Option<i64>, LogError> {
        let now = now_ms();
        let mut next_wake: Option<i64> = None;
        let mut blocked: HashSet<String> = HashSet::new();
        let mut finished = Vec::new();
        for (seq, entry) in window.iter_mut() {
            if *in_flight >= self.policy.concurrency {
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
                Slot::Ready | Slot::Waiting(_) => match self.start(entry, done_tx)? {
                    Start::Started => *in_flight += 1,
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
    fn start(
        &self,
        entry: &mut Entry,
        done_tx: &mpsc::Sender<Completion>,
    ) -> Result<Start, LogError> {
        let now = now_ms();
        let lease_until_ms = now + self.policy.lease.as_millis() as i64;
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
                        *entry = self.entry(entry.key, &r);
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
        let event: PolarisEvent = match serde_json::from_slice(&record.event_json) {
            Ok(event) => event,
            Err(e) => {
                let outcome = Err(DeliveryError::permanent(format!(
                    "stored event does not decode: {e}"
                )));
                entry.slot = Slot::InFlight;
                let _ = done_tx.try_send(Completion {
                    seq: entry.key.seq,
                    started_ms: now,
                    elapsed: Duration::ZERO,
                    event_ms: None,
                    result: outcome,
                });
                return Ok(Start::Started);
            }
        };
        entry.slot = Slot::InFlight;
        let task_id = TaskId::from_bytes(record.task_id);
        let delivery = Delivery {
            task_id,
            connector: self.name.clone(),
            attempt: record.attempts,
            realm: record.realm.clone(),
            source: SourcePosition {
                topic: record.source.topic.clone(),
                partition: record.source.partition,
                offset: record.source.offset,
            },
            checkpoint: record.checkpoint.clone(),
            event,
        };
        let context = LogTaskContext {
            log: self.log.clone(),
            key: entry.key,
            owner: self.owner.clone(),
            lease: self.policy.lease,
        };
        let connector = self.connector.clone();
        let done_tx = done_tx.clone();
        let seq = entry.key.seq;
        let span = tracing::info_span!(
            "delivery",
            connector = %self.name,
            task_id = %task_id,
            attempt = record.attempts,
            trace_id = delivery.event.trace_id().unwrap_or_default()
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let event_ms = delivery.event.timestamp_ms;
            let inner = tokio::spawn(
                async move { connector.deliver(&delivery, &context).await }.instrument(span),
            );
            let result = match inner.await {
                Ok(result) => result,
                Err(join) => Err(DeliveryError::transient(format!(
                    "connector task failed: {join}"
                ))),
            };
            let _ = done_tx
                .send(Completion {
                    seq,
                    started_ms: now,
                    elapsed: started.elapsed(),
                    event_ms,
                    result,
                })
                .await;
        });
        Ok(Start::Started)
    }

    /// Records the result of one delivery.
    fn complete(
        &self,
        window: &mut BTreeMap<u64, Entry>,
        done: Completion,
    ) -> Result<(), LogError> {
        let Some(entry) = window.get_mut(&done.seq) else {
            return Ok(());
        };
        let connector = self.name.clone();
        histogram!(m::DELIVERY_DURATION, "connector" => connector.clone())
            .record(done.elapsed.as_secs_f64());
        let outcome_label = match &done.result {
            Ok(DeliveryOutcome::Delivered) => "success",
            Ok(DeliveryOutcome::AlreadyDone(_)) => "already_done",
            Err(e) => e.label(),
        };
        counter!(m::DELIVERIES, "connector" => connector.clone(), "outcome" => outcome_label)
            .increment(1);
        let now = now_ms();
        let retry = &self.policy.retry;
        let result = self.log.update(entry.key, |r| {
            ensure_owned(r, &self.owner)?;
            let (state, message) = match &done.result {
                Ok(DeliveryOutcome::Delivered) => (TaskState::Succeeded { note: None }, None),
                Ok(DeliveryOutcome::AlreadyDone(note)) => (
                    TaskState::Succeeded {
                        note: Some(note.clone()),
                    },
                    Some(note.clone()),
                ),
                Err(DeliveryError::Transient {
                    message,
                    retry_after,
                }) => {
                    if r.attempts >= retry.max_attempts {
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
                outcome: outcome_label.to_string(),
                message,
            });
            r.state = state;
            Ok(())
        });
        let record = match result {
            Ok(record) => record,
            Err(LogError::Refused(reason)) => {
                // Cancelled or taken over meanwhile: the record's state stands.
                tracing::info!(connector = %self.name, seq = done.seq, %reason, "delivery result not recorded");
                match self.log.get(entry.key)? {
                    Some(r) if !r.state.is_final() => *entry = self.entry(entry.key, &r),
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
                if let (TaskState::Succeeded { .. }, Some(event_ms)) = (state, done.event_ms) {
                    histogram!(m::END_TO_END_LATENCY, "connector" => connector.clone())
                        .record(((now - event_ms).max(0) as f64) / 1000.0);
                }
                counter!(m::TASKS_FINISHED, "connector" => connector, "state" => state.name())
                    .increment(1);
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

    /// Persists the lowest unfinished sequence, so a restart does not rescan finished tasks.
    fn advance_head(
        &self,
        window: &BTreeMap<u64, Entry>,
        next_from: u64,
        head: &mut u64,
    ) -> Result<(), LogError> {
        let lowest = window.keys().next().copied().unwrap_or(next_from);
        if lowest > *head {
            self.log.set_head(self.number, lowest)?;
            *head = lowest;
        }
        Ok(())
    }

    /// Extends the leases of in-flight tasks.
    fn renew_leases(&self, window: &BTreeMap<u64, Entry>) {
        let lease_until_ms = now_ms() + self.policy.lease.as_millis() as i64;
        for entry in window.values().filter(|e| e.slot == Slot::InFlight) {
            let renewed = self.log.update(entry.key, |r| {
                ensure_owned(r, &self.owner)?;
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
    fn report(&self, window: &BTreeMap<u64, Entry>) {
        let (mut running, mut retrying) = (0u64, 0u64);
        for entry in window.values() {
            match entry.slot {
                Slot::InFlight => running += 1,
                Slot::Waiting(_) => retrying += 1,
                Slot::Ready => {}
            }
        }
        let unfinished = self.unfinished.load(Ordering::Relaxed);
        let pending = unfinished.saturating_sub(running + retrying);
        let name = self.name.clone();
        gauge!(m::TASKS, "connector" => name.clone(), "state" => "pending").set(pending as f64);
        gauge!(m::TASKS, "connector" => name.clone(), "state" => "running").set(running as f64);
        gauge!(m::TASKS, "connector" => name, "state" => "retrying").set(retrying as f64);
    }

    /// Waits for in-flight deliveries up to the drain timeout, then releases the rest.
    async fn drain(
        self,
        mut window: BTreeMap<u64, Entry>,
        mut in_flight: usize,
        mut done_rx: mpsc::Receiver<Completion>,
    ) -> Result<(), LogError> {
        let deadline = tokio::time::Instant::now() + self.policy.drain_timeout;
        while in_flight > 0 {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(done)) => {
                    in_flight -= 1;
                    self.complete(&mut window, done)?;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let now = now_ms();
        let mut released = 0;
        for entry in window.values().filter(|e| e.slot == Slot::InFlight) {
            let result = self.log.update(entry.key, |r| {
                ensure_owned(r, &self.owner)?;
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

    #[test]
    fn retry_delay_grows_with_jitter_and_is_capped() {
        let retry = RetryConfig {
            max_attempts: 10,
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.5,
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
