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

    /// A short, bounded label for metrics: `transient`, `permanent` or `misconfigured`.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::Misconfigured { .. } => "misconfigured",
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
}
