//! The component registry: one `inventory` registration per component.
//!
//! A plugin crate declares a typed config struct, implements one of
//! [`SourceConfig`], [`TransformConfig`] or [`SinkConfig`] for it, and
//! registers it once:
//!
//! ```
//! use spillway_core::component::Source;
//! use spillway_core::ledger::ComponentKind;
//! use spillway_core::registry::{self, BuildContext, BuildError, SourceConfig};
//!
//! /// Config of a source that exists only in this example.
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct NothingConfig {}
//!
//! impl SourceConfig for NothingConfig {
//!     fn output_schema(&self) -> arrow::datatypes::SchemaRef {
//!         spillway_core::schema::flow_schema()
//!     }
//!     fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
//!         Err(BuildError("this example source cannot run".into()))
//!     }
//! }
//!
//! spillway_core::register_source! {
//!     config: NothingConfig,
//!     name: "nothing",
//!     description: "A source that exists only in this example.",
//!     example: "type: nothing\n",
//! }
//!
//! assert!(registry::find(ComponentKind::Source, "nothing").is_some());
//! ```
//!
//! The registry is what `spillway plugins` lists, what the config loader
//! resolves `type:` against, and what the docs are checked against.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use serde::de::DeserializeOwned;

use crate::component::{Sink, Source, Transform};
use crate::ledger::ComponentKind;

/// A problem with one field of a component's config, found by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    /// Dotted path below the component (`rotate.max_rows`); empty for the
    /// component as a whole.
    pub field: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl FieldIssue {
    /// An issue with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A failure to turn a valid config into a running component (a directory
/// that cannot be created, a file that cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// What every component needs at build time.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The component's name in the pipeline file.
    pub name: String,
    /// The directory relative paths in the config are resolved against
    /// (empty: the working directory).
    pub base_dir: std::path::PathBuf,
    /// State components publish for others of the same pipeline (a `table`
    /// sink's rows, read by `enrich`), by component name. Components are
    /// built in dependency order, references included, so what a component
    /// references is published before it is built.
    pub shared: Shared,
    /// The component's own metric series (a transform registers its
    /// handles here; sources and sinks also get them in their context).
    pub metrics: crate::metrics::Metrics,
}

/// State shared between the components of one pipeline, by name.
pub type Shared =
    std::sync::Arc<std::sync::Mutex<HashMap<String, std::sync::Arc<dyn std::any::Any + Send + Sync>>>>;

impl BuildContext {
    /// A context for building `name` outside a pipeline (tests, benches).
    pub fn standalone(name: &str) -> Self {
        Self {
            name: name.into(),
            base_dir: Default::default(),
            shared: Default::default(),
            metrics: crate::metrics::Metrics::standalone(name),
        }
    }

    /// Publishes `state` under this component's name.
    pub fn publish<T: std::any::Any + Send + Sync>(&self, state: std::sync::Arc<T>) {
        if let Ok(mut m) = self.shared.lock() {
            m.insert(self.name.clone(), state);
        }
    }

    /// The state `name` published, if it is of type `T`.
    pub fn lookup<T: std::any::Any + Send + Sync>(&self, name: &str) -> Option<std::sync::Arc<T>> {
        let m = self.shared.lock().ok()?;
        m.get(name).cloned()?.downcast::<T>().ok()
    }
}

impl BuildContext {
    /// Resolves a path from the config against [`BuildContext::base_dir`].
    pub fn resolve(&self, path: &std::path::Path) -> std::path::PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.base_dir.join(path) }
    }
}

/// A component another one reads the published state of: validated to
/// exist and to be of a type that publishes what is read, ordered before
/// its reader, and restarted with it by a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The config field that names it (dotted: `discover.from`).
    pub field: &'static str,
    /// The component's name.
    pub target: String,
    /// The component types that can be referenced there (empty: any).
    pub types: &'static [&'static str],
}

impl Reference {
    /// `target`, named in `field`, which must be one of `types`.
    pub fn to(field: &'static str, target: impl Into<String>, types: &'static [&'static str]) -> Self {
        Self { field, target: target.into(), types }
    }
}

/// A source's typed config.
pub trait SourceConfig: Send + Sync + std::fmt::Debug {
    /// Checks values that the type system cannot (ranges, combinations).
    fn validate(&self) -> Vec<FieldIssue> {
        Vec::new()
    }
    /// The schema of every batch the source emits.
    fn output_schema(&self) -> SchemaRef;
    /// Extra named outputs besides the main one, with their schemas. A
    /// downstream component reads one as `inputs: [SOURCE.OUTPUT]`; an output
    /// nobody reads is not produced.
    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        Vec::new()
    }
    /// Components whose published state this source reads (an `snmp`
    /// source discovering targets from a `netflow` source).
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
    /// Whether the source says when it is ready for traffic
    /// ([`crate::health::Ready::ready`], e.g. once its sockets are bound);
    /// otherwise it counts as ready once started.
    fn reports_ready(&self) -> bool {
        false
    }
    /// Builds the running source. Does no I/O that outlives the call.
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError>;
}

/// A transform's typed config.
pub trait TransformConfig: Send + Sync + std::fmt::Debug {
    /// Checks values that the type system cannot.
    fn validate(&self) -> Vec<FieldIssue> {
        Vec::new()
    }
    /// The output schema for a given input schema, or what is wrong with the
    /// input (a missing or mistyped column).
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>>;
    /// Extra named outputs besides the main one (a plugin's `errors`). A
    /// downstream reads one as `inputs: [TRANSFORM.OUTPUT]`; the transform
    /// learns which have readers from [`crate::component::Emitter::has_output`].
    fn output_names(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The schema of named output `name` for a given input schema.
    fn named_output_schema(&self, _name: &str, input: &SchemaRef) -> SchemaRef {
        input.clone()
    }
    /// Components whose state this transform reads (not as an input), e.g.
    /// `enrich` reading the `table` named in its `table` field.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
    /// Like [`TransformConfig::output_schema`], also given the input schema
    /// of every referenced component.
    fn output_schema_with(
        &self,
        input: &SchemaRef,
        _referenced: &HashMap<String, SchemaRef>,
    ) -> Result<SchemaRef, Vec<FieldIssue>> {
        self.output_schema(input)
    }
    /// Builds the running transform for that input schema.
    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError>;
}

/// A sink's typed config.
pub trait SinkConfig: Send + Sync + std::fmt::Debug {
    /// Checks values that the type system cannot.
    fn validate(&self) -> Vec<FieldIssue> {
        Vec::new()
    }
    /// What is wrong with the input schema for this sink, if anything.
    fn check_input(&self, _input: &SchemaRef) -> Vec<FieldIssue> {
        Vec::new()
    }
    /// Builds the running sink for that input schema.
    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError>;
}

/// A config that failed to deserialize: where, and why.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// Path below the component.
    pub path: Vec<PathSegment>,
    /// serde's message.
    pub message: String,
}

/// A parsed component config of any kind.
#[derive(Debug)]
pub enum AnyConfig {
    /// A source.
    Source(Box<dyn SourceConfig>),
    /// A transform.
    Transform(Box<dyn TransformConfig>),
    /// A sink.
    Sink(Box<dyn SinkConfig>),
}

/// One registered component type.
pub struct Registration {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The `type:` value in pipeline files.
    pub name: &'static str,
    /// One line for `spillway plugins`.
    pub description: &'static str,
    /// A complete, valid config for this component, as YAML.
    pub example: &'static str,
    /// Deserializes the config (everything but `type` and `inputs`).
    pub parse: fn(serde_json::Value) -> Result<AnyConfig, ParseError>,
}

inventory::collect!(Registration);

/// Every registered component, sorted by kind then name.
pub fn all() -> Vec<&'static Registration> {
    let mut v: Vec<_> = inventory::iter::<Registration>.into_iter().collect();
    v.sort_by_key(|r| (r.kind as u8, r.name));
    v
}

/// The registration of `name` for `kind`.
pub fn find(kind: ComponentKind, name: &str) -> Option<&'static Registration> {
    inventory::iter::<Registration>.into_iter().find(|r| r.kind == kind && r.name == name)
}

/// Deserializes `value` as `T`, keeping the path to a failing field.
pub fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(PathSegment::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSegment::Index(*index)),
                serde_path_to_error::Segment::Enum { variant } => Some(PathSegment::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        ParseError { path, message: e.into_inner().to_string() }
    })
}

/// Used by [`register_source!`]; not for direct use.
pub fn parse_source<T: DeserializeOwned + SourceConfig + 'static>(
    v: serde_json::Value,
) -> Result<AnyConfig, ParseError> {
    parse::<T>(v).map(|c| AnyConfig::Source(Box::new(c)))
}

/// Used by [`register_transform!`]; not for direct use.
pub fn parse_transform<T: DeserializeOwned + TransformConfig + 'static>(
    v: serde_json::Value,
) -> Result<AnyConfig, ParseError> {
    parse::<T>(v).map(|c| AnyConfig::Transform(Box::new(c)))
}

/// Used by [`register_sink!`]; not for direct use.
pub fn parse_sink<T: DeserializeOwned + SinkConfig + 'static>(
    v: serde_json::Value,
) -> Result<AnyConfig, ParseError> {
    parse::<T>(v).map(|c| AnyConfig::Sink(Box::new(c)))
}

/// Registers a source config type. See the module docs.
#[macro_export]
macro_rules! register_source {
    (config: $config:ty, name: $name:literal, description: $desc:literal, example: $example:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::Registration {
                kind: $crate::ledger::ComponentKind::Source,
                name: $name,
                description: $desc,
                example: $example,
                parse: $crate::registry::parse_source::<$config>,
            }
        }
    };
}

/// Registers a transform config type. See the module docs.
#[macro_export]
macro_rules! register_transform {
    (config: $config:ty, name: $name:literal, description: $desc:literal, example: $example:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::Registration {
                kind: $crate::ledger::ComponentKind::Transform,
                name: $name,
                description: $desc,
                example: $example,
                parse: $crate::registry::parse_transform::<$config>,
            }
        }
    };
}

/// Registers a sink config type. See the module docs.
#[macro_export]
macro_rules! register_sink {
    (config: $config:ty, name: $name:literal, description: $desc:literal, example: $example:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::Registration {
                kind: $crate::ledger::ComponentKind::Sink,
                name: $name,
                description: $desc,
                example: $example,
                parse: $crate::registry::parse_sink::<$config>,
            }
        }
    };
}

/// One step of a path into a config (where serde found an error; a
/// document position is looked up from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// The component reference in docs/components.md, generated from the
/// registry so that the docs cannot drift from the code (a test compares).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Component reference\n\n\
         Generated by `spillway plugins --markdown` from the component registry; \
         a test fails when this file and the registry differ.\n\
         Field-by-field documentation lives on each config struct (`cargo doc`).\n",
    );
    let mut kind = None;
    for r in all() {
        if kind != Some(r.kind) {
            out.push_str(&format!("\n## {}s\n", r.kind.as_str()));
            kind = Some(r.kind);
        }
        out.push_str(&format!("\n### `{}`\n\n{}\n\n```yaml\n{}```\n", r.name, r.description, r.example));
    }
    out
}
