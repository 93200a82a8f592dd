//! The table index: the last known table uuid, location and metadata location of each table,
//! learned from the events that carry them (the Avro format does, the stock JSON does not).
//!
//! The source consults it before routing: an event about a table that lacks the uuid or the
//! metadata location gets them from here, and records so in its attributes
//! (`bridge.enriched_from = "table-index"`). Connectors that need them (polaris-notify, purge)
//! then work from the stock JSON too, once the table has been seen in an event that carried
//! them.
//!
//! Tree `table_index`: key `realm 0x1F catalog 0x1F namespace levels joined by 0x1E 0x1F table`,
//! value a postcard [`TableEntry`]. Updates:
//! - an AFTER event of a table that carries any of the three fields stores them, unless the
//!   stored entry comes from a newer event (events of one table may arrive over several
//!   partitions); only what the event carried as decoded counts, not what the index filled
//!   in, so an enriched event neither rewrites the entry nor makes it look newer;
//! - `AFTER_RENAME_TABLE` moves the entry to the destination;
//! - `AFTER_DROP_TABLE` replaces it with a tombstone (no fields, the drop's time), after the
//!   drop itself has been enriched, so that a lookup answered before the drop cannot bring
//!   the dropped table back;
//! - a Polaris lookup ([`TableIndex::record_lookup`], see `crate::table_lookup`) stores what
//!   loadTable answered, unless the entry comes from a newer event.
//!
//! Create and register events are never enriched: a new table must not inherit what an earlier
//! table of the same name left behind.
//!
//! The index is written by the source thread and the lookup worker. The entries used last
//! (at most 4,096 tables) are held in memory, shared by every handle of one store's index:
//! an event reads its table's entry from there, and what the source learns is written to the
//! tree when the task log is flushed (the offsets of the events it came from are stored only
//! after that flush, so a crash loses nothing the events will not bring again). A lookup's
//! answer is written at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use polaris_bridge_api::event::{Category, EventType, Phase};
use polaris_bridge_api::PolarisEvent;
use serde::{Deserialize, Serialize};

use super::store::LogError;

/// The attribute set on an enriched event.
pub const ENRICHED_ATTRIBUTE: &str = "bridge.enriched_from";
/// Its value.
pub const ENRICHED_VALUE: &str = "table-index";

/// What the index knows about one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The Iceberg table uuid.
    pub table_uuid: Option<String>,
    /// The table's base location.
    pub table_location: Option<String>,
    /// The current metadata.json.
    pub metadata_location: Option<String>,
    /// Timestamp of the event these come from (ms; 0 when it had none).
    pub event_ms: i64,
}

impl TableEntry {
    /// What a drop leaves: nothing known, as of the drop.
    pub fn tombstone(event_ms: i64) -> Self {
        TableEntry {
            table_uuid: None,
            table_location: None,
            metadata_location: None,
            event_ms,
        }
    }

    /// Whether this is a drop's tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.table_uuid.is_none()
            && self.table_location.is_none()
            && self.metadata_location.is_none()
    }
}

fn encode_entry(entry: &TableEntry) -> Result<Vec<u8>, LogError> {
    postcard::to_stdvec(entry).map_err(|e| LogError::Corrupt {
        key: "table_index".into(),
        message: e.to_string(),
    })
}

fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<TableEntry, LogError> {
    postcard::from_bytes(bytes).map_err(|e| LogError::Corrupt {
        key: String::from_utf8_lossy(key).replace(['\u{1f}', '\u{1e}'], "/"),
        message: e.to_string(),
    })
}

/// Tables held in memory at most; past that, what is not written is written and the memory
/// is emptied.
const RECENT_TABLES_MAX: usize = 4096;

/// The table index, a sled tree beside the task log's. Clones share the entries in memory.
#[derive(Clone)]
pub struct TableIndex {
    tree: sled::Tree,
    recent: Arc<Mutex<RecentTables>>,
}

/// The entries read or learnt last, by key.
#[derive(Default)]
struct RecentTables {
    /// The entry of each table as the index knows it (`None`: no entry).
    entries: HashMap<Vec<u8>, RecentTable>,
}

/// One table's entry in memory.
struct RecentTable {
    entry: Option<TableEntry>,
    /// Whether the tree still holds an older entry.
    unwritten: bool,
}

impl RecentTables {
    /// Writes the entries not yet written to `tree` (a walk over at most
    /// [`RECENT_TABLES_MAX`] entries, once per flush). An entry is marked written only once
    /// it is, so a failed write is tried again by the next call.
    fn write_back(&mut self, tree: &sled::Tree) -> Result<(), LogError> {
        for (key, table) in self.entries.iter_mut().filter(|(_, t)| t.unwritten) {
            match &table.entry {
                Some(entry) => tree.insert(key.as_slice(), encode_entry(entry)?)?,
                None => tree.remove(key)?,
            };
            table.unwritten = false;
        }
        Ok(())
    }

    /// Holds `entry` as the table's (unwritten when `unwritten`), emptying the memory first
    /// when it is full.
    fn hold(
        &mut self,
        tree: &sled::Tree,
        key: &[u8],
        entry: Option<TableEntry>,
        unwritten: bool,
    ) -> Result<(), LogError> {
        if self.entries.len() >= RECENT_TABLES_MAX && !self.entries.contains_key(key) {
            self.write_back(tree)?;
            self.entries.clear();
        }
        match self.entries.get_mut(key) {
            Some(table) => {
                table.entry = entry;
                table.unwritten |= unwritten;
            }
            None => {
                self.entries
                    .insert(key.to_vec(), RecentTable { entry, unwritten });
            }
        }
        Ok(())
    }
}

/// The key of a table: realm, catalog, namespace levels, name.
fn key(realm: &str, catalog: &str, namespace: &[String], table: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(realm.as_bytes());
    key.push(0x1F);
    key.extend_from_slice(catalog.as_bytes());
    key.push(0x1F);
    for (i, level) in namespace.iter().enumerate() {
        if i > 0 {
            key.push(0x1E);
        }
        key.extend_from_slice(level.as_bytes());
    }
    key.push(0x1F);
    key.extend_from_slice(table.as_bytes());
    key
}

/// The key of the table `event` is about (a rename: its source), if it names one.
fn table_key(event: &PolarisEvent, realm: &str) -> Option<Vec<u8>> {
    if event.category() != Some(Category::Table) {
        return None;
    }
    let catalog = event.catalog_name.as_deref()?;
    let namespace = event.namespace_levels()?;
    let table = event.object_name()?;
    Some(key(realm, catalog, namespace, table))
}

impl TableIndex {
    /// Opens the index in `db`. Open it once per store and clone the handle: each opening
    /// holds entries in memory of its own (the task log keeps one, see
    /// [`super::TaskLog::table_index`]).
    pub fn open(db: &sled::Db) -> Result<TableIndex, LogError> {
        Ok(TableIndex {
            tree: db.open_tree("table_index")?,
            recent: Arc::default(),
        })
    }

    fn recent(&self) -> Result<MutexGuard<'_, RecentTables>, LogError> {
        self.recent
            .lock()
            .map_err(|_| LogError::Refused("table index lock poisoned".into()))
    }

    /// Writes what was learnt since the last call to the tree (the task log's flush calls it
    /// before it makes its writes durable).
    pub fn write_back(&self) -> Result<(), LogError> {
        self.recent()?.write_back(&self.tree)
    }

    /// What the index knows about a table.
    pub fn get(
        &self,
        realm: &str,
        catalog: &str,
        namespace: &[String],
        table: &str,
    ) -> Result<Option<TableEntry>, LogError> {
        Ok(self
            .get_key(&key(realm, catalog, namespace, table))?
            .filter(|entry| !entry.is_tombstone()))
    }

    /// Stores what a Polaris lookup, made for an event of `requested_ms`, found out about a
    /// table, unless the index holds something from a newer event (a drop's tombstone
    /// included). Returns whether it was stored.
    pub fn record_lookup(
        &self,
        realm: &str,
        catalog: &str,
        namespace: &[String],
        table: &str,
        found: &TableEntry,
    ) -> Result<bool, LogError> {
        let key = key(realm, catalog, namespace, table);
        let bytes = encode_entry(found)?;
        let mut recent = self.recent()?;
        if let Some(old) = Self::read(&mut recent, &self.tree, &key)? {
            if old.event_ms > found.event_ms
                || (old.is_tombstone() && old.event_ms >= found.event_ms)
            {
                return Ok(false);
            }
        }
        // Written at once: a lookup is rare, and its answer cost a call to Polaris.
        self.tree.insert(&key, bytes)?;
        recent.hold(&self.tree, &key, Some(found.clone()), false)?;
        Ok(true)
    }

    /// The entry under `key`: from memory, or read from the tree and then held.
    fn read(
        recent: &mut RecentTables,
        tree: &sled::Tree,
        key: &[u8],
    ) -> Result<Option<TableEntry>, LogError> {
        if let Some(table) = recent.entries.get(key) {
            return Ok(table.entry.clone());
        }
        let entry = tree
            .get(key)?
            .map(|bytes| decode_entry(key, &bytes))
            .transpose()?;
        recent.hold(tree, key, entry.clone(), false)?;
        Ok(entry)
    }

    fn get_key(&self, key: &[u8]) -> Result<Option<TableEntry>, LogError> {
        Self::read(&mut *self.recent()?, &self.tree, key)
    }

    /// Sets the entry under `key` (`None` removes it), written with the next write-back.
    fn put(&self, key: &[u8], entry: Option<TableEntry>) -> Result<(), LogError> {
        self.recent()?.hold(&self.tree, key, entry, true)
    }

    /// Number of entries (tombstones of dropped tables included).
    pub fn len(&self) -> Result<usize, LogError> {
        self.write_back()?;
        Ok(self.tree.len())
    }

    /// Whether the index has no entry at all.
    pub fn is_empty(&self) -> Result<bool, LogError> {
        self.write_back()?;
        Ok(self.tree.is_empty())
    }

    /// Enriches `event` (of `realm`) from the index, then learns from it. Returns whether
    /// the event was enriched. The stored entry is read at most once.
    pub fn observe(&self, event: &mut PolarisEvent, realm: &str) -> Result<bool, LogError> {
        let Some(key) = table_key(event, realm) else {
            return Ok(false);
        };
        let carried = Carried::of(event);
        let creates = matches!(
            event.event_type,
            EventType::BeforeCreateTable
                | EventType::AfterCreateTable
                | EventType::BeforeRegisterTable
                | EventType::AfterRegisterTable
        );
        let wants_enrichment = !(creates || carried.table_uuid && carried.metadata_location);
        let learns = event.phase() == Some(Phase::After)
            && (matches!(
                event.event_type,
                EventType::AfterDropTable | EventType::AfterRenameTable
            ) || carried.any());
        if !wants_enrichment && !learns {
            return Ok(false);
        }
        let stored = self.get_key(&key)?;
        let enriched = wants_enrichment && enrich(stored.as_ref(), event);
        if learns {
            self.learn(&key, event, carried, stored, realm)?;
        }
        Ok(enriched)
    }

    /// Updates the index from an AFTER event; `stored` is the entry under `key` as read
    /// before the event was enriched, `carried` what the event itself brought.
    fn learn(
        &self,
        key: &[u8],
        event: &PolarisEvent,
        carried: Carried,
        stored: Option<TableEntry>,
        realm: &str,
    ) -> Result<(), LogError> {
        let event_ms = event.timestamp_ms.unwrap_or(0);
        match event.event_type {
            EventType::AfterDropTable => {
                if stored.is_none_or(|old| old.event_ms <= event_ms) {
                    self.put(key, Some(TableEntry::tombstone(event_ms)))?;
                }
            }
            EventType::AfterRenameTable => {
                let (Some(catalog), Some(destination)) =
                    (event.catalog_name.as_deref(), &event.rename_destination)
                else {
                    return Ok(());
                };
                let Some((name, levels)) = destination.split_last() else {
                    return Ok(());
                };
                let old = stored.unwrap_or_else(|| TableEntry::tombstone(event_ms));
                let since = old.event_ms.max(event_ms);
                let entry = carried.over(event, old, since);
                self.put(key, None)?;
                if entry.table_uuid.is_some() || entry.metadata_location.is_some() {
                    self.put(&self::key(realm, catalog, levels, name), Some(entry))?;
                }
            }
            // Any other AFTER event, learnt from only for what it carried itself: what the
            // index filled in is no news, and must not make the entry look newer than it is.
            _ => {
                if stored.as_ref().is_some_and(|old| old.event_ms > event_ms) {
                    return Ok(());
                }
                let old = stored.unwrap_or_else(|| TableEntry::tombstone(event_ms));
                self.put(key, Some(carried.over(event, old, event_ms)))?;
            }
        }
        Ok(())
    }
}

/// Which of the three indexed fields an event carried as decoded, before enrichment.
#[derive(Debug, Clone, Copy)]
struct Carried {
    table_uuid: bool,
    table_location: bool,
    metadata_location: bool,
}

impl Carried {
    fn of(event: &PolarisEvent) -> Self {
        Carried {
            table_uuid: event.table_uuid.is_some(),
            table_location: event.table_location.is_some(),
            metadata_location: event.metadata_location.is_some(),
        }
    }

    fn any(self) -> bool {
        self.table_uuid || self.table_location || self.metadata_location
    }

    /// An entry as of `event_ms`: `event`'s values of the fields it carried, `old`'s of the
    /// others.
    fn over(self, event: &PolarisEvent, old: TableEntry, event_ms: i64) -> TableEntry {
        let own = |carried: bool, value: &Option<String>, old: Option<String>| {
            if carried {
                value.clone()
            } else {
                old
            }
        };
        TableEntry {
            table_uuid: own(self.table_uuid, &event.table_uuid, old.table_uuid),
            table_location: own(
                self.table_location,
                &event.table_location,
                old.table_location,
            ),
            metadata_location: own(
                self.metadata_location,
                &event.metadata_location,
                old.metadata_location,
            ),
            event_ms,
        }
    }
}

/// Fills the fields `event` lacks from `stored`, marking it enriched. Returns whether any
/// field was filled.
fn enrich(stored: Option<&TableEntry>, event: &mut PolarisEvent) -> bool {
    let Some(entry) = stored else {
        return false;
    };
    let mut changed = false;
    for (field, known) in [
        (&mut event.table_uuid, &entry.table_uuid),
        (&mut event.table_location, &entry.table_location),
        (&mut event.metadata_location, &entry.metadata_location),
    ] {
        if field.is_none() && known.is_some() {
            field.clone_from(known);
            changed = true;
        }
    }
    if changed {
        event
            .attributes
            .insert(ENRICHED_ATTRIBUTE.into(), ENRICHED_VALUE.into());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn event(kind: EventType, ms: i64) -> PolarisEvent {
        let mut e = PolarisEvent::new(kind);
        e.timestamp_ms = Some(ms);
        e.catalog_name = Some("prod".into());
        e.namespace = Some(strings(&["sales", "eu"]));
        e.table_name = Some("orders".into());
        e
    }

    fn with_metadata(mut e: PolarisEvent, version: u32) -> PolarisEvent {
        e.table_uuid = Some("uuid-1".into());
        e.table_location = Some("s3://b/orders".into());
        e.metadata_location = Some(format!("s3://b/orders/metadata/{version:05}.metadata.json"));
        e
    }

    fn index() -> (tempfile::TempDir, TableIndex) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, TableIndex::open(&db).unwrap())
    }

    /// An index that learnt `prod.sales.eu.orders` (metadata version 1) from an event at 10.
    fn index_knowing_orders() -> (tempfile::TempDir, TableIndex) {
        let (dir, index) = index();
        index
            .observe(
                &mut with_metadata(event(EventType::AfterUpdateTable, 10), 1),
                "POLARIS",
            )
            .unwrap();
        (dir, index)
    }

    #[test]
    fn learns_from_avro_events_and_enriches_stock_json_ones() {
        let (_dir, index) = index();
        let mut create = with_metadata(event(EventType::AfterCreateTable, 10), 0);
        assert!(!index.observe(&mut create, "POLARIS").unwrap());
        let mut update = event(EventType::AfterUpdateTable, 20);
        assert!(index.observe(&mut update, "POLARIS").unwrap());
        assert_eq!(update.table_uuid.as_deref(), Some("uuid-1"));
        assert_eq!(
            update.metadata_location.as_deref(),
            Some("s3://b/orders/metadata/00000.metadata.json")
        );
        assert_eq!(
            update
                .attributes
                .get(ENRICHED_ATTRIBUTE)
                .map(String::as_str),
            Some("table-index")
        );

        // A newer metadata location replaces the old; an older event does not.
        let mut newer = with_metadata(event(EventType::AfterUpdateTable, 30), 3);
        index.observe(&mut newer, "POLARIS").unwrap();
        let mut late = with_metadata(event(EventType::AfterUpdateTable, 25), 2);
        index.observe(&mut late, "POLARIS").unwrap();
        let entry = index
            .get("POLARIS", "prod", &strings(&["sales", "eu"]), "orders")
            .unwrap()
            .unwrap();
        assert_eq!(
            entry.metadata_location.as_deref(),
            Some("s3://b/orders/metadata/00003.metadata.json")
        );
        assert_eq!(entry.event_ms, 30);

        // Another realm is another table; events carrying everything are left as they are.
        let mut other = event(EventType::AfterUpdateTable, 40);
        assert!(!index.observe(&mut other, "acme").unwrap());
        assert!(other.attributes.is_empty());
    }

    #[test]
    fn what_the_index_filled_in_does_not_make_its_entry_newer() {
        let (_dir, index) = index_knowing_orders();
        let orders = || {
            index
                .get("POLARIS", "prod", &strings(&["sales", "eu"]), "orders")
                .unwrap()
                .unwrap()
        };
        // A stock JSON commit at 30 is enriched with version 1, but knows nothing itself.
        let mut json = event(EventType::AfterUpdateTable, 30);
        assert!(index.observe(&mut json, "POLARIS").unwrap());
        assert_eq!(orders().event_ms, 10);
        // So a commit from 20 that arrives late over another partition still counts.
        let mut late = with_metadata(event(EventType::AfterUpdateTable, 20), 2);
        index.observe(&mut late, "POLARIS").unwrap();
        let entry = orders();
        assert_eq!(
            entry.metadata_location.as_deref(),
            Some("s3://b/orders/metadata/00002.metadata.json")
        );
        assert_eq!(entry.event_ms, 20);
        // An event that carries only the location keeps the uuid and metadata it lacks.
        let mut moved = event(EventType::AfterUpdateTable, 40);
        moved.table_location = Some("s3://c/orders".into());
        index.observe(&mut moved, "POLARIS").unwrap();
        let entry = orders();
        assert_eq!(entry.table_location.as_deref(), Some("s3://c/orders"));
        assert_eq!(entry.table_uuid.as_deref(), Some("uuid-1"));
        assert_eq!(
            entry.metadata_location.as_deref(),
            Some("s3://b/orders/metadata/00002.metadata.json")
        );
        assert_eq!(entry.event_ms, 40);
    }

    #[test]
    fn drops_enrich_then_forget_and_creates_are_never_enriched() {
        let (_dir, index) = index_knowing_orders();
        let mut before_drop = event(EventType::BeforeDropTable, 19);
        assert!(index.observe(&mut before_drop, "POLARIS").unwrap());
        let mut drop = event(EventType::AfterDropTable, 20);
        assert!(index.observe(&mut drop, "POLARIS").unwrap());
        assert_eq!(drop.table_uuid.as_deref(), Some("uuid-1"));
        let orders = || {
            index
                .get("POLARIS", "prod", &strings(&["sales", "eu"]), "orders")
                .unwrap()
        };
        assert_eq!(orders(), None, "forgotten after the drop");
        // A lookup answered for an event before the drop cannot bring the table back.
        let looked_up = |ms| TableEntry {
            table_uuid: Some("uuid-old".into()),
            table_location: Some("s3://b/orders".into()),
            metadata_location: Some("s3://b/orders/metadata/00001.metadata.json".into()),
            event_ms: ms,
        };
        let record = |entry: &TableEntry| {
            index
                .record_lookup(
                    "POLARIS",
                    "prod",
                    &strings(&["sales", "eu"]),
                    "orders",
                    entry,
                )
                .unwrap()
        };
        assert!(!record(&looked_up(15)));
        assert!(
            !record(&looked_up(20)),
            "same time as the drop: the drop wins"
        );
        assert_eq!(orders(), None);
        let mut create = event(EventType::AfterCreateTable, 30);
        assert!(!index.observe(&mut create, "POLARIS").unwrap());
        assert_eq!(create.table_uuid, None);
        // For an event after the drop (a new table of that name), a lookup is stored; an
        // older lookup does not overwrite a newer one.
        assert!(record(&looked_up(31)));
        assert_eq!(orders(), Some(looked_up(31)));
        assert!(!record(&looked_up(30)));
        assert_eq!(orders().unwrap().event_ms, 31);
    }

    #[test]
    fn renames_move_the_entry() {
        let (_dir, index) = index_knowing_orders();
        let mut rename = PolarisEvent::new(EventType::AfterRenameTable);
        rename.timestamp_ms = Some(20);
        rename.catalog_name = Some("prod".into());
        rename.rename_source = Some(strings(&["sales", "eu", "orders"]));
        rename.rename_destination = Some(strings(&["archive", "orders_2026"]));
        assert!(index.observe(&mut rename, "POLARIS").unwrap());
        assert_eq!(rename.table_uuid.as_deref(), Some("uuid-1"));
        assert!(index
            .get("POLARIS", "prod", &strings(&["sales", "eu"]), "orders")
            .unwrap()
            .is_none());
        let moved = index
            .get("POLARIS", "prod", &strings(&["archive"]), "orders_2026")
            .unwrap()
            .unwrap();
        assert_eq!(moved.table_uuid.as_deref(), Some("uuid-1"));
        assert_eq!(moved.event_ms, 20);
    }

    #[test]
    fn what_is_learnt_reaches_the_tree_on_write_back_even_past_a_full_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let index = TableIndex::open(&db).unwrap();
        let orders = |index: &TableIndex, name: &str| {
            index
                .get("POLARIS", "prod", &strings(&["sales", "eu"]), name)
                .unwrap()
        };
        index
            .observe(
                &mut with_metadata(event(EventType::AfterUpdateTable, 10), 1),
                "POLARIS",
            )
            .unwrap();
        assert!(orders(&index, "orders").is_some());
        assert!(
            orders(&TableIndex::open(&db).unwrap(), "orders").is_none(),
            "held in memory until the write-back"
        );
        index.write_back().unwrap();
        let written = orders(&TableIndex::open(&db).unwrap(), "orders").unwrap();
        assert_eq!(written.event_ms, 10);
        // More tables than memory holds: those let go are written first.
        for n in 0..RECENT_TABLES_MAX + 10 {
            let mut e = with_metadata(event(EventType::AfterUpdateTable, 20), 2);
            e.table_name = Some(format!("t{n}"));
            index.observe(&mut e, "POLARIS").unwrap();
        }
        let fresh = TableIndex::open(&db).unwrap();
        assert!(orders(&fresh, "t0").is_some());
        assert!(orders(&fresh, "t9").is_some());
        assert_eq!(index.len().unwrap(), RECENT_TABLES_MAX + 11);
        // A rename's removal is written back too.
        let mut rename = PolarisEvent::new(EventType::AfterRenameTable);
        rename.timestamp_ms = Some(30);
        rename.catalog_name = Some("prod".into());
        rename.rename_source = Some(strings(&["sales", "eu", "orders"]));
        rename.rename_destination = Some(strings(&["sales", "eu", "orders_old"]));
        index.observe(&mut rename, "POLARIS").unwrap();
        index.write_back().unwrap();
        let fresh = TableIndex::open(&db).unwrap();
        assert!(orders(&fresh, "orders").is_none());
        assert_eq!(orders(&fresh, "orders_old").unwrap().event_ms, 30);
    }
}
