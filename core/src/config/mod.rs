//! Pipeline files: parse, interpolate, validate the whole graph, and report
//! *every* problem with its component, field, line and column.
//!
//! ```
//! use spillway_core::config;
//! let yaml = "sources:\n  s: { type: nope }\n";
//! let errors = config::load_str(yaml, &|_| None, std::path::Path::new(".")).unwrap_err();
//! assert_eq!(errors[0].pos.line, 2);
//! ```

pub mod graph;
pub mod paths;
pub mod units;
pub mod yaml;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use crate::ledger::ComponentKind;
use crate::registry::{self, AnyConfig, FieldIssue};
use yaml::{Node, NodeKind, PathSegment, Pos};

pub use units::{ByteSize, HumanDuration};

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

const SECTIONS: [(&str, ComponentKind); 3] = [
    ("sources", ComponentKind::Source),
    ("transforms", ComponentKind::Transform),
    ("sinks", ComponentKind::Sink),
];
const TOP_LEVEL: [&str; 4] = ["sources", "transforms", "sinks", "admin"];

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
    let mut v = Validator { errors: Vec::new(), broken: HashSet::new() };
    let pipeline = v.pipeline(&root, base_dir);
    if v.errors.is_empty() {
        Ok(pipeline)
    } else {
        v.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
        Err(v.errors)
    }
}

struct Entry<'a> {
    name: String,
    kind: ComponentKind,
    name_node: &'a Node,
    body: &'a Node,
    config: Option<(AnyConfig, &'static str)>,
    /// The fields as given (without `type` and `inputs`).
    raw: serde_json::Value,
    inputs: Vec<(String, Pos)>,
}

struct Validator {
    errors: Vec<ConfigError>,
    /// Components with a reference that did not resolve to the right kind:
    /// their schemas are not checked (the errors would only be noise).
    broken: HashSet<String>,
}

impl Validator {
    fn err(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { pos, path: path.into(), message: message.into() });
    }

    fn pipeline(&mut self, root: &Node, base_dir: &Path) -> Pipeline {
        let mut pipeline = Pipeline { components: Vec::new(), admin: None, base_dir: base_dir.to_path_buf() };
        let Some(map) = root.as_map() else {
            self.err(
                root.pos,
                "file",
                "a pipeline file is a mapping with `sources`, `transforms` and `sinks`",
            );
            return pipeline;
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen: HashMap<String, (String, Pos)> = HashMap::new();
        for (key, value) in map {
            let k = key.as_str().unwrap_or_default();
            if k == "admin" {
                pipeline.admin = self.admin(value);
                continue;
            }
            let Some(&(section, kind)) = SECTIONS.iter().find(|(s, _)| *s == k) else {
                let hint = did_you_mean(k, TOP_LEVEL.iter().copied());
                self.err(key.pos, k, format!("unknown top-level key `{k}`{hint}"));
                continue;
            };
            let components: &[(Node, Node)] = match &value.kind {
                NodeKind::Map(m) => m,
                NodeKind::Scalar { value: s, quoted: false } if s.is_empty() || s == "~" || s == "null" => {
                    &[]
                }
                _ => {
                    self.err(
                        value.pos,
                        section,
                        format!(
                            "`{section}` must be a mapping of component names to configs, not {}",
                            value.type_name()
                        ),
                    );
                    continue;
                }
            };
            for (name_node, body) in components {
                let name = name_node.as_str().unwrap_or_default().to_string();
                let path = format!("{section}.{name}");
                if let Some((other, pos)) = seen.get(&name) {
                    self.err(
                        name_node.pos,
                        &path,
                        format!("the name `{name}` is already used by {other} (line {})", pos.line),
                    );
                    continue;
                }
                seen.insert(name.clone(), (path.clone(), name_node.pos));
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.err(
                        name_node.pos,
                        &path,
                        "component names may use only letters, digits, `_` and `-`",
                    );
                }
                if let Some(entry) = self.component(section, kind, name, name_node, body) {
                    entries.push(entry);
                }
            }
        }
        if !SECTIONS.iter().any(|(s, _)| root.get(s).is_some()) {
            self.err(root.pos, "file", "the pipeline has no `sources`, `transforms` or `sinks`");
        }
        let order = self.graph(&entries);
        let schemas = self.schemas(&entries, &order);
        if !self.errors.is_empty() {
            return pipeline;
        }
        let mut by_name: HashMap<String, Entry> = entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        for name in order {
            let Some(e) = by_name.remove(&name) else { continue };
            let Some((config, type_name)) = e.config else { continue };
            let (input_schema, output_schema) = schemas.get(&name).cloned().unwrap_or_default();
            let inputs: Vec<OutputId> = e.inputs.into_iter().map(|(n, _)| OutputId::parse(&n)).collect();
            let fingerprint = format!(
                "{type_name} {} inputs={inputs:?} schema={:?}",
                e.raw,
                input_schema.as_ref().map(|s| s
                    .fields()
                    .iter()
                    .map(|f| (f.name(), f.data_type()))
                    .collect::<Vec<_>>())
            );
            pipeline.components.push(Component {
                name: e.name,
                kind: e.kind,
                type_name,
                config,
                inputs,
                input_schema,
                output_schema,
                fingerprint,
            });
        }
        pipeline
    }

    fn admin(&mut self, value: &Node) -> Option<AdminConfig> {
        match registry::parse::<AdminConfig>(value.to_json()) {
            Ok(a) => Some(a),
            Err(e) => {
                let (pos, path) = error_position(value, &e.path, &e.message, "admin");
                self.err(pos, path, e.message);
                None
            }
        }
    }

    fn component<'a>(
        &mut self,
        section: &str,
        kind: ComponentKind,
        name: String,
        name_node: &'a Node,
        body: &'a Node,
    ) -> Option<Entry<'a>> {
        let path = format!("{section}.{name}");
        let Some(fields) = body.as_map() else {
            self.err(
                body.pos,
                &path,
                format!("a component is a mapping with a `type`, not {}", body.type_name()),
            );
            return None;
        };
        let mut entry = Entry {
            name,
            kind,
            name_node,
            body,
            config: None,
            raw: serde_json::Value::Null,
            inputs: Vec::new(),
        };
        match body.get("inputs") {
            Some(inputs) if kind == ComponentKind::Source => {
                self.err(body.key("inputs").map_or(inputs.pos, |k| k.pos), &path, "a source has no `inputs`");
            }
            Some(inputs) => match &inputs.kind {
                NodeKind::Seq(items) => {
                    for item in items {
                        match item.as_str() {
                            Some(s) if !s.is_empty() => entry.inputs.push((s.to_string(), item.pos)),
                            _ => {
                                self.err(item.pos, format!("{path}.inputs"), "each input is a component name")
                            }
                        }
                    }
                    if items.is_empty() {
                        self.err(
                            inputs.pos,
                            format!("{path}.inputs"),
                            format!("{} `{}` has no inputs", kind.as_str(), entry.name),
                        );
                    }
                }
                _ => self.err(
                    inputs.pos,
                    format!("{path}.inputs"),
                    "`inputs` must be a list of component names, e.g. `inputs: [flows]`",
                ),
            },
            None if kind != ComponentKind::Source => {
                self.err(
                    name_node.pos,
                    &path,
                    format!("{} `{}` has no inputs: add `inputs: [NAME, ...]`", kind.as_str(), entry.name),
                );
            }
            None => {}
        }
        let Some(type_node) = body.get("type") else {
            self.err(name_node.pos, &path, "missing `type`");
            return Some(entry);
        };
        let Some(type_name) = type_node.as_str() else {
            self.err(type_node.pos, format!("{path}.type"), "`type` must be a component type name");
            return Some(entry);
        };
        let Some(reg) = registry::find(kind, type_name) else {
            let other = SECTIONS
                .iter()
                .find(|(_, k)| *k != kind && registry::find(*k, type_name).is_some())
                .map(|(s, k)| format!(" (`{type_name}` is a {}: put it under `{s}`)", k.as_str()));
            let hint = other.unwrap_or_else(|| {
                did_you_mean(type_name, registry::all().iter().filter(|r| r.kind == kind).map(|r| r.name))
            });
            self.err(
                type_node.pos,
                format!("{path}.type"),
                format!("unknown {} type `{type_name}`{hint}", kind.as_str()),
            );
            return Some(entry);
        };
        let rest: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (k != "type" && k != "inputs").then(|| (k.to_string(), v.to_json()))
            })
            .collect();
        entry.raw = serde_json::Value::Object(rest.clone());
        match (reg.parse)(serde_json::Value::Object(rest)) {
            Ok(config) => {
                let issues = match &config {
                    AnyConfig::Source(c) => c.validate(),
                    AnyConfig::Transform(c) => c.validate(),
                    AnyConfig::Sink(c) => c.validate(),
                };
                let had_issues = !issues.is_empty();
                for issue in issues {
                    self.issue(&path, body, name_node, &issue);
                }
                if !had_issues {
                    entry.config = Some((config, reg.name));
                }
            }
            Err(e) => {
                let message = e
                    .message
                    .replace("expected one of", &format!("`{}` {} accepts", reg.name, kind.as_str()));
                let message = if e.path.is_empty() && message.starts_with("missing field") {
                    format!("{message} (see `spillway plugins` for an example)")
                } else {
                    message
                };
                let (pos, sub) = error_position(body, &e.path, &message, &path);
                let pos = if e.path.is_empty() && !message.starts_with("unknown field") {
                    name_node.pos
                } else {
                    pos
                };
                self.err(pos, sub, message);
            }
        }
        Some(entry)
    }

    fn issue(&mut self, path: &str, body: &Node, name_node: &Node, issue: &FieldIssue) {
        if issue.field.is_empty() {
            self.err(name_node.pos, path, issue.message.clone());
            return;
        }
        // `targets[0].v3` → Key(targets), Index(0), Key(v3).
        let mut segs: Vec<PathSegment> = Vec::new();
        for part in issue.field.split('.') {
            let mut pieces = part.split('[');
            segs.push(PathSegment::Key(pieces.next().unwrap_or_default().to_string()));
            for idx in pieces {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    segs.push(PathSegment::Index(i));
                }
            }
        }
        let pos = if segs.len() == 1 && body.key(&issue.field).is_some() {
            body.get(&issue.field).map_or(name_node.pos, |n| n.pos)
        } else {
            let p = body.locate(&segs);
            if p == body.pos { name_node.pos } else { p }
        };
        self.err(pos, format!("{path}.{}", issue.field), issue.message.clone());
    }

    /// Resolves inputs, detects cycles and unused outputs; returns a
    /// dependency order of the names.
    fn graph(&mut self, entries: &[Entry]) -> Vec<String> {
        let kinds: HashMap<&str, ComponentKind> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        let producers: Vec<&str> =
            entries.iter().filter(|e| e.kind != ComponentKind::Sink).map(|e| e.name.as_str()).collect();
        let named: HashMap<&str, Vec<&'static str>> = entries
            .iter()
            .filter_map(|e| match &e.config {
                Some((AnyConfig::Source(c), _)) => {
                    Some((e.name.as_str(), c.named_outputs().into_iter().map(|(n, _)| n).collect()))
                }
                Some((AnyConfig::Transform(c), _)) => Some((e.name.as_str(), c.output_names())),
                _ => None,
            })
            .collect();
        let mut consumed: HashSet<&str> = HashSet::new();
        for e in entries {
            let path = format!("{}.{}", section_of(e.kind), e.name);
            let mut dup = HashSet::new();
            for (full, pos) in &e.inputs {
                if !dup.insert(full.as_str()) {
                    self.err(*pos, format!("{path}.inputs"), format!("input `{full}` is listed twice"));
                    continue;
                }
                let (input, output) = split_input(full);
                if let Some(o) = output {
                    if let Some(outputs) = named.get(input)
                        && !outputs.contains(&o)
                    {
                        let list = if outputs.is_empty() {
                            "none".to_string()
                        } else {
                            outputs.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        };
                        self.err(
                            *pos,
                            format!("{path}.inputs"),
                            format!("`{input}` has no output `{o}` (its named outputs: {list})"),
                        );
                        continue;
                    }
                    if kinds.get(input) == Some(&ComponentKind::Transform) && !named.contains_key(input) {
                        self.err(*pos, format!("{path}.inputs"), format!("`{input}` has no output `{o}`"));
                        continue;
                    }
                }
                match kinds.get(input) {
                    Some(ComponentKind::Sink) => self.err(
                        *pos,
                        format!("{path}.inputs"),
                        format!("`{input}` is a sink; sinks have no output to use as an input"),
                    ),
                    Some(_) if input == e.name => self.err(
                        *pos,
                        format!("{path}.inputs"),
                        format!("`{}` cannot be its own input", e.name),
                    ),
                    Some(_) => {
                        if output.is_none() {
                            consumed.insert(input);
                        }
                    }
                    None => {
                        let hint = did_you_mean(input, producers.iter().copied());
                        self.err(*pos, format!("{path}.inputs"), format!("unknown input `{full}`{hint}"));
                    }
                }
            }
        }
        for e in entries {
            let references = match &e.config {
                Some((AnyConfig::Transform(c), _)) => c.references(),
                Some((AnyConfig::Source(c), _)) => c.references(),
                _ => continue,
            };
            for r in references {
                let path = format!("{}.{}.{}", section_of(e.kind), e.name, r.field);
                let segs: Vec<PathSegment> =
                    r.field.split('.').map(|k| PathSegment::Key(k.to_string())).collect();
                let pos = e.body.locate(&segs);
                let target = r.target.as_str();
                let Some(found) = entries.iter().find(|x| x.name == target) else {
                    let all = entries.iter().map(|x| x.name.as_str());
                    self.err(
                        pos,
                        path,
                        format!("there is no component `{target}`{}", did_you_mean(target, all)),
                    );
                    self.broken.insert(e.name.clone());
                    continue;
                };
                if let Some((_, ty)) = &found.config
                    && !r.types.is_empty()
                    && !r.types.contains(ty)
                {
                    self.broken.insert(e.name.clone());
                    let want: Vec<String> = r.types.iter().map(|t| format!("`{t}`")).collect();
                    self.err(
                        pos,
                        path,
                        format!(
                            "must name a {} component; `{target}` is a `{ty}` {}",
                            want.join(" or "),
                            found.kind.as_str()
                        ),
                    );
                }
            }
        }
        let inputs_resolved =
            entries.iter().all(|e| e.inputs.iter().all(|(i, _)| kinds.contains_key(split_input(i).0)));
        for e in entries {
            // Only when every input resolved: a typo'd input would otherwise
            // also report its intended upstream as unused.
            if inputs_resolved
                && e.config.is_some()
                && e.kind != ComponentKind::Sink
                && !consumed.contains(e.name.as_str())
            {
                self.err(
                    e.name_node.pos,
                    format!("{}.{}", section_of(e.kind), e.name),
                    format!(
                        "{} `{}` is not an input of any transform or sink, so its records would go nowhere",
                        e.kind.as_str(),
                        e.name
                    ),
                );
            }
        }
        // Depth-first topological sort; a back edge is a cycle.
        let index: HashMap<&str, usize> =
            entries.iter().enumerate().map(|(i, e)| (e.name.as_str(), i)).collect();
        let mut state = vec![0u8; entries.len()]; // 0 new, 1 on stack, 2 done
        let mut order = Vec::with_capacity(entries.len());
        let mut reported: HashSet<Vec<String>> = HashSet::new();
        fn visit(
            i: usize,
            entries: &[Entry],
            index: &HashMap<&str, usize>,
            state: &mut [u8],
            stack: &mut Vec<usize>,
            order: &mut Vec<String>,
            cycles: &mut Vec<Vec<usize>>,
        ) {
            state[i] = 1;
            stack.push(i);
            let references: Vec<String> = match &entries[i].config {
                Some((AnyConfig::Transform(c), _)) => c.references().into_iter().map(|r| r.target).collect(),
                Some((AnyConfig::Source(c), _)) => c.references().into_iter().map(|r| r.target).collect(),
                _ => Vec::new(),
            };
            let deps = entries[i]
                .inputs
                .iter()
                .map(|(n, _)| split_input(n).0)
                .chain(references.iter().map(String::as_str));
            for dep in deps.collect::<Vec<_>>() {
                let Some(&j) = index.get(dep) else { continue };
                if j == i {
                    continue;
                }
                match state[j] {
                    0 => visit(j, entries, index, state, stack, order, cycles),
                    1 => {
                        let at = stack.iter().position(|&s| s == j).unwrap_or(0);
                        cycles.push(stack[at..].to_vec());
                    }
                    _ => {}
                }
            }
            stack.pop();
            state[i] = 2;
            order.push(entries[i].name.clone());
        }
        let mut cycles = Vec::new();
        for i in 0..entries.len() {
            if state[i] == 0 {
                visit(i, entries, &index, &mut state, &mut Vec::new(), &mut order, &mut cycles);
            }
        }
        for cycle in cycles {
            let mut names: Vec<String> = cycle.iter().map(|&i| entries[i].name.clone()).collect();
            let mut key = names.clone();
            key.sort();
            if !reported.insert(key) {
                continue;
            }
            let first = &entries[cycle[0]];
            // The stack runs against the data flow (each entry consumes the
            // next); show the flow, starting at the reported component.
            names.reverse();
            names.rotate_right(1);
            names.push(names[0].clone());
            self.err(
                first.name_node.pos,
                format!("{}.{}", section_of(first.kind), first.name),
                format!("cycle: {}", names.join(" → ")),
            );
        }
        order
    }

    /// Propagates schemas in dependency order and reports mismatches.
    #[allow(clippy::type_complexity)]
    fn schemas(
        &mut self,
        entries: &[Entry],
        order: &[String],
    ) -> HashMap<String, (Option<SchemaRef>, Option<SchemaRef>)> {
        let by_name: HashMap<&str, &Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
        let mut out: HashMap<String, (Option<SchemaRef>, Option<SchemaRef>)> = HashMap::new();
        for name in order {
            let e = by_name[name.as_str()];
            let path = format!("{}.{}", section_of(e.kind), e.name);
            let Some((config, _)) = &e.config else { continue };
            if self.broken.contains(&e.name) {
                continue;
            }
            let input = if e.kind == ComponentKind::Source {
                None
            } else {
                let mut schemas: Vec<(&str, SchemaRef)> = Vec::new();
                for (input, _) in &e.inputs {
                    match out.get(input).and_then(|(_, o)| o.clone()) {
                        Some(s) => schemas.push((input, s)),
                        None => break,
                    }
                }
                if schemas.len() != e.inputs.len() || schemas.is_empty() {
                    continue; // an upstream problem was already reported
                }
                let (first_name, first) = schemas[0].clone();
                let mut ok = true;
                for (other_name, other) in &schemas[1..] {
                    if let Some(diff) = schema_difference(&first, other) {
                        ok = false;
                        let pos = e.body.get("inputs").map_or(e.name_node.pos, |n| n.pos);
                        self.err(
                            pos,
                            format!("{path}.inputs"),
                            format!(
                                "inputs `{first_name}` and `{other_name}` have different schemas: {diff}"
                            ),
                        );
                    }
                }
                if !ok {
                    continue;
                }
                Some(first)
            };
            let result = match (config, &input) {
                (AnyConfig::Source(c), _) => {
                    for (o, schema) in c.named_outputs() {
                        out.insert(format!("{name}.{o}"), (None, Some(schema)));
                    }
                    Ok((None, Some(c.output_schema())))
                }
                (AnyConfig::Transform(c), Some(i)) => {
                    let wanted = c.references();
                    let referenced: HashMap<String, SchemaRef> = wanted
                        .iter()
                        .filter_map(|r| {
                            let r = &r.target;
                            let (input, output) = out.get(r)?;
                            Some((r.clone(), input.clone().or_else(|| output.clone())?))
                        })
                        .collect();
                    if referenced.len() < wanted.len() {
                        continue; // a missing reference was already reported
                    }
                    for o in c.output_names() {
                        out.insert(format!("{name}.{o}"), (None, Some(c.named_output_schema(o, i))));
                    }
                    c.output_schema_with(i, &referenced).map(|o| (Some(i.clone()), Some(o)))
                }
                (AnyConfig::Sink(c), Some(i)) => {
                    let issues = c.check_input(i);
                    if issues.is_empty() { Ok((Some(i.clone()), None)) } else { Err(issues) }
                }
                _ => continue,
            };
            match result {
                Ok(s) => {
                    out.insert(name.clone(), s);
                }
                Err(issues) => {
                    for issue in issues {
                        let message = format!("does not fit the input schema: {}", issue.message);
                        self.issue(&path, e.body, e.name_node, &FieldIssue { message, ..issue });
                    }
                }
            }
        }
        out
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
    fn parse(text: &str) -> Self {
        let (c, p) = split_input(text);
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

/// `flows.loss` → (`flows`, Some(`loss`)); `flows` → (`flows`, None).
fn split_input(input: &str) -> (&str, Option<&str>) {
    match input.split_once('.') {
        Some((c, o)) => (c, Some(o)),
        None => (input, None),
    }
}

fn section_of(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Source => "sources",
        ComponentKind::Transform => "transforms",
        ComponentKind::Sink => "sinks",
    }
}

/// The position and dotted path of a serde error inside `body`.
fn error_position(body: &Node, path: &[PathSegment], message: &str, prefix: &str) -> (Pos, String) {
    let mut dotted = prefix.to_string();
    for seg in path {
        match seg {
            PathSegment::Key(k) => {
                dotted.push('.');
                dotted.push_str(k);
            }
            PathSegment::Index(i) => dotted.push_str(&format!("[{i}]")),
        }
    }
    let mut pos = body.locate(path);
    // serde names an unknown field in its message; the path may or may not
    // end with it. Point at the key itself.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
    {
        let parent_path = match path.last() {
            Some(PathSegment::Key(k)) if k == field => &path[..path.len() - 1],
            _ => {
                dotted.push('.');
                dotted.push_str(field);
                path
            }
        };
        let mut parent = body;
        for seg in parent_path {
            if let PathSegment::Key(k) = seg
                && let Some(n) = parent.get(k)
            {
                parent = n;
            }
        }
        if let Some(k) = parent.key(field) {
            pos = k.pos;
        }
    }
    (pos, dotted)
}

/// A short description of how two schemas differ, or `None` if they match.
pub fn schema_difference(a: &SchemaRef, b: &SchemaRef) -> Option<String> {
    for f in a.fields() {
        match b.field_with_name(f.name()) {
            Err(_) => return Some(format!("the first has column `{}` that the second lacks", f.name())),
            Ok(g) if g.data_type() != f.data_type() => {
                return Some(format!(
                    "column `{}` is {} in the first and {} in the second",
                    f.name(),
                    f.data_type(),
                    g.data_type()
                ));
            }
            Ok(_) => {}
        }
    }
    for g in b.fields() {
        if a.field_with_name(g.name()).is_err() {
            return Some(format!("the second has column `{}` that the first lacks", g.name()));
        }
    }
    let names_a: Vec<&String> = a.fields().iter().map(|f| f.name()).collect();
    let names_b: Vec<&String> = b.fields().iter().map(|f| f.name()).collect();
    (names_a != names_b).then(|| "the columns are in a different order".to_string())
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
