//! The stored form of a [`Learned`] fact: a key naming what it is about and
//! a self-describing JSON value, versioned so instances of different
//! Spillway versions can share one store.
//!
//! Key: `<exporter>/<domain>/<kind>/<id>` (`192.0.2.1/0/template/256`,
//! `2001:db8::1/7/sampler/3`, `192.0.2.1/0/rate/0`, `192.0.2.1/0/boot/0`):
//! never the source port, since options may come from another port than
//! data. Value:
//!
//! ```json
//! {"spillway_netflow_state":1,"exporter":"192.0.2.1","domain":0,"kind":"template","id":256,
//!  "scope_fields":0,"fields":[[8,4,0],[12,4,0],[1,8,0]],"learned_ms":1790000000000,"by":"host/1234"}
//! ```
//!
//! `sampler` entries carry `rate` (1-in-N, or null for a selection that is
//! not 1-in-N), `rate` entries the same for the whole exporter, `boot`
//! entries `boot_ms`. A reader ignores fields it does not know and skips
//! kinds it does not know (counted), so a newer writer can add both.

use serde::{Deserialize, Serialize};
use spillway_core::addr::Addr;

use crate::decode::{Fact, Learned};
use crate::state::DomainKey;
use crate::template::FieldSpec;

/// The format version this build writes.
pub const VERSION: u32 = 1;

/// A stored fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub learned: Learned,
    /// When it was learned (ms since the epoch): the newest definition of a
    /// key wins.
    pub learned_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    spillway_netflow_state: u32,
    exporter: std::net::IpAddr,
    domain: u32,
    kind: String,
    #[serde(default)]
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope_fields: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<(u16, u16, u32)>>,
    /// Present for `sampler` and `rate`; null = not 1-in-N.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    rate: Option<Option<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_ms: Option<i64>,
    #[serde(default)]
    learned_ms: i64,
    #[serde(default)]
    by: String,
}

/// A field that is present (possibly null) is `Some`; absent is `None`
/// (through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

fn kind_and_id(f: &Fact) -> (&'static str, u64) {
    match f {
        Fact::Template { id, .. } => ("template", *id as u64),
        Fact::Sampler { id, .. } => ("sampler", *id),
        Fact::ExporterRate(_) => ("rate", 0),
        Fact::Boot(_) => ("boot", 0),
    }
}

/// The key of a fact.
pub fn key_of(l: &Learned) -> String {
    let (kind, id) = kind_and_id(&l.fact);
    format!("{}/{}/{kind}/{id}", l.key.exporter, l.key.domain)
}

/// Encodes a fact learned at `learned_ms` by `by` (host and process).
pub fn encode(l: &Learned, learned_ms: i64, by: &str) -> (String, Vec<u8>) {
    let (kind, id) = kind_and_id(&l.fact);
    let mut w = Wire {
        spillway_netflow_state: VERSION,
        exporter: l.key.exporter.into(),
        domain: l.key.domain,
        kind: kind.to_string(),
        id,
        scope_fields: None,
        fields: None,
        rate: None,
        boot_ms: None,
        learned_ms,
        by: by.to_string(),
    };
    match &l.fact {
        Fact::Template { scope_fields, fields, .. } => {
            w.scope_fields = Some(*scope_fields);
            w.fields = Some(fields.iter().map(|f| (f.id, f.len, f.enterprise)).collect());
        }
        Fact::Sampler { rate, .. } | Fact::ExporterRate(rate) => w.rate = Some(*rate),
        Fact::Boot(b) => w.boot_ms = Some(*b),
    }
    (key_of(l), serde_json::to_vec(&w).expect("a fact serializes"))
}

/// Why a stored value was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEntry {
    #[error("not a netflow state entry: {0}")]
    Corrupt(String),
    /// Written by a newer version with a kind this one does not know:
    /// skipped, not an error.
    #[error("unknown kind `{0}`")]
    UnknownKind(String),
}

/// Decodes a stored value.
pub fn decode(value: &[u8]) -> Result<Entry, BadEntry> {
    let w: Wire = serde_json::from_slice(value).map_err(|e| BadEntry::Corrupt(e.to_string()))?;
    let key = DomainKey { exporter: Addr::from(w.exporter), domain: w.domain };
    let missing = |what: &str| BadEntry::Corrupt(format!("a `{}` entry without `{what}`", w.kind));
    let fact = match w.kind.as_str() {
        "template" => {
            let id =
                u16::try_from(w.id).ok().filter(|id| *id >= 256).ok_or_else(|| missing("a template id"))?;
            let fields = w.fields.as_ref().ok_or_else(|| missing("fields"))?;
            if fields.is_empty() || fields.len() > 1024 {
                return Err(BadEntry::Corrupt(format!("a template of {} fields", fields.len())));
            }
            Fact::Template {
                id,
                scope_fields: w.scope_fields.unwrap_or(0),
                fields: fields
                    .iter()
                    .map(|&(id, len, enterprise)| FieldSpec { id, len, enterprise })
                    .collect(),
            }
        }
        "sampler" => Fact::Sampler { id: w.id, rate: w.rate.ok_or_else(|| missing("rate"))? },
        "rate" => Fact::ExporterRate(w.rate.ok_or_else(|| missing("rate"))?),
        "boot" => Fact::Boot(w.boot_ms.ok_or_else(|| missing("boot_ms"))?),
        other => return Err(BadEntry::UnknownKind(other.to_string())),
    };
    let learned = Learned { key, fact };
    Ok(Entry { key: key_of(&learned), learned, learned_ms: w.learned_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Vec<Learned> {
        let k4 = DomainKey { exporter: Addr::from(std::net::Ipv4Addr::new(192, 0, 2, 1)), domain: 0 };
        let k6 =
            DomainKey { exporter: Addr::from("2001:db8::1".parse::<std::net::IpAddr>().unwrap()), domain: 7 };
        let fields = vec![
            FieldSpec { id: 8, len: 4, enterprise: 0 },
            FieldSpec { id: 1, len: 65535, enterprise: 29305 },
        ];
        vec![
            Learned { key: k4, fact: Fact::Template { id: 256, scope_fields: 0, fields: fields.clone() } },
            Learned { key: k6, fact: Fact::Template { id: 300, scope_fields: 1, fields } },
            Learned { key: k4, fact: Fact::Sampler { id: 3, rate: Some(256) } },
            Learned { key: k4, fact: Fact::Sampler { id: 4, rate: None } },
            Learned { key: k6, fact: Fact::ExporterRate(Some(2048)) },
            Learned { key: k6, fact: Fact::Boot(1_790_000_000_000) },
        ]
    }

    #[test]
    fn every_fact_round_trips_with_its_key() {
        for l in facts() {
            let (key, value) = encode(&l, 42, "host/1");
            let e = decode(&value).unwrap();
            assert_eq!(e, Entry { key: key.clone(), learned: l.clone(), learned_ms: 42 });
        }
        assert_eq!(key_of(&facts()[0]), "192.0.2.1/0/template/256");
        assert_eq!(key_of(&facts()[4]), "2001:db8::1/7/rate/0");
    }

    #[test]
    fn newer_writers_and_damaged_values_are_told_apart() {
        let newer = br#"{"spillway_netflow_state":2,"exporter":"10.0.0.1","domain":0,"kind":"boot","boot_ms":5,"extra":true}"#;
        assert_eq!(decode(newer).unwrap().learned.fact, Fact::Boot(5), "unknown fields are ignored");
        let kind = br#"{"spillway_netflow_state":2,"exporter":"10.0.0.1","domain":0,"kind":"mpls_labels"}"#;
        assert_eq!(decode(kind), Err(BadEntry::UnknownKind("mpls_labels".into())));
        for bad in [&b"{"[..], b"null", br#"{"spillway_netflow_state":1,"exporter":"x","domain":0,"kind":"boot"}"#,
            br#"{"spillway_netflow_state":1,"exporter":"10.0.0.1","domain":0,"kind":"template","id":12,"fields":[[1,4,0]]}"#,
            br#"{"spillway_netflow_state":1,"exporter":"10.0.0.1","domain":0,"kind":"template","id":300,"fields":[]}"#] {
            assert!(matches!(decode(bad), Err(BadEntry::Corrupt(_))), "{}", String::from_utf8_lossy(bad));
        }
    }
}
