//! Builds connector instances from their configuration.
//!
//! Types: `file` (JSON lines or CloudEvents, `connectors/file`), `webhook` (one HTTP
//! endpoint, `connectors/webhook`), `kafka` (CloudEvents in Kafka binary mode,
//! `connectors/kafka`), `polaris-notify` (Polaris's Notification API,
//! `connectors/polaris-notify`), `purge` (DROP TABLE PURGE executor, `connectors/purge`) and
//! `blackhole` (accepts and drops every task, optionally after a delay: for benchmarks, dry
//! runs and backpressure drills).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use polaris_bridge_api::{Connector, Delivery, DeliveryError, DeliveryOutcome, TaskContext};
use polaris_bridge_file::{FileConfig, FileConnector};
use polaris_bridge_kafka::{KafkaConnector, KafkaSinkConfig};
use polaris_bridge_polaris_notify::{NotifyConfig, PolarisNotifyConnector};
use polaris_bridge_purge::{PurgeConfig, PurgeConnector};
use polaris_bridge_webhook::config::WebhookConfig;
use polaris_bridge_webhook::WebhookConnector;
use serde::Deserialize;

use crate::config::{ConfigError, ConnectorSpec, Problem};

/// The connector types this build knows.
pub const KINDS: &[&str] = &[
    "file",
    "webhook",
    "kafka",
    "polaris-notify",
    "purge",
    "blackhole",
];

/// Builds the connector described by `spec`, validating its type-specific settings.
pub fn build(spec: &ConnectorSpec) -> Result<Arc<dyn Connector>, ConfigError> {
    let key = format!("connectors.{}", spec.name);
    let settings = toml::Value::Table(spec.settings.clone());
    let invalid = |e: toml::de::Error| {
        ConfigError::Invalid(vec![Problem {
            key: key.clone(),
            problem: e.to_string().trim().to_string(),
            fix: format!("see the README's `{}` connector settings", spec.kind),
        }])
    };
    let rejected = |problem: String| {
        ConfigError::Invalid(vec![Problem {
            key: key.clone(),
            problem,
            fix: format!("see the README's `{}` connector settings", spec.kind),
        }])
    };
    match spec.kind.as_str() {
        "file" => {
            let config = FileConfig::deserialize(settings).map_err(invalid)?;
            Ok(Arc::new(FileConnector::new(config).map_err(rejected)?))
        }
        "kafka" => {
            let config = KafkaSinkConfig::deserialize(settings).map_err(invalid)?;
            Ok(Arc::new(KafkaConnector::new(config).map_err(rejected)?))
        }
        "polaris-notify" => {
            let config = NotifyConfig::deserialize(settings).map_err(invalid)?;
            Ok(Arc::new(
                PolarisNotifyConnector::new(&spec.name, config).map_err(rejected)?,
            ))
        }
        "purge" => {
            let config = PurgeConfig::deserialize(settings).map_err(invalid)?;
            let connector = PurgeConnector::new(&spec.name, config).map_err(|problems| {
                ConfigError::Invalid(
                    problems
                        .into_iter()
                        .map(|p| Problem {
                            key: format!("{key}.{}", p.key),
                            problem: p.problem,
                            fix: "see the README's `purge` connector settings".into(),
                        })
                        .collect(),
                )
            })?;
            Ok(Arc::new(connector))
        }
        "blackhole" => {
            let config = BlackholeConfig::deserialize(settings).map_err(invalid)?;
            Ok(Arc::new(Blackhole { config }))
        }
        "webhook" => {
            let config = WebhookConfig::deserialize(settings).map_err(invalid)?;
            let connector = WebhookConnector::new(&spec.name, config, spec.concurrency, |var| {
                std::env::var(var).ok()
            })
            .map_err(|problems| {
                ConfigError::Invalid(
                    problems
                        .into_iter()
                        .map(|p| Problem {
                            key: format!("{key}.{}", p.key),
                            problem: p.problem,
                            fix: p.fix,
                        })
                        .collect(),
                )
            })?;
            Ok(Arc::new(connector))
        }
        other => Err(ConfigError::Invalid(vec![Problem {
            key: format!("{key}.type"),
            problem: format!("`{other}` is not a connector type"),
            fix: format!("use one of: {}", KINDS.join(", ")),
        }])),
    }
}

/// Settings of a `blackhole` connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// How long each delivery takes before it succeeds.
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
}

/// Accepts every task (after the configured delay) and does nothing with it.
pub struct Blackhole {
    config: BlackholeConfig,
}

#[async_trait]
impl Connector for Blackhole {
    fn kind(&self) -> &'static str {
        "blackhole"
    }

    async fn deliver(
        &self,
        _delivery: &Delivery,
        _context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        if let Some(delay) = self.config.delay {
            tokio::time::sleep(delay).await;
        }
        Ok(DeliveryOutcome::Delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryConfig;

    fn spec(kind: &str, settings: &str) -> ConnectorSpec {
        ConnectorSpec {
            name: "c".into(),
            kind: kind.into(),
            concurrency: 1,
            retry: RetryConfig::default(),
            ordered: true,
            settings: toml::from_str(settings).unwrap(),
        }
    }

    #[test]
    fn builds_known_types_and_rejects_bad_settings() {
        assert_eq!(
            build(&spec("file", "path = \"/tmp/x\"")).unwrap().kind(),
            "file"
        );
        assert_eq!(
            build(&spec("blackhole", "delay = \"5ms\"")).unwrap().kind(),
            "blackhole"
        );
        let err = build(&spec("file", "path = \"/tmp/x\"\npaht = 1"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("connectors.c") && err.contains("paht"),
            "{err}"
        );
        assert_eq!(
            build(&spec(
                "purge",
                "policy = \"always\"\nbatch_size = 500\n[s3]\nregion = \"eu-west-1\""
            ))
            .unwrap()
            .kind(),
            "purge"
        );
        let err = build(&spec("purge", "batch_size = 5000"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("connectors.c.batch_size"), "{err}");
        let err = build(&spec("file", "")).err().unwrap().to_string();
        assert!(err.contains("path"), "{err}");
        let err = build(&spec("webhok", "")).err().unwrap().to_string();
        assert!(err.contains("connectors.c.type"), "{err}");
        for kind in KINDS {
            assert!(err.contains(kind), "the fix lists `{kind}`: {err}");
        }
    }
}
