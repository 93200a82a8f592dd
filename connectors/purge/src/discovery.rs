//! Discovery: what files a table has, read from its metadata.
//!
//! `metadata.json` (table format v1, v2, v3; gzip-compressed too) gives the metadata log,
//! the snapshots with their manifest lists (or, in v1, their manifests), and the statistics
//! and partition statistics files. Manifest lists are small and read whole. A manifest is
//! streamed: its object is read chunk by chunk and decoded entry by entry (apache-avro, on a
//! blocking thread), handed over through a bounded channel, so memory does not grow with the
//! number of files it lists.

use std::io::Read;

use apache_avro::types::Value;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::store::Store;

/// The parts of an Iceberg `metadata.json` a purge needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableMetadata {
    /// 1, 2 or 3.
    pub format_version: u8,
    /// The table's UUID (optional in v1).
    #[serde(default)]
    pub table_uuid: Option<String>,
    /// The table's base location.
    pub location: String,
    /// Every snapshot the metadata still knows.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// Previous metadata files.
    #[serde(default)]
    pub metadata_log: Vec<MetadataLogEntry>,
    /// Table statistics files (puffin).
    #[serde(default)]
    pub statistics: Vec<StatisticsFile>,
    /// Partition statistics files.
    #[serde(default)]
    pub partition_statistics: Vec<StatisticsFile>,
}

/// One snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// Its id.
    pub snapshot_id: i64,
    /// Its manifest list (v2+; optional in v1).
    #[serde(default)]
    pub manifest_list: Option<String>,
    /// Its manifests, listed inline (v1 tables without manifest lists).
    #[serde(default)]
    pub manifests: Option<Vec<String>>,
}

/// One entry of `metadata-log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataLogEntry {
    /// A previous metadata file.
    pub metadata_file: String,
}

/// A statistics or partition statistics file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatisticsFile {
    /// Its location.
    pub statistics_path: String,
    /// Its size.
    #[serde(default)]
    pub file_size_in_bytes: Option<i64>,
}

/// A manifest, as a manifest list (or a v1 snapshot) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// Its location.
    pub path: String,
    /// Its size (0 when unknown).
    pub length: u64,
    /// 0 = data files, 1 = delete files.
    pub content: i32,
}

/// One manifest entry: a data file or a delete file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentFile {
    /// Its location.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// 0 data, 1 position deletes, 2 equality deletes.
    pub content: i32,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// A file that should be there is not.
    #[error("{what} `{path}` not found")]
    NotFound {
        /// What the file is and who lists it.
        what: String,
        /// Its location.
        path: String,
    },
    /// A file that cannot be read as what it should be.
    #[error("{what} `{path}` is corrupt: {message}")]
    Corrupt {
        /// What the file is and who lists it.
        what: String,
        /// Its location.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error("reading {what} `{path}`: {message}")]
    Store {
        /// What the file is.
        what: String,
        /// Its location.
        path: String,
        /// The store's message.
        message: String,
    },
}

fn store_error(what: &str, path: &str, error: object_store::Error) -> DiscoveryError {
    match error {
        object_store::Error::NotFound { .. } => DiscoveryError::NotFound {
            what: what.to_string(),
            path: path.to_string(),
        },
        other => DiscoveryError::Store {
            what: what.to_string(),
            path: path.to_string(),
            message: other.to_string(),
        },
    }
}

/// Reads a whole (small) object.
pub async fn read_all(
    store: &Store,
    location: &Path,
    what: &str,
    uri: &str,
) -> Result<Bytes, DiscoveryError> {
    let result = store
        .inner
        .get(location)
        .await
        .map_err(|e| store_error(what, uri, e))?;
    result.bytes().await.map_err(|e| store_error(what, uri, e))
}

/// Parses a metadata file (plain or gzip-compressed JSON).
pub fn parse_metadata(bytes: &[u8], uri: &str) -> Result<TableMetadata, DiscoveryError> {
    let corrupt = |message: String| DiscoveryError::Corrupt {
        what: "metadata file".into(),
        path: uri.to_string(),
        message,
    };
    let inflated;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        inflated = gunzip(bytes).map_err(corrupt)?;
        &inflated[..]
    } else {
        bytes
    };
    let metadata: TableMetadata =
        serde_json::from_slice(json).map_err(|e| corrupt(format!("not table metadata: {e}")))?;
    if !(1..=3).contains(&metadata.format_version) {
        return Err(corrupt(format!(
            "format-version {} is not supported (1, 2 and 3 are)",
            metadata.format_version
        )));
    }
    for snapshot in &metadata.snapshots {
        if snapshot.manifest_list.is_none() && snapshot.manifests.is_none() {
            return Err(corrupt(format!(
                "snapshot {} has neither a manifest-list nor manifests",
                snapshot.snapshot_id
            )));
        }
    }
    Ok(metadata)
}

/// Decompresses a gzip member (RFC 1952) of at most 1 GiB.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let short = || "truncated gzip header".to_string();
    if data.len() < 18 || data[2] != 8 {
        return Err("not a deflate gzip stream".into());
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & 4 != 0 {
        let len = u16::from_le_bytes([data[pos], data[pos + 1]]) as usize;
        pos += 2 + len;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let end = data.get(pos..).ok_or_else(short)?;
            pos += end.iter().position(|b| *b == 0).ok_or_else(short)? + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2;
    }
    let body = data.get(pos..).ok_or_else(short)?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(body, 1 << 30)
        .map_err(|e| format!("gzip: {e:?}"))
}

/// Reads a manifest list whole.
pub async fn read_manifest_list(
    store: &Store,
    location: &Path,
    uri: &str,
    what: &str,
) -> Result<Vec<ManifestRef>, DiscoveryError> {
    let bytes = read_all(store, location, what, uri).await?;
    let uri_owned = uri.to_string();
    let what_owned = what.to_string();
    tokio::task::spawn_blocking(move || decode_manifest_list(&bytes, &uri_owned, &what_owned))
        .await
        .map_err(|e| DiscoveryError::Store {
            what: what.to_string(),
            path: uri.to_string(),
            message: format!("decoder thread failed: {e}"),
        })?
}

/// Decodes the Avro bytes of a manifest list.
pub fn decode_manifest_list(
    bytes: &[u8],
    uri: &str,
    what: &str,
) -> Result<Vec<ManifestRef>, DiscoveryError> {
    let corrupt = |message: String| DiscoveryError::Corrupt {
        what: what.to_string(),
        path: uri.to_string(),
        message,
    };
    let reader = apache_avro::Reader::new(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut manifests = Vec::new();
    for (i, value) in reader.enumerate() {
        let value = value.map_err(|e| corrupt(format!("entry {i}: {e}")))?;
        let fields = record(&value).ok_or_else(|| corrupt(format!("entry {i} is not a record")))?;
        let path = string_field(fields, "manifest_path")
            .ok_or_else(|| corrupt(format!("entry {i} has no manifest_path")))?;
        manifests.push(ManifestRef {
            path,
            length: long_field(fields, "manifest_length").unwrap_or(0).max(0) as u64,
            content: long_field(fields, "content").unwrap_or(0) as i32,
        });
    }
    Ok(manifests)
}

/// Entries handed over per channel message (fewer thread wake-ups than one per entry).
const CHUNK: usize = 256;

/// The entries of one manifest, in file order.
pub struct Entries {
    rx: mpsc::Receiver<Vec<Result<ContentFile, DiscoveryError>>>,
    buffer: std::vec::IntoIter<Result<ContentFile, DiscoveryError>>,
}

impl Entries {
    /// The next entry; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<ContentFile, DiscoveryError>> {
        loop {
            if let Some(entry) = self.buffer.next() {
                return Some(entry);
            }
            self.buffer = self.rx.recv().await?.into_iter();
        }
    }
}

/// Streams the entries of a manifest, in file order, through a channel holding at most
/// about `capacity` entries. The object is read in chunks and decoded on a blocking thread;
/// dropping the [`Entries`] stops both.
pub async fn stream_manifest(
    store: &Store,
    location: &Path,
    uri: &str,
    what: &str,
    capacity: usize,
) -> Result<Entries, DiscoveryError> {
    let result = store
        .inner
        .get(location)
        .await
        .map_err(|e| store_error(what, uri, e))?;
    let mut chunks = result.into_stream();
    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Bytes, String>>(4);
    tokio::spawn(async move {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| e.to_string());
            let failed = chunk.is_err();
            if chunk_tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    let (entry_tx, entry_rx) = mpsc::channel((capacity / CHUNK).max(1));
    let uri = uri.to_string();
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: chunk_rx,
            current: Bytes::new(),
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut open = true;
        decode_manifest(reader, &uri, &what, |entry| {
            chunk.push(entry);
            if chunk.len() >= CHUNK {
                open = entry_tx
                    .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    .is_ok();
            }
            open
        });
        if open && !chunk.is_empty() {
            let _ = entry_tx.blocking_send(chunk);
        }
    });
    Ok(Entries {
        rx: entry_rx,
        buffer: Vec::new().into_iter(),
    })
}

/// Decodes manifest entries from `input`, handing each to `emit` until it returns false.
/// A decoding error is emitted once, and ends the stream.
pub fn decode_manifest(
    input: impl Read,
    uri: &str,
    what: &str,
    mut emit: impl FnMut(Result<ContentFile, DiscoveryError>) -> bool,
) {
    let corrupt = |message: String| DiscoveryError::Corrupt {
        what: what.to_string(),
        path: uri.to_string(),
        message,
    };
    let reader = match apache_avro::Reader::new(input) {
        Ok(reader) => reader,
        Err(e) => {
            emit(Err(corrupt(e.to_string())));
            return;
        }
    };
    for (i, value) in reader.enumerate() {
        let entry = value
            .map_err(|e| corrupt(format!("entry {i}: {e}")))
            .and_then(|value| {
                content_file(&value).ok_or_else(|| {
                    corrupt(format!(
                        "entry {i} is not a manifest entry (no data_file.file_path)"
                    ))
                })
            });
        let failed = entry.is_err();
        if !emit(entry) || failed {
            return;
        }
    }
}

fn content_file(value: &Value) -> Option<ContentFile> {
    let entry = record(value)?;
    let data_file = entry.iter().find(|(k, _)| k == "data_file")?;
    let fields = record(&data_file.1)?;
    Some(ContentFile {
        path: string_field(fields, "file_path")?,
        size: long_field(fields, "file_size_in_bytes").unwrap_or(0).max(0) as u64,
        content: long_field(fields, "content").unwrap_or(0) as i32,
    })
}

fn record(value: &Value) -> Option<&[(String, Value)]> {
    match value {
        Value::Record(fields) => Some(fields),
        Value::Union(_, inner) => record(inner),
        _ => None,
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    let value = &fields.iter().find(|(k, _)| k == name)?.1;
    match value {
        Value::Union(_, inner) => Some(inner),
        other => Some(other),
    }
}

fn string_field(fields: &[(String, Value)], name: &str) -> Option<String> {
    match field(fields, name)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn long_field(fields: &[(String, Value)], name: &str) -> Option<i64> {
    match field(fields, name)? {
        Value::Long(n) => Some(*n),
        Value::Int(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// A blocking [`Read`] over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_v1_v2_v3_metadata() {
        let v1 = r#"{"format-version":1,"location":"s3://b/t","snapshots":[
            {"snapshot-id":1,"manifests":["s3://b/t/metadata/m1.avro"]},
            {"snapshot-id":2,"manifest-list":"s3://b/t/metadata/snap-2.avro"}],
            "schema":{"type":"struct","fields":[]}}"#;
        let m = parse_metadata(v1.as_bytes(), "x").unwrap();
        assert_eq!(m.format_version, 1);
        assert_eq!(m.table_uuid, None);
        assert_eq!(m.snapshots[0].manifests.as_ref().unwrap().len(), 1);
        let v3 = r#"{"format-version":3,"table-uuid":"u","location":"s3://b/t","next-row-id":5,
            "snapshots":[{"snapshot-id":1,"manifest-list":"s3://b/t/metadata/snap-1.avro","first-row-id":0,"added-rows":5}],
            "metadata-log":[{"metadata-file":"s3://b/t/metadata/00000.metadata.json","timestamp-ms":1}],
            "statistics":[{"snapshot-id":1,"statistics-path":"s3://b/t/metadata/s.puffin","file-size-in-bytes":10,"file-footer-size-in-bytes":2,"blob-metadata":[]}],
            "partition-statistics":[{"snapshot-id":1,"statistics-path":"s3://b/t/metadata/p.parquet","file-size-in-bytes":3}]}"#;
        let m = parse_metadata(v3.as_bytes(), "x").unwrap();
        assert_eq!(m.table_uuid.as_deref(), Some("u"));
        assert_eq!(m.metadata_log.len(), 1);
        assert_eq!(m.statistics[0].file_size_in_bytes, Some(10));
        assert_eq!(m.partition_statistics.len(), 1);
        let err = parse_metadata(br#"{"format-version":4,"location":"x"}"#, "m.json").unwrap_err();
        assert!(err.to_string().contains("format-version 4"), "{err}");
        let err = parse_metadata(b"{not json", "m.json").unwrap_err();
        assert!(matches!(err, DiscoveryError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn reads_gzip_metadata() {
        let json = br#"{"format-version":2,"table-uuid":"u","location":"/tmp/t"}"#;
        let deflated = miniz_oxide::deflate::compress_to_vec(json, 6);
        let mut gz = vec![0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3];
        gz.extend_from_slice(b"m.json\0");
        gz.extend_from_slice(&deflated);
        gz.extend_from_slice(&[0; 8]);
        let m = parse_metadata(&gz, "x.gz.metadata.json").unwrap();
        assert_eq!(m.location, "/tmp/t");
    }

    /// Writes an Iceberg-shaped manifest with apache-avro (the fields a purge reads, plus a
    /// partition record and a stats map the decoder must skip).
    pub fn write_manifest(files: &[(&str, i64, i32)]) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"manifest_entry","fields":[
              {"name":"status","type":"int"},
              {"name":"snapshot_id","type":["null","long"]},
              {"name":"data_file","type":{"type":"record","name":"r2","fields":[
                {"name":"content","type":"int"},
                {"name":"file_path","type":"string"},
                {"name":"file_format","type":"string"},
                {"name":"partition","type":{"type":"record","name":"r102","fields":[{"name":"d","type":["null","int"]}]}},
                {"name":"record_count","type":"long"},
                {"name":"file_size_in_bytes","type":"long"},
                {"name":"value_counts","type":["null",{"type":"array","items":{"type":"record","name":"k_v","fields":[{"name":"key","type":"int"},{"name":"value","type":"long"}]}}]}
              ]}}]}"#,
        )
        .unwrap();
        let mut writer = apache_avro::Writer::with_codec(
            &schema,
            Vec::new(),
            apache_avro::Codec::Deflate(Default::default()),
        );
        for (path, size, content) in files {
            let value = Value::Record(vec![
                ("status".into(), Value::Int(1)),
                (
                    "snapshot_id".into(),
                    Value::Union(1, Box::new(Value::Long(7))),
                ),
                (
                    "data_file".into(),
                    Value::Record(vec![
                        ("content".into(), Value::Int(*content)),
                        ("file_path".into(), Value::String(path.to_string())),
                        ("file_format".into(), Value::String("PARQUET".into())),
                        (
                            "partition".into(),
                            Value::Record(vec![(
                                "d".into(),
                                Value::Union(1, Box::new(Value::Int(3))),
                            )]),
                        ),
                        ("record_count".into(), Value::Long(10)),
                        ("file_size_in_bytes".into(), Value::Long(*size)),
                        (
                            "value_counts".into(),
                            Value::Union(
                                1,
                                Box::new(Value::Array(vec![Value::Record(vec![
                                    ("key".into(), Value::Int(1)),
                                    ("value".into(), Value::Long(10)),
                                ])])),
                            ),
                        ),
                    ]),
                ),
            ]);
            writer.append(value).unwrap();
        }
        writer.into_inner().unwrap()
    }

    /// Writes a manifest list naming `manifests` (path, length, content).
    pub fn write_manifest_list(manifests: &[(&str, i64, i32)]) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"manifest_file","fields":[
              {"name":"manifest_path","type":"string"},
              {"name":"manifest_length","type":"long"},
              {"name":"partition_spec_id","type":"int"},
              {"name":"content","type":"int"},
              {"name":"added_snapshot_id","type":"long"}]}"#,
        )
        .unwrap();
        let mut writer = apache_avro::Writer::new(&schema, Vec::new());
        for (path, length, content) in manifests {
            writer
                .append(Value::Record(vec![
                    ("manifest_path".into(), Value::String(path.to_string())),
                    ("manifest_length".into(), Value::Long(*length)),
                    ("partition_spec_id".into(), Value::Int(0)),
                    ("content".into(), Value::Int(*content)),
                    ("added_snapshot_id".into(), Value::Long(1)),
                ]))
                .unwrap();
        }
        writer.into_inner().unwrap()
    }

    #[test]
    fn decodes_manifests_and_lists() {
        let bytes = write_manifest(&[
            ("s3://b/t/data/a.parquet", 100, 0),
            ("s3://b/t/data/d.parquet", 5, 1),
        ]);
        let mut got = Vec::new();
        decode_manifest(&bytes[..], "m", "manifest", |e| {
            got.push(e.unwrap());
            true
        });
        assert_eq!(
            got,
            [
                ContentFile {
                    path: "s3://b/t/data/a.parquet".into(),
                    size: 100,
                    content: 0
                },
                ContentFile {
                    path: "s3://b/t/data/d.parquet".into(),
                    size: 5,
                    content: 1
                },
            ]
        );
        let list = write_manifest_list(&[("s3://b/t/metadata/m0.avro", 42, 1)]);
        let refs = decode_manifest_list(&list, "l", "manifest list").unwrap();
        assert_eq!(
            refs,
            [ManifestRef {
                path: "s3://b/t/metadata/m0.avro".into(),
                length: 42,
                content: 1
            }]
        );
    }

    #[test]
    fn corrupt_manifests_are_reported_once() {
        let mut bytes = write_manifest(&[("s3://b/t/data/a.parquet", 100, 0)]);
        let mut errors = Vec::new();
        decode_manifest(&b"garbage"[..], "s3://b/t/m.avro", "manifest", |e| {
            errors.push(e);
            true
        });
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("s3://b/t/m.avro"));
        let len = bytes.len();
        bytes.truncate(len - 20);
        let mut results = Vec::new();
        decode_manifest(&bytes[..], "m", "manifest", |e| {
            results.push(e.is_ok());
            true
        });
        assert_eq!(results.last(), Some(&false), "{results:?}");
        assert!(decode_manifest_list(b"Obj\x01junk", "l", "manifest list").is_err());
    }
}
