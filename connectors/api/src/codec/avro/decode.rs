//! Avro datum -> [`PolarisEvent`]: apache-avro decodes the bytes into a generic value, then
//! each field is mapped to the model by hand, so that every error names its field.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::OnceLock;

use apache_avro::types::Value;
use apache_avro::Schema;

use super::{avro_schema, UNKNOWN_SYMBOL};
use crate::codec::error::DecodeError;
use crate::codec::event_id_from_key;
use crate::event::types::{is_plausible_name, EventType};
use crate::event::{OtelContext, PolarisEvent};

/// Longest apache-avro message kept in an error.
const MAX_MESSAGE: usize = 200;

/// Decodes the datum that starts at `value[start..]` and must end where `value` does.
///
/// `writer` is the schema it was written with, or `None` for the bundled schema; a foreign
/// writer schema is resolved into the bundled one. Error offsets count from the start of
/// `value`, so they include a Confluent header.
pub(super) fn decode_datum(
    writer: Option<&Schema>,
    key: Option<&[u8]>,
    value: &[u8],
    start: usize,
) -> Result<PolarisEvent, DecodeError> {
    let bundled = avro_schema();
    let writer_schema = writer.unwrap_or(bundled);
    let datum = value.get(start..).unwrap_or_default();
    let mut reader = CountingReader::new(datum);
    // apache-avro's `from_avro_datum` indexes the schema's named types afresh for every
    // datum; the index only serves to follow references, so a schema without any is read
    // with an empty one.
    let named_types = if writer.is_none() && bundled_is_self_contained()
        || writer.is_some_and(is_self_contained)
    {
        Vec::new()
    } else {
        vec![writer_schema]
    };
    let record = match apache_avro::from_avro_datum_schemata(
        writer_schema,
        named_types,
        &mut reader,
        None,
    ) {
        // apache-avro reads a string cut short by the end of input as null, so running into
        // the end counts as truncation even when it reports success.
        Ok(record) if !reader.hit_end => record,
        result => return Err(diagnose(writer_schema, value, start, result.err())),
    };
    if reader.position < datum.len() {
        return Err(DecodeError::AvroTrailingBytes {
            offset: start + reader.position,
            len: value.len(),
        });
    }

    let (record, writer_symbol) = match writer {
        None => (record, None),
        Some(_) => {
            let symbol = event_type_symbol(&record);
            let resolved = record.resolve(bundled).map_err(|err| DecodeError::Avro {
                field: None,
                message: format!(
                    "the writer schema does not resolve to the bundled schema: {}",
                    brief(&err)
                ),
                offset: start,
                len: value.len(),
            })?;
            (resolved, symbol)
        }
    };

    let mut event = to_event(record, writer_symbol)?;
    if event.event_id.is_none() {
        event.event_id = event_id_from_key(key);
    }
    Ok(event)
}

/// Whether `schema` refers to no named type by name (every type is spelt out where used).
fn is_self_contained(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => false,
        Schema::Array(array) => is_self_contained(&array.items),
        Schema::Map(map) => is_self_contained(&map.types),
        Schema::Union(union) => union.variants().iter().all(is_self_contained),
        Schema::Record(record) => record
            .fields
            .iter()
            .all(|field| is_self_contained(&field.schema)),
        Schema::Decimal(decimal) => is_self_contained(&decimal.inner),
        _ => true,
    }
}

/// [`is_self_contained`] of the bundled schema, worked out once.
fn bundled_is_self_contained() -> bool {
    static SELF_CONTAINED: OnceLock<bool> = OnceLock::new();
    *SELF_CONTAINED.get_or_init(|| is_self_contained(avro_schema()))
}

/// A reader over a byte slice that knows how far it got and whether anyone read past the end.
struct CountingReader<'a> {
    data: &'a [u8],
    position: usize,
    hit_end: bool,
}

impl<'a> CountingReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        CountingReader {
            data,
            position: 0,
            hit_end: false,
        }
    }
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let rest = self.data.get(self.position..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if n == 0 {
            self.hit_end = true;
        }
        buf[..n].copy_from_slice(&rest[..n]);
        self.position += n;
        Ok(n)
    }
}

/// Finds the field where decoding failed, by decoding the record again field by field (only
/// on the error path, so the common path makes one pass).
fn diagnose(
    writer: &Schema,
    value: &[u8],
    start: usize,
    error: Option<apache_avro::Error>,
) -> DecodeError {
    let len = value.len();
    let mut reader = CountingReader::new(value.get(start..).unwrap_or_default());
    if let Schema::Record(record) = writer {
        for field in &record.fields {
            let field_start = start + reader.position;
            let result = apache_avro::from_avro_datum_schemata(
                &field.schema,
                vec![writer],
                &mut reader,
                None,
            );
            if reader.hit_end {
                return DecodeError::AvroTruncated {
                    field: Some(field.name.clone()),
                    offset: field_start,
                    len,
                };
            }
            if let Err(err) = result {
                return DecodeError::Avro {
                    field: Some(field.name.clone()),
                    message: brief(&err),
                    offset: field_start,
                    len,
                };
            }
        }
    }
    match error {
        Some(err) => DecodeError::Avro {
            field: None,
            message: brief(&err),
            offset: start,
            len,
        },
        None => DecodeError::AvroTruncated {
            field: None,
            offset: start,
            len,
        },
    }
}

/// apache-avro's message, cut to [`MAX_MESSAGE`] characters (some embed whole values).
fn brief(err: &apache_avro::Error) -> String {
    let text = err.to_string();
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// The writer's `event_type` symbol, before resolution can turn it into `UNKNOWN`.
fn event_type_symbol(record: &Value) -> Option<String> {
    let Value::Record(fields) = record else {
        return None;
    };
    fields
        .iter()
        .find(|(name, _)| name == "event_type")
        .and_then(|(_, value)| match value {
            Value::Enum(_, symbol) | Value::String(symbol) => Some(symbol.clone()),
            _ => None,
        })
}

/// Maps a record of the bundled schema to the model, field by field.
fn to_event(record: Value, writer_symbol: Option<String>) -> Result<PolarisEvent, DecodeError> {
    let Value::Record(fields) = record else {
        return Err(invalid("(datum)", "a record", &record));
    };
    let mut event = PolarisEvent::new(EventType::Unknown(String::new()));
    let mut symbol = None;
    let mut type_name = None;
    for (name, value) in fields {
        let field = name.as_str();
        match field {
            "event_id" => event.event_id = Some(string(field, value)?).filter(|id| !id.is_empty()),
            "event_type" => symbol = Some(enum_symbol(field, value)?),
            "event_type_name" => type_name = optional(field, value, string)?,
            "timestamp" => event.timestamp_ms = optional(field, value, timestamp)?,
            "realm_id" => event.realm_id = optional(field, value, string)?,
            "principal" => event.principal = optional(field, value, string)?,
            "activated_roles" => event.activated_roles = strings(field, value)?,
            "request_id" => event.request_id = optional(field, value, string)?,
            "otel" => event.otel = optional(field, value, otel)?.unwrap_or_default(),
            "catalog_name" => event.catalog_name = optional(field, value, string)?,
            "namespace" => event.namespace = optional(field, value, strings)?,
            "namespace_name" => event.namespace_name = optional(field, value, string)?,
            "table_name" => event.table_name = optional(field, value, string)?,
            "table_identifier" => event.table_identifier = optional(field, value, strings)?,
            "view_name" => event.view_name = optional(field, value, string)?,
            "view_identifier" => event.view_identifier = optional(field, value, strings)?,
            "table_uuid" => event.table_uuid = optional(field, value, string)?,
            "table_location" => event.table_location = optional(field, value, string)?,
            "metadata_location" => event.metadata_location = optional(field, value, string)?,
            "purge_requested" => event.purge_requested = optional(field, value, boolean)?,
            "rename_source" => event.rename_source = optional(field, value, strings)?,
            "rename_destination" => event.rename_destination = optional(field, value, strings)?,
            "attributes" => event.attributes = string_map(field, value)?,
            // The bundled schema has no other field; a foreign one was resolved into it.
            _ => {}
        }
    }
    event.event_type = event_type(symbol, type_name, writer_symbol)?;
    Ok(event)
}

/// The event type from the enum symbol, or from `event_type_name` (else the writer's own
/// symbol) when the symbol is `UNKNOWN`.
fn event_type(
    symbol: Option<String>,
    type_name: Option<String>,
    writer_symbol: Option<String>,
) -> Result<EventType, DecodeError> {
    let invalid = |message: String| DecodeError::InvalidEventType {
        message,
        position: None,
    };
    let symbol = symbol.ok_or_else(|| invalid("the datum has no `event_type`".to_owned()))?;
    if symbol != UNKNOWN_SYMBOL {
        return Ok(EventType::from_name(&symbol));
    }
    let name = type_name
        .or_else(|| writer_symbol.filter(|symbol| symbol != UNKNOWN_SYMBOL))
        .ok_or_else(|| invalid("the symbol is UNKNOWN and `event_type_name` is null".to_owned()))?;
    let event_type = EventType::from_name(&name);
    if event_type.is_known() || is_plausible_name(&name) {
        Ok(event_type)
    } else {
        let shown: String = name.chars().take(64).collect();
        Err(invalid(format!(
            "`event_type_name` `{shown}` is not an UPPER_SNAKE_CASE event type name"
        )))
    }
}

/// An [`DecodeError::InvalidField`] for a value that is not what the schema promises.
fn invalid(field: &str, expected: &str, found: &Value) -> DecodeError {
    DecodeError::InvalidField {
        field: field.to_owned(),
        message: format!("expected {expected}, found {}", describe(found)),
        position: None,
    }
}

/// A short name for a value's Avro type.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "a boolean",
        Value::Int(_) => "an int",
        Value::Long(_) => "a long",
        Value::Float(_) | Value::Double(_) => "a floating-point number",
        Value::Bytes(_) | Value::Fixed(..) => "bytes",
        Value::String(_) => "a string",
        Value::Enum(..) => "an enum symbol",
        Value::Union(..) => "a union",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Record(_) => "a record",
        _ => "another Avro type",
    }
}

/// Maps a `["null", T]` union: null to `None`, else `read` the branch.
fn optional<T>(
    field: &str,
    value: Value,
    read: fn(&str, Value) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match value {
        Value::Union(_, inner) => optional(field, *inner, read),
        Value::Null => Ok(None),
        other => read(field, other).map(Some),
    }
}

fn string(field: &str, value: Value) -> Result<String, DecodeError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(invalid(field, "a string", &other)),
    }
}

fn boolean(field: &str, value: Value) -> Result<bool, DecodeError> {
    match value {
        Value::Boolean(flag) => Ok(flag),
        other => Err(invalid(field, "a boolean", &other)),
    }
}

fn timestamp(field: &str, value: Value) -> Result<i64, DecodeError> {
    match value {
        Value::TimestampMillis(millis) | Value::Long(millis) => Ok(millis),
        other => Err(invalid(field, "a timestamp-millis long", &other)),
    }
}

fn enum_symbol(field: &str, value: Value) -> Result<String, DecodeError> {
    match value {
        Value::Enum(_, symbol) => Ok(symbol),
        other => Err(invalid(field, "an enum symbol", &other)),
    }
}

fn strings(field: &str, value: Value) -> Result<Vec<String>, DecodeError> {
    match value {
        Value::Array(items) => items.into_iter().map(|item| string(field, item)).collect(),
        other => Err(invalid(field, "an array of strings", &other)),
    }
}

fn string_map(field: &str, value: Value) -> Result<BTreeMap<String, String>, DecodeError> {
    match value {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(name, item)| Ok((name, string(field, item)?)))
            .collect(),
        other => Err(invalid(field, "a map of strings", &other)),
    }
}

fn otel(field: &str, value: Value) -> Result<OtelContext, DecodeError> {
    let Value::Record(members) = value else {
        return Err(invalid(field, "an OtelContext record", &value));
    };
    let mut otel = OtelContext::default();
    for (name, member) in members {
        let path = format!("{field}.{name}");
        let text = optional(&path, member, string)?;
        match name.as_str() {
            "trace_id" => otel.trace_id = text,
            "span_id" => otel.span_id = text,
            "sampled" => otel.sampled = text,
            "trace_flags" => otel.trace_flags = text,
            _ => {}
        }
    }
    Ok(otel)
}
