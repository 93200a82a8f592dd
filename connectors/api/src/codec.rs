//! Wire codecs: Kafka record (key, value) <-> [`PolarisEvent`].
//!
//! Two formats, chosen per topic with [`WireFormat`] or detected per message with
//! [`WireFormat::Auto`]:
//! - [`WireFormat::PolarisJson`]: what Polaris 1.7's stock Kafka listener writes
//!   ([`json`]).
//! - [`WireFormat::Avro`]: `schemas/polaris_event.avsc`, Confluent-framed or raw ([`avro`]).
//!
//! Decoding never panics on input; every failure is a [`DecodeError`] naming the field and
//! position, with a [`DecodeErrorKind`] for metrics.

pub mod avro;
mod error;
pub mod json;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use avro::{
    avro_schema, confluent_schema_id, decode_avro_with_writer_schema, encode_avro_confluent,
    encode_avro_raw, AVRO_SCHEMA_JSON,
};
pub use error::{DecodeError, DecodeErrorKind, Position};
pub use json::{decode_polaris_json, encode_polaris_json, record_key};

use crate::event::types::ParseNameError;
use crate::event::PolarisEvent;

/// How the values of a topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WireFormat {
    /// The stock Polaris Kafka listener's JSON (`polaris-json`).
    PolarisJson,
    /// Avro with the bundled schema, Confluent-framed or raw (`avro`).
    Avro,
    /// Per message: JSON when the first non-whitespace byte is `{`, else Avro (`auto`).
    #[default]
    Auto,
}

impl WireFormat {
    /// Every format, in the order of [`WireFormat::NAMES`].
    pub const ALL: [WireFormat; 3] = [WireFormat::PolarisJson, WireFormat::Avro, WireFormat::Auto];

    /// The accepted spellings: `polaris-json`, `avro`, `auto`.
    pub const NAMES: &'static [&'static str] = &["polaris-json", "avro", "auto"];

    /// The name used in configuration: `polaris-json`, `avro` or `auto`.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WireFormat {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|format| format.name() == s)
            .ok_or_else(|| ParseNameError {
                what: "wire format",
                value: s.to_owned(),
                allowed: Self::NAMES,
            })
    }
}

impl Serialize for WireFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for WireFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// How a decoded value was actually encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireEncoding {
    /// Stock Polaris JSON.
    PolarisJson,
    /// A raw Avro datum.
    AvroRaw,
    /// Confluent wire format.
    AvroConfluent {
        /// The Schema Registry id from the header (the datum was read with the bundled
        /// schema unless the caller passed the writer schema).
        schema_id: u32,
    },
}

/// A decoded event and how it was encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The event.
    pub event: PolarisEvent,
    /// The encoding the value turned out to have.
    pub encoding: WireEncoding,
}

/// Decodes one Kafka record in `format`. `key` is the record key; when the value carries no
/// event id and the key is a UUID (the stock listener keys records by event id), the key
/// becomes the id.
pub fn decode(
    format: WireFormat,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<PolarisEvent, DecodeError> {
    decode_with_info(format, key, value).map(|decoded| decoded.event)
}

/// Like [`decode`], and also tells which encoding the value had (and its Confluent schema id).
pub fn decode_with_info(
    format: WireFormat,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<Decoded, DecodeError> {
    if value.is_empty() {
        return Err(DecodeError::Empty);
    }
    let json = match format {
        WireFormat::PolarisJson => true,
        WireFormat::Avro => false,
        WireFormat::Auto => looks_like_json(value),
    };
    if json {
        decode_polaris_json(key, value).map(|event| Decoded {
            event,
            encoding: WireEncoding::PolarisJson,
        })
    } else {
        avro::decode_avro(key, value)
    }
}

/// Whether the first byte that is not JSON whitespace is `{`.
fn looks_like_json(value: &[u8]) -> bool {
    value
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// The record key as an event id, when it is a UUID in text form (36 characters, 8-4-4-4-12
/// hex digits), as Polaris's stock listener writes it. Other keys (a table name, say) are not
/// ids and are ignored.
pub(crate) fn event_id_from_key(key: Option<&[u8]>) -> Option<String> {
    let key = key?;
    let is_uuid = key.len() == 36
        && key.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    // A UUID-shaped key is ASCII, hence UTF-8.
    is_uuid
        .then(|| std::str::from_utf8(key).ok().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_names_round_trip_and_errors_list_them() {
        for format in WireFormat::ALL {
            assert_eq!(format.to_string().parse::<WireFormat>(), Ok(format));
        }
        let err = "xml".parse::<WireFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown wire format `xml`; expected one of: polaris-json, avro, auto"
        );
        let parsed: WireFormat = serde_json::from_str(r#""polaris-json""#).unwrap();
        assert_eq!(parsed, WireFormat::PolarisJson);
        assert!(serde_json::from_str::<WireFormat>(r#""json""#).is_err());
    }

    #[test]
    fn auto_detects_json_by_its_first_byte() {
        assert!(looks_like_json(b"  \n{\"a\":1}"));
        assert!(!looks_like_json(b"\x48abc"));
        assert!(!looks_like_json(b"   "));
        let err = decode(WireFormat::Auto, None, b" \n[1]").unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::Avro, "{err}");
    }

    #[test]
    fn only_uuid_keys_become_event_ids() {
        let uuid = b"0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c";
        assert_eq!(
            event_id_from_key(Some(uuid)).as_deref(),
            Some("0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2c")
        );
        assert_eq!(
            event_id_from_key(Some(b"0b9e7c8a3f5d4e2a9c1b7d6e5f4a3b2c")),
            None
        );
        assert_eq!(
            event_id_from_key(Some(b"0b9e7c8a-3f5d-4e2a-9c1b-7d6e5f4a3b2g")),
            None
        );
        assert_eq!(event_id_from_key(None), None);
    }
}
