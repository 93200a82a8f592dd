//! Operating the bridge: views of tasks and rejected messages, and the operator's actions
//! (retry, cancel, replay, pause, resume).
//!
//! The same views and store operations serve the admin API ([`api`], under `/api/v1` of the
//! HTTP server) and the `polaris-bridge tasks` command ([`cli`]), which either calls a running
//! bridge's API or opens the sled directory itself when no process holds it.

pub mod api;
pub mod cli;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use polaris_bridge_api::event::stored;
use polaris_bridge_api::{PolarisEvent, TaskId};
use serde::Serialize;

use crate::log::{
    now_ms, AttemptRecord, LogError, RecordKey, RejectedKey, RejectedRecord, ReplayRecord, TaskLog,
    TaskRecord, TaskState,
};

/// Most tasks or rejected messages one page holds.
pub const MAX_LIMIT: usize = 1000;
/// Tasks or rejected messages a page holds unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// Most records one listing request looks at; past that it returns what it found with a
/// cursor to go on from, so a narrow filter over a big log stays cheap per request.
pub const MAX_SCAN: usize = 100_000;

/// Why an operator's request failed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such task, rejected message or connector (404).
    #[error("{0}")]
    NotFound(String),
    /// The action does not apply in the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The bridge cannot do it now (503), for example while shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<LogError> for AdminError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::NotFound(what) => AdminError::NotFound(format!("{what} not found")),
            LogError::Refused(why) => AdminError::Conflict(why),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

/// The states a task can be in, as the API names them.
pub const STATES: &[&str] = &[
    "pending",
    "running",
    "retrying",
    "succeeded",
    "dead",
    "cancelled",
];

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// One of [`STATES`].
    pub state: Option<String>,
    /// Connector instance name.
    pub connector: Option<String>,
    /// Glob on the event's catalog.
    pub catalog: Option<glob::Pattern>,
    /// Glob on the table or view name, or on `namespace.name`.
    pub table: Option<glob::Pattern>,
    /// Created at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Created before (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Page size.
    pub limit: usize,
    /// Continue after this record.
    pub cursor: Option<RecordKey>,
}

impl TaskFilter {
    /// Reads a filter from query parameters (`state`, `connector`, `catalog`, `table`,
    /// `since`, `until`, `limit`, `cursor`); unknown parameters are refused by name.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TaskFilter, AdminError> {
        let mut filter = TaskFilter {
            limit: DEFAULT_LIMIT,
            ..TaskFilter::default()
        };
        for (name, value) in params {
            match name {
                "state" => {
                    if !STATES.contains(&value) {
                        return Err(AdminError::BadRequest(format!(
                            "state `{value}` is not a task state: use one of {}",
                            STATES.join(", ")
                        )));
                    }
                    filter.state = Some(value.to_string());
                }
                "connector" => filter.connector = Some(value.to_string()),
                "catalog" => filter.catalog = Some(pattern("catalog", value)?),
                "table" => filter.table = Some(pattern("table", value)?),
                "since" => filter.since_ms = Some(parse_time("since", value)?),
                "until" => filter.until_ms = Some(parse_time("until", value)?),
                "limit" => filter.limit = parse_limit(value)?,
                "cursor" => {
                    filter.cursor = Some(RecordKey::from_token(value).ok_or_else(|| {
                        AdminError::BadRequest(format!(
                            "cursor `{value}` is not a cursor from a previous page"
                        ))
                    })?)
                }
                other => {
                    return Err(AdminError::BadRequest(format!(
                        "unknown query parameter `{other}`: use state, connector, catalog, table, since, until, limit, cursor"
                    )))
                }
            }
        }
        Ok(filter)
    }
}

fn pattern(name: &str, value: &str) -> Result<glob::Pattern, AdminError> {
    glob::Pattern::new(value)
        .map_err(|e| AdminError::BadRequest(format!("{name} `{value}` is not a glob: {e}")))
}

/// Reads a page size: 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<usize, AdminError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(AdminError::BadRequest(format!(
            "limit `{value}` must be a whole number from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// Reads a time: RFC 3339 (`2026-05-01T10:00:00Z`), milliseconds since the epoch, or a
/// duration before now (`90m`, `2h`, `7d`).
pub fn parse_time(name: &str, value: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = value.parse::<i64>() {
        if ms >= 0 {
            return Ok(ms);
        }
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        if let Ok(d) = t.duration_since(UNIX_EPOCH) {
            return Ok(d.as_millis() as i64);
        }
    }
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(now_ms().saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    }
    Err(AdminError::BadRequest(format!(
        "{name} `{value}` is not a time: use RFC 3339 (2026-05-01T10:00:00Z), milliseconds since the epoch, or a duration before now (2h)"
    )))
}

/// A time as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(
        t.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
    )
    .to_string()
}

/// Where a task's event was read.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Kafka topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// One task, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSummary {
    /// The deterministic task id (32 hex characters).
    pub task_id: String,
    /// Connector instance.
    pub connector: String,
    /// One of [`STATES`].
    pub state: &'static str,
    /// Attempts started.
    pub attempts: u32,
    /// When the task was recorded.
    pub created_at: String,
    /// Its last state change.
    pub updated_at: String,
    /// The event's type.
    pub event_type: Option<String>,
    /// The event's realm.
    pub realm: String,
    /// The event's catalog.
    pub catalog: Option<String>,
    /// The event's namespace, levels joined by `.`.
    pub namespace: Option<String>,
    /// The table or view the event is about.
    pub table: Option<String>,
    /// Where the event was consumed.
    pub source: SourceView,
    /// Why it is dead or cancelled, or the last error of a retrying task.
    pub error: Option<String>,
}

/// State details of one task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateDetail {
    /// The process holding a running task's lease.
    pub lease_owner: Option<String>,
    /// When that lease expires.
    pub lease_until: Option<String>,
    /// Earliest start of a retrying task's next attempt.
    pub not_before: Option<String>,
    /// A retrying task's last error.
    pub last_error: Option<String>,
    /// Why a task is dead or cancelled.
    pub reason: Option<String>,
    /// Why a succeeded task had nothing to do, when that was the case.
    pub note: Option<String>,
}

/// One attempt of a task.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: String,
    /// `success`, `already_done`, `transient`, `permanent`, `misconfigured`, `deferred`,
    /// `disabled`, `abandoned`, `cancelled` or `retried` (an operator's action).
    pub outcome: String,
    /// The error or note.
    pub message: Option<String>,
}

/// One task with its event, attempts, errors and progress.
#[derive(Debug, Clone, Serialize)]
pub struct TaskDetail {
    /// What the listing shows.
    #[serde(flatten)]
    pub summary: TaskSummary,
    /// Tasks with the same key are delivered one at a time, in order.
    pub ordering_key: String,
    /// State details.
    pub state_detail: StateDetail,
    /// The event (the JSON of the event model).
    pub event: serde_json::Value,
    /// The last attempts, oldest first (at most 10).
    pub history: Vec<AttemptView>,
    /// Progress saved by a long-running delivery (for example a purge): its JSON, or
    /// `{"hex": "..."}` when it is not JSON; `null` when there is none.
    pub progress: serde_json::Value,
}

/// A page of tasks.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// The tasks, in log order (by connector, then creation).
    pub tasks: Vec<TaskSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn parse_event(record: &TaskRecord) -> Option<PolarisEvent> {
    stored::decode(&record.event_bytes).ok()
}

fn state_error(state: &TaskState) -> Option<String> {
    match state {
        TaskState::Retrying { last_error, .. } => Some(last_error.clone()),
        TaskState::Dead { reason } | TaskState::Cancelled { reason } => Some(reason.clone()),
        _ => None,
    }
}

/// The listing view of a record.
pub fn summary(record: &TaskRecord, event: Option<&PolarisEvent>) -> TaskSummary {
    TaskSummary {
        task_id: hex::encode(record.task_id),
        connector: record.connector.clone(),
        state: record.state.name(),
        attempts: record.attempts,
        created_at: rfc3339(record.created_ms),
        updated_at: rfc3339(record.updated_ms),
        event_type: event.map(|e| e.event_type.name().to_string()),
        realm: record.realm.clone(),
        catalog: event.and_then(|e| e.catalog_name.clone()),
        namespace: event.and_then(|e| e.namespace_path()),
        table: event.and_then(|e| e.object_name().map(str::to_string)),
        source: SourceView {
            topic: record.source.topic.clone(),
            partition: record.source.partition,
            offset: record.source.offset,
        },
        error: state_error(&record.state),
    }
}

/// The detailed view of a record.
pub fn detail(record: &TaskRecord) -> TaskDetail {
    let event = parse_event(record);
    let mut state_detail = StateDetail::default();
    match &record.state {
        TaskState::Running {
            owner,
            lease_until_ms,
        } => {
            state_detail.lease_owner = Some(owner.clone());
            state_detail.lease_until = Some(rfc3339(*lease_until_ms));
        }
        TaskState::Retrying {
            not_before_ms,
            last_error,
        } => {
            state_detail.not_before = Some(rfc3339(*not_before_ms));
            state_detail.last_error = Some(last_error.clone());
        }
        TaskState::Dead { reason } | TaskState::Cancelled { reason } => {
            state_detail.reason = Some(reason.clone())
        }
        TaskState::Succeeded { note } => state_detail.note = note.clone(),
        TaskState::Pending => {}
    }
    let progress = match &record.checkpoint {
        None => serde_json::Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| serde_json::json!({ "hex": hex::encode(bytes) })),
    };
    TaskDetail {
        summary: summary(record, event.as_ref()),
        ordering_key: record.ordering_key.clone(),
        state_detail,
        event: event
            .as_ref()
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or(serde_json::Value::Null),
        history: record
            .history
            .iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                started_at: rfc3339(a.started_ms),
                finished_at: rfc3339(a.finished_ms),
                outcome: a.outcome.clone(),
                message: a.message.clone(),
            })
            .collect(),
        progress,
    }
}

fn matches(filter: &TaskFilter, record: &TaskRecord, event: Option<&PolarisEvent>) -> bool {
    if let Some(state) = &filter.state {
        if record.state.name() != state {
            return false;
        }
    }
    if filter.since_ms.is_some_and(|t| record.created_ms < t)
        || filter.until_ms.is_some_and(|t| record.created_ms >= t)
    {
        return false;
    }
    if let Some(catalog) = &filter.catalog {
        if !event
            .and_then(|e| e.catalog_name.as_deref())
            .is_some_and(|c| catalog.matches(c))
        {
            return false;
        }
    }
    if let Some(table) = &filter.table {
        let Some(event) = event else { return false };
        let Some(name) = event.object_name() else {
            return false;
        };
        let qualified = event
            .namespace_path()
            .map(|ns| format!("{ns}.{name}"))
            .unwrap_or_default();
        if !table.matches(name) && !table.matches(&qualified) {
            return false;
        }
    }
    true
}

/// Lists tasks matching `filter`, one page.
pub fn list_tasks(log: &TaskLog, filter: &TaskFilter) -> Result<TaskPage, AdminError> {
    let connector = match &filter.connector {
        None => None,
        Some(name) => match log.known_connector(name) {
            Some(n) => Some(n),
            // A connector the log has never seen has no tasks.
            None => {
                return Ok(TaskPage {
                    tasks: Vec::new(),
                    next_cursor: None,
                })
            }
        },
    };
    let mut tasks = Vec::new();
    let mut last = None;
    let mut more = false;
    for (scanned, entry) in log.scan(connector, filter.cursor).enumerate() {
        let (key, record) = entry?;
        if tasks.len() >= filter.limit || scanned >= MAX_SCAN {
            more = true;
            break;
        }
        last = Some(key);
        if filter
            .state
            .as_deref()
            .is_some_and(|s| s != record.state.name())
        {
            continue;
        }
        let event = parse_event(&record);
        if matches(filter, &record, event.as_ref()) {
            tasks.push(summary(&record, event.as_ref()));
        }
    }
    Ok(TaskPage {
        tasks,
        next_cursor: if more {
            last.map(RecordKey::to_token)
        } else {
            None
        },
    })
}

/// Reads a task id from the API or the command line.
pub fn parse_task_id(text: &str) -> Result<TaskId, AdminError> {
    text.parse::<TaskId>()
        .map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// Finds a task by id.
pub fn find(log: &TaskLog, id: &str) -> Result<(RecordKey, TaskRecord), AdminError> {
    let task_id = parse_task_id(id)?;
    log.find(&task_id)?.ok_or_else(|| {
        AdminError::NotFound(format!(
            "task {} not found (never recorded, or compacted after its retention)",
            task_id.to_hex()
        ))
    })
}

/// Puts a dead or cancelled task back to `pending` at a new place in the log: its attempt
/// count starts again (the retry policy applies afresh), its history keeps the earlier
/// attempts and notes the operator's retry.
pub fn retry(log: &TaskLog, key: RecordKey, who: &str) -> Result<TaskRecord, AdminError> {
    let now = now_ms();
    let (_, record) = log.reopen(key, |r| {
        let previous = std::mem::replace(&mut r.state, TaskState::Pending);
        let attempt = r.attempts;
        r.push_history(AttemptRecord {
            attempt,
            started_ms: now,
            finished_ms: now,
            outcome: "retried".into(),
            message: Some(format!(
                "{who} retried the task; it was {}: {}",
                previous.name(),
                state_error(&previous).unwrap_or_default()
            )),
        });
        r.attempts = 0;
    })?;
    log.flush()?;
    Ok(record)
}

/// Cancels a task directly in the store: for a store no running dispatcher serves (offline,
/// or a connector no longer configured). A running bridge cancels through the dispatcher.
pub fn cancel_in_store(
    log: &TaskLog,
    key: RecordKey,
    reason: &str,
) -> Result<TaskRecord, AdminError> {
    let now = now_ms();
    let record = log.update(key, |r| r.cancel(reason, now).map_err(LogError::Refused))?;
    log.flush()?;
    Ok(record)
}

/// A replay of a rejected message, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayView {
    /// When.
    pub replayed_at: String,
    /// `routed`, `unrouted` or `rejected`.
    pub outcome: String,
    /// New tasks created.
    pub tasks_created: u32,
    /// Tasks already in the log.
    pub duplicates: u32,
    /// Why it was rejected again.
    pub error: Option<String>,
}

impl From<&ReplayRecord> for ReplayView {
    fn from(r: &ReplayRecord) -> Self {
        ReplayView {
            replayed_at: rfc3339(r.replayed_ms),
            outcome: r.outcome.clone(),
            tasks_created: r.tasks_created,
            duplicates: r.duplicates,
            error: r.error.clone(),
        }
    }
}

/// A rejected message, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedView {
    /// `topic/partition/offset`: its id in the API.
    pub id: String,
    /// Kafka topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record key as text (lossy UTF-8), if any.
    pub key: Option<String>,
    /// Bounded error class.
    pub kind: String,
    /// What is wrong, and where.
    pub error: String,
    /// Bytes in the value.
    pub value_len: usize,
    /// Whether the whole value was kept (and so can be replayed).
    pub replayable: bool,
    /// When it was rejected.
    pub rejected_at: String,
    /// The last replay, if any.
    pub replay: Option<ReplayView>,
}

/// A rejected message with its value.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedDetail {
    /// What the listing shows.
    #[serde(flatten)]
    pub summary: RejectedView,
    /// The value kept, as text when it is UTF-8.
    pub value_text: Option<String>,
    /// The value kept, as hex when it is not UTF-8.
    pub value_hex: Option<String>,
}

/// A page of rejected messages.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedPage {
    /// The messages, by topic, partition and offset.
    pub rejected: Vec<RejectedView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The listing view of a rejected record.
pub fn rejected_view(r: &RejectedRecord, replay: Option<&ReplayRecord>) -> RejectedView {
    RejectedView {
        id: format!("{}/{}/{}", r.topic, r.partition, r.offset),
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        key: r
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        kind: r.kind.clone(),
        error: r.error.clone(),
        value_len: r.value_len,
        replayable: r.is_whole(),
        rejected_at: rfc3339(r.rejected_ms),
        replay: replay.map(ReplayView::from),
    }
}

/// Reads a rejected message's id from its parts.
pub fn rejected_key(topic: &str, partition: &str, offset: &str) -> Result<RejectedKey, AdminError> {
    let partition = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            AdminError::BadRequest(format!("partition `{partition}` is not a partition number"))
        })?;
    let offset = offset
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| AdminError::BadRequest(format!("offset `{offset}` is not an offset")))?;
    if topic.is_empty() || topic.contains('\0') {
        return Err(AdminError::BadRequest("the topic name is empty".into()));
    }
    Ok(RejectedKey {
        topic: topic.to_string(),
        partition,
        offset,
    })
}

/// Reads a rejected-message cursor (`topic/partition/offset`).
pub fn rejected_cursor(text: &str) -> Result<RejectedKey, AdminError> {
    let mut parts = text.rsplitn(3, '/');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(AdminError::BadRequest(format!(
            "cursor `{text}` is not a cursor from a previous page"
        )));
    };
    rejected_key(topic, partition, offset)
}

/// Lists rejected messages, one page (`limit`, `cursor`).
pub fn list_rejected<'a>(
    log: &TaskLog,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<RejectedPage, AdminError> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (name, value) in params {
        match name {
            "limit" => limit = parse_limit(value)?,
            "cursor" => cursor = Some(rejected_cursor(value)?),
            other => {
                return Err(AdminError::BadRequest(format!(
                    "unknown query parameter `{other}`: use limit, cursor"
                )))
            }
        }
    }
    let mut page = log.rejected_page(cursor.as_ref(), limit + 1)?;
    let more = page.len() > limit;
    page.truncate(limit);
    let rejected: Vec<RejectedView> = page
        .iter()
        .map(|(r, replay)| rejected_view(r, replay.as_ref()))
        .collect();
    let next_cursor = if more {
        rejected.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(RejectedPage {
        rejected,
        next_cursor,
    })
}

/// One rejected message with its value.
pub fn rejected_detail(log: &TaskLog, key: &RejectedKey) -> Result<RejectedDetail, AdminError> {
    let record = log.rejected_get(key)?.ok_or_else(|| {
        AdminError::NotFound(format!(
            "no rejected message at {}/{}/{}",
            key.topic, key.partition, key.offset
        ))
    })?;
    let replay = log.replay_mark(key)?;
    let (value_text, value_hex) = match std::str::from_utf8(&record.value_prefix) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(hex::encode(&record.value_prefix))),
    };
    Ok(RejectedDetail {
        summary: rejected_view(&record, replay.as_ref()),
        value_text,
        value_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{InsertOutcome, SourceRecord};

    fn record(id: u8, catalog: &str, table: &str) -> TaskRecord {
        let mut event = PolarisEvent::new(polaris_bridge_api::event::EventType::from_name(
            "AFTER_DROP_TABLE",
        ));
        event.catalog_name = Some(catalog.into());
        event.table_identifier = Some(vec!["sales".into(), table.into()]);
        TaskRecord {
            task_id: [id; 16],
            dedup_bucket: 0,
            connector: "c".into(),
            state: TaskState::Dead {
                reason: "gave up".into(),
            },
            attempts: 3,
            created_ms: 1_000 * id as i64,
            updated_ms: 1_000 * id as i64,
            ordering_key: "k".into(),
            realm: "R".into(),
            source: SourceRecord {
                topic: "t".into(),
                partition: 0,
                offset: id as i64,
            },
            event_bytes: serde_json::to_vec(&event).unwrap(),
            history: vec![],
            checkpoint: Some(br#"{"manifests_done":3}"#.to_vec()),
        }
    }

    fn filter(params: &[(&str, &str)]) -> TaskFilter {
        TaskFilter::from_params(params.iter().copied()).unwrap()
    }

    #[test]
    fn filters_pages_and_retry() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        let c = log.connector_number("c").unwrap();
        for i in 1..=5u8 {
            let catalog = if i % 2 == 0 { "prod" } else { "dev" };
            assert!(matches!(
                log.insert(c, &record(i, catalog, &format!("orders_{i}")))
                    .unwrap(),
                InsertOutcome::Created(_)
            ));
        }
        log.flush().unwrap();
        let page = list_tasks(&log, &filter(&[("catalog", "prod")])).unwrap();
        assert_eq!(page.tasks.len(), 2);
        assert_eq!(page.tasks[0].table.as_deref(), Some("orders_2"));
        let page = list_tasks(&log, &filter(&[("table", "sales.orders_[13]")])).unwrap();
        assert_eq!(page.tasks.len(), 2);
        let page = list_tasks(&log, &filter(&[("since", "2000"), ("until", "4000")])).unwrap();
        assert_eq!(page.tasks.len(), 2);
        assert!(list_tasks(&log, &filter(&[("connector", "nope")]))
            .unwrap()
            .tasks
            .is_empty());
        // Pagination walks everything exactly once.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("limit", "2")];
            if let Some(c) = cursor.as_deref() {
                params.push(("cursor", c));
            }
            let page = list_tasks(&log, &filter(&params)).unwrap();
            seen.extend(page.tasks.iter().map(|t| t.task_id.clone()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        for bad in [
            ("state", "zombie"),
            ("limit", "0"),
            ("limit", "x"),
            ("cursor", "zz"),
            ("since", "yesterday-ish"),
            ("frobnicate", "1"),
        ] {
            assert!(
                matches!(
                    TaskFilter::from_params([bad]),
                    Err(AdminError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }

        let id = hex::encode([3u8; 16]);
        let (key, _) = find(&log, &id).unwrap();
        let detail = detail(&find(&log, &id).unwrap().1);
        assert_eq!(detail.progress["manifests_done"], 3);
        assert_eq!(detail.summary.error.as_deref(), Some("gave up"));
        let retried = retry(&log, key, "test").unwrap();
        assert_eq!(retried.state, TaskState::Pending);
        assert_eq!(retried.attempts, 0);
        assert_eq!(retried.history.last().unwrap().outcome, "retried");
        let (new_key, found) = find(&log, &id).unwrap();
        assert!(new_key.seq > key.seq, "moved to a new sequence");
        assert_eq!(found.state, TaskState::Pending);
        assert!(log.get(key).unwrap().is_none(), "the old record is gone");
        assert_eq!(log.len(), 5);
        assert!(matches!(
            retry(&log, new_key, "test"),
            Err(AdminError::Conflict(_))
        ));
        let cancelled = cancel_in_store(&log, new_key, "not needed").unwrap();
        assert!(matches!(cancelled.state, TaskState::Cancelled { .. }));
        assert!(matches!(
            cancel_in_store(&log, new_key, "again"),
            Err(AdminError::Conflict(_))
        ));
        let report = log.check().unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(report.warnings.is_empty(), "{report:?}");
        assert!(matches!(find(&log, "abc"), Err(AdminError::BadRequest(_))));
        assert!(matches!(
            find(&log, &hex::encode([9u8; 16])),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn rejected_pages_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let log = TaskLog::open(dir.path(), 8).unwrap();
        for offset in 0..3 {
            log.insert_rejected(&RejectedRecord {
                topic: "a.b-c".into(),
                partition: 1,
                offset,
                key: Some(b"k".to_vec()),
                kind: "json".into(),
                error: "bad".into(),
                value_prefix: b"{nope".to_vec(),
                value_len: 5,
                rejected_ms: 0,
            })
            .unwrap();
        }
        let page = list_rejected(&log, [("limit", "2")]).unwrap();
        assert_eq!(page.rejected.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("a.b-c/1/1"));
        let rest = list_rejected(&log, [("cursor", "a.b-c/1/1")]).unwrap();
        assert_eq!(rest.rejected.len(), 1);
        assert!(rest.next_cursor.is_none());
        let key = rejected_key("a.b-c", "1", "2").unwrap();
        let detail = rejected_detail(&log, &key).unwrap();
        assert_eq!(detail.value_text.as_deref(), Some("{nope"));
        assert!(detail.summary.replayable);
        assert!(rejected_key("t", "-1", "0").is_err());
        assert!(rejected_key("t", "0", "x").is_err());
        assert!(matches!(
            rejected_detail(&log, &rejected_key("t", "0", "0").unwrap()),
            Err(AdminError::NotFound(_))
        ));
    }
}
