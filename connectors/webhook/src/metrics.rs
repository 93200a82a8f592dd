//! The webhook connector's metrics. The only label besides a bounded outcome is `connector`:
//! the endpoint's instance name.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use crate::breaker::CircuitState;

/// Deliveries by outcome. Labels: `connector`, `outcome` (`success`, `retry`, `dead`,
/// `disabled`, `deferred`).
pub const DELIVERIES: &str = "polaris_bridge_webhook_deliveries_total";
/// HTTP requests sent. Labels: `connector`, `result` (`2xx`, `3xx`, `4xx`, `410`, `429`,
/// `5xx`, `timeout`, `connect`, `network`).
pub const ATTEMPTS: &str = "polaris_bridge_webhook_attempts_total";
/// Deliveries not attempted. Labels: `connector`, `reason` (`circuit_open`, `rate_limited`,
/// `disabled`).
pub const DEFERRED: &str = "polaris_bridge_webhook_deferred_total";
/// Duration of one HTTP request, until the response head and up to 4 KiB of its body.
/// Labels: `connector`.
pub const DURATION: &str = "polaris_bridge_webhook_request_duration_seconds";
/// Circuit state: 0 closed, 1 open, 2 half-open. Labels: `connector`.
pub const CIRCUIT_STATE: &str = "polaris_bridge_webhook_circuit_state";
/// Times the circuit opened. Labels: `connector`.
pub const CIRCUIT_OPENED: &str = "polaris_bridge_webhook_circuit_opened_total";
/// 1 while the endpoint is enabled; 0 after it answered 410 Gone (until resumed) or when
/// `enabled = false`. Labels: `connector`.
pub const ENABLED: &str = "polaris_bridge_webhook_endpoint_enabled";

/// Describes the metrics (once per process is enough; repeating is harmless).
pub fn describe() {
    describe_counter!(DELIVERIES, "Webhook deliveries by outcome");
    describe_counter!(ATTEMPTS, "Webhook HTTP requests by result");
    describe_counter!(DEFERRED, "Webhook deliveries deferred without a request");
    describe_histogram!(DURATION, Unit::Seconds, "Duration of one webhook request");
    describe_gauge!(
        CIRCUIT_STATE,
        "Webhook circuit: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(CIRCUIT_OPENED, "Times a webhook circuit opened");
    describe_gauge!(ENABLED, "1 while the webhook endpoint is enabled");
}

/// The metric handles of one endpoint. The common path's series (a 2xx answer, a
/// successful delivery, the request duration) are registered once, so recording them
/// neither allocates labels nor looks the series up.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    connector: String,
    duration: metrics::Histogram,
    answered_2xx: metrics::Counter,
    delivered: metrics::Counter,
}

impl EndpointMetrics {
    /// Metrics labelled with `connector`; publishes the initial gauges.
    pub fn new(connector: &str, enabled: bool) -> Self {
        let m = EndpointMetrics {
            connector: connector.to_string(),
            duration: histogram!(DURATION, "connector" => connector.to_string()),
            answered_2xx: counter!(ATTEMPTS, "connector" => connector.to_string(), "result" => "2xx"),
            delivered: counter!(DELIVERIES, "connector" => connector.to_string(), "outcome" => "success"),
        };
        m.enabled(enabled);
        m.circuit(CircuitState::Closed);
        m
    }

    /// One delivery's outcome.
    pub fn delivery(&self, outcome: &'static str) {
        if outcome == "success" {
            self.delivered.increment(1);
        } else {
            counter!(DELIVERIES, "connector" => self.connector.clone(), "outcome" => outcome)
                .increment(1);
        }
    }

    /// One request's result and duration.
    pub fn attempt(&self, result: &'static str, seconds: f64) {
        if result == "2xx" {
            self.answered_2xx.increment(1);
        } else {
            counter!(ATTEMPTS, "connector" => self.connector.clone(), "result" => result)
                .increment(1);
        }
        self.duration.record(seconds);
    }

    /// A deferral.
    pub fn deferred(&self, reason: &'static str) {
        counter!(DEFERRED, "connector" => self.connector.clone(), "reason" => reason).increment(1);
        self.delivery("deferred");
    }

    /// The circuit's state.
    pub fn circuit(&self, state: CircuitState) {
        gauge!(CIRCUIT_STATE, "connector" => self.connector.clone()).set(state.gauge());
        if state == CircuitState::Open {
            counter!(CIRCUIT_OPENED, "connector" => self.connector.clone()).increment(1);
        }
    }

    /// Whether the endpoint is enabled.
    pub fn enabled(&self, enabled: bool) {
        gauge!(ENABLED, "connector" => self.connector.clone()).set(if enabled { 1.0 } else { 0.0 });
    }
}
