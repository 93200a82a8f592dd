//! Per-task statistics (kept in the task record's checkpoint), the checkpoint itself, and the
//! connector's metrics.

use metrics::{counter, gauge, Counter};
use serde::{Deserialize, Serialize};

/// Files deleted (or already absent): counter, label `connector`.
pub const FILES_DELETED: &str = "polaris_bridge_purge_files_deleted_total";
/// Bytes deleted, as the table metadata records file sizes: counter, label `connector`.
pub const BYTES_DELETED: &str = "polaris_bridge_purge_bytes_deleted_total";
/// Object store requests (reads and delete requests): counter, label `connector`.
pub const REQUESTS: &str = "polaris_bridge_purge_requests_total";
/// Failed delete tries (retried, or failing the attempt): counter, label `connector`.
pub const FAILURES: &str = "polaris_bridge_purge_failures_total";
/// Purges running now: gauge, label `connector`.
pub const IN_PROGRESS: &str = "polaris_bridge_purge_in_progress";

/// What one purge did, summed over its attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Files deleted, including those already absent (not-found counts as deleted). A file
    /// listed by several manifests far apart (more than 262,144 files) may count twice.
    pub files_deleted: u64,
    /// Of those, files the store reported as already absent (local filesystem; S3 does not
    /// tell).
    pub files_absent: u64,
    /// Bytes deleted, from the sizes the metadata records (previous metadata files and
    /// manifest lists have none and count 0).
    pub bytes_deleted: u64,
    /// Object store requests: reads of metadata, manifest lists and manifests, and delete
    /// requests.
    pub requests: u64,
    /// Delete tries that left files behind, and failed reads.
    pub failures: u64,
    /// Delete batches sent.
    pub batches: u64,
    /// Manifests read (a manifest is read twice when `verify_before_delete` is on).
    pub manifests_read: u64,
    /// Time spent, in milliseconds, over every attempt.
    pub duration_ms: u64,
    /// Attempts that worked on this purge.
    pub attempts: u32,
}

/// Where a purge is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Content files and manifests, manifest by manifest.
    #[default]
    Content,
    /// Previous metadata files, manifest lists, statistics, partition statistics.
    Metadata,
    /// The current metadata file.
    Final,
    /// Finished.
    Done,
}

/// Progress saved in the task record: JSON, readable in the admin API and `tasks` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// The metadata file the purge started from.
    pub metadata_location: String,
    /// The phase in progress.
    pub phase: Phase,
    /// Manifests (in discovery order, without duplicates) whose files and the manifest itself
    /// are deleted.
    pub manifests_done: u64,
    /// The manifest in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Entries of that manifest whose deletion is confirmed (whole batches, in order).
    pub entries_done: u64,
    /// Files of the metadata phase deleted (whole batches, in order).
    pub metadata_files_done: u64,
    /// Dry run: nothing was deleted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// What was done so far.
    pub stats: Stats,
}

impl Checkpoint {
    /// The checkpoint's bytes (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a checkpoint; `None` when the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Checkpoint> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The connector's metric handles.
#[derive(Clone)]
pub struct Counters {
    files: Counter,
    bytes: Counter,
    requests: Counter,
    failures: Counter,
    connector: String,
}

impl Counters {
    /// Handles labelled with `connector`.
    pub fn new(connector: &str) -> Self {
        let label = connector.to_string();
        Counters {
            files: counter!(FILES_DELETED, "connector" => label.clone()),
            bytes: counter!(BYTES_DELETED, "connector" => label.clone()),
            requests: counter!(REQUESTS, "connector" => label.clone()),
            failures: counter!(FAILURES, "connector" => label.clone()),
            connector: label,
        }
    }

    /// Records a delete batch's result.
    pub fn deleted(&self, files: u64, bytes: u64, requests: u64, failures: u64) {
        self.files.increment(files);
        self.bytes.increment(bytes);
        self.requests.increment(requests);
        self.failures.increment(failures);
    }

    /// Records reads.
    pub fn read(&self, requests: u64, failures: u64) {
        self.requests.increment(requests);
        self.failures.increment(failures);
    }

    /// Marks a purge as running until the guard is dropped.
    pub fn running(&self) -> RunningGuard {
        gauge!(IN_PROGRESS, "connector" => self.connector.clone()).increment(1.0);
        RunningGuard {
            connector: self.connector.clone(),
        }
    }
}

/// Decrements the in-progress gauge when dropped.
pub struct RunningGuard {
    connector: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        gauge!(IN_PROGRESS, "connector" => self.connector.clone()).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_as_json() {
        let cp = Checkpoint {
            metadata_location: "s3://b/t/metadata/v3.metadata.json".into(),
            phase: Phase::Content,
            manifests_done: 2,
            manifest: Some("s3://b/t/metadata/m2.avro".into()),
            entries_done: 3000,
            stats: Stats {
                files_deleted: 7000,
                ..Stats::default()
            },
            ..Checkpoint::default()
        };
        let bytes = cp.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"phase\":\"content\""), "{text}");
        assert_eq!(Checkpoint::from_bytes(&bytes), Some(cp));
        assert_eq!(Checkpoint::from_bytes(b"\x00\x01"), None);
    }
}
