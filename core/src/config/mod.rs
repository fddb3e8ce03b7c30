//! Pipeline files: parse, interpolate, validate the whole graph, and report
//! *every* problem with its component, field, line and column.
//!
//! ```
//! use spillway_core::config;
//! let yaml = "sources:\n  s: { type: nope }\n";
//! let errors = config::load_str(yaml, &|_| None, std::path::Path::new(".")).unwrap_err();
//! assert_eq!(errors[0].pos.line, 2);
//! ```

mod checks;
pub mod graph;
pub mod paths;
mod positions;
mod schemas;
pub mod units;
mod validate;
pub mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use crate::ledger::ComponentKind;
use crate::registry::AnyConfig;
use yaml::Pos;

pub use schemas::schema_difference;
pub use units::{BatchSize, ByteSize, HumanDuration};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file.
    pub pos: Pos,
    /// What it concerns: `sinks.archive`, `sinks.archive.rotate.max_rows`,
    /// or a top-level key.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.pos, self.path, self.message)
    }
}

/// Settings of the admin HTTP endpoint (`/metrics`, `/health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Loopback by default: the endpoint has no
    /// authentication, so exposing it is a deliberate choice.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// At a stop, how long the pipeline keeps receiving after
    /// `/health/ready` turned 503 (`draining`), before its sources stop:
    /// set it to the balancer's deregistration delay so no exporter is
    /// still sent here when the sockets close. 0 by default.
    #[serde(default)]
    pub drain_grace: HumanDuration,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// A component that passed validation.
#[derive(Debug)]
pub struct Component {
    /// Its name (the key in the file).
    pub name: String,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// Its `type`.
    pub type_name: &'static str,
    /// Its typed config.
    pub config: AnyConfig,
    /// The outputs it reads (empty for sources).
    pub inputs: Vec<OutputId>,
    /// The schema of its input (transforms and sinks).
    pub input_schema: Option<SchemaRef>,
    /// The schema of its output (sources and transforms).
    pub output_schema: Option<SchemaRef>,
    /// Its whole definition (type, fields, inputs, input schema) as text:
    /// equal fingerprints mean a reload can leave the component running.
    pub fingerprint: String,
    /// A sink's disk buffer.
    pub disk_buffer: Option<crate::disk_buffer::DiskBufferConfig>,
}

/// A validated pipeline, components in dependency order (every component
/// after all of its inputs).
#[derive(Debug)]
pub struct Pipeline {
    /// Components, in dependency order.
    pub components: Vec<Component>,
    /// The admin endpoint, if configured.
    pub admin: Option<AdminConfig>,
    /// Directory that relative paths resolve against (empty: the working
    /// directory).
    pub base_dir: PathBuf,
}

/// Reading a pipeline file failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("{} error(s) in {}", errors.len(), path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        errors: Vec<ConfigError>,
    },
}

/// Loads and validates a pipeline file, interpolating the process environment.
pub fn load_file(path: &Path) -> Result<Pipeline, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| LoadError::Invalid { path: path.to_path_buf(), errors: vec![utf8_error(&bytes, e)] })?;
    // Relative paths in a pipeline resolve against the working directory,
    // as for most command-line tools (Vector, Telegraf), not the file's.
    load_str(text, &|k| std::env::var(k).ok(), Path::new(""))
        .map_err(|errors| LoadError::Invalid { path: path.to_path_buf(), errors })
}

/// Where a file stops being UTF-8: the byte offset, and its line and column.
fn utf8_error(bytes: &[u8], e: std::str::Utf8Error) -> ConfigError {
    let at = e.valid_up_to();
    let before = &bytes[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let col = std::str::from_utf8(&before[start..]).map_or(at - start, |s| s.chars().count()) + 1;
    ConfigError {
        pos: Pos { line, col },
        path: "file".into(),
        message: format!("the file is not UTF-8: invalid byte 0x{:02x} at byte offset {at}", bytes[at]),
    }
}

pub(crate) const SECTIONS: [(&str, ComponentKind); 3] = [
    ("sources", ComponentKind::Source),
    ("transforms", ComponentKind::Transform),
    ("sinks", ComponentKind::Sink),
];
pub(crate) const TOP_LEVEL: [&str; 4] = ["sources", "transforms", "sinks", "admin"];

/// Loads and validates a pipeline from text.
pub fn load_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Result<Pipeline, Vec<ConfigError>> {
    let root = yaml::parse(text, env).map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError { pos: e.pos, path: "file".into(), message: e.message })
            .collect::<Vec<_>>()
    })?;
    let mut v = validate::Validator::default();
    let pipeline = v.pipeline(&root, base_dir);
    if v.errors.is_empty() {
        Ok(pipeline)
    } else {
        v.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
        Err(v.errors)
    }
}

/// An output of a component: its main one (`flows`) or a named one
/// (`flows.loss`). Parsed once, here; nothing else splits the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputId {
    /// The producing component.
    pub component: String,
    /// The named output, `None` for the main one.
    pub port: Option<String>,
}

impl OutputId {
    pub(crate) fn parse(text: &str) -> Self {
        let (c, p) = validate::split_input(text);
        Self { component: c.to_string(), port: p.map(str::to_string) }
    }

    /// The main output of `component`.
    pub fn main(component: &str) -> Self {
        Self { component: component.to_string(), port: None }
    }
}

impl fmt::Display for OutputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            Some(p) => write!(f, "{}.{p}", self.component),
            None => f.write_str(&self.component),
        }
    }
}

/// ` (did you mean `x`?)` when a candidate is close to `word`, else "".
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(did_you_mean("parquett", ["parquet", "file"].into_iter()), " (did you mean `parquet`?)");
        assert_eq!(did_you_mean("zzzzzz", ["parquet", "file"].into_iter()), "");
    }

    #[test]
    fn every_structural_problem_is_reported_at_once() {
        let yaml = "sourcez: {}\nsinks:\n  out:\n    type: blackhole\n    inputs: [nowhere]\n  x: 5\n";
        let errs = load_str(yaml, &|_| None, Path::new(".")).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.pos.line).collect();
        assert!(errs.iter().any(|e| e.message.contains("unknown top-level key `sourcez`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.message.contains("unknown input `nowhere`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.path == "sinks.x"), "{errs:?}");
        for line in [1, 5, 6] {
            assert!(lines.contains(&line), "no error on line {line}: {errs:?}");
        }
    }
}
