//! Polaris's Notification API request: `POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/notifications`
//! with `{"notification-type", "payload": {"table-name", "timestamp", "table-uuid",
//! "metadata-location"}}`; and the mapping of Polaris events to notifications.

use polaris_bridge_api::event::EventType;
use polaris_bridge_api::PolarisEvent;
use serde::Serialize;

/// The notification types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// A table was created (or registered).
    Create,
    /// A table's metadata changed.
    Update,
    /// A table was dropped (its files stay).
    Drop,
    /// A dry run of privileges, allowed locations and credentials.
    Validate,
}

impl Kind {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "CREATE",
            Kind::Update => "UPDATE",
            Kind::Drop => "DROP",
            Kind::Validate => "VALIDATE",
        }
    }
}

/// One notification about one table of the target catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// What happened.
    pub kind: Kind,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub table: String,
    /// Event time, ms since the epoch.
    pub timestamp_ms: i64,
    /// The Iceberg table uuid.
    pub table_uuid: String,
    /// The metadata.json (for VALIDATE: a prospective location or a parent directory).
    pub metadata_location: String,
}

/// The body's shape.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "notification-type")]
    kind: Kind,
    payload: Payload<'a>,
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "table-name")]
    table_name: &'a str,
    timestamp: i64,
    #[serde(rename = "table-uuid")]
    table_uuid: &'a str,
    #[serde(rename = "metadata-location")]
    metadata_location: &'a str,
}

impl Notification {
    /// The JSON request body.
    pub fn body(&self) -> Vec<u8> {
        let body = Body {
            kind: self.kind,
            payload: Payload {
                table_name: &self.table,
                timestamp: self.timestamp_ms,
                table_uuid: &self.table_uuid,
                metadata_location: &self.metadata_location,
            },
        };
        // Strings and an integer always serialize.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The request path under the base URL, for catalog (prefix) `catalog`: namespace levels
    /// joined by the unit separator, every segment percent-encoded.
    pub fn path(&self, catalog: &str) -> String {
        format!(
            "/v1/{}/namespaces/{}/tables/{}/notifications",
            encode_segment(catalog),
            encode_segment(&self.namespace.join("\u{1f}")),
            encode_segment(&self.table)
        )
    }

    /// `namespace.levels.table`, for messages and the drop ledger.
    pub fn table_path(&self) -> String {
        let mut path = self.namespace.join(".");
        path.push('.');
        path.push_str(&self.table);
        path
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether the connector acts on events of this type.
pub fn handles(event_type: &EventType) -> bool {
    matches!(
        event_type,
        EventType::AfterCreateTable
            | EventType::AfterRegisterTable
            | EventType::AfterUpdateTable
            | EventType::AfterDropTable
            | EventType::AfterRenameTable
    )
}

/// The notifications that mirror `event`, in order: one, or DROP + CREATE for a rename.
/// An error says what the event lacks.
pub fn for_event(event: &PolarisEvent) -> Result<Vec<Notification>, String> {
    let kind = match event.event_type {
        EventType::AfterCreateTable | EventType::AfterRegisterTable => Kind::Create,
        EventType::AfterUpdateTable => Kind::Update,
        EventType::AfterDropTable => Kind::Drop,
        EventType::AfterRenameTable => Kind::Drop,
        ref other => return Err(format!("{} is not mirrored", other.name())),
    };
    let mut missing = Vec::new();
    if event.timestamp_ms.is_none() {
        missing.push("timestamp");
    }
    if event.table_uuid.is_none() {
        missing.push("table-uuid");
    }
    if event.metadata_location.is_none() {
        missing.push("metadata-location");
    }
    let (namespace, table) =
        if kind == Kind::Drop && event.event_type == EventType::AfterRenameTable {
            split(event.rename_source.as_deref())
        } else {
            (
                event.namespace_levels().map(<[String]>::to_vec),
                event.object_name().map(str::to_owned),
            )
        };
    if namespace.is_none() {
        missing.push("namespace");
    }
    if table.is_none() {
        missing.push("table name");
    }
    let destination = split(event.rename_destination.as_deref());
    if event.event_type == EventType::AfterRenameTable && destination.1.is_none() {
        missing.push("rename destination");
    }
    if !missing.is_empty() {
        let mut reason = format!(
            "{} lacks {} needed for a Notification API request",
            event.event_type.name(),
            missing.join(", ")
        );
        if missing.contains(&"table-uuid") || missing.contains(&"metadata-location") {
            reason.push_str(
                "; Polaris's stock JSON events do not carry the table uuid and metadata \
                 location: publish events in the avro format (schemas/polaris_event.avsc), \
                 which carries them, or let the bridge's table index learn the table from an \
                 earlier Avro event",
            );
        }
        return Err(reason);
    }
    let base = Notification {
        kind,
        namespace: namespace.unwrap_or_default(),
        table: table.unwrap_or_default(),
        timestamp_ms: event.timestamp_ms.unwrap_or_default(),
        table_uuid: event.table_uuid.clone().unwrap_or_default(),
        metadata_location: event.metadata_location.clone().unwrap_or_default(),
    };
    let mut out = vec![base.clone()];
    if let (EventType::AfterRenameTable, (Some(namespace), Some(table))) =
        (&event.event_type, destination)
    {
        out.push(Notification {
            kind: Kind::Create,
            namespace,
            table,
            ..base
        });
    }
    Ok(out)
}

fn split(identifier: Option<&[String]>) -> (Option<Vec<String>>, Option<String>) {
    match identifier.and_then(<[String]>::split_last) {
        Some((name, levels)) if !levels.is_empty() => (Some(levels.to_vec()), Some(name.clone())),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn event(kind: EventType) -> PolarisEvent {
        let mut e = PolarisEvent::new(kind);
        e.timestamp_ms = Some(1_777_629_600_000);
        e.catalog_name = Some("prod".into());
        e.namespace = Some(strings(&["sales", "eu"]));
        e.table_name = Some("orders".into());
        e.table_uuid = Some("9c5f2f0e-0000-4000-8000-000000000001".into());
        e.metadata_location = Some("s3://b/sales/eu/orders/metadata/00001.metadata.json".into());
        e
    }

    #[test]
    fn maps_event_types_and_builds_the_request() {
        for (t, k) in [
            (EventType::AfterCreateTable, Kind::Create),
            (EventType::AfterRegisterTable, Kind::Create),
            (EventType::AfterUpdateTable, Kind::Update),
            (EventType::AfterDropTable, Kind::Drop),
        ] {
            let n = for_event(&event(t)).unwrap();
            assert_eq!(n.len(), 1);
            assert_eq!(n[0].kind, k);
        }
        let n = &for_event(&event(EventType::AfterUpdateTable)).unwrap()[0];
        assert_eq!(
            n.path("mirror cat"),
            "/v1/mirror%20cat/namespaces/sales%1Feu/tables/orders/notifications"
        );
        let body: serde_json::Value = serde_json::from_slice(&n.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "notification-type": "UPDATE",
                "payload": {
                    "table-name": "orders",
                    "timestamp": 1_777_629_600_000_i64,
                    "table-uuid": "9c5f2f0e-0000-4000-8000-000000000001",
                    "metadata-location": "s3://b/sales/eu/orders/metadata/00001.metadata.json"
                }
            })
        );
        assert!(!handles(&EventType::BeforeUpdateTable));
        assert!(handles(&EventType::AfterRenameTable));
    }

    #[test]
    fn rename_is_drop_then_create() {
        let mut e = event(EventType::AfterRenameTable);
        e.namespace = None;
        e.table_name = None;
        e.rename_source = Some(strings(&["sales", "eu", "orders"]));
        e.rename_destination = Some(strings(&["archive", "orders_2026"]));
        let n = for_event(&e).unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(
            (n[0].kind, n[0].table_path()),
            (Kind::Drop, "sales.eu.orders".into())
        );
        assert_eq!(
            (n[1].kind, n[1].table_path()),
            (Kind::Create, "archive.orders_2026".into())
        );
        assert_eq!(n[1].table_uuid, n[0].table_uuid);
    }

    #[test]
    fn stock_json_events_say_what_is_missing() {
        let mut e = event(EventType::AfterUpdateTable);
        e.table_uuid = None;
        e.metadata_location = None;
        let err = for_event(&e).unwrap_err();
        assert!(err.contains("table-uuid, metadata-location"), "{err}");
        assert!(err.contains("avro"), "{err}");
    }
}
