//! `table` sink and `enrich` transform: keep the latest row per key of one
//! stream (interfaces polled over SNMP, say), and join another stream (flows)
//! with it by mapped keys.
//!
//! ```yaml
//! sinks:
//!   if_table: { type: table, inputs: [ifaces], key: [exporter, if_index], ttl: 1h }
//! transforms:
//!   named:
//!     type: enrich
//!     inputs: [flows]
//!     table: if_table
//!     on: { exporter: exporter, in_if: if_index }   # flow column: table key column
//!     fields: [if_name, if_alias]
//!     prefix: in_
//! ```
//!
//! The table is a sink: a row is delivered once it is in the table. It is
//! bounded (`max_rows`, oldest rows evicted, counted) and rows older than
//! `ttl` no longer match. `enrich` reads it under a read lock a batch at a
//! time; a flow whose key is not in the table keeps nulls and is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use async_trait::async_trait;
use serde::Deserialize;
use spillway_core::ack::AckStatus;
use spillway_core::component::{
    ComponentError, Emitter, Sink, SinkContext, SinkInput, Transform, TransformError,
};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::Counter;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SinkConfig, TransformConfig};

/// Config of the `table` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The key columns; a new row with the same key replaces the old one.
    pub key: Vec<String>,
    /// Rows older than this no longer match.
    #[serde(default = "default_ttl")]
    pub ttl: HumanDuration,
    /// Most rows held; the oldest are evicted beyond it.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_max_rows() -> usize {
    1_000_000
}

/// Key row bytes → (value row, when it was stored).
type Rows = HashMap<Box<[u8]>, (OwnedRow, Instant)>;

/// The rows of a table, shared with the `enrich` transforms that read it.
pub struct TableState {
    key_columns: Vec<String>,
    key_conv: RowConverter,
    value_fields: Vec<Field>,
    value_conv: RowConverter,
    rows: RwLock<Rows>,
    ttl: Duration,
}

impl SinkConfig for TableConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.key.is_empty() {
            v.push(FieldIssue::new("key", "name at least one key column"));
        }
        if self.max_rows == 0 {
            v.push(FieldIssue::new("max_rows", "must be at least 1"));
        }
        v
    }

    fn check_input(&self, input: &SchemaRef) -> Vec<FieldIssue> {
        self.key
            .iter()
            .filter(|k| input.field_with_name(k).is_err())
            .map(|k| FieldIssue::new("key", format!("there is no column `{k}`")))
            .collect()
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Sink>, BuildError> {
        let key_idx: Vec<usize> = self
            .key
            .iter()
            .map(|k| input.index_of(k))
            .collect::<Result<_, _>>()
            .map_err(|e| BuildError(e.to_string()))?;
        let value_idx: Vec<usize> = (0..input.fields().len()).filter(|i| !key_idx.contains(i)).collect();
        let sort = |idx: &[usize]| {
            idx.iter().map(|&i| SortField::new(input.field(i).data_type().clone())).collect::<Vec<_>>()
        };
        let state = Arc::new(TableState {
            key_columns: self.key.clone(),
            key_conv: RowConverter::new(sort(&key_idx)).map_err(|e| BuildError(e.to_string()))?,
            value_fields: value_idx.iter().map(|&i| input.field(i).clone()).collect(),
            value_conv: RowConverter::new(sort(&value_idx)).map_err(|e| BuildError(e.to_string()))?,
            rows: RwLock::new(HashMap::new()),
            ttl: self.ttl.get(),
        });
        cx.publish(state.clone());
        let evicted = cx
            .metrics
            .counter("spillway_table_evicted_rows_total", "Rows evicted from a table to respect max_rows.");
        Ok(Box::new(Table { state, key_idx, value_idx, max_rows: self.max_rows, evicted }))
    }
}

spillway_core::register_sink! {
    config: TableConfig,
    name: "table",
    description: "Keeps the latest row per key of its input (bounded, with a TTL) for enrich transforms to join.",
    example: "type: table\ninputs: [flows]\nkey: [exporter, in_if]\nttl: 1h\n",
}

struct Table {
    state: Arc<TableState>,
    key_idx: Vec<usize>,
    value_idx: Vec<usize>,
    max_rows: usize,
    evicted: Counter,
}

#[async_trait]
impl Sink for Table {
    async fn run(self: Box<Self>, mut input: SinkInput, cx: SinkContext) -> Result<(), ComponentError> {
        while let Some(batch) = input.recv().await {
            let d = &batch.data;
            let keys: Vec<ArrayRef> = self.key_idx.iter().map(|&i| d.column(i).clone()).collect();
            let values: Vec<ArrayRef> = self.value_idx.iter().map(|&i| d.column(i).clone()).collect();
            let rows = self
                .state
                .key_conv
                .convert_columns(&keys)
                .and_then(|k| Ok((k, self.state.value_conv.convert_columns(&values)?)));
            let (k, v) = match rows {
                Ok(r) => r,
                Err(e) => {
                    cx.events.dropped(
                        DropReason::SinkError,
                        batch.rows() as u64,
                        &format_args!("rows could not be stored in the table: {e}"),
                    );
                    batch.acks.settle(AckStatus::Rejected);
                    continue;
                }
            };
            let now = Instant::now();
            let mut map = self.state.rows.write().unwrap_or_else(|e| e.into_inner());
            for i in 0..d.num_rows() {
                map.insert(k.row(i).as_ref().into(), (v.row(i).owned(), now));
            }
            if map.len() > self.max_rows {
                // Evict the oldest tenth beyond the bound at once, so that a
                // full table does not sort on every batch.
                let excess = map.len() - self.max_rows + self.max_rows / 10;
                let mut ages: Vec<(Instant, Box<[u8]>)> =
                    map.iter().map(|(k, (_, t))| (*t, k.clone())).collect();
                ages.sort_unstable_by_key(|(t, _)| *t);
                for (_, k) in ages.into_iter().take(excess) {
                    map.remove(&k);
                }
                self.evicted.add(excess as u64);
            }
            drop(map);
            cx.events.delivered(batch.rows() as u64);
            batch.acks.settle(AckStatus::Delivered);
        }
        Ok(())
    }
}

/// Config of the `enrich` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// The `table` sink to read.
    pub table: String,
    /// Flow column → table key column; must cover the table's key.
    pub on: BTreeMap<String, String>,
    /// Table columns to add (all non-key columns when empty).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Prefix of the added columns.
    #[serde(default)]
    pub prefix: String,
}

impl EnrichConfig {
    fn plan(&self, input: &SchemaRef, table: &SchemaRef) -> Result<(Schema, Vec<String>), Vec<FieldIssue>> {
        let mut issues = Vec::new();
        for (flow, key) in &self.on {
            match (input.field_with_name(flow), table.field_with_name(key)) {
                (Err(_), _) => {
                    issues.push(FieldIssue::new("on", format!("there is no column `{flow}` in the input")))
                }
                (_, Err(_)) => issues
                    .push(FieldIssue::new("on", format!("table `{}` has no column `{key}`", self.table))),
                (Ok(a), Ok(b)) if a.data_type() != b.data_type() => issues.push(FieldIssue::new(
                    "on",
                    format!("`{flow}` is {} but the table's `{key}` is {}", a.data_type(), b.data_type()),
                )),
                _ => {}
            }
        }
        let keys: Vec<&String> = self.on.values().collect();
        let fields: Vec<String> = if self.fields.is_empty() {
            table.fields().iter().map(|f| f.name().clone()).filter(|n| !keys.contains(&n)).collect()
        } else {
            self.fields.clone()
        };
        let mut out: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for f in &fields {
            match table.field_with_name(f) {
                Ok(tf) => {
                    let name = format!("{}{f}", self.prefix);
                    if input.field_with_name(&name).is_ok() {
                        issues.push(FieldIssue::new("prefix", format!("column `{name}` already exists")));
                    }
                    out.push(Arc::new(Field::new(name, tf.data_type().clone(), true)));
                }
                Err(_) => issues
                    .push(FieldIssue::new("fields", format!("table `{}` has no column `{f}`", self.table))),
            }
        }
        if issues.is_empty() { Ok((Schema::new(out), fields)) } else { Err(issues) }
    }
}

impl TransformConfig for EnrichConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        if self.on.is_empty() {
            return vec![FieldIssue::new("on", "map at least one flow column to a table key column")];
        }
        Vec::new()
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        Ok(input.clone())
    }

    fn references(&self) -> Vec<spillway_core::registry::Reference> {
        vec![spillway_core::registry::Reference::to("table", &self.table, &["table"])]
    }

    fn output_schema_with(
        &self,
        input: &SchemaRef,
        referenced: &HashMap<String, SchemaRef>,
    ) -> Result<SchemaRef, Vec<FieldIssue>> {
        let table = referenced
            .get(&self.table)
            .ok_or_else(|| vec![FieldIssue::new("table", format!("`{}` is not a table", self.table))])?;
        self.plan(input, table).map(|(s, _)| Arc::new(s))
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let state: Arc<TableState> = cx
            .lookup(&self.table)
            .ok_or_else(|| BuildError(format!("`{}` is not a `table` sink of this pipeline", self.table)))?;
        let mut table_fields: Vec<Arc<Field>> = Vec::new();
        for k in &state.key_columns {
            let flow = self.on.iter().find(|(_, t)| *t == k).map(|(f, _)| f).ok_or_else(|| {
                BuildError(format!("`on` does not map table `{}`'s key column `{k}`", self.table))
            })?;
            table_fields
                .push(Arc::new(input.field_with_name(flow).map_err(|e| BuildError(e.to_string()))?.clone()));
        }
        if self.on.len() != state.key_columns.len() {
            return Err(BuildError(format!(
                "`on` maps columns that are not table `{}`'s key {:?}",
                self.table, state.key_columns
            )));
        }
        let flow_keys: Vec<usize> = state
            .key_columns
            .iter()
            .map(|k| {
                self.on.iter().find(|(_, t)| *t == k).map(|(f, _)| input.index_of(f)).expect("checked above")
            })
            .collect::<Result<_, _>>()
            .map_err(|e| BuildError(e.to_string()))?;
        let mut tschema: Vec<Field> = state
            .key_columns
            .iter()
            .zip(&table_fields)
            .map(|(k, f)| Field::new(k, f.data_type().clone(), true))
            .collect();
        tschema.extend(state.value_fields.iter().cloned());
        let (schema, fields) =
            self.plan(input, &Arc::new(Schema::new(tschema))).map_err(|e| BuildError(format!("{e:?}")))?;
        let picks: Vec<usize> = fields
            .iter()
            .map(|f| {
                state
                    .value_fields
                    .iter()
                    .position(|v| v.name() == f)
                    .ok_or_else(|| BuildError(format!("the table has no column `{f}`")))
            })
            .collect::<Result<_, _>>()?;
        let nulls: Vec<ArrayRef> =
            state.value_fields.iter().map(|f| new_null_array(f.data_type(), 1)).collect();
        let null_row =
            state.value_conv.convert_columns(&nulls).map_err(|e| BuildError(e.to_string()))?.row(0).owned();
        Ok(Box::new(Enrich {
            state,
            flow_keys,
            picks,
            null_row,
            schema: Arc::new(schema),
            misses: cx
                .metrics
                .counter("spillway_enrich_misses_total", "Records whose key is not in the table."),
        }))
    }
}

spillway_core::register_transform! {
    config: EnrichConfig,
    name: "enrich",
    description: "Joins records with a table sink's latest rows on mapped key columns; misses keep nulls and are counted.",
    example: "type: enrich\ninputs: [flows]\ntable: if_table\non: { exporter: exporter, in_if: in_if }\nfields: [packets]\nprefix: last_\n",
}

struct Enrich {
    state: Arc<TableState>,
    flow_keys: Vec<usize>,
    picks: Vec<usize>,
    null_row: OwnedRow,
    schema: SchemaRef,
    misses: Counter,
}

impl Transform for Enrich {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let fail = |e: arrow::error::ArrowError| TransformError {
            reason: DropReason::PluginError,
            message: e.to_string(),
        };
        let d = &batch.data;
        let keys: Vec<ArrayRef> = self.flow_keys.iter().map(|&i| d.column(i).clone()).collect();
        let key_rows = self.state.key_conv.convert_columns(&keys).map_err(fail)?;
        let map = self.state.rows.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut misses = 0u64;
        let found: Vec<arrow::row::Row<'_>> = (0..d.num_rows())
            .map(|i| match map.get(key_rows.row(i).as_ref()) {
                Some((v, t)) if now.duration_since(*t) <= self.state.ttl => v.row(),
                _ => {
                    misses += 1;
                    self.null_row.row()
                }
            })
            .collect();
        let values = self.state.value_conv.convert_rows(found).map_err(fail)?;
        drop(map);
        self.misses.add(misses);
        let mut cols: Vec<ArrayRef> = d.columns().to_vec();
        cols.extend(self.picks.iter().map(|&p| values[p].clone()));
        let data = RecordBatch::try_new(self.schema.clone(), cols).map_err(fail)?;
        out.push(batch.with_data(data));
        Ok(())
    }
}

impl std::fmt::Debug for TableState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableState").field("key", &self.key_columns).finish()
    }
}
