//! `select`: keep or drop columns, rename them, add constant columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};

/// Config of the `select` transform. Applied in order: keep or drop, then
/// rename, then add.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// Columns to keep, in this order (all others go).
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Columns to drop.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Renames, old name → new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Constant columns: a string, an integer (`Int64`), a number
    /// (`Float64`) or a boolean, the same on every row.
    #[serde(default)]
    pub add: BTreeMap<String, serde_json::Value>,
    /// Derived columns: a condition (a boolean column) or one arithmetic
    /// operation between columns and numbers (`bytes / 1000`), computed from
    /// the input columns.
    #[serde(default)]
    pub derive: BTreeMap<String, String>,
}

fn constant_type(v: &serde_json::Value) -> Option<DataType> {
    match v {
        serde_json::Value::String(_) => Some(DataType::Utf8),
        serde_json::Value::Bool(_) => Some(DataType::Boolean),
        serde_json::Value::Number(n) if n.is_i64() => Some(DataType::Int64),
        serde_json::Value::Number(_) => Some(DataType::Float64),
        _ => None,
    }
}

impl SelectConfig {
    /// Output columns as (source index or constant name, output field).
    fn plan(&self, input: &SchemaRef) -> Result<Vec<(Source, Field)>, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        let missing = |field: &str, c: &str| {
            FieldIssue::new(
                field,
                format!(
                    "there is no column `{c}`{}",
                    spillway_core::config::did_you_mean(c, names.iter().copied())
                ),
            )
        };
        let mut cols: Vec<usize> = match &self.keep {
            Some(keep) => keep
                .iter()
                .filter_map(|c| {
                    let i = input.index_of(c).ok();
                    if i.is_none() {
                        issues.push(missing("keep", c));
                    }
                    i
                })
                .collect(),
            None => (0..input.fields().len()).collect(),
        };
        for d in &self.drop {
            match input.index_of(d) {
                Ok(i) => cols.retain(|c| *c != i),
                Err(_) => issues.push(missing("drop", d)),
            }
        }
        let mut out: Vec<(Source, Field)> = Vec::new();
        for i in cols {
            let f = input.field(i);
            let name = self.rename.get(f.name()).cloned().unwrap_or_else(|| f.name().clone());
            out.push((Source::Column(i), Field::new(name, f.data_type().clone(), f.is_nullable())));
        }
        for old in self.rename.keys() {
            if input.index_of(old).is_err() {
                issues.push(missing("rename", old));
            }
        }
        for (name, value) in &self.add {
            match constant_type(value) {
                Some(t) => out.push((Source::Constant(value.clone()), Field::new(name, t, false))),
                None => issues
                    .push(FieldIssue::new("add", format!("`{name}` must be a string, number or boolean"))),
            }
        }
        for (name, text) in &self.derive {
            match crate::derive::Derived::compile(text, input) {
                Ok((_, ty)) => out.push((Source::Derived(text.clone()), Field::new(name, ty, true))),
                Err(e) => issues.push(FieldIssue::new(format!("derive.{name}"), e.to_string())),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (_, f) in &out {
            if !seen.insert(f.name().clone()) {
                issues.push(FieldIssue::new(
                    "",
                    format!("the output would have two columns named `{}`", f.name()),
                ));
            }
        }
        if out.is_empty() {
            issues.push(FieldIssue::new("", "the output would have no columns"));
        }
        if issues.is_empty() { Ok(out) } else { Err(issues) }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Column(usize),
    Constant(serde_json::Value),
    Derived(String),
}

impl TransformConfig for SelectConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        if self.keep.is_some() && !self.drop.is_empty() {
            return vec![FieldIssue::new("drop", "use `keep` or `drop`, not both")];
        }
        Vec::new()
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        let plan = self.plan(input)?;
        Ok(Arc::new(Schema::new(plan.into_iter().map(|(_, f)| f).collect::<Vec<_>>())))
    }

    fn build(&self, _cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let plan = self.plan(input).map_err(|e| BuildError(format!("{e:?}")))?;
        let schema = Arc::new(Schema::new(plan.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>()));
        let mut steps = Vec::with_capacity(plan.len());
        for (s, _) in plan {
            steps.push(match s {
                Source::Column(i) => Step::Column(i),
                Source::Constant(v) => Step::Constant(v),
                Source::Derived(text) => Step::Derived(
                    crate::derive::Derived::compile(&text, input).map_err(|e| BuildError(e.to_string()))?.0,
                ),
            });
        }
        Ok(Box::new(Select { plan: steps, schema }))
    }
}

spillway_core::register_transform! {
    config: SelectConfig,
    name: "select",
    description: "Keeps, drops or renames columns; adds constant and derived columns.",
    example: "type: select\ninputs: [flows]\nkeep: [exporter, in_if, out_if, bytes, packets, dst_port]\nrename: { in_if: interface }\nadd: { site: fra1 }\nderive: { kbytes: \"bytes / 1000\", is_web: \"dst_port in [80, 443]\" }\n",
}

enum Step {
    Column(usize),
    Constant(serde_json::Value),
    Derived(crate::derive::Derived),
}

struct Select {
    plan: Vec<Step>,
    schema: SchemaRef,
}

fn constant(v: &serde_json::Value, n: usize) -> ArrayRef {
    match v {
        serde_json::Value::String(s) => {
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s.as_str(), n)))
        }
        serde_json::Value::Bool(b) => Arc::new(BooleanArray::from(vec![*b; n])),
        serde_json::Value::Number(x) if x.is_i64() => {
            Arc::new(Int64Array::from(vec![x.as_i64().unwrap_or(0); n]))
        }
        serde_json::Value::Number(x) => Arc::new(Float64Array::from(vec![x.as_f64().unwrap_or(0.0); n])),
        _ => Arc::new(StringArray::from(vec![None::<&str>; n])),
    }
}

impl Transform for Select {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let n = batch.rows();
        let fail = |e: arrow::error::ArrowError| TransformError {
            reason: DropReason::PluginError,
            message: e.to_string(),
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.plan.len());
        for s in &self.plan {
            cols.push(match s {
                Step::Column(i) => batch.data.column(*i).clone(),
                Step::Constant(v) => constant(v, n),
                Step::Derived(d) => d.evaluate(&batch.data).map_err(fail)?,
            });
        }
        let data = RecordBatch::try_new(self.schema.clone(), cols).map_err(fail)?;
        out.push(batch.with_data(data));
        Ok(())
    }
}
