//! The `kafka` connector: produces each routed event as a CloudEvent in Kafka binary mode.
//!
//! - [`config`]: the settings (`[connectors.NAME]`, `type = "kafka"`).
//! - [`record`]: task -> record: `ce_*` headers (shared mapping in
//!   `polaris_bridge_api::cloudevents`), `content-type`, the resource identity as key, the
//!   event as JSON or Avro.
//! - [`error`]: producer errors -> transient / permanent / misconfigured.
//!
//! The producer is idempotent with `acks=all`: a task succeeds once the broker has
//! acknowledged its record on every in-sync replica, and librdkafka's own retries neither
//! duplicate nor reorder records within a partition. A retried task (after a crash or a
//! timeout) may produce its record again; the copy carries the same `ce_id`.

pub mod config;
pub mod error;
pub mod record;

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use polaris_bridge_api::{Connector, Delivery, DeliveryError, DeliveryOutcome, TaskContext};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

pub use config::{DataFormat, KafkaSinkConfig};

/// Produces deliveries to a Kafka topic as CloudEvents.
pub struct KafkaConnector {
    config: KafkaSinkConfig,
    /// Rebuilt after a fatal error (an idempotent producer cannot continue after one).
    producer: RwLock<FutureProducer>,
}

impl KafkaConnector {
    /// Validates `config` and creates the producer (it connects lazily).
    pub fn new(config: KafkaSinkConfig) -> Result<Self, String> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let producer = create_producer(&config)?;
        Ok(KafkaConnector {
            config,
            producer: RwLock::new(producer),
        })
    }

    /// The settings.
    pub fn config(&self) -> &KafkaSinkConfig {
        &self.config
    }

    fn producer(&self) -> Result<FutureProducer, DeliveryError> {
        self.producer
            .read()
            .map(|p| p.clone())
            .map_err(|_| DeliveryError::transient("kafka producer lock poisoned"))
    }

    /// After a fatal error, replaces the producer so the next attempt starts afresh.
    fn rebuild_if_fatal(&self, producer: &FutureProducer) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        tracing::warn!(topic = %self.config.topic, ?code, %reason, "fatal producer error; rebuilding the producer");
        match create_producer(&self.config) {
            Ok(fresh) => {
                if let Ok(mut guard) = self.producer.write() {
                    *guard = fresh;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot rebuild the kafka producer"),
        }
    }
}

fn create_producer(config: &KafkaSinkConfig) -> Result<FutureProducer, String> {
    let mut client = ClientConfig::new();
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        );
    client
        .create()
        .map_err(|e| format!("cannot create the kafka producer: {e}"))
}

#[async_trait]
impl Connector for KafkaConnector {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn deliver(
        &self,
        delivery: &Delivery,
        _context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        let record = record::build(delivery, &self.config);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let producer = self.producer()?;
        let sent = producer
            .send(
                FutureRecord::to(&self.config.topic)
                    .key(record.key.as_bytes())
                    .payload(&record.value)
                    .headers(headers),
                Timeout::After(self.config.delivery_timeout),
            )
            .await;
        match sent {
            Ok(done) => {
                tracing::debug!(topic = %self.config.topic, partition = done.partition, offset = done.offset, "acknowledged");
                Ok(DeliveryOutcome::Delivered)
            }
            Err((error, _)) => {
                self.rebuild_if_fatal(&producer);
                Err(error::classify(&self.config.topic, &error))
            }
        }
    }

    /// Fetches the topic's metadata: the cluster answers and the topic exists.
    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        let producer = self.producer()?;
        let topic = self.config.topic.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|e| {
                    DeliveryError::transient(format!("kafka metadata for {topic}: {e}"))
                })?;
            match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                Some(t) => Err(DeliveryError::transient(format!(
                    "topic {topic}: {:?}",
                    t.error()
                ))),
                None => Err(DeliveryError::transient(format!("topic {topic} not found"))),
            }
        })
        .await;
        checked.unwrap_or_else(|e| Err(DeliveryError::transient(format!("healthcheck: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::connector::SourcePosition;
    use polaris_bridge_api::event::EventType;
    use polaris_bridge_api::{PolarisEvent, TaskId};

    fn config(extra: &str) -> Result<KafkaSinkConfig, toml::de::Error> {
        toml::from_str(&format!(
            "bootstrap_servers = \"127.0.0.1:9\"\ntopic = \"out\"\n{extra}"
        ))
    }

    #[test]
    fn settings_are_validated() {
        assert!(KafkaConnector::new(config("").unwrap()).is_ok());
        assert!(config("topik = \"x\"").is_err(), "unknown keys refused");
        let err = KafkaConnector::new(config("format = \"avro-confluent\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("schema_id"), "{err}");
        let err = KafkaConnector::new(config("[properties]\nacks = \"1\"").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("acks"), "{err}");
        assert!(KafkaConnector::new(
            config("[properties]\n\"compression.type\" = \"lz4\"").unwrap()
        )
        .is_ok());
    }

    #[test]
    fn record_has_binary_mode_headers_key_and_data() {
        let mut event = PolarisEvent::new(EventType::AfterUpdateTable);
        event.event_id = Some("e1".into());
        event.timestamp_ms = Some(1_777_629_600_000);
        event.catalog_name = Some("prod".into());
        event.namespace = Some(vec!["sales".into()]);
        event.table_name = Some("orders".into());
        let delivery = Delivery {
            task_id: TaskId::for_delivery("out", "POLARIS", "e1"),
            connector: "out".into(),
            attempt: 1,
            realm: "POLARIS".into(),
            event,
            source: SourcePosition {
                topic: "in".into(),
                partition: 0,
                offset: 1,
            },
            checkpoint: None,
        };
        let cfg = config("dataschema = \"https://example.com/polaris_event.avsc\"").unwrap();
        let record = record::build(&delivery, &cfg);
        assert_eq!(record.key, "POLARIS/prod/sales/orders");
        let names: Vec<&str> = record.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "ce_subject",
                "ce_time",
                "ce_dataschema",
                "content-type"
            ]
        );
        assert_eq!(record.headers[1].1, delivery.task_id.to_hex());
        assert_eq!(record.headers[5].1, "2026-05-01T10:00:00.000Z");
        assert_eq!(record.headers[7].1, "application/json");
        let back = polaris_bridge_api::codec::decode_polaris_json(None, &record.value).unwrap();
        assert_eq!(back, delivery.event);

        let avro = record::build(&delivery, &config("format = \"avro\"").unwrap());
        assert_eq!(avro.headers.last().unwrap().1, "application/avro");
        let back = polaris_bridge_api::codec::avro::decode_avro_raw(None, &avro.value).unwrap();
        assert_eq!(back, delivery.event);
    }
}
