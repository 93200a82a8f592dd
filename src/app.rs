//! Wires the pipeline together: task log, connectors, dispatchers, source, HTTP server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::admin::api::Admin;
use crate::config::{Config, ConfigError};
use crate::connectors;
use crate::dispatch::{ConnectorControl, DispatchPolicy, Dispatcher};
use crate::http::{self, HttpState};
use crate::log::{now_ms, LogError, TaskLog};
use crate::metrics as m;
use crate::route::{RouteError, Router};
use crate::source::{Backlog, Pipeline, Source, SourceError, SourceStatus, Target};
use crate::table_lookup::TableLookup;

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A routing rule does not compile.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The task log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The Kafka source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The HTTP server failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// The table lookup cannot start.
    #[error(transparent)]
    Lookup(#[from] crate::table_lookup::LookupError),
    /// A background task ended unexpectedly.
    #[error("{0}")]
    Task(String),
}

/// A running bridge. Stop it with [`RunningBridge::stop`].
pub struct RunningBridge {
    /// The task log (for inspection: demo summaries, tests).
    pub log: Arc<TaskLog>,
    /// The source's state.
    pub source_status: Arc<SourceStatus>,
    /// Tells the source thread to stop polling.
    stop_source: Arc<AtomicBool>,
    /// Tells dispatchers, compaction and the HTTP server to stop.
    shutdown: watch::Sender<bool>,
    source_done: Option<oneshot::Receiver<Result<(), SourceError>>>,
    dispatchers: Vec<JoinHandle<Result<(), LogError>>>,
    background: Vec<JoinHandle<()>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    /// Where the HTTP server listens, when it runs.
    pub http_addr: Option<std::net::SocketAddr>,
    /// Pause and resume of each connector, by name.
    pub controls: Vec<(String, Arc<ConnectorControl>)>,
}

/// Starts the bridge described by `config`, with the admin API's token from the environment
/// or `http.admin_token_file`.
pub async fn start(config: &Config, metrics: PrometheusHandle) -> Result<RunningBridge, AppError> {
    let token = config
        .http
        .admin_token(std::env::var(crate::config::ADMIN_TOKEN_ENV).ok())?;
    start_with_token(config, metrics, token).await
}

/// Starts the bridge described by `config`; `admin_token` enables the admin API.
pub async fn start_with_token(
    config: &Config,
    metrics: PrometheusHandle,
    admin_token: Option<String>,
) -> Result<RunningBridge, AppError> {
    let specs = config.connector_specs()?;
    let mut built = Vec::with_capacity(specs.len());
    for spec in &specs {
        built.push(connectors::build(spec)?);
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let router = Router::new(&config.routes, &names)?;
    for name in &names {
        if !config.routes.iter().any(|r| &r.connector == name) {
            tracing::warn!(connector = %name, "no route sends events to this connector");
        }
    }

    let log = Arc::new(TaskLog::open(
        &config.store.path,
        config.store.cache_capacity_mb,
    )?);
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let backlog = Arc::new(Backlog::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut targets = Vec::with_capacity(specs.len());
    let mut dispatchers = Vec::with_capacity(specs.len());
    let mut controls = Vec::with_capacity(specs.len());
    for (spec, connector) in specs.iter().zip(built) {
        let connector_handle = connector.clone();
        let number = log.connector_number(&spec.name)?;
        let unfinished = log.count_unfinished(number)?;
        backlog.add(unfinished);
        let unfinished = Arc::new(AtomicU64::new(unfinished));
        let notify = Arc::new(Notify::new());
        let control = Arc::new(ConnectorControl::default());
        for metric in [m::TASKS_CREATED, m::TASKS_DEDUPLICATED, m::TASKS_SKIPPED] {
            counter!(metric, "connector" => spec.name.clone()).increment(0);
        }
        controls.push((spec.name.clone(), control.clone()));
        match connector.healthcheck().await {
            Ok(()) => tracing::info!(connector = %spec.name, kind = %spec.kind, "healthcheck ok"),
            Err(e) => {
                tracing::warn!(connector = %spec.name, error = %e, "healthcheck failed at startup; tasks wait and retry")
            }
        }
        let dispatcher = Dispatcher::new(
            spec.name.clone(),
            number,
            log.clone(),
            connector,
            DispatchPolicy {
                concurrency: spec.concurrency,
                retry: spec.retry.clone(),
                lease: config.dispatcher.lease,
                window: config.dispatcher.window,
                ordered: spec.ordered,
                drain_timeout: config.dispatcher.drain_timeout,
            },
            owner.clone(),
            notify.clone(),
            backlog.clone(),
            unfinished.clone(),
            control,
        );
        dispatchers.push(tokio::spawn(dispatcher.run(shutdown_rx.clone())));
        targets.push(Target {
            name: spec.name.clone(),
            connector: connector_handle,
            number,
            notify,
            unfinished,
        });
    }
    tracing::info!(store = %config.store.path.display(), backlog = backlog.get(), owner = %owner, "task log open");

    // Gauges that otherwise appear only on their first change, so dashboards show 0.
    gauge!(m::SOURCE_PAUSED).set(0.0);
    gauge!(m::ASSIGNED_PARTITIONS).set(0.0);
    gauge!(m::REJECTED_KEPT).set(log.rejected_len() as f64);
    gauge!(m::BACKLOG).set(backlog.get() as f64);

    let source_status = Arc::new(SourceStatus::default());
    let mut background = Vec::new();
    let mut pipeline = Pipeline::new(config, log.clone(), router, targets, backlog)?;
    if let Some(lookup) = &config.table_lookup {
        let (lookup, worker) = TableLookup::start(lookup, log.table_index()?, shutdown_rx.clone())?;
        pipeline = pipeline.with_table_lookup(lookup);
        background.push(worker);
    }
    let pipeline = Arc::new(pipeline);
    let source = Source::new(config, pipeline.clone(), source_status.clone())?;
    let stop_source = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = oneshot::channel();
    let stop_flag = stop_source.clone();
    std::thread::Builder::new()
        .name("polaris-bridge-source".into())
        .spawn(move || {
            let result = source.run(&stop_flag);
            if let Err(e) = &result {
                tracing::error!(error = %e, "source stopped");
            }
            let _ = done_tx.send(result);
        })?;

    background.push(tokio::spawn(compaction(
        log.clone(),
        config.store.retention,
        config.store.compaction_interval,
        shutdown_rx.clone(),
    )));
    let mut http_addr = None;
    let http = if config.http.disabled {
        None
    } else {
        let listener = http::bind(config.http.listen).await?;
        let addr = listener.local_addr()?;
        http_addr = Some(addr);
        if admin_token.is_none() {
            tracing::info!(listen = %addr, "http: /metrics /healthz /readyz (admin API disabled: no token configured)");
        } else {
            tracing::info!(listen = %addr, "http: /metrics /healthz /readyz /api/v1");
        }
        let state = HttpState {
            metrics: metrics.clone(),
            source: source_status.clone(),
            admin: Some(Arc::new(Admin {
                log: log.clone(),
                pipeline,
                controls: controls.clone(),
                token: admin_token,
            })),
        };
        background.push(tokio::spawn(upkeep(metrics, shutdown_rx.clone())));
        Some(tokio::spawn(http::serve(listener, state, shutdown_rx)))
    };
    Ok(RunningBridge {
        log,
        source_status,
        stop_source,
        shutdown,
        source_done: Some(done_rx),
        dispatchers,
        background,
        http,
        http_addr,
        controls,
    })
}

impl RunningBridge {
    /// Resolves when the source thread ends on its own (an error: it only stops when told).
    pub async fn source_failed(&mut self) -> AppError {
        match self.source_done.as_mut() {
            Some(rx) => {
                let result = rx.await;
                self.source_done = None;
                match result {
                    Ok(Err(e)) => AppError::Source(e),
                    Ok(Ok(())) => AppError::Task("the source stopped unexpectedly".into()),
                    Err(_) => AppError::Task("the source thread panicked".into()),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Stops consuming (flushing and committing), lets dispatchers drain within their timeout,
    /// flushes the log and stops the HTTP server.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.source_status.stopping.store(true, Ordering::Relaxed);
        self.stop_source.store(true, Ordering::Relaxed);
        let mut first_error = None;
        if let Some(rx) = self.source_done.take() {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_error = Some(AppError::Source(e)),
                Err(_) => first_error = Some(AppError::Task("the source thread panicked".into())),
            }
        }
        let _ = self.shutdown.send(true);
        for handle in self.dispatchers.drain(..) {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(AppError::Log(e));
                }
                Err(e) => {
                    first_error.get_or_insert(AppError::Task(format!("dispatcher: {e}")));
                }
            }
        }
        for handle in self.background.drain(..) {
            let _ = handle.await;
        }
        self.log.flush()?;
        if let Some(http) = self.http.take() {
            if let Ok(Err(e)) = http.await {
                first_error.get_or_insert(AppError::Http(e));
            }
        }
        tracing::info!("stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// Removes finished tasks older than the retention window, periodically.
async fn compaction(
    log: Arc<TaskLog>,
    retention: std::time::Duration,
    interval: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let cutoff = now_ms() - retention.as_millis() as i64;
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.compact(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                counter!(m::TASKS_COMPACTED).increment(n as u64);
                tracing::info!(removed = n, "compacted finished tasks past retention");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed"),
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }
}

/// Keeps the Prometheus histograms' windows rolling, and the C heap trimmed and measured.
async fn upkeep(metrics: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut c_heap = crate::c_heap::CHeap::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                metrics.run_upkeep();
                c_heap.upkeep();
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
