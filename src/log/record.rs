//! What the task log stores: task records with their state machine, and rejected messages.
//!
//! Byte fields are serialized as bytes (`serde_bytes`): postcard writes them exactly as it
//! writes a sequence of `u8` (a varint length, then the bytes), but copies them in bulk.

use serde::{Deserialize, Serialize};

/// How many attempts a record keeps in its history; older ones are dropped.
pub const HISTORY_CAP: usize = 10;

/// Where a task's event was consumed. Every record names its source partition, so the state
/// of one partition can be found and moved as a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Message offset.
    pub offset: i64,
}

/// The lifecycle of a task (DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for its first attempt.
    Pending,
    /// An attempt is under way; `owner` holds it until `lease_until_ms`.
    Running {
        /// The process instance running it.
        owner: String,
        /// When the lease expires and another attempt may take the task over.
        lease_until_ms: i64,
    },
    /// The last attempt failed transiently; the next one may start at `not_before_ms`.
    Retrying {
        /// Earliest start of the next attempt.
        not_before_ms: i64,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// Delivered. `note` says why nothing had to be done, when that was the case.
    Succeeded {
        /// Set when the connector found the work already done.
        note: Option<String>,
    },
    /// Given up: attempts exhausted, a permanent error, or a configuration error.
    Dead {
        /// Why.
        reason: String,
    },
    /// Stopped by an operator.
    Cancelled {
        /// Who or why.
        reason: String,
    },
}

impl TaskState {
    /// Succeeded, dead or cancelled: nothing more will happen to the task.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskState::Succeeded { .. } | TaskState::Dead { .. } | TaskState::Cancelled { .. }
        )
    }

    /// The state's name as shown in metrics and the API.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running { .. } => "running",
            TaskState::Retrying { .. } => "retrying",
            TaskState::Succeeded { .. } => "succeeded",
            TaskState::Dead { .. } => "dead",
            TaskState::Cancelled { .. } => "cancelled",
        }
    }
}

/// One attempt, as kept in a record's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start, in ms since the epoch.
    pub started_ms: i64,
    /// End, in ms since the epoch.
    pub finished_ms: i64,
    /// `succeeded`, `transient`, `permanent`, `misconfigured`, `abandoned` (the process died)
    /// or `released` (shutdown).
    pub outcome: String,
    /// The error message, if any.
    pub message: Option<String>,
}

/// A task: what to deliver, to which connector, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The deterministic task id (16 raw bytes).
    pub task_id: [u8; 16],
    /// The dedup index's time bucket (see [`super::store`]): the event's time in whole
    /// seconds for a task per event (every copy of one event has it), 0 for a keyed task
    /// (its duplicates are different events) and for an event without a time.
    pub dedup_bucket: u32,
    /// Connector instance name.
    pub connector: String,
    /// Current state.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last state change, ms since the epoch.
    pub updated_ms: i64,
    /// Tasks with the same key are delivered one at a time, in order (the resource identity).
    pub ordering_key: String,
    /// The event's realm.
    pub realm: String,
    /// Where the event came from.
    pub source: SourceRecord,
    /// The event in its stored encoding ([`polaris_bridge_api::event::stored`]; the model's
    /// JSON is read too).
    #[serde(with = "serde_bytes")]
    pub event_bytes: Vec<u8>,
    /// The last attempts, newest last, at most [`HISTORY_CAP`].
    pub history: Vec<AttemptRecord>,
    /// Progress saved by a long-running delivery.
    #[serde(with = "serde_bytes")]
    pub checkpoint: Option<Vec<u8>>,
}

impl TaskRecord {
    /// A new pending task.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        task_id: [u8; 16],
        dedup_bucket: u32,
        connector: &str,
        ordering_key: String,
        realm: String,
        source: SourceRecord,
        event_bytes: Vec<u8>,
        now_ms: i64,
    ) -> Self {
        TaskRecord {
            task_id,
            dedup_bucket,
            connector: connector.to_string(),
            state: TaskState::Pending,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            ordering_key,
            realm,
            source,
            event_bytes,
            history: Vec::new(),
            checkpoint: None,
        }
    }

    /// Whether `owner` may start an attempt now: pending, due for retry, or running under a
    /// lease that expired, or held by another owner known to be gone.
    pub fn claimable(&self, owner: &str, now_ms: i64, owner_gone: bool) -> bool {
        match &self.state {
            TaskState::Pending => true,
            TaskState::Retrying { not_before_ms, .. } => *not_before_ms <= now_ms,
            TaskState::Running {
                owner: holder,
                lease_until_ms,
            } => *lease_until_ms <= now_ms || (owner_gone && holder != owner),
            _ => false,
        }
    }

    /// Moves an unfinished task to `cancelled`, recording the operator's reason as an attempt
    /// outcome. Refuses (with the reason) a task that is already final.
    pub fn cancel(&mut self, reason: &str, now_ms: i64) -> Result<(), String> {
        if self.state.is_final() {
            return Err(format!(
                "task is already {}: only pending, retrying or running tasks can be cancelled",
                self.state.name()
            ));
        }
        let attempt = self.attempts;
        self.push_history(AttemptRecord {
            attempt,
            started_ms: now_ms,
            finished_ms: now_ms,
            outcome: "cancelled".into(),
            message: Some(reason.to_string()),
        });
        self.state = TaskState::Cancelled {
            reason: reason.to_string(),
        };
        Ok(())
    }

    /// Appends an attempt to the history, dropping the oldest beyond the cap.
    pub fn push_history(&mut self, attempt: AttemptRecord) {
        self.history.push(attempt);
        if self.history.len() > HISTORY_CAP {
            let excess = self.history.len() - HISTORY_CAP;
            self.history.drain(..excess);
        }
    }

    /// Encodes the immutable part of the record (its body), written once when the task is
    /// created. The connector is not in it: the record's key names it.
    pub fn body_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(&BodyOut {
            task_id: &self.task_id,
            dedup_bucket: self.dedup_bucket,
            created_ms: self.created_ms,
            ordering_key: &self.ordering_key,
            realm: &self.realm,
            source: &self.source,
            event_bytes: &self.event_bytes,
        })
    }

    /// Encodes the mutable part of the record (its status).
    pub fn status_bytes(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(&StatusOut {
            state: &self.state,
            attempts: self.attempts,
            updated_ms: self.updated_ms,
            history: &self.history,
            checkpoint: self.checkpoint.as_deref(),
        })
    }

    /// Rebuilds a record from its stored body and, when one was written, its status. Without
    /// a status the record is in `implied` state: pending, or succeeded on its first attempt
    /// when the dispatcher's head has passed it (see [`super::store`]).
    pub fn from_parts(
        connector: String,
        body: &[u8],
        status: Option<&[u8]>,
        implied: TaskState,
    ) -> Result<Self, postcard::Error> {
        let body: BodyIn = postcard::from_bytes(body)?;
        let status = match status {
            Some(bytes) => postcard::from_bytes(bytes)?,
            None => StatusIn {
                attempts: u32::from(matches!(implied, TaskState::Succeeded { .. })),
                state: implied,
                updated_ms: body.created_ms,
                history: Vec::new(),
                checkpoint: None,
            },
        };
        Ok(TaskRecord {
            task_id: body.task_id,
            dedup_bucket: body.dedup_bucket,
            connector,
            state: status.state,
            attempts: status.attempts,
            created_ms: body.created_ms,
            updated_ms: status.updated_ms,
            ordering_key: body.ordering_key,
            realm: body.realm,
            source: body.source,
            event_bytes: body.event_bytes,
            history: status.history,
            checkpoint: status.checkpoint,
        })
    }
}

/// What compaction needs of a stored task, read without decoding its event: whether it is
/// finished, since when, and its dedup entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The task reached a final state.
    pub finished: bool,
    /// When its state last changed (its creation, for a task without a status).
    pub updated_ms: i64,
    /// The task id.
    pub task_id: [u8; 16],
    /// Its dedup bucket.
    pub dedup_bucket: u32,
}

impl Expiry {
    /// Reads the leading fields of a stored body and, when there is one, of its status, for
    /// a task below its connector's head (compaction looks at no other): one without a status
    /// succeeded on its first attempt (see [`TaskRecord::from_parts`]).
    pub fn read(body: &[u8], status: Option<&[u8]>) -> Result<Self, postcard::Error> {
        let (lead, _) = postcard::take_from_bytes::<BodyLead>(body)?;
        let (finished, updated_ms) = match status {
            Some(bytes) => {
                let (lead, _) = postcard::take_from_bytes::<StatusLead>(bytes)?;
                (lead.state.is_final(), lead.updated_ms)
            }
            None => (true, lead.created_ms),
        };
        Ok(Expiry {
            finished,
            updated_ms,
            task_id: lead.task_id,
            dedup_bucket: lead.dedup_bucket,
        })
    }
}

/// The first fields of [`BodyIn`], in its order.
#[derive(Deserialize)]
struct BodyLead {
    task_id: [u8; 16],
    dedup_bucket: u32,
    created_ms: i64,
}

/// The first fields of [`StatusIn`], in its order.
#[derive(Deserialize)]
struct StatusLead {
    state: TaskState,
    /// Read past, not used.
    _attempts: u32,
    updated_ms: i64,
}

/// The body of a task as written (borrowed from the record, so nothing is copied).
#[derive(Serialize)]
struct BodyOut<'a> {
    task_id: &'a [u8; 16],
    dedup_bucket: u32,
    created_ms: i64,
    ordering_key: &'a str,
    realm: &'a str,
    source: &'a SourceRecord,
    #[serde(with = "serde_bytes")]
    event_bytes: &'a [u8],
}

/// The body of a task as read; same field order as [`BodyOut`].
#[derive(Deserialize)]
struct BodyIn {
    task_id: [u8; 16],
    dedup_bucket: u32,
    created_ms: i64,
    ordering_key: String,
    realm: String,
    source: SourceRecord,
    #[serde(with = "serde_bytes")]
    event_bytes: Vec<u8>,
}

/// The status of a task as written.
#[derive(Serialize)]
struct StatusOut<'a> {
    state: &'a TaskState,
    attempts: u32,
    updated_ms: i64,
    history: &'a [AttemptRecord],
    #[serde(with = "serde_bytes")]
    checkpoint: Option<&'a [u8]>,
}

/// The status of a task as read; same field order as [`StatusOut`].
#[derive(Deserialize)]
struct StatusIn {
    state: TaskState,
    attempts: u32,
    updated_ms: i64,
    history: Vec<AttemptRecord>,
    #[serde(with = "serde_bytes")]
    checkpoint: Option<Vec<u8>>,
}

/// A message that could not become tasks (guarantee 7): kept, visible, never silently lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Message offset.
    pub offset: i64,
    /// The record key, if any.
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    /// Bounded error class (`empty`, `json`, `avro`, `invalid_event_type`, ...).
    pub kind: String,
    /// What is wrong, and where.
    pub error: String,
    /// The value, whole up to [`RejectedRecord::VALUE_PREFIX`] bytes (1 MiB), else its
    /// first that many bytes. A value kept whole can be replayed from the log.
    #[serde(with = "serde_bytes")]
    pub value_prefix: Vec<u8>,
    /// Length of the whole value.
    pub value_len: usize,
    /// When it was rejected, ms since the epoch.
    pub rejected_ms: i64,
}

impl RejectedRecord {
    /// How many leading bytes of a rejected value are kept: 1 MiB, the size of Kafka's
    /// default `message.max.bytes`, so in practice the whole value, ready for a replay.
    pub const VALUE_PREFIX: usize = 1 << 20;

    /// Whether the whole value was kept (and so the message can be replayed from the log).
    pub fn is_whole(&self) -> bool {
        self.value_prefix.len() == self.value_len
    }
}

/// What an operator's replay of a rejected message did (kept beside the rejected record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayRecord {
    /// When, ms since the epoch.
    pub replayed_ms: i64,
    /// `routed` (tasks created or found), `unrouted` (no route matched) or `rejected` (still
    /// does not decode).
    pub outcome: String,
    /// New tasks created.
    pub tasks_created: u32,
    /// Tasks that were already in the log.
    pub duplicates: u32,
    /// Why it was rejected again, when it was.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: TaskState) -> TaskRecord {
        TaskRecord {
            task_id: [7; 16],
            dedup_bucket: 0,
            connector: "c".into(),
            state,
            attempts: 0,
            created_ms: 1,
            updated_ms: 1,
            ordering_key: "k".into(),
            realm: "POLARIS".into(),
            source: SourceRecord {
                topic: "t".into(),
                partition: 1,
                offset: 2,
            },
            event_bytes: b"{}".to_vec(),
            history: vec![],
            checkpoint: None,
        }
    }

    #[test]
    fn expiry_reads_what_the_whole_record_says() {
        let dead = TaskRecord {
            attempts: 3,
            updated_ms: 50,
            history: vec![],
            ..record(TaskState::Dead {
                reason: "gone".into(),
            })
        };
        let body = dead.body_bytes().unwrap();
        let status = dead.status_bytes().unwrap();
        for status in [None, Some(&status[..])] {
            let implied = TaskState::Succeeded { note: None };
            let whole = TaskRecord::from_parts("c".into(), &body, status, implied).unwrap();
            let expiry = Expiry::read(&body, status).unwrap();
            assert_eq!(expiry.finished, whole.state.is_final());
            assert_eq!(expiry.updated_ms, whole.updated_ms);
            assert_eq!(
                (expiry.task_id, expiry.dedup_bucket),
                (whole.task_id, whole.dedup_bucket)
            );
        }
        assert!(Expiry::read(&body[..10], None).is_err());
    }

    #[test]
    fn claim_rules() {
        assert!(record(TaskState::Pending).claimable("me", 0, false));
        let retrying = record(TaskState::Retrying {
            not_before_ms: 100,
            last_error: "x".into(),
        });
        assert!(!retrying.claimable("me", 99, false));
        assert!(retrying.claimable("me", 100, false));
        let running = record(TaskState::Running {
            owner: "other".into(),
            lease_until_ms: 500,
        });
        assert!(!running.claimable("me", 499, false), "lease still held");
        assert!(running.claimable("me", 500, false), "lease expired");
        assert!(running.claimable("me", 0, true), "owner known gone");
        let mine = record(TaskState::Running {
            owner: "me".into(),
            lease_until_ms: 0,
        });
        assert!(mine.claimable("me", 1000, false), "own expired lease");
        let mine_live = record(TaskState::Running {
            owner: "me".into(),
            lease_until_ms: 5000,
        });
        assert!(
            !mine_live.claimable("me", 1000, true),
            "never take a live lease from yourself"
        );
        for done in [
            TaskState::Succeeded { note: None },
            TaskState::Dead { reason: "x".into() },
            TaskState::Cancelled { reason: "x".into() },
        ] {
            assert!(done.is_final());
            assert!(!record(done).claimable("me", i64::MAX, true));
        }
    }

    #[test]
    fn byte_fields_keep_the_sequence_encoding() {
        #[derive(Serialize)]
        struct AsSequence {
            bytes: Vec<u8>,
            maybe: Option<Vec<u8>>,
        }
        #[derive(Deserialize, Debug, PartialEq)]
        struct AsBytes {
            #[serde(with = "serde_bytes")]
            bytes: Vec<u8>,
            #[serde(with = "serde_bytes")]
            maybe: Option<Vec<u8>>,
        }
        let old = postcard::to_stdvec(&AsSequence {
            bytes: b"{\"event_type\":\"X\"}".to_vec(),
            maybe: Some(vec![0, 1, 255]),
        })
        .unwrap();
        let read: AsBytes = postcard::from_bytes(&old).unwrap();
        assert_eq!(read.bytes, b"{\"event_type\":\"X\"}".to_vec());
        assert_eq!(read.maybe, Some(vec![0, 1, 255]));
    }

    #[test]
    fn history_is_capped_and_round_trips() {
        let mut r = record(TaskState::Pending);
        for i in 0..15 {
            r.push_history(AttemptRecord {
                attempt: i,
                started_ms: 0,
                finished_ms: 0,
                outcome: "transient".into(),
                message: None,
            });
        }
        assert_eq!(r.history.len(), HISTORY_CAP);
        assert_eq!(r.history[0].attempt, 5);
        r.checkpoint = Some(vec![1, 2, 3]);
        let back = TaskRecord::from_parts(
            "c".into(),
            &r.body_bytes().unwrap(),
            Some(&r.status_bytes().unwrap()),
            TaskState::Pending,
        )
        .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_record_without_status_takes_the_implied_state() {
        let r = record(TaskState::Pending);
        let body = r.body_bytes().unwrap();
        let pending = TaskRecord::from_parts("c".into(), &body, None, TaskState::Pending).unwrap();
        assert_eq!(pending, r);
        let done =
            TaskRecord::from_parts("c".into(), &body, None, TaskState::Succeeded { note: None })
                .unwrap();
        assert_eq!(done.state, TaskState::Succeeded { note: None });
        assert_eq!(
            done.attempts, 1,
            "implied success is a first-attempt success"
        );
        assert_eq!(done.event_bytes, r.event_bytes);
    }
}
