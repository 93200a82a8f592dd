//! The CloudEvents 1.0 attributes of a delivered task: one mapping shared by every connector
//! that emits CloudEvents (kafka, webhook, file).
//!
//! | attribute | value |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | the task id (32 hex characters): stable across retries, so `source` + `id` lets a receiver drop duplicates |
//! | `source` | `polaris://<realm>/<catalog>`, or `polaris://<realm>` for an event without a catalog |
//! | `type` | `org.apache.polaris.<EVENT_TYPE>`, e.g. `org.apache.polaris.AFTER_CREATE_TABLE` |
//! | `subject` | the resource identity, [`PolarisEvent::resource_identity`] (`POLARIS/prod/sales.eu/orders`) |
//! | `time` | the event's timestamp, RFC 3339 with milliseconds in UTC; absent when the event has none |
//! | `traceparent` | W3C trace context built from the event's OpenTelemetry ids (distributed tracing extension); absent without a trace and span id |
//!
//! Realm and catalog are percent-encoded in `source` (everything but RFC 3986 unreserved
//! characters), so `source` is always a valid URI reference.

use serde::Serialize;

use crate::connector::Delivery;
use crate::event::timestamp::format_rfc3339_millis;
use crate::event::PolarisEvent;
use crate::task_id::TaskId;

/// The CloudEvents spec version every event carries.
pub const SPEC_VERSION: &str = "1.0";

/// The prefix of every `type`.
pub const TYPE_PREFIX: &str = "org.apache.polaris.";

/// The context attributes of one event (everything but the data and its content type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attributes {
    /// `specversion`: always [`SPEC_VERSION`].
    pub specversion: &'static str,
    /// `id`: the task id.
    pub id: String,
    /// `source`: `polaris://<realm>/<catalog>`.
    pub source: String,
    /// `type`: `org.apache.polaris.<EVENT_TYPE>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `subject`: the resource identity.
    pub subject: String,
    /// `time`: RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `traceparent`: `00-<trace id>-<span id>-<flags>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Attributes {
    /// The attributes of `event`, delivered as task `task_id`, in `realm` (the event's realm,
    /// else the topic's default realm, as in [`Delivery::realm`]).
    pub fn new(task_id: &TaskId, realm: &str, event: &PolarisEvent) -> Self {
        let mut source = format!("polaris://{}", percent_encode(realm));
        if let Some(catalog) = &event.catalog_name {
            source.push('/');
            source.push_str(&percent_encode(catalog));
        }
        Attributes {
            specversion: SPEC_VERSION,
            id: task_id.to_hex(),
            source,
            event_type: format!("{TYPE_PREFIX}{}", event.event_type.name()),
            subject: event.resource_identity(realm),
            time: event.timestamp_ms.map(format_rfc3339_millis),
            traceparent: traceparent(event),
        }
    }

    /// The attributes of a delivery.
    pub fn of(delivery: &Delivery) -> Self {
        Self::new(&delivery.task_id, &delivery.realm, &delivery.event)
    }

    /// `(name, value)` pairs in a fixed order, without a prefix: `specversion`, `id`, `source`,
    /// `type`, `subject`, then `time` and `traceparent` when present. Prefix the names with
    /// `ce_` for Kafka binary mode or `ce-` for HTTP binary mode.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            ("specversion", self.specversion),
            ("id", self.id.as_str()),
            ("source", self.source.as_str()),
            ("type", self.event_type.as_str()),
            ("subject", self.subject.as_str()),
        ];
        if let Some(time) = &self.time {
            pairs.push(("time", time));
        }
        if let Some(traceparent) = &self.traceparent {
            pairs.push(("traceparent", traceparent));
        }
        pairs
    }

    /// A structured-mode event (`application/cloudevents+json`): the attributes, then
    /// `datacontenttype: application/json` and `data`.
    pub fn structured<'a, T: Serialize>(&'a self, data: &'a T) -> Structured<'a, T> {
        Structured {
            attributes: self,
            datacontenttype: "application/json",
            data,
        }
    }
}

/// The W3C `traceparent` of the event's OpenTelemetry context, when its trace and span ids are
/// well formed: flags from `trace_flags`, else `01` when `sampled` is `true`, else `00`.
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
fn percent_encode(text: &str) -> String {
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

/// A CloudEvent in structured JSON mode; serialize it with serde_json.
#[derive(Debug, Serialize)]
pub struct Structured<'a, T: Serialize> {
    #[serde(flatten)]
    attributes: &'a Attributes,
    datacontenttype: &'static str,
    data: &'a T,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    fn event() -> PolarisEvent {
        let mut event = PolarisEvent::new(EventType::AfterCreateTable);
        event.event_id = Some("8f7f3f2e-5b1c-4d7a-9a51-1d2b3c4d5e6f".into());
        event.timestamp_ms = Some(1_777_629_600_123);
        event.catalog_name = Some("prod".into());
        event.namespace = Some(vec!["sales".into(), "eu".into()]);
        event.table_name = Some("orders".into());
        event
    }

    #[test]
    fn maps_the_documented_attributes() {
        let id = TaskId::for_delivery("file", "POLARIS", "8f7f3f2e-5b1c-4d7a-9a51-1d2b3c4d5e6f");
        let attributes = Attributes::new(&id, "POLARIS", &event());
        assert_eq!(attributes.id, "2ab0748f35e6ea2791d436374c92b1ba");
        assert_eq!(attributes.source, "polaris://POLARIS/prod");
        assert_eq!(
            attributes.event_type,
            "org.apache.polaris.AFTER_CREATE_TABLE"
        );
        assert_eq!(attributes.subject, "POLARIS/prod/sales.eu/orders");
        assert_eq!(attributes.time.as_deref(), Some("2026-05-01T10:00:00.123Z"));
        assert_eq!(attributes.traceparent, None);
        let names: Vec<&str> = attributes.pairs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["specversion", "id", "source", "type", "subject", "time"]
        );
    }

    #[test]
    fn catalogless_events_traces_and_structured_json() {
        let mut e = PolarisEvent::new(EventType::AfterListCatalogs);
        e.realm_id = Some("acme".into());
        e.otel.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        e.otel.span_id = Some("00f067aa0ba902b7".into());
        e.otel.sampled = Some("true".into());
        let id = TaskId::for_delivery("k", "acme", "x");
        let attributes = Attributes::new(&id, "acme", &e);
        assert_eq!(attributes.source, "polaris://acme");
        assert_eq!(attributes.subject, "acme");
        assert_eq!(attributes.time, None);
        assert_eq!(
            attributes.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let json =
            serde_json::to_value(attributes.structured(&serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "org.apache.polaris.AFTER_LIST_CATALOGS");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["a"], 1);
        assert!(json.get("time").is_none());
        e.otel.sampled = None;
        e.catalog_name = Some("prod cat".into());
        let attributes = Attributes::new(&id, "acme", &e);
        assert_eq!(
            attributes.source, "polaris://acme/prod%20cat",
            "percent-encoded"
        );
        assert!(
            attributes.traceparent.unwrap().ends_with("-00"),
            "not sampled"
        );
        e.otel.span_id = Some("not hex".into());
        assert_eq!(Attributes::new(&id, "acme", &e).traceparent, None);
    }
}
