//! The drop ledger: the timestamp of every DROP sent per target table, kept in a small JSON
//! file (`<state_dir>/<connector>.drops.json`) so that a restart does not forget it.
//!
//! Before a CREATE or UPDATE is sent, the ledger is asked whether a DROP of that table at the
//! same time or later was already sent; if so the notification is skipped: sending it would
//! bring a dropped table back (Polaris forgets a table's last admitted timestamp when it drops
//! it, so it would accept the older state). The file is replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory) after every recorded DROP; entries recorded more
//! than `drop_retention` ago are pruned then.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    /// `catalog 0x1F namespace.path.table` -> the latest DROP sent.
    drops: BTreeMap<String, Dropped>,
}

/// One table's latest DROP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Dropped {
    /// The DROP's event timestamp (ms).
    timestamp_ms: i64,
    /// When it was recorded (wall clock, ms): what retention counts from.
    recorded_ms: i64,
}

/// The persistent DROP timestamps of one connector.
pub struct DropLedger {
    path: PathBuf,
    retention_ms: i64,
    drops: Mutex<BTreeMap<String, Dropped>>,
}

/// The ledger key of a table of the target catalog.
pub fn key(catalog: &str, table_path: &str) -> String {
    format!("{catalog}\u{1f}{table_path}")
}

impl DropLedger {
    /// Opens the ledger file of connector `name` in `dir` (missing: empty).
    pub fn open(dir: &Path, name: &str, retention: std::time::Duration) -> Result<Self, String> {
        let path = dir.join(format!("{name}.drops.json"));
        let drops = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<LedgerFile>(&bytes)
                    .map_err(|e| format!("drop ledger {} is corrupt: {e}; move it aside only if no older CREATE/UPDATE can still arrive", path.display()))?
                    .drops
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("drop ledger {}: {e}", path.display())),
        };
        Ok(DropLedger {
            path,
            retention_ms: retention.as_millis() as i64,
            drops: Mutex::new(drops),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest DROP timestamp sent for `key`.
    pub fn dropped_at(&self, key: &str) -> Option<i64> {
        self.drops.lock().ok()?.get(key).map(|d| d.timestamp_ms)
    }

    /// Records a DROP sent at `timestamp_ms` and makes it durable.
    pub fn record(&self, key: &str, timestamp_ms: i64, now_ms: i64) -> Result<(), String> {
        let mut drops = self
            .drops
            .lock()
            .map_err(|_| "drop ledger lock poisoned".to_string())?;
        let entry = drops.entry(key.to_string()).or_insert(Dropped {
            timestamp_ms,
            recorded_ms: now_ms,
        });
        entry.timestamp_ms = entry.timestamp_ms.max(timestamp_ms);
        entry.recorded_ms = now_ms;
        let cutoff = now_ms - self.retention_ms;
        drops.retain(|_, d| d.recorded_ms >= cutoff);
        let file = LedgerFile {
            version: 1,
            drops: drops.clone(),
        };
        write_atomically(
            &self.path,
            &serde_json::to_vec_pretty(&file).unwrap_or_default(),
        )
        .map_err(|e| format!("drop ledger {}: {e}", self.path.display()))
    }

    /// Checks that the directory is there and writable.
    pub fn check(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let probe = dir.join(".polaris-bridge-probe");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("state_dir {} is not writable: {e}", dir.display()))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remembers_drops_across_reopen_and_prunes_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        let ledger = DropLedger::open(dir.path(), "mirror", day).unwrap();
        let k = key("mirror", "sales.orders");
        assert_eq!(ledger.dropped_at(&k), None);
        // Event times long before now (a replay) are kept: retention counts from recording.
        let now = 10 * 86_400_000;
        ledger.record(&k, 1_000, now).unwrap();
        ledger.record(&k, 500, now).unwrap();
        assert_eq!(ledger.dropped_at(&k), Some(1_000), "the latest drop wins");
        let reopened = DropLedger::open(dir.path(), "mirror", day).unwrap();
        assert_eq!(reopened.dropped_at(&k), Some(1_000));
        // A day later another drop prunes the first.
        let later = now + 86_400_000 + 1;
        reopened
            .record(&key("mirror", "x.y"), 2_000, later)
            .unwrap();
        assert_eq!(reopened.dropped_at(&k), None);
        assert!(reopened.check().is_ok());
        std::fs::write(reopened.path(), b"{").unwrap();
        assert!(DropLedger::open(dir.path(), "mirror", day).is_err());
    }
}
