//! Settings of a `file` connector instance (`[connectors.NAME]` with `type = "file"`).

use std::path::PathBuf;

use serde::Deserialize;

/// What each line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    /// `{"task_id", "connector", "attempt", "realm", "source", "event"}`.
    #[default]
    Lines,
    /// A CloudEvents 1.0 structured-mode JSON event (the shared attribute mapping) whose
    /// `data` is the event.
    Cloudevents,
}

/// The connector's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to. Its directory must exist; while it doesn't, deliveries fail
    /// transiently and are retried.
    pub path: PathBuf,
    /// `lines` (default) or `cloudevents`.
    #[serde(default)]
    pub format: LineFormat,
    /// fsync every line (and the directory after a rotation) before the delivery succeeds:
    /// slower, survives a machine crash, not just a process crash.
    #[serde(default)]
    pub fsync: bool,
    /// Rotate when the file would grow past this many bytes: it is renamed `<path>.<n>`
    /// (n = 1, 2, ... so the highest is the newest) and a new file is started. A line is
    /// never split. Unset: no rotation.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Rotated files to keep (the oldest are deleted); unset: keep all.
    #[serde(default)]
    pub max_files: Option<u32>,
}

impl FileConfig {
    /// A config for `path` with every other setting at its default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            format: LineFormat::Lines,
            fsync: false,
            max_bytes: None,
            max_files: None,
        }
    }

    /// Checks what serde cannot.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_bytes == Some(0) {
            problems.push("`max_bytes` must be positive".to_string());
        }
        if self.max_files.is_some() && self.max_bytes.is_none() {
            problems.push("`max_files` needs `max_bytes` (rotation)".to_string());
        }
        if self.max_files == Some(0) {
            problems.push("`max_files` must be at least 1".to_string());
        }
        if self.path.file_name().is_none() {
            problems.push(format!("`path` {} names no file", self.path.display()));
        }
        problems
    }
}
