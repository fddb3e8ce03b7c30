//! `aggregate`: tumbling event-time windows, grouped, with sum / count / min
//! / max — e.g. bytes per customer per 5 minutes for billing.
//!
//! A window `[start, start + window)` closes when the watermark — the latest
//! event time seen minus `allowed_lateness` — passes its end; then one record
//! per (window, group) is emitted. A record whose window has already closed
//! is late: dropped and counted as `late`. Everything still open is emitted at
//! shutdown. Input records count as `merged` in the ledger when their window
//! is emitted, the result rows as `created`.
//!
//! State is bounded by `max_groups`: beyond it the oldest open window is
//! closed early (its results are emitted and later records for it are late),
//! so memory stays bounded whatever the key cardinality.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{OwnedRow, RowConverter, SortField};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};

/// Config of the `aggregate` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Window length (tumbling, aligned to the epoch).
    pub window: HumanDuration,
    /// The event-time column (nanosecond timestamps).
    #[serde(default = "default_time_column")]
    pub time_column: String,
    /// Columns that make a group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Output column → `sum(COL)`, `count()`, `min(COL)` or `max(COL)`.
    pub aggregates: BTreeMap<String, String>,
    /// How far behind the latest event time a record may be and still
    /// count in its window.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: HumanDuration,
    /// Most (window, group) entries held; see the module docs.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

fn default_time_column() -> String {
    "time_received".into()
}
fn default_lateness() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_max_groups() -> usize {
    1_000_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Sum,
    Count,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Unsigned,
    Signed,
    Float,
    Time,
}

#[derive(Debug, Clone)]
struct Agg {
    output: String,
    func: Func,
    column: Option<(usize, Num, DataType)>,
}

fn parse_agg(s: &str) -> Result<(Func, Option<String>), String> {
    let s = s.trim();
    let (name, rest) = s
        .split_once('(')
        .ok_or_else(|| format!("`{s}` is not `sum(COL)`, `count()`, `min(COL)` or `max(COL)`"))?;
    let arg = rest.strip_suffix(')').ok_or_else(|| format!("`{s}` lacks a closing `)`"))?.trim();
    let func = match name.trim() {
        "sum" => Func::Sum,
        "count" => Func::Count,
        "min" => Func::Min,
        "max" => Func::Max,
        other => return Err(format!("unknown function `{other}` (use sum, count, min or max)")),
    };
    match (func, arg.is_empty()) {
        (Func::Count, true) => Ok((func, None)),
        (Func::Count, false) => Err("`count()` takes no column".into()),
        (_, true) => Err(format!("`{name}()` needs a column")),
        (_, false) => Ok((func, Some(arg.to_string()))),
    }
}

impl AggregateConfig {
    fn plan(&self, input: &SchemaRef) -> Result<(usize, Vec<usize>, Vec<Agg>), Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let time = match input.index_of(&self.time_column) {
            Ok(i) if matches!(input.field(i).data_type(), DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
                Some(i)
            }
            Ok(i) => {
                issues.push(FieldIssue::new(
                    "time_column",
                    format!(
                        "`{}` is {}, not a nanosecond timestamp",
                        self.time_column,
                        input.field(i).data_type()
                    ),
                ));
                None
            }
            Err(_) => {
                issues.push(FieldIssue::new(
                    "time_column",
                    format!("there is no column `{}`", self.time_column),
                ));
                None
            }
        };
        let mut groups = Vec::new();
        for g in &self.group_by {
            match input.index_of(g) {
                Ok(i) => groups.push(i),
                Err(_) => issues.push(FieldIssue::new("group_by", format!("there is no column `{g}`"))),
            }
        }
        let mut aggs = Vec::new();
        for (output, spec) in &self.aggregates {
            let field = format!("aggregates.{output}");
            match parse_agg(spec) {
                Err(e) => issues.push(FieldIssue::new(field, e)),
                Ok((func, None)) => aggs.push(Agg { output: output.clone(), func, column: None }),
                Ok((func, Some(col))) => match input.index_of(&col) {
                    Err(_) => issues.push(FieldIssue::new(field, format!("there is no column `{col}`"))),
                    Ok(i) => {
                        let ty = input.field(i).data_type().clone();
                        let num = match &ty {
                            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                                Num::Unsigned
                            }
                            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                                Num::Signed
                            }
                            DataType::Float32 | DataType::Float64 => Num::Float,
                            DataType::Timestamp(TimeUnit::Nanosecond, _) if func != Func::Sum => Num::Time,
                            other => {
                                issues.push(FieldIssue::new(
                                    field,
                                    format!("cannot aggregate a {other} column with {spec}"),
                                ));
                                continue;
                            }
                        };
                        aggs.push(Agg { output: output.clone(), func, column: Some((i, num, ty)) });
                    }
                },
            }
        }
        if aggs.is_empty() && issues.is_empty() {
            issues.push(FieldIssue::new("aggregates", "name at least one aggregate"));
        }
        match time {
            Some(t) if issues.is_empty() => Ok((t, groups, aggs)),
            _ => Err(issues),
        }
    }

    fn schema(&self, input: &SchemaRef, groups: &[usize], aggs: &[Agg]) -> SchemaRef {
        let ts = spillway_core::schema::timestamp_type();
        let mut fields =
            vec![Field::new("window_start", ts.clone(), false), Field::new("window_end", ts, false)];
        for &g in groups {
            fields.push(input.field(g).clone());
        }
        for a in aggs {
            let ty = match (a.func, &a.column) {
                (Func::Count, _) => DataType::UInt64,
                (Func::Sum, Some((_, Num::Unsigned, _))) => DataType::UInt64,
                (Func::Sum, Some((_, Num::Signed, _))) => DataType::Int64,
                (Func::Sum, _) => DataType::Float64,
                (_, Some((_, _, ty))) => ty.clone(),
                (_, None) => DataType::UInt64,
            };
            fields.push(Field::new(&a.output, ty, a.func != Func::Count && a.func != Func::Sum));
        }
        Arc::new(Schema::new(fields))
    }
}

impl TransformConfig for AggregateConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.window.get().as_nanos() == 0 {
            v.push(FieldIssue::new("window", "must be longer than 0"));
        }
        if self.max_groups == 0 {
            v.push(FieldIssue::new("max_groups", "must be at least 1"));
        }
        for (k, spec) in &self.aggregates {
            if let Err(e) = parse_agg(spec) {
                v.push(FieldIssue::new(format!("aggregates.{k}"), e));
            }
        }
        v
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        let (_, groups, aggs) = self.plan(input)?;
        Ok(self.schema(input, &groups, &aggs))
    }

    fn build(&self, _cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let (time, groups, aggs) = self.plan(input).map_err(|e| BuildError(format!("{e:?}")))?;
        let converter = RowConverter::new(
            groups.iter().map(|&g| SortField::new(input.field(g).data_type().clone())).collect(),
        )
        .map_err(|e| BuildError(e.to_string()))?;
        Ok(Box::new(Aggregate {
            schema: self.schema(input, &groups, &aggs),
            time,
            groups,
            aggs,
            window: self.window.get().as_nanos().min(i64::MAX as u128) as i64,
            lateness: self.allowed_lateness.get().as_nanos().min(i64::MAX as u128) as i64,
            max_groups: self.max_groups,
            converter,
            index: HashMap::new(),
            entries: Vec::new(),
            key: Vec::new(),
            max_time: i64::MIN,
            closed_before: i64::MIN,
            window_acks: BTreeMap::new(),
            touched: Vec::new(),
        }))
    }
}

spillway_core::register_transform! {
    config: AggregateConfig,
    name: "aggregate",
    description: "Tumbling event-time windows grouped by fields with sum/count/min/max; late records counted.",
    example: "type: aggregate\ninputs: [flows]\nwindow: 5m\ngroup_by: [exporter, in_if]\naggregates: { bytes: sum(bytes), packets: sum(packets), flows: count() }\n",
}

/// One accumulator value: integers as i128 (covers u64 and i64), floats as f64.
#[derive(Debug, Clone, Copy)]
enum Acc {
    Int(Option<i128>),
    Float(Option<f64>),
    Count(u64),
}

struct Entry {
    window: i64,
    row: OwnedRow,
    records: u64,
    accs: Vec<Acc>,
}

struct Aggregate {
    schema: SchemaRef,
    time: usize,
    groups: Vec<usize>,
    aggs: Vec<Agg>,
    window: i64,
    lateness: i64,
    max_groups: usize,
    converter: RowConverter,
    /// (window bytes ++ group row bytes) → index in `entries`.
    index: HashMap<Box<[u8]>, usize>,
    entries: Vec<Entry>,
    key: Vec<u8>,
    max_time: i64,
    /// Windows starting before this have been emitted.
    closed_before: i64,
    /// Acknowledgements of the batches that fed each open window: settled
    /// only once the window's results are delivered.
    window_acks: BTreeMap<i64, spillway_core::ack::Acks>,
    touched: Vec<i64>,
}

fn int_at(col: &dyn Array, num: Num, i: usize) -> Option<i128> {
    use arrow::datatypes::*;
    if col.is_null(i) {
        return None;
    }
    Some(match (num, col.data_type()) {
        (_, DataType::UInt8) => col.as_primitive::<UInt8Type>().value(i) as i128,
        (_, DataType::UInt16) => col.as_primitive::<UInt16Type>().value(i) as i128,
        (_, DataType::UInt32) => col.as_primitive::<UInt32Type>().value(i) as i128,
        (_, DataType::UInt64) => col.as_primitive::<UInt64Type>().value(i) as i128,
        (_, DataType::Int8) => col.as_primitive::<Int8Type>().value(i) as i128,
        (_, DataType::Int16) => col.as_primitive::<Int16Type>().value(i) as i128,
        (_, DataType::Int32) => col.as_primitive::<Int32Type>().value(i) as i128,
        (_, DataType::Int64) => col.as_primitive::<Int64Type>().value(i) as i128,
        (_, DataType::Timestamp(_, _)) => col.as_primitive::<TimestampNanosecondType>().value(i) as i128,
        _ => return None,
    })
}

fn float_at(col: &dyn Array, i: usize) -> Option<f64> {
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        DataType::Float32 => Some(col.as_primitive::<arrow::datatypes::Float32Type>().value(i) as f64),
        DataType::Float64 => Some(col.as_primitive::<arrow::datatypes::Float64Type>().value(i)),
        _ => None,
    }
}

impl Aggregate {
    fn fresh_accs(&self) -> Vec<Acc> {
        self.aggs
            .iter()
            .map(|a| match (a.func, &a.column) {
                (Func::Count, _) => Acc::Count(0),
                (_, Some((_, Num::Float, _))) => Acc::Float(None),
                _ => Acc::Int(None),
            })
            .collect()
    }

    /// Emits every entry whose window starts before `before`.
    fn emit_before(&mut self, before: i64, out: &mut Emitter) -> Result<(), String> {
        if !self.entries.iter().any(|e| e.window < before) {
            self.closed_before = self.closed_before.max(before);
            return Ok(());
        }
        let (done, keep): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.entries).into_iter().partition(|e| e.window < before);
        self.entries = keep;
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            let mut k = e.window.to_be_bytes().to_vec();
            k.extend_from_slice(e.row.row().as_ref());
            self.index.insert(k.into_boxed_slice(), i);
        }
        self.closed_before = self.closed_before.max(before);
        let mut acks = spillway_core::ack::Acks::none();
        let open = self.window_acks.split_off(&before);
        for a in std::mem::replace(&mut self.window_acks, open).values() {
            acks.extend(a);
        }
        self.emit(done, acks, out)
    }

    fn emit(
        &self,
        mut done: Vec<Entry>,
        acks: spillway_core::ack::Acks,
        out: &mut Emitter,
    ) -> Result<(), String> {
        if done.is_empty() {
            return Ok(());
        }
        done.sort_by_key(|e| e.window);
        let n = done.len();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(done.iter().map(|e| e.window))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(
                    done.iter().map(|e| e.window.saturating_add(self.window)),
                )
                .with_timezone("UTC"),
            ),
        ];
        if !self.groups.is_empty() {
            let rows = done.iter().map(|e| e.row.row());
            cols.extend(self.converter.convert_rows(rows).map_err(|e| e.to_string())?);
        }
        for (j, a) in self.aggs.iter().enumerate() {
            let field = self.schema.field(2 + self.groups.len() + j);
            let col: ArrayRef = match field.data_type() {
                DataType::Float64 => {
                    Arc::new(Float64Array::from_iter(done.iter().map(|e| match e.accs[j] {
                        Acc::Float(v) => v.or((a.func == Func::Sum).then_some(0.0)),
                        _ => None,
                    })))
                }
                DataType::UInt64 => Arc::new(UInt64Array::from_iter(done.iter().map(|e| match e.accs[j] {
                    Acc::Count(c) => Some(c),
                    Acc::Int(v) => {
                        v.map(|v| v.clamp(0, u64::MAX as i128) as u64).or((a.func == Func::Sum).then_some(0))
                    }
                    Acc::Float(_) => None,
                }))),
                DataType::Int64 => Arc::new(Int64Array::from_iter(done.iter().map(|e| {
                    match e.accs[j] {
                        Acc::Int(v) => v
                            .map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                            .or((a.func == Func::Sum).then_some(0)),
                        _ => None,
                    }
                }))),
                other => {
                    // min/max keep the input's own type.
                    let ints = Int64Array::from_iter(done.iter().map(|e| match e.accs[j] {
                        Acc::Int(v) => v.map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64),
                        _ => None,
                    }));
                    let cast = arrow::compute::cast(&ints, other).map_err(|e| e.to_string())?;
                    if let DataType::Timestamp(_, Some(tz)) = other {
                        Arc::new(
                            cast.as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                                .clone()
                                .with_timezone(tz.clone()),
                        )
                    } else {
                        cast
                    }
                }
            };
            cols.push(col);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| e.to_string())?;
        let merged: u64 = done.iter().map(|e| e.records).sum();
        let acks = acks;
        out.merged(merged);
        out.created(n as u64);
        let meta = spillway_core::BatchMeta::new("aggregate".into(), 0, 0);
        out.push(spillway_core::Batch::new(batch, meta, acks));
        Ok(())
    }
}

impl Transform for Aggregate {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let fail = |message: String| TransformError { reason: DropReason::PluginError, message };
        let data = &batch.data;
        let times = data.column(self.time).as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let group_cols: Vec<ArrayRef> = self.groups.iter().map(|&g| data.column(g).clone()).collect();
        let rows = if self.groups.is_empty() {
            None
        } else {
            Some(self.converter.convert_columns(&group_cols).map_err(|e| fail(e.to_string()))?)
        };
        let (mut late, mut no_time) = (0u64, 0u64);
        for i in 0..data.num_rows() {
            if times.is_null(i) {
                no_time += 1;
                continue;
            }
            let t = times.value(i);
            let window = t.div_euclid(self.window) * self.window;
            if window < self.closed_before {
                late += 1;
                continue;
            }
            self.max_time = self.max_time.max(t);
            self.key.clear();
            self.key.extend_from_slice(&window.to_be_bytes());
            if let Some(r) = &rows {
                self.key.extend_from_slice(r.row(i).as_ref());
            }
            let idx = match self.index.get(self.key.as_slice()) {
                Some(&idx) => idx,
                None => {
                    let row = match &rows {
                        Some(r) => r.row(i).owned(),
                        None => self.converter.empty_rows(0, 0).row(0).owned(),
                    };
                    let accs = self.fresh_accs();
                    self.entries.push(Entry { window, row, records: 0, accs });
                    let idx = self.entries.len() - 1;
                    self.index.insert(self.key.clone().into_boxed_slice(), idx);
                    idx
                }
            };
            if self.touched.last() != Some(&window) && !self.touched.contains(&window) {
                self.touched.push(window);
            }
            let e = &mut self.entries[idx];
            e.records += 1;
            for (acc, a) in e.accs.iter_mut().zip(&self.aggs) {
                let Some((c, num, _)) = &a.column else {
                    if let Acc::Count(n) = acc {
                        *n += 1;
                    }
                    continue;
                };
                let col = data.column(*c).as_ref();
                match acc {
                    Acc::Int(v) => {
                        if let Some(x) = int_at(col, *num, i) {
                            *v = Some(match (a.func, *v) {
                                (_, None) => x,
                                (Func::Sum, Some(s)) => s.saturating_add(x),
                                (Func::Min, Some(m)) => m.min(x),
                                (_, Some(m)) => m.max(x),
                            });
                        }
                    }
                    Acc::Float(v) => {
                        if let Some(x) = float_at(col, i) {
                            *v = Some(match (a.func, *v) {
                                (_, None) => x,
                                (Func::Sum, Some(s)) => s + x,
                                (Func::Min, Some(m)) => m.min(x),
                                (_, Some(m)) => m.max(x),
                            });
                        }
                    }
                    Acc::Count(n) => *n += 1,
                }
            }
        }
        for w in self.touched.drain(..) {
            self.window_acks.entry(w).or_default().extend(&batch.acks);
        }
        out.dropped(DropReason::Late, late, &"arrived after its window closed (the watermark passed it)");
        out.dropped(DropReason::Malformed, no_time, &"the time column is null");
        // Close what the watermark has passed, then enforce the bound.
        let watermark = self.max_time.saturating_sub(self.lateness);
        let closable =
            watermark.saturating_sub(self.window).div_euclid(self.window) * self.window + self.window;
        if self.max_time != i64::MIN && closable > self.closed_before {
            self.emit_before(closable, out).map_err(fail)?;
        }
        while self.entries.len() > self.max_groups {
            let oldest = self.entries.iter().map(|e| e.window).min().unwrap_or(i64::MAX);
            tracing::warn!(
                window_start = oldest,
                groups = self.entries.len(),
                "aggregate state is full: closing the oldest window early"
            );
            self.emit_before(oldest.saturating_add(1), out).map_err(fail)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) {
        if let Err(e) = self.emit_before(i64::MAX, out) {
            tracing::error!(error = %e, "aggregate could not emit its open windows at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeBinaryArray, UInt64Array};
    use spillway_core::ledger::{ComponentKind, Ledger};

    const S: i64 = 1_000_000_000;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("t", spillway_core::schema::timestamp_type(), true),
            Field::new("who", spillway_core::schema::address_type(), false),
            Field::new("bytes", DataType::UInt64, false),
        ]))
    }

    fn batch(rows: &[(i64, u8, u64)]) -> spillway_core::Batch {
        let t = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.0)).with_timezone("UTC");
        let who = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| [r.1; 16])).unwrap();
        let bytes = UInt64Array::from_iter_values(rows.iter().map(|r| r.2));
        let data =
            RecordBatch::try_new(input_schema(), vec![Arc::new(t), Arc::new(who), Arc::new(bytes)]).unwrap();
        spillway_core::Batch::new(
            data,
            spillway_core::BatchMeta::new("t".into(), 0, 0),
            spillway_core::ack::Acks::none(),
        )
    }

    fn config(lateness: u64) -> AggregateConfig {
        AggregateConfig {
            window: HumanDuration::from_secs(60),
            time_column: "t".into(),
            group_by: vec!["who".into()],
            aggregates: [
                ("bytes".to_string(), "sum(bytes)".to_string()),
                ("n".to_string(), "count()".to_string()),
                ("last".to_string(), "max(t)".to_string()),
            ]
            .into_iter()
            .collect(),
            allowed_lateness: HumanDuration::from_secs(lateness),
            max_groups: 1000,
        }
    }

    /// (window start s, who, bytes, n) of every emitted row.
    fn rows(out: &mut Emitter) -> Vec<(i64, u8, u64, u64)> {
        let mut v = Vec::new();
        for b in out.drain() {
            let d = &b.data;
            let ws = d.column(0).as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            let who = d.column(2).as_fixed_size_binary();
            let bytes = d.column_by_name("bytes").unwrap().as_primitive::<arrow::datatypes::UInt64Type>();
            let n = d.column_by_name("n").unwrap().as_primitive::<arrow::datatypes::UInt64Type>();
            for i in 0..d.num_rows() {
                v.push((ws.value(i) / S, who.value(i)[0], bytes.value(i), n.value(i)));
            }
        }
        v.sort();
        v
    }

    #[test]
    fn windows_close_on_the_watermark_late_records_are_counted_and_shutdown_flushes() {
        let ledger = Ledger::new();
        let entry = ledger.register("agg", ComponentKind::Transform);
        let mut out = Emitter::new(entry.clone());
        let mut t = config(10).build(&BuildContext::standalone("agg"), &input_schema()).unwrap();
        // Window [0, 60): shuffled, two groups.
        t.process(batch(&[(30 * S, 1, 10), (5 * S, 2, 1), (59 * S, 1, 5)]), &mut out).unwrap();
        assert!(rows(&mut out).is_empty(), "the window is still open");
        // 65 s is within the lateness of window 0's end: it stays open.
        t.process(batch(&[(65 * S, 1, 7), (58 * S, 2, 2)]), &mut out).unwrap();
        assert!(rows(&mut out).is_empty());
        // 75 s moves the watermark to 65 s ≥ 60 s: window 0 closes.
        t.process(batch(&[(75 * S, 2, 3)]), &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(0, 1, 15, 2), (0, 2, 3, 2)]);
        // A record for the closed window is late; one without a time is malformed.
        let mut b = batch(&[(10 * S, 1, 100), (70 * S, 1, 1)]);
        let times = TimestampNanosecondArray::from(vec![Some(10 * S), None]).with_timezone("UTC");
        let mut cols = b.data.columns().to_vec();
        cols[0] = Arc::new(times);
        b.data = RecordBatch::try_new(input_schema(), cols).unwrap();
        t.process(b, &mut out).unwrap();
        // Shutdown in mid-window emits what is open.
        t.finish(&mut out);
        assert_eq!(rows(&mut out), vec![(60, 1, 7, 1), (60, 2, 3, 1)]);
        let e = entry.snapshot();
        // What the runner counts around the transform: 8 records in, the 4
        // result rows out.
        entry.received(8);
        entry.emitted(4);
        let e2 = entry.snapshot();
        assert_eq!((e.merged, e.created), (6, 4));
        assert_eq!(e2.dropped.get("late"), Some(&1));
        assert_eq!(e2.dropped.get("malformed"), Some(&1));
        assert_eq!(e2.in_flight, 0, "8 received + 4 made = 4 emitted + 6 merged + 1 late + 1 malformed");
    }

    #[test]
    fn state_is_bounded_by_closing_the_oldest_window_early() {
        let ledger = Ledger::new();
        let entry = ledger.register("agg", ComponentKind::Transform);
        let mut out = Emitter::new(entry);
        let mut cfg = config(3600);
        cfg.max_groups = 2;
        let mut t = cfg.build(&BuildContext::standalone("agg"), &input_schema()).unwrap();
        t.process(batch(&[(0, 1, 1), (0, 2, 1), (61 * S, 1, 1)]), &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(0, 1, 1, 1), (0, 2, 1, 1)]);
    }
}
