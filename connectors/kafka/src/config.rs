//! Settings of a `kafka` connector instance (`[connectors.NAME]` with `type = "kafka"`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How the event is encoded as the record's value (the CloudEvent's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// The stock Polaris listener's JSON plus the bridge's extension fields
    /// (`content-type: application/json`).
    #[default]
    Json,
    /// A raw Avro datum of `schemas/polaris_event.avsc` (`content-type: application/avro`).
    Avro,
    /// The same datum in Confluent wire format, with `schema_id`
    /// (`content-type: application/vnd.confluent.avro`).
    AvroConfluent,
}

impl DataFormat {
    /// The `content-type` header of the record.
    pub fn content_type(self) -> &'static str {
        match self {
            DataFormat::Json => "application/json",
            DataFormat::Avro => "application/avro",
            DataFormat::AvroConfluent => "application/vnd.confluent.avro",
        }
    }
}

/// The connector's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The cluster to produce to (may differ from the one the bridge consumes).
    pub bootstrap_servers: String,
    /// The topic every CloudEvent goes to.
    pub topic: String,
    /// `json` (default), `avro` or `avro-confluent`.
    #[serde(default)]
    pub format: DataFormat,
    /// The Schema Registry id written in the Confluent header (`avro-confluent` only).
    #[serde(default)]
    pub schema_id: Option<u32>,
    /// Optional `ce_dataschema` URI, e.g. where `polaris_event.avsc` is published.
    #[serde(default)]
    pub dataschema: Option<String>,
    /// How long librdkafka may try to deliver one record (`message.timeout.ms`) before the
    /// attempt fails transiently and the dispatcher retries it.
    #[serde(default = "default_delivery_timeout", with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Further librdkafka producer properties (security, compression, batching), except the
    /// ones the connector owns: see [`OWNED_PROPERTIES`].
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Producer properties the connector sets itself and refuses in `properties`.
pub const OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transactional.id",
];

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}

impl KafkaSinkConfig {
    /// Checks what serde cannot: returns one message per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topic.trim().is_empty() {
            problems.push("`topic` is empty".to_string());
        }
        if self.bootstrap_servers.trim().is_empty() {
            problems.push("`bootstrap_servers` is empty".to_string());
        }
        match (self.format, self.schema_id) {
            (DataFormat::AvroConfluent, None) => problems
                .push("`format = \"avro-confluent\"` needs `schema_id` (the Schema Registry id of polaris_event.avsc)".to_string()),
            (DataFormat::Json | DataFormat::Avro, Some(_)) => problems
                .push("`schema_id` applies only to `format = \"avro-confluent\"`".to_string()),
            _ => {}
        }
        for key in self.properties.keys() {
            if OWNED_PROPERTIES.contains(&key.as_str()) {
                problems.push(format!(
                    "`properties.\"{key}\"` is set by the connector (idempotent producer, acks=all, `delivery_timeout`); remove it"
                ));
            }
        }
        if self.delivery_timeout < Duration::from_secs(1) {
            problems.push("`delivery_timeout` must be at least 1s".to_string());
        }
        problems
    }
}
