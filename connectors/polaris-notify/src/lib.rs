//! The `polaris-notify` connector: mirrors table changes into an EXTERNAL catalog of another
//! Polaris through its Notification API.
//!
//! - [`config`]: the settings.
//! - [`notification`]: event -> notifications (CREATE, UPDATE, DROP; a rename is DROP +
//!   CREATE) and the request's path and body.
//! - [`auth`]: OAuth2 client credentials, the token cached and refreshed.
//! - [`client`]: one request and the classification of its answer.
//! - [`ledger`]: the DROP timestamps sent, kept on disk, so that an older CREATE/UPDATE never
//!   resurrects a dropped table.
//!
//! Per-table order comes from the dispatcher (`ordered = true`, the default): tasks of one
//! table run one at a time, in event order. The target enforces strictly newer timestamps
//! (409 otherwise), which makes every replay harmless.

pub mod auth;
pub mod client;
pub mod config;
pub mod ledger;
pub mod notification;

use std::time::SystemTime;

use async_trait::async_trait;
use polaris_bridge_api::event::timestamp::format_rfc3339_millis;
use polaris_bridge_api::{
    Connector, Delivery, DeliveryError, DeliveryOutcome, PolarisEvent, TaskContext, TaskPlan,
};

use crate::auth::{TokenError, TokenSource};
use crate::client::{NotifyClient, Reply};
pub use crate::config::{NotifyConfig, ValidateConfig};
use crate::ledger::DropLedger;
use crate::notification::{Kind, Notification};

/// Mirrors table events into an EXTERNAL catalog.
pub struct PolarisNotifyConnector {
    config: NotifyConfig,
    client: NotifyClient,
    ledger: DropLedger,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl PolarisNotifyConnector {
    /// Validates `config` and opens the drop ledger of connector `name`.
    pub fn new(name: &str, config: NotifyConfig) -> Result<Self, String> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let secret = config.secret()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("polaris-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let tokens = TokenSource::new(
            http.clone(),
            config.token_endpoint(),
            config.client_id.clone(),
            secret,
            config.scope.clone(),
            config.realm.clone(),
        );
        let client = NotifyClient::new(
            http,
            config.base().to_string(),
            config.catalog.clone(),
            config.realm.clone(),
            tokens,
        );
        if !config.state_dir.is_dir() {
            return Err(format!(
                "`state_dir` {} is not a directory: create it (it keeps the DROPs sent)",
                config.state_dir.display()
            ));
        }
        let ledger = DropLedger::open(&config.state_dir, name, config.drop_retention)?;
        Ok(PolarisNotifyConnector {
            config,
            client,
            ledger,
        })
    }

    /// Sends one notification, unless it would resurrect a dropped table.
    async fn apply(&self, notification: &Notification) -> Result<Reply, DeliveryError> {
        let key = ledger::key(&self.config.catalog, &notification.table_path());
        if matches!(notification.kind, Kind::Create | Kind::Update) {
            if let Some(dropped) = self.ledger.dropped_at(&key) {
                if dropped >= notification.timestamp_ms {
                    return Ok(Reply::AlreadyDone(format!(
                        "skipped {} of {} at {}: a DROP at {} was already sent; sending it would resurrect the dropped table",
                        notification.kind.name(),
                        notification.table_path(),
                        format_rfc3339_millis(notification.timestamp_ms),
                        format_rfc3339_millis(dropped)
                    )));
                }
            }
        }
        let reply = self.client.send(notification).await?;
        if notification.kind == Kind::Drop {
            self.ledger
                .record(&key, notification.timestamp_ms, now_ms())
                .map_err(DeliveryError::transient)?;
        }
        Ok(reply)
    }
}

#[async_trait]
impl Connector for PolarisNotifyConnector {
    fn kind(&self) -> &'static str {
        "polaris-notify"
    }

    /// Only AFTER events of created, registered, updated, dropped and renamed tables.
    fn plan(&self, event: &PolarisEvent) -> TaskPlan {
        if notification::handles(&event.event_type) {
            TaskPlan::PerEvent
        } else {
            TaskPlan::Skip
        }
    }

    async fn deliver(
        &self,
        delivery: &Delivery,
        context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        let notifications =
            notification::for_event(&delivery.event).map_err(DeliveryError::permanent)?;
        // A rename is two requests; the checkpoint says how many went through already.
        let done = delivery
            .checkpoint
            .as_deref()
            .and_then(|c| c.first().copied())
            .unwrap_or(0) as usize;
        let mut notes = Vec::new();
        let mut delivered = false;
        for (i, notification) in notifications.iter().enumerate().skip(done) {
            match self.apply(notification).await? {
                Reply::Accepted => delivered = true,
                Reply::AlreadyDone(note) => notes.push(note),
            }
            if i + 1 < notifications.len() {
                context
                    .checkpoint(&[(i + 1) as u8])
                    .map_err(|e| DeliveryError::transient(e.to_string()))?;
            }
        }
        if delivered || notes.is_empty() {
            Ok(DeliveryOutcome::Delivered)
        } else {
            Ok(DeliveryOutcome::AlreadyDone(notes.join("; ")))
        }
    }

    /// Obtains a token, then sends the configured VALIDATE notification (a dry run of
    /// privileges, allowed locations and that the catalog is EXTERNAL); checks the state
    /// directory is writable.
    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        self.ledger.check().map_err(DeliveryError::misconfigured)?;
        self.client.tokens().token().await.map_err(|e| match e {
            TokenError::Refused { .. } => DeliveryError::misconfigured(e.to_string()),
            TokenError::Unavailable { .. } => DeliveryError::transient(e.to_string()),
        })?;
        let Some(validate) = &self.config.validate else {
            return Ok(());
        };
        let probe = Notification {
            kind: Kind::Validate,
            namespace: validate.namespace.clone(),
            table: validate.table.clone(),
            timestamp_ms: now_ms(),
            table_uuid: "00000000-0000-0000-0000-000000000000".into(),
            metadata_location: validate.location.clone(),
        };
        match self.client.send(&probe).await {
            Ok(Reply::Accepted) => Ok(()),
            Ok(Reply::AlreadyDone(note)) => Err(DeliveryError::transient(format!(
                "VALIDATE answered {note}"
            ))),
            // A rejected dry run is a configuration problem whatever the status.
            Err(DeliveryError::Permanent { message }) => Err(DeliveryError::misconfigured(
                format!("VALIDATE failed: {message}"),
            )),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, extra: &str) -> NotifyConfig {
        toml::from_str(&format!(
            "uri = \"http://127.0.0.1:9/api/catalog\"\ncatalog = \"mirror\"\nclient_id = \"id\"\nclient_secret = \"s3cret\"\nstate_dir = \"{}\"\n{extra}",
            dir.display()
        ))
        .unwrap()
    }

    #[test]
    fn settings_are_checked_and_the_secret_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), "");
        assert_eq!(
            c.token_endpoint(),
            "http://127.0.0.1:9/api/catalog/v1/oauth/tokens"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(PolarisNotifyConnector::new("n", c).is_ok());
        let err = PolarisNotifyConnector::new(
            "n",
            config(dir.path(), "client_secret_env = \"X_UNSET_FOR_TEST\""),
        )
        .err()
        .unwrap();
        assert!(err.contains("exactly one"), "{err}");
        let missing = config(&dir.path().join("nope"), "");
        let err = PolarisNotifyConnector::new("n", missing).err().unwrap();
        assert!(err.contains("state_dir"), "{err}");
    }
}
