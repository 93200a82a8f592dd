//! `polaris-bridge tasks` and `polaris-bridge store check`: the admin API's views and actions
//! from the command line, against a running bridge (`--api URL`) or offline against the
//! sled directory (`--store DIR` or `--config FILE`).
//!
//! sled lets one process open a directory at a time, even only to read it. So offline access
//! works only while no bridge holds the store; while one does, the command says so and points
//! at `--api`. Offline, `retry` and `cancel` write to the store (the next `run` picks the
//! change up); `replay`, `pause` and `resume` need the running bridge's pipeline and
//! dispatchers, so they work through the API only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{
    cancel_in_store, detail, find, list_rejected, list_tasks, rejected_detail, rejected_key, retry,
    TaskFilter,
};
use crate::config::{Config, ADMIN_TOKEN_ENV};
use crate::log::{LogError, TaskLog};

/// Where the `tasks` command looks.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// A running bridge's base URL, e.g. `http://127.0.0.1:9464` (its admin API).
    #[arg(long, global = true, env = "POLARIS_BRIDGE_API")]
    pub api: Option<String>,
    /// The admin API's bearer token.
    #[arg(long, global = true, env = ADMIN_TOKEN_ENV, hide_env_values = true)]
    pub token: Option<String>,
    /// Offline: the sled directory of a stopped bridge.
    #[arg(long, global = true, conflicts_with = "api")]
    pub store: Option<PathBuf>,
    /// Offline: the store named by this configuration file's `store.path`.
    #[arg(long, global = true, conflicts_with_all = ["api", "store"])]
    pub config: Option<PathBuf>,
    /// Print the JSON the API returns instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `polaris-bridge tasks ...`
#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: TasksCommand,
}

/// The views and actions of `tasks`.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Lists tasks, filtered, one page at a time.
    List {
        /// pending, running, retrying, succeeded, dead or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Connector instance name.
        #[arg(long)]
        connector: Option<String>,
        /// Glob on the event's catalog.
        #[arg(long)]
        catalog: Option<String>,
        /// Glob on the table or view name, or on `namespace.name`.
        #[arg(long)]
        table: Option<String>,
        /// Created at or after: RFC 3339, ms since the epoch, or a duration ago (`2h`).
        #[arg(long)]
        since: Option<String>,
        /// Created before: same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// Tasks per page (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
        /// Follow the cursors to the last page.
        #[arg(long)]
        all: bool,
    },
    /// Shows one task: its event, attempts, errors and progress.
    Show {
        /// Task id (32 hex characters).
        id: String,
    },
    /// Puts a dead or cancelled task back to work.
    Retry {
        /// Task id.
        id: String,
    },
    /// Cancels a pending, retrying or running task.
    Cancel {
        /// Task id.
        id: String,
        /// Why (kept in the task's history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lists rejected messages.
    Rejected {
        /// Messages per page (1-1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Continue from a previous page's cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Shows one rejected message with its value.
    ShowRejected {
        /// Kafka topic.
        topic: String,
        /// Partition.
        partition: String,
        /// Offset.
        offset: String,
    },
    /// Runs a rejected message through decode, route and record again (after a fix).
    Replay {
        /// Kafka topic.
        topic: String,
        /// Partition.
        partition: String,
        /// Offset.
        offset: String,
    },
    /// Lists the connectors: healthcheck, circuit, enabled, backlog.
    Connectors,
    /// Pauses a connector's deliveries (tasks wait in the log).
    Pause {
        /// Connector instance name.
        name: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resumes a connector's deliveries.
    Resume {
        /// Connector instance name.
        name: String,
    },
}

/// Runs `polaris-bridge tasks`.
pub fn run_tasks(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let target = args.target;
    let backend = if let Some(url) = &target.api {
        Backend::Api(ApiClient::new(url, target.token.clone())?)
    } else {
        let path = store_path(target.store.as_deref(), target.config.as_deref())?
            .ok_or_else(|| {
                anyhow!("say where the tasks are: --api URL (a running bridge), or --store DIR / --config FILE (a stopped bridge's store)")
            })?;
        Backend::Offline(Box::new(open_offline(&path)?))
    };
    let output = backend.execute(&args.command)?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        render(&args.command, &output);
    }
    Ok(ExitCode::SUCCESS)
}

/// The store directory from `--store`, else from `--config`'s `store.path`.
pub fn store_path(store: Option<&Path>, config: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(store) = store {
        return Ok(Some(store.to_path_buf()));
    }
    match config {
        Some(file) => Ok(Some(Config::load(file)?.store.path)),
        None => Ok(None),
    }
}

/// Opens a store for offline use, explaining a lock held by a running bridge.
pub fn open_offline(path: &Path) -> anyhow::Result<TaskLog> {
    if !path.join("conf").exists() && !path.join("db").exists() {
        bail!(
            "{} is not a polaris-bridge task log (no sled files in it): check --store or store.path",
            path.display()
        );
    }
    match TaskLog::open(path, 8) {
        Ok(log) => Ok(log),
        Err(LogError::Locked { path }) => bail!(
            "the task log at {} is held by a running polaris-bridge. sled lets one process open a store directory at a time, even only to read it, so it cannot be read offline beside the bridge: ask the running bridge instead with --api http://HOST:PORT (its http.listen address) and its admin token in {ADMIN_TOKEN_ENV}, or stop the bridge first",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

enum Backend {
    Api(ApiClient),
    Offline(Box<TaskLog>),
}

fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn offline_only_api(what: &str) -> anyhow::Error {
    anyhow!("`{what}` needs a running bridge (its pipeline and dispatchers): use --api URL")
}

impl Backend {
    fn execute(&self, command: &TasksCommand) -> anyhow::Result<Value> {
        match command {
            TasksCommand::List {
                state,
                connector,
                catalog,
                table,
                since,
                until,
                limit,
                cursor,
                all,
            } => {
                let mut cursor = cursor.clone();
                let mut tasks = Vec::new();
                loop {
                    let params = [
                        ("state", state.clone()),
                        ("connector", connector.clone()),
                        ("catalog", catalog.clone()),
                        ("table", table.clone()),
                        ("since", since.clone()),
                        ("until", until.clone()),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor.clone()),
                    ];
                    let page = match self {
                        Backend::Api(api) => {
                            api.get(&format!("/api/v1/tasks{}", query(&params)))?
                        }
                        Backend::Offline(log) => {
                            let pairs: Vec<(&str, &str)> = params
                                .iter()
                                .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
                                .collect();
                            let filter = TaskFilter::from_params(pairs)?;
                            serde_json::to_value(list_tasks(log, &filter)?)?
                        }
                    };
                    if !all {
                        return Ok(page);
                    }
                    if let Some(list) = page["tasks"].as_array() {
                        tasks.extend(list.iter().cloned());
                    }
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_string()),
                        None => {
                            return Ok(serde_json::json!({ "tasks": tasks, "next_cursor": null }))
                        }
                    }
                }
            }
            TasksCommand::Show { id } => match self {
                Backend::Api(api) => api.get(&format!("/api/v1/tasks/{}", enc(id))),
                Backend::Offline(log) => Ok(serde_json::to_value(detail(&find(log, id)?.1))?),
            },
            TasksCommand::Retry { id } => match self {
                Backend::Api(api) => api.post(&format!("/api/v1/tasks/{}/retry", enc(id)), None),
                Backend::Offline(log) => {
                    let (key, _) = find(log, id)?;
                    Ok(serde_json::to_value(detail(&retry(
                        log,
                        key,
                        "an operator (tasks CLI, offline)",
                    )?))?)
                }
            },
            TasksCommand::Cancel { id, reason } => {
                let reason = reason
                    .clone()
                    .unwrap_or_else(|| "cancelled by an operator".to_string());
                match self {
                    Backend::Api(api) => api.post(
                        &format!("/api/v1/tasks/{}/cancel", enc(id)),
                        Some(serde_json::json!({ "reason": reason })),
                    ),
                    Backend::Offline(log) => {
                        let (key, _) = find(log, id)?;
                        Ok(serde_json::to_value(detail(&cancel_in_store(
                            log, key, &reason,
                        )?))?)
                    }
                }
            }
            TasksCommand::Rejected { limit, cursor } => {
                let params = [
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ];
                match self {
                    Backend::Api(api) => api.get(&format!("/api/v1/rejected{}", query(&params))),
                    Backend::Offline(log) => {
                        let pairs: Vec<(&str, &str)> = params
                            .iter()
                            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
                            .collect();
                        Ok(serde_json::to_value(list_rejected(log, pairs)?)?)
                    }
                }
            }
            TasksCommand::ShowRejected {
                topic,
                partition,
                offset,
            } => match self {
                Backend::Api(api) => api.get(&format!(
                    "/api/v1/rejected/{}/{}/{}",
                    enc(topic),
                    enc(partition),
                    enc(offset)
                )),
                Backend::Offline(log) => {
                    let key = rejected_key(topic, partition, offset)?;
                    Ok(serde_json::to_value(rejected_detail(log, &key)?)?)
                }
            },
            TasksCommand::Replay {
                topic,
                partition,
                offset,
            } => match self {
                Backend::Api(api) => api.post(
                    &format!(
                        "/api/v1/rejected/{}/{}/{}/replay",
                        enc(topic),
                        enc(partition),
                        enc(offset)
                    ),
                    None,
                ),
                Backend::Offline(_) => Err(offline_only_api("replay")),
            },
            TasksCommand::Connectors => match self {
                Backend::Api(api) => api.get("/api/v1/connectors"),
                Backend::Offline(log) => {
                    let mut list = Vec::new();
                    for (name, number) in log.connectors() {
                        list.push(serde_json::json!({
                            "name": name,
                            "backlog": log.count_unfinished(number)?,
                        }));
                    }
                    Ok(serde_json::json!({ "connectors": list, "offline": true }))
                }
            },
            TasksCommand::Pause { name, reason } => match self {
                Backend::Api(api) => api.post(
                    &format!("/api/v1/connectors/{}/pause", enc(name)),
                    reason.as_ref().map(|r| serde_json::json!({ "reason": r })),
                ),
                Backend::Offline(_) => Err(offline_only_api("pause")),
            },
            TasksCommand::Resume { name } => match self {
                Backend::Api(api) => {
                    api.post(&format!("/api/v1/connectors/{}/resume", enc(name)), None)
                }
                Backend::Offline(_) => Err(offline_only_api("resume")),
            },
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn render(command: &TasksCommand, output: &Value) {
    match command {
        TasksCommand::List { .. } => {
            let rows: Vec<Vec<String>> = output["tasks"]
                .as_array()
                .map(|tasks| {
                    tasks
                        .iter()
                        .map(|t| {
                            let resource = [&t["catalog"], &t["namespace"], &t["table"]]
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join("/");
                            vec![
                                s(&t["task_id"]),
                                s(&t["connector"]),
                                s(&t["state"]),
                                s(&t["attempts"]),
                                s(&t["created_at"]),
                                s(&t["event_type"]),
                                resource,
                                cut(&s(&t["error"]), 60),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let count = rows.len();
            table(
                &[
                    "TASK_ID",
                    "CONNECTOR",
                    "STATE",
                    "ATTEMPTS",
                    "CREATED",
                    "EVENT",
                    "RESOURCE",
                    "ERROR",
                ],
                rows,
            );
            match output["next_cursor"].as_str() {
                Some(c) => println!("({count} shown; next page: --cursor {c})"),
                None => println!("({count} shown)"),
            }
        }
        TasksCommand::Rejected { .. } => {
            let rows: Vec<Vec<String>> = output["rejected"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|r| {
                            vec![
                                s(&r["id"]),
                                s(&r["kind"]),
                                s(&r["value_len"]),
                                r["replay"]["outcome"].as_str().unwrap_or("-").to_string(),
                                cut(&s(&r["error"]), 80),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let count = rows.len();
            table(&["ID", "KIND", "BYTES", "REPLAYED", "ERROR"], rows);
            match output["next_cursor"].as_str() {
                Some(c) => println!("({count} shown; next page: --cursor {c})"),
                None => println!("({count} shown)"),
            }
        }
        TasksCommand::Connectors => {
            let rows: Vec<Vec<String>> = output["connectors"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|c| {
                            vec![
                                s(&c["name"]),
                                s(&c["type"]),
                                s(&c["enabled"]),
                                s(&c["backlog"]),
                                s(&c["healthy"]),
                                s(&c["circuit"]),
                                cut(
                                    c["pause_reason"]
                                        .as_str()
                                        .or(c["health_error"].as_str())
                                        .unwrap_or("-"),
                                    60,
                                ),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(
                &[
                    "NAME", "TYPE", "ENABLED", "BACKLOG", "HEALTHY", "CIRCUIT", "NOTE",
                ],
                rows,
            );
            if output["offline"].as_bool() == Some(true) {
                println!("(offline: health, circuit and pause state need --api)");
            }
        }
        TasksCommand::Retry { .. } | TasksCommand::Cancel { .. } => {
            println!(
                "task {} ({}): {}",
                s(&output["task_id"]),
                s(&output["connector"]),
                s(&output["state"])
            );
        }
        TasksCommand::Replay { .. } => {
            println!(
                "{}: {} ({} new task(s), {} already in the log){}",
                s(&output["id"]),
                s(&output["outcome"]),
                s(&output["tasks_created"]),
                s(&output["duplicates"]),
                output["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            for t in output["tasks"].as_array().into_iter().flatten() {
                println!(
                    "  {} {} {}",
                    s(&t["task_id"]),
                    s(&t["connector"]),
                    if t["created"].as_bool() == Some(true) {
                        "created"
                    } else {
                        "already there"
                    }
                );
            }
        }
        TasksCommand::Pause { .. } | TasksCommand::Resume { .. } => {
            println!(
                "connector {}: {}",
                s(&output["name"]),
                if output["paused"].as_bool() == Some(true) {
                    "paused"
                } else {
                    "delivering"
                }
            );
        }
        TasksCommand::Show { .. } | TasksCommand::ShowRejected { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(output).unwrap_or_default()
            );
        }
    }
}

/// A minimal HTTP/1.1 client for the admin API (plain `http://`; put TLS in front of the
/// bridge with a proxy and call the proxy's plain side, or use curl).
pub struct ApiClient {
    host: String,
    port: u16,
    prefix: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for `url` (`http://host:port[/prefix]`).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<ApiClient> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow!("--api {url}: give an http:// URL such as http://127.0.0.1:9464")
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| anyhow!("--api {url}: `{p}` is not a port"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            bail!("--api {url}: no host");
        }
        Ok(ApiClient {
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
            token,
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call("POST", path, body)
    }

    /// Sends one request; a 4xx or 5xx answer becomes an error with the API's message.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.prefix,
            self.host,
            self.port,
            body.len()
        );
        if !body.is_empty() {
            headers.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.token {
            headers.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        headers.push_str("\r\n");
        let (status, text) =
            http_exchange(&self.host, self.port, headers.as_bytes(), body.as_bytes())
                .with_context(|| {
                    format!("calling the bridge at http://{}:{}", self.host, self.port)
                })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status >= 400 {
            let message = value["error"].as_str().unwrap_or(text.trim());
            let hint = if status == 401 || status == 403 {
                format!(" (pass the admin token with --token or {ADMIN_TOKEN_ENV})")
            } else {
                String::new()
            };
            bail!("{status}: {message}{hint}");
        }
        Ok(value)
    }
}

/// One HTTP exchange on a fresh connection; returns the status and the (de-chunked) body.
pub fn http_exchange(
    host: &str,
    port: u16,
    head: &[u8],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("{host} does not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(head)?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response"))?;
    let Some(split) = text.find("\r\n\r\n") else {
        return Ok((status, String::new()));
    };
    let (head, rest) = text.split_at(split + 4);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(line_end) = rest.find("\r\n") {
        let size = usize::from_str_radix(rest[..line_end].trim(), 16).unwrap_or(0);
        let start = line_end + 2;
        if size == 0 || start + size > rest.len() {
            break;
        }
        out.push_str(&rest[start..start + size]);
        rest = rest.get(start + size + 2..).unwrap_or("");
    }
    out
}

/// `polaris-bridge health`: exit 0 when `url` answers 200 (for container healthchecks).
pub fn health(url: &str) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(url, None)?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        if client.prefix.is_empty() {
            "/"
        } else {
            &client.prefix
        },
        client.host,
        client.port
    );
    match http_exchange(&client.host, client.port, head.as_bytes(), b"") {
        Ok((200, body)) => {
            print!("{body}");
            Ok(ExitCode::SUCCESS)
        }
        Ok((status, body)) => {
            eprintln!("{status}: {}", body.trim());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("{url}: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `polaris-bridge store check`: verifies the store, prints a report; exit 1 on problems.
pub fn store_check(
    store: Option<&Path>,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let path = store_path(store, config)?
        .ok_or_else(|| anyhow!("say which store: --path DIR or --config FILE"))?;
    let log = open_offline(&path)?;
    let report = log.check()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("task log {}", path.display());
        println!(
            "  tasks: {} ({})",
            report.tasks,
            report
                .states
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  dedup index: {}  stored statuses: {}  rejected: {} (replayed {})",
            report.ids, report.statuses, report.rejected, report.replayed
        );
        println!(
            "  connectors: {}",
            report
                .connectors
                .iter()
                .map(|(k, v)| format!("{k} (#{v})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for w in &report.warnings {
            println!("  warning: {w}");
        }
        for p in &report.problems {
            println!("  PROBLEM: {p}");
        }
        if report.problems.is_empty() {
            println!(
                "ok: every record decodes and the indexes agree{}",
                if report.warnings.is_empty() {
                    ""
                } else {
                    " (see the warnings)"
                }
            );
        } else {
            println!(
                "{} problem(s): restore a backup, or move the directory aside to start empty",
                report.problems.len()
            );
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_and_encoding() {
        let c = ApiClient::new("http://127.0.0.1:9464/", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("127.0.0.1", 9464, "")
        );
        let c = ApiClient::new("http://bridge/admin", None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("bridge", 80, "/admin")
        );
        assert!(ApiClient::new("https://x", None).is_err());
        assert!(ApiClient::new("http://x:port", None).is_err());
        assert_eq!(enc("a b/*[x]"), "a%20b%2F%2A%5Bx%5D");
        assert_eq!(query(&[("a", None), ("b", Some("1 2".into()))]), "?b=1%202");
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
