//! The append-only file, with size-based rotation and optional fsync.
//!
//! A line is written with a single `write` call on a file opened in append mode, so a crash
//! never leaves half a line from another task in between. Rotation renames the full file to
//! `<path>.<n>` (a rename is atomic: every line is in exactly one file) and starts a new one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use polaris_bridge_api::DeliveryError;

use crate::config::FileConfig;

/// The open file and what rotation needs to know.
pub struct Output {
    file: File,
    /// Bytes in the current file.
    size: u64,
    /// The number the next rotated file gets.
    next_index: u64,
}

/// Appends lines to the configured file.
pub struct Writer {
    config: FileConfig,
    /// Opened on first use and dropped after a write error, so the next attempt reopens it.
    output: Option<Output>,
}

impl Writer {
    /// A writer for `config`; nothing is opened yet.
    pub fn new(config: FileConfig) -> Self {
        Writer {
            config,
            output: None,
        }
    }

    /// Appends one line (fsynced when configured), rotating first if it would not fit.
    pub fn append(&mut self, line: &[u8]) -> Result<(), DeliveryError> {
        if self.output.is_none() {
            self.output = Some(self.open()?);
        }
        let needs_rotation = match (self.config.max_bytes, &self.output) {
            (Some(max), Some(out)) => out.size > 0 && out.size + line.len() as u64 > max,
            _ => false,
        };
        if needs_rotation {
            if let Err(e) = self.rotate() {
                self.output = None;
                return Err(e);
            }
        }
        let fsync = self.config.fsync;
        let Some(out) = self.output.as_mut() else {
            return Err(DeliveryError::transient("file not open"));
        };
        let written =
            out.file
                .write_all(line)
                .and_then(|()| if fsync { out.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                out.size += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.output = None;
                Err(classify(&self.config.path, "write", e))
            }
        }
    }

    fn open(&self) -> Result<Output, DeliveryError> {
        let path = &self.config.path;
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| classify(path, "open", e))?;
        let size = file
            .metadata()
            .map_err(|e| classify(path, "stat", e))?
            .len();
        if self.config.fsync && !existed {
            sync_dir(path).map_err(|e| classify(path, "fsync directory of", e))?;
        }
        let next_index = rotated(path)
            .map_err(|e| classify(path, "list rotated files of", e))?
            .last()
            .map_or(1, |(n, _)| n + 1);
        Ok(Output {
            file,
            size,
            next_index,
        })
    }

    fn rotate(&mut self) -> Result<(), DeliveryError> {
        let path = self.config.path.clone();
        let Some(out) = self.output.take() else {
            return Ok(());
        };
        if self.config.fsync {
            out.file
                .sync_all()
                .map_err(|e| classify(&path, "fsync", e))?;
        }
        drop(out.file);
        let target = numbered(&path, out.next_index);
        std::fs::rename(&path, &target).map_err(|e| classify(&path, "rotate", e))?;
        if let Some(keep) = self.config.max_files {
            let all = rotated(&path).map_err(|e| classify(&path, "list rotated files of", e))?;
            let excess = all.len().saturating_sub(keep as usize);
            for (_, old) in all.into_iter().take(excess) {
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), error = %e, "cannot delete an old rotated file");
                }
            }
        }
        // The new file (and the rename) reach the directory before the next line succeeds.
        let mut fresh = self.open()?;
        if self.config.fsync {
            sync_dir(&path).map_err(|e| classify(&path, "fsync directory of", e))?;
        }
        fresh.next_index = fresh.next_index.max(out.next_index + 1);
        self.output = Some(fresh);
        tracing::info!(file = %target.display(), "rotated");
        Ok(())
    }
}

/// `<path>.<n>`.
fn numbered(path: &Path, n: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

/// The rotated files of `path`, oldest (lowest number) first.
pub fn rotated(path: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Maps an I/O error to what the dispatcher should do about it.
pub fn classify(path: &Path, action: &str, error: std::io::Error) -> DeliveryError {
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
