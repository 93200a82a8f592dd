//! Realistic, deterministic sample events for the demo, the `produce` command and tests.
//!
//! [`sample_event`]`(i, seed)` depends only on `i` and `seed`, so any slice of a sample stream
//! can be regenerated. Events spread over three catalogs, several namespaces and tables: table
//! create / update / drop (some with purge and the file locations a purge needs), renames,
//! refreshes, views, namespaces, catalogs, policies, transactions and tasks, BEFORE and AFTER.
//! Timestamps rise from 2026-05-01T10:00:00Z by about a second per event.

use std::collections::BTreeMap;

use crate::event::types::EventType;
use crate::event::{OtelContext, PolarisEvent};

/// 2026-05-01T10:00:00Z, the time of sample event 0.
pub const SAMPLE_EPOCH_MS: i64 = 1_777_629_600_000;

/// The warehouse root of the sample tables' locations.
pub const SAMPLE_WAREHOUSE: &str = "file:///tmp/warehouse";

const REALMS: [&str; 3] = ["POLARIS", "POLARIS", "acme"];
const CATALOGS: [&str; 3] = ["prod", "staging", "analytics"];
const NAMESPACES: [&[&str]; 5] = [
    &["sales", "eu"],
    &["sales", "us"],
    &["marketing"],
    &["finance", "ledger"],
    &["raw"],
];
const TABLES: [&str; 6] = [
    "orders",
    "customers",
    "events",
    "invoices",
    "clicks",
    "payments",
];
const VIEWS: [&str; 3] = ["daily_revenue", "active_users", "top_products"];
const PRINCIPALS: [&str; 4] = ["root", "etl-service", "alice", "bob"];
const ROLES: [&str; 4] = ["service_admin", "catalog_admin", "data_engineer", "analyst"];

/// `count` sample events for `seed`: `sample_event(0, seed)` to `sample_event(count - 1, seed)`.
pub fn sample_events(count: usize, seed: u64) -> Vec<PolarisEvent> {
    (0..count as u64).map(|i| sample_event(i, seed)).collect()
}

/// The `i`-th sample event for `seed`.
pub fn sample_event(i: u64, seed: u64) -> PolarisEvent {
    let mut rng = XorShift::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let catalog = *rng.pick(&CATALOGS);
    let namespace = *rng.pick(&NAMESPACES);
    let table = *rng.pick(&TABLES);
    let phase_after = rng.below(4) != 0;

    let mut event = PolarisEvent::new(EventType::AfterListCatalogs);
    event.event_id = Some(rng.uuid());
    // About one second apart, strictly increasing whatever the jitter.
    event.timestamp_ms =
        Some(SAMPLE_EPOCH_MS + i as i64 * 1000 + i64::try_from(rng.below(1000)).unwrap_or(0));
    event.realm_id = Some((*rng.pick(&REALMS)).to_owned());
    if rng.below(10) != 0 {
        let principal = *rng.pick(&PRINCIPALS);
        event.principal = Some(principal.to_owned());
        let roles = rng.below(3) as usize;
        let first = rng.below(ROLES.len() as u64) as usize;
        event.activated_roles = (0..roles)
            .map(|k| ROLES[(first + k) % ROLES.len()].to_owned())
            .collect();
    }
    if rng.below(4) != 0 {
        event.request_id = Some(format!("req-{}", rng.hex(12)));
    }
    if rng.below(5) != 0 {
        event.otel = OtelContext {
            trace_id: Some(rng.hex(32)),
            span_id: Some(rng.hex(16)),
            sampled: Some("true".to_owned()),
            trace_flags: Some("01".to_owned()),
        };
    }
    event.catalog_name = Some(catalog.to_owned());

    let levels: Vec<String> = namespace.iter().map(|level| (*level).to_owned()).collect();
    let table_path = format!("{SAMPLE_WAREHOUSE}/{}/{table}", namespace.join("/"));
    let table_uuid = stable_uuid(seed, &[catalog, &namespace.join("."), table]);
    let metadata_file = |version: u64, rng: &mut XorShift| {
        format!(
            "{table_path}/metadata/{version:05}-{}.metadata.json",
            rng.uuid()
        )
    };
    let pick = |before, after| if phase_after { after } else { before };

    match rng.below(100) {
        // Table created: the AFTER event knows where its metadata lives.
        0..=13 => {
            event.namespace = Some(levels);
            if phase_after {
                event.event_type = EventType::AfterCreateTable;
                event.table_name = Some(table.to_owned());
                event.table_uuid = Some(table_uuid);
                event.table_location = Some(table_path.clone());
                event.metadata_location = Some(metadata_file(0, &mut rng));
            } else {
                event.event_type = EventType::BeforeCreateTable;
                event
                    .attributes
                    .insert("access_delegation_mode".into(), "vended-credentials".into());
            }
        }
        // Table updated (commits).
        14..=37 => {
            event.event_type = pick(EventType::BeforeUpdateTable, EventType::AfterUpdateTable);
            event.namespace = Some(levels);
            event.table_name = Some(table.to_owned());
            if phase_after {
                let version = 1 + rng.below(40);
                event.table_uuid = Some(table_uuid);
                event.metadata_location = Some(metadata_file(version, &mut rng));
            }
        }
        // Table dropped, a third of them with purge.
        38..=51 => {
            event.event_type = pick(EventType::BeforeDropTable, EventType::AfterDropTable);
            event.namespace = Some(levels);
            event.table_name = Some(table.to_owned());
            let purge = rng.below(3) == 0;
            event.purge_requested = Some(purge);
            if purge {
                let version = 1 + rng.below(40);
                event.table_uuid = Some(table_uuid);
                event.table_location = Some(table_path.clone());
                event.metadata_location = Some(metadata_file(version, &mut rng));
            }
        }
        // Table renamed, sometimes across namespaces.
        52..=57 => {
            event.event_type = pick(EventType::BeforeRenameTable, EventType::AfterRenameTable);
            let target = *rng.pick(&NAMESPACES);
            let mut source = levels;
            source.push(table.to_owned());
            let mut destination: Vec<String> = target.iter().map(|l| (*l).to_owned()).collect();
            destination.push(format!("{table}_v{}", 2 + rng.below(5)));
            event.rename_source = Some(source);
            event.rename_destination = Some(destination);
        }
        // Table refreshed (stock listener's table_identifier shape).
        58..=65 => {
            event.event_type = pick(EventType::BeforeRefreshTable, EventType::AfterRefreshTable);
            let mut identifier = levels;
            identifier.push(table.to_owned());
            event.table_identifier = Some(identifier);
        }
        // Views.
        66..=75 => {
            let view = *rng.pick(&VIEWS);
            match rng.below(3) {
                0 => {
                    event.event_type =
                        pick(EventType::BeforeRefreshView, EventType::AfterRefreshView);
                    let mut identifier = levels;
                    identifier.push(view.to_owned());
                    event.view_identifier = Some(identifier);
                }
                1 => {
                    event.event_type =
                        pick(EventType::BeforeCreateView, EventType::AfterCreateView);
                    event.namespace = Some(levels);
                    event.view_name = phase_after.then(|| view.to_owned());
                }
                _ => {
                    event.event_type = pick(EventType::BeforeDropView, EventType::AfterDropView);
                    event.namespace = Some(levels);
                    event.view_name = Some(view.to_owned());
                }
            }
        }
        // Namespaces.
        76..=83 => {
            event.event_type = match rng.below(3) {
                0 => pick(
                    EventType::BeforeCreateNamespace,
                    EventType::AfterCreateNamespace,
                ),
                1 => pick(
                    EventType::BeforeDropNamespace,
                    EventType::AfterDropNamespace,
                ),
                _ => pick(
                    EventType::BeforeUpdateNamespaceProperties,
                    EventType::AfterUpdateNamespaceProperties,
                ),
            };
            event.namespace = Some(levels);
        }
        // Catalogs.
        84..=88 => {
            event.event_type = match rng.below(3) {
                0 => pick(
                    EventType::BeforeCreateCatalog,
                    EventType::AfterCreateCatalog,
                ),
                1 => pick(
                    EventType::BeforeUpdateCatalog,
                    EventType::AfterUpdateCatalog,
                ),
                _ => pick(
                    EventType::BeforeDeleteCatalog,
                    EventType::AfterDeleteCatalog,
                ),
            };
        }
        // Policies (namespace as one string, as Polaris passes it).
        89..=92 => {
            event.event_type = pick(EventType::BeforeAttachPolicy, EventType::AfterAttachPolicy);
            event.namespace_name = Some(namespace.join("\u{1f}"));
            let policy = format!("compaction-{}", rng.below(4));
            event.attributes.insert("policy_name".into(), policy);
        }
        // Multi-table transactions.
        93..=96 => {
            event.event_type = pick(
                EventType::BeforeCommitTransaction,
                EventType::AfterCommitTransaction,
            );
            event
                .attributes
                .insert("table_changes".into(), (1 + rng.below(4)).to_string());
        }
        // Background tasks (no catalog).
        _ => {
            event.event_type = pick(EventType::BeforeAttemptTask, EventType::AfterAttemptTask);
            event.catalog_name = None;
            let mut attributes = BTreeMap::new();
            attributes.insert(
                "task_entity_id".to_owned(),
                (1000 + rng.below(9000)).to_string(),
            );
            attributes.insert("task_attempt".to_owned(), (1 + rng.below(3)).to_string());
            if phase_after {
                attributes.insert("task_success".to_owned(), "true".to_owned());
            }
            event.attributes = attributes;
        }
    }
    event
}

/// A UUID that depends only on `seed` and `parts`: the same table keeps its UUID across
/// events of one seed.
fn stable_uuid(seed: u64, parts: &[&str]) -> String {
    // FNV-1a over the parts, separated by a unit separator.
    let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for part in parts {
        for byte in part.bytes().chain([0x1f]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    XorShift::new(hash).uuid()
}

/// A tiny xorshift64* generator: deterministic, not cryptographic.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Scramble with splitmix64 so nearby seeds diverge; the state must not be zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0; the tiny modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `digits` lowercase hex digits.
    fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits + 16);
        while out.len() < digits {
            out.push_str(&format!("{:016x}", self.next()));
        }
        out.truncate(digits);
        out
    }

    /// A version-4-shaped UUID, 8-4-4-4-12 hex digits.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000; // variant 10
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_polaris_json;
    use crate::event::types::Phase;
    use std::collections::BTreeSet;

    #[test]
    fn samples_are_deterministic_and_seed_dependent() {
        assert_eq!(sample_events(50, 7), sample_events(50, 7));
        assert_ne!(sample_events(50, 7), sample_events(50, 8));
        assert_eq!(sample_events(10, 7)[9], sample_event(9, 7));
    }

    #[test]
    fn samples_are_varied_and_realistic() {
        let events = sample_events(500, 42);
        let ids: BTreeSet<_> = events.iter().map(|e| e.event_id.clone().unwrap()).collect();
        assert_eq!(ids.len(), events.len(), "event ids are unique");
        for id in &ids {
            assert_eq!(id.len(), 36);
            assert_eq!(id.matches('-').count(), 4);
        }
        assert!(events
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
        assert_eq!(
            events[0].timestamp_ms.unwrap() / 1000,
            SAMPLE_EPOCH_MS / 1000
        );

        let types: BTreeSet<_> = events
            .iter()
            .map(|e| e.event_type.name().to_owned())
            .collect();
        assert!(types.len() >= 25, "{types:?}");
        let catalogs: BTreeSet<_> = events
            .iter()
            .filter_map(|e| e.catalog_name.clone())
            .collect();
        assert_eq!(catalogs.len(), 3);
        assert!(events.iter().any(|e| e.phase() == Some(Phase::Before)));
        assert!(events.iter().any(|e| e.phase() == Some(Phase::After)));
        assert!(events.iter().any(|e| e.rename_source.is_some()));
        assert!(events.iter().any(|e| e.view_identifier.is_some()));
        assert!(events.iter().any(|e| e.namespace_name.is_some()));
        let purges: Vec<_> = events
            .iter()
            .filter(|e| {
                e.event_type == EventType::AfterDropTable && e.purge_requested == Some(true)
            })
            .collect();
        assert!(!purges.is_empty());
        for purge in purges {
            let location = purge.table_location.as_deref().unwrap();
            let metadata = purge.metadata_location.as_deref().unwrap();
            assert!(location.starts_with("file:///tmp/warehouse/"), "{location}");
            assert!(
                metadata.starts_with(&format!("{location}/metadata/")),
                "{metadata}"
            );
            assert!(metadata.ends_with(".metadata.json"), "{metadata}");
            assert!(purge.table_uuid.is_some());
        }

        let sizes: Vec<usize> = events
            .iter()
            .map(|e| encode_polaris_json(e).len())
            .collect();
        let average = sizes.iter().sum::<usize>() / sizes.len();
        assert!(
            (300..=800).contains(&average),
            "average stock JSON size {average}"
        );
        assert!(
            sizes.iter().all(|size| (150..=1000).contains(size)),
            "{sizes:?}"
        );
    }

    #[test]
    fn a_table_keeps_its_uuid() {
        let events = sample_events(2000, 3);
        let mut uuids = BTreeMap::new();
        for event in events.iter().filter(|e| e.table_uuid.is_some()) {
            let table = event.resource_identity("-");
            let uuid = event.table_uuid.clone();
            assert_eq!(uuids.entry(table).or_insert_with(|| uuid.clone()), &uuid);
        }
    }
}
