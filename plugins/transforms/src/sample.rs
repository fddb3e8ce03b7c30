//! `sample`: keep 1 in N records at random or by a hash of key fields, or
//! upscale counters by each record's sampling rate.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};

/// How records are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each record independently with probability 1/rate.
    Random,
    /// A record iff the hash of its key fields falls in 1/rate of the hash
    /// space: every collector in a fleet keeps the same flows.
    Hash,
    /// Keep everything; multiply `bytes` and `packets` by `sampling_rate`,
    /// keeping the originals as `bytes_raw` and `packets_raw`.
    Upscale,
}

/// Config of the `sample` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// `random`, `hash` or `upscale`.
    pub mode: Mode,
    /// Keep 1 in `rate` (random and hash modes).
    #[serde(default)]
    pub rate: Option<u32>,
    /// Columns hashed in `hash` mode; the 5-tuple by default.
    #[serde(default = "default_key")]
    pub key: Vec<String>,
    /// Seed of `random` mode, salt of `hash` mode.
    #[serde(default)]
    pub seed: u64,
}

fn default_key() -> Vec<String> {
    ["src_addr", "dst_addr", "src_port", "dst_port", "protocol"].iter().map(|s| s.to_string()).collect()
}

impl TransformConfig for SampleConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        match (self.mode, self.rate) {
            (Mode::Upscale, Some(_)) => {
                vec![FieldIssue::new("rate", "upscale uses each record's own `sampling_rate`; remove `rate`")]
            }
            (Mode::Random | Mode::Hash, None) => {
                vec![FieldIssue::new("rate", "is required: keep 1 in `rate`")]
            }
            (Mode::Random | Mode::Hash, Some(0)) => vec![FieldIssue::new("rate", "must be at least 1")],
            _ if self.mode == Mode::Hash && self.key.is_empty() => {
                vec![FieldIssue::new("key", "must name at least one column")]
            }
            _ => Vec::new(),
        }
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        let need = |name: &str, ty: DataType, field: &str| -> Option<FieldIssue> {
            match input.field_with_name(name) {
                Ok(f) if f.data_type() == &ty => None,
                Ok(f) => {
                    Some(FieldIssue::new(field, format!("column `{name}` is {}, not {ty}", f.data_type())))
                }
                Err(_) => Some(FieldIssue::new(field, format!("there is no column `{name}`"))),
            }
        };
        let mut issues = Vec::new();
        match self.mode {
            Mode::Hash => {
                for k in &self.key {
                    if input.field_with_name(k).is_err() {
                        issues.push(FieldIssue::new("key", format!("there is no column `{k}` to hash")));
                    }
                }
            }
            Mode::Upscale => {
                issues.extend(need("sampling_rate", DataType::UInt32, "mode"));
                issues.extend(need("bytes", DataType::UInt64, "mode"));
                issues.extend(need("packets", DataType::UInt64, "mode"));
                for raw in ["bytes_raw", "packets_raw"] {
                    if input.field_with_name(raw).is_ok() {
                        issues
                            .push(FieldIssue::new("mode", format!("column `{raw}` exists: upscaled twice?")));
                    }
                }
            }
            Mode::Random => {}
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        if self.mode != Mode::Upscale {
            return Ok(input.clone());
        }
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("bytes_raw", DataType::UInt64, false)));
        fields.push(Arc::new(Field::new("packets_raw", DataType::UInt64, false)));
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    fn build(&self, _cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let output = self.output_schema(input).map_err(|e| BuildError(format!("{e:?}")))?;
        let key = self.key.iter().filter_map(|k| input.index_of(k).ok()).collect();
        Ok(Box::new(Sample {
            mode: self.mode,
            rate: self.rate.unwrap_or(1),
            key,
            rng: spillway_core::rand::SplitMix64::new(self.seed ^ 0x9e37_79b9_7f4a_7c15),
            salt: self.seed,
            rate_index: input.index_of("sampling_rate").ok(),
            output,
            hashes: Vec::new(),
        }))
    }
}

spillway_core::register_transform! {
    config: SampleConfig,
    name: "sample",
    description: "Keeps 1 in N records (random, or by a hash of key fields so a fleet agrees), or upscales counters.",
    example: "type: sample\ninputs: [flows]\nmode: hash\nrate: 10\n",
}

struct Sample {
    mode: Mode,
    rate: u32,
    key: Vec<usize>,
    rng: spillway_core::rand::SplitMix64,
    salt: u64,
    rate_index: Option<usize>,
    output: SchemaRef,
    hashes: Vec<u64>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Mixes one column into the per-row hashes: FNV-1a 64 over each value's
/// big-endian bytes (a null is the single byte 0xff). Stable across releases
/// and machines, so separate collectors keep the same flows.
fn hash_column(col: &dyn Array, hashes: &mut [u64]) -> Result<(), String> {
    use arrow::datatypes::*;
    macro_rules! prim {
        ($t:ty) => {{
            let a = col.as_primitive::<$t>();
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = if a.is_null(i) { fnv(*h, &[0xff]) } else { fnv(*h, &a.value(i).to_be_bytes()) };
            }
        }};
    }
    match col.data_type() {
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType),
        DataType::FixedSizeBinary(_) => {
            let a = col.as_fixed_size_binary();
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = if a.is_null(i) { fnv(*h, &[0xff]) } else { fnv(*h, a.value(i)) };
            }
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = if a.is_null(i) { fnv(*h, &[0xff]) } else { fnv(*h, a.value(i).as_bytes()) };
            }
        }
        other => return Err(format!("cannot hash a column of type {other}")),
    }
    Ok(())
}

impl Sample {
    /// Kept records stand for `rate` records each: their `sampling_rate`
    /// is multiplied so that a later upscale stays right.
    fn scale_rates(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let Some(i) = self.rate_index else { return Ok(batch.clone()) };
        if self.rate == 1 {
            return Ok(batch.clone());
        }
        let rates = batch.column(i).as_primitive::<arrow::datatypes::UInt32Type>();
        let scaled: UInt32Array = rates.unary(|r| r.saturating_mul(self.rate));
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        cols[i] = Arc::new(scaled);
        RecordBatch::try_new(batch.schema(), cols).map_err(|e| e.to_string())
    }
}

impl Transform for Sample {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let fail = |message: String| TransformError { reason: DropReason::PluginError, message };
        let n = batch.rows();
        let data = match self.mode {
            Mode::Upscale => {
                let rates = batch
                    .data
                    .column_by_name("sampling_rate")
                    .ok_or_else(|| fail("no sampling_rate".into()))?;
                let rates = rates.as_primitive::<arrow::datatypes::UInt32Type>();
                let scale = |name: &str| -> Result<(ArrayRef, ArrayRef), TransformError> {
                    let raw =
                        batch.data.column_by_name(name).ok_or_else(|| fail(format!("no {name}")))?.clone();
                    let v = raw.as_primitive::<arrow::datatypes::UInt64Type>();
                    let scaled: UInt64Array =
                        arrow::compute::binary(v, rates, |c, r| c.saturating_mul(r.max(1) as u64))
                            .map_err(|e| fail(e.to_string()))?;
                    Ok((Arc::new(scaled), raw))
                };
                let (bytes, bytes_raw) = scale("bytes")?;
                let (packets, packets_raw) = scale("packets")?;
                let schema = batch.data.schema();
                let mut cols: Vec<ArrayRef> = batch.data.columns().to_vec();
                cols[schema.index_of("bytes").map_err(|e| fail(e.to_string()))?] = bytes;
                cols[schema.index_of("packets").map_err(|e| fail(e.to_string()))?] = packets;
                cols.push(bytes_raw);
                cols.push(packets_raw);
                RecordBatch::try_new(self.output.clone(), cols).map_err(|e| fail(e.to_string()))?
            }
            Mode::Random | Mode::Hash => {
                let keep: BooleanArray = if self.mode == Mode::Random {
                    let rate = self.rate as u64;
                    (0..n).map(|_| Some(self.rng.next_u64().is_multiple_of(rate))).collect()
                } else {
                    self.hashes.clear();
                    self.hashes.resize(n, fnv(FNV_OFFSET, &self.salt.to_be_bytes()));
                    for &k in &self.key {
                        hash_column(batch.data.column(k).as_ref(), &mut self.hashes).map_err(fail)?;
                    }
                    let rate = self.rate as u64;
                    self.hashes.iter().map(|h| Some(h.is_multiple_of(rate))).collect()
                };
                let kept = arrow::compute::filter_record_batch(&batch.data, &keep)
                    .map_err(|e| fail(e.to_string()))?;
                out.dropped(
                    DropReason::SampledOut,
                    (n - kept.num_rows()) as u64,
                    &"not selected by sampling",
                );
                self.scale_rates(&kept).map_err(fail)?
            }
        };
        if data.num_rows() > 0 {
            out.push(batch.with_data(data));
        }
        Ok(())
    }
}
