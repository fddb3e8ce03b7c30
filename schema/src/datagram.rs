//! The raw-datagram schema: one record per received datagram, for the
//! relay tier (an edge `netflow` source with `relay: true` → the `kafka`
//! sink with `encoding: datagram` → the `kafka` source → the
//! `netflow_decode` transform), and its compact binary form in Kafka.
//!
//! Binary form of one datagram (big-endian), 48 bytes then the payload:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `SD` |
//! | 1 | version, 1 |
//! | 1 | reserved, 0 |
//! | 8 | `time_received`, ns since the epoch |
//! | 16 | `exporter` (IPv4 v4-mapped) |
//! | 2 | `exporter_port` |
//! | 16 | `collector`, the address the datagram was sent to |
//! | 2 | `collector_port` |
//! | rest | `payload`, the datagram as received |

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::{address_type, timestamp_type};

pub const TIME_RECEIVED: &str = "time_received";
pub const EXPORTER: &str = "exporter";
pub const EXPORTER_PORT: &str = "exporter_port";
pub const COLLECTOR: &str = "collector";
pub const COLLECTOR_PORT: &str = "collector_port";
pub const PAYLOAD: &str = "payload";

/// The datagram schema.
pub fn schema() -> Schema {
    Schema::new(vec![
        Arc::new(Field::new(TIME_RECEIVED, timestamp_type(), false)),
        Arc::new(Field::new(EXPORTER, address_type(), false)),
        Arc::new(Field::new(EXPORTER_PORT, DataType::UInt16, false)),
        Arc::new(Field::new(COLLECTOR, address_type(), false)),
        Arc::new(Field::new(COLLECTOR_PORT, DataType::UInt16, false)),
        Arc::new(Field::new(PAYLOAD, DataType::Binary, false)),
    ])
}

/// Whether `s` is the datagram schema (same names and types, in order).
pub fn is_datagram_schema(s: &Schema) -> bool {
    let want = schema();
    s.fields().len() == want.fields().len()
        && s.fields()
            .iter()
            .zip(want.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

const MAGIC: [u8; 2] = *b"SD";
const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 48;

/// One datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub time_received: i64,
    pub exporter: [u8; 16],
    pub exporter_port: u16,
    pub collector: [u8; 16],
    pub collector_port: u16,
    pub payload: &'a [u8],
}

impl Datagram<'_> {
    /// Appends the binary form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&self.time_received.to_be_bytes());
        out.extend_from_slice(&self.exporter);
        out.extend_from_slice(&self.exporter_port.to_be_bytes());
        out.extend_from_slice(&self.collector);
        out.extend_from_slice(&self.collector_port.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Reads the binary form.
pub fn decode(b: &[u8]) -> Result<Datagram<'_>, String> {
    if b.len() < HEADER_LEN {
        return Err(format!(
            "a datagram record of {} bytes is shorter than its {HEADER_LEN}-byte header",
            b.len()
        ));
    }
    if b[0..2] != MAGIC {
        return Err("not a datagram record (no `SD` magic)".into());
    }
    if b[2] != VERSION {
        return Err(format!("datagram record version {} (this build reads {VERSION})", b[2]));
    }
    let a16 = |at: usize| -> [u8; 16] { b[at..at + 16].try_into().expect("16 bytes") };
    let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    Ok(Datagram {
        time_received: i64::from_be_bytes(b[4..12].try_into().expect("8 bytes")),
        exporter: a16(12),
        exporter_port: u16_at(28),
        collector: a16(30),
        collector_port: u16_at(46),
        payload: &b[HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_form_round_trips_and_refuses_what_it_is_not() {
        let d = Datagram {
            time_received: 1_790_000_000_123_456_789,
            exporter: [1; 16],
            exporter_port: 50_000,
            collector: [2; 16],
            collector_port: 2055,
            payload: b"\x00\x09payload",
        };
        let mut b = Vec::new();
        d.encode(&mut b);
        assert_eq!(b.len(), HEADER_LEN + d.payload.len());
        assert_eq!(decode(&b).unwrap(), d);
        for cut in 0..HEADER_LEN {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(decode(&bad).unwrap_err().contains("magic"));
        bad = b.clone();
        bad[2] = 9;
        assert!(decode(&bad).unwrap_err().contains("version 9"));
        assert!(is_datagram_schema(&schema()));
        assert!(!is_datagram_schema(&crate::flow_schema()));
    }
}
