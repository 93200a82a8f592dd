//! What one task becomes in Kafka: a CloudEvent in binary mode.
//!
//! Headers: `ce_specversion`, `ce_id` (the task id), `ce_source`, `ce_type`, `ce_subject`,
//! `ce_time`, `ce_traceparent` (when the event has a trace), `ce_dataschema` (when configured)
//! and `content-type`; the key is the resource identity, the value the event as JSON or Avro.

use polaris_bridge_api::cloudevents::Attributes;
use polaris_bridge_api::codec;
use polaris_bridge_api::Delivery;

use crate::config::{DataFormat, KafkaSinkConfig};

/// One record, ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEventRecord {
    /// The record key: the resource identity (realm/catalog/namespace/table), so that one
    /// table's events land in one partition, in order.
    pub key: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The data.
    pub value: Vec<u8>,
}

/// Builds the record of `delivery`.
pub fn build(delivery: &Delivery, config: &KafkaSinkConfig) -> CloudEventRecord {
    let attributes = Attributes::of(delivery);
    let mut headers: Vec<(String, String)> = attributes
        .pairs()
        .into_iter()
        .map(|(name, value)| (format!("ce_{name}"), value.to_string()))
        .collect();
    if let Some(schema) = &config.dataschema {
        headers.push(("ce_dataschema".into(), schema.clone()));
    }
    headers.push(("content-type".into(), config.format.content_type().into()));
    let value = match config.format {
        DataFormat::Json => codec::encode_polaris_json(&delivery.event),
        DataFormat::Avro => codec::encode_avro_raw(&delivery.event),
        DataFormat::AvroConfluent => {
            codec::encode_avro_confluent(&delivery.event, config.schema_id.unwrap_or_default())
        }
    };
    CloudEventRecord {
        key: attributes.subject,
        headers,
        value,
    }
}
