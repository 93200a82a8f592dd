//! Deletion: bulk batches through `object_store`, rate limited, retried per batch.
//!
//! A batch holds files of one store, without duplicates. Stores with a bulk delete API (S3
//! `DeleteObjects`, Azure blob batch) get one request per batch (per 1000 or 256 files);
//! stores without one (local files, GCS) get one request per file (local files: unlinked
//! in one blocking task per batch). Not-found counts as deleted. Files a try could not delete are tried again, up to
//! `batch_tries` tries, `batch_retry_interval` apart (doubling).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use tokio::time::Instant;

use crate::config::PurgeConfig;
use crate::safety::{ObjectUri, Scheme};
use crate::stats::{Counters, Stats};
use crate::store::{StoreError, Stores};

/// Deletes in flight within one batch, for stores that delete one object per request.
const PER_OBJECT_CONCURRENCY: usize = 16;

/// Limits files/s and batches/s across everything that shares it (a connector's tasks).
///
/// Virtual scheduling: a batch of `n` files may start once both budgets allow it; it then
/// pushes the next start back by `n / files_per_second` and `1 / batches_per_second`. No
/// burst beyond one batch: over any interval `T`, at most `rate * T + one batch` files go out.
#[derive(Debug)]
pub struct RateLimiter {
    files_per_second: Option<f64>,
    batches_per_second: Option<f64>,
    next: Mutex<(Instant, Instant)>,
}

impl RateLimiter {
    /// A limiter; `None` means no limit on that axis.
    pub fn new(files_per_second: Option<f64>, batches_per_second: Option<f64>) -> Self {
        let now = Instant::now();
        RateLimiter {
            files_per_second,
            batches_per_second,
            next: Mutex::new((now, now)),
        }
    }

    /// Waits until a batch of `files` files may go out.
    pub async fn acquire(&self, files: usize) {
        if self.files_per_second.is_none() && self.batches_per_second.is_none() {
            return;
        }
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = now.max(next.0).max(next.1);
            if let Some(rate) = self.files_per_second {
                next.0 = start + Duration::from_secs_f64(files as f64 / rate);
            }
            if let Some(rate) = self.batches_per_second {
                next.1 = start + Duration::from_secs_f64(1.0 / rate);
            }
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// One file to delete.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its location as the metadata wrote it.
    pub location: String,
    /// Parsed and checked.
    pub uri: ObjectUri,
    /// Its size when the metadata records it (0 otherwise).
    pub size: u64,
}

/// A batch that could not be deleted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeleteError {
    /// The store cannot be used (configuration).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some files are still there after every try.
    #[error("{failed} of {total} files not deleted after {tries} tries; first error: {first}")]
    Failed {
        /// Files not deleted.
        failed: usize,
        /// Files in the batch.
        total: usize,
        /// Tries made.
        tries: u32,
        /// The first error seen.
        first: String,
    },
}

/// Deletes batches for one connector (or one CLI run).
pub struct Deleter {
    stores: Arc<Stores>,
    limiter: Arc<RateLimiter>,
    config: Arc<PurgeConfig>,
}

impl Deleter {
    /// A deleter over `stores`, paced by `limiter`.
    pub fn new(stores: Arc<Stores>, limiter: Arc<RateLimiter>, config: Arc<PurgeConfig>) -> Self {
        Deleter {
            stores,
            limiter,
            config,
        }
    }

    /// Deletes `batch` (files of one store, no duplicates), recording what happened in
    /// `stats` and `counters`.
    pub async fn delete_batch(
        &self,
        batch: &[Target],
        stats: &Mutex<Stats>,
        counters: &Counters,
    ) -> Result<(), DeleteError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let (store, _) = self.stores.resolve(&first.uri)?;
        let mut pending: Vec<(Path, &Target)> = Vec::with_capacity(batch.len());
        for target in batch {
            let (_, path) = self.stores.resolve(&target.uri)?;
            pending.push((path, target));
        }
        let mut wait = self.config.batch_retry_interval;
        let mut first_error: Option<String> = None;
        let tries = self.config.batch_tries.max(1);
        for attempt in 1..=tries {
            if attempt > 1 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            self.limiter.acquire(pending.len()).await;
            let requests = store.requests_for(pending.len());
            let mut deleted: HashSet<Path> = HashSet::with_capacity(pending.len());
            let mut absent = 0u64;
            let mut errors = 0u64;
            if store.scheme == Scheme::File {
                // Unlinked in a few blocking tasks per batch: object_store's LocalFileSystem
                // spawns one per file, which costs more than a cached unlink; and a single
                // task serializes unlinks that wait for the disk (discard) and overlap well.
                let files: Vec<(Path, std::path::PathBuf)> = pending
                    .iter()
                    .map(|(p, t)| (p.clone(), std::path::Path::new("/").join(&t.uri.key)))
                    .collect();
                let results = unlink_all(files).await;
                for (path, result) in results {
                    match result {
                        Ok(()) => {
                            deleted.insert(path);
                        }
                        Err((std::io::ErrorKind::NotFound, _)) => {
                            absent += 1;
                            deleted.insert(path);
                        }
                        Err((_, e)) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
            } else if store.per_request == 1 {
                let paths: Vec<Path> = pending.iter().map(|(p, _)| p.clone()).collect();
                let results = delete_each(store.inner.clone(), paths).await;
                for (path, result) in results {
                    match result {
                        Ok(()) => {
                            deleted.insert(path);
                        }
                        Err(object_store::Error::NotFound { .. }) => {
                            absent += 1;
                            deleted.insert(path);
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            } else {
                let paths: Vec<object_store::Result<Path>> =
                    pending.iter().map(|(p, _)| Ok(p.clone())).collect();
                let mut results = store.inner.delete_stream(stream::iter(paths).boxed());
                loop {
                    match results.try_next().await {
                        Ok(Some(path)) => {
                            deleted.insert(path);
                        }
                        Ok(None) => break,
                        Err(object_store::Error::NotFound { path, .. }) => {
                            // Not reported by S3 for bulk deletes; tolerated if a store does.
                            absent += 1;
                            if let Ok(p) = Path::parse(&path) {
                                deleted.insert(p);
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
            }
            let mut done_files = 0u64;
            let mut done_bytes = 0u64;
            pending.retain(|(path, target)| {
                if deleted.contains(path) {
                    done_files += 1;
                    done_bytes += target.size;
                    false
                } else {
                    true
                }
            });
            let failures = if pending.is_empty() { 0 } else { errors.max(1) };
            {
                let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                s.files_deleted += done_files;
                s.files_absent += absent;
                s.bytes_deleted += done_bytes;
                s.requests += requests;
                s.failures += failures;
                s.batches += 1;
            }
            counters.deleted(done_files, done_bytes, requests, failures);
            if pending.is_empty() {
                return Ok(());
            }
            tracing::warn!(
                attempt,
                remaining = pending.len(),
                error = first_error
                    .as_deref()
                    .unwrap_or("not confirmed by the store"),
                "delete batch incomplete"
            );
        }
        Err(DeleteError::Failed {
            failed: pending.len(),
            total: batch.len(),
            tries,
            first: first_error.unwrap_or_else(|| "not confirmed by the store".into()),
        })
    }
}

/// Local files: removed by up to [`PER_OBJECT_CONCURRENCY`] blocking tasks.
async fn unlink_all(
    files: Vec<(Path, std::path::PathBuf)>,
) -> Vec<(Path, Result<(), (std::io::ErrorKind, String)>)> {
    let chunk = files.len().div_ceil(PER_OBJECT_CONCURRENCY).max(8);
    let mut tasks = Vec::new();
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        let part: Vec<_> = files.by_ref().take(chunk).collect();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|(path, file)| {
                    let result = std::fs::remove_file(&file)
                        .map_err(|e| (e.kind(), format!("{}: {e}", file.display())));
                    (path, result)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap_or_default());
    }
    results
}

/// Deletes each path with its own request, [`PER_OBJECT_CONCURRENCY`] at a time.
async fn delete_each(
    store: Arc<dyn object_store::ObjectStore>,
    paths: Vec<Path>,
) -> Vec<(Path, object_store::Result<()>)> {
    stream::iter(paths)
        .map(move |path| {
            let store = store.clone();
            async move {
                let result = store.delete(&path).await;
                (path, result)
            }
        })
        .buffer_unordered(PER_OBJECT_CONCURRENCY)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_files_and_batches() {
        let limiter = RateLimiter::new(Some(100.0), Some(4.0));
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..5 {
            limiter.acquire(50).await;
            starts.push(start.elapsed().as_millis());
        }
        // files: 50 per 0.5 s; batches: one per 0.25 s -> files dominate.
        assert_eq!(starts, [0, 500, 1000, 1500, 2000]);
        let limiter = RateLimiter::new(None, Some(10.0));
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire(1000).await;
        }
        assert_eq!(start.elapsed().as_millis(), 1000);
        let unlimited = RateLimiter::new(None, None);
        let start = Instant::now();
        unlimited.acquire(1_000_000).await;
        assert_eq!(start.elapsed().as_millis(), 0);
    }
}
