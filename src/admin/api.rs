//! The admin API under `/api/v1`, documented in `openapi.yaml` at the repository root.
//!
//! Every route needs `Authorization: Bearer <token>` (the token from
//! `POLARIS_BRIDGE_ADMIN_TOKEN` or `http.admin_token_file`); without a configured token the
//! API refuses every call with 403. Errors are JSON `{"error": "..."}` with a 4xx status for
//! the client's mistakes; 5xx only when the store fails or the bridge cannot act now.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics::counter;
use serde::Serialize;

use super::{
    cancel_in_store, detail, find, list_rejected, list_tasks, rejected_detail, rejected_key, retry,
    AdminError, RejectedKey, ReplayView, TaskDetail, TaskFilter,
};
use crate::dispatch::ConnectorControl;
use crate::log::{now_ms, ReplayRecord, TaskLog};
use crate::metrics as m;
use crate::source::{Ingested, IngestedTask, Input, Pipeline, Target};

/// Longest a cancellation waits for the connector's dispatcher to carry it out.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connector's healthcheck may take in a status call.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest operator note (`reason`) kept.
const MAX_REASON: usize = 1000;

/// What the admin API works on.
pub struct Admin {
    /// The task log.
    pub log: Arc<TaskLog>,
    /// The decode/route/record path (for replays) and the connectors.
    pub pipeline: Arc<Pipeline>,
    /// Pause, resume and cancel of each connector, by name.
    pub controls: Vec<(String, Arc<ConnectorControl>)>,
    /// The bearer token; `None` disables the API.
    pub token: Option<String>,
}

impl Admin {
    fn control(&self, name: &str) -> Option<&Arc<ConnectorControl>> {
        self.controls
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    fn target(&self, name: &str) -> Option<&Target> {
        self.pipeline.targets().iter().find(|t| t.name == name)
    }
}

/// An error response: `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"polaris-bridge\""),
            );
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match &e {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "admin API: store failure");
        }
        ApiError(status, e.to_string())
    }
}

impl From<crate::log::LogError> for ApiError {
    fn from(e: crate::log::LogError) -> Self {
        AdminError::from(e).into()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The `/api/v1` routes, behind the bearer-token check.
pub fn router(admin: Arc<Admin>) -> Router {
    let api = Router::new()
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/retry", post(retry_task))
        .route("/tasks/{id}/cancel", post(cancel_task))
        .route("/rejected", get(rejected))
        .route("/rejected/{topic}/{partition}/{offset}", get(rejected_one))
        .route(
            "/rejected/{topic}/{partition}/{offset}/replay",
            post(replay),
        )
        .route("/connectors", get(connectors))
        .route("/connectors/{name}", get(connector))
        .route("/connectors/{name}/pause", post(pause))
        .route("/connectors/{name}/resume", post(resume))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(admin.clone(), auth))
        .with_state(admin);
    Router::new().nest("/api/v1", api)
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such admin route: see openapi.yaml for the routes under /api/v1".into(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route: see openapi.yaml".into(),
    )
}

/// Compares in time independent of where the inputs differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= (given.get(i).copied().unwrap_or(0) ^ e) as usize;
    }
    diff == 0
}

async fn auth(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    let Some(expected) = admin.token.as_deref() else {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "the admin API is disabled: no token is configured (set {} or http.admin_token_file)",
                crate::config::ADMIN_TOKEN_ENV
            ),
        )
        .into_response();
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = header.and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match token {
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into()).into_response(),
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`".into(),
        )
        .into_response(),
    }
}

fn query(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(pairs)| pairs)
        .map_err(|e| bad_request(format!("bad query string: {}", e.body_text())))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| bad_request(format!("bad path: {}", e.body_text())))
}

/// Reads an optional `{"reason": "..."}` body.
fn reason(body: Result<Bytes, BytesRejection>, default: &str) -> Result<String, ApiError> {
    let body = body.map_err(|e| bad_request(format!("bad body: {}", e.body_text())))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default.to_string());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        reason: Option<String>,
    }
    let parsed: Body = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "the body must be empty or a JSON object like {{\"reason\": \"...\"}}: {e}"
        ))
    })?;
    match parsed.reason {
        None => Ok(default.to_string()),
        Some(r) if r.chars().count() > MAX_REASON => Err(bad_request(format!(
            "reason is longer than {MAX_REASON} characters"
        ))),
        Some(r) if r.trim().is_empty() => Ok(default.to_string()),
        Some(r) => Ok(r),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("admin task failed: {e}"),
        )),
    }
}

fn action(name: &'static str, ok: bool) {
    counter!(m::ADMIN_ACTIONS, "action" => name, "result" => if ok { "ok" } else { "refused" })
        .increment(1);
}

async fn tasks(
    State(admin): State<Arc<Admin>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<super::TaskPage> {
    let pairs = query(q)?;
    let filter = TaskFilter::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let log = admin.log.clone();
    Ok(Json(blocking(move || list_tasks(&log, &filter)).await?))
}

async fn task(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<TaskDetail> {
    let id = path(id)?;
    let (_, record) = find(&admin.log, &id)?;
    Ok(Json(detail(&record)))
}

async fn retry_task(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<TaskDetail> {
    let id = path(id)?;
    let result = retry_online(&admin, &id).await;
    action("retry", result.is_ok());
    result
}

async fn retry_online(admin: &Arc<Admin>, id: &str) -> ApiResult<TaskDetail> {
    let (key, record) = find(&admin.log, id)?;
    if !record.state.is_final() || record.state.name() == "succeeded" {
        return Err(AdminError::Conflict(format!(
            "task is {}: only dead or cancelled tasks can be retried",
            record.state.name()
        ))
        .into());
    }
    let Some(target) = admin.target(&record.connector) else {
        return Err(AdminError::Conflict(format!(
            "connector {} is not configured in this instance, so its tasks cannot run: configure it and restart, then retry",
            record.connector
        ))
        .into());
    };
    // Counted before the record appears, so the dispatcher never counts below zero.
    target.unfinished.fetch_add(1, Ordering::Relaxed);
    admin.pipeline.backlog().add(1);
    let log = admin.log.clone();
    match blocking(move || retry(&log, key, "an operator (admin API)")).await {
        Ok(record) => {
            target.notify.notify_one();
            tracing::info!(connector = %record.connector, task_id = id, "task retried by an operator");
            Ok(Json(detail(&record)))
        }
        Err(e) => {
            target.unfinished.fetch_sub(1, Ordering::Relaxed);
            admin.pipeline.backlog().finish_one();
            Err(e)
        }
    }
}

async fn cancel_task(
    State(admin): State<Arc<Admin>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<TaskDetail> {
    let id = path(id)?;
    let reason = reason(body, "cancelled by an operator")?;
    let result = cancel_online(&admin, &id, reason).await;
    action("cancel", result.is_ok());
    result
}

async fn cancel_online(admin: &Arc<Admin>, id: &str, reason: String) -> ApiResult<TaskDetail> {
    let (key, record) = find(&admin.log, id)?;
    if record.state.is_final() {
        return Err(AdminError::Conflict(format!(
            "task is already {}: only pending, retrying or running tasks can be cancelled",
            record.state.name()
        ))
        .into());
    }
    let record = match admin.control(&record.connector) {
        Some(control) => match tokio::time::timeout(CANCEL_TIMEOUT, control.cancel(key, reason))
            .await
        {
            Ok(Ok(result)) => result.map_err(AdminError::from)?,
            Ok(Err(_)) => {
                return Err(AdminError::Unavailable(
                    "the connector's dispatcher has stopped (the bridge is shutting down)".into(),
                )
                .into())
            }
            Err(_) => {
                return Err(AdminError::Unavailable(format!(
                    "the connector's dispatcher did not answer within {CANCEL_TIMEOUT:?}; try again"
                ))
                .into())
            }
        },
        None => {
            let log = admin.log.clone();
            blocking(move || cancel_in_store(&log, key, &reason)).await?
        }
    };
    admin.log.flush()?;
    Ok(Json(detail(&record)))
}

async fn rejected(
    State(admin): State<Arc<Admin>>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<super::RejectedPage> {
    let pairs = query(q)?;
    Ok(Json(list_rejected(
        &admin.log,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?))
}

fn rejected_path(
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<RejectedKey, ApiError> {
    let (topic, partition, offset) = path(p)?;
    Ok(rejected_key(&topic, &partition, &offset)?)
}

async fn rejected_one(
    State(admin): State<Arc<Admin>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<super::RejectedDetail> {
    let key = rejected_path(p)?;
    Ok(Json(rejected_detail(&admin.log, &key)?))
}

/// What a replay did.
#[derive(Debug, Serialize)]
pub struct ReplayResult {
    /// `topic/partition/offset`.
    pub id: String,
    /// The replay, as recorded beside the rejected message.
    #[serde(flatten)]
    pub replay: ReplayView,
    /// The tasks the message maps to now.
    pub tasks: Vec<ReplayTask>,
}

/// One task of a replayed message.
#[derive(Debug, Serialize)]
pub struct ReplayTask {
    /// Connector instance.
    pub connector: String,
    /// Task id.
    pub task_id: String,
    /// New (true), or already in the log (false).
    pub created: bool,
}

async fn replay(
    State(admin): State<Arc<Admin>>,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<ReplayResult> {
    let key = rejected_path(p)?;
    let result = replay_online(&admin, key).await;
    action("replay", result.is_ok());
    result
}

async fn replay_online(admin: &Arc<Admin>, key: RejectedKey) -> ApiResult<ReplayResult> {
    let record = admin.log.rejected_get(&key)?.ok_or_else(|| {
        AdminError::NotFound(format!(
            "no rejected message at {}/{}/{}",
            key.topic, key.partition, key.offset
        ))
    })?;
    if !record.is_whole() {
        return Err(AdminError::Conflict(format!(
            "only the first {} of the message's {} bytes were kept, so it cannot be replayed from the log: produce it again to the topic",
            record.value_prefix.len(),
            record.value_len
        ))
        .into());
    }
    let pipeline = admin.pipeline.clone();
    let (ingested, tasks, mark) = blocking(move || {
        let mut routed = Vec::new();
        let mut touched = vec![false; pipeline.targets().len()];
        let mut tasks: Vec<IngestedTask> = Vec::new();
        let message = Input {
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
            key: record.key.as_deref(),
            value: &record.value_prefix,
        };
        let ingested = pipeline.ingest(&message, &mut routed, &mut touched, Some(&mut tasks))?;
        let mark = match &ingested {
            Ingested::Rejected { error, .. } => ReplayRecord {
                replayed_ms: now_ms(),
                outcome: "rejected".into(),
                tasks_created: 0,
                duplicates: 0,
                error: Some(error.clone()),
            },
            Ingested::Unrouted => ReplayRecord {
                replayed_ms: now_ms(),
                outcome: "unrouted".into(),
                tasks_created: 0,
                duplicates: 0,
                error: None,
            },
            Ingested::Routed {
                created,
                duplicates,
                ..
            } => ReplayRecord {
                replayed_ms: now_ms(),
                outcome: "routed".into(),
                tasks_created: *created,
                duplicates: *duplicates,
                error: None,
            },
        };
        let log = pipeline.log();
        log.mark_replayed(&key, &mark)?;
        log.flush()?;
        for (target, hit) in pipeline.targets().iter().zip(touched) {
            if hit {
                target.notify.notify_one();
            }
        }
        Ok((ingested, tasks, (key, mark)))
    })
    .await?;
    let (key, mark) = mark;
    counter!(m::REJECTED_REPLAYED, "outcome" => mark.outcome.clone()).increment(1);
    tracing::info!(topic = %key.topic, partition = key.partition, offset = key.offset, outcome = %mark.outcome, ?ingested, "rejected message replayed by an operator");
    Ok(Json(ReplayResult {
        id: format!("{}/{}/{}", key.topic, key.partition, key.offset),
        replay: ReplayView::from(&mark),
        tasks: tasks
            .into_iter()
            .map(|t| ReplayTask {
                connector: t.connector,
                task_id: t.task_id.to_hex(),
                created: t.created,
            })
            .collect(),
    }))
}

/// A connector's status.
#[derive(Debug, Serialize)]
pub struct ConnectorView {
    /// Instance name.
    pub name: String,
    /// Connector type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Delivering (not paused).
    pub enabled: bool,
    /// Paused by an operator, or by a target that disabled itself.
    pub paused: bool,
    /// Why it is paused.
    pub pause_reason: Option<String>,
    /// Unfinished tasks (pending, running, retrying).
    pub backlog: u64,
    /// Whether the healthcheck passed.
    pub healthy: bool,
    /// Why it did not.
    pub health_error: Option<String>,
    /// The circuit breaker's state, when the connector has one (`closed`, `open`,
    /// `half_open`).
    pub circuit: Option<String>,
    /// Extra state the connector reports (its `status()`), an object.
    pub status: serde_json::Value,
}

async fn connector_view(target: &Target, control: Option<&Arc<ConnectorControl>>) -> ConnectorView {
    let (healthy, health_error) =
        match tokio::time::timeout(HEALTHCHECK_TIMEOUT, target.connector.healthcheck()).await {
            Ok(Ok(())) => (true, None),
            Ok(Err(e)) => (false, Some(e.to_string())),
            Err(_) => (
                false,
                Some(format!(
                    "healthcheck did not answer within {HEALTHCHECK_TIMEOUT:?}"
                )),
            ),
        };
    let status = match target.connector.status() {
        serde_json::Value::Null => serde_json::json!({}),
        object @ serde_json::Value::Object(_) => object,
        other => serde_json::json!({ "value": other }),
    };
    let paused = control.is_some_and(|c| c.is_paused());
    ConnectorView {
        name: target.name.clone(),
        kind: target.connector.kind(),
        enabled: !paused,
        paused,
        pause_reason: control.and_then(|c| c.pause_reason()),
        backlog: crate::source::unfinished_count(&target.unfinished),
        healthy,
        health_error,
        circuit: status
            .get("circuit")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        status,
    }
}

/// The connectors, with their status.
#[derive(Debug, Serialize)]
pub struct ConnectorList {
    /// One entry per configured connector.
    pub connectors: Vec<ConnectorView>,
}

async fn connectors(State(admin): State<Arc<Admin>>) -> ApiResult<ConnectorList> {
    let mut checks = tokio::task::JoinSet::new();
    for i in 0..admin.pipeline.targets().len() {
        let admin = admin.clone();
        checks.spawn(async move {
            let target = &admin.pipeline.targets()[i];
            (i, connector_view(target, admin.control(&target.name)).await)
        });
    }
    let mut views = Vec::new();
    while let Some(done) = checks.join_next().await {
        match done {
            Ok(view) => views.push(view),
            Err(e) => {
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("connector status failed: {e}"),
                ))
            }
        }
    }
    views.sort_by_key(|(i, _)| *i);
    Ok(Json(ConnectorList {
        connectors: views.into_iter().map(|(_, v)| v).collect(),
    }))
}

fn known_connector<'a>(admin: &'a Admin, name: &str) -> Result<&'a Target, ApiError> {
    admin.target(name).ok_or_else(|| {
        let names: Vec<&str> = admin
            .pipeline
            .targets()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no connector named `{name}`; configured: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
    })
}

async fn connector(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<ConnectorView> {
    let name = path(name)?;
    let target = known_connector(&admin, &name)?;
    Ok(Json(connector_view(target, admin.control(&name)).await))
}

async fn pause(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<ConnectorView> {
    let name = path(name)?;
    let target = known_connector(&admin, &name)?;
    let reason = reason(body, "paused by an operator")?;
    let control = admin.control(&name);
    if let Some(control) = control {
        control.pause(reason.clone());
        tracing::info!(connector = %name, %reason, "connector paused by an operator");
    }
    action("pause", true);
    Ok(Json(connector_view(target, control).await))
}

async fn resume(
    State(admin): State<Arc<Admin>>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<ConnectorView> {
    let name = path(name)?;
    let target = known_connector(&admin, &name)?;
    let control = admin.control(&name);
    if let Some(control) = control {
        control.resume();
        tracing::info!(connector = %name, "connector resumed by an operator");
    }
    action("resume", true);
    Ok(Json(connector_view(target, control).await))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdef0", b"0123456789abcdef"));
        assert!(!same_secret(b"", b"0123456789abcdef"));
    }
}
