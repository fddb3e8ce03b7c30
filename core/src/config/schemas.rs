//! Schema propagation: each component's input schema is its upstream's
//! output, checked in dependency order; mismatches are reported where the
//! inputs are listed.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;

use super::validate::{Entry, Validator, section_of};
use crate::ledger::ComponentKind;
use crate::registry::{AnyConfig, FieldIssue};

impl Validator {
    /// Propagates schemas in dependency order and reports mismatches.
    #[allow(clippy::type_complexity)]
    pub(super) fn schemas(
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
