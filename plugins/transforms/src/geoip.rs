//! `geoip`: country, city, AS number and AS organisation of address columns,
//! from MaxMind-format (`.mmdb`) databases: MaxMind's GeoLite2/GeoIP2, DB-IP
//! and IPinfo publish the format.
//!
//! ```yaml
//! type: geoip
//! inputs: [flows]
//! fields: [src_addr, dst_addr]
//! geo: ./GeoLite2-City.mmdb     # a City or Country database
//! asn: ./GeoLite2-ASN.mmdb      # an ASN database
//! ```
//!
//! Per field, as `enrich_cidr` names its columns (`PREFIX` + name, the
//! prefix defaulting to the field's name and `_`): with `geo`,
//! `src_addr_country` (ISO 3166 code) and `src_addr_city` (English name;
//! null from a Country database); with `asn`, `src_addr_asn` (UInt32) and
//! `src_addr_as_org`. Both MaxMind's record layout (`country.iso_code`,
//! `city.names.en`, `autonomous_system_number`,
//! `autonomous_system_organization`) and IPinfo's (`country_code`,
//! `asn: "AS…"`, `as_name`) are read.
//!
//! The databases are memory-mapped. Every `reload_interval` each file is
//! checked; a changed one is opened completely before it replaces the old
//! between two batches (a batch never sees two versions). A file that does
//! not open is rejected (logged, counted) and the old one stays. Replace a
//! database by renaming a new file over it, as `geoipupdate` does: the old
//! mapping keeps the old file until it is dropped. Writing into the mapped
//! file in place is not supported (see the SAFETY note below).
//!
//! Many addresses share one database record, so decoded records are cached
//! by their offset in the database (bounded, emptied at a reload).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use maxminddb::{PathElement, Reader};
use serde::Deserialize;
use spillway_core::component::{Emitter, Transform, TransformError};
use spillway_core::config::HumanDuration;
use spillway_core::ledger::DropReason;
use spillway_core::metrics::Counter;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, TransformConfig};
use spillway_core::schema::{Addr, address_type};

/// Config of the `geoip` transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// Address columns to look up.
    pub fields: Vec<String>,
    /// A City or Country database: `country` and `city` columns.
    #[serde(default)]
    pub geo: Option<PathBuf>,
    /// An ASN database: `asn` and `as_org` columns.
    #[serde(default)]
    pub asn: Option<PathBuf>,
    /// Prefix of the output columns of each field (default: the field's
    /// name and `_`), by field name.
    #[serde(default)]
    pub prefixes: HashMap<String, String>,
    /// How often to check the databases for changes.
    #[serde(default = "default_reload")]
    pub reload_interval: HumanDuration,
}

fn default_reload() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// Most decoded records cached per database before the cache is emptied.
const MAX_CACHED: usize = 1 << 16;

/// Which database a lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Geo,
    Asn,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Geo => "geo",
            Self::Asn => "asn",
        }
    }
}

/// What one database record gives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Values {
    /// Country code, or AS organisation.
    text: Option<Arc<str>>,
    /// City name.
    city: Option<Arc<str>>,
    asn: Option<u32>,
}

/// Where a file was when it was opened: a change to any of these is a new
/// version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn version(path: &Path) -> Option<Version> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Version { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

/// One open database.
struct Database {
    kind: Kind,
    path: PathBuf,
    reader: Reader<maxminddb::Mmap>,
    version: Option<Version>,
    cache: HashMap<usize, Values>,
}

/// Maps a database file.
#[allow(unsafe_code)]
fn map(path: &Path) -> Result<Reader<maxminddb::Mmap>, String> {
    // SAFETY: the mapping is read-only and the file is only ever replaced
    // by a rename (documented above and in docs/transforms.md, as
    // geoipupdate does), which leaves the mapped inode untouched until this
    // reader is dropped. A file written in place or truncated while mapped
    // is outside that contract.
    unsafe { Reader::open_mmap(path) }.map_err(|e| format!("cannot open {}: {e}", path.display()))
}

impl Database {
    fn open(kind: Kind, path: &Path) -> Result<Self, String> {
        let version = version(path);
        let reader = map(path)?;
        let t = &reader.metadata().database_type;
        let l = t.to_ascii_lowercase();
        let fits = match kind {
            Kind::Geo => !l.contains("asn") || l.contains("country"),
            Kind::Asn => l.contains("asn") || l.contains("isp") || l.contains("ipinfo"),
        };
        if !fits {
            return Err(format!(
                "{} is a `{t}` database, which does not hold {} data",
                path.display(),
                match kind {
                    Kind::Geo => "country or city",
                    Kind::Asn => "AS",
                }
            ));
        }
        Ok(Self { kind, path: path.to_path_buf(), reader, version, cache: HashMap::new() })
    }

    /// What the database says of `ip`; `None` when it holds no record.
    fn lookup(&mut self, ip: IpAddr) -> Result<Option<&Values>, String> {
        let r = self.reader.lookup(ip).map_err(|e| e.to_string())?;
        let Some(offset) = r.offset() else { return Ok(None) };
        if !self.cache.contains_key(&offset) {
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            let text = |path: &[PathElement]| -> Option<Arc<str>> {
                // A path through a value of another shape (IPinfo's country
                // is a string, MaxMind's a map) is simply not this layout.
                r.decode_path::<String>(path).ok().flatten().map(Arc::from)
            };
            let v = match self.kind {
                Kind::Geo => Values {
                    text: text(&[PathElement::Key("country"), PathElement::Key("iso_code")])
                        .or_else(|| text(&[PathElement::Key("country_code")])),
                    city: text(&[
                        PathElement::Key("city"),
                        PathElement::Key("names"),
                        PathElement::Key("en"),
                    ]),
                    asn: None,
                },
                Kind::Asn => Values {
                    text: text(&[PathElement::Key("autonomous_system_organization")])
                        .or_else(|| text(&[PathElement::Key("as_name")])),
                    city: None,
                    asn: r
                        .decode_path::<u32>(&[PathElement::Key("autonomous_system_number")])
                        .ok()
                        .flatten()
                        .or_else(|| {
                            text(&[PathElement::Key("asn")]).and_then(|s| {
                                s.trim_start_matches("AS").trim_start_matches("as").parse().ok()
                            })
                        }),
                },
            };
            self.cache.insert(offset, v);
        }
        Ok(self.cache.get(&offset))
    }
}

impl GeoipConfig {
    fn column_prefix(&self, field: &str) -> String {
        self.prefixes.get(field).cloned().unwrap_or_else(|| format!("{field}_"))
    }

    /// The columns added per field, in order.
    fn columns(&self, field: &str) -> Vec<Field> {
        let p = self.column_prefix(field);
        let mut v = Vec::new();
        if self.geo.is_some() {
            v.push(Field::new(format!("{p}country"), DataType::Utf8, true));
            v.push(Field::new(format!("{p}city"), DataType::Utf8, true));
        }
        if self.asn.is_some() {
            v.push(Field::new(format!("{p}asn"), DataType::UInt32, true));
            v.push(Field::new(format!("{p}as_org"), DataType::Utf8, true));
        }
        v
    }

    fn schema(&self, input: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = input.fields().iter().cloned().collect();
        for f in &self.fields {
            fields.extend(self.columns(f).into_iter().map(Arc::new));
        }
        Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
    }

    fn databases(&self, resolve: impl Fn(&Path) -> PathBuf) -> Result<Vec<Database>, Vec<FieldIssue>> {
        let mut dbs = Vec::new();
        let mut issues = Vec::new();
        for (kind, key, path) in [(Kind::Geo, "geo", &self.geo), (Kind::Asn, "asn", &self.asn)] {
            if let Some(p) = path {
                match Database::open(kind, &resolve(p)) {
                    Ok(d) => dbs.push(d),
                    Err(e) => issues.push(FieldIssue::new(key, e)),
                }
            }
        }
        if issues.is_empty() { Ok(dbs) } else { Err(issues) }
    }
}

impl TransformConfig for GeoipConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if self.geo.is_none() && self.asn.is_none() {
            v.push(FieldIssue::new(
                "geo",
                "give a `geo` (City or Country) database, an `asn` database, or both",
            ));
        }
        if self.fields.is_empty() {
            v.push(FieldIssue::new("fields", "name at least one address column"));
        }
        if self.reload_interval.get() < Duration::from_millis(100) {
            v.push(FieldIssue::new("reload_interval", "must be at least 100ms"));
        }
        if let Err(e) = self.databases(Path::to_path_buf) {
            v.extend(e);
        }
        v
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        for f in &self.fields {
            match input.field_with_name(f) {
                Ok(c) if c.data_type() == &address_type() => {}
                Ok(c) => issues
                    .push(FieldIssue::new("fields", format!("`{f}` is {}, not an address", c.data_type()))),
                Err(_) => issues.push(FieldIssue::new("fields", format!("there is no column `{f}`"))),
            }
            for c in self.columns(f) {
                if input.field_with_name(c.name()).is_ok() {
                    issues.push(FieldIssue::new("prefixes", format!("column `{}` already exists", c.name())));
                }
            }
        }
        if issues.is_empty() { Ok(self.schema(input)) } else { Err(issues) }
    }

    fn build(&self, cx: &BuildContext, input: &SchemaRef) -> Result<Box<dyn Transform>, BuildError> {
        let databases = self
            .databases(|p| cx.resolve(p))
            .map_err(|e| BuildError(e.iter().map(|i| i.message.clone()).collect::<Vec<_>>().join("; ")))?;
        let fields = self
            .fields
            .iter()
            .map(|f| input.index_of(f).map_err(|e| BuildError(e.to_string())))
            .collect::<Result<_, _>>()?;
        let stats = databases
            .iter()
            .map(|d| {
                let l = [("database", d.kind.label())];
                let m = &cx.metrics;
                Stats {
                    misses: m.counter_with(
                        "spillway_geoip_misses_total",
                        "Addresses the database holds no record of.",
                        &l,
                    ),
                    reloads: m.counter_with(
                        "spillway_geoip_reloads_total",
                        "Times the database was reloaded.",
                        &l,
                    ),
                    rejected: m.counter_with(
                        "spillway_geoip_rejected_reloads_total",
                        "New versions of the database that did not open (the old one stays).",
                        &l,
                    ),
                    errors: m.counter_with(
                        "spillway_geoip_lookup_errors_total",
                        "Lookups the database could not answer (corrupt data).",
                        &l,
                    ),
                }
            })
            .collect();
        Ok(Box::new(Geoip {
            schema: self.schema(input),
            databases,
            stats,
            fields,
            interval: self.reload_interval.get(),
        }))
    }
}

spillway_core::register_transform! {
    config: GeoipConfig,
    name: "geoip",
    description: "Adds country, city, AS number and AS organisation of address columns from MaxMind-format databases (memory-mapped, hot reload).",
    example: "type: geoip\ninputs: [flows]\nfields: [src_addr, dst_addr]\ngeo: ./pipelines/geoip/example-city.mmdb\nasn: ./pipelines/geoip/example-asn.mmdb\n",
}

struct Stats {
    misses: Counter,
    reloads: Counter,
    rejected: Counter,
    errors: Counter,
}

struct Geoip {
    schema: SchemaRef,
    databases: Vec<Database>,
    stats: Vec<Stats>,
    fields: Vec<usize>,
    interval: Duration,
}

impl Transform for Geoip {
    fn process(&mut self, batch: spillway_core::Batch, out: &mut Emitter) -> Result<(), TransformError> {
        let n = batch.data.num_rows();
        let mut cols: Vec<ArrayRef> = batch.data.columns().to_vec();
        for &f in &self.fields {
            let addrs = batch.data.column(f).as_fixed_size_binary();
            for (db, stats) in self.databases.iter_mut().zip(&self.stats) {
                let kind = db.kind;
                let mut text = StringBuilder::with_capacity(n, n * 4);
                let mut city = StringBuilder::with_capacity(n, n * 4);
                let mut asn = UInt32Builder::with_capacity(n);
                let (mut misses, mut errors) = (0, 0);
                for i in 0..n {
                    let found = if addrs.is_null(i) {
                        None
                    } else {
                        let ip = IpAddr::from(Addr::from_slice(addrs.value(i)).unwrap_or_default());
                        match db.lookup(ip) {
                            Ok(None) => {
                                misses += 1;
                                None
                            }
                            Ok(Some(v)) => Some(v),
                            Err(_) => {
                                errors += 1;
                                None
                            }
                        }
                    };
                    text.append_option(found.and_then(|v| v.text.as_deref()));
                    match kind {
                        Kind::Geo => city.append_option(found.and_then(|v| v.city.as_deref())),
                        Kind::Asn => asn.append_option(found.and_then(|v| v.asn)),
                    }
                }
                stats.misses.add(misses);
                stats.errors.add(errors);
                match db.kind {
                    Kind::Geo => {
                        cols.push(Arc::new(text.finish()));
                        cols.push(Arc::new(city.finish()));
                    }
                    Kind::Asn => {
                        cols.push(Arc::new(asn.finish()));
                        cols.push(Arc::new(text.finish()));
                    }
                }
            }
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
        for (db, stats) in self.databases.iter_mut().zip(&self.stats) {
            let now = version(&db.path);
            if now.is_none() || now == db.version {
                continue;
            }
            match Database::open(db.kind, &db.path) {
                Ok(new) => {
                    tracing::info!(file = %db.path.display(), build = new.reader.metadata().build_epoch, "GeoIP database reloaded");
                    *db = new;
                    stats.reloads.add(1);
                }
                Err(e) => {
                    tracing::error!(error = %e, "GeoIP database rejected; the previous version stays in use");
                    db.version = now;
                    stats.rejected.add(1);
                }
            }
        }
    }
}
