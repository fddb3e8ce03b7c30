//! A YAML document tree that remembers where every node came from.
//!
//! Validation errors must name the line and column of the offending field,
//! which plain serde deserialization forgets. We build our own small tree
//! from `yaml-rust2`'s event stream (a maintained, pure-Rust YAML 1.2 parser
//! that reports a position for every event), interpolate `${VAR}` inside
//! scalars, and convert to `serde_json::Value` for the typed configs.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A YAML node and its position.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's content.
    pub kind: NodeKind,
    /// Where the node starts.
    pub pos: Pos,
}

/// The content of a [`Node`].
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar; `quoted` scalars are always strings.
    Scalar {
        /// The text after interpolation.
        value: String,
        /// Whether the scalar was quoted or a block scalar.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, keys as written.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// The key node of `key`, for error positions.
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, _)| k)
    }

    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The position of the node at a serde path (`a.b[2].c`) below this one;
    /// the deepest node that exists on the path when it leaves the tree.
    pub fn locate(&self, path: &[PathSegment]) -> Pos {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.kind) {
                (PathSegment::Key(k), NodeKind::Map(m)) => {
                    m.iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v)
                }
                (PathSegment::Index(i), NodeKind::Seq(s)) => s.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.pos
    }

    /// Converts to JSON, typing plain scalars the YAML 1.2 core-schema way.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Scalar { value, quoted: true } => Value::String(value.clone()),
            NodeKind::Scalar { value, quoted: false } => plain_scalar(value),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

pub use crate::registry::PathSegment;

fn plain_scalar(s: &str) -> serde_json::Value {
    use serde_json::Value;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && !digits.starts_with('_')
    {
        let clean: String = s.chars().filter(|c| *c != '_' && *c != '+').collect();
        if let Ok(i) = clean.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = clean.parse::<u64>() {
            return Value::from(u);
        }
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(u) = u64::from_str_radix(hex, 16)
    {
        return Value::from(u);
    }
    let looks_float = s.bytes().any(|b| b == b'.' || b == b'e' || b == b'E')
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

/// A problem found while reading the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Parses `text` into a tree, interpolating `${VAR}` and `${VAR:-default}`
/// in every scalar with `env` (`$$` is a literal `$`).
///
/// Interpolation happens inside scalars, after parsing, so a variable's value
/// can never change the structure of the file and positions stay exact.
/// Every missing variable is reported, not just the first.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Node, Vec<YamlError>> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        errors: Vec::new(),
        env,
        nodes: 0,
        exhausted: false,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(vec![YamlError {
            pos: Pos { line: m.line(), col: m.col() + 1 },
            message: format!("invalid YAML: {}", e.info()),
        }]);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    builder.root.ok_or_else(|| {
        vec![YamlError { pos: Pos { line: 1, col: 1 }, message: "the pipeline file is empty".into() }]
    })
}

/// Most nodes a document may expand to, aliases included. A pipeline file
/// has hundreds; a "billion laughs" document of a few hundred bytes expands
/// to billions, which must be refused before it is built.
pub const MAX_NODES: usize = 1_000_000;

/// A collection being built, with the number of nodes it holds so far.
enum Frame {
    Seq(Pos, Vec<Node>, usize, usize),
    Map(Pos, Vec<(Node, Node)>, Option<Node>, usize, usize),
}

struct Builder<'a> {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Anchored nodes and their sizes (nodes in the subtree).
    anchors: HashMap<usize, (Node, usize)>,
    errors: Vec<YamlError>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Nodes built so far, aliases expanded.
    nodes: usize,
    /// The node budget was exceeded: nothing more is built.
    exhausted: bool,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, items, _, n)) => {
                items.push(node);
                *n += size;
            }
            Some(Frame::Map(_, entries, key, _, n)) => {
                *n += size;
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        // A key given twice is an error: which value would
                        // win is a guess the user did not make.
                        if let Some(text) = k.as_str()
                            && let Some((first, _)) = entries.iter().find(|(e, _)| e.as_str() == Some(text))
                        {
                            let message = format!(
                                "duplicate key `{text}`: already given at {} (each key may appear once)",
                                first.pos
                            );
                            self.errors.push(YamlError { pos: k.pos, message });
                        }
                        entries.push((k, node));
                    }
                }
            }
        }
    }

    /// Charges `n` more nodes; false (with an error at `pos`) past the budget.
    fn charge(&mut self, n: usize, pos: Pos) -> bool {
        if self.exhausted {
            return false;
        }
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.exhausted = true;
            self.errors.push(YamlError {
                pos,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases included); \
                     refusing it (is it an alias bomb?)"
                ),
            });
            return false;
        }
        true
    }

    fn interpolate(&mut self, raw: &str, pos: Pos) -> String {
        match interpolate(raw, self.env) {
            Ok(s) => s,
            Err(message) => {
                self.errors.push(YamlError { pos, message });
                raw.to_string()
            }
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos { line: mark.line(), col: mark.col() + 1 };
        if self.exhausted {
            return;
        }
        match ev {
            Event::Scalar(value, style, anchor, _) => {
                if !self.charge(1, pos) {
                    return;
                }
                let quoted = !matches!(style, TScalarStyle::Plain);
                let value = self.interpolate(&value, pos);
                self.push_node(Node { kind: NodeKind::Scalar { value, quoted }, pos }, anchor, 1);
            }
            Event::SequenceStart(anchor, _) => {
                if !self.charge(1, pos) {
                    return;
                }
                self.stack.push(Frame::Seq(pos, Vec::new(), anchor, 1));
            }
            Event::MappingStart(anchor, _) => {
                if !self.charge(1, pos) {
                    return;
                }
                self.stack.push(Frame::Map(pos, Vec::new(), None, anchor, 1));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, size) = match self.stack.pop() {
                    Some(Frame::Seq(pos, items, anchor, n)) => {
                        (Node { kind: NodeKind::Seq(items), pos }, anchor, n)
                    }
                    Some(Frame::Map(pos, entries, _, anchor, n)) => {
                        (Node { kind: NodeKind::Map(entries), pos }, anchor, n)
                    }
                    None => return,
                };
                self.push_node(node, anchor, size);
            }
            Event::Alias(id) => {
                let Some((node, size)) =
                    self.anchors.get(&id).map(|(n, s)| (n.kind.clone(), *s)).map_or(
                        Some((NodeKind::Scalar { value: String::new(), quoted: false }, 1)),
                        |(k, s)| self.charge(s, pos).then_some((k, s)),
                    )
                else {
                    return;
                };
                self.push_node(Node { kind: node, pos }, 0, size);
            }
            _ => {}
        }
    }
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in `raw`.
pub fn interpolate(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut missing = Vec::new();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("unterminated `${{` in `{raw}`"));
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("`${{{expr}}}` is not a valid variable reference"));
            }
            match (env(name).filter(|v| !(v.is_empty() && default.is_some())), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => missing.push(name.to_string()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "environment variable{} {} not set (use `${{NAME:-default}}` for a default)",
            if missing.len() > 1 { "s" } else { "" },
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let doc = parse("a:\n  b: 1\n  c: [x, y]\n", &no_env).unwrap();
        let a = doc.get("a").unwrap();
        assert_eq!(doc.key("a").unwrap().pos, Pos { line: 1, col: 1 });
        assert_eq!(a.key("c").unwrap().pos, Pos { line: 3, col: 3 });
        assert_eq!(a.get("b").unwrap().pos, Pos { line: 2, col: 6 });
    }

    #[test]
    fn plain_scalars_are_typed_and_quoted_ones_stay_strings() {
        let doc = parse("n: 10\nq: \"10\"\nb: true\nf: 1.5\ns: 5m\nz: ~\n", &no_env).unwrap();
        let j = doc.to_json();
        assert_eq!(j, serde_json::json!({"n": 10, "q": "10", "b": true, "f": 1.5, "s": "5m", "z": null}));
    }

    #[test]
    fn interpolation_uses_env_defaults_and_escapes() {
        let env = |k: &str| (k == "HOST").then(|| "kafka:9092".to_string());
        assert_eq!(interpolate("${HOST}", &env).unwrap(), "kafka:9092");
        assert_eq!(interpolate("${PORT:-2055}", &env).unwrap(), "2055");
        assert_eq!(interpolate("cost $$5", &env).unwrap(), "cost $5");
        let err = interpolate("${A}/${B}", &env).unwrap_err();
        assert!(err.contains("`A`, `B`"), "{err}");
    }

    #[test]
    fn a_missing_variable_is_reported_at_its_scalar() {
        let errs = parse("x:\n  y: ${NOPE}\n", &no_env).unwrap_err();
        assert_eq!(errs[0].pos, Pos { line: 2, col: 6 });
        assert!(errs[0].message.contains("`NOPE`"));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_positions() {
        let errs = parse("a:\n  type: x\n  port: 1\n  type: y\n", &no_env).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].pos, Pos { line: 4, col: 3 });
        assert!(errs[0].message.contains("duplicate key `type`: already given at 2:3"), "{errs:?}");
    }

    #[test]
    fn an_alias_bomb_is_refused_at_a_position_before_it_is_built() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 9].join(", ")));
        }
        assert!(doc.len() < 700);
        let t = std::time::Instant::now();
        let errs = parse(&doc, &no_env).unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(errs[0].message.contains("expands to more than"), "{errs:?}");
        assert!(errs[0].pos.line >= 6, "at the alias that crossed the budget: {errs:?}");
        // Modest reuse of anchors is fine.
        let ok = "base: &b { type: blackhole }\nx: *b\ny: *b\n";
        assert!(parse(ok, &no_env).is_ok());
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let errs = parse("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"), "{errs:?}");
        assert!(errs[0].pos.line >= 1);
    }
}
