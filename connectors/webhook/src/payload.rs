//! The request body: a CloudEvents 1.0 event, in HTTP structured mode (the default) or
//! binary mode.
//!
//! - `id`: the task id, the same on every retry (receivers may drop duplicates on
//!   `source` + `id`);
//! - `source`: `polaris://<realm>/<catalog>` (`polaris://<realm>` for events without one);
//! - `type`: `org.apache.polaris.<EVENT_TYPE>`, e.g. `org.apache.polaris.AFTER_DROP_TABLE`;
//! - `subject`: the resource identity, `realm/catalog/namespace.path/name`;
//! - `time`: the event's timestamp (RFC 3339), when known;
//! - `data`: the event, as `polaris-bridge decode` prints it.
//!
//! When the event carries an OpenTelemetry context, the request also has a W3C
//! `traceparent` header (the CloudEvents distributed tracing extension).

use polaris_bridge_api::cloudevents::Attributes;
use polaris_bridge_api::Delivery;

use crate::config::Mode;

/// Content type of a structured-mode body.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Content type of the data (binary mode body).
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// The body and the CloudEvents headers of one request.
#[derive(Debug)]
pub struct Payload {
    /// `(name, value)` pairs, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The exact bytes that are signed and sent.
    pub body: Vec<u8>,
}

/// Builds the request content for `delivery` in `mode`, with the attributes of the shared
/// CloudEvents mapping (`polaris_bridge_api::cloudevents`).
pub fn build(mode: Mode, delivery: &Delivery) -> Payload {
    let ce = Attributes::of(delivery);
    let mut headers = Vec::with_capacity(8);
    if let Some(traceparent) = &ce.traceparent {
        headers.push(("traceparent".to_string(), traceparent.clone()));
    }
    // Serializing the event model cannot fail: every map key is a string.
    let body = match mode {
        Mode::Structured => {
            headers.push((
                "content-type".to_string(),
                STRUCTURED_CONTENT_TYPE.to_string(),
            ));
            serde_json::to_vec(&ce.structured(&delivery.event)).unwrap_or_default()
        }
        Mode::Binary => {
            headers.push(("content-type".to_string(), DATA_CONTENT_TYPE.to_string()));
            for (name, value) in ce.pairs() {
                if name != "traceparent" {
                    headers.push((format!("ce-{name}"), header_safe(value)));
                }
            }
            serde_json::to_vec(&delivery.event).unwrap_or_default()
        }
    };
    Payload { headers, body }
}

/// A header value keeps printable ASCII; anything else is percent-encoded (as the
/// CloudEvents HTTP binding asks for non-ASCII attribute values).
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::connector::SourcePosition;
    use polaris_bridge_api::event::EventType;
    use polaris_bridge_api::{PolarisEvent, TaskId};

    fn delivery() -> Delivery {
        let mut event = PolarisEvent::new(EventType::AfterDropTable);
        event.event_id = Some("00000000-0000-0000-0000-000000000001".into());
        event.timestamp_ms = Some(1_777_629_600_123);
        event.catalog_name = Some("prod cat".into());
        event.namespace = Some(vec!["sales".into(), "eu".into()]);
        event.table_name = Some("orders".into());
        event.otel.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        event.otel.span_id = Some("00f067aa0ba902b7".into());
        event.otel.sampled = Some("true".into());
        Delivery {
            task_id: TaskId::for_event("hook", "POLARIS", &event),
            connector: "hook".into(),
            attempt: 1,
            realm: "POLARIS".into(),
            event,
            source: SourcePosition {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
            checkpoint: None,
        }
    }

    #[test]
    fn structured_mode_is_a_complete_cloudevent() {
        let d = delivery();
        let payload = build(Mode::Structured, &d);
        let json: serde_json::Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["id"], d.task_id.to_hex());
        assert_eq!(json["source"], "polaris://POLARIS/prod%20cat");
        assert_eq!(json["type"], "org.apache.polaris.AFTER_DROP_TABLE");
        assert_eq!(json["subject"], "POLARIS/prod cat/sales.eu/orders");
        assert_eq!(json["time"], "2026-05-01T10:00:00.123Z");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["table_name"], "orders");
        assert_eq!(
            serde_json::from_value::<PolarisEvent>(json["data"].clone()).unwrap(),
            d.event
        );
        assert!(payload.headers.contains(&(
            "content-type".to_string(),
            STRUCTURED_CONTENT_TYPE.to_string()
        )));
        assert!(payload.headers.contains(&(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string()
        )));
        assert_eq!(
            build(Mode::Structured, &d).body,
            payload.body,
            "stable bytes"
        );
    }

    #[test]
    fn binary_mode_puts_attributes_in_headers() {
        let mut d = delivery();
        d.event.catalog_name = None;
        d.event.otel.span_id = None;
        let payload = build(Mode::Binary, &d);
        let get = |name: &str| {
            payload
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("ce-id").unwrap(), d.task_id.to_hex());
        assert_eq!(get("ce-source").unwrap(), "polaris://POLARIS");
        assert_eq!(
            get("ce-type").unwrap(),
            "org.apache.polaris.AFTER_DROP_TABLE"
        );
        assert_eq!(get("ce-subject").unwrap(), "POLARIS");
        assert_eq!(get("content-type").unwrap(), "application/json");
        assert_eq!(get("traceparent"), None, "incomplete context");
        let body: PolarisEvent = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(body, d.event);
        assert_eq!(header_safe("a/b é%"), "a/b %C3%A9%25");
    }
}
