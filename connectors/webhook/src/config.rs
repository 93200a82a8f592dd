//! The settings of one webhook endpoint (`[connectors.NAME]` with `type = "webhook"`), and
//! their validation.
//!
//! The common connector keys (`type`, `concurrency`, `retry`, `ordered`) are read by the
//! service; everything else in the table is deserialized here, unknown keys rejected.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use polaris_bridge_api::filter::{EventFilter, FilterSpec};
use serde::Deserialize;

/// One configuration problem: the key (relative to the connector's table), what is wrong and
/// how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, e.g. `secret_env` or `filter.catalog`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigProblem {
    pub(crate) fn new(
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigProblem {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Settings of one webhook endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST: an `http://` or `https://` URL.
    pub url: String,
    /// Environment variable(s) holding a `whsec_` signing secret. Several (a list) for key
    /// rotation: every request is signed with each secret.
    #[serde(default)]
    pub secret_env: OneOrMany,
    /// File(s) holding a `whsec_` signing secret (surrounding whitespace is ignored).
    #[serde(default)]
    pub secret_file: OneOrMany,
    /// Extra PEM file of CA certificates trusted for `https` (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest time for one request, connecting included.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest time to establish a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Requests per second to this endpoint, at most (absent: no limit).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Requests that may go out at once after a quiet spell (default: the rate, at least 1).
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// `structured` (the whole CloudEvent as the JSON body) or `binary` (attributes as
    /// `ce-` headers, the event as the body).
    #[serde(default)]
    pub mode: Mode,
    /// HTTP statuses that are retried (integers or `"500-599"` ranges). Default: 408, 425,
    /// 429 and 500-599.
    #[serde(default = "default_retry_on_status")]
    pub retry_on_status: Vec<StatusSpec>,
    /// Static headers added to every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `false` keeps the endpoint disabled: its tasks wait in the log.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which of the events routed here the endpoint wants.
    #[serde(default)]
    pub filter: FilterConfig,
    /// When to stop calling a failing endpoint for a while.
    #[serde(default)]
    pub circuit_breaker: BreakerConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_true() -> bool {
    true
}
fn default_retry_on_status() -> Vec<StatusSpec> {
    vec![
        StatusSpec::Code(408),
        StatusSpec::Code(425),
        StatusSpec::Code(429),
        StatusSpec::Range("500-599".into()),
    ]
}

/// One string or a list of strings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// Nothing given.
    #[default]
    None,
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, in order.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// How the CloudEvent is put on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `Content-Type: application/cloudevents+json`, the whole event as the body.
    #[default]
    Structured,
    /// `ce-*` headers, the Polaris event as an `application/json` body.
    Binary,
}

/// A retryable status: a code or an inclusive range written `"500-599"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    /// One code.
    Code(i64),
    /// A range, `"from-to"`, or one code as text.
    Range(String),
}

/// `filter`: every given criterion must match; an empty one matches everything. The same
/// criteria as a route's (declared again there, not flattened, so that unknown keys stay
/// errors in both places).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Event type names or globs (`AFTER_*_TABLE`).
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Categories (`TABLE`, `VIEW`, ...).
    #[serde(default)]
    pub categories: Vec<String>,
    /// `before` or `after`.
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

/// `circuit_breaker`: after `failures` consecutive failed requests (network errors, timeouts,
/// retryable statuses other than 429) the endpoint is left alone for `cooldown`, then one
/// probe request decides whether it is back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the circuit stays open before a probe.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

fn default_failures() -> u32 {
    5
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: default_failures(),
            cooldown: default_cooldown(),
        }
    }
}

/// The set of retryable statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    /// Whether `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        self.0
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&status))
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        parse_statuses(&default_retry_on_status()).unwrap_or(StatusSet(Vec::new()))
    }
}

/// Reads the retryable statuses.
pub fn parse_statuses(specs: &[StatusSpec]) -> Result<StatusSet, ConfigProblem> {
    let bad = |what: String| {
        ConfigProblem::new(
            "retry_on_status",
            what,
            "list HTTP statuses (100-599) as numbers or \"from-to\" ranges, e.g. [408, 429, \"500-599\"]",
        )
    };
    let code = |n: i64| -> Result<u16, ConfigProblem> {
        if (100..=599).contains(&n) {
            Ok(n as u16)
        } else {
            Err(bad(format!("{n} is not an HTTP status")))
        }
    };
    let mut ranges = Vec::new();
    for spec in specs {
        match spec {
            StatusSpec::Code(n) => {
                let c = code(*n)?;
                ranges.push((c, c));
            }
            StatusSpec::Range(text) => {
                let (from, to) = text.split_once('-').unwrap_or((text, text));
                let parse = |s: &str| {
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| bad(format!("`{text}` is not a status or a range")))
                };
                let (from, to) = (code(parse(from)?)?, code(parse(to)?)?);
                if from > to {
                    return Err(bad(format!("`{text}` is an empty range")));
                }
                ranges.push((from, to));
            }
        }
    }
    if ranges
        .iter()
        .any(|(from, to)| (*from..=*to).any(|s| (200..300).contains(&s)))
    {
        return Err(bad("a 2xx status is listed: 2xx is success".into()));
    }
    Ok(StatusSet(ranges))
}

/// Compiled `filter`: the shared [`EventFilter`], so an endpoint filter and a route with the
/// same settings select the same events.
#[derive(Debug, Clone, Default)]
pub struct Filter(EventFilter);

impl Filter {
    /// Compiles `config`, collecting every problem.
    pub fn compile(config: &FilterConfig, problems: &mut Vec<ConfigProblem>) -> Filter {
        let spec = FilterSpec {
            event_types: &config.event_types,
            categories: &config.categories,
            phase: config.phase.as_deref(),
            catalog: config.catalog.as_deref(),
            namespace: config.namespace.as_deref(),
            table: config.table.as_deref(),
        };
        match EventFilter::compile(&spec) {
            Ok(filter) => Filter(filter),
            Err(found) => {
                problems.extend(
                    found.into_iter().map(|p| {
                        ConfigProblem::new(format!("filter.{}", p.field), p.problem, p.fix)
                    }),
                );
                Filter::default()
            }
        }
    }

    /// Whether the endpoint wants `event`.
    pub fn matches(&self, event: &polaris_bridge_api::PolarisEvent) -> bool {
        self.0.matches(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::event::EventType;
    use polaris_bridge_api::PolarisEvent;

    fn parse(text: &str) -> Result<WebhookConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let c = parse("url = \"http://127.0.0.1:1/x\"\nsecret_env = \"S\"").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert_eq!(c.mode, Mode::Structured);
        assert!(c.enabled);
        assert_eq!(c.circuit_breaker.failures, 5);
        assert_eq!(c.secret_env.values(), vec!["S".to_string()]);
        let set = parse_statuses(&c.retry_on_status).unwrap();
        for s in [408, 425, 429, 500, 503, 599] {
            assert!(set.contains(s), "{s}");
        }
        for s in [200, 400, 404, 410, 422] {
            assert!(!set.contains(s), "{s}");
        }
        let err = parse("url = \"x\"\nsecrets_env = \"S\"").unwrap_err();
        assert!(err.contains("secrets_env"), "{err}");
        let err = parse("url = \"x\"\nfilter = { tabel = \"t\" }").unwrap_err();
        assert!(err.contains("tabel"), "{err}");
        let c = parse("url = \"x\"\nsecret_file = [\"/a\", \"/b\"]\nmode = \"binary\"").unwrap();
        assert_eq!(c.secret_file.values().len(), 2);
        assert_eq!(c.mode, Mode::Binary);
    }

    #[test]
    fn statuses_parse_with_ranges_and_reject_nonsense() {
        let set =
            parse_statuses(&[StatusSpec::Code(409), StatusSpec::Range("502-504".into())]).unwrap();
        assert!(set.contains(409) && set.contains(503) && !set.contains(500));
        for bad in [
            vec![StatusSpec::Code(42)],
            vec![StatusSpec::Range("5xx".into())],
            vec![StatusSpec::Range("599-500".into())],
            vec![StatusSpec::Range("200-299".into())],
        ] {
            let p = parse_statuses(&bad).unwrap_err();
            assert_eq!(p.key, "retry_on_status");
        }
    }

    #[test]
    fn filters_select_by_every_criterion() {
        let mut problems = Vec::new();
        let filter = Filter::compile(
            &FilterConfig {
                event_types: vec!["AFTER_*_TABLE".into()],
                categories: vec!["TABLE".into()],
                phase: Some("after".into()),
                catalog: Some("prod*".into()),
                namespace: Some("sales.*".into()),
                table: Some("orders_?".into()),
            },
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let event = |kind: &str, catalog: &str, ns: &[&str], table: &str| {
            let mut e = PolarisEvent::new(EventType::from_name(kind));
            e.catalog_name = Some(catalog.into());
            e.namespace = Some(ns.iter().map(|s| s.to_string()).collect());
            e.table_name = Some(table.into());
            e
        };
        assert!(filter.matches(&event(
            "AFTER_DROP_TABLE",
            "prod",
            &["sales", "eu"],
            "orders_1"
        )));
        assert!(!filter.matches(&event(
            "BEFORE_DROP_TABLE",
            "prod",
            &["sales", "eu"],
            "orders_1"
        )));
        assert!(!filter.matches(&event(
            "AFTER_DROP_VIEW",
            "prod",
            &["sales", "eu"],
            "orders_1"
        )));
        assert!(!filter.matches(&event(
            "AFTER_DROP_TABLE",
            "dev",
            &["sales", "eu"],
            "orders_1"
        )));
        assert!(!filter.matches(&event("AFTER_DROP_TABLE", "prod", &["hr"], "orders_1")));
        assert!(!filter.matches(&event(
            "AFTER_DROP_TABLE",
            "prod",
            &["sales", "eu"],
            "orders_10"
        )));
        assert!(Filter::default().matches(&event("BEFORE_LIST_TABLES", "x", &[], "y")));

        let mut problems = Vec::new();
        Filter::compile(
            &FilterConfig {
                event_types: vec!["AFTER_DROP_TABEL".into()],
                categories: vec!["TABEL".into()],
                phase: Some("during".into()),
                catalog: Some("[".into()),
                ..Default::default()
            },
            &mut problems,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "filter.event_types",
                "filter.categories",
                "filter.phase",
                "filter.catalog"
            ]
        );
    }
}
