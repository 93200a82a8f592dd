//! The `file` connector: appends each delivered task to a file as one JSON line.
//!
//! Each line is `{"task_id", "connector", "attempt", "realm", "source": {topic, partition,
//! offset}, "event": {...}}`. A line is written with a single `write` call on a file opened in
//! append mode, so a crash never leaves half a line from another task in between. With
//! `fsync = true` the line reaches the disk before the delivery counts as done.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use polaris_bridge_api::connector::SourcePosition;
use polaris_bridge_api::{Connector, Delivery, DeliveryError, DeliveryOutcome, TaskContext};
use serde::{Deserialize, Serialize};

/// Settings of one `file` connector instance (`[connectors.NAME]` with `type = "file"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to. Its directory must exist; while it doesn't, deliveries fail
    /// transiently and are retried.
    pub path: PathBuf,
    /// fsync after every line (slower, survives a machine crash, not just a process crash).
    #[serde(default)]
    pub fsync: bool,
}

/// The JSON line written for one delivery.
#[derive(Serialize)]
struct Line<'a> {
    task_id: String,
    connector: &'a str,
    attempt: u32,
    realm: &'a str,
    source: &'a SourcePosition,
    event: &'a polaris_bridge_api::PolarisEvent,
}

/// Appends deliveries to a JSON-lines file.
pub struct FileConnector {
    config: FileConfig,
    /// The open file, opened on first use and dropped after a write error so the next attempt
    /// reopens it.
    file: Mutex<Option<File>>,
}

impl FileConnector {
    /// Creates the connector; the file is opened at the first delivery.
    pub fn new(config: FileConfig) -> Self {
        FileConnector {
            config,
            file: Mutex::new(None),
        }
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    fn open(&self) -> Result<File, DeliveryError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .map_err(|e| classify(&self.config.path, "open", e))
    }

    fn append(&self, line: &[u8]) -> Result<(), DeliveryError> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| DeliveryError::transient("file connector lock poisoned"))?;
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let Some(file) = guard.as_mut() else {
            return Err(DeliveryError::transient("file not open"));
        };
        let written = file.write_all(line).and_then(|()| {
            if self.config.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            *guard = None;
            return Err(classify(&self.config.path, "write", e));
        }
        Ok(())
    }
}

/// Maps an I/O error to what the dispatcher should do about it.
fn classify(path: &Path, action: &str, error: std::io::Error) -> DeliveryError {
    let message = format!("{action} {}: {error}", path.display());
    match error.kind() {
        ErrorKind::IsADirectory | ErrorKind::InvalidInput | ErrorKind::InvalidFilename => {
            DeliveryError::misconfigured(format!(
                "{message}; set `path` to a file, not a directory"
            ))
        }
        _ => DeliveryError::transient(message),
    }
}

#[async_trait]
impl Connector for FileConnector {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn deliver(
        &self,
        delivery: &Delivery,
        _context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        let line = Line {
            task_id: delivery.task_id.to_hex(),
            connector: &delivery.connector,
            attempt: delivery.attempt,
            realm: &delivery.realm,
            source: &delivery.source,
            event: &delivery.event,
        };
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| DeliveryError::permanent(format!("event not serialisable: {e}")))?;
        bytes.push(b'\n');
        self.append(&bytes)?;
        Ok(DeliveryOutcome::Delivered)
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        let dir = self
            .config
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.is_dir() {
            Ok(())
        } else {
            Err(DeliveryError::transient(format!(
                "directory {} does not exist",
                dir.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::connector::CheckpointError;
    use polaris_bridge_api::event::EventType;
    use polaris_bridge_api::{PolarisEvent, TaskId};

    struct NoContext;
    impl TaskContext for NoContext {
        fn checkpoint(&self, _: &[u8]) -> Result<(), CheckpointError> {
            Ok(())
        }
    }

    fn delivery(id: &str) -> Delivery {
        let mut event = PolarisEvent::new(EventType::from_name("AFTER_CREATE_TABLE"));
        event.event_id = Some(id.to_string());
        Delivery {
            task_id: TaskId::for_delivery("f", "POLARIS", id),
            connector: "f".into(),
            attempt: 1,
            realm: "POLARIS".into(),
            event,
            source: SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
            checkpoint: None,
        }
    }

    #[tokio::test]
    async fn appends_one_json_line_per_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let c = FileConnector::new(FileConfig {
            path: path.clone(),
            fsync: true,
        });
        c.deliver(&delivery("a"), &NoContext).await.unwrap();
        c.deliver(&delivery("b"), &NoContext).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1]["task_id"],
            TaskId::for_delivery("f", "POLARIS", "b").to_hex()
        );
        assert_eq!(lines[0]["source"]["offset"], 7);
        assert_eq!(lines[0]["event"]["event_type"], "AFTER_CREATE_TABLE");
    }

    #[tokio::test]
    async fn missing_directory_is_transient_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later").join("out.jsonl");
        let c = FileConnector::new(FileConfig {
            path: path.clone(),
            fsync: false,
        });
        let err = c.deliver(&delivery("a"), &NoContext).await.unwrap_err();
        assert_eq!(err.label(), "transient", "{err}");
        assert!(c.healthcheck().await.is_err());
        std::fs::create_dir(dir.path().join("later")).unwrap();
        c.deliver(&delivery("a"), &NoContext).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[tokio::test]
    async fn a_directory_as_path_is_misconfigured() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileConnector::new(FileConfig {
            path: dir.path().to_path_buf(),
            fsync: false,
        });
        let err = c.deliver(&delivery("a"), &NoContext).await.unwrap_err();
        assert_eq!(err.label(), "misconfigured", "{err}");
    }
}
