//! `enrich_cidr`: tags records with the attributes of the longest prefix
//! that contains an address column — customer, site, tags — from a CSV
//! file, reloaded atomically when it changes.
//!
//! ```csv
//! prefix,customer,site
//! 192.0.2.0/24,acme,fra1
//! 192.0.2.128/25,acme-lab,fra1
//! 2001:db8::/32,globex,ams2
//! ```
//!
//! The first column is the prefix; every other column becomes an output
//! column (`PREFIX` + its name, text). The file is checked every
//! `reload_interval`; a new version is loaded completely before it replaces
//! the old one, between two batches, so a batch is never tagged by two
//! versions. A file that no longer parses, or whose columns changed, is
//! rejected (logged and counted) and the previous version stays in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::Counter;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};
use spillway_core::schema::{Addr, address_type};

/// Config of the `enrich_cidr` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichCidrConfig {
    /// CSV file: a header, then `prefix,attr1,attr2,…` per line.
    pub file: PathBuf,
    /// The address column to look up.
    pub field: String,
    /// Prefix of the output columns (default: the field's name and `_`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// How often to check the file for changes.
    #[serde(default = "default_reload")]
    pub reload_interval: HumanDuration,
}

fn default_reload() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// A loaded prefix table.
struct Table {
    attributes: Vec<String>,
    /// One column of values per attribute, indexed by row of the file.
    values: Vec<ArrayRef>,
    prefixes: IpNetworkTable<u32>,
    modified: Option<SystemTime>,
}

fn load(path: &std::path::Path) -> Result<Table, String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let header = r.headers().map_err(|e| format!("{}: {e}", path.display()))?.clone();
    if header.len() < 2 {
        return Err(format!(
            "{}: the header needs a prefix column and at least one attribute",
            path.display()
        ));
    }
    let attributes: Vec<String> = header.iter().skip(1).map(str::to_string).collect();
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); attributes.len()];
    let mut prefixes = IpNetworkTable::new();
    for (n, rec) in r.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| format!("{} line {line}: {e}", path.display()))?;
        let text = rec.get(0).unwrap_or_default();
        let net: ipnet::IpNet = text
            .parse()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("{} line {line}: `{text}` is not a prefix", path.display()))?;
        let net = net.trunc();
        let network = IpNetwork::new(net.network(), net.prefix_len())
            .map_err(|e| format!("{} line {line}: `{text}`: {e}", path.display()))?;
        let row = columns[0].len() as u32;
        for (i, c) in columns.iter_mut().enumerate() {
            c.push(rec.get(i + 1).filter(|v| !v.is_empty()).map(str::to_string));
        }
        if prefixes.insert(network, row).is_some() {
            return Err(format!("{} line {line}: prefix `{text}` is listed twice", path.display()));
        }
    }
    let values = columns.into_iter().map(|c| Arc::new(StringArray::from(c)) as ArrayRef).collect();
    Ok(Table { attributes, values, prefixes, modified })
}

impl EnrichCidrConfig {
    fn column_prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("{}_", self.field))
    }

    fn schema(&self, input: &SchemaRef, table: &Table) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for a in &table.attributes {
            fields.push(Arc::new(Field::new(format!("{}{a}", self.column_prefix()), DataType::Utf8, true)));
        }
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }
}

impl TransformConfig for EnrichCidrConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if let Err(e) = load(&self.file) {
            v.push(FieldIssue::new("file", e));
        }
        if self.reload_interval.get() < Duration::from_millis(100) {
            v.push(FieldIssue::new("reload_interval", "must be at least 100ms"));
        }
        v
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        match input.field_with_name(&self.field) {
            Ok(f) if f.data_type() == &address_type() => {}
            Ok(f) => {
                return Err(vec![FieldIssue::new(
                    "field",
                    format!("`{}` is {}, not an address", self.field, f.data_type()),
                )]);
            }
            Err(_) => {
                return Err(vec![FieldIssue::new("field", format!("there is no column `{}`", self.field))]);
            }
        }
        let table = load(&self.file).map_err(|e| vec![FieldIssue::new("file", e)])?;
        let schema = self.schema(input, &table);
        for a in &table.attributes {
            let name = format!("{}{a}", self.column_prefix());
            if input.field_with_name(&name).is_ok() {
                return Err(vec![FieldIssue::new("prefix", format!("column `{name}` already exists"))]);
            }
        }
        Ok(schema)
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let path = cx.resolve(&self.file);
        let table = load(&path).map_err(BuildError)?;
        let index = input.index_of(&self.field).map_err(|e| BuildError(e.to_string()))?;
        Ok(Box::new(EnrichCidr {
            schema: self.schema(input, &table),
            table,
            path,
            index,
            interval: self.reload_interval.get(),
            misses: cx
                .metrics
                .counter("spillway_enrich_cidr_misses_total", "Addresses no prefix of the table contains."),
            reloads: cx
                .metrics
                .counter("spillway_enrich_cidr_reloads_total", "Times the prefix file was reloaded."),
            rejected: cx.metrics.counter(
                "spillway_enrich_cidr_rejected_reloads_total",
                "New versions of the prefix file that were rejected (the old one stays).",
            ),
            rows: Vec::new(),
        }))
    }
}

spillway_core::register_transform! {
    config: EnrichCidrConfig,
    name: "enrich_cidr",
    description: "Tags records with the attributes of the longest matching prefix from a CSV file (v4 and v6, hot reload).",
    example: "type: enrich_cidr\ninputs: [flows]\nfile: ./pipelines/customers.csv\nfield: src_addr\n",
}

struct EnrichCidr {
    schema: SchemaRef,
    table: Table,
    path: PathBuf,
    index: usize,
    interval: Duration,
    misses: Counter,
    reloads: Counter,
    rejected: Counter,
    rows: Vec<Option<u32>>,
}

impl Transform for EnrichCidr {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let addrs = batch.data.column(self.index).as_fixed_size_binary();
        self.rows.clear();
        let mut misses = 0;
        for i in 0..addrs.len() {
            let row = if addrs.is_null(i) {
                None
            } else {
                let a = Addr::from_slice(addrs.value(i)).unwrap_or_default();
                self.table.prefixes.longest_match(std::net::IpAddr::from(a)).map(|(_, r)| *r)
            };
            misses += row.is_none() as u64;
            self.rows.push(row);
        }
        self.misses.add(misses);
        let take = UInt32Array::from_iter(self.rows.iter().copied());
        let mut cols: Vec<ArrayRef> = batch.data.columns().to_vec();
        for v in &self.table.values {
            cols.push(
                arrow::compute::take(v.as_ref(), &take, None).map_err(|e| TransformError {
                    reason: DropReason::PluginError,
                    message: e.to_string(),
                })?,
            );
        }
        let data = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| TransformError { reason: DropReason::PluginError, message: e.to_string() })?;
        out.push(batch.with_data(data));
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }

    fn tick(&mut self, _out: &mut Emitter) {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == self.table.modified {
            return;
        }
        match load(&self.path) {
            Ok(t) if t.attributes == self.table.attributes => {
                tracing::info!(file = %self.path.display(), prefixes = ?t.prefixes.len(), "prefix file reloaded");
                self.table = t;
                self.reloads.add(1);
            }
            Ok(t) => {
                tracing::error!(file = %self.path.display(), columns = ?t.attributes, expected = ?self.table.attributes, "prefix file rejected: its columns changed (restart to change the schema); the previous version stays in use");
                self.table.modified = t.modified;
                self.rejected.add(1);
            }
            Err(e) => {
                tracing::error!(error = %e, "prefix file rejected; the previous version stays in use");
                self.table.modified = modified;
                self.rejected.add(1);
            }
        }
    }
}
