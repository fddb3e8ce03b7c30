//! The `spillway` command: run, validate and inspect pipelines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use spillway_core::config::{self, LoadError};
use spillway_core::ledger::render_table;
use spillway_core::registry;
use spillway_core::topology::{RunOptions, Topology};

// Linking a plugin crate is what registers its components.
use spillway_debug as _;
use spillway_parquet as _;

/// Exit status for an invalid pipeline file, distinct from runtime failures (1).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(name = "spillway", version, about = "A stream-processing engine for network telemetry.")]
#[command(long_about = "A stream-processing engine for network telemetry.\n\n\
A pipeline file (YAML) wires sources through transforms into sinks. Every record is \
accounted for in a ledger printed at shutdown: received = delivered + dropped (by reason).")]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `spillway_parquet=debug`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its sources end or SIGINT/SIGTERM (a second signal exits at once).
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Also write the final ledger as JSON to this file.
        #[arg(long)]
        ledger_json: Option<PathBuf>,
        /// Capacity of each component's input channel, in rows.
        #[arg(long, default_value_t = spillway_core::topology::DEFAULT_CHANNEL_ROWS)]
        channel_rows: u32,
    },
    /// Check a pipeline file and report every problem with its line and column.
    Validate {
        /// The pipeline file.
        file: PathBuf,
    },
    /// List every available component with its description and example config.
    Plugins {
        /// Machine-readable output.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// The component reference as Markdown (what docs/components.md holds).
        #[arg(long)]
        markdown: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    match cli.command {
        Command::Run { file, ledger_json, channel_rows } => run(&file, ledger_json, channel_rows),
        Command::Validate { file } => match load(&file) {
            Ok(p) => {
                println!("{}: ok ({} components)", file.display(), p.components.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Plugins { json, markdown } => {
            if markdown {
                print!("{}", markdown_reference());
            } else {
                plugins(json);
            }
            ExitCode::SUCCESS
        }
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn load(file: &std::path::Path) -> Result<config::Pipeline, ExitCode> {
    match config::load_file(file) {
        Ok(p) => Ok(p),
        Err(LoadError::Invalid { path, errors }) => {
            for e in &errors {
                eprintln!("{}:{e}", path.display());
            }
            eprintln!("{}: {} error(s); nothing was started", path.display(), errors.len());
            Err(ExitCode::from(EXIT_CONFIG))
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn run(file: &std::path::Path, ledger_json: Option<PathBuf>, channel_rows: u32) -> ExitCode {
    let pipeline = match load(file) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let topology = match Topology::build(pipeline, RunOptions { channel_rows }) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the pipeline could not be built");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(async {
        let shutdown = spillway_core::component::Shutdown::new();
        tokio::spawn(signals(shutdown.clone()));
        tracing::info!(file = %file.display(), "pipeline started");
        topology.run(shutdown).await
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the pipeline could not start");
            return ExitCode::FAILURE;
        }
    };
    eprint!("\nledger\n{}", render_table(&report.ledger));
    for i in &report.imbalances {
        eprintln!("ledger imbalance: {i}");
    }
    if let Some(path) = ledger_json {
        let doc = serde_json::json!({
            "components": report.ledger,
            "failures": report.failures.iter().map(|(c, e)| serde_json::json!({"component": c, "error": e})).collect::<Vec<_>>(),
            "imbalances": report.imbalances,
        });
        if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default()) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the ledger file");
            return ExitCode::FAILURE;
        }
    }
    if report.failures.is_empty() && report.imbalances.is_empty() {
        tracing::info!("pipeline finished; every record is accounted for");
        ExitCode::SUCCESS
    } else {
        for (c, e) in &report.failures {
            tracing::error!(component = %c, error = %e, "pipeline finished with a failed component");
        }
        ExitCode::FAILURE
    }
}

/// First SIGINT/SIGTERM: graceful stop. Second: exit at once.
async fn signals(shutdown: spillway_core::component::Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::error!("cannot install signal handlers; stop the pipeline with SIGKILL");
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    tracing::info!("signal received: draining in-flight records; send it again to exit immediately");
    shutdown.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    tracing::warn!("second signal: exiting immediately; records in flight are not flushed");
    std::process::exit(130);
}

fn plugins(json: bool) {
    let all = registry::all();
    if json {
        let list: Vec<_> = all
            .iter()
            .map(|r| {
                serde_json::json!({
                    "kind": r.kind.as_str(),
                    "name": r.name,
                    "description": r.description,
                    "example": r.example,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        return;
    }
    let mut kind = None;
    for r in all {
        if kind != Some(r.kind) {
            println!("{}s:", r.kind.as_str());
            kind = Some(r.kind);
        }
        println!("  {:<12} {}", r.name, r.description);
        for line in r.example.lines() {
            println!("      {line}");
        }
    }
}

/// The component reference in docs/components.md, generated from the
/// registry so that the docs cannot drift from the code (a test compares).
fn markdown_reference() -> String {
    let mut out = String::from(
        "# Component reference\n\n\
         Generated by `spillway plugins --markdown` from the component registry; \
         a test fails when this file and the registry differ.\n\
         Field-by-field documentation lives on each config struct (`cargo doc`).\n",
    );
    let mut kind = None;
    for r in registry::all() {
        if kind != Some(r.kind) {
            out.push_str(&format!("\n## {}s\n", r.kind.as_str()));
            kind = Some(r.kind);
        }
        out.push_str(&format!("\n### `{}`\n\n{}\n\n```yaml\n{}```\n", r.name, r.description, r.example));
    }
    out
}
