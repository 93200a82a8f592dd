//! The deterministic task id (DESIGN.md section 3), a public contract:
//!
//! ```text
//! task_id   = hex(SHA-256(connector_name || 0x1F || dedup_key))[..32]
//! dedup_key = realm || 0x1F || event_id                       (delivery connectors)
//!           = realm || 0x1F || catalog || 0x1F || table_key   (purge; table uuid, else metadata location)
//! ```
//!
//! An event without an id uses `hex(SHA-256(canonical encoding))` as its event id, where the
//! canonical encoding is [`PolarisEvent::canonical_bytes`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::event::PolarisEvent;

/// The unit separator placed between the parts of a dedup key.
const SEPARATOR: u8 = 0x1F;

/// A task id: the first 16 bytes of a SHA-256, shown as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId([u8; 16]);

/// A string that is not 32 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a task id: expected 32 hex characters")]
pub struct InvalidTaskId(String);

impl TaskId {
    /// Hashes `connector || 0x1F || parts joined by 0x1F`.
    fn digest(connector: &str, parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(connector.as_bytes());
        for part in parts {
            hasher.update([SEPARATOR]);
            hasher.update(part.as_bytes());
        }
        let full = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        TaskId(id)
    }

    /// The id of the task that delivers event `event_id` of `realm` to a delivery connector.
    pub fn for_delivery(connector: &str, realm: &str, event_id: &str) -> Self {
        Self::digest(connector, &[realm, event_id])
    }

    /// The id of the task that delivers `event` to a delivery connector; an event without an
    /// id is identified by the SHA-256 of its canonical encoding.
    pub fn for_event(connector: &str, realm: &str, event: &PolarisEvent) -> Self {
        match event.event_id.as_deref() {
            Some(id) if !id.is_empty() => Self::for_delivery(connector, realm, id),
            _ => {
                let content_id = hex::encode(Sha256::digest(event.canonical_bytes()));
                Self::for_delivery(connector, realm, &content_id)
            }
        }
    }

    /// The id of a task keyed by `key` rather than by event ([`crate::TaskPlan::Keyed`]).
    pub fn for_key(connector: &str, realm: &str, key: &str) -> Self {
        Self::digest(connector, &[realm, key])
    }

    /// The id of the purge of one table: `table_key` is the table uuid, or the metadata
    /// location when the uuid is unknown. Equal to [`TaskId::for_key`] with the key
    /// `catalog || 0x1F || table_key`.
    pub fn for_purge(connector: &str, realm: &str, catalog: &str, table_key: &str) -> Self {
        Self::digest(connector, &[realm, catalog, table_key])
    }

    /// Rebuilds an id from its 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        TaskId(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for TaskId {
    type Err = InvalidTaskId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 16];
        if s.len() != 32 {
            return Err(InvalidTaskId(s.to_string()));
        }
        hex::decode_to_slice(s, &mut id).map_err(|_| InvalidTaskId(s.to_string()))?;
        Ok(TaskId(id))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.to_hex())
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors: changing any of them breaks every deployed task log's dedup.
    /// Computed independently with `printf 'file\x1fPOLARIS\x1f<id>' | sha256sum | cut -c1-32`.
    #[test]
    fn delivery_vectors() {
        assert_eq!(
            TaskId::for_delivery("file", "POLARIS", "8f7f3f2e-5b1c-4d7a-9a51-1d2b3c4d5e6f")
                .to_hex(),
            "2ab0748f35e6ea2791d436374c92b1ba"
        );
        assert_eq!(
            TaskId::for_delivery(
                "audit-webhook",
                "prod-realm",
                "00000000-0000-0000-0000-000000000001"
            )
            .to_hex(),
            "f17ae82378c500856ba179de15be2163"
        );
    }

    #[test]
    fn purge_vectors() {
        assert_eq!(
            TaskId::for_purge(
                "purge",
                "POLARIS",
                "prod",
                "6a1f2c3d-0000-4000-8000-000000000abc"
            )
            .to_hex(),
            "d05e1bd7f7a1fef0ba1a8804b80d5eba"
        );
        assert_eq!(
            TaskId::for_purge(
                "purge",
                "POLARIS",
                "prod",
                "s3://lake/db/t/metadata/00002-x.metadata.json"
            )
            .to_hex(),
            "f8779a47c6178f8a15bf0479ca68b9bf"
        );
    }

    #[test]
    fn keyed_ids_generalise_purge_ids() {
        let key = "prod\u{1f}6a1f2c3d-0000-4000-8000-000000000abc".to_string();
        assert_eq!(
            TaskId::for_key("purge", "POLARIS", &key),
            TaskId::for_purge(
                "purge",
                "POLARIS",
                "prod",
                "6a1f2c3d-0000-4000-8000-000000000abc"
            )
        );
    }

    #[test]
    fn separator_prevents_ambiguity() {
        assert_ne!(
            TaskId::for_delivery("a", "bc", "d"),
            TaskId::for_delivery("ab", "c", "d")
        );
        assert_ne!(
            TaskId::for_delivery("c", "r", "e1"),
            TaskId::for_delivery("c2", "r", "e1")
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = TaskId::for_delivery("file", "POLARIS", "x");
        assert_eq!(id.to_hex().parse::<TaskId>().unwrap(), id);
        assert!("abc".parse::<TaskId>().is_err());
        assert!("zz".repeat(16).parse::<TaskId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
    }
}
