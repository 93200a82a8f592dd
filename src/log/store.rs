//! The sled store behind the task log.
//!
//! A task's record key is `connector number (u16 BE) ++ sequence (u64 BE)`. Trees:
//! - `chunks`: the tasks' bodies (id, event, source position, ordering key), each written once
//!   and never changed, in [chunks](super::chunk) of up to 64 consecutive tasks of one
//!   connector (zstd-compressed, about 6 KiB stored at most), keyed by the record key of
//!   their first task. Sequences come from sled's
//!   monotonic id generator, allocated under the append lock that also holds each connector's
//!   open chunk; a chunk is written when it is full, when the log is flushed, or before any
//!   other write of that connector's bodies, so each connector's tasks are in creation order,
//!   new chunks append at the end of its range, and a reader never sees a sequence appear
//!   behind one it has already passed. A task is readable once its chunk is written: the
//!   source flushes before it wakes a dispatcher.
//! - `states`: record key -> the task's status (state, attempts, history, checkpoint), written
//!   only when the task's state differs from what the log implies. A task without a status is
//!   pending when its sequence is at or above its connector's head, and succeeded (on its
//!   first attempt) below it. A delivery that succeeds on its first attempt therefore costs no
//!   write of its own: the dispatcher advances the head past it. Failures, retries, long
//!   deliveries (lease renewals, checkpoints), dead letters and cancellations write a status.
//! - The dedup index maps a task id within its bucket to its record key. The bucket is the
//!   event's time in seconds for tasks per event (every copy of an event carries its time, so
//!   duplicates meet in one bucket) and 0 for keyed tasks.
//!   - `claims`: the tasks per event, in groups of claims per bucket written together (one
//!     write per group, not per task), see `claims.rs`.
//!   - `ids`: keyed tasks, `0u32 ++ task id (16 bytes)` -> record key (10 bytes), one entry
//!     each.
//!
//!   Looking a task up by id alone ([`TaskLog::find`]) scans the index.
//! - `rejected`: `topic ++ 0x00 ++ partition (u32 BE) ++ offset (u64 BE)` -> [`RejectedRecord`].
//! - `replayed`: rejected key -> [`ReplayRecord`]: rejected messages an operator replayed.
//! - `table_index`: what is known of each table, see [`super::table_index`].
//! - `meta`: format version, connector numbers, each connector's head (every task below it
//!   is finished).
//!
//! Retention compaction walks each connector's range below its head in sequence order and
//! drops tasks that finished (or, without a status, were created) before the cutoff.
//!
//! An operator's retry of a dead task moves its record to a new sequence (the dispatcher only
//! reads forward from its cursor), in one sled transaction over `chunks`, `states` and the
//! index (a keyed task's entry is rewritten; a task per event gets a claim group of its own).
//!
//! A new task claims its id first (the claim is the dedup check), then adds its body to its
//! connector's open chunk, both under the append lock; claims are written before the chunk
//! of their tasks. A crash before the chunk is written can keep a claim without its record;
//! the message's offset was not stored (that waits for the flush), so it is consumed again,
//! and the insert takes such an orphaned claim over instead of counting a duplicate.
//!
//! Older formats are converted when opened: format 2 (one `tasks` entry per body) to chunks,
//! formats 3 and 4 (one `ids` entry per task of every kind) to claim groups.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use polaris_bridge_api::TaskId;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::chunk::{self, OpenChunk};
use super::claims::{self, Claims};
use super::record::{Expiry, RejectedRecord, ReplayRecord, TaskRecord, TaskState};

/// The store format this build reads and writes (5: bodies in compressed chunks, sparse
/// statuses, claims of tasks per event in groups).
const FORMAT_VERSION: u32 = 5;
/// The format with one `ids` entry per task: its entries of tasks per event move into
/// claim groups on open.
const FORMAT_PER_TASK_IDS: u32 = 4;
/// The format with plain chunks (and one `ids` entry per task): its chunks are read as they
/// are (plain until rewritten) and its index moves into claim groups on open, so that an
/// older build refuses the store rather than misreads a compressed chunk.
const FORMAT_PLAIN_CHUNKS: u32 = 3;
/// The format before chunks (one `tasks` entry per body), migrated on open.
const FORMAT_UNCHUNKED: u32 = 2;
const META_FORMAT: &[u8] = b"format_version";
/// Why a retry is refused when the dedup index does not point at the task.
const INDEX_ELSEWHERE: &str =
    "the task's index entry does not point at it (run `polaris-bridge store check`)";
/// Claims of removed tasks collected by compaction before their groups are rewritten.
const FORGET_BATCH: usize = 1 << 16;
const META_CONNECTOR: &str = "connector/";
const META_HEAD: &str = "head/";

/// A record's key in the `tasks` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// The connector's number in this store.
    pub connector: u16,
    /// Creation sequence.
    pub seq: u64,
}

impl RecordKey {
    pub(super) fn to_bytes(self) -> [u8; 10] {
        let mut key = [0u8; 10];
        key[..2].copy_from_slice(&self.connector.to_be_bytes());
        key[2..].copy_from_slice(&self.seq.to_be_bytes());
        key
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 10 {
            return None;
        }
        let connector = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
        let seq = u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?);
        Some(RecordKey { connector, seq })
    }

    /// The key as an opaque token (a pagination cursor): 20 hex characters.
    pub fn to_token(self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Reads a token made by [`RecordKey::to_token`].
    pub fn from_token(token: &str) -> Option<Self> {
        RecordKey::from_bytes(&hex::decode(token).ok()?)
    }
}

/// Where a rejected message was read: its key in the `rejected` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedKey {
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Message offset.
    pub offset: i64,
}

impl RejectedKey {
    fn to_bytes(&self) -> Vec<u8> {
        rejected_key(&self.topic, self.partition, self.offset)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let split = bytes.len().checked_sub(13)?;
        if bytes[split] != 0 {
            return None;
        }
        let topic = String::from_utf8(bytes[..split].to_vec()).ok()?;
        let partition = u32::from_be_bytes(bytes[split + 1..split + 5].try_into().ok()?) as i32;
        let offset = u64::from_be_bytes(bytes[split + 5..].try_into().ok()?) as i64;
        Some(RejectedKey {
            topic,
            partition,
            offset,
        })
    }
}

/// What `polaris-bridge store check` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckReport {
    /// Task records.
    pub tasks: u64,
    /// Task records by state name.
    pub states: std::collections::BTreeMap<String, u64>,
    /// Dedup index entries: one per keyed task, and the latest claim of each task per event.
    pub ids: u64,
    /// Stored statuses (tasks whose state is not implied by the head).
    pub statuses: u64,
    /// Rejected messages.
    pub rejected: u64,
    /// Rejected messages replayed.
    pub replayed: u64,
    /// Connector names and numbers.
    pub connectors: std::collections::BTreeMap<String, u16>,
    /// Inconsistencies that lose or hide work: the store needs attention.
    pub problems: Vec<String>,
    /// Harmless leftovers (for example of a crash between two writes).
    pub warnings: Vec<String>,
}

impl CheckReport {
    const MAX_LISTED: usize = 100;

    fn problem(&mut self, text: String) {
        if self.problems.len() < Self::MAX_LISTED {
            self.problems.push(text);
        }
    }

    fn warning(&mut self, text: String) {
        if self.warnings.len() < Self::MAX_LISTED {
            self.warnings.push(text);
        }
    }
}

/// A slice of one connector's unfinished tasks, read in order.
#[derive(Debug)]
pub struct Unfinished {
    /// The records, in sequence order.
    pub records: Vec<(RecordKey, TaskRecord)>,
    /// The highest sequence looked at, finished or not.
    pub last_seen: Option<u64>,
}

/// What became of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new task, at this key.
    Created(RecordKey),
    /// The task id was already in the log: counted, not run again.
    Duplicate,
}

/// A task log failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Another process holds the store.
    #[error("the task log at {path} is in use by another process (sled holds a lock on it): stop that process, or point store.path elsewhere")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The store was written by an incompatible version.
    #[error("the task log at {path} has format version {found}, this build reads version {expected}: use a matching polaris-bridge, or move the directory aside to start empty (its tasks would be lost)")]
    Incompatible {
        /// The store directory.
        path: PathBuf,
        /// Version on disk.
        found: String,
        /// Version this build reads.
        expected: u32,
    },
    /// The store cannot be opened: damaged files, or not a task log.
    #[error("the task log at {path} cannot be opened: {message}. It was left as it is (never reset): run `polaris-bridge store check --path {path}` for details, then restore a backup, or move the directory aside to start empty (its tasks would be lost)")]
    Damaged {
        /// The store directory.
        path: PathBuf,
        /// What sled or the format check said.
        message: String,
    },
    /// sled failed.
    #[error("task log I/O: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not decode.
    #[error("task log record {key} is corrupt: {message}")]
    Corrupt {
        /// Which record.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// The record is not there (compacted, or never existed).
    #[error("task {0} not found")]
    NotFound(String),
    /// A state change was refused.
    #[error("{0}")]
    Refused(String),
}

/// One task's body, read in place from its chunk.
struct StoredBody {
    /// The task's record key.
    key: RecordKey,
    /// The key of the chunk holding it.
    chunk_key: [u8; 10],
    /// The chunk's plain encoding.
    chunk: sled::IVec,
    /// Where the body lies in `chunk`.
    range: Range<usize>,
}

impl StoredBody {
    fn bytes(&self) -> &[u8] {
        self.chunk.get(self.range.clone()).unwrap_or_default()
    }
}

/// Task bodies in record key order between two keys (both included), chunk by chunk. A chunk
/// that does not decode, or holds tasks out of order, is reported as an error and skipped.
struct Bodies<'a> {
    chunks: sled::Iter,
    /// Where decompressed chunks are kept for the next read.
    recent: &'a RecentChunks,
    lower: RecordKey,
    upper: RecordKey,
    /// The key of the chunk being read, and its plain encoding.
    chunk_key: RecordKey,
    chunk: sled::IVec,
    entries: std::vec::IntoIter<(u64, Range<usize>)>,
    /// The last key yielded, to catch chunks that overlap.
    last: Option<RecordKey>,
    done: bool,
}

impl Iterator for Bodies<'_> {
    type Item = Result<StoredBody, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some((seq, range)) = self.entries.next() {
                let chunk_key = self.chunk_key;
                let key = RecordKey {
                    connector: chunk_key.connector,
                    seq,
                };
                if key < chunk_key || self.last.is_some_and(|last| key <= last) {
                    self.entries = Vec::new().into_iter();
                    return Some(Err(LogError::Corrupt {
                        key: chunk_key.to_token(),
                        message: format!(
                            "chunk holds sequence {seq} out of order (below its key or an earlier task)"
                        ),
                    }));
                }
                self.last = Some(key);
                if key < self.lower {
                    continue;
                }
                if key > self.upper {
                    self.done = true;
                    return None;
                }
                return Some(Ok(StoredBody {
                    key,
                    chunk_key: chunk_key.to_bytes(),
                    chunk: self.chunk.clone(),
                    range,
                }));
            }
            let (k, v) = match self.chunks.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e.into())),
            };
            let Some(chunk_key) = RecordKey::from_bytes(&k) else {
                return Some(Err(LogError::Corrupt {
                    key: hex::encode(&k),
                    message: "chunk key is not 10 bytes".into(),
                }));
            };
            let plain = self.recent.plain(chunk_key, v);
            match plain.and_then(|plain| Ok((chunk::entries(&plain)?, plain))) {
                Ok((entries, plain)) => {
                    self.chunk_key = chunk_key;
                    self.chunk = plain;
                    self.entries = entries.into_iter();
                }
                Err(e) => {
                    return Some(Err(LogError::Corrupt {
                        key: chunk_key.to_token(),
                        message: format!("chunk does not decode: {e}"),
                    }))
                }
            }
        }
    }
}

/// Each connector's open chunk: bodies of new tasks not yet written.
type OpenChunks = HashMap<u16, OpenChunk>;

/// What the append lock guards: the open chunks and the claims of tasks per event.
#[derive(Default)]
struct Appends {
    chunks: OpenChunks,
    claims: Claims,
}

/// The task log.
pub struct TaskLog {
    db: sled::Db,
    chunks: sled::Tree,
    states: sled::Tree,
    /// The dedup index of keyed tasks (bucket 0): one entry per task.
    ids: sled::Tree,
    /// The dedup index of tasks per event (groups of claims, see `claims.rs`).
    claims: sled::Tree,
    rejected: sled::Tree,
    replayed: sled::Tree,
    meta: sled::Tree,
    /// Connector numbers by name, mirrored from `meta`.
    connectors: Mutex<HashMap<String, u16>>,
    /// Held while a sequence is allocated, its id claimed and its body added to its
    /// connector's open chunk, and while a chunk is written, so records become visible in
    /// sequence order (the dispatcher reads forward and never looks back).
    append: Mutex<Appends>,
    /// The chunks decompressed last.
    recent: RecentChunks,
    /// The table index (its handles share the entries held in memory).
    tables: super::table_index::TableIndex,
}

impl TaskLog {
    /// Opens (or creates) the store at `path` with a page cache of `cache_mb` MiB.
    pub fn open(path: &Path, cache_mb: u64) -> Result<TaskLog, LogError> {
        let db = open_db(path, cache_mb)?;
        let meta = db.open_tree("meta")?;
        match meta.get(META_FORMAT)? {
            None => {
                // A new store; anything already in it means it is not one of ours.
                let foreign = db
                    .tree_names()
                    .iter()
                    .filter(|name| name.as_ref() != b"__sled__default")
                    .any(|name| db.open_tree(name).map(|t| !t.is_empty()).unwrap_or(true))
                    || !db.is_empty();
                if foreign {
                    return Err(LogError::Damaged {
                        path: path.to_path_buf(),
                        message: "it holds data but no format version: it is not a polaris-bridge task log, or its metadata is lost".into(),
                    });
                }
                meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec())?;
            }
            Some(found) if found.as_ref() == FORMAT_VERSION.to_be_bytes() => {}
            Some(found)
                if found.as_ref() == FORMAT_PER_TASK_IDS.to_be_bytes()
                    || found.as_ref() == FORMAT_PLAIN_CHUNKS.to_be_bytes() =>
            {
                migrate_to_claims(&db, &meta)?;
            }
            Some(found) if found.as_ref() == FORMAT_UNCHUNKED.to_be_bytes() => {
                migrate_to_chunks(&db, &meta)?;
                migrate_to_claims(&db, &meta)?;
            }
            Some(found) => {
                return Err(LogError::Incompatible {
                    path: path.to_path_buf(),
                    found: hex::encode(found),
                    expected: FORMAT_VERSION,
                })
            }
        }
        let mut connectors = HashMap::new();
        for entry in meta.scan_prefix(META_CONNECTOR) {
            let (k, v) = entry?;
            let name = String::from_utf8_lossy(&k[META_CONNECTOR.len()..]).into_owned();
            let number =
                v.as_ref()
                    .try_into()
                    .map(u16::from_be_bytes)
                    .map_err(|_| LogError::Corrupt {
                        key: format!("meta/{name}"),
                        message: "connector number is not 2 bytes".into(),
                    })?;
            connectors.insert(name, number);
        }
        let tables = super::table_index::TableIndex::open(&db)?;
        Ok(TaskLog {
            chunks: db.open_tree("chunks")?,
            states: db.open_tree("states")?,
            ids: db.open_tree("ids")?,
            claims: db.open_tree("claims")?,
            rejected: db.open_tree("rejected")?,
            replayed: db.open_tree("replayed")?,
            meta,
            db,
            connectors: Mutex::new(connectors),
            append: Mutex::new(Appends::default()),
            recent: RecentChunks::default(),
            tables,
        })
    }

    fn append_lock(&self) -> Result<MutexGuard<'_, Appends>, LogError> {
        self.append
            .lock()
            .map_err(|_| LogError::Refused("task log append lock poisoned".into()))
    }

    /// Writes the open chunk of `connector`, if it holds anything (under the append lock),
    /// after the pending claims (a task's claim is never written after its body).
    fn write_open_chunk(&self, open: &mut Appends, connector: u16) -> Result<(), LogError> {
        open.claims.write_pending(&self.claims, &self.db)?;
        match open.chunks.get_mut(&connector) {
            Some(chunk) => write_chunk(&self.chunks, connector, chunk),
            None => Ok(()),
        }
    }

    /// Task bodies from `lower` to `upper` (both included), in key order.
    fn bodies(&self, lower: RecordKey, upper: RecordKey) -> Result<Bodies<'_>, LogError> {
        // The chunk holding `lower` is the last one at or below it.
        let floor = RecordKey {
            connector: lower.connector,
            seq: 0,
        };
        let start = match self
            .chunks
            .range(floor.to_bytes()..=lower.to_bytes())
            .next_back()
        {
            Some(entry) => entry?.0.to_vec(),
            None => lower.to_bytes().to_vec(),
        };
        Ok(Bodies {
            chunks: self
                .chunks
                .range::<Vec<u8>, _>(start..=upper.to_bytes().to_vec()),
            recent: &self.recent,
            lower,
            upper,
            chunk_key: lower,
            chunk: sled::IVec::default(),
            entries: Vec::new().into_iter(),
            last: None,
            done: false,
        })
    }

    /// The body of the task at `key`, if its chunk is written.
    fn body(&self, key: RecordKey) -> Result<Option<StoredBody>, LogError> {
        self.bodies(key, key)?.next().transpose()
    }

    /// Whether the task at `key` has a record: written, or in its connector's open chunk.
    fn holds_record(&self, open: &OpenChunks, key: RecordKey) -> Result<bool, LogError> {
        if open
            .get(&key.connector)
            .is_some_and(|c| c.contains(key.seq))
        {
            return Ok(true);
        }
        Ok(self.body(key)?.is_some())
    }

    /// The name of connector number `number` (its number in brackets when unknown).
    fn connector_name(&self, number: u16) -> String {
        self.connectors
            .lock()
            .ok()
            .and_then(|known| {
                known
                    .iter()
                    .find(|(_, n)| **n == number)
                    .map(|(name, _)| name.clone())
            })
            .unwrap_or_else(|| format!("[{number}]"))
    }

    /// Rebuilds the record at `key` from its body and status.
    fn compose(
        &self,
        key: RecordKey,
        body: &[u8],
        status: Option<&[u8]>,
        head: u64,
    ) -> Result<TaskRecord, LogError> {
        let implied = if key.seq < head {
            TaskState::Succeeded { note: None }
        } else {
            TaskState::Pending
        };
        TaskRecord::from_parts(self.connector_name(key.connector), body, status, implied).map_err(
            |e| LogError::Corrupt {
                key: format!("{}/{}", key.connector, key.seq),
                message: e.to_string(),
            },
        )
    }

    /// Reads the record at `key` with its status (raw, for compare-and-swap).
    #[allow(clippy::type_complexity)]
    fn read(&self, key: RecordKey) -> Result<Option<(TaskRecord, Option<sled::IVec>)>, LogError> {
        let key_bytes = key.to_bytes();
        let Some(body) = self.body(key)? else {
            return Ok(None);
        };
        let status = self.states.get(key_bytes)?;
        let head = self.head(key.connector)?;
        let record = self.compose(key, body.bytes(), status.as_deref(), head)?;
        Ok(Some((record, status)))
    }

    /// The number of connector `name` in this store, assigned on first use.
    pub fn connector_number(&self, name: &str) -> Result<u16, LogError> {
        let mut known = self
            .connectors
            .lock()
            .map_err(|_| LogError::Refused("connector table lock poisoned".into()))?;
        if let Some(n) = known.get(name) {
            return Ok(*n);
        }
        let next = known.values().max().map_or(1, |m| m + 1);
        self.meta.insert(
            format!("{META_CONNECTOR}{name}"),
            next.to_be_bytes().to_vec(),
        )?;
        known.insert(name.to_string(), next);
        Ok(next)
    }

    /// The table index kept in this store (its own tree, written back and flushed with the
    /// log).
    pub fn table_index(&self) -> Result<super::table_index::TableIndex, LogError> {
        Ok(self.tables.clone())
    }

    /// Records a new task unless its id is already in the log.
    /// A new pending task is one write (its dedup entry) and a place in its connector's open
    /// chunk: its status is implied. A record in any other state (an import, a test) also gets
    /// its status written. The task is readable once its chunk is written (at the latest by
    /// [`TaskLog::flush`]).
    pub fn insert(&self, connector: u16, record: &TaskRecord) -> Result<InsertOutcome, LogError> {
        let dedup_key = dedup_key(record);
        let body = encode_body(record)?;
        let fresh = record.state == TaskState::Pending
            && record.attempts == 0
            && record.history.is_empty()
            && record.checkpoint.is_none();
        let status = if fresh {
            None
        } else {
            Some(encode_status(record)?)
        };
        let mut open = self.append_lock()?;
        let key = RecordKey {
            connector,
            seq: self.db.generate_id()?,
        };
        let key_bytes = key.to_bytes();
        let appends = &mut *open;
        if record.dedup_bucket == 0 {
            // Claiming the index entry is the dedup check too: one operation, not a lookup
            // and an insert.
            let mut expected: Option<sled::IVec> = None;
            loop {
                match self.ids.compare_and_swap(
                    dedup_key,
                    expected.as_ref(),
                    Some(&key_bytes[..]),
                )? {
                    Ok(()) => break,
                    Err(conflict) => match conflict.current {
                        None => expected = None,
                        Some(holder)
                            if RecordKey::from_bytes(&holder).map_or(Ok(false), |holder| {
                                self.holds_record(&appends.chunks, holder)
                            })? =>
                        {
                            return Ok(InsertOutcome::Duplicate)
                        }
                        // An entry without its record: a crash came before its chunk was
                        // written, so the message came back (its offset was never stored).
                        // Take it over.
                        Some(orphan) => expected = Some(orphan),
                    },
                }
            }
        } else {
            let bucket = record.dedup_bucket;
            let holder = appends
                .claims
                .lookup(&self.claims, &self.db, bucket, &record.task_id)?;
            if let Some(holder) = holder {
                if self.holds_record(&appends.chunks, holder)? {
                    return Ok(InsertOutcome::Duplicate);
                }
                // A claim without its task: taken over, as above.
            }
            appends
                .claims
                .claim(&self.claims, &self.db, bucket, record.task_id, key)?;
        }
        if let Some(status) = status {
            self.states.insert(key_bytes, status)?;
        }
        if open
            .chunks
            .get(&connector)
            .is_some_and(|chunk| chunk.is_full_for(body.len()))
        {
            self.write_open_chunk(&mut open, connector)?;
        }
        open.chunks
            .entry(connector)
            .or_default()
            .push(key.seq, body);
        drop(open);
        Ok(InsertOutcome::Created(key))
    }

    /// Writes the open chunks and makes every write so far durable. Returns the bytes
    /// flushed.
    pub fn flush(&self) -> Result<usize, LogError> {
        {
            let mut open = self.append_lock()?;
            open.claims.write_pending(&self.claims, &self.db)?;
            let connectors: Vec<u16> = open.chunks.keys().copied().collect();
            for connector in connectors {
                self.write_open_chunk(&mut open, connector)?;
            }
        }
        self.tables.write_back()?;
        Ok(self.db.flush()?)
    }

    /// Reads one record.
    pub fn get(&self, key: RecordKey) -> Result<Option<TaskRecord>, LogError> {
        Ok(self.read(key)?.map(|(record, _)| record))
    }

    /// Whether the task at `key` has a stored status (its state is not implied by the head).
    pub fn has_status(&self, key: RecordKey) -> Result<bool, LogError> {
        Ok(self.states.contains_key(key.to_bytes())?)
    }

    /// Finds a task by id: the keyed tasks' index first, then a scan of the claims of
    /// tasks per event (about a second per few million tasks kept).
    pub fn find(&self, id: &TaskId) -> Result<Option<(RecordKey, TaskRecord)>, LogError> {
        let mut keyed = [0u8; 20];
        keyed[4..].copy_from_slice(id.as_bytes());
        let found = match self.ids.get(keyed)? {
            Some(key_bytes) => {
                Some(
                    RecordKey::from_bytes(&key_bytes).ok_or_else(|| LogError::Corrupt {
                        key: id.to_hex(),
                        message: "index entry is not a record key".into(),
                    })?,
                )
            }
            None => claims::find(&self.claims, id.as_bytes())?,
        };
        let Some(key) = found else {
            return Ok(None);
        };
        Ok(self.get(key)?.map(|record| (key, record)))
    }

    /// Changes a record's status with compare-and-swap: `change` sees the current record
    /// (its status stored or implied) and may refuse by returning an error; on a concurrent
    /// change it is called again with the new record. Only the status fields (state,
    /// attempts, history, checkpoint) are stored: the body is immutable.
    pub fn update<F>(&self, key: RecordKey, mut change: F) -> Result<TaskRecord, LogError>
    where
        F: FnMut(&mut TaskRecord) -> Result<(), LogError>,
    {
        let key_bytes = key.to_bytes();
        loop {
            let Some((mut record, current)) = self.read(key)? else {
                return Err(LogError::NotFound(format!("{key:?}")));
            };
            change(&mut record)?;
            record.updated_ms = super::now_ms();
            let new_bytes = encode_status(&record)?;
            if self
                .states
                .compare_and_swap(key_bytes, current, Some(new_bytes))?
                .is_ok()
            {
                return Ok(record);
            }
        }
    }

    /// Unfinished records of `connector` with a sequence of at least `from`, in order, at most
    /// `limit`. Also returns the highest sequence looked at, finished or not.
    pub fn unfinished_from(
        &self,
        connector: u16,
        from: u64,
        limit: usize,
    ) -> Result<Unfinished, LogError> {
        let start = RecordKey {
            connector,
            seq: from,
        };
        let end = RecordKey {
            connector,
            seq: u64::MAX,
        };
        let head = self.head(connector)?;
        let mut out = Vec::new();
        let mut last_seen = None;
        for body in self.bodies(start, end)? {
            let body = body?;
            let key = body.key;
            last_seen = Some(key.seq);
            let status = self.states.get(key.to_bytes())?;
            if let Some(status) = &status {
                if status_is_final(key, status)? {
                    continue;
                }
            } else if key.seq < head {
                continue;
            }
            let record = self.compose(key, body.bytes(), status.as_deref(), head)?;
            if !record.state.is_final() {
                out.push((key, record));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(Unfinished {
            records: out,
            last_seen,
        })
    }

    /// Counts the unfinished tasks of `connector` from its head on.
    pub fn count_unfinished(&self, connector: u16) -> Result<u64, LogError> {
        let head = self.head(connector)?;
        let start = RecordKey {
            connector,
            seq: head,
        };
        let end = RecordKey {
            connector,
            seq: u64::MAX,
        };
        let mut count = 0;
        for body in self.bodies(start, end)? {
            let key = body?.key;
            match self.states.get(key.to_bytes())? {
                Some(status) if status_is_final(key, &status)? => {}
                _ => count += 1,
            }
        }
        Ok(count)
    }

    /// The lowest sequence of `connector` that may still be unfinished (0 when unknown).
    pub fn head(&self, connector: u16) -> Result<u64, LogError> {
        Ok(self
            .meta
            .get(format!("{META_HEAD}{connector}"))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Records that every task of `connector` below `seq` is finished: those without a
    /// stored status succeeded.
    pub fn set_head(&self, connector: u16, seq: u64) -> Result<(), LogError> {
        self.meta.insert(
            format!("{META_HEAD}{connector}"),
            seq.to_be_bytes().to_vec(),
        )?;
        Ok(())
    }

    /// Keeps a rejected message (idempotent per topic, partition and offset).
    pub fn insert_rejected(&self, record: &RejectedRecord) -> Result<(), LogError> {
        let bytes = postcard::to_stdvec(record).map_err(|e| LogError::Corrupt {
            key: "rejected".into(),
            message: e.to_string(),
        })?;
        self.rejected.insert(
            rejected_key(&record.topic, record.partition, record.offset),
            bytes,
        )?;
        Ok(())
    }

    /// Rejected messages, oldest key first, at most `limit`.
    pub fn rejected(&self, limit: usize) -> Result<Vec<RejectedRecord>, LogError> {
        let mut out = Vec::new();
        for entry in self.rejected.iter().take(limit) {
            let (k, v) = entry?;
            out.push(postcard::from_bytes(&v).map_err(|e| LogError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                message: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Number of rejected messages kept.
    pub fn rejected_len(&self) -> usize {
        self.rejected.len()
    }

    /// Removes tasks that finished before `cutoff_ms`, with their statuses and dedup entries.
    /// Only tasks below their connector's head are looked at (everything there is finished);
    /// a task without a status counts as finished at its creation. Returns how many were
    /// removed.
    pub fn compact(&self, cutoff_ms: i64) -> Result<usize, LogError> {
        let mut removed = 0;
        for (_, connector) in self.connectors() {
            let head = self.head(connector)?;
            if head == 0 {
                continue;
            }
            let start = RecordKey { connector, seq: 0 };
            let last = RecordKey {
                connector,
                seq: head - 1,
            };
            let mut claimed = Vec::new();
            for entry in self.chunks.range(start.to_bytes()..=last.to_bytes()) {
                let (chunk_key, chunk_bytes) = entry?;
                // The chunk's key as the API's record tokens spell it.
                let corrupt = |what: &str, e: chunk::ChunkError| LogError::Corrupt {
                    key: hex::encode(&chunk_key),
                    message: format!("chunk does not {what}: {e}"),
                };
                let plain = chunk::unpack(&chunk_bytes).map_err(|e| corrupt("decode", e))?;
                let entries = chunk::entries(&plain).map_err(|e| corrupt("decode", e.into()))?;
                let (gone, stop) =
                    self.expired_in_chunk(connector, &plain, &entries, head, cutoff_ms)?;
                if !gone.is_empty() {
                    let left = chunk::retain_entries(&plain, &entries, |seq| {
                        !gone.iter().any(|task| task.key.seq == seq)
                    })
                    .map_err(|e| corrupt("encode", e))?;
                    // Compare-and-swap: an operator's retry may have moved a task out of this
                    // chunk meanwhile; the next round looks at it again.
                    if self
                        .chunks
                        .compare_and_swap(&chunk_key, Some(&chunk_bytes), left)?
                        .is_ok()
                    {
                        for task in &gone {
                            let key_bytes = task.key.to_bytes();
                            // Most tasks never had a status (first-attempt successes); a
                            // task's status changes only with a retry, which would have
                            // changed the chunk.
                            if task.has_status {
                                self.states.remove(key_bytes)?;
                            }
                            if task.dedup_bucket == 0 {
                                // The index entry goes only if it still points here.
                                let _ = self.ids.compare_and_swap(
                                    dedup_key_of(0, &task.task_id),
                                    Some(&key_bytes[..]),
                                    None as Option<&[u8]>,
                                )?;
                            } else {
                                claimed.push((task.dedup_bucket, (task.task_id, task.key)));
                            }
                        }
                        if claimed.len() >= FORGET_BATCH {
                            self.forget_claims(&mut claimed)?;
                        }
                        removed += gone.len();
                    }
                }
                if stop {
                    break;
                }
            }
            self.forget_claims(&mut claimed)?;
        }
        Ok(removed)
    }

    /// Removes the claims of tasks compaction removed (each bucket's groups are read and
    /// rewritten once per call, so they are collected first).
    fn forget_claims(&self, claimed: &mut Vec<(u32, claims::Claim)>) -> Result<(), LogError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let mut open = self.append_lock()?;
        open.claims.forget(&self.claims, claimed)?;
        claimed.clear();
        Ok(())
    }

    /// The tasks of one chunk that compaction removes, and whether the walk stops after this
    /// chunk (it reached the head, or a task created after the cutoff that has no status:
    /// every later one is newer still). Reads only the leading fields of each body and status.
    fn expired_in_chunk(
        &self,
        connector: u16,
        chunk_bytes: &[u8],
        entries: &[(u64, Range<usize>)],
        head: u64,
        cutoff_ms: i64,
    ) -> Result<(Vec<ExpiredTask>, bool), LogError> {
        let mut gone = Vec::new();
        for (seq, range) in entries {
            if *seq >= head {
                return Ok((gone, true));
            }
            let key = RecordKey {
                connector,
                seq: *seq,
            };
            let status = self.states.get(key.to_bytes())?;
            let body = chunk_bytes.get(range.clone()).unwrap_or_default();
            let expiry = Expiry::read(body, status.as_deref()).map_err(|e| LogError::Corrupt {
                key: key.to_token(),
                message: e.to_string(),
            })?;
            if !expiry.finished {
                continue;
            }
            if expiry.updated_ms >= cutoff_ms {
                if status.is_none() {
                    return Ok((gone, true));
                }
                continue;
            }
            gone.push(ExpiredTask {
                key,
                dedup_bucket: expiry.dedup_bucket,
                task_id: expiry.task_id,
                has_status: status.is_some(),
            });
        }
        Ok((gone, false))
    }

    /// Number of task records kept (finished or not) in written chunks. Reads every chunk.
    pub fn len(&self) -> usize {
        self.chunks
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|chunk| {
                chunk::unpack(&chunk)
                    .ok()
                    .and_then(|plain| chunk::entries(&plain).ok())
                    .map_or(0, |entries| entries.len())
            })
            .sum()
    }

    /// Whether the log holds no written task.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Every record, in key order (for inspection and tests).
    pub fn iter(&self) -> impl Iterator<Item = Result<(RecordKey, TaskRecord), LogError>> + '_ {
        self.scan(None, None)
    }

    /// Decodes one task's body with its status.
    fn entry_record(
        &self,
        body: &StoredBody,
        heads: &mut HashMap<u16, u64>,
    ) -> Result<(RecordKey, TaskRecord), LogError> {
        let key = body.key;
        let head = match heads.get(&key.connector) {
            Some(head) => *head,
            None => {
                let head = self.head(key.connector)?;
                heads.insert(key.connector, head);
                head
            }
        };
        let status = self.states.get(key.to_bytes())?;
        Ok((
            key,
            self.compose(key, body.bytes(), status.as_deref(), head)?,
        ))
    }
}

/// How long [`open_db`] waits for a lock that a store closed within this process may still
/// hold: sled's flusher thread keeps the file lock for a moment after the last handle drops
/// (spacejam/sled#1234), so an immediate reopen would otherwise be refused now and then.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the sled database at `path`, waiting up to [`LOCK_WAIT`] for its lock to be released
/// before reporting [`LogError::Locked`].
fn open_db(path: &Path, cache_mb: u64) -> Result<sled::Db, LogError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(cache_mb.saturating_mul(1024 * 1024))
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                if std::time::Instant::now() >= deadline {
                    return Err(LogError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_))) => {
                return Err(LogError::Damaged {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            }
            Err(other) => return Err(LogError::Sled(other)),
        }
    }
}

/// Operator views and actions: listing, retry, rejected messages, replay marks, checks.
impl TaskLog {
    /// Connector names and their numbers in this store.
    pub fn connectors(&self) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = self
            .connectors
            .lock()
            .map(|known| known.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        out.sort_by_key(|(_, n)| *n);
        out
    }

    /// The number of connector `name`, if the store has seen it (assigns none).
    pub fn known_connector(&self, name: &str) -> Option<u16> {
        self.connectors.lock().ok()?.get(name).copied()
    }

    /// Records in key order after `after` (exclusive), of one connector or of all.
    pub fn scan(
        &self,
        connector: Option<u16>,
        after: Option<RecordKey>,
    ) -> impl Iterator<Item = Result<(RecordKey, TaskRecord), LogError>> + '_ {
        let lower = match after {
            Some(key) => RecordKey {
                connector: key.connector,
                seq: key.seq.saturating_add(1),
            },
            None => RecordKey {
                connector: connector.unwrap_or(0),
                seq: 0,
            },
        };
        let upper = RecordKey {
            connector: connector.unwrap_or(u16::MAX),
            seq: u64::MAX,
        };
        let mut heads = HashMap::new();
        let (bodies, failed) = match self.bodies(lower, upper) {
            Ok(bodies) => (Some(bodies), None),
            Err(e) => (None, Some(Err(e))),
        };
        failed.into_iter().chain(
            bodies
                .into_iter()
                .flatten()
                .map(move |body| self.entry_record(&body?, &mut heads)),
        )
    }

    /// Puts a dead or cancelled task back to work: `change` edits the record (state, attempts,
    /// history), which moves to a new sequence at the end of its connector's range (the
    /// dispatcher reads forward only). The move, the dedup index and the removal of the old
    /// record are one transaction. Returns the new key and record.
    pub fn reopen<F>(&self, key: RecordKey, change: F) -> Result<(RecordKey, TaskRecord), LogError>
    where
        F: FnOnce(&mut TaskRecord),
    {
        let key_bytes = key.to_bytes();
        let Some((mut record, current)) = self.read(key)? else {
            return Err(LogError::NotFound(format!("{key:?}")));
        };
        if !matches!(
            record.state,
            TaskState::Dead { .. } | TaskState::Cancelled { .. }
        ) {
            return Err(LogError::Refused(format!(
                "task is {}: only dead or cancelled tasks can be retried",
                record.state.name()
            )));
        }
        let Some(stored) = self.body(key)? else {
            return Err(LogError::NotFound(format!("{key:?}")));
        };
        change(&mut record);
        record.updated_ms = super::now_ms();
        let body = encode_body(&record)?;
        let status = encode_status(&record)?;
        let dedup_key = dedup_key(&record);
        let mut open = self.append_lock()?;
        // The connector's open chunk holds lower sequences: written first, they stay ahead.
        self.write_open_chunk(&mut open, key.connector)?;
        let new_key = RecordKey {
            connector: key.connector,
            seq: self.db.generate_id()?,
        };
        let new_bytes = new_key.to_bytes();
        let new_chunk = chunk::single(new_key.seq, &body).map_err(|e| LogError::Corrupt {
            key: new_key.to_token(),
            message: format!("chunk does not encode: {e}"),
        })?;
        let old_chunk_key = stored.chunk_key;
        let bucket = record.dedup_bucket;
        // A task per event gets a claim group of its own for its new key (written in the
        // transaction); its current claim must point at it, as a keyed task's entry must.
        let claim_group = if bucket == 0 {
            None
        } else {
            if open
                .claims
                .lookup(&self.claims, &self.db, bucket, &record.task_id)?
                != Some(key)
            {
                return Err(LogError::Refused(INDEX_ELSEWHERE.into()));
            }
            Some((
                claims::group_key(bucket, self.db.generate_id()?),
                claims::single(&record.task_id, new_key),
            ))
        };
        let trees = (&self.chunks, &self.states, &self.ids, &self.claims);
        let result = trees.transaction(|(chunks, states, ids, claim_groups)| {
            let Some(old_chunk) = chunks.get(old_chunk_key)? else {
                return Err(ConflictableTransactionError::Abort(
                    "the task was removed meanwhile",
                ));
            };
            let mut found = false;
            let rest = chunk::unpack(&old_chunk)
                .and_then(|plain| {
                    chunk::retain(&plain, |seq| {
                        found |= seq == key.seq;
                        seq != key.seq
                    })
                })
                .map_err(|_| {
                    ConflictableTransactionError::Abort(
                        "the task's chunk does not decode (run `polaris-bridge store check`)",
                    )
                })?;
            if !found {
                return Err(ConflictableTransactionError::Abort(
                    "the task was removed meanwhile",
                ));
            }
            if states.get(key_bytes)? != current {
                return Err(ConflictableTransactionError::Abort(
                    "the task changed meanwhile; look at it again",
                ));
            }
            if claim_group.is_none() && ids.get(dedup_key)?.as_deref() != Some(&key_bytes[..]) {
                return Err(ConflictableTransactionError::Abort(INDEX_ELSEWHERE));
            }
            chunks.insert(&new_bytes[..], new_chunk.clone())?;
            states.insert(&new_bytes[..], status.clone())?;
            match rest {
                Some(rest) => chunks.insert(&old_chunk_key[..], rest)?,
                None => chunks.remove(&old_chunk_key[..])?,
            };
            states.remove(&key_bytes[..])?;
            match &claim_group {
                Some((group_key, claim)) => {
                    claim_groups.insert(&group_key[..], claim.clone())?;
                }
                None => {
                    ids.insert(&dedup_key[..], &new_bytes[..])?;
                }
            }
            Ok(())
        });
        if result.is_ok() && bucket != 0 {
            open.claims.moved(bucket, record.task_id, new_key);
        }
        drop(open);
        match result {
            Ok(()) => Ok((new_key, record)),
            Err(TransactionError::Abort(reason)) => Err(LogError::Refused(reason.into())),
            Err(TransactionError::Storage(e)) => Err(LogError::Sled(e)),
        }
    }

    /// One rejected message.
    pub fn rejected_get(&self, key: &RejectedKey) -> Result<Option<RejectedRecord>, LogError> {
        self.rejected
            .get(key.to_bytes())?
            .map(|v| decode_rejected(&v))
            .transpose()
    }

    /// Rejected messages in key order (topic, partition, offset) after `after`, at most
    /// `limit`, each with its replay mark.
    #[allow(clippy::type_complexity)]
    pub fn rejected_page(
        &self,
        after: Option<&RejectedKey>,
        limit: usize,
    ) -> Result<Vec<(RejectedRecord, Option<ReplayRecord>)>, LogError> {
        let lower = match after {
            Some(key) => std::ops::Bound::Excluded(key.to_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in self
            .rejected
            .range::<Vec<u8>, _>((lower, std::ops::Bound::Unbounded))
            .take(limit)
        {
            let (k, v) = entry?;
            let replay = self.replay_mark_bytes(&k)?;
            out.push((decode_rejected(&v)?, replay));
        }
        Ok(out)
    }

    /// Marks a rejected message as replayed.
    pub fn mark_replayed(&self, key: &RejectedKey, mark: &ReplayRecord) -> Result<(), LogError> {
        let bytes = postcard::to_stdvec(mark).map_err(|e| LogError::Corrupt {
            key: "replayed".into(),
            message: e.to_string(),
        })?;
        self.replayed.insert(key.to_bytes(), bytes)?;
        Ok(())
    }

    /// The replay mark of a rejected message, if it was replayed.
    pub fn replay_mark(&self, key: &RejectedKey) -> Result<Option<ReplayRecord>, LogError> {
        self.replay_mark_bytes(&key.to_bytes())
    }

    fn replay_mark_bytes(&self, key: &[u8]) -> Result<Option<ReplayRecord>, LogError> {
        self.replayed
            .get(key)?
            .map(|v| {
                postcard::from_bytes(&v).map_err(|e| LogError::Corrupt {
                    key: format!("replayed/{}", hex::encode(key)),
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    /// Checks the latest claims of one event second: each points at a record of that task.
    fn check_claims(
        &self,
        bucket: u32,
        latest: &HashMap<[u8; 16], RecordKey>,
        report: &mut CheckReport,
        heads: &mut HashMap<u16, u64>,
    ) {
        for (task_id, key) in latest {
            report.ids += 1;
            let id = hex::encode(task_id);
            match self.body(*key).ok().flatten() {
                None => report.warning(format!(
                    "claims: task {id} points at {} which holds no record (a crash before its chunk was written; the next copy of its message takes the claim over)",
                    key.to_token()
                )),
                Some(body) => {
                    if let Ok((_, record)) = self.entry_record(&body, heads) {
                        if (record.dedup_bucket, record.task_id) != (bucket, *task_id) {
                            report.problem(format!(
                                "claims: task {id} points at the record of task {}",
                                hex::encode(record.task_id)
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Verifies the whole store: every record decodes, and the indexes agree with the
    /// records. Reads only.
    pub fn check(&self) -> Result<CheckReport, LogError> {
        let mut report = CheckReport::default();
        let numbers: HashMap<u16, String> = self
            .connectors()
            .into_iter()
            .map(|(name, n)| {
                report.connectors.insert(name.clone(), n);
                (n, name)
            })
            .collect();
        if numbers.len() != report.connectors.len() {
            report.problem("two connectors share a number in the meta tree".into());
        }
        let mut lowest_unfinished: HashMap<u16, u64> = HashMap::new();
        let mut heads = HashMap::new();
        // Claims are looked up through the seconds used last, as the log does (memory stays
        // bounded whatever the store holds). A second with a group that does not decode is
        // reported below, with the group, and its tasks are not looked up.
        let mut recent_claims = Claims::default();
        let mut unreadable_buckets = std::collections::HashSet::new();
        let everything = self.bodies(
            RecordKey {
                connector: 0,
                seq: 0,
            },
            RecordKey {
                connector: u16::MAX,
                seq: u64::MAX,
            },
        )?;
        for body in everything {
            let body = match body {
                Ok(body) => body,
                Err(e @ LogError::Sled(_)) => return Err(e),
                Err(e) => {
                    report.problem(format!("chunks: {e}"));
                    continue;
                }
            };
            report.tasks += 1;
            let k = body.key.to_bytes();
            let (key, record) = match self.entry_record(&body, &mut heads) {
                Ok(r) => r,
                Err(e) => {
                    report.problem(format!("tasks: {e}"));
                    continue;
                }
            };
            *report
                .states
                .entry(record.state.name().to_string())
                .or_default() += 1;
            let id = hex::encode(record.task_id);
            match numbers.get(&key.connector) {
                None => report.problem(format!(
                    "task {id}: connector number {} is not in the meta tree",
                    key.connector
                )),
                Some(name) if name != &record.connector => report.problem(format!(
                    "task {id}: stored under connector {name} but names {}",
                    record.connector
                )),
                Some(_) => {}
            }
            if !record.state.is_final() {
                let lowest = lowest_unfinished.entry(key.connector).or_insert(key.seq);
                *lowest = (*lowest).min(key.seq);
            }
            let bucket = record.dedup_bucket;
            let indexed = if bucket == 0 {
                self.ids.get(dedup_key(&record))?.map(|v| v.to_vec())
            } else if unreadable_buckets.contains(&bucket) {
                continue;
            } else {
                match recent_claims.lookup(&self.claims, &self.db, bucket, &record.task_id) {
                    Ok(found) => found.map(|key| key.to_bytes().to_vec()),
                    Err(e @ LogError::Sled(_)) => return Err(e),
                    Err(_) => {
                        unreadable_buckets.insert(bucket);
                        continue;
                    }
                }
            };
            match indexed {
                Some(indexed) if indexed[..] == k[..] => {}
                other => {
                    let text = match other {
                        Some(elsewhere) => format!(
                            "task {id} at {}: its index entry points at {} instead",
                            key.to_token(),
                            hex::encode(elsewhere)
                        ),
                        None => format!("task {id} at {}: not in the dedup index", key.to_token()),
                    };
                    if record.state.is_final() {
                        report.warning(format!("{text} (finished: a harmless leftover)"));
                    } else {
                        report.warning(format!("{text} (it is delivered, but a redelivered message would make a second task)"));
                    }
                }
            }
        }
        for entry in self.ids.iter() {
            let (k, v) = entry?;
            report.ids += 1;
            let id = hex::encode(k.get(4..).unwrap_or(&k));
            if k.len() != 20 {
                report.problem(format!("ids: key {} is not 20 bytes", hex::encode(&k)));
                continue;
            }
            let Some(key) = RecordKey::from_bytes(&v) else {
                report.problem(format!("ids: entry {id} does not hold a record key"));
                continue;
            };
            match self.body(key).ok().flatten() {
                None => report.warning(format!(
                    "ids: task {id} points at {} which holds no record (a crash before its chunk was written; the next copy of its message takes the entry over)",
                    key.to_token()
                )),
                Some(body) => {
                    if let Ok((_, record)) = self.entry_record(&body, &mut heads) {
                        if dedup_key(&record)[..] != k[..] {
                            report.problem(format!(
                                "ids: task {id} points at the record of task {}",
                                hex::encode(record.task_id)
                            ));
                        }
                    }
                }
            }
        }
        // Each second's groups lie together in key order: its latest claims are checked when
        // the walk reaches the next second.
        let mut second: Option<(u32, HashMap<[u8; 16], RecordKey>)> = None;
        for group in self.claims.iter() {
            let (group_key, value) = group?;
            let decoded = match claims::decode_group(&group_key, &value) {
                Ok(decoded) => decoded,
                Err(e) => {
                    report.problem(format!("claims: {e}"));
                    continue;
                }
            };
            let bucket = claims::bucket_of(&group_key).unwrap_or_default();
            if second.as_ref().is_some_and(|(b, _)| *b != bucket) {
                if let Some((b, latest)) = second.take() {
                    self.check_claims(b, &latest, &mut report, &mut heads);
                }
            }
            let (_, latest) = second.get_or_insert_with(|| (bucket, HashMap::new()));
            latest.extend(decoded);
        }
        if let Some((b, latest)) = second {
            self.check_claims(b, &latest, &mut report, &mut heads);
        }
        for entry in self.states.iter() {
            let (k, _) = entry?;
            report.statuses += 1;
            let has_record = match RecordKey::from_bytes(&k) {
                Some(key) => self.body(key).ok().flatten().is_some(),
                None => false,
            };
            if !has_record {
                report.warning(format!(
                    "states: status {} has no task record (a leftover of an interrupted removal)",
                    hex::encode(&k)
                ));
            }
        }
        for entry in self.rejected.iter() {
            let (k, v) = entry?;
            report.rejected += 1;
            match (RejectedKey::from_bytes(&k), decode_rejected(&v)) {
                (None, _) => {
                    report.problem(format!("rejected: key {} is malformed", hex::encode(&k)))
                }
                (_, Err(e)) => report.problem(format!("rejected: {e}")),
                (Some(key), Ok(r)) => {
                    if key.topic != r.topic
                        || key.partition != r.partition
                        || key.offset != r.offset
                    {
                        report.problem(format!(
                            "rejected: record at {}/{}/{} names {}/{}/{}",
                            key.topic, key.partition, key.offset, r.topic, r.partition, r.offset
                        ));
                    }
                }
            }
        }
        for entry in self.replayed.iter() {
            let (k, v) = entry?;
            report.replayed += 1;
            if postcard::from_bytes::<ReplayRecord>(&v).is_err() {
                report.problem(format!(
                    "replayed: mark {} does not decode",
                    hex::encode(&k)
                ));
            }
            if !self.rejected.contains_key(&k)? {
                report.warning(format!(
                    "replayed: mark {} has no rejected message",
                    hex::encode(&k)
                ));
            }
        }
        for (number, name) in &numbers {
            let head = self.head(*number)?;
            if let Some(lowest) = lowest_unfinished.get(number) {
                if *lowest < head {
                    report.problem(format!(
                        "connector {name}: an unfinished task (sequence {lowest}) lies below the dispatcher's head ({head}) and would not be delivered"
                    ));
                }
            }
        }
        Ok(report)
    }
}

/// Compressed chunks kept decompressed after a read.
const RECENT_CHUNKS: usize = 8;

/// The plain encodings of the compressed chunks read last. A dispatcher refills its window a
/// few tasks at a time as deliveries finish, each refill starting inside the chunk the last
/// one stopped in: without these, the same chunk was decompressed for every refill.
#[derive(Default)]
struct RecentChunks {
    /// `(chunk key, stored value, plain encoding)`, the newest last. A chunk rewritten since
    /// (compaction, a retry moving a task out) has another stored value and is not matched.
    slots: Mutex<VecDeque<(RecordKey, sled::IVec, sled::IVec)>>,
}

impl RecentChunks {
    /// The plain encoding of the chunk at `key` whose stored value is `stored`.
    fn plain(&self, key: RecordKey, stored: sled::IVec) -> Result<sled::IVec, chunk::ChunkError> {
        if !chunk::is_compressed(&stored) {
            // A format 3 chunk is its own plain form.
            return Ok(stored);
        }
        if let Ok(slots) = self.slots.lock() {
            if let Some((_, _, plain)) = slots.iter().find(|(k, s, _)| *k == key && *s == stored) {
                return Ok(plain.clone());
            }
        }
        let plain = sled::IVec::from(chunk::unpack(&stored)?.into_owned());
        if let Ok(mut slots) = self.slots.lock() {
            if slots.len() >= RECENT_CHUNKS {
                slots.pop_front();
            }
            slots.push_back((key, stored, plain.clone()));
        }
        Ok(plain)
    }
}

/// Writes `chunk` of `connector` to the `chunks` tree, if it holds anything, and empties it.
fn write_chunk(chunks: &sled::Tree, connector: u16, chunk: &mut OpenChunk) -> Result<(), LogError> {
    let Some(seq) = chunk.first() else {
        return Ok(());
    };
    let key = RecordKey { connector, seq };
    let bytes = chunk.take_encoded().map_err(|e| LogError::Corrupt {
        key: key.to_token(),
        message: format!("chunk does not encode: {e}"),
    })?;
    chunks.insert(key.to_bytes(), bytes)?;
    Ok(())
}

/// Moves the bodies of a format 2 store (tree `tasks`, one entry per task) into chunks, then
/// marks the store format 4 and drops the old tree. The chunks go to a tree of their own, so a
/// migration cut short leaves the old tree whole and is simply done again.
fn migrate_to_chunks(db: &sled::Db, meta: &sled::Tree) -> Result<(), LogError> {
    let old = db.open_tree("tasks")?;
    let chunks = db.open_tree("chunks")?;
    chunks.clear()?;
    let mut open: Option<(u16, OpenChunk)> = None;
    let mut moved = 0u64;
    for entry in old.iter() {
        let (k, body) = entry?;
        let key = RecordKey::from_bytes(&k).ok_or_else(|| LogError::Corrupt {
            key: hex::encode(&k),
            message: "a format 2 task key is not 10 bytes; the store was left as it is".into(),
        })?;
        match &mut open {
            Some((connector, chunk))
                if *connector == key.connector && !chunk.is_full_for(body.len()) => {}
            _ => {
                if let Some((connector, chunk)) = &mut open {
                    write_chunk(&chunks, *connector, chunk)?;
                }
                open = Some((key.connector, OpenChunk::default()));
            }
        }
        if let Some((_, chunk)) = &mut open {
            chunk.push(key.seq, body.to_vec());
        }
        moved += 1;
    }
    if let Some((connector, chunk)) = &mut open {
        write_chunk(&chunks, *connector, chunk)?;
    }
    db.flush()?;
    meta.insert(META_FORMAT, FORMAT_PER_TASK_IDS.to_be_bytes().to_vec())?;
    db.flush()?;
    db.drop_tree("tasks")?;
    db.flush()?;
    tracing::info!(
        tasks = moved,
        "task log migrated from format 2 to 4 (task bodies in compressed chunks)"
    );
    Ok(())
}

/// Moves the dedup entries of tasks per event of a format 3 or 4 store (one `ids` entry per
/// task) into claim groups, then marks the store format 5. Cut short, it is simply done
/// again: an entry leaves `ids` only after its group is written.
fn migrate_to_claims(db: &sled::Db, meta: &sled::Tree) -> Result<(), LogError> {
    let ids = db.open_tree("ids")?;
    let claim_groups = db.open_tree("claims")?;
    tracing::info!(
        entries = ids.len(),
        "task log: moving the dedup index into claim groups (format 5), once"
    );
    let moved = claims::migrate(&ids, &claim_groups, db)?;
    db.flush()?;
    meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec())?;
    db.flush()?;
    tracing::info!(
        claims = moved,
        "task log migrated to format 5 (claims of tasks per event in groups)"
    );
    Ok(())
}

fn decode_rejected(bytes: &[u8]) -> Result<RejectedRecord, LogError> {
    postcard::from_bytes(bytes).map_err(|e| LogError::Corrupt {
        key: "rejected".into(),
        message: e.to_string(),
    })
}

fn rejected_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 13);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&(partition as u32).to_be_bytes());
    key.extend_from_slice(&(offset as u64).to_be_bytes());
    key
}

/// A task's key in the dedup index.
fn dedup_key(record: &TaskRecord) -> [u8; 20] {
    dedup_key_of(record.dedup_bucket, &record.task_id)
}

/// The dedup index key of a task: its bucket, then its id.
fn dedup_key_of(bucket: u32, task_id: &[u8; 16]) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..4].copy_from_slice(&bucket.to_be_bytes());
    key[4..].copy_from_slice(task_id);
    key
}

/// A task compaction removes.
struct ExpiredTask {
    /// Where its body is.
    key: RecordKey,
    /// Its dedup bucket (0: a keyed task, in `ids`; otherwise in `claims`).
    dedup_bucket: u32,
    /// Its task id.
    task_id: [u8; 16],
    /// Whether it has a status entry to remove too.
    has_status: bool,
}

fn encode_body(record: &TaskRecord) -> Result<Vec<u8>, LogError> {
    record.body_bytes().map_err(|e| LogError::Corrupt {
        key: hex::encode(record.task_id),
        message: e.to_string(),
    })
}

fn encode_status(record: &TaskRecord) -> Result<Vec<u8>, LogError> {
    record.status_bytes().map_err(|e| LogError::Corrupt {
        key: hex::encode(record.task_id),
        message: e.to_string(),
    })
}

/// Whether a stored status is final, read from its first field (the state's variant) without
/// decoding the rest.
fn status_is_final(key: RecordKey, status: &[u8]) -> Result<bool, LogError> {
    #[derive(serde::Deserialize)]
    struct StateOnly {
        state: TaskState,
    }
    postcard::take_from_bytes::<StateOnly>(status)
        .map(|(s, _)| s.state.is_final())
        .map_err(|e| LogError::Corrupt {
            key: format!("{}/{}", key.connector, key.seq),
            message: format!("status: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{SourceRecord, TaskState};

    fn record(id: u8, offset: i64) -> TaskRecord {
        TaskRecord {
            task_id: [id; 16],
            dedup_bucket: 1_800_000_000 + u32::from(id),
            connector: "c".into(),
            state: TaskState::Pending,
            attempts: 0,
            created_ms: 0,
            updated_ms: 0,
            ordering_key: "k".into(),
            realm: "POLARIS".into(),
            source: SourceRecord {
                topic: "t".into(),
                partition: 0,
                offset,
            },
            event_bytes: b"{}".to_vec(),
            history: vec![],
            checkpoint: None,
        }
    }

    #[test]
    fn insert_dedups_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c;
        let key;
        {
            let log = TaskLog::open(dir.path(), 8).unwrap();
            c = log.connector_number("file").unwrap();
            assert_eq!(log.connector_number("file").unwrap(), c);
            let InsertOutcome::Created(k) = log.insert(c, &record(1, 0)).unwrap() else {
                panic!("first insert must create");
            };
            key = k;
            assert_eq!(
                log.insert(c, &record(1, 1)).unwrap(),
                InsertOutcome::Duplicate
            );
            assert!(matches!(
                log.insert(c, &record(2, 2)).unwrap(),
                InsertOutcome::Created(_)
            ));
            log.flush().unwrap();
        }
        let log = TaskLog::open(dir.path(), 8).unwrap();
        assert_eq!(log.connector_number("file").unwrap(), c, "numbers persist");
        assert_eq!(log.connector_number("other").unwrap(), c + 1);
        assert_eq!(
            log.insert(c, &record(1, 3)).unwrap(),
            InsertOutcome::Duplicate
        );
        let (found_key, found) = log.find(&TaskId::from_bytes([1; 16])).unwrap().unwrap();
        assert_eq!(found_key, key);
        assert_eq!(found.source.offset, 0, "the first record is kept");
        assert_eq!(log.count_unfinished(c).unwrap(), 2);
    }

    #[test]
    fn second_open_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = TaskLog::open(dir.path(), 8).unwrap();
        let err = TaskLog::open(dir.path(), 8).err().expect("must be locked");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[test]
    fn incompatible_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert(META_FORMAT, &[0, 0, 0, 99])
                .unwrap();
            db.flush().unwrap();
        }
        let err = TaskLog::open(dir.path(), 8).err().expect("must refuse");
        assert!(matches!(err, LogError::Incompatible { .. }), "{err}");
    }

    #[test]
    fn update_is_compare_and_swap_and_feeds_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        let InsertOutcome::Created(key) = log.insert(c, &record(9, 0)).unwrap() else {
            panic!()
        };
        assert!(
            log.get(key).unwrap().is_none(),
            "readable once its chunk is written"
        );
        log.flush().unwrap();
        let refused = log.update(key, |r| {
            if r.state.is_final() {
                Ok(())
            } else {
                Err(LogError::Refused("not final".into()))
            }
        });
        assert!(refused.is_err());
        let r = log
            .update(key, |r| {
                r.state = TaskState::Succeeded { note: None };
                Ok(())
            })
            .unwrap();
        assert!(r.state.is_final());
        let unfinished = log.unfinished_from(c, 0, 10).unwrap();
        assert!(unfinished.records.is_empty());
        assert_eq!(unfinished.last_seen, Some(key.seq));
        assert_eq!(
            log.compact(r.updated_ms + 1).unwrap(),
            0,
            "only tasks below the head are compacted"
        );
        log.set_head(c, key.seq + 1).unwrap();
        assert_eq!(log.compact(r.updated_ms - 1).unwrap(), 0, "too recent");
        assert_eq!(log.compact(r.updated_ms + 1).unwrap(), 1);
        assert!(log.find(&TaskId::from_bytes([9; 16])).unwrap().is_none());
        assert!(log.is_empty());
        assert!(log.states.is_empty(), "its status went with it");
        // After compaction the id is free again: a replay older than retention runs again.
        assert!(matches!(
            log.insert(c, &record(9, 5)).unwrap(),
            InsertOutcome::Created(_)
        ));
    }

    #[test]
    fn an_index_entry_without_its_record_is_taken_over() {
        // A keyed task (its own `ids` entry) and a task per event (a claim in a group).
        for (n, bucket) in [(4u8, 0u32), (5, 1_800_000_005)] {
            let dir = tempfile::tempdir().unwrap();
            let log = TaskLog::open(dir.path(), 8).unwrap();
            let c = log.connector_number("c").unwrap();
            let mut r = record(n, 0);
            r.dedup_bucket = bucket;
            // What a crash between the two writes of an insert leaves: the entry, no record.
            let orphan = RecordKey {
                connector: c,
                seq: 999,
            };
            if bucket == 0 {
                log.ids
                    .insert(dedup_key(&r), &orphan.to_bytes()[..])
                    .unwrap();
            } else {
                log.claims
                    .insert(
                        claims::group_key(bucket, 1),
                        claims::single(&r.task_id, orphan),
                    )
                    .unwrap();
            }
            assert!(log.find(&TaskId::from_bytes([n; 16])).unwrap().is_none());
            let InsertOutcome::Created(key) = log.insert(c, &r).unwrap() else {
                panic!("the orphaned entry must not count as a duplicate (bucket {bucket})");
            };
            // Still in the open chunk: a copy is a duplicate, not an orphan's takeover.
            assert_eq!(log.insert(c, &r).unwrap(), InsertOutcome::Duplicate);
            log.flush().unwrap();
            assert_eq!(
                log.find(&TaskId::from_bytes([n; 16])).unwrap().unwrap().0,
                key
            );
            assert_eq!(log.insert(c, &r).unwrap(), InsertOutcome::Duplicate);
            let report = log.check().unwrap();
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            drop(log);
            // After a restart the claims come from disk.
            let log = TaskLog::open(dir.path(), 8).unwrap();
            assert_eq!(log.insert(c, &r).unwrap(), InsertOutcome::Duplicate);
        }
    }

    #[test]
    fn the_head_implies_success_and_bounds_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        let mut keys = Vec::new();
        for id in 1..=3u8 {
            let mut r = record(id, id as i64);
            r.created_ms = 1000 * id as i64;
            let InsertOutcome::Created(key) = log.insert(c, &r).unwrap() else {
                panic!()
            };
            assert!(!log.has_status(key).unwrap(), "a new task is one write");
            keys.push(key);
        }
        log.flush().unwrap();
        assert_eq!(log.count_unfinished(c).unwrap(), 3);
        // The dispatcher passed the first two: they succeeded without a write of their own.
        log.set_head(c, keys[2].seq).unwrap();
        let first = log.get(keys[0]).unwrap().unwrap();
        assert_eq!(first.state, TaskState::Succeeded { note: None });
        assert_eq!(first.attempts, 1);
        assert_eq!(log.get(keys[2]).unwrap().unwrap().state, TaskState::Pending);
        assert_eq!(log.count_unfinished(c).unwrap(), 1);
        let unfinished = log.unfinished_from(c, 0, 10).unwrap();
        assert_eq!(unfinished.records.len(), 1);
        assert_eq!(unfinished.records[0].0, keys[2]);
        // Compaction by creation time: only the first is older than 1500 ms; the pending
        // third is never touched however old.
        assert_eq!(log.compact(1500).unwrap(), 1);
        assert!(log.get(keys[0]).unwrap().is_none());
        assert!(log.find(&TaskId::from_bytes([1; 16])).unwrap().is_none());
        assert_eq!(log.compact(i64::MAX).unwrap(), 1);
        assert_eq!(log.len(), 1);
        let report = log.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.states.get("pending"), Some(&1));
    }

    /// Asserts that `store check` finds `tasks` tasks and nothing wrong.
    fn assert_clean(log: &TaskLog, tasks: u64) {
        let report = log.check().unwrap();
        assert!(
            report.problems.is_empty() && report.warnings.is_empty(),
            "{report:?}"
        );
        assert_eq!(report.tasks, tasks);
    }

    /// Marks the task at `key` dead for `reason`.
    fn kill(log: &TaskLog, key: RecordKey, reason: &str) {
        log.update(key, |r| {
            r.state = TaskState::Dead {
                reason: reason.into(),
            };
            Ok(())
        })
        .unwrap();
    }

    /// Inserts `n` tasks for each connector, alternating, and flushes.
    fn fill(log: &TaskLog, connectors: &[u16], n: u8) -> Vec<Vec<RecordKey>> {
        let mut keys = vec![Vec::new(); connectors.len()];
        for i in 0..n {
            for (slot, &c) in connectors.iter().enumerate() {
                let mut r = record(i, i as i64);
                r.task_id[0] = slot as u8;
                r.created_ms = 1000 + i as i64;
                let InsertOutcome::Created(key) = log.insert(c, &r).unwrap() else {
                    panic!("task {i} of connector {c} is new")
                };
                keys[slot].push(key);
            }
        }
        log.flush().unwrap();
        keys
    }

    #[test]
    fn chunks_are_read_from_any_task_within_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let (a, b) = (
            log.connector_number("a").unwrap(),
            log.connector_number("b").unwrap(),
        );
        // 150 tasks each: two full chunks and a part of one per connector.
        let keys = fill(&log, &[a, b], 150);
        assert_eq!(log.len(), 300);
        assert_eq!(log.chunks.len(), 6);
        for (slot, c) in [a, b].into_iter().enumerate() {
            assert_eq!(log.count_unfinished(c).unwrap(), 150);
            let listed: Vec<RecordKey> = log.scan(Some(c), None).map(|e| e.unwrap().0).collect();
            assert_eq!(listed, keys[slot]);
            for (i, key) in keys[slot].iter().enumerate() {
                let r = log.get(*key).unwrap().unwrap();
                assert_eq!((r.task_id[0], r.task_id[1]), (slot as u8, i as u8));
            }
            // A dispatcher's cursor in the middle of a chunk, reading a few at a time.
            let mut from = keys[slot][10].seq;
            let mut seen = Vec::new();
            loop {
                let part = log.unfinished_from(c, from, 7).unwrap();
                let Some(last) = part.last_seen else { break };
                seen.extend(part.records.iter().map(|(k, _)| *k));
                from = last + 1;
            }
            assert_eq!(seen, keys[slot][10..]);
            // A listing page that ends inside a chunk goes on from there.
            let after = keys[slot][70];
            let rest: Vec<RecordKey> = log
                .scan(Some(c), Some(after))
                .map(|e| e.unwrap().0)
                .collect();
            assert_eq!(rest, keys[slot][71..]);
        }
        let all: Vec<RecordKey> = log.iter().map(|e| e.unwrap().0).collect();
        assert_eq!(all, [keys[0].clone(), keys[1].clone()].concat());
        assert_clean(&log, 300);
    }

    #[test]
    fn compaction_and_a_retry_take_tasks_out_of_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        let keys = fill(&log, &[c], 100).remove(0);
        // Task 5 died, task 6 is still retrying: the head stays below both.
        kill(&log, keys[5], "gone");
        log.update(keys[6], |r| {
            r.attempts = 1;
            r.state = TaskState::Retrying {
                not_before_ms: 0,
                last_error: "timeout".into(),
            };
            Ok(())
        })
        .unwrap();
        log.set_head(c, keys[80].seq).unwrap();
        // Created at 1000 + i: tasks 0..=29 are older than the cutoff, except the retrying
        // one and the dead one (it died just now).
        assert_eq!(log.compact(1030).unwrap(), 28);
        assert!(log.get(keys[4]).unwrap().is_none());
        assert!(log.get(keys[5]).unwrap().is_some());
        assert_eq!(log.len(), 72);
        assert!(log.get(keys[6]).unwrap().is_some());
        // The retried task moves out of what is left of its chunk to a new one at the end.
        kill(&log, keys[6], "gave up");
        let (moved, record) = log
            .reopen(keys[6], |r| r.state = TaskState::Pending)
            .unwrap();
        assert!(moved.seq > keys[99].seq);
        assert_eq!(record.state, TaskState::Pending);
        assert!(log.get(keys[6]).unwrap().is_none());
        assert_eq!(log.get(moved).unwrap().unwrap().task_id, record.task_id);
        assert_eq!(
            log.find(&TaskId::from_bytes(record.task_id))
                .unwrap()
                .unwrap()
                .0,
            moved
        );
        let unfinished = log.unfinished_from(c, 0, 100).unwrap();
        let pending: Vec<RecordKey> = unfinished.records.iter().map(|(k, _)| *k).collect();
        assert_eq!(pending, [&keys[80..], &[moved][..]].concat());
        assert_clean(&log, 72);
    }

    /// A bare sled database at `path` marked with store format `format`, with connector `c`
    /// as number 1: what an older build left, for the test to fill in.
    fn older_store(path: &Path, format: u32) -> sled::Db {
        let db = sled::open(path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(META_FORMAT, &format.to_be_bytes()[..]).unwrap();
        meta.insert(format!("{META_CONNECTOR}c"), &1u16.to_be_bytes()[..])
            .unwrap();
        db
    }

    /// An older store of `format` holding `records`, one chunk each (plain for format 3), with
    /// one `ids` entry per task. Returns their keys and records.
    fn older_chunked_store(
        path: &Path,
        format: u32,
        records: impl Iterator<Item = TaskRecord>,
    ) -> Vec<(RecordKey, TaskRecord)> {
        let db = older_store(path, format);
        let (chunks, ids) = (
            db.open_tree("chunks").unwrap(),
            db.open_tree("ids").unwrap(),
        );
        let mut written = Vec::new();
        for r in records {
            let key = RecordKey {
                connector: 1,
                seq: db.generate_id().unwrap(),
            };
            let mut stored = chunk::single(key.seq, &encode_body(&r).unwrap()).unwrap();
            if format == FORMAT_PLAIN_CHUNKS {
                stored = chunk::unpack(&stored).unwrap().into_owned();
            }
            chunks.insert(key.to_bytes(), stored).unwrap();
            ids.insert(dedup_key(&r), &key.to_bytes()[..]).unwrap();
            written.push((key, r));
        }
        db.flush().unwrap();
        written
    }

    #[test]
    fn a_format_2_store_is_migrated_to_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        {
            // A format 2 store: one `tasks` entry per body.
            let db = older_store(dir.path(), FORMAT_UNCHUNKED);
            let (tasks, ids) = (db.open_tree("tasks").unwrap(), db.open_tree("ids").unwrap());
            for i in 0..70u8 {
                let key = RecordKey {
                    connector: 1,
                    seq: 10 + 2 * i as u64,
                };
                let r = record(i, i as i64);
                tasks
                    .insert(key.to_bytes(), encode_body(&r).unwrap())
                    .unwrap();
                ids.insert(dedup_key(&r), &key.to_bytes()[..]).unwrap();
                records.push((key, r));
            }
            db.flush().unwrap();
        }
        let log = TaskLog::open(dir.path(), 8).unwrap();
        assert_eq!(log.len(), 70);
        assert_eq!(log.chunks.len(), 2);
        for (key, r) in &records {
            assert_eq!(log.get(*key).unwrap().unwrap().task_id, r.task_id);
        }
        assert_eq!(
            log.insert(1, &record(3, 99)).unwrap(),
            InsertOutcome::Duplicate
        );
        assert_clean(&log, 70);
        drop(log);
        let db = open_db(dir.path(), 8).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"tasks"));
    }

    #[test]
    fn a_format_3_store_with_plain_chunks_is_read_and_marked_5() {
        let dir = tempfile::tempdir().unwrap();
        // A format 3 store: chunks in their plain encoding, one task each.
        let records = older_chunked_store(
            dir.path(),
            FORMAT_PLAIN_CHUNKS,
            (0..5).map(|i| record(i, i.into())),
        );
        let log = TaskLog::open(dir.path(), 8).unwrap();
        assert_eq!(
            log.meta.get(META_FORMAT).unwrap().as_deref(),
            Some(&FORMAT_VERSION.to_be_bytes()[..])
        );
        assert_eq!(log.len(), 5);
        for (key, r) in &records {
            assert_eq!(log.get(*key).unwrap().unwrap().task_id, r.task_id);
        }
        assert_eq!(
            log.insert(1, &record(2, 99)).unwrap(),
            InsertOutcome::Duplicate
        );
        // New tasks go into compressed chunks beside the plain ones.
        let new_keys: Vec<RecordKey> = (9..29u8)
            .map(|i| match log.insert(1, &record(i, i as i64)).unwrap() {
                InsertOutcome::Created(key) => key,
                InsertOutcome::Duplicate => panic!("a new task"),
            })
            .collect();
        log.flush().unwrap();
        assert_eq!(log.get(new_keys[3]).unwrap().unwrap().task_id, [12; 16]);
        let written = log.chunks.get(new_keys[0].to_bytes()).unwrap().unwrap();
        assert!(chunk::is_compressed(&written));
        assert_eq!(log.len(), 25);
        assert_clean(&log, 25);
    }

    #[test]
    fn a_format_4_store_moves_its_index_into_claim_groups() {
        let dir = tempfile::tempdir().unwrap();
        // A format 4 store: compressed chunks, one `ids` entry per task; the first task is
        // keyed.
        let tasks = (0..6).map(|i| TaskRecord {
            dedup_bucket: if i == 0 {
                0
            } else {
                1_800_000_000 + u32::from(i)
            },
            ..record(i, i.into())
        });
        let records = older_chunked_store(dir.path(), FORMAT_PER_TASK_IDS, tasks);
        let log = TaskLog::open(dir.path(), 8).unwrap();
        assert_eq!(
            log.meta.get(META_FORMAT).unwrap().as_deref(),
            Some(&FORMAT_VERSION.to_be_bytes()[..])
        );
        assert_eq!(log.ids.len(), 1, "only the keyed task keeps its own entry");
        assert_eq!(log.claims.len(), 5, "one group per event second");
        for (key, r) in &records {
            assert_eq!(log.insert(1, r).unwrap(), InsertOutcome::Duplicate);
            let id = TaskId::from_bytes(r.task_id);
            assert_eq!(log.find(&id).unwrap().unwrap().0, *key);
        }
        assert_clean(&log, 6);
        assert_eq!(log.check().unwrap().ids, 6);
        // A task per event is retried: its claim follows it to the new key.
        kill(&log, records[2].0, "gone");
        let (moved, _) = log
            .reopen(records[2].0, |r| r.state = TaskState::Pending)
            .unwrap();
        assert_eq!(
            log.find(&TaskId::from_bytes([2; 16])).unwrap().unwrap().0,
            moved
        );
        assert_eq!(
            log.insert(1, &records[2].1).unwrap(),
            InsertOutcome::Duplicate
        );
        drop(log);
        let log = TaskLog::open(dir.path(), 8).unwrap();
        assert_eq!(
            log.insert(1, &records[2].1).unwrap(),
            InsertOutcome::Duplicate
        );
        assert_clean(&log, 6);
    }

    #[test]
    fn check_names_a_damaged_claim_group_and_a_claim_without_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        fill(&log, &[c], 3);
        log.claims
            .insert(claims::group_key(77, 1), &[1u8; 30][..])
            .unwrap();
        let nowhere = RecordKey {
            connector: c,
            seq: 12_345,
        };
        log.claims
            .insert(claims::group_key(78, 2), claims::single(&[9; 16], nowhere))
            .unwrap();
        // A damaged group in the second of a task: named once, and the check goes on.
        log.claims
            .insert(claims::group_key(1_800_000_001, 3), &[2u8; 27][..])
            .unwrap();
        let report = log.check().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("claims/0000004d")),
            "{report:?}"
        );
        let named: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.contains("claims/6b49d201"))
            .collect();
        assert_eq!(named.len(), 1, "{report:?}");
        assert_eq!(report.tasks, 3);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains(&nowhere.to_token()) && w.contains("holds no record")),
            "{report:?}"
        );
    }

    #[test]
    fn recent_chunks_are_decompressed_once_and_never_stale() {
        let recent = RecentChunks::default();
        let key = RecordKey {
            connector: 1,
            seq: 5,
        };
        let stored = sled::IVec::from(chunk::single(5, &[7; 100]).unwrap());
        let first = recent.plain(key, stored.clone()).unwrap();
        let again = recent.plain(key, stored.clone()).unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same bytes, not a new copy"
        );
        // The chunk rewritten under the same key is decompressed afresh.
        let rewritten = sled::IVec::from(chunk::single(6, &[8; 100]).unwrap());
        let fresh = recent.plain(key, rewritten).unwrap();
        assert_eq!(chunk::entries(&fresh).unwrap()[0].0, 6);
        // A plain (format 3) chunk is passed through as it is.
        let plain = sled::IVec::from(chunk::unpack(&stored).unwrap().into_owned());
        assert_eq!(
            recent.plain(key, plain.clone()).unwrap().as_ptr(),
            plain.as_ptr()
        );
        for seq in 0..2 * RECENT_CHUNKS as u64 {
            let other = RecordKey { connector: 2, seq };
            recent
                .plain(
                    other,
                    sled::IVec::from(chunk::single(seq, &[1; 50]).unwrap()),
                )
                .unwrap();
        }
        assert_eq!(recent.slots.lock().unwrap().len(), RECENT_CHUNKS, "bounded");
    }

    #[test]
    fn a_chunk_that_does_not_decode_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        let keys = fill(&log, &[c], 3).remove(0);
        log.chunks
            .insert(keys[0].to_bytes(), &[0xFF, 0xFF, 0xFF][..])
            .unwrap();
        let error = log.get(keys[1]).unwrap_err().to_string();
        assert!(error.contains("chunk does not decode"), "{error}");
        let report = log.check().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("does not decode")),
            "{report:?}"
        );
    }

    #[test]
    fn rejected_records_are_kept_per_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let r = RejectedRecord {
            topic: "t".into(),
            partition: 3,
            offset: 42,
            key: None,
            kind: "json".into(),
            error: "bad".into(),
            value_prefix: b"{".to_vec(),
            value_len: 1,
            rejected_ms: 0,
        };
        log.insert_rejected(&r).unwrap();
        log.insert_rejected(&r).unwrap();
        assert_eq!(log.rejected_len(), 1);
        assert_eq!(log.rejected(10).unwrap(), vec![r]);
    }
}
