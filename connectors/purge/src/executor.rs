//! The purge executor: discovery, safety checks and deletion of one table, in Polaris's
//! order, with checkpoints.
//!
//! Order (as Polaris's `TableCleanupTaskHandler` and `ManifestFileCleanupTaskHandler`):
//! 1. content: for each manifest of every snapshot (data and delete manifests, each once, in
//!    snapshot order), the data and delete files it lists (entries of any status), then the
//!    manifest itself. A checkpoint after every batch and after every manifest.
//! 2. metadata: the metadata log's files, every snapshot's manifest list, statistics files
//!    and partition statistics files. A checkpoint after every batch.
//! 3. final: the current metadata file, last, so that while it exists a later attempt can
//!    rediscover everything, and once it is gone the purge is known to be complete.
//!
//! With `verify_before_delete`, every manifest is read and every path checked before
//! anything is deleted: a corrupt manifest or a file outside the table fails the purge with
//! nothing deleted.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{FuturesOrdered, StreamExt};

use crate::config::PurgeConfig;
use crate::deletion::{DeleteError, Deleter, RateLimiter, Target};
use crate::discovery::{self, DiscoveryError, ManifestRef, TableMetadata};
use crate::safety::{ObjectUri, Roots, SafetyError};
use crate::stats::{Checkpoint, Counters, Phase, Stats};
use crate::store::{StoreError, Stores};

/// Entries buffered between a manifest's decoder and the batcher.
const ENTRY_BUFFER: usize = 4096;

/// What kind of file a path is, for dry-run listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A data file.
    Data,
    /// A position or equality delete file (or a deletion vector file).
    Delete,
    /// A manifest.
    Manifest,
    /// A previous metadata file.
    PreviousMetadata,
    /// A manifest list.
    ManifestList,
    /// A statistics file.
    Statistics,
    /// A partition statistics file.
    PartitionStatistics,
    /// The current metadata file.
    CurrentMetadata,
}

impl FileKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Data => "data",
            FileKind::Delete => "delete",
            FileKind::Manifest => "manifest",
            FileKind::PreviousMetadata => "previous-metadata",
            FileKind::ManifestList => "manifest-list",
            FileKind::Statistics => "statistics",
            FileKind::PartitionStatistics => "partition-statistics",
            FileKind::CurrentMetadata => "current-metadata",
        }
    }
}

/// Where progress goes.
pub trait Progress: Send + Sync {
    /// Saves a checkpoint. An error stops the purge (the task was cancelled or taken over).
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), String>;

    /// Dry run: a file that would be deleted.
    fn would_delete(&mut self, _kind: FileKind, _location: &str, _size: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn save(&mut self, _: &Checkpoint) -> Result<(), String> {
        Ok(())
    }
}

/// What to purge.
#[derive(Debug, Clone, Default)]
pub struct PurgeRequest {
    /// The table's current metadata file.
    pub metadata_location: String,
    /// The table location the event names, cross-checked with the metadata's.
    pub table_location: Option<String>,
    /// List, don't delete.
    pub dry_run: bool,
    /// Progress of an earlier attempt.
    pub checkpoint: Option<Checkpoint>,
}

/// How a purge ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PurgeOutcome {
    /// Everything deleted (or, in a dry run, listed); the final checkpoint.
    Purged(Checkpoint),
    /// The metadata file is gone: an earlier attempt finished, or there is nothing to purge.
    MetadataGone(Checkpoint),
    /// An earlier attempt had already finished.
    AlreadyDone(Checkpoint),
}

/// Why a purge failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PurgeError {
    /// A path outside the table, or an unsafe table location.
    #[error(transparent)]
    Safety(#[from] SafetyError),
    /// A metadata file, manifest list or manifest is missing, corrupt or unreadable.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A delete batch failed.
    #[error("delete failed: {0}")]
    Delete(#[from] DeleteError),
    /// A store cannot be set up or a path cannot be addressed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Progress could not be saved: the task is no longer ours.
    #[error("stopped: progress not saved: {0}")]
    Interrupted(String),
}

/// Runs purges. One per connector instance (or CLI run); its rate limits are shared by
/// every purge it runs.
pub struct Purger {
    config: Arc<PurgeConfig>,
    stores: Arc<Stores>,
    deleter: Arc<Deleter>,
    counters: Counters,
}

impl Purger {
    /// A purger with `config`; metrics carry `connector` as their label.
    pub fn new(config: PurgeConfig, connector: &str) -> Self {
        let config = Arc::new(config);
        let stores = Arc::new(Stores::new(config.clone()));
        let limiter = Arc::new(RateLimiter::new(
            config.max_files_per_second,
            config.max_batches_per_second,
        ));
        Purger {
            deleter: Arc::new(Deleter::new(stores.clone(), limiter, config.clone())),
            stores,
            config,
            counters: Counters::new(connector),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PurgeConfig {
        &self.config
    }

    /// Purges one table. Resumes from `request.checkpoint` when it is for the same metadata
    /// file.
    pub async fn purge(
        &self,
        request: &PurgeRequest,
        progress: &mut dyn Progress,
    ) -> Result<PurgeOutcome, PurgeError> {
        let _running = self.counters.running();
        let resumed = request
            .checkpoint
            .clone()
            .filter(|c| c.metadata_location == request.metadata_location && !c.dry_run);
        let mut run = Run {
            purger: self,
            started: Instant::now(),
            base_ms: 0,
            resumed: resumed.is_some() && !request.dry_run,
            dry_run: request.dry_run,
            stats: Arc::new(Mutex::new(Stats::default())),
            cp: Checkpoint {
                metadata_location: request.metadata_location.clone(),
                dry_run: request.dry_run,
                ..Checkpoint::default()
            },
            progress,
            recent: Recent::new(),
        };
        if let (Some(cp), false) = (resumed, request.dry_run) {
            if cp.phase == Phase::Done {
                return Ok(PurgeOutcome::AlreadyDone(cp));
            }
            run.base_ms = cp.stats.duration_ms;
            *run.stats() = cp.stats.clone();
            run.cp = cp;
        }
        run.stats().attempts += 1;
        let result = run.execute(request).await;
        if let Err(e) = &result {
            tracing::warn!(metadata = %request.metadata_location, error = %e, "purge attempt failed");
        }
        result
    }
}

/// One attempt.
struct Run<'a> {
    purger: &'a Purger,
    started: Instant,
    base_ms: u64,
    resumed: bool,
    dry_run: bool,
    stats: Arc<Mutex<Stats>>,
    cp: Checkpoint,
    progress: &'a mut dyn Progress,
    recent: Recent,
}

/// Content files already sent for deletion in this attempt, to skip the same file listed by
/// another manifest (an EXISTING or DELETED entry of a file ADDED earlier). Bounded: it keeps
/// the last [`RECENT_CAPACITY`] paths as 128-bit hashes (about 8 MiB), so memory does not grow
/// with the table; a duplicate further apart is deleted again, and found absent.
struct Recent {
    hashers: (RandomState, RandomState),
    set: HashSet<u128>,
    order: VecDeque<u128>,
}

/// Paths [`Recent`] remembers.
const RECENT_CAPACITY: usize = 262_144;

impl Recent {
    fn new() -> Self {
        Recent {
            hashers: (RandomState::new(), RandomState::new()),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers `path`; false when it was already there.
    fn insert(&mut self, path: &str) -> bool {
        let key = (u128::from(self.hashers.0.hash_one(path)) << 64)
            | u128::from(self.hashers.1.hash_one(path));
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// A batch being filled.
struct Pending {
    targets: Vec<Target>,
    /// Entries consumed to build it (duplicates included), for the checkpoint.
    consumed: u64,
}

impl Pending {
    fn new() -> Self {
        Pending {
            targets: Vec::new(),
            consumed: 0,
        }
    }

    /// Adds a file unless it is a duplicate; says whether the batch must be flushed first
    /// because the file is on another store.
    fn other_store(&self, uri: &ObjectUri) -> bool {
        self.targets
            .first()
            .is_some_and(|t| t.uri.scheme != uri.scheme || t.uri.authority != uri.authority)
    }

    fn add(&mut self, target: Target) {
        self.consumed += 1;
        self.targets.push(target);
    }
}

impl<'a> Run<'a> {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&mut self) -> Result<(), PurgeError> {
        let mut stats = self.stats().clone();
        stats.duration_ms = self.base_ms + self.started.elapsed().as_millis() as u64;
        self.cp.stats = stats;
        if self.dry_run {
            return Ok(());
        }
        self.progress
            .save(&self.cp)
            .map_err(PurgeError::Interrupted)
    }

    fn read_failed(&self, error: &DiscoveryError) {
        self.stats().failures += 1;
        self.purger.counters.read(0, 1);
        let _ = error;
    }

    fn counted_read(&self) {
        self.stats().requests += 1;
        self.purger.counters.read(1, 0);
    }

    async fn execute(&mut self, request: &PurgeRequest) -> Result<PurgeOutcome, PurgeError> {
        let purger = self.purger;
        let config = &purger.config;
        let meta_uri =
            ObjectUri::parse(&request.metadata_location).map_err(|error| SafetyError::Invalid {
                what: "metadata location".into(),
                error,
            })?;
        let (store, path) = purger.stores.resolve(&meta_uri)?;
        self.counted_read();
        let bytes =
            match discovery::read_all(&store, &path, "metadata file", &request.metadata_location)
                .await
            {
                Ok(bytes) => bytes,
                Err(DiscoveryError::NotFound { .. }) => {
                    if self.resumed && self.cp.phase == Phase::Final {
                        // Deleted by the attempt that saved the checkpoint, just before it died.
                        let mut stats = self.stats();
                        stats.files_deleted += 1;
                        stats.files_absent += 1;
                    }
                    self.cp.phase = Phase::Done;
                    self.save()?;
                    return Ok(PurgeOutcome::MetadataGone(self.cp.clone()));
                }
                Err(e) => {
                    self.read_failed(&e);
                    return Err(e.into());
                }
            };
        let metadata_size = bytes.len() as u64;
        let metadata = discovery::parse_metadata(&bytes, &request.metadata_location)?;
        drop(bytes);
        let roots = Roots::new(&metadata.location, &config.allowed_prefixes)?;
        if let Some(event_location) = &request.table_location {
            let from_event =
                ObjectUri::parse(event_location).map_err(|error| SafetyError::Invalid {
                    what: "table location of the event".into(),
                    error,
                })?;
            if !from_event.same_location(roots.table()) {
                return Err(SafetyError::LocationMismatch {
                    event: event_location.clone(),
                    metadata: metadata.location.clone(),
                }
                .into());
            }
        }
        roots.check(&request.metadata_location, || {
            "the metadata file itself".to_string()
        })?;
        let later = self.metadata_phase_files(&metadata, &roots, &request.metadata_location)?;

        if self.cp.phase == Phase::Content {
            let manifests = self.manifests(&metadata, &roots).await?;
            if config.verify_before_delete && !self.dry_run {
                self.verify(&manifests, &roots).await?;
            }
            self.save()?;
            self.content_phase(&manifests, &roots).await?;
            self.cp.phase = Phase::Metadata;
            self.save()?;
        }
        if self.cp.phase == Phase::Metadata {
            self.metadata_phase(later).await?;
            self.cp.phase = Phase::Final;
            self.save()?;
        }
        if self.cp.phase == Phase::Final {
            let target = Target {
                location: request.metadata_location.clone(),
                uri: meta_uri,
                size: metadata_size,
            };
            self.delete_now(vec![target], FileKind::CurrentMetadata)
                .await?;
            self.cp.phase = Phase::Done;
            self.save()?;
        }
        Ok(PurgeOutcome::Purged(self.cp.clone()))
    }

    /// The files of the metadata phase, checked, without duplicates, in order.
    fn metadata_phase_files(
        &self,
        metadata: &TableMetadata,
        roots: &Roots,
        current: &str,
    ) -> Result<Vec<(Target, FileKind)>, PurgeError> {
        let mut seen = HashSet::new();
        seen.insert(current.to_string());
        let mut files = Vec::new();
        let mut add = |location: &str,
                       size: u64,
                       kind: FileKind,
                       what: &dyn Fn() -> String|
         -> Result<(), PurgeError> {
            if !seen.insert(location.to_string()) {
                return Ok(());
            }
            let uri = roots.check(location, what)?;
            self.purger.stores.resolve(&uri)?;
            files.push((
                Target {
                    location: location.to_string(),
                    uri,
                    size,
                },
                kind,
            ));
            Ok(())
        };
        for entry in &metadata.metadata_log {
            add(&entry.metadata_file, 0, FileKind::PreviousMetadata, &|| {
                "previous metadata file in the metadata log".into()
            })?;
        }
        for snapshot in &metadata.snapshots {
            if let Some(list) = &snapshot.manifest_list {
                add(list, 0, FileKind::ManifestList, &|| {
                    format!("manifest list of snapshot {}", snapshot.snapshot_id)
                })?;
            }
        }
        for stats in &metadata.statistics {
            let size = stats.file_size_in_bytes.unwrap_or(0).max(0) as u64;
            add(&stats.statistics_path, size, FileKind::Statistics, &|| {
                "statistics file".into()
            })?;
        }
        for stats in &metadata.partition_statistics {
            let size = stats.file_size_in_bytes.unwrap_or(0).max(0) as u64;
            add(
                &stats.statistics_path,
                size,
                FileKind::PartitionStatistics,
                &|| "partition statistics file".into(),
            )?;
        }
        Ok(files)
    }

    /// Every manifest of every snapshot, once, in snapshot order, checked.
    async fn manifests(
        &mut self,
        metadata: &TableMetadata,
        roots: &Roots,
    ) -> Result<Vec<ManifestRef>, PurgeError> {
        let mut seen = HashSet::new();
        let mut manifests = Vec::new();
        for snapshot in &metadata.snapshots {
            let refs = match (&snapshot.manifest_list, &snapshot.manifests) {
                (Some(list), _) => {
                    let what = format!("manifest list of snapshot {}", snapshot.snapshot_id);
                    let uri = roots.check(list, || what.clone())?;
                    let (store, path) = self.purger.stores.resolve(&uri)?;
                    self.counted_read();
                    match discovery::read_manifest_list(&store, &path, list, &what).await {
                        Ok(refs) => refs,
                        Err(e) => {
                            self.read_failed(&e);
                            return Err(e.into());
                        }
                    }
                }
                (None, Some(paths)) => paths
                    .iter()
                    .map(|p| ManifestRef {
                        path: p.clone(),
                        length: 0,
                        content: 0,
                    })
                    .collect(),
                (None, None) => Vec::new(),
            };
            for manifest in refs {
                if seen.contains(&manifest.path) {
                    continue;
                }
                let uri = roots.check(&manifest.path, || {
                    format!("manifest listed for snapshot {}", snapshot.snapshot_id)
                })?;
                self.purger.stores.resolve(&uri)?;
                seen.insert(manifest.path.clone());
                manifests.push(manifest);
            }
        }
        Ok(manifests)
    }

    /// Opens a manifest's entry stream; `Ok(None)` when it is missing but known to have been
    /// deleted by the attempt that saved the checkpoint.
    async fn open_manifest(
        &self,
        ordinal: u64,
        manifest: &ManifestRef,
        roots: &Roots,
    ) -> Result<Option<discovery::Entries>, PurgeError> {
        let uri = roots.check(&manifest.path, || "manifest".to_string())?;
        let (store, path) = self.purger.stores.resolve(&uri)?;
        self.counted_read();
        self.stats().manifests_read += 1;
        let what = if manifest.content == 1 {
            "delete manifest"
        } else {
            "manifest"
        };
        match discovery::stream_manifest(&store, &path, &manifest.path, what, ENTRY_BUFFER).await {
            Ok(rx) => Ok(Some(rx)),
            // Manifests are deleted after their files, and the checkpoint saved just after:
            // the one right after the checkpoint may be gone because of that.
            Err(DiscoveryError::NotFound { .. })
                if self.resumed && ordinal == self.cp.manifests_done =>
            {
                Ok(None)
            }
            Err(e) => {
                self.read_failed(&e);
                Err(e.into())
            }
        }
    }

    /// Reads every remaining manifest and checks every path, deleting nothing.
    async fn verify(&self, manifests: &[ManifestRef], roots: &Roots) -> Result<(), PurgeError> {
        // Decoding dominates: verify a few manifests at once, one per core.
        let parallel = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let checks: Vec<_> = manifests
            .iter()
            .enumerate()
            .skip(self.cp.manifests_done as usize)
            .map(|(ordinal, manifest)| self.verify_one(ordinal as u64, manifest, roots))
            .collect();
        let mut checks = futures::stream::iter(checks).buffer_unordered(parallel);
        while let Some(result) = checks.next().await {
            result?;
        }
        Ok(())
    }

    async fn verify_one(
        &self,
        ordinal: u64,
        manifest: &ManifestRef,
        roots: &Roots,
    ) -> Result<(), PurgeError> {
        let Some(mut rx) = self.open_manifest(ordinal, manifest, roots).await? else {
            return Ok(());
        };
        while let Some(entry) = rx.next().await {
            let file = entry.inspect_err(|e| self.read_failed(e))?;
            let uri = roots.check(&file.path, || {
                format!("file listed in manifest `{}`", manifest.path)
            })?;
            if uri.scheme != roots.table().scheme || uri.authority != roots.table().authority {
                self.purger.stores.resolve(&uri)?;
            }
        }
        Ok(())
    }

    async fn content_phase(
        &mut self,
        manifests: &[ManifestRef],
        roots: &Roots,
    ) -> Result<(), PurgeError> {
        let config = self.purger.config.clone();
        for (ordinal, manifest) in manifests
            .iter()
            .enumerate()
            .skip(self.cp.manifests_done as usize)
        {
            let ordinal = ordinal as u64;
            let skip = if self.cp.manifest.as_deref() == Some(manifest.path.as_str()) {
                self.cp.entries_done
            } else {
                0
            };
            self.cp.manifest = Some(manifest.path.clone());
            self.cp.entries_done = skip;
            let Some(mut rx) = self.open_manifest(ordinal, manifest, roots).await? else {
                tracing::info!(manifest = %manifest.path, "manifest already deleted by an earlier attempt");
                {
                    // Not-found counts as deleted.
                    let mut stats = self.stats();
                    stats.files_deleted += 1;
                    stats.files_absent += 1;
                }
                self.manifest_done()?;
                continue;
            };
            let mut position = 0u64;
            let mut batch = Pending::new();
            let mut in_flight = FuturesOrdered::new();
            let mut failure: Option<PurgeError> = None;
            loop {
                let entry = match rx.next().await {
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => {
                        self.read_failed(&e);
                        failure = Some(e.into());
                        break;
                    }
                    None => break,
                };
                position += 1;
                if position <= skip {
                    continue;
                }
                let uri = match roots.check(&entry.path, || {
                    format!("file listed in manifest `{}`", manifest.path)
                }) {
                    Ok(uri) => uri,
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                };
                let kind = if entry.content == 0 {
                    FileKind::Data
                } else {
                    FileKind::Delete
                };
                if !self.recent.insert(&entry.path) {
                    // Listed again by this or an earlier manifest: already on its way.
                    batch.consumed += 1;
                    continue;
                }
                if self.dry_run {
                    self.would_delete(kind, &entry.path, entry.size);
                    continue;
                }
                if batch.other_store(&uri) {
                    let full = std::mem::replace(&mut batch, Pending::new());
                    in_flight.push_back(self.run_batch(full));
                }
                batch.add(Target {
                    location: entry.path,
                    uri,
                    size: entry.size,
                });
                if batch.targets.len() >= config.batch_size {
                    let full = std::mem::replace(&mut batch, Pending::new());
                    in_flight.push_back(self.run_batch(full));
                }
                if in_flight.len() >= config.batch_concurrency {
                    // At least `batch_concurrency` (validated >= 1) batches are in flight.
                    let Some((result, consumed)) = in_flight.next().await else {
                        continue;
                    };
                    if let Err(e) = result {
                        failure = Some(e.into());
                        break;
                    }
                    self.cp.entries_done += consumed;
                    self.save_with(&mut failure);
                    if failure.is_some() {
                        break;
                    }
                }
            }
            if failure.is_none() && !batch.targets.is_empty() {
                in_flight.push_back(self.run_batch(batch));
            }
            // Let every batch already sent finish, so the checkpoint covers it.
            while let Some((result, consumed)) = in_flight.next().await {
                match result {
                    Ok(()) if failure.is_none() => {
                        self.cp.entries_done += consumed;
                        self.save_with(&mut failure);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        failure.get_or_insert(e.into());
                    }
                }
            }
            drop(in_flight);
            if let Some(e) = failure {
                return Err(e);
            }
            let target = Target {
                location: manifest.path.clone(),
                uri: roots.check(&manifest.path, || "manifest".to_string())?,
                size: manifest.length,
            };
            self.delete_now(vec![target], FileKind::Manifest).await?;
            self.manifest_done()?;
        }
        Ok(())
    }

    fn save_with(&mut self, failure: &mut Option<PurgeError>) {
        if let Err(e) = self.save() {
            failure.get_or_insert(e);
        }
    }

    fn manifest_done(&mut self) -> Result<(), PurgeError> {
        self.cp.manifests_done += 1;
        self.cp.manifest = None;
        self.cp.entries_done = 0;
        self.save()
    }

    async fn metadata_phase(&mut self, files: Vec<(Target, FileKind)>) -> Result<(), PurgeError> {
        let batch_size = self.purger.config.batch_size;
        let skip = self.cp.metadata_files_done as usize;
        let mut batch = Pending::new();
        let mut remaining = files.into_iter().skip(skip).peekable();
        while let Some((target, kind)) = remaining.next() {
            if self.dry_run {
                self.would_delete(kind, &target.location, target.size);
                continue;
            }
            if batch.other_store(&target.uri) {
                let full = std::mem::replace(&mut batch, Pending::new());
                self.metadata_batch(full).await?;
            }
            batch.add(target);
            if batch.targets.len() >= batch_size || remaining.peek().is_none() {
                let full = std::mem::replace(&mut batch, Pending::new());
                self.metadata_batch(full).await?;
            }
        }
        Ok(())
    }

    async fn metadata_batch(&mut self, batch: Pending) -> Result<(), PurgeError> {
        let (result, consumed) = self.run_batch(batch).await;
        result?;
        self.cp.metadata_files_done += consumed;
        self.save()
    }

    async fn delete_now(&mut self, targets: Vec<Target>, kind: FileKind) -> Result<(), PurgeError> {
        if self.dry_run {
            for t in &targets {
                self.would_delete(kind, &t.location, t.size);
            }
            return Ok(());
        }
        let mut batch = Pending::new();
        for t in targets {
            batch.add(t);
        }
        let (result, _) = self.run_batch(batch).await;
        result.map_err(PurgeError::from)
    }

    fn would_delete(&mut self, kind: FileKind, location: &str, size: u64) {
        {
            let mut stats = self.stats();
            stats.files_deleted += 1;
            stats.bytes_deleted += size;
        }
        self.progress.would_delete(kind, location, size);
    }

    /// Deletes one batch on its own task (so batches in flight progress while the next
    /// one is read); yields the result and the entries it consumed.
    fn run_batch(&self, batch: Pending) -> BatchFuture {
        let deleter = self.purger.deleter.clone();
        let counters = self.purger.counters.clone();
        let stats = self.stats.clone();
        let consumed = batch.consumed;
        let task = tokio::spawn(async move {
            deleter
                .delete_batch(&batch.targets, &stats, &counters)
                .await
        });
        Box::pin(async move {
            let result = task.await.unwrap_or_else(|e| {
                Err(DeleteError::Failed {
                    failed: 0,
                    total: 0,
                    tries: 0,
                    first: format!("delete task failed: {e}"),
                })
            });
            (result, consumed)
        })
    }
}

type BatchFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Result<(), DeleteError>, u64)> + Send + 'static>,
>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::tests::{write_manifest, write_manifest_list};
    use std::path::Path;

    /// A v2 table under `root/db/t`: 3 data manifests of 25 files and a delete manifest of 5,
    /// in 3 snapshots (manifests shared between snapshots), 2 previous metadata files, a
    /// statistics file; and a sibling `root/db/t_2`. Returns the metadata location.
    fn make_table(root: &Path) -> String {
        let t = root.join("db/t");
        std::fs::create_dir_all(t.join("data")).unwrap();
        std::fs::create_dir_all(t.join("metadata")).unwrap();
        std::fs::create_dir_all(root.join("db/t_2/data")).unwrap();
        std::fs::write(root.join("db/t_2/data/keep.parquet"), b"sibling").unwrap();
        let loc = |rel: &str| format!("file://{}/{rel}", t.display());
        let mut manifests = Vec::new();
        for m in 0..4 {
            let content = if m == 3 { 1 } else { 0 };
            let count = if m == 3 { 5 } else { 25 };
            let files: Vec<String> = (0..count)
                .map(|i| loc(&format!("data/m{m}-f{i}.parquet")))
                .collect();
            for f in &files {
                std::fs::write(f.trim_start_matches("file://"), b"0123456789").unwrap();
            }
            let entries: Vec<(&str, i64, i32)> =
                files.iter().map(|f| (f.as_str(), 10, content)).collect();
            let bytes = write_manifest(&entries);
            let path = loc(&format!("metadata/m{m}.avro"));
            std::fs::write(path.trim_start_matches("file://"), &bytes).unwrap();
            manifests.push((path, bytes.len() as i64, content));
        }
        let mut snapshots = Vec::new();
        for (s, upto) in [(1, 1), (2, 2), (3, 4)] {
            let refs: Vec<(&str, i64, i32)> = manifests[..upto]
                .iter()
                .map(|(p, l, c)| (p.as_str(), *l, *c))
                .collect();
            let list = loc(&format!("metadata/snap-{s}.avro"));
            std::fs::write(
                list.trim_start_matches("file://"),
                write_manifest_list(&refs),
            )
            .unwrap();
            snapshots.push(serde_json::json!({"snapshot-id": s, "manifest-list": list}));
        }
        let mut log = Vec::new();
        for v in 0..2 {
            let p = loc(&format!("metadata/0000{v}.metadata.json"));
            std::fs::write(p.trim_start_matches("file://"), b"{}").unwrap();
            log.push(serde_json::json!({"metadata-file": p, "timestamp-ms": v}));
        }
        let stats = loc("metadata/s.puffin");
        std::fs::write(stats.trim_start_matches("file://"), b"PFA1").unwrap();
        let metadata = serde_json::json!({
            "format-version": 2, "table-uuid": "u", "location": format!("file://{}", t.display()),
            "snapshots": snapshots, "metadata-log": log,
            "statistics": [{"snapshot-id": 3, "statistics-path": stats, "file-size-in-bytes": 4}],
        });
        let current = loc("metadata/00002.metadata.json");
        std::fs::write(
            current.trim_start_matches("file://"),
            serde_json::to_vec(&metadata).unwrap(),
        )
        .unwrap();
        current
    }

    fn files_under(dir: &Path) -> usize {
        let mut n = 0;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    n += files_under(&e.path());
                } else {
                    n += 1;
                }
            }
        }
        n
    }

    /// Saves checkpoints until the `fail_at`-th save, which fails (a crash at that point).
    struct Crashing {
        saves: usize,
        fail_at: usize,
        last: Option<Checkpoint>,
    }

    impl Progress for Crashing {
        fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
            self.saves += 1;
            if self.saves == self.fail_at {
                return Err("crash".into());
            }
            self.last = Some(checkpoint.clone());
            Ok(())
        }
    }

    fn purger() -> Purger {
        Purger::new(
            PurgeConfig {
                batch_size: 10,
                batch_concurrency: 2,
                ..PurgeConfig::default()
            },
            "test",
        )
    }

    const TOTAL: u64 = 75 + 5 + 4 + 3 + 2 + 1 + 1;

    #[tokio::test]
    async fn purges_everything_in_order_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = make_table(dir.path());
        assert_eq!(files_under(&dir.path().join("db/t")), TOTAL as usize);
        let request = PurgeRequest {
            metadata_location: metadata.clone(),
            ..PurgeRequest::default()
        };
        let mut progress = Crashing {
            saves: 0,
            fail_at: 0,
            last: None,
        };
        let outcome = purger().purge(&request, &mut progress).await.unwrap();
        let PurgeOutcome::Purged(cp) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(cp.phase, Phase::Done);
        assert_eq!(cp.stats.files_deleted, TOTAL);
        assert_eq!(cp.stats.failures, 0);
        assert_eq!(files_under(&dir.path().join("db/t")), 0);
        assert_eq!(files_under(&dir.path().join("db/t_2")), 1);
        // Again: the metadata file is gone, so the purge is known to be complete.
        let again = purger().purge(&request, &mut progress).await.unwrap();
        assert!(matches!(again, PurgeOutcome::MetadataGone(_)), "{again:?}");
    }

    #[tokio::test]
    async fn a_crash_at_any_checkpoint_resumes_and_finishes() {
        for fail_at in 1..=30 {
            let dir = tempfile::tempdir().unwrap();
            let metadata = make_table(dir.path());
            let mut first = Crashing {
                saves: 0,
                fail_at,
                last: None,
            };
            let request = PurgeRequest {
                metadata_location: metadata.clone(),
                ..PurgeRequest::default()
            };
            let result = purger().purge(&request, &mut first).await;
            if result.is_ok() {
                assert!(
                    first.saves < fail_at,
                    "finished although save {fail_at} failed"
                );
                continue;
            }
            assert!(
                matches!(result, Err(PurgeError::Interrupted(_))),
                "{result:?}"
            );
            let resumed = PurgeRequest {
                checkpoint: first.last.clone(),
                ..request.clone()
            };
            let mut second = Crashing {
                saves: 0,
                fail_at: 0,
                last: None,
            };
            let outcome = purger().purge(&resumed, &mut second).await.unwrap();
            let (PurgeOutcome::Purged(cp) | PurgeOutcome::MetadataGone(cp)) = outcome else {
                panic!("{fail_at}: {outcome:?}")
            };
            assert_eq!(
                files_under(&dir.path().join("db/t")),
                0,
                "crash at save {fail_at}"
            );
            assert_eq!(files_under(&dir.path().join("db/t_2")), 1);
            assert_eq!(cp.stats.failures, 0, "crash at save {fail_at}");
            assert_eq!(cp.stats.attempts, if first.last.is_some() { 2 } else { 1 });
            let before = first.last.map(|c| c.stats.files_deleted).unwrap_or(0);
            // The second attempt redid at most the batches in flight at the crash.
            assert!(cp.stats.files_deleted >= TOTAL, "{fail_at}: {cp:?}");
            assert!(cp.stats.files_deleted - before <= TOTAL - before + 2 * 10 + 1);
        }
    }

    #[tokio::test]
    async fn refuses_a_table_location_that_differs_from_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let metadata = make_table(dir.path());
        let request = PurgeRequest {
            metadata_location: metadata,
            table_location: Some(format!("file://{}/db/t_2", dir.path().display())),
            ..PurgeRequest::default()
        };
        let mut progress = Crashing {
            saves: 0,
            fail_at: 0,
            last: None,
        };
        let err = purger().purge(&request, &mut progress).await.unwrap_err();
        assert!(
            matches!(
                err,
                PurgeError::Safety(SafetyError::LocationMismatch { .. })
            ),
            "{err}"
        );
        assert_eq!(files_under(&dir.path().join("db/t")), TOTAL as usize);
    }
}
