//! The `purge` connector of polaris-bridge: the executor of `DROP TABLE ... PURGE`.
//!
//! An `AFTER_DROP_TABLE` event whose catalog's policy says so becomes one purge task, keyed
//! by `catalog || 0x1F || table uuid` (else the metadata location), so duplicate drop events
//! collapse into one purge. The task reads the table's `metadata.json`, streams its manifest
//! lists and manifests, and deletes every file the metadata reaches, in Polaris's order, in
//! rate-limited bulk batches, never outside the table location or the allowed prefixes, with
//! a checkpoint in the task record after every batch and manifest.
//!
//! Modules: [`config`] (settings, policy), [`safety`] (path containment), [`store`]
//! (object_store construction), [`discovery`] (metadata, manifest lists, manifests),
//! [`deletion`] (batches, rate limits), [`executor`] (order, checkpoints), [`stats`]
//! (statistics, checkpoint format, metrics).

pub mod config;
pub mod deletion;
pub mod discovery;
pub mod executor;
pub mod safety;
pub mod stats;
pub mod store;

use async_trait::async_trait;
use polaris_bridge_api::{
    Connector, Delivery, DeliveryError, DeliveryOutcome, PolarisEvent, TaskContext, TaskPlan,
};

pub use config::{Policy, PurgeConfig};
pub use executor::{FileKind, Progress, PurgeError, PurgeOutcome, PurgeRequest, Purger};
/// The `object_store` crate this connector is built on (for tools and tests).
pub use object_store;
pub use stats::{Checkpoint, Stats};

/// The event type that triggers a purge.
pub const TRIGGER: &str = "AFTER_DROP_TABLE";

/// A `purge` connector instance.
pub struct PurgeConnector {
    name: String,
    purger: Purger,
}

impl PurgeConnector {
    /// Builds the connector named `name`; every problem with `config` otherwise.
    pub fn new(name: &str, config: PurgeConfig) -> Result<Self, Vec<config::ConfigProblem>> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PurgeConnector {
            name: name.to_string(),
            purger: Purger::new(config, name),
        })
    }

    /// Whether the policy asks to purge the table `event` drops.
    fn wanted(&self, event: &PolarisEvent) -> bool {
        if event.event_type.name() != TRIGGER {
            return false;
        }
        match self
            .purger
            .config()
            .policy_for(event.catalog_name.as_deref())
        {
            Policy::Never => false,
            Policy::Always => true,
            Policy::Requested => event.purge_requested == Some(true),
        }
    }
}

/// The dedup key of the purge of the table `event` drops: `catalog || 0x1F || table uuid`,
/// else `catalog || 0x1F || metadata location`; `None` when neither is known.
pub fn purge_key(event: &PolarisEvent) -> Option<String> {
    let catalog = event.catalog_name.as_deref().unwrap_or_default();
    let table = event
        .table_uuid
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(event.metadata_location.as_deref().filter(|m| !m.is_empty()))?;
    Some(format!("{catalog}\u{1f}{table}"))
}

/// Maps a purge error to what the dispatcher does next. Missing, corrupt or unsafe metadata
/// and failed deletes are retried (an operator may fix the store or `allowed_prefixes`
/// meanwhile) and dead-lettered with the reason once the retry policy gives up; a store this
/// build cannot reach is a configuration error.
pub fn classify(error: &PurgeError) -> DeliveryError {
    use store::StoreError;
    match error {
        PurgeError::Store(StoreError::NotCompiled { .. } | StoreError::Build { .. })
        | PurgeError::Delete(deletion::DeleteError::Store(
            StoreError::NotCompiled { .. } | StoreError::Build { .. },
        )) => DeliveryError::misconfigured(error.to_string()),
        PurgeError::Store(StoreError::Key { .. })
        | PurgeError::Delete(deletion::DeleteError::Store(StoreError::Key { .. })) => {
            DeliveryError::permanent(error.to_string())
        }
        _ => DeliveryError::transient(error.to_string()),
    }
}

/// Saves checkpoints through the dispatcher.
struct ContextProgress<'a> {
    context: &'a dyn TaskContext,
}

impl Progress for ContextProgress<'_> {
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), String> {
        self.context
            .checkpoint(&checkpoint.to_bytes())
            .map_err(|e| e.to_string())
    }

    fn would_delete(&mut self, kind: FileKind, location: &str, size: u64) {
        tracing::info!(kind = kind.name(), size, "dry run: would delete {location}");
    }
}

#[async_trait]
impl Connector for PurgeConnector {
    fn kind(&self) -> &'static str {
        "purge"
    }

    fn plan(&self, event: &PolarisEvent) -> TaskPlan {
        if !self.wanted(event) {
            return TaskPlan::Skip;
        }
        match purge_key(event) {
            Some(key) => TaskPlan::Keyed(key),
            // Dead-lettered at delivery with the reason; one task per event.
            None => TaskPlan::PerEvent,
        }
    }

    async fn deliver(
        &self,
        delivery: &Delivery,
        context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        let event = &delivery.event;
        if !self.wanted(event) {
            return Ok(DeliveryOutcome::AlreadyDone(format!(
                "the purge policy of catalog `{}` no longer asks for this purge: nothing deleted",
                event.catalog_name.as_deref().unwrap_or_default()
            )));
        }
        let Some(metadata_location) = event.metadata_location.clone().filter(|m| !m.is_empty())
        else {
            return Err(DeliveryError::permanent(format!(
                "metadata location unknown: the {TRIGGER} event of table `{}` in catalog `{}` \
                 carries none (the stock polaris-json format never does) and the table index had \
                 no entry for it; use the avro format or enable the loadTable lookup",
                event
                    .namespace_path()
                    .map(|ns| format!("{ns}.{}", event.object_name().unwrap_or_default()))
                    .unwrap_or_else(|| event.object_name().unwrap_or_default().to_string()),
                event.catalog_name.as_deref().unwrap_or_default()
            )));
        };
        let config = self.purger.config();
        let request = PurgeRequest {
            metadata_location: metadata_location.clone(),
            table_location: event.table_location.clone().filter(|l| !l.is_empty()),
            dry_run: config.dry_run,
            checkpoint: delivery
                .checkpoint
                .as_deref()
                .and_then(Checkpoint::from_bytes),
        };
        let mut progress = ContextProgress { context };
        match self.purger.purge(&request, &mut progress).await {
            Ok(PurgeOutcome::Purged(cp)) => {
                let s = &cp.stats;
                if request.dry_run {
                    tracing::info!(connector = %self.name, metadata = %metadata_location, files = s.files_deleted, bytes = s.bytes_deleted, "dry run finished");
                    // The record keeps the dry run's figures; nothing was deleted.
                    let _ = context.checkpoint(&cp.to_bytes());
                    return Ok(DeliveryOutcome::AlreadyDone(format!(
                        "dry run: would delete {} files ({} bytes); nothing deleted",
                        s.files_deleted, s.bytes_deleted
                    )));
                }
                tracing::info!(
                    connector = %self.name,
                    metadata = %metadata_location,
                    files = s.files_deleted,
                    bytes = s.bytes_deleted,
                    requests = s.requests,
                    failures = s.failures,
                    duration_ms = s.duration_ms,
                    attempts = s.attempts,
                    "table purged"
                );
                Ok(DeliveryOutcome::Delivered)
            }
            Ok(PurgeOutcome::MetadataGone(_)) => Ok(DeliveryOutcome::AlreadyDone(format!(
                "metadata file `{metadata_location}` not found: the table was already purged \
                 (by an earlier attempt or another process), nothing to delete"
            ))),
            Ok(PurgeOutcome::AlreadyDone(_)) => Ok(DeliveryOutcome::AlreadyDone(
                "purge finished by an earlier attempt".into(),
            )),
            Err(e) => Err(classify(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::event::EventType;
    use polaris_bridge_api::TaskId;

    fn drop_event(purge: Option<bool>, uuid: Option<&str>, metadata: Option<&str>) -> PolarisEvent {
        let mut e = PolarisEvent::new(EventType::from_name("AFTER_DROP_TABLE"));
        e.catalog_name = Some("prod".into());
        e.purge_requested = purge;
        e.table_uuid = uuid.map(str::to_string);
        e.metadata_location = metadata.map(str::to_string);
        e
    }

    fn connector(config: PurgeConfig) -> PurgeConnector {
        PurgeConnector::new("purge", config).unwrap()
    }

    #[test]
    fn plans_one_keyed_task_per_table() {
        let c = connector(PurgeConfig::default());
        let uuid = "6a1f2c3d-0000-4000-8000-000000000abc";
        let plan = c.plan(&drop_event(Some(true), Some(uuid), Some("s3://b/t/m.json")));
        let TaskPlan::Keyed(key) = plan else {
            panic!("{plan:?}")
        };
        // The README's fixed vector.
        assert_eq!(
            TaskId::for_key("purge", "POLARIS", &key).to_hex(),
            "d05e1bd7f7a1fef0ba1a8804b80d5eba"
        );
        assert_eq!(
            c.plan(&drop_event(Some(true), None, Some("s3://b/t/m.json"))),
            TaskPlan::Keyed("prod\u{1f}s3://b/t/m.json".into())
        );
        assert_eq!(
            c.plan(&drop_event(Some(true), None, None)),
            TaskPlan::PerEvent
        );
    }

    #[test]
    fn policies() {
        let requested = connector(PurgeConfig::default());
        assert_eq!(
            requested.plan(&drop_event(Some(false), Some("u"), None)),
            TaskPlan::Skip
        );
        assert_eq!(
            requested.plan(&drop_event(None, Some("u"), None)),
            TaskPlan::Skip
        );
        let mut create = drop_event(Some(true), Some("u"), None);
        create.event_type = EventType::from_name("AFTER_CREATE_TABLE");
        assert_eq!(requested.plan(&create), TaskPlan::Skip);
        let mut before = drop_event(Some(true), Some("u"), None);
        before.event_type = EventType::from_name("BEFORE_DROP_TABLE");
        assert_eq!(requested.plan(&before), TaskPlan::Skip);

        let mut config = PurgeConfig {
            policy: Policy::Never,
            ..PurgeConfig::default()
        };
        config.catalogs.insert("prod".into(), Policy::Always);
        let per_catalog = connector(config);
        assert!(matches!(
            per_catalog.plan(&drop_event(None, Some("u"), None)),
            TaskPlan::Keyed(_)
        ));
        let mut other = drop_event(Some(true), Some("u"), None);
        other.catalog_name = Some("dev".into());
        assert_eq!(per_catalog.plan(&other), TaskPlan::Skip);
    }

    #[test]
    fn bad_settings_are_refused() {
        let problems = PurgeConnector::new(
            "p",
            PurgeConfig {
                batch_size: 0,
                ..PurgeConfig::default()
            },
        )
        .err()
        .unwrap();
        assert_eq!(problems[0].key, "batch_size");
    }
}
