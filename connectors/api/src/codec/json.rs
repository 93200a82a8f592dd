//! `polaris-json`: the JSON that Polaris 1.7's stock Kafka listener writes
//! (`extensions/events/kafka`, `EventToJsonMapper`).
//!
//! Stock fields, in the order Polaris writes them, each only when present: `event_type`,
//! `event_id`, `timestamp` (`Instant.toString()`), `source` and `destination` (renames),
//! `table_name`, `namespace`, `table_identifier`, `view_identifier`, `view_name`,
//! `namespace_name`, `catalog_name`, `realm_id`, `principal`, `activated_roles` (whenever
//! `principal` is), `request_id`.
//!
//! Beyond the stock fields, the codec reads and writes the model's other fields under their
//! model names (`table_uuid`, `table_location`, `metadata_location`, `purge_requested`, and
//! `otel` as an object), so a patched listener or the bridge's own producer can carry them;
//! a value of an unexpected type there is kept in `attributes` rather than rejected. Any
//! other top-level field lands in `attributes`: strings as they are, other values as their
//! JSON text; attributes are written back as top-level string fields.
//!
//! A timestamp that milliseconds cannot reproduce exactly (Java writes 6 or 9 fractional
//! digits when the clock has them) is also kept verbatim in `attributes["timestamp"]`, and
//! written back from there, so re-encoding a stock record gives the same JSON.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer as _, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{DecodeError, Position};
use super::event_id_from_key;
use crate::event::timestamp::{format_instant, parse_instant};
use crate::event::types::{is_plausible_name, EventType};
use crate::event::{OtelContext, PolarisEvent};

/// Every top-level field the codec maps to the model (stock fields, then extensions).
const FIELDS: [&str; 21] = [
    "event_type",
    "event_id",
    "timestamp",
    "source",
    "destination",
    "table_name",
    "namespace",
    "table_identifier",
    "view_identifier",
    "view_name",
    "namespace_name",
    "catalog_name",
    "realm_id",
    "principal",
    "activated_roles",
    "request_id",
    "table_uuid",
    "table_location",
    "metadata_location",
    "purge_requested",
    "otel",
];

/// The attribute that keeps a timestamp's exact text when milliseconds cannot reproduce it.
const RAW_TIMESTAMP_ATTRIBUTE: &str = "timestamp";

/// Longest excerpt of a rejected value quoted in an error message.
const MAX_QUOTE: usize = 64;

/// Decodes one stock-listener record. `key` is the record key: when the value has no
/// `event_id` and the key is a UUID (as the stock listener writes it), it becomes the id.
pub fn decode_polaris_json(key: Option<&[u8]>, value: &[u8]) -> Result<PolarisEvent, DecodeError> {
    if value.is_empty() {
        return Err(DecodeError::Empty);
    }
    let failure = RefCell::new(Failure::default());
    let mut deserializer = serde_json::Deserializer::from_slice(value);
    let result = deserializer
        .deserialize_map(EventVisitor { failure: &failure })
        .and_then(|event| deserializer.end().map(|()| event));
    match result {
        Ok(mut event) => {
            if event.event_id.is_none() {
                event.event_id = event_id_from_key(key);
            }
            Ok(event)
        }
        Err(err) => Err(to_decode_error(&err, failure.into_inner())),
    }
}

/// Encodes `event` in the stock listener's shape (only present fields, stock order), plus
/// the extension fields and attributes described in the module docs.
pub fn encode_polaris_json(event: &PolarisEvent) -> Vec<u8> {
    let timestamp =
        event.timestamp_ms.map(
            |millis| match event.attributes.get(RAW_TIMESTAMP_ATTRIBUTE) {
                Some(raw) if parse_instant(raw).is_ok_and(|instant| instant.millis == millis) => {
                    Cow::Borrowed(raw.as_str())
                }
                _ => Cow::Owned(format_instant(millis)),
            },
        );
    let activated_roles = (event.principal.is_some() || !event.activated_roles.is_empty())
        .then_some(event.activated_roles.as_slice());
    let wire = WireEvent {
        event_type: event.event_type.name(),
        event_id: event.event_id.as_deref(),
        timestamp,
        source: event.rename_source.as_deref(),
        destination: event.rename_destination.as_deref(),
        table_name: event.table_name.as_deref(),
        namespace: event.namespace.as_deref(),
        table_identifier: event.table_identifier.as_deref(),
        view_identifier: event.view_identifier.as_deref(),
        view_name: event.view_name.as_deref(),
        namespace_name: event.namespace_name.as_deref(),
        catalog_name: event.catalog_name.as_deref(),
        realm_id: event.realm_id.as_deref(),
        principal: event.principal.as_deref(),
        activated_roles,
        request_id: event.request_id.as_deref(),
        table_uuid: event.table_uuid.as_deref(),
        table_location: event.table_location.as_deref(),
        metadata_location: event.metadata_location.as_deref(),
        purge_requested: event.purge_requested,
        otel: (!event.otel.is_empty()).then_some(&event.otel),
        attributes: event
            .attributes
            .iter()
            .filter(|(name, _)| !FIELDS.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect(),
    };
    // Serializing strings, string slices, a bool and a string map cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The record key the stock listener writes: the event id as UTF-8 (`None` without an id).
pub fn record_key(event: &PolarisEvent) -> Option<Vec<u8>> {
    event.event_id.as_ref().map(|id| id.as_bytes().to_vec())
}

/// The wire shape, in the stock field order.
#[derive(Serialize)]
struct WireEvent<'a> {
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table_identifier: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    view_identifier: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    view_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activated_roles: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table_location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purge_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otel: Option<&'a OtelContext>,
    #[serde(flatten)]
    attributes: BTreeMap<&'a str, &'a str>,
}

/// What the visitor was doing when it failed; serde_json's error carries only the position.
#[derive(Debug, Default)]
struct Failure {
    /// The top-level field whose value was being read.
    field: Option<String>,
    /// Whether the failure is about the event type.
    event_type: bool,
}

/// Turns serde_json's error plus the visitor's notes into a [`DecodeError`].
fn to_decode_error(err: &serde_json::Error, failure: Failure) -> DecodeError {
    // serde_json reports column 0 when the offending value starts a line.
    let position = Position::LineColumn {
        line: err.line(),
        column: err.column().max(1),
    };
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    match (err.classify(), failure) {
        (
            serde_json::error::Category::Data,
            Failure {
                event_type: true, ..
            },
        ) => DecodeError::InvalidEventType {
            message,
            position: Some(position),
        },
        (
            serde_json::error::Category::Data,
            Failure {
                field: Some(field), ..
            },
        ) => DecodeError::InvalidField {
            field,
            message,
            position: Some(position),
        },
        (_, Failure { field, .. }) => DecodeError::Json {
            field,
            message,
            position,
        },
    }
}

/// Builds a [`PolarisEvent`] from the top-level JSON object, field by field.
struct EventVisitor<'a> {
    failure: &'a RefCell<Failure>,
}

impl EventVisitor<'_> {
    /// Reads the value of `field`, noting the field if that fails.
    fn value<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        field: &str,
    ) -> Result<T, A::Error> {
        map.next_value().inspect_err(|_| {
            self.failure.borrow_mut().field = Some(field.to_owned());
        })
    }

    /// An error about `field`'s value.
    fn invalid<E: de::Error>(&self, field: &str, message: impl fmt::Display) -> E {
        let mut failure = self.failure.borrow_mut();
        failure.field = Some(field.to_owned());
        failure.event_type = field == "event_type";
        E::custom(message)
    }
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = PolarisEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Polaris event as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolarisEvent, A::Error> {
        let mut event = PolarisEvent::new(EventType::Unknown(String::new()));
        let mut event_type = None;
        let mut seen = [false; FIELDS.len()];

        while let Some(key) = map.next_key::<String>()? {
            let known = FIELDS.iter().position(|field| *field == key);
            let duplicate = match known {
                Some(index) => std::mem::replace(&mut seen[index], true),
                None => event.attributes.contains_key(&key),
            };
            if duplicate {
                return Err(self.invalid(&key, "duplicate field"));
            }
            let field = key.as_str();
            match field {
                "event_type" => {
                    let value: serde_json::Value = self.value(&mut map, field)?;
                    event_type = Some(parse_event_type(value).map_err(|m| self.invalid(field, m))?);
                }
                "event_id" => {
                    let id: Option<String> = self.value(&mut map, field)?;
                    event.event_id = id.filter(|id| !id.is_empty());
                }
                "timestamp" => {
                    if let Some(text) = self.value::<Option<String>, _>(&mut map, field)? {
                        let instant = parse_instant(&text).map_err(|e| self.invalid(field, e))?;
                        event.timestamp_ms = Some(instant.millis);
                        if format_instant(instant.millis) != text {
                            event
                                .attributes
                                .insert(RAW_TIMESTAMP_ATTRIBUTE.to_owned(), text);
                        }
                    }
                }
                "source" => event.rename_source = self.value(&mut map, field)?,
                "destination" => event.rename_destination = self.value(&mut map, field)?,
                "table_name" => event.table_name = self.value(&mut map, field)?,
                "namespace" => event.namespace = self.value(&mut map, field)?,
                "table_identifier" => event.table_identifier = self.value(&mut map, field)?,
                "view_identifier" => event.view_identifier = self.value(&mut map, field)?,
                "view_name" => event.view_name = self.value(&mut map, field)?,
                "namespace_name" => event.namespace_name = self.value(&mut map, field)?,
                "catalog_name" => event.catalog_name = self.value(&mut map, field)?,
                "realm_id" => event.realm_id = self.value(&mut map, field)?,
                "principal" => event.principal = self.value(&mut map, field)?,
                "activated_roles" => {
                    let roles: Option<Vec<String>> = self.value(&mut map, field)?;
                    event.activated_roles = roles.unwrap_or_default();
                }
                "request_id" => event.request_id = self.value(&mut map, field)?,
                "table_uuid" | "table_location" | "metadata_location" | "purge_requested"
                | "otel" => {
                    let raw: &'de RawValue = self.value(&mut map, field)?;
                    read_extension(&mut event, field, raw);
                }
                _ => {
                    let raw: &'de RawValue = self.value(&mut map, field)?;
                    event.attributes.insert(key.clone(), attribute_text(raw));
                }
            }
        }

        event.event_type = event_type
            .ok_or_else(|| self.invalid::<A::Error>("event_type", "missing field `event_type`"))?;
        Ok(event)
    }
}

/// Checks the `event_type` value: a known name, or an unknown but plausible one.
fn parse_event_type(value: serde_json::Value) -> Result<EventType, String> {
    match value {
        serde_json::Value::String(name) => {
            let event_type = EventType::from_name(&name);
            if event_type.is_known() || is_plausible_name(&name) {
                Ok(event_type)
            } else {
                Err(format!(
                    "`{}` is neither a Polaris event type nor an UPPER_SNAKE_CASE name",
                    quote(&name)
                ))
            }
        }
        other => Err(format!(
            "expected the event type name as a string, found {} `{}`",
            json_type(&other),
            quote(&other.to_string())
        )),
    }
}

/// Stores an extension field in the model when its value has the model's type, else keeps
/// its text in `attributes` (a patched listener must never get a record rejected).
fn read_extension(event: &mut PolarisEvent, field: &str, raw: &RawValue) {
    let text = raw.get();
    let stored = match field {
        "table_uuid" => string_or_null(text).map(|v| event.table_uuid = v),
        "table_location" => string_or_null(text).map(|v| event.table_location = v),
        "metadata_location" => string_or_null(text).map(|v| event.metadata_location = v),
        "purge_requested" => serde_json::from_str::<Option<bool>>(text)
            .ok()
            .map(|v| event.purge_requested = v),
        "otel" => otel_context(text).map(|v| event.otel = v),
        _ => None,
    };
    if stored.is_none() {
        event
            .attributes
            .insert(field.to_owned(), attribute_text(raw));
    }
}

fn string_or_null(text: &str) -> Option<Option<String>> {
    serde_json::from_str(text).ok()
}

/// An `otel` object whose members are all known context keys with string values.
fn otel_context(text: &str) -> Option<OtelContext> {
    let members: Option<BTreeMap<String, String>> = serde_json::from_str(text).ok()?;
    let mut otel = OtelContext::default();
    for (name, value) in members.into_iter().flatten() {
        let slot = match name.as_str() {
            "trace_id" => &mut otel.trace_id,
            "span_id" => &mut otel.span_id,
            "sampled" => &mut otel.sampled,
            "trace_flags" => &mut otel.trace_flags,
            _ => return None,
        };
        *slot = Some(value);
    }
    Some(otel)
}

/// An attribute's text: a JSON string's contents, or any other value's JSON text.
fn attribute_text(raw: &RawValue) -> String {
    let text = raw.get();
    if text.starts_with('"') {
        if let Ok(string) = serde_json::from_str::<String>(text) {
            return string;
        }
    }
    text.to_owned()
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// At most [`MAX_QUOTE`] characters of `text`, with an ellipsis when cut.
fn quote(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTE) {
        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeErrorKind;

    /// The example of polaris.md section 1.1, with a real UUID.
    const STOCK: &str = r#"{"event_type":"AFTER_REFRESH_TABLE","event_id":"0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c","timestamp":"2026-05-01T10:00:00Z","table_identifier":["test_namespace","test_table"],"catalog_name":"test_catalog","realm_id":"test-realm","principal":"test-user","activated_roles":["role1","role2"]}"#;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn stock_example_decodes_field_by_field() {
        let event = decode_polaris_json(None, STOCK.as_bytes()).unwrap();
        assert_eq!(event.event_type, EventType::AfterRefreshTable);
        assert_eq!(
            event.event_id.as_deref(),
            Some("0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c")
        );
        assert_eq!(event.timestamp_ms, Some(1_777_629_600_000));
        assert_eq!(
            event.table_identifier,
            Some(vec!["test_namespace".to_owned(), "test_table".to_owned()])
        );
        assert_eq!(event.catalog_name.as_deref(), Some("test_catalog"));
        assert_eq!(event.realm_id.as_deref(), Some("test-realm"));
        assert_eq!(event.principal.as_deref(), Some("test-user"));
        assert_eq!(event.activated_roles, vec!["role1", "role2"]);
        assert!(event.attributes.is_empty());
        assert_eq!(
            event.resource_identity("POLARIS"),
            "test-realm/test_catalog/test_namespace/test_table"
        );
        assert_eq!(json(&encode_polaris_json(&event)), json(STOCK.as_bytes()));
        assert_eq!(encode_polaris_json(&event), STOCK.as_bytes());
    }

    #[test]
    fn sub_millisecond_timestamps_survive_re_encoding() {
        for stamp in [
            "2026-05-01T10:00:00.123456Z",
            "2026-05-01T10:00:00.123456789Z",
            "2026-05-01T10:00:00.100Z",
        ] {
            let input = format!(r#"{{"event_type":"AFTER_DROP_TABLE","timestamp":"{stamp}"}}"#);
            let event = decode_polaris_json(None, input.as_bytes()).unwrap();
            assert_eq!(event.timestamp_ms.unwrap() / 1000, 1_777_629_600, "{stamp}");
            assert_eq!(encode_polaris_json(&event), input.as_bytes());
        }
    }

    #[test]
    fn renames_and_empty_roles_keep_the_stock_shape() {
        let input = r#"{"event_type":"AFTER_RENAME_TABLE","event_id":"e","timestamp":"2026-05-01T10:00:00.001Z","source":["a","t1"],"destination":["b","t2"],"catalog_name":"c","realm_id":"r","principal":"p","activated_roles":[],"request_id":"q"}"#;
        let event = decode_polaris_json(None, input.as_bytes()).unwrap();
        assert_eq!(event.rename_source, Some(vec!["a".into(), "t1".into()]));
        assert_eq!(
            event.rename_destination,
            Some(vec!["b".into(), "t2".into()])
        );
        assert_eq!(event.request_id.as_deref(), Some("q"));
        assert_eq!(encode_polaris_json(&event), input.as_bytes());
    }

    #[test]
    fn extra_fields_become_attributes() {
        let input = r#"{"event_type":"AFTER_CREATE_TABLE","snapshot":{"b":1,"a":[true]},"mode":"vended","n":5,"purge_requested":"yes","otel":{"trace_id":"t"}}"#;
        let event = decode_polaris_json(None, input.as_bytes()).unwrap();
        assert_eq!(event.attributes["snapshot"], r#"{"b":1,"a":[true]}"#);
        assert_eq!(event.attributes["mode"], "vended");
        assert_eq!(event.attributes["n"], "5");
        assert_eq!(event.attributes["purge_requested"], "yes");
        assert_eq!(event.purge_requested, None);
        assert_eq!(event.trace_id(), Some("t"));
    }

    #[test]
    fn key_supplies_a_missing_event_id_only_when_uuid_shaped() {
        let value = br#"{"event_type":"AFTER_DROP_TABLE"}"#;
        let uuid = b"0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c";
        let event = decode_polaris_json(Some(uuid), value).unwrap();
        assert_eq!(
            event.event_id.as_deref(),
            Some("0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c")
        );
        let event = decode_polaris_json(Some(b"prod.sales.orders"), value).unwrap();
        assert_eq!(event.event_id, None);
        let with_id = br#"{"event_type":"AFTER_DROP_TABLE","event_id":"mine"}"#;
        let event = decode_polaris_json(Some(uuid), with_id).unwrap();
        assert_eq!(event.event_id.as_deref(), Some("mine"));
    }

    #[test]
    fn errors_name_the_field_and_position() {
        let cases: [(&str, DecodeErrorKind, &[&str]); 9] = [
            ("", DecodeErrorKind::Empty, &["empty"]),
            (
                "[1,2]",
                DecodeErrorKind::Json,
                &["line 1, column 1", "JSON object"],
            ),
            ("42", DecodeErrorKind::Json, &["line 1", "JSON object"]),
            (
                r#"{"event_type":"AFTER_DROP_TABLE","namespace":5}"#,
                DecodeErrorKind::InvalidField,
                &["`namespace`", "line 1, column 46", "integer `5`"],
            ),
            (
                r#"{"event_type":"not an event"}"#,
                DecodeErrorKind::InvalidEventType,
                &["`event_type`", "line 1", "`not an event`"],
            ),
            (
                r#"{"event_type":42}"#,
                DecodeErrorKind::InvalidEventType,
                &["`event_type`", "number `42`"],
            ),
            (
                r#"{"event_id":"x"}"#,
                DecodeErrorKind::InvalidEventType,
                &["missing field `event_type`"],
            ),
            (
                r#"{"event_type":"AFTER_DROP_TABLE","timestamp":"yesterday"}"#,
                DecodeErrorKind::InvalidField,
                &["`timestamp`", "ISO-8601"],
            ),
            (
                "{\"event_type\":\"AFTER_DROP_TABLE\",\n \"table_name\": \"t\"} trailing",
                DecodeErrorKind::Json,
                &["line 2", "trailing characters"],
            ),
        ];
        for (input, kind, needles) in cases {
            let err = decode_polaris_json(None, input.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), kind, "{input}: {err}");
            let message = err.to_string();
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "{input}: `{message}` lacks `{needle}`"
                );
            }
        }
    }

    #[test]
    fn syntax_errors_inside_a_field_are_json_errors_naming_the_field() {
        let err = decode_polaris_json(
            None,
            br#"{"event_type":"AFTER_DROP_TABLE","namespace":["a","#,
        )
        .unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::Json);
        assert_eq!(err.field(), Some("namespace"));
        let err = decode_polaris_json(None, br#"{"event_type":"A","event_type":"B"}"#).unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::InvalidEventType);
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn long_rejected_values_are_quoted_briefly() {
        let name = "x".repeat(500);
        let input = format!(r#"{{"event_type":"{name}"}}"#);
        let err = decode_polaris_json(None, input.as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 250, "{err}");
    }
}
