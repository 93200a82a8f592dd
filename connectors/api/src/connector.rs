//! The contract between the dispatcher and a connector.
//!
//! A connector delivers one task at a time, idempotently, and classifies each failure. It
//! never retries on its own: the dispatcher owns backoff, attempt limits, concurrency, leases
//! and dead-lettering.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::event::PolarisEvent;
use crate::task_id::TaskId;

/// Where the event behind a task was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePosition {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Offset of the message within the partition.
    pub offset: i64,
}

/// One attempt at delivering one task.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The task's deterministic id: the idempotency key every delivery carries.
    pub task_id: TaskId,
    /// Name of the connector instance, as configured.
    pub connector: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub attempt: u32,
    /// The realm the event belongs to (the event's own, else the topic's default).
    pub realm: String,
    /// The event to deliver.
    pub event: PolarisEvent,
    /// Where the event was consumed.
    pub source: SourcePosition,
    /// Progress saved by an earlier attempt through [`TaskContext::checkpoint`].
    pub checkpoint: Option<Vec<u8>>,
}

/// What a successful delivery amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The target accepted the delivery.
    Delivered,
    /// Nothing had to be done (for example, the target already holds a newer state); the
    /// reason is recorded and counted apart from deliveries.
    AlreadyDone(String),
}

/// What a connector makes of an event that a route sends to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskPlan {
    /// Not for this connector (its own filters say no): no task, the event is counted as
    /// filtered.
    Skip,
    /// One task per event: the task id is derived from the realm and the event id.
    PerEvent,
    /// One task per key: every event with this key collapses into one task. The task id is
    /// `hex(SHA-256(connector || 0x1F || realm || 0x1F || key))[..32]`; a purge uses
    /// `catalog || 0x1F || table uuid` (or the metadata location) as its key.
    Keyed(String),
}

/// Why a delivery failed, and so what the dispatcher does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later (network error, 5xx, throttling, a missing directory).
    #[error("transient: {message}")]
    Transient {
        /// What went wrong.
        message: String,
        /// The earliest moment a retry makes sense, when the target said so.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the task is dead-lettered with this reason.
    #[error("permanent: {message}")]
    Permanent {
        /// What went wrong.
        message: String,
    },
    /// The connector's configuration is wrong: the task is dead-lettered and the operator has
    /// to fix the configuration.
    #[error("misconfigured: {message}")]
    Misconfigured {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Not attempted (an open circuit breaker, a rate limit): the task is rescheduled after
    /// `retry_after` and the attempt is not counted.
    #[error("deferred: {reason}")]
    Deferred {
        /// Why it was not attempted.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The target asked never to be called again (HTTP 410 Gone): the dispatcher pauses this
    /// connector until an operator resumes it; the task waits, its attempt not counted.
    #[error("target disabled: {reason}")]
    Disabled {
        /// What the target said.
        reason: String,
    },
}

impl DeliveryError {
    /// A transient error without a retry hint.
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            message: message.into(),
        }
    }

    /// A configuration error.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        DeliveryError::Misconfigured {
            message: message.into(),
        }
    }

    /// A short, bounded label for metrics: `transient`, `permanent`, `misconfigured`,
    /// `deferred` or `disabled`.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::Misconfigured { .. } => "misconfigured",
            DeliveryError::Deferred { .. } => "deferred",
            DeliveryError::Disabled { .. } => "disabled",
        }
    }
}

/// Saving progress failed: the store is unavailable or the task was taken away (cancelled,
/// or its lease lost).
#[derive(Debug, Clone, thiserror::Error)]
#[error("checkpoint not saved: {0}")]
pub struct CheckpointError(pub String);

/// What a running delivery may ask of the dispatcher.
pub trait TaskContext: Send + Sync {
    /// Saves progress in the task record (and renews the lease), so that a later attempt,
    /// after a crash or a retry, continues from here instead of starting over.
    fn checkpoint(&self, state: &[u8]) -> Result<(), CheckpointError>;
}

/// One connector instance.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The connector type, e.g. `file` or `webhook`.
    fn kind(&self) -> &'static str;

    /// Decides, when an event is routed here, whether it becomes a task and how tasks are
    /// deduplicated. Called on the consumer's hot path: keep it cheap and free of I/O.
    fn plan(&self, _event: &PolarisEvent) -> TaskPlan {
        TaskPlan::PerEvent
    }

    /// Delivers one task. Must be idempotent: the same task may be delivered again after a
    /// crash, and carries the same [`Delivery::task_id`] each time.
    async fn deliver(
        &self,
        delivery: &Delivery,
        context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError>;

    /// Checks that the target is reachable and the configuration works.
    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Extra state for operators, shown by the admin API's connector status (for example a
    /// webhook's circuit breaker: `{"circuit": "open", "opened_at": "..."}`). A JSON object
    /// with bounded content; `null` (the default) when the connector has nothing to add. A
    /// `circuit` key, when present, is shown as the connector's circuit state.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
