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
//!
//! A chunk is stored compressed (format 4): a tag byte, the plain length, and a zstd frame of
//! the plain encoding (a postcard list of `(sequence, body)`). Neighbouring tasks' events share
//! most of their text (catalog, namespace, field names), so a chunk shrinks to less than half,
//! and so do the store's disk use and the bytes sled writes. Chunks of format 3 (plain, no
//! tag) are read as they are, and a chunk that compression would not shrink is stored plain.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// First byte of a compressed chunk. A plain chunk (format 3) starts with its entry count as
/// a postcard varint, 1 to 64, so the two cannot be confused.
const COMPRESSED_TAG: u8 = 0xC0;
/// zstd's fastest level: level 3 made the sample chunks only 2% smaller.
const ZSTD_LEVEL: i32 = 1;
/// The largest plain length a compressed chunk may claim: a chunk holds at most one body over
/// [`PLAIN_BYTES_MAX`], and Kafka's brokers refuse messages over 1 MiB unless told otherwise,
/// so 64 MiB leaves room for any event a broker would pass (a larger chunk is stored plain).
/// A longer claim is damage, not an allocation to attempt.
const MAX_PLAIN_BYTES: usize = 64 << 20;

/// A chunk that cannot be encoded or read back.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The plain encoding does not decode (or encode).
    #[error("{0}")]
    Encoding(#[from] postcard::Error),
    /// zstd refused to decompress it.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    /// The header of a compressed chunk is cut short or claims a length it does not hold.
    #[error("compressed chunk header is damaged ({0})")]
    Header(String),
}

thread_local! {
    /// One zstd context per thread, reused: creating one per chunk took longer than
    /// compressing the chunk.
    static ZSTD: RefCell<Option<(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Runs `f` with this thread's zstd contexts, creating them on first use.
fn with_zstd<T>(
    f: impl FnOnce(
        &mut zstd::bulk::Compressor<'static>,
        &mut zstd::bulk::Decompressor<'static>,
    ) -> std::io::Result<T>,
) -> std::io::Result<T> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (compressor, decompressor) = match &mut *slot {
            Some(contexts) => contexts,
            empty => empty.insert((
                zstd::bulk::Compressor::new(ZSTD_LEVEL)?,
                zstd::bulk::Decompressor::new()?,
            )),
        };
        f(compressor, decompressor)
    })
}

/// The stored form of a chunk's plain encoding: tag, plain length (u32, little-endian), zstd
/// frame. A chunk that compression would not shrink (or that zstd refuses, or over
/// [`MAX_PLAIN_BYTES`]) is stored plain, as format 3 stored every chunk: [`unpack`] reads both.
fn pack(plain: Vec<u8>) -> Vec<u8> {
    let Some(length) = u32::try_from(plain.len())
        .ok()
        .filter(|n| *n as usize <= MAX_PLAIN_BYTES)
    else {
        return plain;
    };
    match with_zstd(|compressor, _| compressor.compress(&plain)) {
        Ok(frame) if frame.len() + 5 < plain.len() => {
            let mut stored = Vec::with_capacity(5 + frame.len());
            stored.push(COMPRESSED_TAG);
            stored.extend_from_slice(&length.to_le_bytes());
            stored.extend_from_slice(&frame);
            stored
        }
        _ => plain,
    }
}

/// Whether a stored chunk is compressed (format 4) rather than plain (format 3).
pub fn is_compressed(stored: &[u8]) -> bool {
    stored.first() == Some(&COMPRESSED_TAG)
}

/// The plain encoding of a stored chunk: decompressed, or as it is for a format 3 chunk.
pub fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, ChunkError> {
    let Some(rest) = stored.strip_prefix(&[COMPRESSED_TAG]) else {
        return Ok(Cow::Borrowed(stored));
    };
    let (length, frame) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| ChunkError::Header(format!("{} bytes", stored.len())))?;
    let length = u32::from_le_bytes(*length) as usize;
    if length > MAX_PLAIN_BYTES {
        return Err(ChunkError::Header(format!("claims {length} plain bytes")));
    }
    let plain = with_zstd(|_, decompressor| decompressor.decompress(frame, length))?;
    if plain.len() != length {
        return Err(ChunkError::Header(format!(
            "claims {length} plain bytes, holds {}",
            plain.len()
        )));
    }
    Ok(Cow::Owned(plain))
}

/// Tasks per chunk at most.
pub const CHUNK_TASKS: usize = 64;
/// Stored bytes a chunk aims at. sled 0.34 splits a leaf above 16 entries and writes a log
/// message above 128 KiB (a quarter of its 512 KiB segment) as a blob file of its own, read
/// back with an open and a read each time the page leaves the cache: with 32 KiB chunks the
/// source thread spent its time in those, and RSS rose by 20-30 MiB. 17 chunks of 6 KiB stay
/// under the blob threshold. It is also the body bytes a chunk takes at most when its bodies
/// do not compress (a chunk with one larger body holds that body alone).
pub const STORED_BYTES_TARGET: usize = 6 * 1024;
/// Body bytes a chunk takes at most when they compress well: larger chunks compress better
/// and cost fewer writes.
pub const PLAIN_BYTES_MAX: usize = 16 * 1024;

/// One task's body in an encoded chunk.
#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    seq: u64,
    #[serde(with = "serde_bytes", borrow)]
    body: &'a [u8],
}

/// A chunk being filled: the bodies of one connector's newest tasks, not yet written.
#[derive(Debug)]
pub struct OpenChunk {
    /// Sequence and body of each task, in sequence order.
    entries: Vec<(u64, Vec<u8>)>,
    /// Sum of the bodies' lengths.
    bytes: usize,
    /// Body bytes this chunk takes at most: from [`STORED_BYTES_TARGET`] (bodies that do not
    /// compress) to [`PLAIN_BYTES_MAX`], set by how well the connector's previous chunk
    /// compressed, so that a stored chunk stays near the target.
    limit: usize,
}

impl Default for OpenChunk {
    fn default() -> Self {
        OpenChunk {
            entries: Vec::new(),
            bytes: 0,
            limit: STORED_BYTES_TARGET,
        }
    }
}

impl OpenChunk {
    /// Whether adding a body of `len` bytes would overfill the chunk (an empty chunk takes
    /// any body).
    pub fn is_full_for(&self, len: usize) -> bool {
        !self.entries.is_empty()
            && (self.entries.len() >= CHUNK_TASKS || self.bytes + len > self.limit)
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

    /// Encodes the chunk in its stored form and empties it.
    pub fn take_encoded(&mut self) -> Result<Vec<u8>, ChunkError> {
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .map(|(seq, body)| Entry { seq: *seq, body })
            .collect();
        let plain = postcard::to_stdvec(&entries)?;
        let plain_len = plain.len();
        let stored = pack(plain);
        self.entries.clear();
        self.bytes = 0;
        self.limit = (STORED_BYTES_TARGET * plain_len / stored.len().max(1))
            .clamp(STORED_BYTES_TARGET, PLAIN_BYTES_MAX);
        Ok(stored)
    }
}

/// Where each task's body lies in a chunk's plain encoding (see [`unpack`]): `(sequence, byte
/// range)`, in sequence order. The ranges index `chunk`, so the bodies are read without copies.
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

/// Encodes the tasks of `chunk` (a plain encoding) whose sequences `keep` accepts, in stored
/// form; `None` when none is left.
pub fn retain(chunk: &[u8], keep: impl FnMut(u64) -> bool) -> Result<Option<Vec<u8>>, ChunkError> {
    retain_entries(chunk, &entries(chunk)?, keep)
}

/// Encodes the tasks of `chunk` (a plain encoding) whose sequences `keep` accepts, from its
/// [`entries`] (decoded once by the caller), in stored form; `None` when none is left.
pub fn retain_entries(
    chunk: &[u8],
    entries: &[(u64, Range<usize>)],
    mut keep: impl FnMut(u64) -> bool,
) -> Result<Option<Vec<u8>>, ChunkError> {
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
    Ok(Some(pack(postcard::to_stdvec(&kept)?)))
}

/// Encodes a chunk of one task, in stored form.
pub fn single(seq: u64, body: &[u8]) -> Result<Vec<u8>, ChunkError> {
    let entries: &[Entry<'_>] = &[Entry { seq, body }];
    Ok(pack(postcard::to_stdvec(entries)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain encoding of a stored chunk.
    fn plain(stored: &[u8]) -> Vec<u8> {
        unpack(stored).unwrap().into_owned()
    }

    #[test]
    fn bodies_come_back_by_range_in_order() {
        let mut open = OpenChunk::default();
        open.push(7, b"seven".to_vec());
        open.push(9, Vec::new());
        open.push(12, vec![0xAB; 300]);
        assert!(open.contains(9) && !open.contains(8));
        assert_eq!(open.first(), Some(7));
        let bytes = plain(&open.take_encoded().unwrap());
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
            !open.is_full_for(PLAIN_BYTES_MAX * 2),
            "an empty chunk takes any body"
        );
        for seq in 0..CHUNK_TASKS as u64 {
            assert!(!open.is_full_for(10));
            open.push(seq, vec![1; 10]);
        }
        assert!(open.is_full_for(10));
        let mut open = OpenChunk::default();
        open.push(1, vec![1; STORED_BYTES_TARGET - 10]);
        assert!(!open.is_full_for(10));
        assert!(open.is_full_for(11));
    }

    #[test]
    fn the_byte_limit_follows_how_well_the_last_chunk_compressed() {
        // Bodies that do not compress (pseudo-random bytes) keep the limit at the target.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        let mut open = OpenChunk::default();
        open.push(0, noise(STORED_BYTES_TARGET));
        let stored = open.take_encoded().unwrap();
        assert!(
            !is_compressed(&stored),
            "stored plain: zstd would not shrink it"
        );
        assert_eq!(
            entries(&unpack(&stored).unwrap()).unwrap()[0].1.len(),
            STORED_BYTES_TARGET
        );
        assert_eq!(open.limit, STORED_BYTES_TARGET);
        // Text that compresses well raises it, up to the maximum.
        open.push(1, b"prod.sales.eu.orders ".repeat(300));
        open.take_encoded().unwrap();
        assert_eq!(open.limit, PLAIN_BYTES_MAX);
        open.push(2, vec![1; PLAIN_BYTES_MAX - 10]);
        assert!(!open.is_full_for(10) && open.is_full_for(11));
        // And noise brings it back down.
        open.take_encoded().unwrap();
        open.push(3, noise(STORED_BYTES_TARGET));
        open.take_encoded().unwrap();
        assert_eq!(open.limit, STORED_BYTES_TARGET);
    }

    #[test]
    fn retain_drops_tasks_and_reports_an_emptied_chunk() {
        let mut open = OpenChunk::default();
        for seq in [3, 4, 5] {
            open.push(seq, vec![seq as u8; 4]);
        }
        let bytes = plain(&open.take_encoded().unwrap());
        let kept = plain(&retain(&bytes, |seq| seq != 4).unwrap().unwrap());
        let found = entries(&kept).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].0, 5);
        assert_eq!(&kept[found[1].1.clone()], &[5; 4]);
        assert!(retain(&bytes, |_| false).unwrap().is_none());
        // From entries decoded once (compaction's way): only 4 is gone, 3 and 5 keep their bodies.
        let again = plain(
            &retain_entries(&bytes, &entries(&bytes).unwrap(), |seq| seq != 4)
                .unwrap()
                .unwrap(),
        );
        let left = entries(&again).unwrap();
        assert_eq!(left.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(&again[left[0].1.clone()], &[3; 4]);
        assert!(retain_entries(&bytes, &entries(&bytes).unwrap(), |_| false)
            .unwrap()
            .is_none());
        let one = plain(&single(42, b"x").unwrap());
        let found = entries(&one).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 42);
        assert_eq!(&one[found[0].1.clone()], b"x");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(entries(&[0xFF, 0xFF, 0xFF]).is_err());
        // A compressed chunk cut short, or claiming more than it holds, is named as damaged.
        let mut open = OpenChunk::default();
        open.push(1, b"body ".repeat(100));
        let stored = open.take_encoded().unwrap();
        assert!(is_compressed(&stored));
        assert!(unpack(&stored[..3]).is_err());
        assert!(unpack(&stored[..stored.len() - 2]).is_err());
        let mut longer = stored.clone();
        longer[1] += 1;
        assert!(unpack(&longer).is_err());
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = unpack(&huge).unwrap_err().to_string();
        assert!(error.contains("plain bytes"), "{error}");
    }

    #[test]
    fn chunks_are_stored_compressed_and_plain_ones_still_read() {
        let mut open = OpenChunk::default();
        let body = |seq: u64| {
            format!(r#"{{"catalog":"prod","namespace":["sales","eu"],"table":"orders_{seq}"}}"#)
                .into_bytes()
        };
        for seq in 10..30 {
            open.push(seq, body(seq));
        }
        let stored = open.take_encoded().unwrap();
        assert_eq!(stored[0], COMPRESSED_TAG);
        let bytes = plain(&stored);
        assert!(
            stored.len() * 2 < bytes.len(),
            "{} stored bytes for {} plain",
            stored.len(),
            bytes.len()
        );
        let found = entries(&bytes).unwrap();
        assert_eq!(found.len(), 20);
        assert_eq!(&bytes[found[5].1.clone()], &body(15)[..]);
        // A format 3 chunk (the plain encoding, untagged) is its own plain form.
        let legacy: Vec<Entry<'_>> = vec![Entry {
            seq: 3,
            body: b"old",
        }];
        let legacy = postcard::to_stdvec(&legacy).unwrap();
        assert!(matches!(unpack(&legacy).unwrap(), Cow::Borrowed(_)));
        let found = entries(&legacy).unwrap();
        assert_eq!(&legacy[found[0].1.clone()], b"old");
    }
}
