//! The `webhook` connector: POSTs each task to one HTTP endpoint as a CloudEvent, signed per
//! Standard Webhooks.
//!
//! One endpoint is one connector instance (`[connectors.NAME]` with `type = "webhook"`), so
//! each endpoint has its own dispatcher, queue and concurrency, and a slow or failing
//! endpoint delays only its own tasks. The dispatcher owns retries (backoff with jitter,
//! attempt limit, `retry.max_age`); this crate turns each response into a
//! [`DeliveryError`] class, and keeps the endpoint's own guards: filters, a rate limit and a
//! circuit breaker.
//!
//! Modules: [`config`] (settings and validation), [`signing`] (Standard Webhooks),
//! [`payload`] (CloudEvents), [`client`] (HTTP and response classification), [`breaker`]
//! (circuit breaker), [`ratelimit`] (token bucket), [`metrics`].

pub mod breaker;
pub mod client;
pub mod config;
pub mod metrics;
pub mod payload;
pub mod ratelimit;
pub mod signing;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use polaris_bridge_api::{
    Connector, Delivery, DeliveryError, DeliveryOutcome, PolarisEvent, TaskContext, TaskPlan,
};
use reqwest::header::HeaderMap;

use crate::breaker::{CircuitBreaker, CircuitState, Transition};
use crate::client::Classified;
use crate::config::{ConfigProblem, Filter, Mode, StatusSet, WebhookConfig};
use crate::metrics::EndpointMetrics;
use crate::ratelimit::RateLimiter;
use crate::signing::{Secret, Signer, SECRET_HOWTO};

/// One webhook endpoint.
pub struct WebhookConnector {
    name: String,
    url: reqwest::Url,
    client: reqwest::Client,
    mode: Mode,
    timeout: Duration,
    headers: HeaderMap,
    retryable: StatusSet,
    signer: Signer,
    filter: Filter,
    breaker: CircuitBreaker,
    limiter: Option<RateLimiter>,
    /// `enabled = false` in the configuration.
    disabled_by_config: bool,
    /// The endpoint answered 410 Gone; cleared by the next delivery, which the dispatcher
    /// only starts once an operator resumed the connector.
    gone: AtomicBool,
    metrics: EndpointMetrics,
}

impl std::fmt::Debug for WebhookConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConnector")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("mode", &self.mode)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// The URL without user info or query (they may carry credentials), for logs.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("..."));
    }
    shown.to_string()
}

impl WebhookConnector {
    /// Builds the endpoint `name` from its settings; `concurrency` sizes the connection pool.
    /// Secrets are read now, from the environment (`env`) and files. Every problem is
    /// reported, each with its key and the fix.
    pub fn new(
        name: &str,
        config: WebhookConfig,
        concurrency: usize,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let url = client::parse_url(&config.url)
            .map_err(|p| problems.push(p))
            .ok();
        let secrets = read_secrets(&config, &env, &mut problems);
        let retryable = config::parse_statuses(&config.retry_on_status)
            .map_err(|p| problems.push(p))
            .unwrap_or_default();
        let headers = client::static_headers(&config.headers, &mut problems);
        let filter = Filter::compile(&config.filter, &mut problems);
        if config.timeout.is_zero() {
            problems.push(ConfigProblem::new(
                "timeout",
                "is 0",
                "set e.g. timeout = \"15s\"",
            ));
        }
        if config.connect_timeout.is_zero() {
            problems.push(ConfigProblem::new(
                "connect_timeout",
                "is 0",
                "set e.g. connect_timeout = \"5s\"",
            ));
        }
        if config.circuit_breaker.cooldown.is_zero() && config.circuit_breaker.failures > 0 {
            problems.push(ConfigProblem::new(
                "circuit_breaker.cooldown",
                "is 0",
                "set e.g. cooldown = \"30s\", or failures = 0 to turn the breaker off",
            ));
        }
        let limiter = match config.rate_limit {
            None => None,
            Some(rate) if rate > 0.0 && rate.is_finite() => {
                let burst = config.rate_burst.unwrap_or(rate.ceil().max(1.0) as u32);
                Some(RateLimiter::new(rate, burst, Instant::now()))
            }
            Some(rate) => {
                problems.push(ConfigProblem::new(
                    "rate_limit",
                    format!("{rate} is not a positive number of requests per second"),
                    "set e.g. rate_limit = 50.0, or leave it out for no limit",
                ));
                None
            }
        };
        if config.rate_burst == Some(0) {
            problems.push(ConfigProblem::new("rate_burst", "is 0", "set at least 1"));
        }
        let client = client::build_client(&config, concurrency)
            .map_err(|mut p| problems.append(&mut p))
            .ok();
        let (Some(url), Some(client), true) = (url, client, problems.is_empty()) else {
            return Err(problems);
        };
        crate::metrics::describe();
        let metrics = EndpointMetrics::new(name, config.enabled);
        Ok(WebhookConnector {
            name: name.to_string(),
            url,
            client,
            mode: config.mode,
            timeout: config.timeout,
            headers,
            retryable,
            signer: Signer::new(secrets),
            filter,
            breaker: CircuitBreaker::new(
                config.circuit_breaker.failures,
                config.circuit_breaker.cooldown,
            ),
            limiter,
            disabled_by_config: !config.enabled,
            gone: AtomicBool::new(false),
            metrics,
        })
    }

    /// The endpoint's URL (user info and query hidden).
    pub fn url(&self) -> String {
        redact_url(&self.url)
    }

    /// The circuit breaker's state.
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Whether the endpoint is enabled (not `enabled = false`, not gone).
    pub fn is_enabled(&self) -> bool {
        !self.disabled_by_config && !self.gone.load(Ordering::Relaxed)
    }

    fn circuit_changed(&self, change: Transition) {
        if let Some((from, to)) = change {
            self.metrics.circuit(to);
            match to {
                CircuitState::Open => {
                    tracing::warn!(connector = %self.name, from = from.name(), "circuit open: requests to the endpoint stop for the cooldown")
                }
                CircuitState::HalfOpen => {
                    tracing::info!(connector = %self.name, "circuit half-open: probing the endpoint")
                }
                CircuitState::Closed => {
                    tracing::info!(connector = %self.name, "circuit closed: the endpoint answers again")
                }
            }
        }
    }

    /// Sends one request; `Err` is the metrics label and message of a request error.
    async fn send(
        &self,
        delivery: &Delivery,
    ) -> Result<(reqwest::StatusCode, Option<String>, Vec<u8>), (&'static str, String)> {
        let payload = payload::build(self.mode, delivery);
        let id = delivery.task_id.to_hex();
        let response = client::signed_post(
            &self.client,
            &self.url,
            &self.headers,
            &payload.headers,
            &self.signer,
            &id,
            payload.body,
        )
        .send()
        .await
        .map_err(|e| client::describe_error(&e, self.timeout))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // The body prefix is for messages; a body that fails midway is not an error.
        let body = client::read_body_prefix(response).await;
        Ok((status, retry_after, body))
    }
}

/// Reads every configured secret; at least one is required.
fn read_secrets(
    config: &WebhookConfig,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<Secret> {
    let mut secrets = Vec::new();
    for var in config.secret_env.values() {
        match env(&var) {
            Some(text) => match Secret::parse(&text, format!("env {var}")) {
                Ok(secret) => secrets.push(secret),
                Err(problem) => problems.push(ConfigProblem::new(
                    "secret_env",
                    format!("the secret in environment variable {var} {problem}"),
                    SECRET_HOWTO,
                )),
            },
            None => problems.push(ConfigProblem::new(
                "secret_env",
                format!("environment variable {var} is not set"),
                format!("export {var}=whsec_... before starting, or use secret_file"),
            )),
        }
    }
    for path in config.secret_file.values() {
        match std::fs::read_to_string(&path) {
            Ok(text) => match Secret::parse(&text, format!("file {path}")) {
                Ok(secret) => secrets.push(secret),
                Err(problem) => problems.push(ConfigProblem::new(
                    "secret_file",
                    format!("the secret in {path} {problem}"),
                    SECRET_HOWTO,
                )),
            },
            Err(e) => problems.push(ConfigProblem::new(
                "secret_file",
                format!("cannot read {path}: {e}"),
                "point secret_file at a readable file holding a whsec_ secret",
            )),
        }
    }
    if config.secret_env.values().is_empty() && config.secret_file.values().is_empty() {
        problems.push(ConfigProblem::new(
            "secret_env",
            "no signing secret is configured",
            format!("set secret_env = \"VAR\" or secret_file = \"/path\"; {SECRET_HOWTO}"),
        ));
    }
    secrets
}

#[async_trait]
impl Connector for WebhookConnector {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn plan(&self, event: &PolarisEvent) -> TaskPlan {
        if self.filter.matches(event) {
            TaskPlan::PerEvent
        } else {
            TaskPlan::Skip
        }
    }

    async fn deliver(
        &self,
        delivery: &Delivery,
        _context: &dyn TaskContext,
    ) -> Result<DeliveryOutcome, DeliveryError> {
        if self.disabled_by_config {
            self.metrics.deferred("disabled");
            return Err(DeliveryError::Disabled {
                reason: "enabled = false in the configuration".into(),
            });
        }
        if self.gone.swap(false, Ordering::Relaxed) {
            // The dispatcher starts deliveries again only after an operator resumed it.
            tracing::info!(connector = %self.name, "endpoint re-enabled: delivering again");
            self.metrics.enabled(true);
        }
        let now = Instant::now();
        let (admitted, change) = self.breaker.admit(now);
        self.circuit_changed(change);
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(wait) => {
                self.metrics.deferred("circuit_open");
                return Err(DeliveryError::Deferred {
                    reason: "circuit open: the endpoint failed repeatedly".into(),
                    retry_after: wait,
                });
            }
        };
        if let Some(limiter) = &self.limiter {
            if let Err(wait) = limiter.try_acquire(now) {
                self.breaker.release(ticket);
                self.metrics.deferred("rate_limited");
                return Err(DeliveryError::Deferred {
                    reason: "rate limit".into(),
                    retry_after: wait,
                });
            }
        }
        let started = Instant::now();
        let sent = self.send(delivery).await;
        let seconds = started.elapsed().as_secs_f64();
        let (status, retry_after, body) = match sent {
            Ok(response) => response,
            Err((label, message)) => {
                self.metrics.attempt(label, seconds);
                let change = self
                    .breaker
                    .record(ticket, breaker::Verdict::Failed, Instant::now());
                self.circuit_changed(change);
                self.metrics.delivery("retry");
                return Err(DeliveryError::transient(message));
            }
        };
        self.metrics.attempt(client::status_label(status), seconds);
        let classified = client::classify(
            status,
            retry_after.as_deref(),
            &body,
            &self.retryable,
            SystemTime::now(),
        );
        let change =
            self.breaker
                .record(ticket, client::verdict(status, &classified), Instant::now());
        self.circuit_changed(change);
        match classified {
            Classified::Delivered => {
                self.metrics.delivery("success");
                Ok(DeliveryOutcome::Delivered)
            }
            Classified::Retry {
                message,
                retry_after,
            } => {
                self.metrics.delivery("retry");
                Err(DeliveryError::Transient {
                    message,
                    retry_after,
                })
            }
            Classified::Gone { message } => {
                if !self.gone.swap(true, Ordering::Relaxed) {
                    tracing::warn!(connector = %self.name, url = %self.url(), response = %message, "the endpoint answered 410 Gone: disabled until an operator resumes it; its tasks wait");
                }
                self.metrics.enabled(false);
                self.metrics.delivery("disabled");
                Err(DeliveryError::Disabled {
                    reason: format!("{message} from {}", self.url()),
                })
            }
            Classified::Permanent { message } => {
                self.metrics.delivery("dead");
                Err(DeliveryError::permanent(message))
            }
        }
    }

    /// The circuit breaker's state and whether the endpoint is enabled (never the secrets).
    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "circuit": self.circuit_state().name(),
            "enabled": self.is_enabled(),
            "url": self.url(),
        })
    }

    /// A `HEAD` request: any HTTP answer proves the endpoint reachable.
    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        if self.disabled_by_config {
            return Err(DeliveryError::Disabled {
                reason: "enabled = false in the configuration".into(),
            });
        }
        let request = self
            .client
            .head(self.url.clone())
            .timeout(self.timeout.min(Duration::from_secs(2)));
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(DeliveryError::transient(
                client::describe_error(&e, self.timeout).1,
            )),
        }
    }
}

#[cfg(test)]
mod tests;
