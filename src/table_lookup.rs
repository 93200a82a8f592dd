//! Polaris loadTable lookups that keep the table index current when events do not carry the
//! metadata location (the stock JSON listener never does).
//!
//! When a table event arrives without a metadata location (after a create, register, update,
//! rename or refresh; after a load only while the index knows nothing of the table), the
//! source asks for a lookup: [`TableLookup::consider`] puts a request on a bounded queue and
//! never waits (a full queue drops the request and counts it). A worker calls Polaris's
//! `GET {uri}/v1/{catalog}/namespaces/{namespace}/tables/{table}` with an OAuth2
//! client-credentials token, and stores the answer's `metadata-location`, `table-uuid` and
//! `location` in the table index, stamped with the triggering event's time, so a newer event
//! or a drop's tombstone wins over it ([`TableIndex::record_lookup`]). A later
//! `AFTER_DROP_TABLE` is then enriched from the index and its purge knows where the table's
//! metadata is. At drop time the table is gone from Polaris, which is why lookups are made
//! while it still exists.
//!
//! A table that Polaris no longer has (404) is skipped; 401 refreshes the token once;
//! timeouts, connection errors, 429 and 5xx are retried with backoff up to `attempts` times,
//! then logged and counted. Nothing here can stop or slow the consumer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use metrics::counter;
use polaris_bridge_api::event::{Category, EventType, Phase};
use polaris_bridge_api::PolarisEvent;
use polaris_bridge_polaris_notify::auth::{read_client_secret, TokenSource};
use polaris_bridge_polaris_notify::notification::encode_segment;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::TableLookupConfig;
use crate::log::{TableEntry, TableIndex};
use crate::metrics as m;

/// Why the lookup worker could not start, or one lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The configuration cannot be used.
    #[error("table_lookup: {0}")]
    Config(String),
    /// Polaris could not be asked, or answered with an error worth retrying.
    #[error("loadTable {url}: {message}")]
    Transient {
        /// The table's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Polaris answered with an error that retrying will not change.
    #[error("loadTable {url}: {message}")]
    Permanent {
        /// The table's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// One table to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupRequest {
    /// The event's realm.
    pub realm: String,
    /// The catalog (Polaris's URL prefix).
    pub catalog: String,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub table: String,
    /// Time of the event that asked (ms): what the answer is stamped with in the index.
    pub event_ms: i64,
}

/// The source's handle on the lookup worker.
#[derive(Clone)]
pub struct TableLookup {
    queue: mpsc::Sender<LookupRequest>,
    index: TableIndex,
    catalogs: Arc<HashSet<String>>,
}

impl TableLookup {
    /// Starts the worker; it stops when `shutdown` turns true (lookups under way are
    /// abandoned: they only ever add to the index).
    pub fn start(
        config: &TableLookupConfig,
        index: TableIndex,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(TableLookup, tokio::task::JoinHandle<()>), LookupError> {
        let secret = read_client_secret(
            config.client_secret.as_deref(),
            config.client_secret_env.as_deref(),
            config.client_secret_file.as_deref(),
        )
        .map_err(LookupError::Config)?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| LookupError::Config(format!("HTTP client: {e}")))?;
        let base = config.uri.trim_end_matches('/').to_string();
        let token_url = config
            .token_url
            .clone()
            .unwrap_or_else(|| format!("{base}/v1/oauth/tokens"));
        let client = Arc::new(PolarisTables {
            tokens: TokenSource::new(
                http.clone(),
                token_url,
                config.client_id.clone(),
                secret,
                config.scope.clone(),
                config.realm.clone(),
            ),
            http,
            base,
            realm: config.realm.clone(),
            attempts: config.attempts,
        });
        let (queue, mut requests) = mpsc::channel::<LookupRequest>(config.queue);
        let concurrency = config.concurrency.max(1);
        let worker_index = index.clone();
        let worker = tokio::spawn(async move {
            let mut running = JoinSet::new();
            loop {
                tokio::select! {
                    request = requests.recv(), if running.len() < concurrency => {
                        let Some(request) = request else { break };
                        let client = client.clone();
                        let index = worker_index.clone();
                        running.spawn(async move { client.lookup_and_record(&request, &index).await });
                    }
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    changed = shutdown.changed() => {
                        // A dropped sender means the bridge is gone: stop too.
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                }
            }
        });
        Ok((
            TableLookup {
                queue,
                index,
                catalogs: Arc::new(config.catalogs.iter().cloned().collect()),
            },
            worker,
        ))
    }

    /// Asks for a lookup of the table `event` (of `realm`) is about, when it changed the table
    /// and did not carry the metadata location itself (`carried_location`, as received, before
    /// any enrichment). Never waits.
    pub fn consider(&self, event: &PolarisEvent, realm: &str, carried_location: bool) {
        if carried_location {
            return;
        }
        let Some(request) = self.request_for(event, realm) else {
            return;
        };
        match self.queue.try_send(request) {
            Ok(()) => counter!(m::TABLE_LOOKUPS, "result" => "queued").increment(1),
            Err(mpsc::error::TrySendError::Full(request)) => {
                tracing::warn!(catalog = %request.catalog, table = %request.table, "table lookup queue full: lookup dropped (raise table_lookup.queue or concurrency)");
                counter!(m::TABLE_LOOKUPS, "result" => "dropped").increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn request_for(&self, event: &PolarisEvent, realm: &str) -> Option<LookupRequest> {
        if event.category() != Some(Category::Table) || event.phase() != Some(Phase::After) {
            return None;
        }
        let catalog = event.catalog_name.clone()?;
        if !self.catalogs.is_empty() && !self.catalogs.contains(&catalog) {
            return None;
        }
        let (namespace, table) = match event.event_type {
            EventType::AfterRenameTable => {
                let (name, levels) = event.rename_destination.as_ref()?.split_last()?;
                (levels.to_vec(), name.clone())
            }
            EventType::AfterCreateTable
            | EventType::AfterRegisterTable
            | EventType::AfterUpdateTable
            | EventType::AfterRefreshTable => (
                event.namespace_levels()?.to_vec(),
                event.object_name()?.to_string(),
            ),
            EventType::AfterLoadTable => {
                let namespace = event.namespace_levels()?.to_vec();
                let table = event.object_name()?.to_string();
                // A read changes nothing: only worth it while the index knows nothing.
                if self
                    .index
                    .get(realm, &catalog, &namespace, &table)
                    .ok()
                    .flatten()
                    .is_some()
                {
                    return None;
                }
                (namespace, table)
            }
            _ => return None,
        };
        Some(LookupRequest {
            realm: realm.to_string(),
            catalog,
            namespace,
            table,
            event_ms: event.timestamp_ms.unwrap_or(0),
        })
    }
}

/// Polaris's tables endpoint with its token.
struct PolarisTables {
    http: reqwest::Client,
    tokens: TokenSource,
    /// The Iceberg REST base, without a trailing slash.
    base: String,
    /// The configured realm header; else each request's realm.
    realm: Option<String>,
    attempts: u32,
}

/// The parts of a LoadTableResult the index keeps.
#[derive(serde::Deserialize)]
struct LoadTableResult {
    #[serde(rename = "metadata-location")]
    metadata_location: Option<String>,
    metadata: TableMetadata,
}

#[derive(serde::Deserialize)]
struct TableMetadata {
    #[serde(rename = "table-uuid")]
    table_uuid: Option<String>,
    location: Option<String>,
}

impl PolarisTables {
    /// The table's URL: namespace levels joined by the unit separator, each part
    /// percent-encoded as the Iceberg REST spec asks.
    fn url(&self, request: &LookupRequest) -> String {
        format!(
            "{}/v1/{}/namespaces/{}/tables/{}",
            self.base,
            encode_segment(&request.catalog),
            encode_segment(&request.namespace.join("\u{1f}")),
            encode_segment(&request.table)
        )
    }

    /// Looks the table up, retrying transient failures, and records the answer.
    async fn lookup_and_record(&self, request: &LookupRequest, index: &TableIndex) {
        let mut backoff = ExponentialBackoff {
            initial_interval: Duration::from_millis(200),
            max_interval: Duration::from_secs(5),
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        let mut attempt = 1;
        let result = loop {
            match self.load(request).await {
                Err(LookupError::Transient { url, message }) if attempt < self.attempts => {
                    tracing::debug!(%url, %message, attempt, "table lookup failed; retrying");
                    attempt += 1;
                    let wait = backoff.next_backoff().unwrap_or(Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        let label = match result {
            Ok(Some(entry)) => match index.record_lookup(
                &request.realm,
                &request.catalog,
                &request.namespace,
                &request.table,
                &entry,
            ) {
                Ok(true) => "recorded",
                Ok(false) => "superseded",
                Err(e) => {
                    tracing::warn!(error = %e, "table index: lookup result not stored");
                    "error"
                }
            },
            Ok(None) => "not_found",
            Err(e) => {
                tracing::warn!(error = %e, "table lookup failed");
                "error"
            }
        };
        counter!(m::TABLE_LOOKUPS, "result" => label).increment(1);
    }

    /// One loadTable call: the table's entry, or `None` when Polaris does not have it.
    async fn load(&self, request: &LookupRequest) -> Result<Option<TableEntry>, LookupError> {
        let url = self.url(request);
        let transient = |message: String| LookupError::Transient {
            url: url.clone(),
            message,
        };
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .token()
                .await
                .map_err(|e| transient(format!("no token: {e}")))?;
            let response = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .header(
                    "Polaris-Realm",
                    self.realm.as_deref().unwrap_or(&request.realm),
                )
                .send()
                .await
                .map_err(|e| transient(e.to_string()))?;
            let status = response.status().as_u16();
            match status {
                200 => {
                    let body = response
                        .bytes()
                        .await
                        .map_err(|e| transient(format!("reading the answer: {e}")))?;
                    let parsed: LoadTableResult =
                        serde_json::from_slice(&body).map_err(|e| LookupError::Permanent {
                            url: url.clone(),
                            message: format!("not a LoadTableResult: {e}"),
                        })?;
                    return Ok(Some(TableEntry {
                        table_uuid: parsed.metadata.table_uuid,
                        table_location: parsed.metadata.location,
                        metadata_location: parsed.metadata_location,
                        event_ms: request.event_ms,
                    }));
                }
                404 => return Ok(None),
                401 if !refreshed => {
                    self.tokens.invalidate(&token);
                    refreshed = true;
                }
                408 | 429 | 500..=599 | 401 => return Err(transient(format!("HTTP {status}"))),
                _ => {
                    return Err(LookupError::Permanent {
                        url: url.clone(),
                        message: format!(
                            "HTTP {status}: check the principal's grants (it needs TABLE_READ_PROPERTIES or more)"
                        ),
                    })
                }
            }
        }
    }
}
