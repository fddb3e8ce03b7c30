//! `kafka` sink and source (rdkafka, with its bundled librdkafka).
//!
//! The sink settles a batch's acknowledgement only when the broker has
//! acknowledged every record of it (`acks=all`, idempotent producer by
//! default); a full producer queue is backpressure, not memory growth; a
//! record the broker refuses for good is a counted drop with the broker's
//! reason. The source commits a partition's offset only once every record
//! before it has settled downstream, and never for a partition it lost in a
//! rebalance. See docs/kafka.md.

mod codec;
mod proto;
mod sink;
mod source;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use codec::{Decoder, Encoder, Encoding, write_key};
pub use proto::FlowMessage;

/// Encoding as written in a config.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncodingName {
    #[default]
    Json,
    Protobuf,
    /// Raw datagrams of the relay tier (the datagram schema, in its compact
    /// binary form: `spillway_schema::datagram`).
    Datagram,
}

pub(crate) fn encoding(name: EncodingName, length_delimited: bool) -> Encoding {
    match name {
        EncodingName::Json => Encoding::Json,
        EncodingName::Protobuf => Encoding::Protobuf { length_delimited },
        EncodingName::Datagram => Encoding::Datagram,
    }
}

/// librdkafka properties that are secrets: never logged.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("key") && !k.contains("keystore.type")
}

/// Options passed to librdkafka as they are, checked for names we set
/// ourselves.
pub(crate) type Options = BTreeMap<String, String>;

/// The checks a sink and a source share: brokers named, and no option that
/// the component's own fields set (`own`).
pub(crate) fn check_client(
    brokers: &str,
    options: &Options,
    own: &[&str],
    kind: &str,
) -> Vec<spillway_core::registry::FieldIssue> {
    use spillway_core::registry::FieldIssue;
    let mut v = Vec::new();
    if brokers.trim().is_empty() {
        v.push(FieldIssue::new("brokers", "name at least one broker (host:port)"));
    }
    for k in options.keys() {
        if own.contains(&k.as_str()) {
            v.push(FieldIssue::new(format!("options.{k}"), format!("is set by the {kind}'s own fields")));
        }
    }
    v
}

/// The options for a log line, secrets masked.
pub(crate) fn printable(options: &Options) -> Vec<String> {
    options.iter().map(|(k, v)| if is_secret(k) { format!("{k}=***") } else { format!("{k}={v}") }).collect()
}

fn default_true() -> bool {
    true
}

/// librdkafka's own log lines, at their level, tagged with the component.
pub(crate) fn log_librdkafka(name: &str, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
    use rdkafka::config::RDKafkaLogLevel::*;
    match level {
        Emerg | Alert | Critical | Error => {
            tracing::error!(component = name, facility = fac, "librdkafka: {msg}")
        }
        Warning => tracing::warn!(component = name, facility = fac, "librdkafka: {msg}"),
        _ => tracing::debug!(component = name, facility = fac, "librdkafka: {msg}"),
    }
}
