//! The `spillway` command: run, validate and inspect pipelines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod plugin_cmd;
mod top;
use spillway_core::config::{self, LoadError};
use spillway_core::ledger::render_table;
use spillway_core::registry;
use spillway_core::topology::{RunOptions, Topology};

// Linking a plugin crate is what registers its components.
use spillway_debug as _;
use spillway_kafka as _;
use spillway_netflow as _;
use spillway_parquet as _;
use spillway_snmp as _;
use spillway_transforms as _;

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
enum GraphFormat {
    Mermaid,
    Dot,
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
        /// Exit with status 3 when records were lost (dropped for any reason
        /// other than filtering or sampling): for cron-style backfills.
        #[arg(long)]
        strict: bool,
    },
    /// Check a pipeline file and report every problem with its line and column.
    Validate {
        /// The pipeline file.
        file: PathBuf,
    },
    /// The quickstart: pipelines/quickstart.yaml (NetFlow over UDP → hourly Parquet),
    /// fed by the built-in generator, then stopped gracefully with the ledger printed.
    Quickstart {
        /// Records to generate (a mix of NetFlow v5, v9 and IPFIX).
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Records per second.
        #[arg(long, default_value_t = 250_000)]
        rate: u64,
        /// Where the collector listens.
        #[arg(long, default_value = "127.0.0.1:2055")]
        listen: std::net::SocketAddr,
        /// Where the Parquet files go.
        #[arg(long, default_value = "./data/flows")]
        out: PathBuf,
    },
    /// Generate test traffic.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Print a pipeline's graph as Mermaid (default) or Graphviz DOT.
    Graph {
        /// The pipeline file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Create or try WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        what: PluginCmd,
    },
    /// A live terminal view of a running pipeline (its admin endpoint): components with
    /// rates and drops, exporters with rates and sequence loss. `q` quits.
    Top {
        /// The pipeline's admin endpoint (`admin:` in the pipeline file).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
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

#[derive(Subcommand)]
enum PluginCmd {
    /// Create a plugin crate (spillway-sdk) that builds with `cargo build --target
    /// wasm32-unknown-unknown` or, offline, with Debian's rustc-web.
    New {
        /// The crate's name.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to spillway-sdk (default: this build's source tree, else crates.io).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a plugin on sample records (JSON lines, as the `file` sink writes them)
    /// and print what it returns.
    Test {
        /// The plugin's .wasm file.
        module: PathBuf,
        /// The records (`-` for stdin).
        #[arg(long)]
        input: PathBuf,
        /// The plugin's config as JSON, or @FILE.
        #[arg(long)]
        config: Option<String>,
        /// Deadline of the call.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Memory cap in MiB.
        #[arg(long, default_value_t = 256)]
        memory_mib: usize,
    },
}

#[derive(Subcommand)]
enum Generate {
    /// Send real NetFlow v5/v9/IPFIX over UDP and print exact totals.
    Netflow {
        /// Collector address.
        #[arg(long, default_value = "127.0.0.1:2055")]
        target: std::net::SocketAddr,
        /// Protocol version: 5, 9 or 10 (IPFIX).
        #[arg(long, default_value_t = 9)]
        version: u16,
        /// Distinct exporters, each sending from its own 127.x.y.z address.
        #[arg(long, default_value_t = 10)]
        exporters: u32,
        /// Records per second over all exporters (unlimited when absent).
        #[arg(long)]
        rate: Option<u64>,
        /// Records to send.
        #[arg(long)]
        count: Option<u64>,
        /// How long to send (e.g. `30s`).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Records per packet (v5 allows at most 30).
        #[arg(long, default_value_t = 30)]
        records_per_packet: usize,
        /// Resend templates every this many packets per exporter.
        #[arg(long, default_value_t = 20)]
        template_refresh: u32,
        /// Send templates (and sampling options) once per exporter, in a
        /// round before any data, then pause this long, then data only
        /// (e.g. `500ms`).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "no_templates")]
        templates_once: Option<std::time::Duration>,
        /// Never send templates: for a collector that knows them already.
        #[arg(long)]
        no_templates: bool,
        /// Announce sampling in options data: exporter i announces 1 in
        /// RATE << (i % 4). Sent with --templates-once.
        #[arg(long, requires = "templates_once")]
        sampling_rate: Option<u32>,
        /// Send the options from a second source port of each exporter.
        #[arg(long, requires = "sampling_rate")]
        options_from_second_port: bool,
        /// Seed of the record values.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the totals as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    raise_open_files_limit();
    match cli.command {
        Command::Run { file, ledger_json, channel_rows, strict } => {
            run(&file, ledger_json, channel_rows, strict)
        }
        Command::Validate { file } => match load(&file) {
            Ok(p) => {
                println!("{}: ok ({} components)", file.display(), p.components.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Generate { what } => generate(what),
        Command::Graph { file, format } => match load(&file) {
            Ok(p) => {
                let format = match format {
                    GraphFormat::Mermaid => config::graph::GraphFormat::Mermaid,
                    GraphFormat::Dot => config::graph::GraphFormat::Dot,
                };
                print!("{}", config::graph::render(&p, format));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Quickstart { records, rate, listen, out } => quickstart(records, rate, listen, out),
        Command::Top { admin } => match top::run(admin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spillway top: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Plugin { what: PluginCmd::New { name, dir, sdk } } => plugin_cmd::new(&name, dir, sdk),
        Command::Plugin { what: PluginCmd::Test { module, input, config, timeout, memory_mib } } => {
            plugin_cmd::test(
                &module,
                config,
                &input,
                spillway_wasm::Limits { timeout, memory: memory_mib << 20 },
            )
        }
        Command::Plugins { json, markdown } => {
            if markdown {
                print!("{}", registry::reference_markdown());
            } else {
                plugins(json);
            }
            ExitCode::SUCCESS
        }
    }
}

/// Raises the open-files limit to the hard limit, once for the process:
/// collectors, kept SNMP sessions and generators with many exporters each
/// hold a socket per peer.
fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colours only on a terminal: logs piped to a file or journald stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
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

/// Exit status of `run --strict` when records were lost.
const EXIT_LOSS: u8 = 3;

fn run(file: &std::path::Path, ledger_json: Option<PathBuf>, channel_rows: u32, strict: bool) -> ExitCode {
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
        let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(signals(shutdown.clone()));
        tokio::spawn(reload_on_hangup(file.to_path_buf(), reload_tx));
        tracing::info!(file = %file.display(), "pipeline started");
        topology.run_with_reloads(shutdown, Some(reloads)).await
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the pipeline could not start");
            return ExitCode::FAILURE;
        }
    };
    // Written without panicking: stderr may be gone (a closed pipe) by now.
    {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\nledger\n{}", render_table(&report.ledger));
        for i in &report.imbalances {
            let _ = writeln!(err, "ledger imbalance: {i}");
        }
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
    let lost = losses(&report.ledger);
    if !lost.is_empty() {
        let total: u64 = lost.iter().map(|(_, n)| n).sum();
        let by_reason: Vec<String> = lost.iter().map(|(r, n)| format!("{n} {r}")).collect();
        tracing::warn!(
            records = total,
            reasons = %by_reason.join(", "),
            "records were lost (dropped for reasons other than filtering or sampling); the ledger above says where"
        );
    }
    if report.failures.is_empty() && report.imbalances.is_empty() {
        tracing::info!("pipeline finished; every record is accounted for");
        if strict && !lost.is_empty() {
            return ExitCode::from(EXIT_LOSS);
        }
        ExitCode::SUCCESS
    } else {
        for (c, e) in &report.failures {
            tracing::error!(component = %c, error = %e, "pipeline finished with a failed component");
        }
        ExitCode::FAILURE
    }
}

/// Records dropped for reasons other than the pipeline's intent (filtering,
/// sampling), summed over components, by reason.
fn losses(ledger: &[spillway_core::ledger::LedgerEntry]) -> Vec<(String, u64)> {
    use spillway_core::ledger::DropReason;
    let intended = [DropReason::Filtered.as_str(), DropReason::SampledOut.as_str()];
    let mut by: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for e in ledger {
        for (reason, n) in &e.dropped {
            if !intended.contains(&reason.as_str()) {
                *by.entry(reason.clone()).or_default() += n;
            }
        }
    }
    by.into_iter().collect()
}

/// SIGHUP: reads the pipeline file again. An invalid file is logged with
/// every error and changes nothing; a valid one is handed to the runner,
/// which replaces what changed in place.
async fn reload_on_hangup(file: PathBuf, reloads: tokio::sync::mpsc::UnboundedSender<config::Pipeline>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reloads are not possible");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(file = %file.display(), "SIGHUP: reloading the pipeline file");
        match config::load_file(&file) {
            Ok(p) => {
                if reloads.send(p).is_err() {
                    return;
                }
            }
            Err(LoadError::Invalid { path, errors }) => {
                for e in &errors {
                    tracing::error!(error = %format!("{}:{e}", path.display()), "reload refused: the pipeline file is invalid");
                }
                tracing::error!(
                    errors = errors.len(),
                    "reload refused; the running pipeline continues unchanged"
                );
            }
            Err(e) => tracing::error!(error = %e, "reload refused; the running pipeline continues unchanged"),
        }
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

fn generate(what: Generate) -> ExitCode {
    let Generate::Netflow {
        target,
        version,
        exporters,
        rate,
        count,
        duration,
        records_per_packet,
        template_refresh,
        templates_once,
        no_templates,
        sampling_rate,
        options_from_second_port,
        seed,
        json,
    } = what;
    let templates = match (templates_once, no_templates) {
        (Some(announce_pause), _) => spillway_netflow::generate::Templates::Once { announce_pause },
        (None, true) => spillway_netflow::generate::Templates::Never,
        (None, false) => spillway_netflow::generate::Templates::Refreshed,
    };
    let opts = spillway_netflow::generate::Options {
        target,
        version,
        exporters,
        rate,
        count,
        duration,
        records_per_packet,
        template_refresh,
        templates,
        sampling_rate,
        options_from_second_port,
        seed,
    };
    let started = std::time::Instant::now();
    // Progress on a terminal only: piped or redirected, stderr stays clean.
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let style = match count {
            Some(_) => "{spinner} sending [{bar:40}] {human_pos}/{human_len} records ({per_sec}, {eta} left)",
            None => "{spinner} sending {human_pos} records ({per_sec}, {elapsed})",
        };
        let b = indicatif::ProgressBar::new(count.unwrap_or(0));
        if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
            b.set_style(s.progress_chars("=> "));
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let result = spillway_netflow::generate::run_paced(&opts, &mut |records| bar.set_position(records));
    bar.finish_and_clear();
    match result {
        Ok(t) => {
            let secs = started.elapsed().as_secs_f64();
            if json {
                println!("{}", serde_json::to_string(&t).unwrap_or_default());
            } else {
                println!(
                    "sent {} packets, {} records (sum of bytes {}, sum of packets {}) to {target} in {secs:.2}s ({:.0} records/s)",
                    t.packets,
                    t.records,
                    t.sum_bytes,
                    t.sum_packets,
                    t.records as f64 / secs.max(1e-9)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("generate netflow: {e}");
            ExitCode::FAILURE
        }
    }
}

fn quickstart(records: u64, rate: u64, listen: std::net::SocketAddr, out: PathBuf) -> ExitCode {
    use spillway_netflow::quickstart;
    let env = |k: &str| match k {
        "QUICKSTART_LISTEN" => Some(listen.to_string()),
        "QUICKSTART_OUT" => Some(out.display().to_string()),
        _ => std::env::var(k).ok(),
    };
    let pipeline = match config::load_str(quickstart::PIPELINE, &env, std::path::Path::new("")) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("pipelines/quickstart.yaml:{e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let topology = match Topology::build(pipeline, RunOptions::default()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the quickstart pipeline could not be built");
            return ExitCode::FAILURE;
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return ExitCode::FAILURE;
    };
    let quickstart::Outcome { sent, report } = runtime.block_on(async move {
        let shutdown = spillway_core::component::Shutdown::new();
        tokio::spawn(signals(shutdown.clone()));
        quickstart::run(topology, listen, records, rate, shutdown).await
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "quickstart");
            return ExitCode::FAILURE;
        }
    };
    eprint!("\nledger\n{}", render_table(&report.ledger));
    let delivered: u64 = report.ledger.iter().filter(|e| e.component == "archive").map(|e| e.delivered).sum();
    match sent {
        Ok(t) => {
            println!(
                "\nthe generator sent {} records in {} datagrams (sum of bytes {}); {} are in Parquet under {}",
                t.records,
                t.packets,
                t.sum_bytes,
                delivered,
                out.display()
            );
            println!(
                "query them: duckdb -c \"select flow_version, count(*), sum(bytes) from read_parquet('{}/**/*.parquet', hive_partitioning=true) group by 1\"",
                out.display()
            );
            if report.failures.is_empty() && report.imbalances.is_empty() && delivered == t.records {
                ExitCode::SUCCESS
            } else {
                eprintln!("not every generated record was delivered: see the ledger above");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}
