//! One delivery as one line of JSON.

use polaris_bridge_api::cloudevents::Attributes;
use polaris_bridge_api::connector::SourcePosition;
use polaris_bridge_api::{Delivery, DeliveryError, PolarisEvent};
use serde::Serialize;

use crate::config::LineFormat;

/// The `lines` shape.
#[derive(Serialize)]
struct Line<'a> {
    task_id: String,
    connector: &'a str,
    attempt: u32,
    realm: &'a str,
    source: &'a SourcePosition,
    event: &'a PolarisEvent,
}

/// The line of `delivery` in `format`, with its newline.
pub fn line(delivery: &Delivery, format: LineFormat) -> Result<Vec<u8>, DeliveryError> {
    let serialized = match format {
        LineFormat::Lines => serde_json::to_vec(&Line {
            task_id: delivery.task_id.to_hex(),
            connector: &delivery.connector,
            attempt: delivery.attempt,
            realm: &delivery.realm,
            source: &delivery.source,
            event: &delivery.event,
        }),
        LineFormat::Cloudevents => {
            let attributes = Attributes::of(delivery);
            serde_json::to_vec(&attributes.structured(&delivery.event))
        }
    };
    let mut bytes =
        serialized.map_err(|e| DeliveryError::permanent(format!("event not serialisable: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}
