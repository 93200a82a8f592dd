//! The `file` connector: appends each delivered task to a file as one JSON line.
//!
//! - [`config`]: the settings.
//! - [`mod@format`]: the line: `{"task_id", "connector", "attempt", "realm", "source": {topic,
//!   partition, offset}, "event": {...}}` (`lines`), or a CloudEvents 1.0 structured-mode
//!   event with the shared attribute mapping (`cloudevents`).
//! - [`writer`]: the append-mode file, size-based rotation, fsync.
//!
//! A line is written with a single `write` call, so a crash never leaves half a line from
//! another task in between. With `fsync = true` the line reaches the disk before the delivery
//! counts as done.

pub mod config;
pub mod format;
pub mod writer;

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use polaris_bridge_api::{Connector, Delivery, DeliveryError, DeliveryOutcome, TaskContext};

pub use config::{FileConfig, LineFormat};
use writer::Writer;

/// Appends deliveries to a JSON-lines file.
pub struct FileConnector {
    path: std::path::PathBuf,
    format: LineFormat,
    writer: Mutex<Writer>,
}

impl FileConnector {
    /// Validates `config`; the file is opened at the first delivery.
    pub fn new(config: FileConfig) -> Result<Self, String> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(FileConnector {
            path: config.path.clone(),
            format: config.format,
            writer: Mutex::new(Writer::new(config)),
        })
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
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
        let line = format::line(delivery, self.format)?;
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| DeliveryError::transient("file connector lock poisoned"))?;
        writer.append(&line)?;
        Ok(DeliveryOutcome::Delivered)
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        let dir = self
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
    use polaris_bridge_api::connector::{CheckpointError, SourcePosition};
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
        let mut config = FileConfig::new(&path);
        config.fsync = true;
        let c = FileConnector::new(config).unwrap();
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
        let c = FileConnector::new(FileConfig::new(&path)).unwrap();
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
        let c = FileConnector::new(FileConfig::new(dir.path().join("sub"))).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = c.deliver(&delivery("a"), &NoContext).await.unwrap_err();
        assert_eq!(err.label(), "misconfigured", "{err}");
    }

    #[tokio::test]
    async fn cloudevents_lines_and_rotation_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ce.jsonl");
        let mut config = FileConfig::new(&path);
        config.format = LineFormat::Cloudevents;
        config.fsync = true;
        config.max_bytes = Some(1000);
        config.max_files = Some(2);
        let c = FileConnector::new(config).unwrap();
        let ids: Vec<String> = (0..12).map(|i| format!("e{i}")).collect();
        for id in &ids {
            c.deliver(&delivery(id), &NoContext).await.unwrap();
        }
        let rotated = writer::rotated(&path).unwrap();
        assert_eq!(rotated.len(), 2, "only max_files rotated files kept");
        let mut all = Vec::new();
        for (_, p) in &rotated {
            let size = std::fs::metadata(p).unwrap().len();
            assert!(size <= 1000, "{} has {size} bytes", p.display());
            all.extend(
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
        all.extend(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
        let events: Vec<serde_json::Value> = all
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let last = events.last().unwrap();
        assert_eq!(last["specversion"], "1.0");
        assert_eq!(
            last["id"],
            TaskId::for_delivery("f", "POLARIS", "e11").to_hex()
        );
        assert_eq!(last["type"], "org.apache.polaris.AFTER_CREATE_TABLE");
        assert_eq!(last["source"], "polaris://POLARIS");
        assert_eq!(last["datacontenttype"], "application/json");
        assert_eq!(last["data"]["event_id"], "e11");
        // Lines are whole and in order across the files kept.
        let kept: Vec<&str> = events
            .iter()
            .map(|e| e["data"]["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            ids[ids.len() - kept.len()..]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        // A new writer continues the numbering.
        let c2 = FileConnector::new({
            let mut cfg = FileConfig::new(&path);
            cfg.max_bytes = Some(1);
            cfg
        })
        .unwrap();
        c2.deliver(&delivery("z"), &NoContext).await.unwrap();
        let newest = writer::rotated(&path).unwrap().last().unwrap().0;
        assert_eq!(newest, rotated.last().unwrap().0 + 1);
    }

    #[test]
    fn rotation_settings_are_checked() {
        let mut config = FileConfig::new("/tmp/x.jsonl");
        config.max_files = Some(3);
        assert!(FileConnector::new(config.clone())
            .err()
            .unwrap()
            .contains("max_bytes"));
        config.max_bytes = Some(0);
        assert!(FileConnector::new(config).is_err());
    }
}
