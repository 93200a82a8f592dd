//! The 149 Polaris event types (`PolarisEventType.java`, Polaris 1.7.0), their codes,
//! categories and BEFORE/AFTER phases, plus [`EventType::Unknown`] so that types added by a
//! newer Polaris keep flowing through the bridge.
//!
//! The table at the bottom of this file was generated once from
//! `polaris-event-types.tsv` (the project's Polaris reference); each row is
//! `Variant => ("NAME", code, Category, "attributes")`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error returned when parsing one of this crate's small closed enums from a string fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {}", allowed.join(", "))]
pub struct ParseNameError {
    /// What was being parsed, e.g. "event category".
    pub what: &'static str,
    /// The rejected input.
    pub value: String,
    /// Every accepted spelling.
    pub allowed: &'static [&'static str],
}

/// The functional area of an event type: Polaris gives each category a block of 100 codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Catalog management (codes 100-199).
    Catalog,
    /// Catalog roles and their grants (200-299).
    CatalogRole,
    /// Principals and their credentials (300-399).
    Principal,
    /// Principal roles (400-499).
    PrincipalRole,
    /// Iceberg namespaces (500-599).
    Namespace,
    /// Iceberg tables (600-699).
    Table,
    /// Iceberg views (700-799).
    View,
    /// Vended storage credentials (800-899).
    Credential,
    /// Multi-table transactions (900-999).
    Transaction,
    /// The Notification API (1000-1099).
    Notification,
    /// The REST configuration endpoint (1100-1199).
    Config,
    /// Policies (1200-1299).
    Policy,
    /// Generic (non-Iceberg) tables (1300-1399).
    GenericTable,
    /// Background task execution (1400-1499).
    TaskExecution,
    /// Request rate limiting (1500-1599).
    RateLimiting,
}

impl Category {
    /// All 15 categories, in code order.
    pub const ALL: [Category; 15] = [
        Category::Catalog,
        Category::CatalogRole,
        Category::Principal,
        Category::PrincipalRole,
        Category::Namespace,
        Category::Table,
        Category::View,
        Category::Credential,
        Category::Transaction,
        Category::Notification,
        Category::Config,
        Category::Policy,
        Category::GenericTable,
        Category::TaskExecution,
        Category::RateLimiting,
    ];

    const NAMES: &'static [&'static str] = &[
        "CATALOG",
        "CATALOG_ROLE",
        "PRINCIPAL",
        "PRINCIPAL_ROLE",
        "NAMESPACE",
        "TABLE",
        "VIEW",
        "CREDENTIAL",
        "TRANSACTION",
        "NOTIFICATION",
        "CONFIG",
        "POLICY",
        "GENERIC_TABLE",
        "TASK_EXECUTION",
        "RATE_LIMITING",
    ];

    /// The name as Polaris spells it, e.g. `CATALOG_ROLE`.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = ParseNameError;

    /// Parses a category name, ignoring ASCII case (`table`, `TABLE`, `Catalog_Role`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseNameError {
                what: "event category",
                value: s.to_owned(),
                allowed: Self::NAMES,
            })
    }
}

/// Whether an event fires before an operation or after it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Fired before the operation runs; the operation may still fail.
    Before,
    /// Fired only after the operation succeeded.
    After,
}

impl Phase {
    const NAMES: &'static [&'static str] = &["BEFORE", "AFTER"];

    /// `BEFORE` or `AFTER`.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Phase {
    type Err = ParseNameError;

    /// Parses `BEFORE` or `AFTER`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("BEFORE") {
            Ok(Phase::Before)
        } else if s.eq_ignore_ascii_case("AFTER") {
            Ok(Phase::After)
        } else {
            Err(ParseNameError {
                what: "event phase",
                value: s.to_owned(),
                allowed: Self::NAMES,
            })
        }
    }
}

/// Longest name [`is_plausible_name`] accepts.
pub const MAX_EVENT_TYPE_NAME_LEN: usize = 128;

/// Whether `name` looks like a Polaris event type name: UPPER_SNAKE_CASE (`A-Z`, `0-9`, single
/// underscores between words, starting with a letter), 1 to 128 characters.
///
/// Names that pass but are not in the known list decode as [`EventType::Unknown`]; names that
/// fail are rejected as invalid input.
pub fn is_plausible_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_EVENT_TYPE_NAME_LEN {
        return false;
    }
    if !bytes[0].is_ascii_uppercase() || bytes[bytes.len() - 1] == b'_' {
        return false;
    }
    let mut previous_underscore = false;
    for &b in bytes {
        match b {
            b'_' if previous_underscore => return false,
            b'_' => previous_underscore = true,
            b'A'..=b'Z' | b'0'..=b'9' => previous_underscore = false,
            _ => return false,
        }
    }
    true
}

/// Builds [`EventType`] and its lookup tables from the generated table below.
macro_rules! define_event_types {
    ($($variant:ident => ($name:literal, $code:literal, $category:ident, $attributes:literal),)*) => {
        /// A Polaris event type: one of the 149 known types, or [`EventType::Unknown`] for a
        /// name this build does not know (a newer Polaris). Serialized as its name.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum EventType {
            $(
                #[doc = concat!("`", $name, "`: code ", stringify!($code), ", category `",
                    stringify!($category), "`, attributes: ", $attributes, ".")]
                $variant,
            )*
            /// A type name not in Polaris 1.7.0's list, kept verbatim.
            Unknown(String),
        }

        /// Every known type, in code order.
        static KNOWN: &[EventType] = &[$(EventType::$variant,)*];

        impl EventType {
            /// Name, code and category of a known type.
            fn info(&self) -> Option<(&'static str, u32, Category)> {
                match self {
                    $(EventType::$variant => Some(($name, $code, Category::$category)),)*
                    EventType::Unknown(_) => None,
                }
            }

            /// The known type called `name`, if any.
            fn lookup(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

impl EventType {
    /// The type called `name`: a known variant, or [`EventType::Unknown`] for any other name
    /// (check [`is_plausible_name`] first when the input is untrusted).
    pub fn from_name(name: &str) -> EventType {
        Self::lookup(name).unwrap_or_else(|| EventType::Unknown(name.to_owned()))
    }

    /// Whether `name` looks like an event type name; see the free function
    /// [`is_plausible_name`].
    pub fn is_plausible_name(name: &str) -> bool {
        is_plausible_name(name)
    }

    /// All 149 types of Polaris 1.7.0, in code order.
    pub fn known() -> &'static [EventType] {
        KNOWN
    }

    /// The enum name, e.g. `AFTER_DROP_TABLE` (the raw name for [`EventType::Unknown`]).
    pub fn name(&self) -> &str {
        match self {
            EventType::Unknown(name) => name,
            known => known.info().map_or("", |(name, _, _)| name),
        }
    }

    /// Polaris's numeric code (BEFORE even, AFTER = BEFORE + 1); `None` when unknown.
    pub fn code(&self) -> Option<u32> {
        self.info().map(|(_, code, _)| code)
    }

    /// The category; `None` when unknown.
    pub fn category(&self) -> Option<Category> {
        self.info().map(|(_, _, category)| category)
    }

    /// BEFORE or AFTER, from the name's prefix (also for unknown names).
    pub fn phase(&self) -> Option<Phase> {
        let name = self.name();
        if name.starts_with("BEFORE_") {
            Some(Phase::Before)
        } else if name.starts_with("AFTER_") {
            Some(Phase::After)
        } else {
            None
        }
    }

    /// Whether this is one of the 149 known types.
    pub fn is_known(&self) -> bool {
        !matches!(self, EventType::Unknown(_))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EventType {
    /// Accepts any known name, and unknown names that pass [`is_plausible_name`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let event_type = EventType::from_name(&name);
        if event_type.is_known() || is_plausible_name(&name) {
            Ok(event_type)
        } else {
            Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&name),
                &"an UPPER_SNAKE_CASE Polaris event type name",
            ))
        }
    }
}

// @generated from shared/reference/polaris-event-types.tsv (Polaris 1.7.0,
// PolarisEventType.java) by a one-off script. Edit the table, not the enum.

define_event_types! {
    BeforeCreateCatalog => ("BEFORE_CREATE_CATALOG", 100, Catalog, "catalog_name"),
    AfterCreateCatalog => ("AFTER_CREATE_CATALOG", 101, Catalog, "catalog"),
    BeforeDeleteCatalog => ("BEFORE_DELETE_CATALOG", 102, Catalog, "catalog_name"),
    AfterDeleteCatalog => ("AFTER_DELETE_CATALOG", 103, Catalog, "catalog_name"),
    BeforeGetCatalog => ("BEFORE_GET_CATALOG", 104, Catalog, "catalog_name"),
    AfterGetCatalog => ("AFTER_GET_CATALOG", 105, Catalog, "catalog"),
    BeforeUpdateCatalog => ("BEFORE_UPDATE_CATALOG", 106, Catalog, "catalog_name,update_catalog_request"),
    AfterUpdateCatalog => ("AFTER_UPDATE_CATALOG", 107, Catalog, "catalog"),
    BeforeListCatalogs => ("BEFORE_LIST_CATALOGS", 108, Catalog, "none"),
    AfterListCatalogs => ("AFTER_LIST_CATALOGS", 109, Catalog, "none"),
    BeforeCreateCatalogRole => ("BEFORE_CREATE_CATALOG_ROLE", 200, CatalogRole, "catalog_name,catalog_role_name"),
    AfterCreateCatalogRole => ("AFTER_CREATE_CATALOG_ROLE", 201, CatalogRole, "catalog_name,catalog_role"),
    BeforeDeleteCatalogRole => ("BEFORE_DELETE_CATALOG_ROLE", 202, CatalogRole, "catalog_name,catalog_role_name"),
    AfterDeleteCatalogRole => ("AFTER_DELETE_CATALOG_ROLE", 203, CatalogRole, "catalog_name,catalog_role_name"),
    BeforeGetCatalogRole => ("BEFORE_GET_CATALOG_ROLE", 204, CatalogRole, "catalog_name,catalog_role_name"),
    AfterGetCatalogRole => ("AFTER_GET_CATALOG_ROLE", 205, CatalogRole, "catalog_name,catalog_role"),
    BeforeUpdateCatalogRole => ("BEFORE_UPDATE_CATALOG_ROLE", 206, CatalogRole, "catalog_name,catalog_role_name,update_catalog_role_request"),
    AfterUpdateCatalogRole => ("AFTER_UPDATE_CATALOG_ROLE", 207, CatalogRole, "catalog_name,catalog_role"),
    BeforeListCatalogRoles => ("BEFORE_LIST_CATALOG_ROLES", 208, CatalogRole, "catalog_name"),
    AfterListCatalogRoles => ("AFTER_LIST_CATALOG_ROLES", 209, CatalogRole, "catalog_name"),
    BeforeAddGrantToCatalogRole => ("BEFORE_ADD_GRANT_TO_CATALOG_ROLE", 210, CatalogRole, "add_grant_request,catalog_name,catalog_role_name"),
    AfterAddGrantToCatalogRole => ("AFTER_ADD_GRANT_TO_CATALOG_ROLE", 211, CatalogRole, "catalog_name,catalog_role_name,grant_resource,privilege"),
    BeforeRevokeGrantFromCatalogRole => ("BEFORE_REVOKE_GRANT_FROM_CATALOG_ROLE", 212, CatalogRole, "cascade,catalog_name,catalog_role_name,revoke_grant_request"),
    AfterRevokeGrantFromCatalogRole => ("AFTER_REVOKE_GRANT_FROM_CATALOG_ROLE", 213, CatalogRole, "cascade,catalog_name,catalog_role_name,grant_resource,privilege"),
    BeforeListAssigneePrincipalRolesForCatalogRole => ("BEFORE_LIST_ASSIGNEE_PRINCIPAL_ROLES_FOR_CATALOG_ROLE", 214, CatalogRole, "catalog_name,catalog_role_name"),
    AfterListAssigneePrincipalRolesForCatalogRole => ("AFTER_LIST_ASSIGNEE_PRINCIPAL_ROLES_FOR_CATALOG_ROLE", 215, CatalogRole, "catalog_name,catalog_role_name"),
    BeforeListGrantsForCatalogRole => ("BEFORE_LIST_GRANTS_FOR_CATALOG_ROLE", 216, CatalogRole, "catalog_name,catalog_role_name"),
    AfterListGrantsForCatalogRole => ("AFTER_LIST_GRANTS_FOR_CATALOG_ROLE", 217, CatalogRole, "catalog_name,catalog_role_name"),
    BeforeCreatePrincipal => ("BEFORE_CREATE_PRINCIPAL", 300, Principal, "principal_name"),
    AfterCreatePrincipal => ("AFTER_CREATE_PRINCIPAL", 301, Principal, "principal"),
    BeforeDeletePrincipal => ("BEFORE_DELETE_PRINCIPAL", 302, Principal, "principal_name"),
    AfterDeletePrincipal => ("AFTER_DELETE_PRINCIPAL", 303, Principal, "principal_name"),
    BeforeGetPrincipal => ("BEFORE_GET_PRINCIPAL", 304, Principal, "principal_name"),
    AfterGetPrincipal => ("AFTER_GET_PRINCIPAL", 305, Principal, "principal"),
    BeforeUpdatePrincipal => ("BEFORE_UPDATE_PRINCIPAL", 306, Principal, "principal_name,update_principal_request"),
    AfterUpdatePrincipal => ("AFTER_UPDATE_PRINCIPAL", 307, Principal, "principal"),
    BeforeRotateCredentials => ("BEFORE_ROTATE_CREDENTIALS", 308, Principal, "principal_name"),
    AfterRotateCredentials => ("AFTER_ROTATE_CREDENTIALS", 309, Principal, "principal"),
    BeforeResetCredentials => ("BEFORE_RESET_CREDENTIALS", 310, Principal, "principal_name"),
    AfterResetCredentials => ("AFTER_RESET_CREDENTIALS", 311, Principal, "principal"),
    BeforeListPrincipals => ("BEFORE_LIST_PRINCIPALS", 312, Principal, "none"),
    AfterListPrincipals => ("AFTER_LIST_PRINCIPALS", 313, Principal, "none"),
    BeforeAssignPrincipalRole => ("BEFORE_ASSIGN_PRINCIPAL_ROLE", 314, Principal, "principal_name,principal_role"),
    AfterAssignPrincipalRole => ("AFTER_ASSIGN_PRINCIPAL_ROLE", 315, Principal, "principal_name,principal_role"),
    BeforeRevokePrincipalRole => ("BEFORE_REVOKE_PRINCIPAL_ROLE", 316, Principal, "principal_name,principal_role_name"),
    AfterRevokePrincipalRole => ("AFTER_REVOKE_PRINCIPAL_ROLE", 317, Principal, "principal_name,principal_role_name"),
    BeforeListAssignedPrincipalRoles => ("BEFORE_LIST_ASSIGNED_PRINCIPAL_ROLES", 318, Principal, "principal_name"),
    AfterListAssignedPrincipalRoles => ("AFTER_LIST_ASSIGNED_PRINCIPAL_ROLES", 319, Principal, "principal_name"),
    BeforeCreatePrincipalRole => ("BEFORE_CREATE_PRINCIPAL_ROLE", 400, PrincipalRole, "create_principal_role_request"),
    AfterCreatePrincipalRole => ("AFTER_CREATE_PRINCIPAL_ROLE", 401, PrincipalRole, "principal_role"),
    BeforeDeletePrincipalRole => ("BEFORE_DELETE_PRINCIPAL_ROLE", 402, PrincipalRole, "principal_role_name"),
    AfterDeletePrincipalRole => ("AFTER_DELETE_PRINCIPAL_ROLE", 403, PrincipalRole, "principal_role_name"),
    BeforeGetPrincipalRole => ("BEFORE_GET_PRINCIPAL_ROLE", 404, PrincipalRole, "principal_role_name"),
    AfterGetPrincipalRole => ("AFTER_GET_PRINCIPAL_ROLE", 405, PrincipalRole, "principal_role"),
    BeforeUpdatePrincipalRole => ("BEFORE_UPDATE_PRINCIPAL_ROLE", 406, PrincipalRole, "principal_role_name,update_principal_role_request"),
    AfterUpdatePrincipalRole => ("AFTER_UPDATE_PRINCIPAL_ROLE", 407, PrincipalRole, "principal_role"),
    BeforeListPrincipalRoles => ("BEFORE_LIST_PRINCIPAL_ROLES", 408, PrincipalRole, "none"),
    AfterListPrincipalRoles => ("AFTER_LIST_PRINCIPAL_ROLES", 409, PrincipalRole, "none"),
    BeforeAssignCatalogRoleToPrincipalRole => ("BEFORE_ASSIGN_CATALOG_ROLE_TO_PRINCIPAL_ROLE", 410, PrincipalRole, "catalog_name,catalog_role_name,principal_role_name"),
    AfterAssignCatalogRoleToPrincipalRole => ("AFTER_ASSIGN_CATALOG_ROLE_TO_PRINCIPAL_ROLE", 411, PrincipalRole, "catalog_name,catalog_role_name,principal_role_name"),
    BeforeRevokeCatalogRoleFromPrincipalRole => ("BEFORE_REVOKE_CATALOG_ROLE_FROM_PRINCIPAL_ROLE", 412, PrincipalRole, "catalog_name,catalog_role_name,principal_role_name"),
    AfterRevokeCatalogRoleFromPrincipalRole => ("AFTER_REVOKE_CATALOG_ROLE_FROM_PRINCIPAL_ROLE", 413, PrincipalRole, "catalog_name,catalog_role_name,principal_role_name"),
    BeforeListAssigneePrincipalsForPrincipalRole => ("BEFORE_LIST_ASSIGNEE_PRINCIPALS_FOR_PRINCIPAL_ROLE", 414, PrincipalRole, "principal_role_name"),
    AfterListAssigneePrincipalsForPrincipalRole => ("AFTER_LIST_ASSIGNEE_PRINCIPALS_FOR_PRINCIPAL_ROLE", 415, PrincipalRole, "principal_role_name"),
    BeforeListCatalogRolesForPrincipalRole => ("BEFORE_LIST_CATALOG_ROLES_FOR_PRINCIPAL_ROLE", 416, PrincipalRole, "catalog_name,principal_role_name"),
    AfterListCatalogRolesForPrincipalRole => ("AFTER_LIST_CATALOG_ROLES_FOR_PRINCIPAL_ROLE", 417, PrincipalRole, "catalog_name,principal_role_name"),
    BeforeCreateNamespace => ("BEFORE_CREATE_NAMESPACE", 500, Namespace, "catalog_name,create_namespace_request"),
    AfterCreateNamespace => ("AFTER_CREATE_NAMESPACE", 501, Namespace, "catalog_name,namespace,namespace_properties"),
    BeforeListNamespaces => ("BEFORE_LIST_NAMESPACES", 502, Namespace, "catalog_name,parent_namespace_fqn"),
    AfterListNamespaces => ("AFTER_LIST_NAMESPACES", 503, Namespace, "catalog_name,parent_namespace_fqn"),
    BeforeLoadNamespaceMetadata => ("BEFORE_LOAD_NAMESPACE_METADATA", 504, Namespace, "catalog_name,namespace"),
    AfterLoadNamespaceMetadata => ("AFTER_LOAD_NAMESPACE_METADATA", 505, Namespace, "catalog_name,namespace,namespace_properties"),
    BeforeCheckExistsNamespace => ("BEFORE_CHECK_EXISTS_NAMESPACE", 506, Namespace, "catalog_name,namespace"),
    AfterCheckExistsNamespace => ("AFTER_CHECK_EXISTS_NAMESPACE", 507, Namespace, "catalog_name,namespace"),
    BeforeDropNamespace => ("BEFORE_DROP_NAMESPACE", 508, Namespace, "catalog_name,namespace"),
    AfterDropNamespace => ("AFTER_DROP_NAMESPACE", 509, Namespace, "catalog_name,namespace_fqn"),
    BeforeUpdateNamespaceProperties => ("BEFORE_UPDATE_NAMESPACE_PROPERTIES", 510, Namespace, "catalog_name,namespace,update_namespace_properties_request"),
    AfterUpdateNamespaceProperties => ("AFTER_UPDATE_NAMESPACE_PROPERTIES", 511, Namespace, "catalog_name,namespace,update_namespace_properties_response"),
    BeforeCreateTable => ("BEFORE_CREATE_TABLE", 600, Table, "access_delegation_mode,catalog_name,create_table_request,namespace"),
    AfterCreateTable => ("AFTER_CREATE_TABLE", 601, Table, "catalog_name,load_table_response,namespace,table_name"),
    BeforeListTables => ("BEFORE_LIST_TABLES", 602, Table, "catalog_name,namespace"),
    AfterListTables => ("AFTER_LIST_TABLES", 603, Table, "catalog_name,namespace"),
    BeforeLoadTable => ("BEFORE_LOAD_TABLE", 604, Table, "access_delegation_mode,catalog_name,if_none_match_string,namespace,snapshots,table_name"),
    AfterLoadTable => ("AFTER_LOAD_TABLE", 605, Table, "catalog_name,load_table_response,namespace,table_name"),
    BeforeCheckExistsTable => ("BEFORE_CHECK_EXISTS_TABLE", 606, Table, "catalog_name,namespace,table_name"),
    AfterCheckExistsTable => ("AFTER_CHECK_EXISTS_TABLE", 607, Table, "catalog_name,namespace,table_name"),
    BeforeDropTable => ("BEFORE_DROP_TABLE", 608, Table, "catalog_name,namespace,purge_requested,table_name"),
    AfterDropTable => ("AFTER_DROP_TABLE", 609, Table, "catalog_name,namespace,purge_requested,table_name"),
    BeforeRegisterTable => ("BEFORE_REGISTER_TABLE", 610, Table, "catalog_name,namespace,register_table_request"),
    AfterRegisterTable => ("AFTER_REGISTER_TABLE", 611, Table, "catalog_name,load_table_response,namespace,table_name"),
    BeforeRenameTable => ("BEFORE_RENAME_TABLE", 612, Table, "catalog_name,rename_table_request"),
    AfterRenameTable => ("AFTER_RENAME_TABLE", 613, Table, "catalog_name,rename_table_request"),
    BeforeUpdateTable => ("BEFORE_UPDATE_TABLE", 614, Table, "catalog_name,namespace,table_name,update_table_request"),
    AfterUpdateTable => ("AFTER_UPDATE_TABLE", 615, Table, "catalog_name,namespace,table_metadata,table_name,update_table_request"),
    BeforeRefreshTable => ("BEFORE_REFRESH_TABLE", 616, Table, "catalog_name,table_identifier"),
    AfterRefreshTable => ("AFTER_REFRESH_TABLE", 617, Table, "catalog_name,table_identifier"),
    BeforeCreateView => ("BEFORE_CREATE_VIEW", 700, View, "catalog_name,create_view_request,namespace"),
    AfterCreateView => ("AFTER_CREATE_VIEW", 701, View, "catalog_name,load_view_response,namespace,view_name"),
    BeforeListViews => ("BEFORE_LIST_VIEWS", 702, View, "catalog_name,namespace"),
    AfterListViews => ("AFTER_LIST_VIEWS", 703, View, "catalog_name,namespace"),
    BeforeLoadView => ("BEFORE_LOAD_VIEW", 704, View, "catalog_name,namespace,view_name"),
    AfterLoadView => ("AFTER_LOAD_VIEW", 705, View, "catalog_name,load_view_response,namespace,view_name"),
    BeforeCheckExistsView => ("BEFORE_CHECK_EXISTS_VIEW", 706, View, "catalog_name,namespace,view_name"),
    AfterCheckExistsView => ("AFTER_CHECK_EXISTS_VIEW", 707, View, "catalog_name,namespace,view_name"),
    BeforeDropView => ("BEFORE_DROP_VIEW", 708, View, "catalog_name,namespace,view_name"),
    AfterDropView => ("AFTER_DROP_VIEW", 709, View, "catalog_name,namespace,view_name"),
    BeforeRenameView => ("BEFORE_RENAME_VIEW", 710, View, "catalog_name,rename_table_request"),
    AfterRenameView => ("AFTER_RENAME_VIEW", 711, View, "catalog_name,rename_table_request"),
    BeforeReplaceView => ("BEFORE_REPLACE_VIEW", 712, View, "catalog_name,commit_view_request,namespace,view_name"),
    AfterReplaceView => ("AFTER_REPLACE_VIEW", 713, View, "catalog_name,commit_view_request,load_view_response,namespace,view_name"),
    BeforeRefreshView => ("BEFORE_REFRESH_VIEW", 714, View, "catalog_name,view_identifier"),
    AfterRefreshView => ("AFTER_REFRESH_VIEW", 715, View, "catalog_name,view_identifier"),
    BeforeRegisterView => ("BEFORE_REGISTER_VIEW", 716, View, "catalog_name,namespace,register_view_request"),
    AfterRegisterView => ("AFTER_REGISTER_VIEW", 717, View, "catalog_name,load_view_response,namespace,view_name"),
    BeforeLoadCredentials => ("BEFORE_LOAD_CREDENTIALS", 800, Credential, "catalog_name,namespace,table_name"),
    AfterLoadCredentials => ("AFTER_LOAD_CREDENTIALS", 801, Credential, "catalog_name,namespace,table_name"),
    BeforeCommitTransaction => ("BEFORE_COMMIT_TRANSACTION", 900, Transaction, "catalog_name,commit_transaction_request"),
    AfterCommitTransaction => ("AFTER_COMMIT_TRANSACTION", 901, Transaction, "catalog_name,commit_transaction_request"),
    BeforeSendNotification => ("BEFORE_SEND_NOTIFICATION", 1000, Notification, "catalog_name,namespace,notification_request,table_name"),
    AfterSendNotification => ("AFTER_SEND_NOTIFICATION", 1001, Notification, "catalog_name,namespace,table_name"),
    BeforeGetConfig => ("BEFORE_GET_CONFIG", 1100, Config, "warehouse"),
    AfterGetConfig => ("AFTER_GET_CONFIG", 1101, Config, "config_response"),
    BeforeCreatePolicy => ("BEFORE_CREATE_POLICY", 1200, Policy, "catalog_name,create_policy_request,namespace_name"),
    AfterCreatePolicy => ("AFTER_CREATE_POLICY", 1201, Policy, "catalog_name,load_policy_response,namespace_name"),
    BeforeListPolicies => ("BEFORE_LIST_POLICIES", 1202, Policy, "catalog_name,namespace_name,policy_type"),
    AfterListPolicies => ("AFTER_LIST_POLICIES", 1203, Policy, "catalog_name,namespace_name,policy_type"),
    BeforeLoadPolicy => ("BEFORE_LOAD_POLICY", 1204, Policy, "catalog_name,namespace_name,policy_name"),
    AfterLoadPolicy => ("AFTER_LOAD_POLICY", 1205, Policy, "catalog_name,load_policy_response,namespace_name"),
    BeforeUpdatePolicy => ("BEFORE_UPDATE_POLICY", 1206, Policy, "catalog_name,namespace_name,policy_name,update_policy_request"),
    AfterUpdatePolicy => ("AFTER_UPDATE_POLICY", 1207, Policy, "catalog_name,load_policy_response,namespace_name"),
    BeforeDropPolicy => ("BEFORE_DROP_POLICY", 1208, Policy, "catalog_name,detach_all,namespace_name,policy_name"),
    AfterDropPolicy => ("AFTER_DROP_POLICY", 1209, Policy, "catalog_name,detach_all,namespace_name,policy_name"),
    BeforeAttachPolicy => ("BEFORE_ATTACH_POLICY", 1210, Policy, "attach_policy_request,catalog_name,namespace_name,policy_name"),
    AfterAttachPolicy => ("AFTER_ATTACH_POLICY", 1211, Policy, "attach_policy_request,catalog_name,namespace_name,policy_name"),
    BeforeDetachPolicy => ("BEFORE_DETACH_POLICY", 1212, Policy, "catalog_name,detach_policy_request,namespace_name,policy_name"),
    AfterDetachPolicy => ("AFTER_DETACH_POLICY", 1213, Policy, "catalog_name,detach_policy_request,namespace_name,policy_name"),
    BeforeGetApplicablePolicies => ("BEFORE_GET_APPLICABLE_POLICIES", 1214, Policy, "catalog_name,namespace_name,policy_type,target_name"),
    AfterGetApplicablePolicies => ("AFTER_GET_APPLICABLE_POLICIES", 1215, Policy, "catalog_name,get_applicable_policies_response,namespace_name,policy_type,target_name"),
    BeforeCreateGenericTable => ("BEFORE_CREATE_GENERIC_TABLE", 1300, GenericTable, "catalog_name,create_generic_table_request,namespace_name"),
    AfterCreateGenericTable => ("AFTER_CREATE_GENERIC_TABLE", 1301, GenericTable, "catalog_name,generic_table,namespace_name"),
    BeforeDropGenericTable => ("BEFORE_DROP_GENERIC_TABLE", 1302, GenericTable, "catalog_name,generic_table_name,namespace_name"),
    AfterDropGenericTable => ("AFTER_DROP_GENERIC_TABLE", 1303, GenericTable, "catalog_name,generic_table_name,namespace_name"),
    BeforeListGenericTables => ("BEFORE_LIST_GENERIC_TABLES", 1304, GenericTable, "catalog_name,namespace_name"),
    AfterListGenericTables => ("AFTER_LIST_GENERIC_TABLES", 1305, GenericTable, "catalog_name,namespace_name"),
    BeforeLoadGenericTable => ("BEFORE_LOAD_GENERIC_TABLE", 1306, GenericTable, "catalog_name,generic_table_name,namespace_name"),
    AfterLoadGenericTable => ("AFTER_LOAD_GENERIC_TABLE", 1307, GenericTable, "catalog_name,generic_table,namespace_name"),
    BeforeAttemptTask => ("BEFORE_ATTEMPT_TASK", 1400, TaskExecution, "task_attempt,task_entity_id"),
    AfterAttemptTask => ("AFTER_ATTEMPT_TASK", 1401, TaskExecution, "task_attempt,task_entity_id,task_success"),
    BeforeLimitRequestRate => ("BEFORE_LIMIT_REQUEST_RATE", 1500, RateLimiting, "http_method,request_uri"),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn there_are_149_known_types_with_unique_codes_and_names() {
        let known = EventType::known();
        assert_eq!(known.len(), 149);
        let codes: BTreeSet<u32> = known.iter().filter_map(EventType::code).collect();
        assert_eq!(codes.len(), 149);
        let names: BTreeSet<&str> = known.iter().map(EventType::name).collect();
        assert_eq!(names.len(), 149);
        for event_type in known {
            assert!(event_type.is_known());
            assert!(is_plausible_name(event_type.name()), "{event_type}");
            assert_eq!(&EventType::from_name(event_type.name()), event_type);
            let (code, category) = (event_type.code().unwrap(), event_type.category().unwrap());
            // Blocks of 100 codes per category, in category order.
            assert_eq!(code / 100, category as u32 + 1, "{event_type}");
            assert!(event_type.phase().is_some(), "{event_type}");
        }
        let categories: BTreeSet<Category> = known.iter().filter_map(EventType::category).collect();
        assert_eq!(categories.len(), 15);
    }

    #[test]
    fn after_is_before_plus_one() {
        let by_name: BTreeMap<&str, &EventType> =
            EventType::known().iter().map(|t| (t.name(), t)).collect();
        let mut pairs = 0;
        for event_type in EventType::known() {
            let Some(operation) = event_type.name().strip_prefix("BEFORE_") else {
                continue;
            };
            assert_eq!(event_type.code().unwrap() % 2, 0, "{event_type}");
            assert_eq!(event_type.phase(), Some(Phase::Before));
            if let Some(after) = by_name.get(format!("AFTER_{operation}").as_str()) {
                assert_eq!(after.code(), Some(event_type.code().unwrap() + 1));
                assert_eq!(after.category(), event_type.category());
                assert_eq!(after.phase(), Some(Phase::After));
                pairs += 1;
            } else {
                assert_eq!(*event_type, EventType::BeforeLimitRequestRate);
            }
        }
        assert_eq!(pairs, 74);
        assert_eq!(
            EventType::BeforeLimitRequestRate.phase(),
            Some(Phase::Before)
        );
        assert_eq!(EventType::BeforeLimitRequestRate.code(), Some(1500));
    }

    #[test]
    fn every_tsv_row_round_trips() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/polaris-event-types.tsv");
        let Ok(tsv) = std::fs::read_to_string(&path) else {
            eprintln!(
                "skipped: {} is not there (it lives outside the repo)",
                path.display()
            );
            return;
        };
        let mut rows = 0;
        for line in tsv.lines().skip(1).filter(|line| !line.trim().is_empty()) {
            let columns: Vec<&str> = line.split('\t').collect();
            let (name, code, category) = (columns[0], columns[1], columns[2]);
            let event_type = EventType::from_name(name);
            assert!(event_type.is_known(), "{name} is not a known type");
            assert_eq!(event_type.name(), name);
            assert_eq!(event_type.code(), Some(code.parse().unwrap()), "{name}");
            assert_eq!(
                event_type.category(),
                Some(category.parse().unwrap()),
                "{name}"
            );
            assert_eq!(event_type.category().unwrap().name(), category);
            assert_eq!(&EventType::known()[rows], &event_type, "TSV order");
            rows += 1;
        }
        assert_eq!(rows, 149);
    }

    #[test]
    fn unknown_names_keep_flowing() {
        let future = EventType::from_name("AFTER_FUTURE_THING");
        assert_eq!(future, EventType::Unknown("AFTER_FUTURE_THING".into()));
        assert_eq!(future.name(), "AFTER_FUTURE_THING");
        assert_eq!(future.code(), None);
        assert_eq!(future.category(), None);
        assert_eq!(future.phase(), Some(Phase::After));
        assert_eq!(
            EventType::from_name("BEFORE_X").phase(),
            Some(Phase::Before)
        );
        assert_eq!(EventType::from_name("ROTATE").phase(), None);
        assert!(!future.is_known());
        assert!(EventType::is_plausible_name("AFTER_FUTURE_THING"));
    }

    #[test]
    fn plausible_names_are_upper_snake_case() {
        for name in ["AFTER_FUTURE_THING", "X", "A1_B2", &"A".repeat(128)] {
            assert!(is_plausible_name(name), "{name}");
        }
        for name in [
            "",
            "hello world",
            "after_x",
            "After_X",
            "_AFTER",
            "AFTER_",
            "AFTER__X",
            "1AFTER",
            "AFTER-X",
            "AFTÉR",
            &"A".repeat(129),
        ] {
            assert!(!is_plausible_name(name), "{name}");
        }
    }

    #[test]
    fn categories_and_phases_parse() {
        for category in Category::ALL {
            assert_eq!(category.name().parse::<Category>(), Ok(category));
            assert_eq!(category.to_string(), category.name());
        }
        assert_eq!(
            "catalog_role".parse::<Category>(),
            Ok(Category::CatalogRole)
        );
        let err = "TABLES".parse::<Category>().unwrap_err();
        assert!(err.to_string().starts_with(
            "unknown event category `TABLES`; expected one of: CATALOG, CATALOG_ROLE,"
        ));
        assert_eq!("before".parse::<Phase>(), Ok(Phase::Before));
        assert_eq!("After".parse::<Phase>(), Ok(Phase::After));
        assert_eq!(Phase::After.name(), "AFTER");
        assert_eq!(
            "during".parse::<Phase>().unwrap_err().to_string(),
            "unknown event phase `during`; expected one of: BEFORE, AFTER"
        );
    }

    #[test]
    fn serde_uses_the_name() {
        let json = serde_json::to_string(&EventType::AfterDropTable).unwrap();
        assert_eq!(json, r#""AFTER_DROP_TABLE""#);
        let back: EventType = serde_json::from_str(&json).unwrap();
        assert_eq!(back, EventType::AfterDropTable);
        let future: EventType = serde_json::from_str(r#""AFTER_FUTURE_THING""#).unwrap();
        assert_eq!(future, EventType::Unknown("AFTER_FUTURE_THING".into()));
        assert!(serde_json::from_str::<EventType>(r#""not an event""#).is_err());
        assert!(serde_json::from_str::<EventType>("42").is_err());
    }
}
