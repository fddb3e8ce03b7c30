//! A pipeline as a diagram: Mermaid (renders on GitHub) or Graphviz DOT.

use super::Pipeline;
use crate::ledger::ComponentKind;

/// The diagram languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

/// `p` as a diagram: one node per component (shaped by kind), one arrow
/// per input, labelled with the named output it reads.
pub fn render(p: &Pipeline, format: GraphFormat) -> String {
    let mut out = String::new();
    let id = |n: &str| n.replace('-', "_");
    match format {
        GraphFormat::Mermaid => out.push_str("flowchart LR\n"),
        GraphFormat::Dot => out.push_str("digraph pipeline {\n  rankdir=LR;\n"),
    }
    for c in &p.components {
        let (open, close, shape) = match c.kind {
            ComponentKind::Source => ("([", "])", "ellipse"),
            ComponentKind::Transform => ("[", "]", "box"),
            ComponentKind::Sink => ("[(", ")]", "cylinder"),
        };
        match format {
            GraphFormat::Mermaid => {
                out.push_str(&format!("  {}{open}\"{}<br/>{}\"{close}\n", id(&c.name), c.name, c.type_name))
            }
            GraphFormat::Dot => out.push_str(&format!(
                "  {} [shape={shape}, label=\"{}\\n{}\"];\n",
                id(&c.name),
                c.name,
                c.type_name
            )),
        }
    }
    for c in &p.components {
        for input in &c.inputs {
            let (from, output) = (input.component.as_str(), input.port.as_deref());
            match (format, output) {
                (GraphFormat::Mermaid, None) => {
                    out.push_str(&format!("  {} --> {}\n", id(from), id(&c.name)))
                }
                (GraphFormat::Mermaid, Some(o)) => {
                    out.push_str(&format!("  {} -- {o} --> {}\n", id(from), id(&c.name)))
                }
                (GraphFormat::Dot, None) => out.push_str(&format!("  {} -> {};\n", id(from), id(&c.name))),
                (GraphFormat::Dot, Some(o)) => {
                    out.push_str(&format!("  {} -> {} [label=\"{o}\"];\n", id(from), id(&c.name)))
                }
            }
        }
    }
    if matches!(format, GraphFormat::Dot) {
        out.push_str("}\n");
    }
    out
}
