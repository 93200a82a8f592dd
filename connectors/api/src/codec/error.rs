//! [`DecodeError`]: why a Kafka record is not a Polaris event, and where in the record.

use std::fmt;

/// Where in a record value a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A JSON position, 1-based, as serde_json reports it.
    LineColumn {
        /// Line number, from 1.
        line: usize,
        /// Column number, from 1.
        column: usize,
    },
    /// A byte offset from the start of the record value (Confluent header included).
    Byte(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::LineColumn { line, column } => write!(f, "line {line}, column {column}"),
            Position::Byte(offset) => write!(f, "byte {offset}"),
        }
    }
}

/// The class of a [`DecodeError`]: a small, fixed set, usable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeErrorKind {
    /// The record value is empty.
    Empty,
    /// The value is not well-formed JSON, or not a JSON object.
    Json,
    /// The value is not a well-formed Avro datum of the schema (including truncation and
    /// trailing bytes).
    Avro,
    /// The event type is missing, not a string, or not a plausible event type name.
    InvalidEventType,
    /// A field has the wrong type or an invalid value.
    InvalidField,
}

impl DecodeErrorKind {
    /// Every kind, for pre-registering metrics.
    pub const ALL: [DecodeErrorKind; 5] = [
        DecodeErrorKind::Empty,
        DecodeErrorKind::Json,
        DecodeErrorKind::Avro,
        DecodeErrorKind::InvalidEventType,
        DecodeErrorKind::InvalidField,
    ];

    /// The label value: `empty`, `json`, `avro`, `invalid_event_type` or `invalid_field`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Empty => "empty",
            DecodeErrorKind::Json => "json",
            DecodeErrorKind::Avro => "avro",
            DecodeErrorKind::InvalidEventType => "invalid_event_type",
            DecodeErrorKind::InvalidField => "invalid_field",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record value could not be decoded into a [`crate::event::PolarisEvent`]. The message
/// names the field and the position when they are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record value has no bytes.
    #[error("empty record value")]
    Empty,

    /// Malformed JSON, or a JSON value that is not an object.
    #[error("malformed JSON{} at {position}: {message}", in_field(.field))]
    Json {
        /// The top-level field being read, if the problem is inside one.
        field: Option<String>,
        /// serde_json's description, without its position suffix.
        message: String,
        /// Where the parser stopped.
        position: Position,
    },

    /// An Avro datum that ends before its last field does.
    #[error(
        "Avro datum truncated: {} starts at byte {offset} of {len} and runs past the end",
        field_or_datum(.field)
    )]
    AvroTruncated {
        /// The field that could not be read completely.
        field: Option<String>,
        /// Where that field starts in the record value.
        offset: usize,
        /// The record value's length.
        len: usize,
    },

    /// Bytes that do not decode under the Avro schema.
    #[error("invalid Avro datum at byte {offset} of {len}{}: {message}", in_field(.field))]
    Avro {
        /// The field that failed to decode, if known.
        field: Option<String>,
        /// apache-avro's description.
        message: String,
        /// Where the failing field (or the datum) starts in the record value.
        offset: usize,
        /// The record value's length.
        len: usize,
    },

    /// Bytes left over after a complete Avro datum.
    #[error(
        "{} trailing bytes after the Avro datum, which ends at byte {offset} of {len}",
        .len - .offset
    )]
    AvroTrailingBytes {
        /// Where the datum ends in the record value.
        offset: usize,
        /// The record value's length.
        len: usize,
    },

    /// The event type is missing, not a string, or not a plausible name.
    #[error("invalid field `event_type`{}: {message}", at(.position))]
    InvalidEventType {
        /// What is wrong.
        message: String,
        /// Where, when the format knows.
        position: Option<Position>,
    },

    /// A field of the wrong type or with an invalid value.
    #[error("invalid field `{field}`{}: {message}", at(.position))]
    InvalidField {
        /// The field's name on the wire.
        field: String,
        /// What is wrong.
        message: String,
        /// Where, when the format knows.
        position: Option<Position>,
    },
}

impl DecodeError {
    /// The error's class, for metrics labels.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::Empty => DecodeErrorKind::Empty,
            DecodeError::Json { .. } => DecodeErrorKind::Json,
            DecodeError::AvroTruncated { .. }
            | DecodeError::Avro { .. }
            | DecodeError::AvroTrailingBytes { .. } => DecodeErrorKind::Avro,
            DecodeError::InvalidEventType { .. } => DecodeErrorKind::InvalidEventType,
            DecodeError::InvalidField { .. } => DecodeErrorKind::InvalidField,
        }
    }

    /// The wire field the error is about, if known.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Json { field, .. }
            | DecodeError::AvroTruncated { field, .. }
            | DecodeError::Avro { field, .. } => field.as_deref(),
            DecodeError::InvalidEventType { .. } => Some("event_type"),
            DecodeError::InvalidField { field, .. } => Some(field),
            DecodeError::Empty | DecodeError::AvroTrailingBytes { .. } => None,
        }
    }

    /// Where in the record value the error was found, if known.
    pub fn position(&self) -> Option<Position> {
        match self {
            DecodeError::Empty => None,
            DecodeError::Json { position, .. } => Some(*position),
            DecodeError::AvroTruncated { offset, .. }
            | DecodeError::Avro { offset, .. }
            | DecodeError::AvroTrailingBytes { offset, .. } => Some(Position::Byte(*offset)),
            DecodeError::InvalidEventType { position, .. }
            | DecodeError::InvalidField { position, .. } => *position,
        }
    }
}

/// ` in field `x`` when the field is known.
fn in_field(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|field| format!(" in field `{field}`"))
        .unwrap_or_default()
}

/// "field `x`", or "the datum" when the field is unknown.
fn field_or_datum(field: &Option<String>) -> String {
    field.as_ref().map_or_else(
        || "the datum".to_owned(),
        |field| format!("field `{field}`"),
    )
}

/// ` at <position>` when the position is known.
fn at(position: &Option<Position>) -> String {
    position
        .map(|position| format!(" at {position}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_position() {
        let err = DecodeError::InvalidField {
            field: "namespace".into(),
            message: "invalid type: integer `5`, expected a sequence".into(),
            position: Some(Position::LineColumn {
                line: 1,
                column: 40,
            }),
        };
        assert_eq!(
            err.to_string(),
            "invalid field `namespace` at line 1, column 40: invalid type: integer `5`, expected a sequence"
        );
        assert_eq!(err.kind().as_str(), "invalid_field");
        assert_eq!(err.field(), Some("namespace"));

        let err = DecodeError::AvroTrailingBytes {
            offset: 90,
            len: 93,
        };
        assert_eq!(
            err.to_string(),
            "3 trailing bytes after the Avro datum, which ends at byte 90 of 93"
        );
        assert_eq!(err.position(), Some(Position::Byte(90)));

        let err = DecodeError::AvroTruncated {
            field: Some("table_name".into()),
            offset: 31,
            len: 40,
        };
        assert_eq!(
            err.to_string(),
            "Avro datum truncated: field `table_name` starts at byte 31 of 40 and runs past the end"
        );
    }

    #[test]
    fn kinds_are_distinct_labels() {
        let labels: std::collections::BTreeSet<_> =
            DecodeErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), DecodeErrorKind::ALL.len());
    }
}
