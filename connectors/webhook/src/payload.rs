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

use polaris_bridge_api::event::timestamp::format_rfc3339_millis;
use polaris_bridge_api::{Delivery, PolarisEvent};
use serde::Serialize;

use crate::config::Mode;

/// `type` prefix.
pub const TYPE_PREFIX: &str = "org.apache.polaris.";
/// Content type of a structured-mode body.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Content type of the data (binary mode body).
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// A CloudEvent carrying one Polaris event.
#[derive(Debug, Serialize)]
pub struct CloudEvent<'a> {
    /// Always `1.0`.
    pub specversion: &'static str,
    /// The task id.
    pub id: String,
    /// `polaris://<realm>/<catalog>`.
    pub source: String,
    /// `org.apache.polaris.<EVENT_TYPE>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The resource identity.
    pub subject: String,
    /// The event's time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: &'static str,
    /// The event.
    pub data: &'a PolarisEvent,
}

impl<'a> CloudEvent<'a> {
    /// The CloudEvent of one delivery.
    pub fn of(delivery: &'a Delivery) -> Self {
        let event = &delivery.event;
        let mut source = format!("polaris://{}", encode(&delivery.realm));
        if let Some(catalog) = &event.catalog_name {
            source.push('/');
            source.push_str(&encode(catalog));
        }
        CloudEvent {
            specversion: "1.0",
            id: delivery.task_id.to_hex(),
            source,
            event_type: format!("{TYPE_PREFIX}{}", event.event_type.name()),
            subject: event.resource_identity(&delivery.realm),
            time: event.timestamp_ms.map(format_rfc3339_millis),
            datacontenttype: DATA_CONTENT_TYPE,
            data: event,
        }
    }
}

/// The body and the CloudEvents headers of one request.
#[derive(Debug)]
pub struct Payload {
    /// `(name, value)` pairs, names in lowercase.
    pub headers: Vec<(&'static str, String)>,
    /// The exact bytes that are signed and sent.
    pub body: Vec<u8>,
}

/// Builds the request content for `delivery` in `mode`.
pub fn build(mode: Mode, delivery: &Delivery) -> Payload {
    let ce = CloudEvent::of(delivery);
    let mut headers = Vec::with_capacity(8);
    if let Some(traceparent) = traceparent(&delivery.event) {
        headers.push(("traceparent", traceparent));
    }
    // Serializing the event model cannot fail: every map key is a string.
    let body = match mode {
        Mode::Structured => {
            headers.push(("content-type", STRUCTURED_CONTENT_TYPE.to_string()));
            serde_json::to_vec(&ce).unwrap_or_default()
        }
        Mode::Binary => {
            headers.push(("content-type", DATA_CONTENT_TYPE.to_string()));
            headers.push(("ce-specversion", ce.specversion.to_string()));
            headers.push(("ce-id", ce.id.clone()));
            headers.push(("ce-source", ce.source.clone()));
            headers.push(("ce-type", ce.event_type.clone()));
            headers.push(("ce-subject", header_safe(&ce.subject)));
            if let Some(time) = &ce.time {
                headers.push(("ce-time", time.clone()));
            }
            serde_json::to_vec(ce.data).unwrap_or_default()
        }
    };
    Payload { headers, body }
}

/// The W3C `traceparent` of the event's OpenTelemetry context, when it is complete and valid.
fn traceparent(event: &PolarisEvent) -> Option<String> {
    let trace = event.otel.trace_id.as_deref()?;
    let span = event.otel.span_id.as_deref()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(trace, 32) || !hex(span, 16) {
        return None;
    }
    let flags = match (
        event.otel.trace_flags.as_deref(),
        event.otel.sampled.as_deref(),
    ) {
        (Some(f), _) if hex(f, 2) => f.to_ascii_lowercase(),
        (_, Some("true")) => "01".to_string(),
        _ => "00".to_string(),
    };
    Some(format!(
        "00-{}-{}-{flags}",
        trace.to_ascii_lowercase(),
        span.to_ascii_lowercase()
    ))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
    use polaris_bridge_api::TaskId;

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
        assert!(payload
            .headers
            .contains(&("content-type", STRUCTURED_CONTENT_TYPE.to_string())));
        assert!(payload.headers.contains(&(
            "traceparent",
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
                .find(|(n, _)| *n == name)
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
