//! [`PolarisEvent`] -> Avro binary, written by hand in the bundled schema's field order.
//!
//! Writing directly (instead of building an apache-avro value) is infallible, allocation-light
//! and deterministic: attributes are written in key order, so equal events give equal bytes.
//! The tests decode every output with apache-avro and the bundled schema.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use apache_avro::Schema;

use super::{avro_schema, CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, UNKNOWN_SYMBOL};
use crate::event::PolarisEvent;

/// Encodes `event` as a raw Avro datum of the bundled schema (no header).
pub fn encode_avro_raw(event: &PolarisEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_event(&mut out, event);
    out
}

/// Encodes `event` in the Confluent wire format: magic byte 0, `schema_id` big-endian, then
/// the raw datum.
pub fn encode_avro_confluent(event: &PolarisEvent, schema_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + CONFLUENT_HEADER_LEN);
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    write_event(&mut out, event);
    out
}

/// The record, field by field, in the order of `schemas/polaris_event.avsc`.
fn write_event(out: &mut Vec<u8>, event: &PolarisEvent) {
    write_string(out, event.event_id.as_deref().unwrap_or(""));
    let symbols = symbol_indexes();
    let name = event.event_type.name();
    match symbols.get(name) {
        Some(index) if name != UNKNOWN_SYMBOL => {
            write_index(out, *index);
            write_null(out); // event_type_name
        }
        _ => {
            // A type the schema lacks: symbol UNKNOWN, the name rides in event_type_name.
            write_index(out, symbols.get(UNKNOWN_SYMBOL).copied().unwrap_or(0));
            write_some(out, name, write_str_ref);
        }
    }
    write_optional(out, event.timestamp_ms, write_long);
    write_optional_str(out, &event.realm_id);
    write_optional_str(out, &event.principal);
    write_strings(out, &event.activated_roles);
    write_optional_str(out, &event.request_id);
    if event.otel.is_empty() {
        write_null(out);
    } else {
        write_index(out, 1);
        write_optional_str(out, &event.otel.trace_id);
        write_optional_str(out, &event.otel.span_id);
        write_optional_str(out, &event.otel.sampled);
        write_optional_str(out, &event.otel.trace_flags);
    }
    write_optional_str(out, &event.catalog_name);
    write_optional_strings(out, &event.namespace);
    write_optional_str(out, &event.namespace_name);
    write_optional_str(out, &event.table_name);
    write_optional_strings(out, &event.table_identifier);
    write_optional_str(out, &event.view_name);
    write_optional_strings(out, &event.view_identifier);
    write_optional_str(out, &event.table_uuid);
    write_optional_str(out, &event.table_location);
    write_optional_str(out, &event.metadata_location);
    write_optional(out, event.purge_requested, |out, flag| {
        out.push(u8::from(flag))
    });
    write_optional_strings(out, &event.rename_source);
    write_optional_strings(out, &event.rename_destination);
    write_map(out, &event.attributes);
}

/// The index of every `EventType` symbol of the bundled schema.
fn symbol_indexes() -> &'static HashMap<&'static str, usize> {
    static INDEXES: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    INDEXES.get_or_init(|| {
        let Schema::Record(record) = avro_schema() else {
            return HashMap::new();
        };
        record
            .fields
            .iter()
            .find_map(|field| match &field.schema {
                Schema::Enum(event_type) if field.name == "event_type" => Some(event_type),
                _ => None,
            })
            .map(|event_type| {
                event_type
                    .symbols
                    .iter()
                    .enumerate()
                    .map(|(index, symbol)| (symbol.as_str(), index))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A zig-zag varint `long`.
fn write_long(out: &mut Vec<u8>, value: i64) {
    // Zig-zag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ... (the cast reinterprets the bits).
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A count or index; Avro writes it as a `long`.
fn write_index(out: &mut Vec<u8>, index: usize) {
    write_long(out, i64::try_from(index).unwrap_or(i64::MAX));
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_index(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn write_str_ref(out: &mut Vec<u8>, text: &str) {
    write_string(out, text);
}

/// The null branch (index 0) of a `["null", T]` union.
fn write_null(out: &mut Vec<u8>) {
    write_index(out, 0);
}

/// The value branch (index 1) of a `["null", T]` union.
fn write_some<T>(out: &mut Vec<u8>, value: T, write: impl FnOnce(&mut Vec<u8>, T)) {
    write_index(out, 1);
    write(out, value);
}

fn write_optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write_some(out, value, write),
        None => write_null(out),
    }
}

fn write_optional_str(out: &mut Vec<u8>, value: &Option<String>) {
    write_optional(out, value.as_deref(), write_str_ref);
}

fn write_optional_strings(out: &mut Vec<u8>, value: &Option<Vec<String>>) {
    write_optional(out, value.as_deref(), write_strings);
}

/// An array of strings: one block with every item, then the empty block.
fn write_strings(out: &mut Vec<u8>, items: &[String]) {
    if !items.is_empty() {
        write_index(out, items.len());
        for item in items {
            write_string(out, item);
        }
    }
    write_index(out, 0);
}

/// A map of strings: one block with every entry in key order, then the empty block.
fn write_map(out: &mut Vec<u8>, entries: &BTreeMap<String, String>) {
    if !entries.is_empty() {
        write_index(out, entries.len());
        for (key, value) in entries {
            write_string(out, key);
            write_string(out, value);
        }
    }
    write_index(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        for (value, bytes) in [
            (0_i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (36, vec![0x48]),
            (
                i64::MAX,
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            write_long(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
    }
}
