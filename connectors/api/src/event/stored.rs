//! The compact binary encoding of a [`PolarisEvent`] that the task log stores with each task.
//!
//! Its JSON (the model's printed form) spends most of its bytes on field names and on the
//! RFC 3339 text of the timestamp, and costs a text parse per delivery. The stored form is a
//! version byte ([`VERSION`]) followed by the postcard encoding of every field in the model's
//! order: absent fields take one byte, the timestamp is a varint of milliseconds, the event
//! type is its Polaris name (so unknown types survive, and adding types never shifts
//! anything). [`decode`] also reads the model's JSON, which starts with `{`: records written
//! that way (by tests, or by hand) stay readable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{EventType, OtelContext, PolarisEvent};

/// The first byte of the stored form.
pub const VERSION: u8 = 1;

/// A stored event that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StoredEventError {
    /// No bytes at all.
    #[error("the stored event is empty")]
    Empty,
    /// The first byte is neither a known version nor the `{` of JSON.
    #[error(
        "the stored event has encoding version {0}, this build reads version {VERSION} and JSON"
    )]
    UnknownVersion(u8),
    /// The binary form is damaged.
    #[error("the stored event does not decode: {0}")]
    Binary(#[from] postcard::Error),
    /// The JSON form is damaged.
    #[error("the stored event's JSON does not decode: {0}")]
    Json(#[from] serde_json::Error),
}

/// Every field of the model, borrowed, in order (the writer's view).
#[derive(Serialize)]
struct Out<'a> {
    event_id: &'a Option<String>,
    event_type: &'a str,
    timestamp_ms: Option<i64>,
    realm_id: &'a Option<String>,
    principal: &'a Option<String>,
    activated_roles: &'a [String],
    request_id: &'a Option<String>,
    otel: [&'a Option<String>; 4],
    catalog_name: &'a Option<String>,
    namespace: &'a Option<Vec<String>>,
    namespace_name: &'a Option<String>,
    table_name: &'a Option<String>,
    table_identifier: &'a Option<Vec<String>>,
    view_name: &'a Option<String>,
    view_identifier: &'a Option<Vec<String>>,
    table_uuid: &'a Option<String>,
    table_location: &'a Option<String>,
    metadata_location: &'a Option<String>,
    purge_requested: Option<bool>,
    rename_source: &'a Option<Vec<String>>,
    rename_destination: &'a Option<Vec<String>>,
    attributes: &'a BTreeMap<String, String>,
}

/// The same fields, owned (the reader's view).
#[derive(Deserialize)]
struct In {
    event_id: Option<String>,
    event_type: String,
    timestamp_ms: Option<i64>,
    realm_id: Option<String>,
    principal: Option<String>,
    activated_roles: Vec<String>,
    request_id: Option<String>,
    otel: [Option<String>; 4],
    catalog_name: Option<String>,
    namespace: Option<Vec<String>>,
    namespace_name: Option<String>,
    table_name: Option<String>,
    table_identifier: Option<Vec<String>>,
    view_name: Option<String>,
    view_identifier: Option<Vec<String>>,
    table_uuid: Option<String>,
    table_location: Option<String>,
    metadata_location: Option<String>,
    purge_requested: Option<bool>,
    rename_source: Option<Vec<String>>,
    rename_destination: Option<Vec<String>>,
    attributes: BTreeMap<String, String>,
}

/// Encodes `event` in the stored form, appending to `out`.
pub fn encode_into(event: &PolarisEvent, out: &mut Vec<u8>) -> Result<(), StoredEventError> {
    out.push(VERSION);
    let fields = Out {
        event_id: &event.event_id,
        event_type: event.event_type.name(),
        timestamp_ms: event.timestamp_ms,
        realm_id: &event.realm_id,
        principal: &event.principal,
        activated_roles: &event.activated_roles,
        request_id: &event.request_id,
        otel: [
            &event.otel.trace_id,
            &event.otel.span_id,
            &event.otel.sampled,
            &event.otel.trace_flags,
        ],
        catalog_name: &event.catalog_name,
        namespace: &event.namespace,
        namespace_name: &event.namespace_name,
        table_name: &event.table_name,
        table_identifier: &event.table_identifier,
        view_name: &event.view_name,
        view_identifier: &event.view_identifier,
        table_uuid: &event.table_uuid,
        table_location: &event.table_location,
        metadata_location: &event.metadata_location,
        purge_requested: event.purge_requested,
        rename_source: &event.rename_source,
        rename_destination: &event.rename_destination,
        attributes: &event.attributes,
    };
    let taken = std::mem::take(out);
    *out = postcard::to_extend(&fields, taken)?;
    Ok(())
}

/// Encodes `event` in the stored form.
pub fn encode(event: &PolarisEvent) -> Result<Vec<u8>, StoredEventError> {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out)?;
    Ok(out)
}

/// Decodes a stored event: the binary form, or the model's JSON.
pub fn decode(bytes: &[u8]) -> Result<PolarisEvent, StoredEventError> {
    match bytes.first() {
        None => Err(StoredEventError::Empty),
        Some(b'{') => Ok(serde_json::from_slice(bytes)?),
        Some(&VERSION) => {
            let f: In = postcard::from_bytes(&bytes[1..])?;
            let [trace_id, span_id, sampled, trace_flags] = f.otel;
            Ok(PolarisEvent {
                event_id: f.event_id,
                event_type: EventType::from_name(&f.event_type),
                timestamp_ms: f.timestamp_ms,
                realm_id: f.realm_id,
                principal: f.principal,
                activated_roles: f.activated_roles,
                request_id: f.request_id,
                otel: OtelContext {
                    trace_id,
                    span_id,
                    sampled,
                    trace_flags,
                },
                catalog_name: f.catalog_name,
                namespace: f.namespace,
                namespace_name: f.namespace_name,
                table_name: f.table_name,
                table_identifier: f.table_identifier,
                view_name: f.view_name,
                view_identifier: f.view_identifier,
                table_uuid: f.table_uuid,
                table_location: f.table_location,
                metadata_location: f.metadata_location,
                purge_requested: f.purge_requested,
                rename_source: f.rename_source,
                rename_destination: f.rename_destination,
                attributes: f.attributes,
            })
        }
        Some(other) => Err(StoredEventError::UnknownVersion(*other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::sample_event;

    #[test]
    fn round_trips_every_sample_and_is_smaller_than_json() {
        let (mut stored, mut json) = (0usize, 0usize);
        for i in 0..2000 {
            let event = sample_event(i, 7);
            let bytes = encode(&event).unwrap();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), event, "sample {i}");
            stored += bytes.len();
            json += serde_json::to_vec(&event).unwrap().len();
        }
        println!(
            "stored {} bytes per event, JSON {}",
            stored / 2000,
            json / 2000
        );
        assert!(
            stored * 10 < json * 7,
            "stored {stored} bytes vs JSON {json}: expected at least 30% smaller"
        );
    }

    #[test]
    fn keeps_unknown_types_and_reads_json() {
        let mut event = PolarisEvent::new(EventType::from_name("AFTER_SOMETHING_NEW"));
        event.attributes.insert("k".into(), "v".into());
        let back = decode(&encode(&event).unwrap()).unwrap();
        assert_eq!(back.event_type.name(), "AFTER_SOMETHING_NEW");
        assert_eq!(back, event);
        let json = serde_json::to_vec(&event).unwrap();
        assert_eq!(decode(&json).unwrap(), event);
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[]), Err(StoredEventError::Empty)));
        assert!(matches!(
            decode(&[9, 1, 2]),
            Err(StoredEventError::UnknownVersion(9))
        ));
        let bytes = encode(&sample_event(1, 1)).unwrap();
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            decode(b"{not json"),
            Err(StoredEventError::Json(_))
        ));
    }
}
