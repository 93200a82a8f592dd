//! [`PolarisEvent`]: the bridge's model of one Apache Polaris catalog event.
//!
//! It mirrors `PolarisEvent(type, metadata, attributes)` of Polaris 1.7: the metadata every
//! event has (id, time, realm, principal, request id, OpenTelemetry context), the typed
//! attributes the bridge acts on (catalog, namespace, table or view, table location and
//! metadata location, purge flag, rename source and destination), and every other attribute
//! as a string in [`PolarisEvent::attributes`].
//!
//! The serde JSON of the model (fixed field order, absent fields left out, maps sorted, the
//! time as RFC 3339 with milliseconds under `timestamp`) is how events are printed, and the
//! canonical encoding of an event that has no id ([`PolarisEvent::canonical_bytes`]).

pub mod stored;
pub mod timestamp;
pub mod types;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use types::{is_plausible_name, Category, EventType, ParseNameError, Phase};

/// The OpenTelemetry context Polaris records with an event (`otel.*` metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtelContext {
    /// `otel.trace_id`: 32 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `otel.span_id`: 16 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// `otel.sampled`: `true` or `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<String>,
    /// `otel.trace_flags`: two hex digits, e.g. `01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_flags: Option<String>,
}

impl OtelContext {
    /// Whether no part of the context is known.
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none()
            && self.span_id.is_none()
            && self.sampled.is_none()
            && self.trace_flags.is_none()
    }
}

/// One Polaris catalog event.
///
/// Every field but `event_type` is optional, because each wire format carries a different
/// subset: Polaris's stock Kafka listener, for one, sends no OpenTelemetry context, table
/// location or purge flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolarisEvent {
    /// The event's UUID (`PolarisEventMetadata.eventId`), as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// What happened.
    pub event_type: EventType,
    /// When Polaris emitted the event, in milliseconds since the Unix epoch. Serialized as
    /// RFC 3339 text under `timestamp`; deserialized from that text or from an integer.
    #[serde(
        rename = "timestamp",
        default,
        skip_serializing_if = "Option::is_none",
        with = "timestamp_serde"
    )]
    pub timestamp_ms: Option<i64>,
    /// The realm (tenant) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_id: Option<String>,
    /// The authenticated principal's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The principal roles activated for the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activated_roles: Vec<String>,
    /// The request id Polaris assigned or received (`X-Request-ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The OpenTelemetry context of the request that caused the event.
    #[serde(default, skip_serializing_if = "OtelContext::is_empty")]
    pub otel: OtelContext,
    /// The catalog (`catalog_name` attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_name: Option<String>,
    /// The namespace levels (`namespace` attribute), outermost first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Vec<String>>,
    /// The namespace as one string (`namespace_name` attribute of policy and generic-table
    /// events), as the REST path gives it: levels separated by the unit separator `\u{1f}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    /// The table's name, without its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    /// The table as namespace levels followed by its name (refresh events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_identifier: Option<Vec<String>>,
    /// The view's name, without its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_name: Option<String>,
    /// The view as namespace levels followed by its name (refresh events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_identifier: Option<Vec<String>>,
    /// The Iceberg table UUID (`table-uuid` of its metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_uuid: Option<String>,
    /// The table's base location, e.g. `s3://bucket/warehouse/ns/table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_location: Option<String>,
    /// The table's current metadata.json; what a purge starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<String>,
    /// Whether a drop asked for the table's files to be purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_requested: Option<bool>,
    /// A rename's source identifier: namespace levels, then name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_source: Option<Vec<String>>,
    /// A rename's destination identifier: namespace levels, then name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename_destination: Option<Vec<String>>,
    /// Every other attribute, as text (JSON text for structured values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl PolarisEvent {
    /// An event of `event_type` with nothing else known.
    pub fn new(event_type: EventType) -> Self {
        PolarisEvent {
            event_id: None,
            event_type,
            timestamp_ms: None,
            realm_id: None,
            principal: None,
            activated_roles: Vec::new(),
            request_id: None,
            otel: OtelContext::default(),
            catalog_name: None,
            namespace: None,
            namespace_name: None,
            table_name: None,
            table_identifier: None,
            view_name: None,
            view_identifier: None,
            table_uuid: None,
            table_location: None,
            metadata_location: None,
            purge_requested: None,
            rename_source: None,
            rename_destination: None,
            attributes: BTreeMap::new(),
        }
    }

    /// The event type's category; `None` for an unknown type.
    pub fn category(&self) -> Option<Category> {
        self.event_type.category()
    }

    /// BEFORE or AFTER, from the type name.
    pub fn phase(&self) -> Option<Phase> {
        self.event_type.phase()
    }

    /// The namespace levels of the resource: `namespace`, else the table identifier, view
    /// identifier or rename source without its last level (the object name).
    pub fn namespace_levels(&self) -> Option<&[String]> {
        if let Some(namespace) = &self.namespace {
            return Some(namespace);
        }
        [
            &self.table_identifier,
            &self.view_identifier,
            &self.rename_source,
        ]
        .into_iter()
        .flatten()
        .find_map(|identifier| identifier.split_last().map(|(_, levels)| levels))
    }

    /// The namespace as a dotted path (`sales.eu`): [`Self::namespace_levels`] joined with
    /// `.`, else `namespace_name` with its unit separators turned into dots.
    pub fn namespace_path(&self) -> Option<String> {
        match self.namespace_levels() {
            Some(levels) if !levels.is_empty() => Some(levels.join(".")),
            _ => self
                .namespace_name
                .as_ref()
                .map(|name| name.replace('\u{1f}', ".")),
        }
    }

    /// The table or view the event is about: `table_name`, else the last level of
    /// `table_identifier`, else `view_name`, else the last level of `view_identifier`, else
    /// the last level of `rename_source`.
    pub fn object_name(&self) -> Option<&str> {
        fn last(identifier: &Option<Vec<String>>) -> Option<&str> {
            identifier.as_ref()?.last().map(String::as_str)
        }
        self.table_name
            .as_deref()
            .or_else(|| last(&self.table_identifier))
            .or(self.view_name.as_deref())
            .or_else(|| last(&self.view_identifier))
            .or_else(|| last(&self.rename_source))
    }

    /// The resource the event is about, as `realm/catalog/namespace.path/name`, cut after the
    /// first unknown part: `POLARIS/prod/sales.eu/orders`, `POLARIS/prod/sales.eu` for a
    /// namespace event, `POLARIS/prod` for a catalog event, `POLARIS` when even the catalog is
    /// unknown. `default_realm` stands in for a missing `realm_id`. This is the ordering key
    /// of the event's tasks and the Kafka key of what the bridge republishes.
    pub fn resource_identity(&self, default_realm: &str) -> String {
        let mut identity = self.realm_id.as_deref().unwrap_or(default_realm).to_owned();
        let Some(catalog) = &self.catalog_name else {
            return identity;
        };
        identity.push('/');
        identity.push_str(catalog);
        let Some(namespace) = self.namespace_path() else {
            return identity;
        };
        identity.push('/');
        identity.push_str(&namespace);
        if let Some(name) = self.object_name() {
            identity.push('/');
            identity.push_str(name);
        }
        identity
    }

    /// The OpenTelemetry trace id, if known.
    pub fn trace_id(&self) -> Option<&str> {
        self.otel.trace_id.as_deref()
    }

    /// The canonical encoding: the serde JSON of the model (fixed field order, maps sorted).
    /// Two equal events have equal bytes; used to derive an id for events that have none.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing this model cannot fail: every map key is a string and no custom
        // serializer returns an error.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Serde for `timestamp_ms`: RFC 3339 text with milliseconds out; that text, any ISO-8601
/// instant, or integer milliseconds in.
mod timestamp_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::timestamp::{format_rfc3339_millis, parse_instant};

    pub fn serialize<S: Serializer>(value: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(millis) => serializer.serialize_str(&format_rfc3339_millis(*millis)),
            None => serializer.serialize_none(),
        }
    }

    /// Either form a timestamp may take in the model's JSON.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Timestamp {
        Millis(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<i64>, D::Error> {
        match Option::<Timestamp>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Timestamp::Millis(millis)) => Ok(Some(millis)),
            Some(Timestamp::Text(text)) => parse_instant(&text)
                .map(|instant| Some(instant.millis))
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn table_event() -> PolarisEvent {
        let mut event = PolarisEvent::new(EventType::AfterDropTable);
        event.event_id = Some("6f2c1a52-7c1e-4c1b-9d0e-2f8a3b4c5d6e".into());
        event.timestamp_ms = Some(1_777_629_600_123);
        event.catalog_name = Some("prod".into());
        event.namespace = Some(strings(&["sales", "eu"]));
        event.table_name = Some("orders".into());
        event.purge_requested = Some(true);
        event.otel.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        event.attributes.insert("zeta".into(), "1".into());
        event.attributes.insert("alpha".into(), "2".into());
        event
    }

    #[test]
    fn resource_identity_has_as_many_parts_as_known() {
        let event = table_event();
        assert_eq!(
            event.resource_identity("POLARIS"),
            "POLARIS/prod/sales.eu/orders"
        );

        let mut catalog = PolarisEvent::new(EventType::AfterCreateCatalog);
        catalog.catalog_name = Some("prod".into());
        assert_eq!(catalog.resource_identity("POLARIS"), "POLARIS/prod");
        catalog.realm_id = Some("acme".into());
        assert_eq!(catalog.resource_identity("POLARIS"), "acme/prod");

        let nothing = PolarisEvent::new(EventType::AfterListCatalogs);
        assert_eq!(nothing.resource_identity("POLARIS"), "POLARIS");

        let mut namespace = PolarisEvent::new(EventType::AfterCreateNamespace);
        namespace.catalog_name = Some("prod".into());
        namespace.namespace = Some(strings(&["sales"]));
        assert_eq!(namespace.resource_identity("R"), "R/prod/sales");
    }

    #[test]
    fn identifiers_give_namespace_and_name() {
        let mut refresh = PolarisEvent::new(EventType::AfterRefreshTable);
        refresh.catalog_name = Some("c".into());
        refresh.table_identifier = Some(strings(&["a", "b", "t"]));
        assert_eq!(refresh.namespace_levels(), Some(&strings(&["a", "b"])[..]));
        assert_eq!(refresh.namespace_path().as_deref(), Some("a.b"));
        assert_eq!(refresh.object_name(), Some("t"));
        assert_eq!(refresh.resource_identity("R"), "R/c/a.b/t");

        let mut view = PolarisEvent::new(EventType::AfterRefreshView);
        view.view_identifier = Some(strings(&["ns", "v"]));
        assert_eq!(view.object_name(), Some("v"));
        assert_eq!(view.namespace_path().as_deref(), Some("ns"));

        let mut rename = PolarisEvent::new(EventType::AfterRenameTable);
        rename.rename_source = Some(strings(&["ns", "old"]));
        rename.rename_destination = Some(strings(&["ns2", "new"]));
        assert_eq!(rename.object_name(), Some("old"));
        assert_eq!(rename.namespace_path().as_deref(), Some("ns"));

        let mut policy = PolarisEvent::new(EventType::AfterCreatePolicy);
        policy.namespace_name = Some("sales\u{1f}eu".into());
        assert_eq!(policy.namespace_levels(), None);
        assert_eq!(policy.namespace_path().as_deref(), Some("sales.eu"));
        assert_eq!(policy.object_name(), None);
    }

    #[test]
    fn model_json_is_canonical_and_decodable() {
        let event = table_event();
        let json = String::from_utf8(event.canonical_bytes()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"event_id":"6f2c1a52-7c1e-4c1b-9d0e-2f8a3b4c5d6e","event_type":"AFTER_DROP_TABLE","#,
                r#""timestamp":"2026-05-01T10:00:00.123Z","otel":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"#,
                r#""catalog_name":"prod","namespace":["sales","eu"],"table_name":"orders","#,
                r#""purge_requested":true,"attributes":{"alpha":"2","zeta":"1"}}"#
            )
        );
        let back: PolarisEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
        assert_eq!(back.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));

        let from_millis: PolarisEvent =
            serde_json::from_str(r#"{"event_type":"AFTER_FUTURE_THING","timestamp":5}"#).unwrap();
        assert_eq!(from_millis.timestamp_ms, Some(5));
        assert_eq!(
            from_millis.event_type,
            EventType::Unknown("AFTER_FUTURE_THING".into())
        );
        assert_eq!(from_millis.phase(), Some(Phase::After));
        assert_eq!(from_millis.category(), None);
    }
}
