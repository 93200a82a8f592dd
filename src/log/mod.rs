//! The durable task log on sled: one record per task, deduplicated by task id.
//!
//! Layout (see [`store`]): each task's immutable body has the key `(connector number,
//! sequence)` and is stored in a [`chunk`] with the bodies of the tasks created next to it, so
//! each connector's tasks sit together in creation order and new chunks append; its
//! status is stored only when the connector's head does not imply it; a dedup index keyed by
//! `(event second, task id)` maps ids to record keys (its claims are written a group at a
//! time, `claims.rs`). Beside it, [`table_index`] keeps what is known of each table (uuid,
//! metadata location) to enrich events that lack it.

pub mod chunk;
mod claims;
pub mod record;
pub mod store;
pub mod table_index;

pub use record::{
    AttemptRecord, RejectedRecord, ReplayRecord, SourceRecord, TaskRecord, TaskState,
};
pub use store::{
    CheckReport, InsertOutcome, LogError, RecordKey, RejectedKey, TaskLog, Unfinished,
};
pub use table_index::{TableEntry, TableIndex};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
