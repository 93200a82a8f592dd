//! Chunks: the bodies of up to [`CHUNK_TASKS`] consecutive tasks of one connector, stored as
//! one value of the `chunks` tree.
//!
//! sled's cost is per operation (each insert copies the leaf it changes and links a page
//! update), not per byte: one insert per task made the body tree half of the log's work. A
//! chunk is written once, when it is full or the log is flushed, so a task's body costs a
//! sixty-fourth of an insert (measured with sled 0.34 alone: 9.5 CPU s per million tasks with
//! a body insert and a dedup insert each, 5.3 with the bodies chunked).
//!
//! A chunk's key is the record key of its first task; its tasks are in sequence order and the
//! chunks of a connector do not overlap, so the chunk holding a task is the last one whose key
//! is at or below the task's key. A chunk can lose tasks (compaction, an operator's retry
//! moves a task) and keeps its key: the key stays at or below every task left in it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Tasks per chunk at most.
pub const CHUNK_TASKS: usize = 64;
/// Body bytes per chunk at most (a chunk with one larger body holds that body alone). sled
/// 0.34 splits a leaf above 16 entries and writes a log message above 128 KiB (a quarter of
/// its 512 KiB segment) as a blob file of its own, read back with an open and a read each
/// time the page leaves the cache: with 32 KiB chunks the source thread spent its time in
/// those, and RSS rose by 20-30 MiB. 17 chunks of 6 KiB stay under the blob threshold.
pub const CHUNK_BYTES: usize = 6 * 1024;

/// One task's body in an encoded chunk.
#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    seq: u64,
    #[serde(with = "serde_bytes", borrow)]
    body: &'a [u8],
}

/// A chunk being filled: the bodies of one connector's newest tasks, not yet written.
#[derive(Debug, Default)]
pub struct OpenChunk {
    /// Sequence and body of each task, in sequence order.
    entries: Vec<(u64, Vec<u8>)>,
    /// Sum of the bodies' lengths.
    bytes: usize,
}

impl OpenChunk {
    /// Whether adding a body of `len` bytes would overfill the chunk (an empty chunk takes
    /// any body).
    pub fn is_full_for(&self, len: usize) -> bool {
        !self.entries.is_empty()
            && (self.entries.len() >= CHUNK_TASKS || self.bytes + len > CHUNK_BYTES)
    }

    /// Adds the body of the task with sequence `seq` (above every sequence in the chunk).
    pub fn push(&mut self, seq: u64, body: Vec<u8>) {
        self.bytes += body.len();
        self.entries.push((seq, body));
    }

    /// Whether the chunk holds task `seq`.
    pub fn contains(&self, seq: u64) -> bool {
        self.entries.binary_search_by_key(&seq, |(s, _)| *s).is_ok()
    }

    /// The sequence of the first task (the chunk's key), unless the chunk is empty.
    pub fn first(&self) -> Option<u64> {
        self.entries.first().map(|(seq, _)| *seq)
    }

    /// Encodes the chunk and empties it.
    pub fn take_encoded(&mut self) -> Result<Vec<u8>, postcard::Error> {
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .map(|(seq, body)| Entry { seq: *seq, body })
            .collect();
        let encoded = postcard::to_stdvec(&entries)?;
        self.entries.clear();
        self.bytes = 0;
        Ok(encoded)
    }
}

/// Where each task's body lies in an encoded chunk: `(sequence, byte range)`, in sequence
/// order. The ranges index the chunk's bytes, so the bodies are read without copies.
pub fn entries(chunk: &[u8]) -> Result<Vec<(u64, Range<usize>)>, postcard::Error> {
    let decoded: Vec<Entry<'_>> = postcard::from_bytes(chunk)?;
    let base = chunk.as_ptr() as usize;
    Ok(decoded
        .into_iter()
        .map(|entry| {
            let start = entry.body.as_ptr() as usize - base;
            (entry.seq, start..start + entry.body.len())
        })
        .collect())
}

/// Encodes the tasks of `chunk` whose sequences `keep` accepts; `None` when none is left.
pub fn retain(
    chunk: &[u8],
    keep: impl FnMut(u64) -> bool,
) -> Result<Option<Vec<u8>>, postcard::Error> {
    retain_entries(chunk, &entries(chunk)?, keep)
}

/// Encodes the tasks of `chunk` whose sequences `keep` accepts, from its [`entries`]
/// (decoded once by the caller); `None` when none is left.
pub fn retain_entries(
    chunk: &[u8],
    entries: &[(u64, Range<usize>)],
    mut keep: impl FnMut(u64) -> bool,
) -> Result<Option<Vec<u8>>, postcard::Error> {
    let kept: Vec<Entry<'_>> = entries
        .iter()
        .filter(|(seq, _)| keep(*seq))
        .map(|(seq, range)| Entry {
            seq: *seq,
            body: chunk.get(range.clone()).unwrap_or_default(),
        })
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    postcard::to_stdvec(&kept).map(Some)
}

/// Encodes a chunk of one task.
pub fn single(seq: u64, body: &[u8]) -> Result<Vec<u8>, postcard::Error> {
    let entries: &[Entry<'_>] = &[Entry { seq, body }];
    postcard::to_stdvec(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_back_by_range_in_order() {
        let mut open = OpenChunk::default();
        open.push(7, b"seven".to_vec());
        open.push(9, Vec::new());
        open.push(12, vec![0xAB; 300]);
        assert!(open.contains(9) && !open.contains(8));
        assert_eq!(open.first(), Some(7));
        let bytes = open.take_encoded().unwrap();
        assert_eq!(open.first(), None);
        let found = entries(&bytes).unwrap();
        let seqs: Vec<u64> = found.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![7, 9, 12]);
        assert_eq!(&bytes[found[0].1.clone()], b"seven");
        assert!(found[1].1.is_empty());
        assert_eq!(&bytes[found[2].1.clone()], &[0xAB; 300][..]);
    }

    #[test]
    fn fills_by_count_or_bytes_and_takes_one_large_body_alone() {
        let mut open = OpenChunk::default();
        assert!(
            !open.is_full_for(CHUNK_BYTES * 2),
            "an empty chunk takes any body"
        );
        for seq in 0..CHUNK_TASKS as u64 {
            assert!(!open.is_full_for(10));
            open.push(seq, vec![1; 10]);
        }
        assert!(open.is_full_for(10));
        let mut open = OpenChunk::default();
        open.push(1, vec![1; CHUNK_BYTES - 10]);
        assert!(!open.is_full_for(10));
        assert!(open.is_full_for(11));
    }

    #[test]
    fn retain_drops_tasks_and_reports_an_emptied_chunk() {
        let mut open = OpenChunk::default();
        for seq in [3, 4, 5] {
            open.push(seq, vec![seq as u8; 4]);
        }
        let bytes = open.take_encoded().unwrap();
        let kept = retain(&bytes, |seq| seq != 4).unwrap().unwrap();
        let found = entries(&kept).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].0, 5);
        assert_eq!(&kept[found[1].1.clone()], &[5; 4]);
        assert!(retain(&bytes, |_| false).unwrap().is_none());
        // From entries decoded once (compaction's way): only 4 is gone, 3 and 5 keep their bodies.
        let again = retain_entries(&bytes, &entries(&bytes).unwrap(), |seq| seq != 4)
            .unwrap()
            .unwrap();
        let left = entries(&again).unwrap();
        assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(&again[left[0].1.clone()], &[3; 4]);
        assert!(retain_entries(&bytes, &entries(&bytes).unwrap(), |_| false)
            .unwrap()
            .is_none());
        let one = single(42, b"x").unwrap();
        let found = entries(&one).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 42);
        assert_eq!(&one[found[0].1.clone()], b"x");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(entries(&[0xFF, 0xFF, 0xFF]).is_err());
    }
}
