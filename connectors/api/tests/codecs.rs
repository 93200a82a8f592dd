//! The wire codecs against the stock Polaris JSON, the bundled Avro schema, every sample
//! event, and every class of bad input.

use apache_avro::types::Value;
use apache_avro::Schema;
use polaris_bridge_api::codec::avro::{decode_avro_raw, AVRO_SCHEMA_NAME};
use polaris_bridge_api::codec::{
    avro_schema, confluent_schema_id, decode, decode_avro_with_writer_schema, decode_with_info,
    encode_avro_confluent, encode_avro_raw, encode_polaris_json, record_key, DecodeError,
    DecodeErrorKind, Position, WireEncoding, WireFormat, AVRO_SCHEMA_JSON,
};
use polaris_bridge_api::event::{EventType, Phase};
use polaris_bridge_api::samples::sample_events;
use polaris_bridge_api::PolarisEvent;

/// polaris.md section 1.1's example value, with a concrete UUID.
const STOCK_EXAMPLE: &str = r#"{"event_type":"AFTER_REFRESH_TABLE","event_id":"5a3c6a0e-1f7b-4d2e-8c9a-0b1c2d3e4f50",
"timestamp":"2026-05-01T10:00:00Z","table_identifier":["test_namespace","test_table"],
"catalog_name":"test_catalog","realm_id":"test-realm","principal":"test-user",
"activated_roles":["role1","role2"]}"#;

const EVENT_ID: &str = "5a3c6a0e-1f7b-4d2e-8c9a-0b1c2d3e4f50";

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// What the stock listener can carry of `event` (its JSON drops the rest).
fn stock_projection(event: &PolarisEvent) -> PolarisEvent {
    let mut stock = event.clone();
    stock.table_uuid = None;
    stock.table_location = None;
    stock.metadata_location = None;
    stock.purge_requested = None;
    stock.otel = Default::default();
    stock.attributes.clear();
    stock
}

fn assert_error(
    result: Result<PolarisEvent, DecodeError>,
    kind: DecodeErrorKind,
    needles: &[&str],
) {
    let err = result.expect_err("decoding should fail");
    assert_eq!(err.kind(), kind, "{err}");
    let message = err.to_string();
    for needle in needles {
        assert!(message.contains(needle), "`{message}` lacks `{needle}`");
    }
}

#[test]
fn stock_example_decodes_in_every_format_that_accepts_json() {
    for format in [WireFormat::PolarisJson, WireFormat::Auto] {
        let event = decode(format, Some(EVENT_ID.as_bytes()), STOCK_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(event.event_type, EventType::AfterRefreshTable);
        assert_eq!(event.event_type.code(), Some(617));
        assert_eq!(event.phase(), Some(Phase::After));
        assert_eq!(event.event_id.as_deref(), Some(EVENT_ID));
        assert_eq!(event.timestamp_ms, Some(1_777_629_600_000));
        assert_eq!(
            event.table_identifier.as_deref(),
            Some(&["test_namespace".to_owned(), "test_table".to_owned()][..])
        );
        assert_eq!(event.catalog_name.as_deref(), Some("test_catalog"));
        assert_eq!(event.realm_id.as_deref(), Some("test-realm"));
        assert_eq!(event.principal.as_deref(), Some("test-user"));
        assert_eq!(event.activated_roles, ["role1", "role2"]);
        assert_eq!(event.namespace_path().as_deref(), Some("test_namespace"));
        assert_eq!(event.object_name(), Some("test_table"));
        assert_eq!(
            event.resource_identity("POLARIS"),
            "test-realm/test_catalog/test_namespace/test_table"
        );
        assert_eq!(event.trace_id(), None);

        assert_eq!(
            json(&encode_polaris_json(&event)),
            json(STOCK_EXAMPLE.as_bytes())
        );
        assert_eq!(record_key(&event).as_deref(), Some(EVENT_ID.as_bytes()));
    }
}

#[test]
fn stock_key_supplies_the_event_id() {
    let value = br#"{"event_type":"AFTER_DROP_TABLE","table_name":"t","namespace":["ns"]}"#;
    let event = decode(WireFormat::PolarisJson, Some(EVENT_ID.as_bytes()), value).unwrap();
    assert_eq!(event.event_id.as_deref(), Some(EVENT_ID));

    let mut no_id = event.clone();
    no_id.event_id = None;
    let avro = encode_avro_raw(&no_id);
    assert_eq!(avro[0], 0, "an empty id starts the raw datum with byte 0");
    let event = decode(WireFormat::Avro, Some(EVENT_ID.as_bytes()), &avro).unwrap();
    assert_eq!(event.event_id.as_deref(), Some(EVENT_ID));
    assert_eq!(decode(WireFormat::Avro, None, &avro).unwrap(), no_id);
}

#[test]
fn all_samples_round_trip_through_every_encoding() {
    let events = sample_events(1000, 20260501);
    for event in &events {
        let stock = encode_polaris_json(event);
        let decoded = decode_with_info(
            WireFormat::PolarisJson,
            record_key(event).as_deref(),
            &stock,
        )
        .unwrap();
        assert_eq!(&decoded.event, event, "{}", String::from_utf8_lossy(&stock));
        assert_eq!(decoded.encoding, WireEncoding::PolarisJson);
        assert_eq!(decode(WireFormat::Auto, None, &stock).unwrap(), *event);

        // What unmodified Polaris would have sent for the same event.
        let projection = stock_projection(event);
        let stock_only = encode_polaris_json(&projection);
        assert_eq!(
            decode(WireFormat::PolarisJson, None, &stock_only).unwrap(),
            projection
        );

        let raw = encode_avro_raw(event);
        assert_ne!(raw[0], 0);
        let decoded = decode_with_info(WireFormat::Avro, None, &raw).unwrap();
        assert_eq!(&decoded.event, event);
        assert_eq!(decoded.encoding, WireEncoding::AvroRaw);
        assert_eq!(decode(WireFormat::Auto, None, &raw).unwrap(), *event);
        assert_eq!(decode_avro_raw(None, &raw).unwrap(), *event);

        let confluent = encode_avro_confluent(event, 42);
        assert_eq!(confluent_schema_id(&confluent), Some(42));
        assert_eq!(&confluent[5..], &raw[..]);
        let decoded = decode_with_info(WireFormat::Auto, None, &confluent).unwrap();
        assert_eq!(&decoded.event, event);
        assert_eq!(
            decoded.encoding,
            WireEncoding::AvroConfluent { schema_id: 42 }
        );

        // apache-avro agrees with the hand-written encoder.
        let value = apache_avro::from_avro_datum(avro_schema(), &mut &raw[..], None).unwrap();
        assert!(value.validate(avro_schema()));

        // The model's own JSON is decodable back to the same event.
        let canonical = event.canonical_bytes();
        assert_eq!(
            serde_json::from_slice::<PolarisEvent>(&canonical).unwrap(),
            *event
        );
    }
}

#[test]
fn hand_encoding_matches_apache_avro_encoding() {
    // With at most one attribute the map order cannot differ, so the bytes must be equal.
    for event in sample_events(300, 9)
        .iter()
        .filter(|e| e.attributes.len() <= 1)
    {
        let raw = encode_avro_raw(event);
        let value = apache_avro::from_avro_datum(avro_schema(), &mut &raw[..], None).unwrap();
        let reference = apache_avro::to_avro_datum(avro_schema(), value).unwrap();
        assert_eq!(raw, reference, "{event:?}");
    }
}

#[test]
fn unknown_plausible_types_flow_in_both_formats() {
    let mut event = sample_events(1, 5).remove(0);
    event.event_type = EventType::from_name("AFTER_FUTURE_THING");

    let stock = encode_polaris_json(&event);
    assert!(String::from_utf8_lossy(&stock).contains(r#""event_type":"AFTER_FUTURE_THING""#));
    let decoded = decode(WireFormat::PolarisJson, None, &stock).unwrap();
    assert_eq!(
        decoded.event_type,
        EventType::Unknown("AFTER_FUTURE_THING".into())
    );
    assert_eq!(decoded.phase(), Some(Phase::After));

    let raw = encode_avro_raw(&event);
    let Value::Record(fields) =
        apache_avro::from_avro_datum(avro_schema(), &mut &raw[..], None).unwrap()
    else {
        panic!("not a record");
    };
    assert_eq!(
        fields[1],
        (
            "event_type".to_owned(),
            Value::Enum(149, "UNKNOWN".to_owned())
        )
    );
    assert_eq!(
        fields[2],
        (
            "event_type_name".to_owned(),
            Value::Union(1, Box::new(Value::String("AFTER_FUTURE_THING".to_owned())))
        )
    );
    assert_eq!(decode(WireFormat::Avro, None, &raw).unwrap(), event);
}

/// The bundled schema with one more event type symbol, as a newer bridge would write it.
fn newer_writer_schema() -> Schema {
    let mut schema: serde_json::Value = serde_json::from_str(AVRO_SCHEMA_JSON).unwrap();
    schema["fields"][1]["type"]["symbols"]
        .as_array_mut()
        .unwrap()
        .push("AFTER_FUTURE_THING".into());
    Schema::parse(&schema).unwrap()
}

#[test]
fn a_symbol_the_reader_lacks_resolves_to_unknown() {
    let writer = newer_writer_schema();
    let event = sample_events(1, 11).remove(0);
    // Re-encode one of our datums with the newer writer, setting the new symbol.
    let mut value =
        apache_avro::from_avro_datum(avro_schema(), &mut &encode_avro_raw(&event)[..], None)
            .unwrap();
    if let Value::Record(fields) = &mut value {
        fields[1].1 = Value::Enum(150, "AFTER_FUTURE_THING".to_owned());
    }
    let datum = apache_avro::to_avro_datum(&writer, value).unwrap();

    // Without the writer schema, an index past the bundled symbols is rejected, not misread.
    let err = decode(WireFormat::Avro, None, &datum).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Avro, "{err}");
    assert_eq!(err.field(), Some("event_type"));

    // Avro resolution itself (apache-avro 0.21) maps the symbol to the enum default.
    let resolved =
        apache_avro::from_avro_datum(&writer, &mut &datum[..], Some(avro_schema())).unwrap();
    let Value::Record(fields) = resolved else {
        panic!("not a record");
    };
    assert_eq!(fields[1].1, Value::Enum(149, "UNKNOWN".to_owned()));

    // The codec resolves too, and keeps the writer's name.
    let decoded = decode_avro_with_writer_schema(&writer, None, &datum).unwrap();
    assert_eq!(
        decoded.event.event_type,
        EventType::Unknown("AFTER_FUTURE_THING".into())
    );
    let mut expected = event.clone();
    expected.event_type = decoded.event.event_type.clone();
    assert_eq!(decoded.event, expected);

    // Confluent-framed, with the writer schema fetched by id.
    let mut framed = vec![0, 0, 0, 0, 7];
    framed.extend_from_slice(&datum);
    let decoded = decode_avro_with_writer_schema(&writer, None, &framed).unwrap();
    assert_eq!(
        decoded.encoding,
        WireEncoding::AvroConfluent { schema_id: 7 }
    );
    assert_eq!(decoded.event, expected);

    // Known symbols still decode as themselves through the newer writer schema.
    let mut value =
        apache_avro::from_avro_datum(avro_schema(), &mut &encode_avro_raw(&event)[..], None)
            .unwrap();
    if let Value::Record(fields) = &mut value {
        fields[1].1 = Value::Enum(
            EventType::known()
                .iter()
                .position(|t| *t == EventType::BeforeDropTable)
                .unwrap() as u32,
            "BEFORE_DROP_TABLE".to_owned(),
        );
    }
    let datum = apache_avro::to_avro_datum(&writer, value).unwrap();
    let decoded = decode_avro_with_writer_schema(&writer, None, &datum).unwrap();
    assert_eq!(decoded.event.event_type, EventType::BeforeDropTable);
    assert_eq!(
        avro_schema().name().map(|n| n.fullname(None)),
        Some(AVRO_SCHEMA_NAME.to_owned())
    );
}

#[test]
fn a_writer_schema_that_refers_to_a_named_type_by_name_decodes() {
    // Two more fields, the second of the type the first defines: the parsed writer schema
    // holds a reference that only the writer's named types resolve.
    let mut schema: serde_json::Value = serde_json::from_str(AVRO_SCHEMA_JSON).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.push(serde_json::json!({
        "name": "tier",
        "type": {"type": "enum", "name": "Tier", "symbols": ["GOLD", "SILVER"]}
    }));
    fields.push(serde_json::json!({"name": "previous_tier", "type": "Tier"}));
    let writer = Schema::parse(&schema).unwrap();
    let Schema::Record(record) = &writer else {
        panic!("not a record");
    };
    assert!(matches!(
        record.fields.last().unwrap().schema,
        Schema::Ref { .. }
    ));

    let event = sample_events(3, 12).remove(2);
    let mut value =
        apache_avro::from_avro_datum(avro_schema(), &mut &encode_avro_raw(&event)[..], None)
            .unwrap();
    if let Value::Record(fields) = &mut value {
        fields.push(("tier".to_owned(), Value::Enum(1, "SILVER".to_owned())));
        fields.push((
            "previous_tier".to_owned(),
            Value::Enum(0, "GOLD".to_owned()),
        ));
    }
    let datum = apache_avro::to_avro_datum(&writer, value).unwrap();
    let decoded = decode_avro_with_writer_schema(&writer, None, &datum).unwrap();
    assert_eq!(decoded.event, event);
}

#[test]
fn empty_values_are_empty_errors_in_every_format() {
    for format in WireFormat::ALL {
        assert_error(
            decode(format, None, b""),
            DecodeErrorKind::Empty,
            &["empty"],
        );
    }
}

#[test]
fn json_errors_name_the_field_and_position() {
    let cases: [(&[u8], DecodeErrorKind, &[&str]); 6] = [
        (
            b"[1,2,3]",
            DecodeErrorKind::Json,
            &["line 1, column 1", "JSON object"],
        ),
        (
            b"\"AFTER_DROP_TABLE\"",
            DecodeErrorKind::Json,
            &["JSON object"],
        ),
        (
            b"{\"event_type\":\"AFTER_DROP_TABLE\",\n\"namespace\":7}",
            DecodeErrorKind::InvalidField,
            &["`namespace`", "line 2, column 13", "integer `7`"],
        ),
        (
            br#"{"event_type":"not an event"}"#,
            DecodeErrorKind::InvalidEventType,
            &["`event_type`", "`not an event`", "line 1"],
        ),
        (
            br#"{"event_type":42}"#,
            DecodeErrorKind::InvalidEventType,
            &["`event_type`", "number `42`"],
        ),
        (
            br#"{"event_type":"AFTER_DROP_TABLE""#,
            DecodeErrorKind::Json,
            &["EOF", "line 1"],
        ),
    ];
    for (input, kind, needles) in cases {
        assert_error(decode(WireFormat::PolarisJson, None, input), kind, needles);
        assert_error(
            decode(WireFormat::Auto, None, input),
            kind_in_auto(input, kind),
            &[],
        );
    }
}

/// Auto only reads values that start with `{` as JSON.
fn kind_in_auto(input: &[u8], kind: DecodeErrorKind) -> DecodeErrorKind {
    if input.starts_with(b"{") {
        kind
    } else {
        DecodeErrorKind::Avro
    }
}

#[test]
fn json_error_positions_are_line_and_column() {
    let err = decode(
        WireFormat::PolarisJson,
        None,
        b"{\"event_type\":\"AFTER_DROP_TABLE\",\n\"namespace\":7}",
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("namespace"));
    assert_eq!(
        err.position(),
        Some(Position::LineColumn {
            line: 2,
            column: 13
        })
    );
}

#[test]
fn random_bytes_are_avro_errors() {
    let mut state = 0x1234_5678_9abc_def0_u64;
    for round in 0..200 {
        let len = 1 + round % 120;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .filter(|b| *b != b'{')
            .collect();
        if bytes.is_empty() {
            continue;
        }
        for format in [WireFormat::Avro, WireFormat::Auto] {
            let err = decode(format, None, &bytes).expect_err("random bytes decode");
            assert!(
                matches!(
                    err.kind(),
                    DecodeErrorKind::Avro | DecodeErrorKind::InvalidEventType
                ),
                "{err}"
            );
            assert!(err.to_string().contains("byte") || err.kind() != DecodeErrorKind::Avro);
        }
        let err = decode(WireFormat::PolarisJson, None, &bytes).expect_err("random bytes as JSON");
        assert_eq!(err.kind(), DecodeErrorKind::Json, "{err}");
    }
}

#[test]
fn truncated_avro_says_where() {
    let event = sample_events(3, 77).remove(2);
    for confluent in [false, true] {
        let full = if confluent {
            encode_avro_confluent(&event, 3)
        } else {
            encode_avro_raw(&event)
        };
        let start = if confluent { 6 } else { 1 };
        for cut in start..full.len() {
            let err = decode(WireFormat::Avro, None, &full[..cut]).expect_err("truncated datum");
            assert_eq!(err.kind(), DecodeErrorKind::Avro, "cut at {cut}: {err}");
            let message = err.to_string();
            assert!(
                message.contains(&format!("of {cut}")),
                "cut at {cut}: {message}"
            );
            assert!(message.contains("field `"), "cut at {cut}: {message}");
        }
    }
    // The last field is the attributes map: cutting its end names it.
    let raw = encode_avro_raw(&event);
    let err = decode(WireFormat::Avro, None, &raw[..raw.len() - 1]).unwrap_err();
    assert!(matches!(err, DecodeError::AvroTruncated { .. }), "{err}");
    assert_eq!(err.field(), Some("attributes"));
}

#[test]
fn trailing_bytes_after_a_datum_are_rejected_with_their_position() {
    let event = sample_events(1, 1).remove(0);
    let mut raw = encode_avro_raw(&event);
    let end = raw.len();
    raw.extend_from_slice(b"\x02\x04junk");
    assert_error(
        decode(WireFormat::Avro, None, &raw),
        DecodeErrorKind::Avro,
        &[
            "6 trailing bytes",
            &format!("ends at byte {end} of {}", end + 6),
        ],
    );
    let err = decode(WireFormat::Avro, None, &raw).unwrap_err();
    assert_eq!(err.position(), Some(Position::Byte(end)));

    let mut confluent = encode_avro_confluent(&event, 1);
    confluent.push(0);
    assert_error(
        decode(WireFormat::Avro, None, &confluent),
        DecodeErrorKind::Avro,
        &[
            "1 trailing bytes",
            &format!("ends at byte {} of {}", end + 5, end + 6),
        ],
    );
}

#[test]
fn invalid_avro_event_types_are_rejected() {
    // UNKNOWN with a name that is not plausible.
    let mut event = sample_events(1, 2).remove(0);
    event.event_type = EventType::from_name("not an event");
    assert_error(
        decode(WireFormat::Avro, None, &encode_avro_raw(&event)),
        DecodeErrorKind::InvalidEventType,
        &["`event_type`", "not an event"],
    );

    // UNKNOWN without a name.
    let raw = encode_avro_raw(&sample_events(1, 2).remove(0));
    let mut value = apache_avro::from_avro_datum(avro_schema(), &mut &raw[..], None).unwrap();
    if let Value::Record(fields) = &mut value {
        fields[1].1 = Value::Enum(149, "UNKNOWN".into());
        fields[2].1 = Value::Union(0, Box::new(Value::Null));
    }
    let datum = apache_avro::to_avro_datum(avro_schema(), value).unwrap();
    assert_error(
        decode(WireFormat::Avro, None, &datum),
        DecodeErrorKind::InvalidEventType,
        &["UNKNOWN", "event_type_name"],
    );

    // An enum index past the symbols.
    let mut bad = raw.clone();
    let id_len = 1 + 36; // length byte + UUID
    bad[id_len] = 0xfe;
    bad.insert(id_len + 1, 0x04);
    assert_error(
        decode(WireFormat::Avro, None, &bad),
        DecodeErrorKind::Avro,
        &["field `event_type`", &format!("byte {id_len}")],
    );
}

#[test]
fn event_ids_start_raw_datums_away_from_zero_and_json() {
    for event in sample_events(200, 4) {
        let raw = encode_avro_raw(&event);
        assert_eq!(raw[0], 72, "36-character ids are zig-zag 72");
        assert!(!raw.starts_with(b"{"));
    }
}
