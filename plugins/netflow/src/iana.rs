//! IPFIX Information Elements by name, for `extra_fields`.
//!
//! The IANA registry comes from the `netflow_parser` crate, which keeps it
//! (names and data types) up to date; we look names up case-insensitively,
//! so `sourceIPv4Address` (IANA's spelling) and `SourceIpv4address` (the
//! crate's) both work. Each extra element becomes a nullable column named in
//! snake case (`flowEndReason` → `flow_end_reason`).

use std::collections::HashMap;
use std::sync::OnceLock;

use arrow::datatypes::DataType;
use netflow_parser::variable_versions::field_value::FieldDataType;
use netflow_parser::variable_versions::ipfix::lookup::IANAIPFixField;

use crate::template::{Target, target_of};

/// How an extra element's value is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    /// Unsigned integer of any encoded length.
    Unsigned,
    /// Signed integer of any encoded length.
    Signed,
    /// IEEE float (4 or 8 bytes).
    Float,
    /// IPv4 or IPv6 address (the engine's 16-byte form).
    Address,
    /// MAC address, as `aa:bb:cc:dd:ee:ff`.
    Mac,
    /// UTF-8 text.
    Text,
    /// Anything else, as bytes.
    Bytes,
}

impl ExtraKind {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Unsigned => DataType::UInt64,
            Self::Signed => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Address => spillway_core::schema::address_type(),
            Self::Mac | Self::Text => DataType::Utf8,
            Self::Bytes => DataType::Binary,
        }
    }
}

/// A requested extra element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraField {
    /// Column name (snake case of the element's name).
    pub column: String,
    /// IANA element id.
    pub id: u16,
    /// Storage.
    pub kind: ExtraKind,
}

/// Most extra elements per source.
pub const MAX_EXTRA: usize = 16;

fn registry() -> &'static HashMap<String, (u16, ExtraKind)> {
    static REG: OnceLock<HashMap<String, (u16, ExtraKind)>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut m = HashMap::new();
        for id in 1..=1023u16 {
            let f = IANAIPFixField::from(id);
            if matches!(f, IANAIPFixField::Unknown(_)) {
                continue;
            }
            let kind = match FieldDataType::from(f) {
                FieldDataType::SignedDataNumber => ExtraKind::Signed,
                FieldDataType::Float64 => ExtraKind::Float,
                FieldDataType::Ip4Addr | FieldDataType::Ip6Addr => ExtraKind::Address,
                FieldDataType::MacAddr => ExtraKind::Mac,
                FieldDataType::String => ExtraKind::Text,
                FieldDataType::Vec | FieldDataType::ApplicationId | FieldDataType::Unknown => {
                    ExtraKind::Bytes
                }
                _ => ExtraKind::Unsigned,
            };
            m.insert(format!("{f:?}").to_ascii_lowercase(), (id, kind));
        }
        m
    })
}

/// `flowEndReason` → `flow_end_reason`; `sourceIPv4Address` → `source_ipv4_address`.
pub fn snake_case(name: &str) -> String {
    // "IPv4"/"IPv6" are one word, not "I" + "Pv4".
    let name = name.replace("IPv4", "Ipv4").replace("IPv6", "Ipv6");
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Resolves an element name, or says why it cannot be an extra column.
pub fn resolve(name: &str) -> Result<ExtraField, String> {
    let Some(&(id, kind)) = registry().get(&name.to_ascii_lowercase()) else {
        let names = registry().keys().map(String::as_str);
        let hint = spillway_core::config::did_you_mean(&name.to_ascii_lowercase(), names);
        return Err(format!("`{name}` is not an IPFIX Information Element in the IANA registry{hint}"));
    };
    if target_of(id) != Target::Skip {
        return Err(format!("`{name}` (element {id}) is already decoded into the flow schema"));
    }
    Ok(ExtraField { column: snake_case(name), id, kind })
}

/// Resolves a list, checking its length and duplicate columns.
pub fn resolve_all(names: &[String]) -> Result<Vec<ExtraField>, String> {
    if names.len() > MAX_EXTRA {
        return Err(format!("at most {MAX_EXTRA} extra fields per source"));
    }
    let mut out: Vec<ExtraField> = Vec::new();
    for n in names {
        let f = resolve(n)?;
        if out.iter().any(|o| o.id == f.id) {
            return Err(format!("`{n}` is listed twice"));
        }
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively_to_typed_columns() {
        let f = resolve("flowEndReason").unwrap();
        assert_eq!((f.column.as_str(), f.id, f.kind), ("flow_end_reason", 136, ExtraKind::Unsigned));
        let f = resolve("postNATSourceIPv4Address").unwrap();
        assert_eq!((f.id, f.kind), (225, ExtraKind::Address));
        assert_eq!(f.column, "post_nat_source_ipv4_address");
        assert_eq!(resolve("sourceMacAddress").unwrap().kind, ExtraKind::Mac);
        assert!(resolve("octetDeltaCount").unwrap_err().contains("already decoded"));
        assert!(resolve("flowEndReasn").unwrap_err().contains("did you mean"));
    }
}
