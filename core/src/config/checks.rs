//! The graph checks of a pipeline: inputs resolve to outputs that exist,
//! references name components of the right kind, every producer is read,
//! and there is no cycle. Each reports every problem with its position.

use std::collections::{HashMap, HashSet};

use super::did_you_mean;
use super::validate::{Entry, Validator, section_of, split_input};
use super::yaml::PathSegment;
use crate::ledger::ComponentKind;
use crate::registry::AnyConfig;

impl Validator {
    /// Checks the graph; returns a dependency order of the names (every
    /// component after what it reads and references).
    pub(super) fn graph(&mut self, entries: &[Entry]) -> Vec<String> {
        let kinds: HashMap<&str, ComponentKind> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        let consumed = self.check_inputs(entries, &kinds);
        self.check_references(entries);
        self.check_unused(entries, &kinds, &consumed);
        self.order(entries)
    }

    /// Each input names an existing output of a transform or source, once.
    /// Returns the components whose main output is read.
    fn check_inputs<'e>(
        &mut self,
        entries: &'e [Entry],
        kinds: &HashMap<&'e str, ComponentKind>,
    ) -> HashSet<&'e str> {
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
        consumed
    }

    /// References (`discover.from`, an enrich table) name a component of a
    /// kind they accept.
    fn check_references(&mut self, entries: &[Entry]) {
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
    }

    /// Every source and transform is read by something.
    fn check_unused(
        &mut self,
        entries: &[Entry],
        kinds: &HashMap<&str, ComponentKind>,
        consumed: &HashSet<&str>,
    ) {
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
    }

    /// A depth-first topological sort; a back edge is a cycle, reported once.
    fn order(&mut self, entries: &[Entry]) -> Vec<String> {
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
}
