//! `snmp` source: polls interface tables over SNMPv2c and SNMPv3 (USM) and
//! emits one record per interface per poll, with counters as read and
//! per-interval deltas and rates — the input to interface names on flows
//! (`table` + `enrich`) and to 95th-percentile billing.
//!
//! ```yaml
//! sources:
//!   ifaces:
//!     type: snmp
//!     interval: 60s
//!     community: public              # default credentials (v2c)
//!     v3: { user: poller, auth_protocol: sha256, auth_password: "${AUTH}", priv_password: "${PRIV}" }
//!     targets:
//!       - { address: 192.0.2.1, name: edge1 }
//!       - { address: 192.0.2.2, version: v2c, community: other }
//!     targets_file: routers.csv      # reloaded when it changes
//!     discover: { from: flows, port: 161 }   # every exporter a netflow source has seen
//! ```
//!
//! The SNMP client is the `snmp2` crate (pure-Rust crypto; MD5/SHA-1/SHA-2
//! authentication, DES/AES privacy), checked against net-snmp's `snmpd`.

mod counters;
mod schedule;
mod source;
mod targets;
mod walk;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SourceConfig};
use spillway_core::schema::{address_type, timestamp_type};

pub use counters::{Elapsed, delta, elapsed};
pub use targets::{CredentialConfig, TargetConfig, V3Config, Version};

/// Config of the `snmp` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpConfig {
    /// Time between two polls of a target.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Spread of first polls over this fraction of the interval, so that
    /// thousands of targets are not polled in the same second (0 to 1).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Wait for one answer.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Further tries of a request after a timeout.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause before the first retry; doubled for each next one.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// A target that keeps failing is polled after 1, 2, 4 … intervals,
    /// at most this far apart.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Polls in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Rows per column asked for by one GETBULK.
    #[serde(default = "default_max_repetitions")]
    pub max_repetitions: u32,
    /// Most interfaces one poll may return; an agent that returns more (or
    /// never ends its walk) fails the poll with kind `limit`.
    #[serde(default = "default_max_interfaces")]
    pub max_interfaces: usize,
    /// Most bytes of values one poll may return (failure kind `limit`).
    #[serde(default = "default_max_poll_bytes")]
    pub max_poll_bytes: ByteSize,
    /// Longest one poll may take, every request and retry included
    /// (failure kind `limit`).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout: HumanDuration,
    /// Agents' UDP port unless a target says otherwise.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Default SNMP version (`v2c`, or `v3` when a `v3` section is given).
    #[serde(default)]
    pub version: Option<Version>,
    /// Default SNMPv2c community (`public`).
    #[serde(default)]
    pub community: Option<String>,
    /// Default SNMPv3 settings.
    #[serde(default)]
    pub v3: Option<V3Config>,
    /// Targets listed inline.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// A CSV or YAML file of targets, reloaded when it changes.
    #[serde(default)]
    pub targets_file: Option<PathBuf>,
    /// Poll every exporter a flow source has seen.
    #[serde(default)]
    pub discover: Option<DiscoverConfig>,
    /// More per-interface columns: OIDs of columns of a table indexed by
    /// ifIndex (IF-MIB ifTable/ifXTable, or a vendor's).
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// Stop after every target has been polled this many times (tests,
    /// one-off inventories); poll until stopped when absent.
    #[serde(default)]
    pub rounds: Option<u32>,
    /// Records per batch at most; a batch is also sent a second after its
    /// first record.
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
}

/// Discovery of targets from a flow source's exporters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverConfig {
    /// The `netflow` source whose exporters to poll.
    pub from: String,
    /// Agents' port for discovered targets (default: the source's `port`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Per-prefix settings; the first rule whose prefix holds the exporter
    /// applies. An exporter no rule holds uses the source's defaults.
    #[serde(default)]
    pub rules: Vec<DiscoverRule>,
}

/// How to reach the agent of exporters in a prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRule {
    /// Exporters in this prefix (`10.0.0.0/8`, `2001:db8::/32`).
    pub prefix: String,
    /// Do not poll these exporters.
    #[serde(default)]
    pub skip: bool,
    /// Poll this address instead of the exporter's (a management address).
    #[serde(default)]
    pub agent: Option<std::net::IpAddr>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub version: Option<Version>,
    #[serde(default)]
    pub community: Option<String>,
    #[serde(default)]
    pub v3: Option<V3Config>,
}

impl DiscoverRule {
    /// This rule's credential settings (the source's defaults fill the rest).
    pub fn credentials(&self) -> CredentialConfig {
        CredentialConfig { version: self.version, community: self.community.clone(), v3: self.v3.clone() }
    }
}

/// An extra per-interface column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// Output column name.
    pub name: String,
    /// Numeric OID of the table column, e.g. `1.3.6.1.2.1.31.1.1.1.7`
    /// (ifHCInUcastPkts).
    pub oid: String,
    /// `u64` (default), `i64` or `string`.
    #[serde(default = "default_column_type", rename = "type")]
    pub kind: String,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_jitter() -> f64 {
    0.1
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(900))
}
fn default_concurrency() -> usize {
    128
}
fn default_max_repetitions() -> u32 {
    20
}
fn default_max_interfaces() -> usize {
    10_000
}
fn default_max_poll_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_poll_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_port() -> u16 {
    161
}
fn default_batch_size() -> spillway_core::config::BatchSize {
    spillway_core::config::BatchSize::new(4096)
}
fn default_column_type() -> String {
    "u64".into()
}

pub(crate) fn parse_oid(s: &str) -> Result<Vec<u64>, String> {
    let t = s.trim().trim_start_matches('.');
    let v: Result<Vec<u64>, _> = t.split('.').map(str::parse::<u64>).collect();
    match v {
        Ok(v) if v.len() >= 2 && v[0] <= 2 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a numeric OID like 1.3.6.1.2.1.31.1.1.1.7 (MIB names are not resolved)"
        )),
    }
}

impl SnmpConfig {
    pub(crate) fn base_credentials(&self) -> CredentialConfig {
        CredentialConfig { version: self.version, community: self.community.clone(), v3: self.v3.clone() }
    }
}

impl SourceConfig for SnmpConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = Vec::new();
        if let Some(f) = &self.targets_file {
            v.extend(spillway_core::config::paths::input_file("targets_file", f));
        }
        if self.interval.get() < Duration::from_secs(1) {
            v.push(FieldIssue::new("interval", "must be at least 1s"));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            v.push(FieldIssue::new(
                "jitter",
                "must be at least 0 and less than 1 (a fraction of the interval)",
            ));
        }
        if self.timeout.get() < Duration::from_millis(10) {
            v.push(FieldIssue::new("timeout", "must be at least 10ms"));
        }
        if self.retries > 10 {
            v.push(FieldIssue::new("retries", "must be at most 10"));
        }
        if self.concurrency == 0 || self.concurrency > 65536 {
            v.push(FieldIssue::new("concurrency", "must be between 1 and 65536"));
        }
        if self.max_interfaces == 0 {
            v.push(FieldIssue::new("max_interfaces", "must be at least 1"));
        }
        if self.poll_timeout.get() < self.timeout.get() {
            v.push(FieldIssue::new("poll_timeout", "must be at least `timeout`"));
        }
        if self.max_repetitions == 0 || self.max_repetitions > 1000 {
            v.push(FieldIssue::new("max_repetitions", "must be between 1 and 1000"));
        }
        if self.rounds == Some(0) {
            v.push(FieldIssue::new("rounds", "must be at least 1 (omit it to poll until stopped)"));
        }
        if self.targets.is_empty() && self.targets_file.is_none() && self.discover.is_none() {
            v.push(FieldIssue::new("targets", "give `targets`, `targets_file` or `discover`"));
        }
        let base = self.base_credentials();
        if let Some(v3) = &self.v3
            && (self.version == Some(Version::V3) || self.version.is_none())
            && let Err(e) = v3.resolve()
        {
            v.push(FieldIssue::new("v3", e));
        }
        let mut names = HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            match t.resolve(self.port, &base) {
                Err(e) => v.push(FieldIssue::new(format!("targets[{i}]"), e)),
                Ok(t) => {
                    if !names.insert(t.name.clone()) {
                        v.push(FieldIssue::new(
                            format!("targets[{i}]"),
                            format!("a second target named `{}`: give each a distinct `name`", t.name),
                        ));
                    }
                }
            }
        }
        if let Some(d) = &self.discover {
            for (i, r) in d.rules.iter().enumerate() {
                if r.prefix.parse::<ipnet::IpNet>().is_err() {
                    v.push(FieldIssue::new(
                        format!("discover.rules[{i}].prefix"),
                        format!("`{}` is not a prefix like 10.0.0.0/8", r.prefix),
                    ));
                }
                if !r.skip
                    && let Err(e) = r.credentials().resolve(&base)
                {
                    v.push(FieldIssue::new(format!("discover.rules[{i}]"), e));
                }
            }
        }
        let fields = builtin_fields();
        let builtin: HashSet<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        let mut seen = HashSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            if let Err(e) = parse_oid(&c.oid) {
                v.push(FieldIssue::new(format!("columns[{i}].oid"), e));
            }
            if builtin.contains(c.name.as_str()) || !seen.insert(c.name.as_str()) {
                v.push(FieldIssue::new(
                    format!("columns[{i}].name"),
                    format!("`{}` is already a column", c.name),
                ));
            }
            if !matches!(c.kind.as_str(), "u64" | "i64" | "string") {
                v.push(FieldIssue::new(format!("columns[{i}].type"), "must be u64, i64 or string"));
            }
        }
        v
    }

    fn output_schema(&self) -> SchemaRef {
        let mut fields = builtin_fields();
        for c in &self.columns {
            let dt = match c.kind.as_str() {
                "i64" => DataType::Int64,
                "string" => DataType::Utf8,
                _ => DataType::UInt64,
            };
            fields.push(Field::new(&c.name, dt, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("health", health_schema())]
    }

    fn references(&self) -> Vec<spillway_core::registry::Reference> {
        // Only the `netflow` (UDP) source publishes the exporters it hears.
        self.discover
            .iter()
            .map(|d| spillway_core::registry::Reference::to("discover.from", &d.from, &["netflow"]))
            .collect()
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn spillway_core::component::Source>, BuildError> {
        source::build(self, cx)
    }
}

spillway_core::register_source! {
    config: SnmpConfig,
    name: "snmp",
    description: "Polls interface tables (IF-MIB) over SNMPv2c/v3: one record per interface per poll, with deltas and rates.",
    example: "type: snmp\ninterval: 60s\ncommunity: public\ntargets:\n  - { address: 192.0.2.1, name: edge1 }\n  - { address: 192.0.2.2, port: 1161, version: v3, v3: { user: poller, auth_protocol: sha256, auth_password: authpass1, priv_password: privpass1 } }\n",
}

/// The columns every `snmp` record has.
pub fn builtin_fields() -> Vec<Field> {
    use DataType::*;
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    vec![
        f("time", timestamp_type(), false),
        f("exporter", address_type(), false),
        f("target", Utf8, false),
        f("agent", Utf8, false),
        f("sys_name", Utf8, true),
        f("sys_uptime_ms", UInt64, true),
        f("if_index", UInt32, false),
        f("if_name", Utf8, true),
        f("if_descr", Utf8, true),
        f("if_alias", Utf8, true),
        f("if_type", UInt32, true),
        f("if_speed", UInt64, true),
        f("if_admin_status", UInt8, true),
        f("if_oper_status", UInt8, true),
        f("in_octets", UInt64, true),
        f("out_octets", UInt64, true),
        f("in_errors", UInt64, true),
        f("out_errors", UInt64, true),
        f("in_discards", UInt64, true),
        f("out_discards", UInt64, true),
        f("interval_s", Float64, true),
        f("in_octets_delta", UInt64, true),
        f("out_octets_delta", UInt64, true),
        f("in_errors_delta", UInt64, true),
        f("out_errors_delta", UInt64, true),
        f("in_discards_delta", UInt64, true),
        f("out_discards_delta", UInt64, true),
        f("in_bps", Float64, true),
        f("out_bps", Float64, true),
        f("discontinuity", Boolean, false),
    ]
}

/// One record per poll of a target on the `health` output.
pub fn health_schema() -> SchemaRef {
    use DataType::*;
    static S: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("time", timestamp_type(), false),
            Field::new("exporter", address_type(), false),
            Field::new("target", Utf8, false),
            Field::new("agent", Utf8, false),
            Field::new("ok", Boolean, false),
            Field::new("error_kind", Utf8, true),
            Field::new("error", Utf8, true),
            Field::new("duration_ms", Float64, false),
            Field::new("requests", UInt32, false),
            Field::new("interfaces", UInt32, false),
            Field::new("consecutive_failures", UInt32, false),
            Field::new("last_success", timestamp_type(), true),
        ]))
    })
    .clone()
}
