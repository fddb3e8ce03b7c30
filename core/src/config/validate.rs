//! Validation of a parsed pipeline: the top level, each component's config
//! through the registry, then the graph ([`super::checks`]) and schemas
//! ([`super::schemas`]); every problem is collected with its position.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::positions::{error_position, issue_position};
use super::yaml::{Node, NodeKind, Pos};
use super::{AdminConfig, Component, ConfigError, OutputId, Pipeline, SECTIONS, TOP_LEVEL, did_you_mean};
use crate::ledger::ComponentKind;
use crate::registry::{self, AnyConfig, FieldIssue};

/// A component as read from the file, before its graph is checked.
pub(super) struct Entry<'a> {
    pub(super) name: String,
    pub(super) kind: ComponentKind,
    pub(super) name_node: &'a Node,
    pub(super) body: &'a Node,
    pub(super) config: Option<(AnyConfig, &'static str)>,
    /// The fields as given (without `type` and `inputs`).
    pub(super) raw: serde_json::Value,
    pub(super) inputs: Vec<(String, Pos)>,
    /// A sink's `buffer: { type: disk, … }`.
    pub(super) disk_buffer: Option<crate::disk_buffer::DiskBufferConfig>,
}

/// Collects every problem.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
    /// Components with a reference that did not resolve to the right kind:
    /// their schemas are not checked (the errors would only be noise).
    pub(super) broken: HashSet<String>,
}

impl Validator {
    pub(super) fn err(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { pos, path: path.into(), message: message.into() });
    }

    pub(super) fn pipeline(&mut self, root: &Node, base_dir: &Path) -> Pipeline {
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
                disk_buffer: e.disk_buffer,
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
            disk_buffer: None,
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
        let mut rest: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (k != "type" && k != "inputs").then(|| (k.to_string(), v.to_json()))
            })
            .collect();
        entry.raw = serde_json::Value::Object(rest.clone());
        // Any sink can have a disk buffer in front of it: `buffer` as a map
        // with `type: disk` (a sink's own `buffer` setting, such as the
        // Kafka producer's size, is a scalar).
        if kind == ComponentKind::Sink
            && let Some(b) = rest.get("buffer").filter(|b| b.get("type").is_some())
        {
            let pos = body.get("buffer").map_or(name_node.pos, |n| n.pos);
            match serde_json::from_value::<crate::disk_buffer::DiskBufferConfig>(b.clone()) {
                Ok(c) => {
                    for m in c.issues() {
                        self.err(pos, format!("{path}.buffer"), m);
                    }
                    entry.disk_buffer = Some(c);
                }
                Err(e) => self.err(pos, format!("{path}.buffer"), format!("{e} (a disk buffer: `buffer: {{ type: disk, dir: PATH, max_size: 1GiB, when_full: block }}`)")),
            }
            rest.remove("buffer");
        }
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

    /// Reports a config's own finding about one of its fields.
    pub(super) fn issue(&mut self, path: &str, body: &Node, name_node: &Node, issue: &FieldIssue) {
        let pos = issue_position(body, name_node, &issue.field);
        let path = if issue.field.is_empty() { path.to_string() } else { format!("{path}.{}", issue.field) };
        self.err(pos, path, issue.message.clone());
    }
}

/// `flows.loss` → (`flows`, Some(`loss`)); `flows` → (`flows`, None).
/// [`OutputId::parse`] and the checks of the raw text use it.
pub(super) fn split_input(input: &str) -> (&str, Option<&str>) {
    match input.split_once('.') {
        Some((c, o)) => (c, Some(o)),
        None => (input, None),
    }
}

pub(super) fn section_of(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Source => "sources",
        ComponentKind::Transform => "transforms",
        ComponentKind::Sink => "sinks",
    }
}
