//! The `polaris-bridge` command line.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polaris_bridge::config::Config;
use polaris_bridge::{app, demo, metrics};
use polaris_bridge_api::codec::{self, WireFormat};
use polaris_bridge_api::event::EventType;

/// Apache Polaris catalog events from Kafka, made into durable, deduplicated work.
#[derive(Parser)]
#[command(name = "polaris-bridge", version, about)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "POLARIS_BRIDGE_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the bridge with a configuration file.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Runs the whole pipeline on an embedded Kafka cluster with sample events.
    Demo(demo::DemoArgs),
    /// Validates a configuration file and prints what it sets up.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Runs the connectors' healthchecks (polaris-notify: a VALIDATE notification; kafka:
    /// topic metadata; file: the directory) and prints each result; exit 1 if any fails.
    Healthcheck {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this connector (by name); default: all.
        #[arg(long)]
        connector: Option<String>,
    },
    /// Decodes one message and prints the event as JSON.
    Decode {
        /// `polaris-json`, `avro` or `auto`.
        #[arg(long, default_value = "auto")]
        format: String,
        /// The message value; `-` or absent reads standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The record key (the stock listener's key is the event id).
        #[arg(long)]
        key: Option<String>,
    },
    /// Prints the Avro schema of the event model.
    Schema,
    /// Lists the Polaris event types: name, code, category, phase.
    EventTypes,
    /// Inspects and acts on tasks and rejected messages: through a running bridge's admin API
    /// (`--api URL`), or offline on a stopped bridge's store (`--store DIR`, `--config FILE`).
    Tasks(Box<polaris_bridge::admin::cli::TasksArgs>),
    /// Maintenance of the task log.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Exits 0 when the bridge at URL answers 200 (a container healthcheck).
    Health {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9464/readyz")]
        url: String,
    },
    /// Purges one Iceberg table's files now, with the purge connector's executor (a table
    /// dropped without PURGE, or by hand). Prints a JSON summary on stdout.
    Purge(PurgeArgs),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Verifies a stopped bridge's task log: every record decodes, the indexes agree. Exit 1
    /// when it finds problems.
    Check {
        /// The sled directory.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The store named by this configuration file's `store.path`.
        #[arg(long, conflicts_with = "path")]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct PurgeArgs {
    /// The table's current metadata.json (s3://..., file:///..., /path, gs://..., abfss://...).
    #[arg(long)]
    metadata_location: String,
    /// List what would be deleted (tab-separated kind, size, location on stdout); delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take the settings (S3, batches, rate limits, allowed prefixes) of the `purge`
    /// connector in this bridge configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Which `purge` connector of the configuration, when it has several.
    #[arg(long)]
    connector: Option<String>,
}

/// mimalloc instead of the system allocator (the default `mimalloc` feature): about 1.6x the
/// events/s end to end and 1.5x the webhook deliveries/s, at the same peak RSS once its
/// transparent huge pages are off (BENCHMARKS.md). `--no-default-features` leaves it out.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    polaris_bridge::allocator::purge_freed_memory_soon();
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    // A corrupt length prefix in an Avro message must not allocate more than this.
    codec::avro::limit_allocations(16 << 20);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(run(config))
        }
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::CheckConfig { file } => check_config(&file),
        Command::Healthcheck { config, connector } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(healthcheck(&config, connector.as_deref()))
        }
        Command::Decode { format, file, key } => decode(&format, file, key),
        Command::Schema => {
            println!("{}", codec::AVRO_SCHEMA_JSON.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks(args) => polaris_bridge::admin::cli::run_tasks(*args),
        Command::Store {
            command: StoreCommand::Check { path, config, json },
        } => polaris_bridge::admin::cli::store_check(path.as_deref(), config.as_deref(), json),
        Command::Health { url } => polaris_bridge::admin::cli::health(&url),
        Command::Purge(args) => runtime()?.block_on(purge(args)),
        Command::EventTypes => {
            for t in EventType::known() {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.name(),
                    t.code().map(|c| c.to_string()).unwrap_or_default(),
                    t.category().map(|c| c.name()).unwrap_or_default(),
                    t.phase().map(|p| p.name()).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let handle = metrics::install().context("cannot install the metrics recorder")?;
    let mut bridge = app::start(&config, handle).await?;
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down: a second signal exits at once");
            tokio::spawn(async {
                shutdown_signal().await;
                eprintln!("second signal: exiting now (the task log recovers on restart)");
                std::process::exit(130);
            });
            bridge.stop().await?;
            Ok(ExitCode::SUCCESS)
        }
        error = bridge.source_failed() => {
            let _ = bridge.stop().await;
            Err(error.into())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the bridge");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for spec in config.connector_specs()? {
        if let Err(e) = polaris_bridge::connectors::build(&spec) {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let token = match config
        .http
        .admin_token(std::env::var(polaris_bridge::config::ADMIN_TOKEN_ENV).ok())
    {
        Ok(token) => token,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{}: ok", file.display());
    println!(
        "  kafka: {} (group {})",
        config.kafka.bootstrap_servers, config.kafka.group_id
    );
    for topic in &config.topics {
        println!("  topic {} ({})", topic.name, topic.format.0);
    }
    println!("  store: {}", config.store.path.display());
    if config.http.disabled {
        println!("  http: disabled");
    } else {
        println!(
            "  http: {} (admin API {})",
            config.http.listen,
            if token.is_some() {
                "enabled"
            } else {
                "disabled: no token"
            }
        );
    }
    for spec in config.connector_specs()? {
        let routes = config
            .routes
            .iter()
            .filter(|r| r.connector == spec.name)
            .count();
        println!(
            "  connector {} ({}): concurrency {}, max attempts {}, {} route(s)",
            spec.name, spec.kind, spec.concurrency, spec.retry.max_attempts, routes
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn healthcheck(config: &Config, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let specs = config.connector_specs()?;
    if let Some(name) = only {
        if !specs.iter().any(|s| s.name == name) {
            anyhow::bail!("no connector named `{name}` in the configuration");
        }
    }
    let mut failed = false;
    for spec in specs.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
        let connector = polaris_bridge::connectors::build(spec)?;
        match connector.healthcheck().await {
            Ok(()) => println!("{} ({}): ok", spec.name, spec.kind),
            Err(e) => {
                failed = true;
                println!("{} ({}): {e}", spec.name, spec.kind);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn purge(args: PurgeArgs) -> anyhow::Result<ExitCode> {
    use polaris_bridge_purge::{executor, PurgeConfig, PurgeOutcome, PurgeRequest, Purger};
    use serde::Deserialize;

    let settings = match &args.config {
        None => PurgeConfig::default(),
        Some(path) => {
            let config = Config::load(path)?;
            let specs: Vec<_> = config
                .connector_specs()?
                .into_iter()
                .filter(|s| s.kind == "purge")
                .filter(|s| args.connector.as_ref().is_none_or(|n| *n == s.name))
                .collect();
            let [spec] = &specs[..] else {
                anyhow::bail!(
                    "{} has {} purge connector(s){}: name one with --connector",
                    path.display(),
                    specs.len(),
                    args.connector
                        .as_ref()
                        .map(|n| format!(" named `{n}`"))
                        .unwrap_or_default()
                );
            };
            PurgeConfig::deserialize(toml::Value::Table(spec.settings.clone()))
                .with_context(|| format!("connectors.{}", spec.name))?
        }
    };
    let problems = settings.validate();
    if let Some(p) = problems.first() {
        anyhow::bail!("purge setting `{}` {}", p.key, p.problem);
    }
    let dry_run = args.dry_run || settings.dry_run;
    let purger = Purger::new(settings, "cli");
    let request = PurgeRequest {
        metadata_location: args.metadata_location.clone(),
        dry_run,
        ..PurgeRequest::default()
    };
    struct Listing;
    impl executor::Progress for Listing {
        fn save(&mut self, _: &polaris_bridge_purge::Checkpoint) -> Result<(), String> {
            Ok(())
        }
        fn would_delete(&mut self, kind: executor::FileKind, location: &str, size: u64) {
            println!("{}\t{size}\t{location}", kind.name());
        }
    }
    let (outcome, checkpoint) = match purger.purge(&request, &mut Listing).await {
        Ok(PurgeOutcome::Purged(cp)) if dry_run => ("dry_run", cp),
        Ok(PurgeOutcome::Purged(cp)) => ("purged", cp),
        Ok(PurgeOutcome::MetadataGone(cp)) => {
            eprintln!(
                "error: metadata file {} not found: nothing to purge",
                args.metadata_location
            );
            println!(
                "{}",
                serde_json::json!({"outcome": "metadata_not_found", "stats": cp.stats})
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(PurgeOutcome::AlreadyDone(cp)) => ("already_done", cp),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let s = &checkpoint.stats;
    eprintln!(
        "{}: {} files, {} bytes, {} requests, {} failures, {} ms",
        if dry_run { "would delete" } else { "deleted" },
        s.files_deleted,
        s.bytes_deleted,
        s.requests,
        s.failures,
        s.duration_ms
    );
    println!(
        "{}",
        serde_json::json!({"outcome": outcome, "stats": checkpoint.stats})
    );
    Ok(ExitCode::SUCCESS)
}

fn decode(format: &str, file: Option<PathBuf>, key: Option<String>) -> anyhow::Result<ExitCode> {
    let format: WireFormat = format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let mut value = Vec::new();
    match file.as_deref() {
        None => std::io::stdin()
            .read_to_end(&mut value)
            .context("reading standard input")?,
        Some(p) if p.as_os_str() == "-" => std::io::stdin()
            .read_to_end(&mut value)
            .context("reading standard input")?,
        Some(p) => {
            value = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            value.len()
        }
    };
    match codec::decode(format, key.as_deref().map(str::as_bytes), &value) {
        Ok(event) => {
            println!("{}", serde_json::to_string_pretty(&event)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("cannot decode ({}): {e}", e.kind());
            Ok(ExitCode::FAILURE)
        }
    }
}
