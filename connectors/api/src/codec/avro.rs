//! `avro`: the full model as Avro, with the schema in `schemas/polaris_event.avsc`.
//!
//! Accepted framings: the Confluent wire format (byte 0 is the magic `0`, bytes 1-4 a
//! big-endian Schema Registry id, then the datum) and a raw datum (no container file, no
//! header). A raw datum starts with the length of `event_id`, so it starts with byte 0 only
//! when the id is empty: a value that starts with 0 and is longer than the header is read as
//! Confluent first, and as a raw datum if that fails.
//!
//! Without a Schema Registry the datum is read with the bundled schema whatever its id is;
//! with one, the caller fetches the writer schema by [`confluent_schema_id`] and calls
//! [`decode_avro_with_writer_schema`], which resolves the datum into the bundled schema (so an
//! event type symbol this build lacks becomes `UNKNOWN`, and its name is kept).

mod decode;
mod encode;

use std::sync::OnceLock;

use apache_avro::Schema;

use super::error::DecodeError;
use super::{Decoded, WireEncoding};
use crate::event::PolarisEvent;

pub use encode::{encode_avro_confluent, encode_avro_raw};

/// The bundled Avro schema (`schemas/polaris_event.avsc`) as JSON text.
pub const AVRO_SCHEMA_JSON: &str = include_str!("../../../../schemas/polaris_event.avsc");

/// The full name of the bundled schema's record.
pub const AVRO_SCHEMA_NAME: &str = "org.apache.polaris.bridge.PolarisEvent";

/// The `EventType` symbol that stands for a type the writer did not know.
pub const UNKNOWN_SYMBOL: &str = "UNKNOWN";

/// The first byte of a Confluent-framed value.
pub const CONFLUENT_MAGIC: u8 = 0;

/// Length of the Confluent header: the magic byte and the 4-byte schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// The bundled schema, parsed once.
pub fn avro_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The schema is a constant of this crate and a unit test parses it, so this cannot
        // fail in a tested build.
        Schema::parse_str(AVRO_SCHEMA_JSON)
            .unwrap_or_else(|err| panic!("schemas/polaris_event.avsc is not a valid schema: {err}"))
    })
}

/// The Schema Registry id of a Confluent-framed value: `Some` when byte 0 is the magic `0`
/// and the value is longer than the 5-byte header.
pub fn confluent_schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [CONFLUENT_MAGIC, a, b, c, d, _, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Decodes a Confluent-framed value or a raw datum with the bundled schema (see the module
/// docs for how the two are told apart). `key` supplies a missing event id when it is a UUID.
pub fn decode_avro(key: Option<&[u8]>, value: &[u8]) -> Result<Decoded, DecodeError> {
    decode_framed(None, key, value)
}

/// Decodes a raw datum (no header) with the bundled schema.
pub fn decode_avro_raw(key: Option<&[u8]>, datum: &[u8]) -> Result<PolarisEvent, DecodeError> {
    if datum.is_empty() {
        return Err(DecodeError::Empty);
    }
    decode::decode_datum(None, key, datum, 0)
}

/// Decodes a Confluent-framed value or a raw datum that was written with `writer_schema`
/// (e.g. fetched from a Schema Registry by [`confluent_schema_id`]), resolving it into the
/// bundled schema by Avro's rules: missing fields take their defaults, unknown event type
/// symbols become `UNKNOWN` and keep their name in [`crate::event::types::EventType::Unknown`].
pub fn decode_avro_with_writer_schema(
    writer_schema: &Schema,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<Decoded, DecodeError> {
    decode_framed(Some(writer_schema), key, value)
}

fn decode_framed(
    writer: Option<&Schema>,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<Decoded, DecodeError> {
    if value.is_empty() {
        return Err(DecodeError::Empty);
    }
    let raw = |value| {
        decode::decode_datum(writer, key, value, 0).map(|event| Decoded {
            event,
            encoding: WireEncoding::AvroRaw,
        })
    };
    let Some(schema_id) = confluent_schema_id(value) else {
        return raw(value);
    };
    match decode::decode_datum(writer, key, value, CONFLUENT_HEADER_LEN) {
        Ok(event) => Ok(Decoded {
            event,
            encoding: WireEncoding::AvroConfluent { schema_id },
        }),
        // A raw datum whose event id is empty also starts with byte 0.
        Err(confluent_error) => raw(value).map_err(|_| confluent_error),
    }
}

/// Caps the size of any single string, bytes or collection an Avro datum may declare, so a
/// corrupt or hostile length prefix cannot make the decoder allocate gigabytes. The setting is
/// process-wide and takes effect only the first time it is called.
pub fn limit_allocations(max_bytes: usize) -> usize {
    apache_avro::util::max_allocation_bytes(max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::types::EventType;

    #[test]
    fn bundled_schema_parses_and_lists_every_event_type() {
        let Schema::Record(record) = avro_schema() else {
            panic!("not a record");
        };
        assert_eq!(record.name.fullname(None), AVRO_SCHEMA_NAME);
        assert_eq!(record.fields[0].name, "event_id");
        assert_eq!(record.fields[0].schema, Schema::String);
        let Schema::Enum(event_type) = &record.fields[1].schema else {
            panic!("event_type is not an enum");
        };
        let mut expected: Vec<&str> = EventType::known().iter().map(EventType::name).collect();
        expected.push("UNKNOWN");
        assert_eq!(event_type.symbols, expected);
        assert_eq!(event_type.default.as_deref(), Some("UNKNOWN"));
    }

    #[test]
    fn confluent_header_needs_magic_and_a_datum() {
        assert_eq!(confluent_schema_id(&[0, 0, 0, 1, 2, 9]), Some(258));
        assert_eq!(confluent_schema_id(&[0, 0, 0, 1, 2]), None);
        assert_eq!(confluent_schema_id(&[1, 0, 0, 1, 2, 9]), None);
    }
}
