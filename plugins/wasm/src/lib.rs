//! `wasm` transform: runs a WebAssembly plugin (built with `spillway-sdk`,
//! or anything that speaks the ABI in docs/wasm-abi.md) on every batch, in
//! a sandbox.
//!
//! ```yaml
//! transforms:
//!   tagged:
//!     type: wasm
//!     inputs: [flows]
//!     module: plugins/customer_tag.wasm
//!     config: { customers: { "10.0.0.1": acme } }
//!     timeout: 100ms          # per call (epoch deadline)
//!     memory: 64MiB           # the plugin's linear memory at most
//! ```
//!
//! One wasmtime `Engine` per process; a module is compiled once (and kept
//! compiled on disk, keyed by its bytes and the engine's settings) and
//! pre-instantiated; each transform instance has its own `Store`. A trap, a
//! timeout, a memory overrun or a malformed answer fails that batch only:
//! it goes to the transform's `errors` output when one is read, otherwise
//! it is a counted drop (`plugin_error`) with the plugin's message; the
//! instance is recreated for the next batch. After `max_failures` failures
//! in a row the plugin is paused (batches fail fast) for `backoff`,
//! doubling up to `max_backoff`, and the log says so.

mod host;
pub mod scaffold;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::config::HumanDuration;
use spillway_core::config::units::ByteSize;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::Counter;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};

pub use host::{Failure, Limits, Plugin, PluginInstance, load};

/// Config of the `wasm` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// The `.wasm` file.
    pub module: PathBuf,
    /// The plugin's own config, handed to it as JSON at init.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Longest a call may run.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Most linear memory the plugin may have.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Failures in a row before the plugin is paused.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// First pause; doubled while failures continue after it.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_memory() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_failures() -> u32 {
    5
}
fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl WasmConfig {
    fn limits(&self) -> Limits {
        Limits { timeout: self.timeout.get(), memory: self.memory.get() as usize }
    }

    fn config_json(&self) -> Vec<u8> {
        let v = if self.config.is_null() { serde_json::json!({}) } else { self.config.clone() };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Loads the module and runs `init` once for `input`: the output schema.
    fn probe(&self, input: &SchemaRef) -> Result<(Arc<Plugin>, SchemaRef), String> {
        let plugin = load(&self.module, self.limits()).map_err(|e| e.to_string())?;
        let (_, schema) = plugin.instantiate(&self.config_json(), input).map_err(|e| e.to_string())?;
        Ok((plugin, schema))
    }
}

/// The `errors` output: the failed batch's records plus the error.
fn errors_schema(input: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("plugin_error", DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

impl TransformConfig for WasmConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.timeout.get() < Duration::from_millis(1) {
            v.push(FieldIssue::new("timeout", "must be at least 1ms"));
        }
        if self.memory.get() < 1 << 20 {
            v.push(FieldIssue::new("memory", "must be at least 1MiB"));
        }
        if self.max_failures == 0 {
            v.push(FieldIssue::new("max_failures", "must be at least 1"));
        }
        if !self.config.is_null() && !self.config.is_object() {
            v.push(FieldIssue::new("config", "must be a mapping"));
        }
        // Load now (compiled once per process): a missing file, a wrong ABI
        // or missing exports are config errors, reported before anything runs.
        if v.is_empty()
            && let Err(e) = load(&self.module, self.limits())
        {
            v.push(FieldIssue::new("module", e.to_string()));
        }
        v
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        self.probe(input).map(|(_, s)| s).map_err(|e| vec![FieldIssue::new("module", e)])
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["errors"]
    }

    fn named_output_schema(&self, _name: &str, input: &SchemaRef) -> SchemaRef {
        errors_schema(input)
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let (plugin, output) = self.probe(input).map_err(BuildError)?;
        Ok(Box::new(Wasm {
            name: cx.name.clone(),
            plugin,
            config: self.config_json(),
            input: input.clone(),
            output,
            errors: errors_schema(input),
            live: None,
            failures: 0,
            paused_until: None,
            backoff: self.backoff.get(),
            cfg: self.clone(),
            m_failures: cx.metrics.counter("spillway_wasm_failures_total", "Batches a plugin failed on."),
            m_restarts: cx.metrics.counter("spillway_wasm_restarts_total", "Plugin instances recreated."),
            m_paused: cx.metrics.counter("spillway_wasm_pauses_total", "Times a plugin was paused."),
        }))
    }
}

spillway_core::register_transform! {
    config: WasmConfig,
    name: "wasm",
    description: "Runs a WebAssembly plugin (spillway-sdk) on each batch, sandboxed: deadline, memory cap, failures isolated.",
    example: "type: wasm\ninputs: [flows]\nmodule: plugins/customer_tag.wasm\nconfig: { customers: { \"10.0.0.1\": acme } }\ntimeout: 100ms\nmemory: 64MiB\n",
}

struct Wasm {
    name: String,
    plugin: Arc<Plugin>,
    config: Vec<u8>,
    input: SchemaRef,
    output: SchemaRef,
    errors: SchemaRef,
    live: Option<PluginInstance>,
    failures: u32,
    paused_until: Option<Instant>,
    backoff: Duration,
    cfg: WasmConfig,
    m_failures: Counter,
    m_restarts: Counter,
    m_paused: Counter,
}

impl Wasm {
    fn call(&mut self, data: &RecordBatch) -> Result<RecordBatch, Failure> {
        if self.live.is_none() {
            let (inst, schema) = self.plugin.instantiate(&self.config, &self.input)?;
            if schema != self.output {
                return Err(Failure::Malformed(format!(
                    "after a restart the plugin declares another output schema ({schema:?})"
                )));
            }
            self.live = Some(inst);
        }
        let inst = self.live.as_mut().expect("set above");
        let out = inst.process(data)?;
        if out.schema() != self.output {
            return Err(Failure::Malformed(format!(
                "the plugin returned a batch whose schema is not the one it declared at init: {}",
                spillway_core::config::schema_difference(&self.output, &out.schema()).unwrap_or_default()
            )));
        }
        Ok(out)
    }

    fn fail(&mut self, batch: spillway_core::Batch, message: String, out: &mut Emitter) {
        let rows = batch.rows() as u64;
        self.m_failures.add(1);
        out.dropped(
            DropReason::PluginError,
            rows,
            &format_args!(
                "the plugin failed on a batch ({message}); to the errors output: {}",
                out.has_output("errors")
            ),
        );
        if out.has_output("errors") {
            let msg: ArrayRef = Arc::new(StringArray::from(vec![message.as_str(); batch.rows()]));
            let mut cols = batch.data.columns().to_vec();
            cols.push(msg);
            match RecordBatch::try_new(self.errors.clone(), cols) {
                Ok(d) => out.push_to("errors", batch.with_data(d)),
                Err(e) => {
                    tracing::error!(component = %self.name, error = %e, "cannot build the errors batch")
                }
            }
        }
    }
}

impl Transform for Wasm {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        if let Some(t) = self.paused_until {
            if Instant::now() < t {
                let msg = format!(
                    "plugin paused after {} failures in a row; retried in {:?}",
                    self.failures,
                    t.saturating_duration_since(Instant::now())
                );
                self.fail(batch, msg, out);
                return Ok(());
            }
            self.paused_until = None;
            tracing::info!(component = %self.name, "plugin pause over; trying it again");
        }
        // A call may run for up to `timeout`: let the runtime move other
        // tasks off this thread meanwhile.
        let result = host::blocking(|| self.call(&batch.data));
        match result {
            Ok(data) => {
                if self.failures > 0 {
                    tracing::info!(component = %self.name, after = self.failures, "plugin succeeded again");
                }
                self.failures = 0;
                self.backoff = self.cfg.backoff.get();
                let n_in = batch.rows() as u64;
                let n_out = data.num_rows() as u64;
                // A plugin that drops records counts them as filtered; one
                // that adds records makes them.
                if n_out < n_in {
                    out.dropped(DropReason::Filtered, n_in - n_out, &"the plugin filtered them out");
                } else if n_out > n_in {
                    out.created(n_out - n_in);
                }
                if n_out > 0 {
                    out.push(batch.with_data(data));
                }
            }
            Err(f) => {
                // The instance may be in any state: start afresh next time.
                if self.live.take().is_some() {
                    self.m_restarts.add(1);
                }
                self.failures += 1;
                let msg = f.to_string();
                self.fail(batch, msg, out);
                if self.failures >= self.cfg.max_failures {
                    self.m_paused.add(1);
                    self.paused_until = Some(Instant::now() + self.backoff);
                    tracing::error!(component = %self.name, failures = self.failures, pause = ?self.backoff, "plugin paused after failing repeatedly; batches meanwhile are counted as plugin errors");
                    self.backoff = (self.backoff * 2).min(self.cfg.max_backoff.get());
                }
            }
        }
        Ok(())
    }
}
