//! The dedup index of tasks per event: which task ids each event second has claimed.
//!
//! Every copy of an event carries its time, so a task per event is looked for among the
//! claims of its event's second (its bucket). Keyed tasks (bucket 0) keep one `ids` entry
//! each in the store; this module holds everything else.
//!
//! On disk, tree `claims`: `bucket (u32 BE) ++ group number (u64 BE)` -> claims of 26 bytes
//! each (task id, record key), appended as groups: one write for the claims made since the
//! previous one, instead of one write (and, in sled 0.34, a leaf split every few writes) per
//! task. Group numbers come from sled's monotonic id generator, so a bucket's groups are read
//! in the order they were written and a later claim of an id supersedes an earlier one (a
//! retry's move to a new sequence, the takeover of a claim whose task was never written).
//!
//! In memory, [`Claims`] keeps the claims of the buckets used last (read from disk on first
//! use) and the claims not yet written. The task log holds it under its append lock and
//! writes the pending claims before any chunk of bodies, so a task's claim never reaches the
//! disk after its body: a crash can leave a claim without its task (taken over when the
//! message comes back, as with `ids`), never a task without its claim.

use std::collections::HashMap;

use super::store::{LogError, RecordKey};

/// Bytes of one stored claim: the task id, then its record key.
const CLAIM_BYTES: usize = 16 + 10;
/// Claims written as one group at most (about 3.9 KiB: sled keeps leaves of such values
/// under its blob threshold).
const GROUP_CLAIMS_MAX: usize = 150;
/// Claims kept in memory at most (about 7-14 MiB), least recently used buckets dropped
/// first. The bucket in use is kept whatever its size.
pub(super) const CACHED_CLAIMS_MAX: usize = 1 << 18;

/// One claim: the task id and the record key of its task.
pub(super) type Claim = ([u8; 16], RecordKey);

/// The claims of the buckets used last, and those not yet written. Held under the task log's
/// append lock.
#[derive(Default)]
pub(super) struct Claims {
    buckets: HashMap<u32, Bucket>,
    /// Claims held in `buckets`, all buckets together.
    cached: usize,
    /// Buckets that have had claims pending since the last [`Claims::write_pending`] (a
    /// bucket may be listed twice, or have been written or dropped since), so that writing
    /// them does not walk every bucket held.
    dirty: Vec<u32>,
    /// Counts uses, to find the least recently used bucket.
    tick: u64,
}

/// One bucket's claims in memory.
#[derive(Default)]
struct Bucket {
    /// Task id -> record key (as stored) of the latest claim.
    ids: HashMap<[u8; 16], [u8; 10]>,
    /// Claims made since the bucket's last group was written, encoded as stored.
    pending: Vec<u8>,
    /// The tick of its last use.
    used: u64,
}

impl Claims {
    /// The record key that `id` is claimed for in `bucket`, reading the bucket from `tree`
    /// if it is not in memory.
    pub(super) fn lookup(
        &mut self,
        tree: &sled::Tree,
        db: &sled::Db,
        bucket: u32,
        id: &[u8; 16],
    ) -> Result<Option<RecordKey>, LogError> {
        let entry = self.bucket(tree, db, bucket)?;
        Ok(entry.ids.get(id).and_then(|k| RecordKey::from_bytes(k)))
    }

    /// Claims `id` in `bucket` for the task at `key` (superseding any earlier claim). The
    /// claim is written with the next group of its bucket: at the latest by
    /// [`Claims::write_pending`].
    pub(super) fn claim(
        &mut self,
        tree: &sled::Tree,
        db: &sled::Db,
        bucket: u32,
        id: [u8; 16],
        key: RecordKey,
    ) -> Result<(), LogError> {
        let entry = self.bucket(tree, db, bucket)?;
        let new = entry.ids.insert(id, key.to_bytes()).is_none();
        let first_pending = entry.pending.is_empty();
        push_claim(&mut entry.pending, &id, key);
        if entry.pending.len() >= GROUP_CLAIMS_MAX * CLAIM_BYTES {
            write_group(tree, db, bucket, &mut entry.pending)?;
        }
        if first_pending {
            self.dirty.push(bucket);
        }
        if new {
            self.cached += 1;
        }
        if self.cached > CACHED_CLAIMS_MAX {
            self.shrink(tree, db, bucket)?;
        }
        Ok(())
    }

    /// Writes every bucket's pending claims as one group each.
    pub(super) fn write_pending(
        &mut self,
        tree: &sled::Tree,
        db: &sled::Db,
    ) -> Result<(), LogError> {
        while let Some(bucket) = self.dirty.last() {
            if let Some(entry) = self.buckets.get_mut(bucket) {
                if !entry.pending.is_empty() {
                    write_group(tree, db, *bucket, &mut entry.pending)?;
                }
            }
            // Off the list only once written: a failed write is tried again next time.
            self.dirty.pop();
        }
        Ok(())
    }

    /// Notes that a retry moved `id` of `bucket` to `key` (its claim written by the caller).
    pub(super) fn moved(&mut self, bucket: u32, id: [u8; 16], key: RecordKey) {
        if let Some(entry) = self.buckets.get_mut(&bucket) {
            if entry.ids.insert(id, key.to_bytes()).is_none() {
                self.cached += 1;
            }
        }
    }

    /// Removes the claims of tasks that compaction removed: on disk, and in memory where
    /// the bucket is held. A claim of the same id for an earlier record key (one a retry or a
    /// takeover superseded) goes too; a later one stays. A group that does not decode is left
    /// as it is (`store check` names it), so that it does not stop compaction.
    pub(super) fn forget(
        &mut self,
        tree: &sled::Tree,
        removed: &[(u32, Claim)],
    ) -> Result<(), LogError> {
        let mut by_bucket: HashMap<u32, HashMap<[u8; 16], RecordKey>> = HashMap::new();
        for (bucket, (id, key)) in removed {
            let latest = by_bucket
                .entry(*bucket)
                .or_default()
                .entry(*id)
                .or_insert(*key);
            *latest = (*latest).max(*key);
        }
        for (bucket, gone) in &by_bucket {
            let superseded =
                |id: &[u8; 16], key: RecordKey| gone.get(id).is_some_and(|g| key <= *g);
            for group in tree.scan_prefix(bucket.to_be_bytes()) {
                let (group_key, value) = group?;
                let claims = match decode_group(&group_key, &value) {
                    Ok(claims) => claims,
                    Err(e) => {
                        tracing::warn!(error = %e, "compaction left a claim group that does not decode");
                        continue;
                    }
                };
                let mut left = Vec::with_capacity(value.len());
                for (id, key) in &claims {
                    if !superseded(id, *key) {
                        push_claim(&mut left, id, *key);
                    }
                }
                if left.is_empty() {
                    tree.remove(&group_key)?;
                } else if left.len() != value.len() {
                    tree.insert(&group_key, left)?;
                }
            }
            if let Some(entry) = self.buckets.get_mut(bucket) {
                let before = entry.ids.len();
                entry.ids.retain(|id, key| {
                    RecordKey::from_bytes(key).is_some_and(|key| !superseded(id, key))
                });
                self.cached -= before - entry.ids.len();
            }
        }
        Ok(())
    }

    /// The bucket's claims in memory, read from `tree` if they are not (older buckets are
    /// dropped then if the claims held pass [`CACHED_CLAIMS_MAX`]: a replay of old events,
    /// all duplicates, reads one second after another without claiming anything).
    fn bucket(
        &mut self,
        tree: &sled::Tree,
        db: &sled::Db,
        bucket: u32,
    ) -> Result<&mut Bucket, LogError> {
        self.tick += 1;
        let tick = self.tick;
        if !self.buckets.contains_key(&bucket) {
            let mut ids = HashMap::new();
            for group in tree.scan_prefix(bucket.to_be_bytes()) {
                let (group_key, value) = group?;
                for (id, key) in decode_group(&group_key, &value)? {
                    ids.insert(id, key.to_bytes());
                }
            }
            self.cached += ids.len();
            self.buckets.insert(
                bucket,
                Bucket {
                    ids,
                    pending: Vec::new(),
                    used: tick,
                },
            );
            if self.cached > CACHED_CLAIMS_MAX {
                self.shrink(tree, db, bucket)?;
            }
        }
        let entry = self.buckets.entry(bucket).or_default();
        entry.used = tick;
        Ok(entry)
    }

    /// Drops the least recently used buckets (their pending claims written first) until the
    /// claims held are under [`CACHED_CLAIMS_MAX`]; `keep` stays.
    fn shrink(&mut self, tree: &sled::Tree, db: &sled::Db, keep: u32) -> Result<(), LogError> {
        while self.cached > CACHED_CLAIMS_MAX {
            let Some(oldest) = self
                .buckets
                .iter()
                .filter(|(bucket, _)| **bucket != keep)
                .min_by_key(|(_, entry)| entry.used)
                .map(|(bucket, _)| *bucket)
            else {
                return Ok(());
            };
            if let Some(mut entry) = self.buckets.remove(&oldest) {
                if !entry.pending.is_empty() {
                    write_group(tree, db, oldest, &mut entry.pending)?;
                }
                self.cached -= entry.ids.len();
            }
        }
        Ok(())
    }

    /// Claims held in memory (for tests).
    #[cfg(test)]
    pub(super) fn cached(&self) -> usize {
        self.cached
    }
}

/// Writes `pending` as a new group of `bucket` and empties it.
fn write_group(
    tree: &sled::Tree,
    db: &sled::Db,
    bucket: u32,
    pending: &mut Vec<u8>,
) -> Result<(), LogError> {
    let group_key = group_key(bucket, db.generate_id()?);
    tree.insert(group_key, std::mem::take(pending))?;
    Ok(())
}

/// The key of a group: its bucket, then its number.
pub(super) fn group_key(bucket: u32, number: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&bucket.to_be_bytes());
    key[4..].copy_from_slice(&number.to_be_bytes());
    key
}

/// Appends one claim, encoded as stored, to a group's value.
fn push_claim(group: &mut Vec<u8>, id: &[u8; 16], key: RecordKey) {
    group.extend_from_slice(id);
    group.extend_from_slice(&key.to_bytes());
}

/// A group's value holding one claim.
pub(super) fn single(id: &[u8; 16], key: RecordKey) -> Vec<u8> {
    let mut group = Vec::with_capacity(CLAIM_BYTES);
    push_claim(&mut group, id, key);
    group
}

/// The bucket of a group key, if it is one.
pub(super) fn bucket_of(group_key: &[u8]) -> Option<u32> {
    if group_key.len() != 12 {
        return None;
    }
    Some(u32::from_be_bytes(group_key.get(..4)?.try_into().ok()?))
}

/// The claims of one stored group, in the order they were made.
pub(super) fn decode_group(group_key: &[u8], value: &[u8]) -> Result<Vec<Claim>, LogError> {
    let corrupt = |message: String| LogError::Corrupt {
        key: format!("claims/{}", hex::encode(group_key)),
        message,
    };
    if group_key.len() != 12 {
        return Err(corrupt("group key is not 12 bytes".into()));
    }
    if value.len() % CLAIM_BYTES != 0 {
        return Err(corrupt(format!(
            "{} bytes is not a whole number of {CLAIM_BYTES}-byte claims (run `polaris-bridge store check`)",
            value.len()
        )));
    }
    value
        .chunks_exact(CLAIM_BYTES)
        .map(|claim| {
            let (id, key) = claim.split_at(16);
            let id: [u8; 16] = id
                .try_into()
                .map_err(|_| corrupt("a claim's id is not 16 bytes".into()))?;
            let key = RecordKey::from_bytes(key)
                .ok_or_else(|| corrupt("a claim's record key is not 10 bytes".into()))?;
            Ok((id, key))
        })
        .collect()
}

/// The latest claim of `id` in any bucket (a scan of every group; a group that does not
/// decode is passed over: `store check` names it).
pub(super) fn find(tree: &sled::Tree, id: &[u8; 16]) -> Result<Option<RecordKey>, LogError> {
    let mut found = None;
    for group in tree.iter() {
        let (group_key, value) = group?;
        let Ok(claims) = decode_group(&group_key, &value) else {
            continue;
        };
        for (claimed, key) in claims {
            if &claimed == id {
                found = Some(key);
            }
        }
    }
    Ok(found)
}

/// Moves the claims of tasks per event from a format 4 `ids` tree (one entry per task,
/// `bucket ++ task id`) into groups in `claims`; entries of bucket 0 (keyed tasks) stay.
/// Returns how many moved. Idempotent: an entry is removed only after its group is written,
/// and a claim written twice is the same claim.
pub(super) fn migrate(
    ids: &sled::Tree,
    claims: &sled::Tree,
    db: &sled::Db,
) -> Result<u64, LogError> {
    let mut moved = 0u64;
    let mut group: Option<(u32, Vec<u8>, Vec<sled::IVec>)> = None;
    let write = |bucket: u32, mut pending: Vec<u8>, keys: Vec<sled::IVec>| {
        write_group(claims, db, bucket, &mut pending)?;
        for key in keys {
            ids.remove(key)?;
        }
        Ok::<(), LogError>(())
    };
    for entry in ids.range(1u32.to_be_bytes()..) {
        let (k, v) = entry?;
        let (Some(bucket), Some(key)) = (
            k.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes),
            RecordKey::from_bytes(&v),
        ) else {
            // `store check` names it; it is left where it is.
            continue;
        };
        let Some(id) = k.get(4..).and_then(|id| <[u8; 16]>::try_from(id).ok()) else {
            continue;
        };
        let full = group.as_ref().is_some_and(|(b, pending, _)| {
            *b != bucket || pending.len() >= GROUP_CLAIMS_MAX * CLAIM_BYTES
        });
        if full {
            if let Some((b, pending, keys)) = group.take() {
                write(b, pending, keys)?;
            }
        }
        let (_, pending, keys) = group.get_or_insert_with(|| (bucket, Vec::new(), Vec::new()));
        push_claim(pending, &id, key);
        keys.push(k);
        moved += 1;
    }
    if let Some((b, pending, keys)) = group.take() {
        write(b, pending, keys)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u64) -> RecordKey {
        RecordKey { connector: 1, seq }
    }

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    fn temp_db() -> (tempfile::TempDir, sled::Db, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("claims").unwrap();
        (dir, db, tree)
    }

    #[test]
    fn claims_are_written_as_groups_and_read_back_by_a_fresh_cache() {
        let (_dir, db, tree) = temp_db();
        let mut claims = Claims::default();
        for n in 0..10u8 {
            assert_eq!(claims.lookup(&tree, &db, 7, &id(n)).unwrap(), None);
            claims
                .claim(&tree, &db, 7, id(n), key(u64::from(n)))
                .unwrap();
        }
        // Nothing is written before the pending claims are.
        assert!(tree.is_empty());
        claims.write_pending(&tree, &db).unwrap();
        assert_eq!(tree.len(), 1, "ten claims are one group");
        // A new claim after that is a second group; the later claim of an id wins.
        claims.claim(&tree, &db, 7, id(3), key(99)).unwrap();
        claims.write_pending(&tree, &db).unwrap();
        assert_eq!(tree.len(), 2);
        let mut fresh = Claims::default();
        assert_eq!(fresh.lookup(&tree, &db, 7, &id(5)).unwrap(), Some(key(5)));
        assert_eq!(fresh.lookup(&tree, &db, 7, &id(3)).unwrap(), Some(key(99)));
        assert_eq!(
            fresh.lookup(&tree, &db, 8, &id(5)).unwrap(),
            None,
            "buckets apart"
        );
        assert_eq!(find(&tree, &id(3)).unwrap(), Some(key(99)));
        assert_eq!(find(&tree, &id(42)).unwrap(), None);
    }

    #[test]
    fn a_full_group_is_written_at_once() {
        let (_dir, db, tree) = temp_db();
        let mut claims = Claims::default();
        for n in 0..GROUP_CLAIMS_MAX as u64 + 1 {
            let mut task = [0u8; 16];
            task[..8].copy_from_slice(&n.to_be_bytes());
            claims.lookup(&tree, &db, 1, &task).unwrap();
            claims.claim(&tree, &db, 1, task, key(n)).unwrap();
        }
        assert_eq!(tree.len(), 1);
        let (_, value) = tree.iter().next().unwrap().unwrap();
        assert_eq!(value.len(), GROUP_CLAIMS_MAX * CLAIM_BYTES);
        // The claim after the full group, and one in another bucket, are still pending:
        // written by the next write of pending claims, and only once.
        claims.claim(&tree, &db, 2, id(1), key(500)).unwrap();
        claims.write_pending(&tree, &db).unwrap();
        assert_eq!(tree.len(), 3);
        claims.write_pending(&tree, &db).unwrap();
        assert_eq!(tree.len(), 3);
        let mut fresh = Claims::default();
        let mut last = [0u8; 16];
        last[..8].copy_from_slice(&(GROUP_CLAIMS_MAX as u64).to_be_bytes());
        assert_eq!(
            fresh.lookup(&tree, &db, 1, &last).unwrap(),
            Some(key(GROUP_CLAIMS_MAX as u64))
        );
        assert_eq!(fresh.lookup(&tree, &db, 2, &id(1)).unwrap(), Some(key(500)));
    }

    #[test]
    fn forgetting_removes_superseded_claims_and_keeps_later_ones() {
        let (_dir, db, tree) = temp_db();
        let mut claims = Claims::default();
        for n in 0..4u8 {
            claims.lookup(&tree, &db, 5, &id(n)).unwrap();
            claims
                .claim(&tree, &db, 5, id(n), key(u64::from(n)))
                .unwrap();
        }
        claims.write_pending(&tree, &db).unwrap();
        // id 1 moved by a retry to 10, id 2 taken over at 20.
        claims.claim(&tree, &db, 5, id(1), key(10)).unwrap();
        claims.claim(&tree, &db, 5, id(2), key(20)).unwrap();
        claims.write_pending(&tree, &db).unwrap();
        // Compaction removes the tasks at 0, 10 and 2 (not 20).
        claims
            .forget(
                &tree,
                &[
                    (5, (id(0), key(0))),
                    (5, (id(1), key(10))),
                    (5, (id(2), key(2))),
                ],
            )
            .unwrap();
        let mut fresh = Claims::default();
        for cache in [&mut claims, &mut fresh] {
            assert_eq!(cache.lookup(&tree, &db, 5, &id(0)).unwrap(), None);
            assert_eq!(cache.lookup(&tree, &db, 5, &id(1)).unwrap(), None);
            assert_eq!(cache.lookup(&tree, &db, 5, &id(2)).unwrap(), Some(key(20)));
            assert_eq!(cache.lookup(&tree, &db, 5, &id(3)).unwrap(), Some(key(3)));
        }
        let stored: usize = tree.iter().map(|g| g.unwrap().1.len() / CLAIM_BYTES).sum();
        assert_eq!(stored, 2, "only the claims of 3 and 20 are left on disk");
        assert_eq!(claims.cached(), 2);
    }

    #[test]
    fn the_cache_drops_old_buckets_after_writing_their_claims() {
        let (_dir, db, tree) = temp_db();
        let mut claims = Claims::default();
        let per_bucket = CACHED_CLAIMS_MAX / 2 + 1;
        for bucket in 1..=3u32 {
            for n in 0..per_bucket as u64 {
                let mut task = [0u8; 16];
                task[..8].copy_from_slice(&n.to_be_bytes());
                claims.lookup(&tree, &db, bucket, &task).unwrap();
                claims.claim(&tree, &db, bucket, task, key(n)).unwrap();
            }
        }
        assert!(claims.cached() <= CACHED_CLAIMS_MAX, "{}", claims.cached());
        // Bucket 1 was dropped: its claims are on disk, every one of them.
        let mut task = [0u8; 16];
        task[..8].copy_from_slice(&(per_bucket as u64 - 1).to_be_bytes());
        let mut fresh = Claims::default();
        assert_eq!(
            fresh.lookup(&tree, &db, 1, &task).unwrap(),
            Some(key(per_bucket as u64 - 1))
        );
        assert_eq!(
            claims.lookup(&tree, &db, 1, &task).unwrap(),
            Some(key(per_bucket as u64 - 1))
        );
        // Lookups alone (a replay of old events, all duplicates) stay bounded too.
        let mut reader = Claims::default();
        for bucket in 1..=3u32 {
            assert!(reader.lookup(&tree, &db, bucket, &task).unwrap().is_some());
            assert!(reader.cached() <= CACHED_CLAIMS_MAX, "{}", reader.cached());
        }
    }

    #[test]
    fn a_damaged_group_is_named() {
        let (_dir, db, tree) = temp_db();
        tree.insert(group_key(9, 1), vec![0u8; CLAIM_BYTES + 3])
            .unwrap();
        let err = Claims::default().lookup(&tree, &db, 9, &id(1)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("claims/00000009") && text.contains("29 bytes"),
            "{text}"
        );
        // A lookup by id and compaction pass it over and leave it for `store check`.
        tree.insert(group_key(9, 2), single(&id(4), key(4)))
            .unwrap();
        assert_eq!(find(&tree, &id(4)).unwrap(), Some(key(4)));
        Claims::default()
            .forget(&tree, &[(9, (id(4), key(4)))])
            .unwrap();
        assert_eq!(
            tree.len(),
            1,
            "the damaged group stays, the emptied one goes"
        );
        assert!(tree.contains_key(group_key(9, 1)).unwrap());
    }

    #[test]
    fn a_format_4_index_moves_into_groups_except_keyed_tasks() {
        let (_dir, db, claims_tree) = temp_db();
        let ids = db.open_tree("ids").unwrap();
        let entry = |bucket: u32, n: u8| {
            let mut k = bucket.to_be_bytes().to_vec();
            k.extend_from_slice(&id(n));
            k
        };
        ids.insert(entry(0, 1), &key(1).to_bytes()[..]).unwrap();
        ids.insert(entry(3, 2), &key(2).to_bytes()[..]).unwrap();
        ids.insert(entry(3, 3), &key(3).to_bytes()[..]).unwrap();
        ids.insert(entry(4, 4), &key(4).to_bytes()[..]).unwrap();
        assert_eq!(migrate(&ids, &claims_tree, &db).unwrap(), 3);
        assert_eq!(ids.len(), 1, "the keyed task's entry stays");
        assert_eq!(claims_tree.len(), 2, "one group per bucket");
        let mut fresh = Claims::default();
        assert_eq!(
            fresh.lookup(&claims_tree, &db, 3, &id(3)).unwrap(),
            Some(key(3))
        );
        assert_eq!(
            fresh.lookup(&claims_tree, &db, 4, &id(4)).unwrap(),
            Some(key(4))
        );
        // Run again (as after a crash before the format was marked): nothing moves twice.
        assert_eq!(migrate(&ids, &claims_tree, &db).unwrap(), 0);
    }
}
