//! The configuration file: one TOML document, environment overrides, strict validation.
//!
//! Unknown keys are rejected by name. Semantic problems are collected and reported together,
//! each naming the key, the problem and the fix. Any key can be overridden by an environment
//! variable `POLARIS_BRIDGE__<KEY>__<SUBKEY>...` (double underscores separate levels, array
//! elements are addressed by index), e.g. `POLARIS_BRIDGE__KAFKA__BOOTSTRAP_SERVERS`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polaris_bridge_api::codec::WireFormat;
use polaris_bridge_api::filter::{EventFilter, FilterSpec};
use serde::Deserialize;

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "POLARIS_BRIDGE__";

/// librdkafka properties the bridge sets itself; setting them would break its guarantees.
const RESERVED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `kafka.bootstrap_servers`"),
    ("group.id", "set `kafka.group_id`"),
    (
        "enable.auto.offset.store",
        "remove it: offsets are stored only after the task log is flushed",
    ),
    (
        "enable.auto.commit",
        "remove it: the bridge commits stored offsets itself",
    ),
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connection to the Kafka cluster that carries Polaris events.
    pub kafka: KafkaConfig,
    /// The topics to consume and the wire format of each.
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    /// The task log.
    #[serde(default)]
    pub store: StoreConfig,
    /// Batching and backpressure of the consumer.
    #[serde(default)]
    pub source: SourceConfig,
    /// Defaults for every connector's dispatcher.
    #[serde(default)]
    pub dispatcher: DispatcherConfig,
    /// The HTTP server (metrics, health).
    #[serde(default)]
    pub http: HttpConfig,
    /// Connector instances by name; see [`ConnectorSpec`].
    #[serde(default)]
    pub connectors: BTreeMap<String, toml::Table>,
    /// Routing rules: which events become tasks for which connector.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Optional: asks Polaris for a table's metadata location when a table event arrives
    /// without it (the stock JSON), to keep the table index current for purges.
    #[serde(default)]
    pub table_lookup: Option<TableLookupConfig>,
}

/// `[table_lookup]`: Polaris's loadTable, called for table events that lack the metadata
/// location, with OAuth2 client credentials. What it learns goes into the table index.
///
/// The OAuth2 fields repeat those of the `polaris-notify` connector's settings instead of
/// sharing a flattened struct, for the reason given at [`RouteConfig`]: a misspelt key must
/// be an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableLookupConfig {
    /// Polaris's Iceberg REST base, e.g. `http://polaris:8181/api/catalog`; tables are read
    /// from `{uri}/v1/{catalog}/namespaces/{namespace}/tables/{table}`.
    pub uri: String,
    /// The OAuth2 token endpoint; default `{uri}/v1/oauth/tokens`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// The principal's client id (it needs read access to the tables' metadata).
    pub client_id: String,
    /// Its secret, inline (prefer `client_secret_env` or `client_secret_file`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The environment variable that holds the secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file that holds the secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The OAuth2 scope asked for.
    #[serde(default = "default_lookup_scope")]
    pub scope: String,
    /// Sent as `Polaris-Realm` when set (else each event's realm is sent).
    #[serde(default)]
    pub realm: Option<String>,
    /// Only tables of these catalogs are looked up (all when empty).
    #[serde(default)]
    pub catalogs: Vec<String>,
    /// Lookups under way at once.
    #[serde(default = "default_lookup_concurrency")]
    pub concurrency: usize,
    /// Lookups waiting at most; beyond it new ones are dropped and counted (the consumer is
    /// never held up by Polaris).
    #[serde(default = "default_lookup_queue")]
    pub queue: usize,
    /// Timeout of one request.
    #[serde(default = "default_lookup_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts per lookup (transient failures are retried with backoff).
    #[serde(default = "default_lookup_attempts")]
    pub attempts: u32,
}

fn default_lookup_scope() -> String {
    "PRINCIPAL_ROLE:ALL".into()
}

fn default_lookup_concurrency() -> usize {
    4
}

fn default_lookup_queue() -> usize {
    10_000
}

fn default_lookup_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_lookup_attempts() -> u32 {
    3
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Consumer group; instances in one group split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Extra librdkafka properties (security, timeouts), passed through as strings.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "polaris-bridge".to_string()
}

/// `[[topics]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// `polaris-json` (Polaris's stock Kafka listener), `avro` (raw or Confluent framing) or
    /// `auto` (detected per message).
    #[serde(default = "default_format")]
    pub format: WireFormatSetting,
    /// Realm of events that don't name one.
    #[serde(default = "default_realm")]
    pub default_realm: String,
}

fn default_format() -> WireFormatSetting {
    WireFormatSetting(WireFormat::PolarisJson)
}

fn default_realm() -> String {
    "POLARIS".to_string()
}

/// A [`WireFormat`] read from its configuration name.
#[derive(Debug, Clone, Copy)]
pub struct WireFormatSetting(pub WireFormat);

impl<'de> Deserialize<'de> for WireFormatSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<WireFormat>()
            .map(WireFormatSetting)
            .map_err(serde::de::Error::custom)
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the sled task log. One process at a time may open it.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// sled's page cache, in MiB: bounds the store's share of memory.
    #[serde(default = "default_cache_mb")]
    pub cache_capacity_mb: u64,
    /// How long finished tasks (and so their dedup entries) are kept.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// How often finished tasks older than the retention are compacted away.
    #[serde(default = "default_compaction_interval", with = "humantime_serde")]
    pub compaction_interval: Duration,
}

fn default_store_path() -> PathBuf {
    PathBuf::from("polaris-bridge-data")
}
/// 16 MiB: the log's hot pages are its newest (appends, the dispatchers' windows, dedup
/// buckets of recent seconds); measured with 64 MiB, the bridge ran no faster and held
/// 60-70 MiB more (BENCHMARKS.md).
fn default_cache_mb() -> u64 {
    16
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_compaction_interval() -> Duration {
    Duration::from_secs(600)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            cache_capacity_mb: default_cache_mb(),
            retention: default_retention(),
            compaction_interval: default_compaction_interval(),
        }
    }
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Most messages recorded per log flush.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait to fill a batch before it is flushed anyway.
    #[serde(default = "default_batch_linger", with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Unfinished tasks above which the consumer pauses its partitions.
    #[serde(default = "default_max_backlog")]
    pub max_backlog: u64,
    /// Unfinished tasks below which a paused consumer resumes.
    #[serde(default = "default_resume_backlog")]
    pub resume_backlog: u64,
    /// librdkafka's prefetch bound, in KiB (`queued.max.messages.kbytes`): one queue for all
    /// the assigned partitions.
    #[serde(default = "default_prefetch_kb")]
    pub prefetch_kbytes: u64,
}

fn default_batch_size() -> usize {
    1000
}
fn default_batch_linger() -> Duration {
    Duration::from_millis(20)
}
fn default_max_backlog() -> u64 {
    100_000
}
fn default_resume_backlog() -> u64 {
    50_000
}
/// 4 MiB: librdkafka holds about twice the queued bytes in C heap (the fetch buffers the
/// messages point into, and a descriptor per message), so a source that is behind held about
/// 45 MiB with 16 MiB; the events/s were the same from 2 to 16 MiB with the 10 ms fetch backoff
/// (BENCHMARKS.md). A broker far away (tens of ms) may want more.
fn default_prefetch_kb() -> u64 {
    4 * 1024
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            batch_size: default_batch_size(),
            batch_linger: default_batch_linger(),
            max_backlog: default_max_backlog(),
            resume_backlog: default_resume_backlog(),
            prefetch_kbytes: default_prefetch_kb(),
        }
    }
}

/// Retry policy: exponential backoff with jitter, then dead letter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts before a task is dead-lettered (the first attempt counts).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry.
    #[serde(default = "default_initial_interval", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// Growth of the wait per attempt.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Randomisation factor: each wait is drawn from `wait * (1 +- jitter)`.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Give up on a task this long after it was created, whatever its attempts.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

fn default_max_attempts() -> u32 {
    10
}
fn default_initial_interval() -> Duration {
    Duration::from_millis(500)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.5
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_interval: default_initial_interval(),
            max_interval: default_max_interval(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
            max_age: None,
        }
    }
}

/// `[dispatcher]`: defaults that each connector may override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Deliveries in flight per connector.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a running task is owned before another attempt may take it over.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Unfinished tasks each connector holds in memory at once.
    #[serde(default = "default_window")]
    pub window: usize,
    /// On shutdown, how long in-flight deliveries may take before their leases are released.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_concurrency() -> usize {
    8
}
fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_window() -> usize {
    2048
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            concurrency: default_concurrency(),
            lease: default_lease(),
            window: default_window(),
            drain_timeout: default_drain_timeout(),
            retry: RetryConfig::default(),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`. Loopback unless set otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve nothing over HTTP.
    #[serde(default)]
    pub disabled: bool,
    /// File holding the admin API's bearer token (surrounding whitespace is trimmed). The
    /// environment variable [`ADMIN_TOKEN_ENV`] takes precedence. With neither, the admin API
    /// under `/api/v1` refuses every call (403) and only `/metrics`, `/healthz` and `/readyz`
    /// serve.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

/// Environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "POLARIS_BRIDGE_ADMIN_TOKEN";

/// Shortest admin token accepted.
pub const ADMIN_TOKEN_MIN_LEN: usize = 16;

impl HttpConfig {
    /// The admin API's bearer token: from `env_token` (the value of [`ADMIN_TOKEN_ENV`]),
    /// else from `admin_token_file`; `None` when neither is set.
    pub fn admin_token(&self, env_token: Option<String>) -> Result<Option<String>, ConfigError> {
        let (token, key, fix) = match (env_token, &self.admin_token_file) {
            (Some(token), _) => (
                token,
                ADMIN_TOKEN_ENV.to_string(),
                format!("set {ADMIN_TOKEN_ENV} to a random secret, e.g. `openssl rand -hex 32`"),
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::Invalid(vec![problem(
                        "http.admin_token_file",
                        &format!("cannot read {}: {e}", path.display()),
                        "point it at a readable file holding the token, or remove the key",
                    )])
                })?;
                (
                    text,
                    "http.admin_token_file".to_string(),
                    "write a random secret into the file, e.g. `openssl rand -hex 32 > FILE`"
                        .to_string(),
                )
            }
            (None, None) => return Ok(None),
        };
        let token = token.trim().to_string();
        if token.len() < ADMIN_TOKEN_MIN_LEN
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::Invalid(vec![problem(
                &key,
                &format!(
                    "the admin token must be at least {ADMIN_TOKEN_MIN_LEN} characters without spaces"
                ),
                &fix,
            )]));
        }
        Ok(Some(token))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            disabled: false,
            admin_token_file: None,
        }
    }
}

/// `[[routes]]`: events matching every given criterion become tasks of `connector`.
///
/// The criteria repeat the fields of a connector's `filter` table (the webhook's
/// `FilterConfig`) rather than share one struct through `#[serde(flatten)]`: serde cannot
/// reject unknown keys through a flattened struct, so a misspelt criterion would be dropped
/// silently and the route would match every event. Both compile through
/// [`EventFilter::compile`], so the same settings select the same events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name of a `[connectors.NAME]` entry.
    pub connector: String,
    /// Event type names or globs (`AFTER_*_TABLE`); empty matches all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Categories (`TABLE`, `VIEW`, ...); empty matches all.
    #[serde(default)]
    pub categories: Vec<String>,
    /// `before` or `after`; absent matches both.
    #[serde(default)]
    pub phase: Option<String>,
    /// Glob on the catalog name.
    #[serde(default)]
    pub catalog: Option<String>,
    /// Glob on the namespace, levels joined by `.`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Glob on the table or view name.
    #[serde(default)]
    pub table: Option<String>,
}

impl RouteConfig {
    /// The rule's criteria, for [`EventFilter::compile`].
    pub fn filter_spec(&self) -> FilterSpec<'_> {
        FilterSpec {
            event_types: &self.event_types,
            categories: &self.categories,
            phase: self.phase.as_deref(),
            catalog: self.catalog.as_deref(),
            namespace: self.namespace.as_deref(),
            table: self.table.as_deref(),
        }
    }
}

/// Settings every connector instance has, whatever its type.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Instance name (the key under `[connectors]`).
    pub name: String,
    /// Connector type (`file`, `blackhole`, ...).
    pub kind: String,
    /// Deliveries in flight.
    pub concurrency: usize,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Deliver tasks of one resource (table, view, namespace) one at a time, in event order.
    pub ordered: bool,
    /// The type-specific settings: every key but the common ones.
    pub settings: toml::Table,
}

/// Keys of `[connectors.NAME]` shared by every connector type.
const COMMON_CONNECTOR_KEYS: &[&str] = &["type", "concurrency", "retry", "ordered"];

/// A configuration error: where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the key and the position.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// Semantic problems, all of them.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One semantic problem with a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The key, as a dotted path (`routes[1].connector`).
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in self.0 {
            writeln!(f, "  - {}: {}. Fix: {}", p.key, p.problem, p.fix)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads `path`, applies the process environment's overrides, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses `text`, applies the overrides found in `env`, and validates.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut document: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_override(&mut document, &var, &value)?;
        }
        let config: Config =
            Config::deserialize(toml::Value::Table(document)).map_err(|e| ConfigError::Parse {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The connector instances with their common settings resolved.
    pub fn connector_specs(&self) -> Result<Vec<ConnectorSpec>, ConfigError> {
        let mut specs = Vec::new();
        let mut problems = Vec::new();
        for (name, table) in &self.connectors {
            match self.connector_spec(name, table) {
                Ok(spec) => specs.push(spec),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(specs)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn connector_spec(
        &self,
        name: &str,
        table: &toml::Table,
    ) -> Result<ConnectorSpec, Vec<Problem>> {
        let key = format!("connectors.{name}");
        let mut problems = Vec::new();
        let kind = match table.get("type") {
            Some(toml::Value::String(kind)) => kind.clone(),
            Some(_) => {
                problems.push(problem(
                    &format!("{key}.type"),
                    "is not a string",
                    "write e.g. `type = \"file\"`",
                ));
                String::new()
            }
            None => {
                problems.push(problem(
                    &format!("{key}.type"),
                    "is missing",
                    "add `type = \"file\"` (or another connector type)",
                ));
                String::new()
            }
        };
        let concurrency = match table.get("concurrency") {
            None => self.dispatcher.concurrency,
            Some(toml::Value::Integer(n)) if *n >= 1 => *n as usize,
            Some(_) => {
                problems.push(problem(
                    &format!("{key}.concurrency"),
                    "must be a whole number >= 1",
                    "set e.g. `concurrency = 8`",
                ));
                1
            }
        };
        let ordered = match table.get("ordered") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                problems.push(problem(
                    &format!("{key}.ordered"),
                    "must be true or false",
                    "set `ordered = true` or `false`",
                ));
                true
            }
        };
        let retry = match table.get("retry") {
            None => self.dispatcher.retry.clone(),
            Some(value) => match RetryConfig::deserialize(value.clone()) {
                Ok(retry) => {
                    check_retry(&format!("{key}.retry"), &retry, &mut problems);
                    retry
                }
                Err(e) => {
                    problems.push(problem(
                        &format!("{key}.retry"),
                        &e.to_string(),
                        "see the README's retry settings",
                    ));
                    RetryConfig::default()
                }
            },
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let settings = table
            .iter()
            .filter(|(k, _)| !COMMON_CONNECTOR_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ConnectorSpec {
            name: name.to_string(),
            kind,
            concurrency,
            retry,
            ordered,
            settings,
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.kafka.bootstrap_servers.trim().is_empty() {
            problems.push(problem(
                "kafka.bootstrap_servers",
                "is empty",
                "set it to `host:port[,host:port]`",
            ));
        }
        if self.kafka.group_id.trim().is_empty() {
            problems.push(problem(
                "kafka.group_id",
                "is empty",
                "set a consumer group name",
            ));
        }
        for (name, fix) in RESERVED_KAFKA_PROPERTIES {
            if self.kafka.properties.contains_key(*name) {
                problems.push(problem(
                    &format!("kafka.properties.\"{name}\""),
                    "is set by polaris-bridge itself",
                    fix,
                ));
            }
        }
        let mut seen_topics = std::collections::BTreeSet::new();
        for (i, topic) in self.topics.iter().enumerate() {
            if topic.name.trim().is_empty() {
                problems.push(problem(
                    &format!("topics[{i}].name"),
                    "is empty",
                    "name the Kafka topic",
                ));
            }
            if !seen_topics.insert(topic.name.as_str()) {
                problems.push(problem(
                    &format!("topics[{i}].name"),
                    &format!("`{}` is listed twice", topic.name),
                    "list each topic once",
                ));
            }
        }
        if let Some(lookup) = &self.table_lookup {
            if !(lookup.uri.starts_with("http://") || lookup.uri.starts_with("https://")) {
                problems.push(problem(
                    "table_lookup.uri",
                    &format!("`{}` is not an http(s) URL", lookup.uri),
                    "set Polaris's Iceberg REST base, e.g. http://polaris:8181/api/catalog",
                ));
            }
            if let Err(e) = polaris_bridge_polaris_notify::auth::read_client_secret(
                lookup.client_secret.as_deref(),
                lookup.client_secret_env.as_deref(),
                lookup.client_secret_file.as_deref(),
            ) {
                problems.push(problem(
                    "table_lookup.client_secret",
                    &e,
                    "give the principal's secret in one of the three keys",
                ));
            }
            for (key, value) in [
                ("concurrency", lookup.concurrency as u64),
                ("queue", lookup.queue as u64),
                ("attempts", u64::from(lookup.attempts)),
            ] {
                if value == 0 {
                    problems.push(problem(
                        &format!("table_lookup.{key}"),
                        "is 0",
                        "set at least 1 (or remove the key for its default)",
                    ));
                }
            }
        }
        if self.store.cache_capacity_mb == 0 {
            problems.push(problem(
                "store.cache_capacity_mb",
                "is 0",
                "set at least 8 (MiB); 64 is the default",
            ));
        }
        if self.source.batch_size == 0 {
            problems.push(problem(
                "source.batch_size",
                "is 0",
                "set at least 1; 1000 is the default",
            ));
        }
        if self.source.resume_backlog >= self.source.max_backlog {
            problems.push(problem(
                "source.resume_backlog",
                &format!(
                    "({}) is not below source.max_backlog ({})",
                    self.source.resume_backlog, self.source.max_backlog
                ),
                "set resume_backlog lower than max_backlog, e.g. half of it",
            ));
        }
        if self.dispatcher.concurrency == 0 {
            problems.push(problem("dispatcher.concurrency", "is 0", "set at least 1"));
        }
        if self.dispatcher.window < self.dispatcher.concurrency {
            problems.push(problem(
                "dispatcher.window",
                "is below dispatcher.concurrency",
                "set window >= concurrency",
            ));
        }
        if self.dispatcher.lease < Duration::from_secs(1) {
            problems.push(problem(
                "dispatcher.lease",
                "is under 1s",
                "set e.g. `lease = \"60s\"`",
            ));
        }
        check_retry("dispatcher.retry", &self.dispatcher.retry, &mut problems);
        for name in self.connectors.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(problem(
                    &format!("connectors.{name}"),
                    "has a name with characters other than letters, digits, `-` and `_`",
                    "rename the connector",
                ));
            }
        }
        match self.connector_specs() {
            Ok(_) => {}
            Err(ConfigError::Invalid(mut p)) => problems.append(&mut p),
            Err(other) => return Err(other),
        }
        for (i, route) in self.routes.iter().enumerate() {
            validate_route(i, route, &self.connectors, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

fn check_retry(key: &str, retry: &RetryConfig, problems: &mut Vec<Problem>) {
    if retry.max_attempts == 0 {
        problems.push(problem(
            &format!("{key}.max_attempts"),
            "is 0",
            "set at least 1",
        ));
    }
    if !(retry.multiplier >= 1.0 && retry.multiplier.is_finite()) {
        problems.push(problem(
            &format!("{key}.multiplier"),
            "is below 1",
            "set e.g. 2.0",
        ));
    }
    if !(0.0..=1.0).contains(&retry.jitter) {
        problems.push(problem(
            &format!("{key}.jitter"),
            "is outside 0..1",
            "set e.g. 0.5",
        ));
    }
    if retry.max_interval < retry.initial_interval {
        problems.push(problem(
            &format!("{key}.max_interval"),
            "is below initial_interval",
            "raise max_interval",
        ));
    }
}

fn validate_route(
    i: usize,
    route: &RouteConfig,
    connectors: &BTreeMap<String, toml::Table>,
    problems: &mut Vec<Problem>,
) {
    let key = format!("routes[{i}]");
    if !connectors.contains_key(&route.connector) {
        let known: Vec<&str> = connectors.keys().map(String::as_str).collect();
        problems.push(problem(
            &format!("{key}.connector"),
            &format!("no connector is named `{}`", route.connector),
            &format!(
                "define [connectors.{}] or use one of: {}",
                route.connector,
                if known.is_empty() {
                    "(none defined)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    if let Err(found) = EventFilter::compile(&route.filter_spec()) {
        for p in found {
            problems.push(problem(&format!("{key}.{}", p.field), &p.problem, &p.fix));
        }
    }
}

fn problem(key: &str, problem: &str, fix: &str) -> Problem {
    Problem {
        key: key.to_string(),
        problem: problem.to_string(),
        fix: fix.to_string(),
    }
}

/// Applies one `POLARIS_BRIDGE__A__B=value` override to the parsed document.
fn apply_override(document: &mut toml::Table, var: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            message: "empty key segment; use POLARIS_BRIDGE__SECTION__KEY".to_string(),
        });
    }
    let mut root = toml::Value::Table(std::mem::take(document));
    let result = set_path(&mut root, &path, raw);
    if let toml::Value::Table(table) = root {
        *document = table;
    }
    result.map_err(|message| ConfigError::Env {
        var: var.to_string(),
        message,
    })
}

/// Sets the value at `path` below `node`, creating sections as needed; array entries are
/// addressed by their index.
fn set_path(node: &mut toml::Value, path: &[String], raw: &str) -> Result<(), String> {
    let Some((segment, rest)) = path.split_first() else {
        return Err("no key after the prefix".to_string());
    };
    match node {
        toml::Value::Table(table) => {
            if rest.is_empty() {
                let value = parse_override_value(raw, table.get(segment));
                table.insert(segment.clone(), value);
                Ok(())
            } else {
                let child = table
                    .entry(segment.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                set_path(child, rest, raw)
            }
        }
        toml::Value::Array(items) => {
            let len = items.len();
            let index: usize = segment.parse().ok().filter(|i| *i < len).ok_or_else(|| {
                format!("`{segment}` is not an index of this array of {len} entries (0..{len})")
            })?;
            if rest.is_empty() {
                let value = parse_override_value(raw, Some(&items[index]));
                items[index] = value;
                Ok(())
            } else {
                set_path(&mut items[index], rest, raw)
            }
        }
        _ => Err(format!("`{segment}` is below a key that is not a section")),
    }
}

/// Reads an override as a TOML value (number, boolean, array) unless the key it replaces is
/// a string, or the text is not a TOML value: then it is a string.
fn parse_override_value(raw: &str, existing: Option<&toml::Value>) -> toml::Value {
    if matches!(existing, Some(toml::Value::String(_))) {
        return toml::Value::String(raw.to_string());
    }
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"

[[topics]]
name = "polaris-catalog-events"

[connectors.audit]
type = "file"
path = "/tmp/a.jsonl"

[[routes]]
connector = "audit"
event_types = ["AFTER_*_TABLE"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", Vec::<(String, String)>::new())
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.kafka.group_id, "polaris-bridge");
        assert_eq!(c.topics[0].format.0, WireFormat::PolarisJson);
        assert_eq!(c.topics[0].default_realm, "POLARIS");
        assert_eq!(c.store.retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.store.cache_capacity_mb, 16);
        let specs = c.connector_specs().unwrap();
        assert_eq!(specs[0].kind, "file");
        assert_eq!(specs[0].concurrency, 8);
        assert!(specs[0].ordered);
        assert!(specs[0].settings.contains_key("path"));
        assert!(!specs[0].settings.contains_key("type"));
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = parse(
            &MINIMAL
                .replace("[store]", "")
                .replace("[kafka]", "[kafka]\nbootstrap_server = \"x\""),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bootstrap_server"), "{text}");
        assert!(text.contains("test.toml"), "{text}");
        let err = parse(&format!("{MINIMAL}\n[source]\nbatch_sise = 3\n")).unwrap_err();
        assert!(err.to_string().contains("batch_sise"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[frobnicate]\nx = 1\n")).unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
        // A route's criteria are declared on `RouteConfig` itself, not flattened from a
        // shared struct: with `#[serde(flatten)]` a misspelt criterion would be dropped
        // silently and the route would match every event.
        let err = parse(&MINIMAL.replace("event_types =", "event_type =")).unwrap_err();
        assert!(err.to_string().contains("`event_type`"), "{err}");
    }

    #[test]
    fn semantic_problems_name_key_and_fix() {
        let text = MINIMAL
            .replace("connector = \"audit\"", "connector = \"audti\"")
            .replace("AFTER_*_TABLE", "AFTER_DROP_TABEL")
            + "\n[source]\nmax_backlog = 10\nresume_backlog = 10\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"\n";
        let p = problems(&text);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"routes[0].connector"), "{p:?}");
        assert!(keys.contains(&"routes[0].event_types"), "{p:?}");
        assert!(keys.contains(&"source.resume_backlog"), "{p:?}");
        assert!(
            keys.contains(&"kafka.properties.\"enable.auto.commit\""),
            "{p:?}"
        );
        let route = p.iter().find(|p| p.key == "routes[0].connector").unwrap();
        assert!(
            route.fix.contains("audit"),
            "the fix lists the defined connectors: {route:?}"
        );
        let rendered = ConfigError::Invalid(p).to_string();
        assert!(rendered.contains("Fix:"), "{rendered}");
    }

    #[test]
    fn connector_common_settings_are_checked() {
        let p = problems(&MINIMAL.replace(
            "type = \"file\"",
            "type = \"file\"\nconcurrency = 0\nretry = { jitter = 3.0 }",
        ));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"connectors.audit.concurrency"), "{p:?}");
        assert!(keys.contains(&"connectors.audit.retry.jitter"), "{p:?}");
        let p = problems(&MINIMAL.replace("type = \"file\"\n", ""));
        assert_eq!(p[0].key, "connectors.audit.type");
    }

    #[test]
    fn bad_format_lists_the_choices() {
        let err = parse(&MINIMAL.replace(
            "name = \"polaris-catalog-events\"",
            "name = \"t\"\nformat = \"protobuf\"",
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("protobuf") && text.contains("polaris-json"),
            "{text}"
        );
    }

    #[test]
    fn environment_overrides_apply_with_types() {
        let env = vec![
            (
                format!("{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS"),
                "broker:9093".to_string(),
            ),
            (format!("{ENV_PREFIX}TOPICS__0__FORMAT"), "avro".to_string()),
            (format!("{ENV_PREFIX}SOURCE__BATCH_SIZE"), "17".to_string()),
            (
                format!("{ENV_PREFIX}CONNECTORS__AUDIT__PATH"),
                "/var/log/x.jsonl".to_string(),
            ),
            (format!("{ENV_PREFIX}STORE__RETENTION"), "2d".to_string()),
            ("UNRELATED".to_string(), "1".to_string()),
        ];
        let c = Config::from_toml(MINIMAL, "test.toml", env).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "broker:9093");
        assert_eq!(c.topics[0].format.0, WireFormat::Avro);
        assert_eq!(c.source.batch_size, 17);
        assert_eq!(c.store.retention, Duration::from_secs(2 * 24 * 3600));
        let specs = c.connector_specs().unwrap();
        assert_eq!(specs[0].settings["path"].as_str(), Some("/var/log/x.jsonl"));
    }

    #[test]
    fn table_lookup_problems_name_the_key() {
        let text = format!(
            "{MINIMAL}\n[table_lookup]\nuri = \"polaris:8181\"\nclient_id = \"b\"\nconcurrency = 0\n"
        );
        let found = problems(&text);
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"table_lookup.uri"), "{keys:?}");
        assert!(keys.contains(&"table_lookup.client_secret"), "{keys:?}");
        assert!(keys.contains(&"table_lookup.concurrency"), "{keys:?}");
        let typo = format!(
            "{MINIMAL}\n[table_lookup]\nuri = \"http://p\"\nclient_id = \"b\"\nclient_secret = \"s\"\nscopes = \"x\"\n"
        );
        let err = parse(&typo).unwrap_err().to_string();
        assert!(err.contains("scopes"), "{err}");
        let ok = format!(
            "{MINIMAL}\n[table_lookup]\nuri = \"http://p/api/catalog\"\nclient_id = \"b\"\nclient_secret = \"s\"\n"
        );
        let lookup = parse(&ok).unwrap().table_lookup.unwrap();
        assert_eq!(lookup.scope, "PRINCIPAL_ROLE:ALL");
        assert_eq!(lookup.concurrency, 4);
    }

    #[test]
    fn bad_environment_overrides_name_the_variable() {
        let env = vec![(format!("{ENV_PREFIX}TOPICS__5__NAME"), "x".to_string())];
        let err = Config::from_toml(MINIMAL, "test.toml", env).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
        assert!(err.to_string().contains("TOPICS__5__NAME"), "{err}");
        let env = vec![(
            format!("{ENV_PREFIX}SOURCE__BATCH_SIZE"),
            "many".to_string(),
        )];
        let err = Config::from_toml(MINIMAL, "test.toml", env).unwrap_err();
        assert!(err.to_string().contains("batch_size"), "{err}");
    }
}
