//! Records in human form: JSON lines with addresses as strings and
//! timestamps as RFC 3339, the shape every text sink (and the Kafka `json`
//! encoding) shares — written by [`JsonLines`], read back into the flow
//! schema by [`JsonDecoder`]; the one codec of that form.
//!
//! ```
//! # use std::sync::Arc;
//! # use arrow::array::{FixedSizeBinaryArray, RecordBatch};
//! # use arrow::datatypes::{Field, Schema};
//! use spillway_core::{human::JsonLines, schema};
//! let addr = schema::Addr::from("10.0.0.1".parse::<std::net::IpAddr>().unwrap());
//! let col = FixedSizeBinaryArray::try_from_iter([addr].into_iter()).unwrap();
//! let s = Arc::new(Schema::new(vec![Field::new("src_addr", schema::address_type(), false)]));
//! let batch = RecordBatch::try_new(s.clone(), vec![Arc::new(col)]).unwrap();
//! let mut out = Vec::new();
//! JsonLines::new(&s).write_batch(&batch, &mut out);
//! assert_eq!(out, b"{\"src_addr\":\"10.0.0.1\"}\n");
//! ```

use std::io::Write;
use std::net::Ipv6Addr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, RecordBatch};
use arrow::datatypes::*;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::addr::Addr;
use crate::schema::{self, flow_schema};

/// A JSON-lines encoder for one schema; keys are escaped once, up front.
pub struct JsonLines {
    keys: Vec<Vec<u8>>,
}

impl JsonLines {
    /// An encoder for batches of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let keys = schema
            .fields()
            .iter()
            .map(|f| {
                let mut k = serde_json::to_vec(f.name()).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        Self { keys }
    }

    /// Appends one JSON object per row to `out`, each ending in `\n`.
    /// Null values are omitted.
    pub fn write_batch(&self, batch: &RecordBatch, out: &mut Vec<u8>) {
        for row in 0..batch.num_rows() {
            self.write_row(batch, row, out);
            out.push(b'\n');
        }
    }

    /// Appends the JSON object for one row to `out` (no newline).
    pub fn write_row(&self, batch: &RecordBatch, row: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (col, key) in batch.columns().iter().zip(&self.keys) {
            if col.is_null(row) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key);
            write_value(col.as_ref(), row, out);
        }
        out.push(b'}');
    }
}

/// Writes one value in human form.
pub fn write_value(col: &dyn Array, row: usize, out: &mut Vec<u8>) {
    macro_rules! num {
        ($t:ty) => {{
            let _ = write!(out, "{}", col.as_primitive::<$t>().value(row));
        }};
    }
    match col.data_type() {
        DataType::Boolean => {
            out.extend_from_slice(if col.as_boolean().value(row) { b"true" } else { b"false" })
        }
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::Float32 | DataType::Float64 => {
            let v = if let Some(a) = col.as_primitive_opt::<Float64Type>() {
                a.value(row)
            } else {
                col.as_primitive::<Float32Type>().value(row) as f64
            };
            if v.is_finite() {
                let _ = write!(out, "{v}");
            } else {
                out.extend_from_slice(b"null");
            }
        }
        DataType::Utf8 => {
            let _ = serde_json::to_writer(&mut *out, col.as_string::<i32>().value(row));
        }
        DataType::LargeUtf8 => {
            let _ = serde_json::to_writer(&mut *out, col.as_string::<i64>().value(row));
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => {
                    col.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000_000)
                }
                TimeUnit::Millisecond => {
                    col.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1_000_000)
                }
                TimeUnit::Microsecond => {
                    col.as_primitive::<TimestampMicrosecondType>().value(row).saturating_mul(1_000)
                }
                TimeUnit::Nanosecond => col.as_primitive::<TimestampNanosecondType>().value(row),
            };
            out.push(b'"');
            write_rfc3339(v, out);
            out.push(b'"');
        }
        DataType::FixedSizeBinary(16) => {
            let addr = Addr::from_slice(col.as_fixed_size_binary().value(row)).unwrap_or_default();
            out.push(b'"');
            write_addr(addr, out);
            out.push(b'"');
        }
        _ => {
            // Anything else is rendered with Arrow's own formatter, as a string.
            let opts = FormatOptions::default();
            if let Ok(f) = ArrayFormatter::try_new(col, &opts) {
                let s = f.value(row).to_string();
                let _ = serde_json::to_writer(&mut *out, &s);
            } else {
                out.extend_from_slice(b"null");
            }
        }
    }
}

/// Writes an address in its conventional form (dotted quad for v4-mapped).
pub fn write_addr(addr: Addr, out: &mut Vec<u8>) {
    if let Some(v4) = addr.v4_octets() {
        let (text, n) = ipv4_text16(v4);
        let at = out.len();
        out.extend_from_slice(&text);
        out.truncate(at + n);
        return;
    }
    let _ = write!(out, "{}", Ipv6Addr::from(addr.0));
}

/// Each octet's decimal digits followed by a `.`, and how many digits.
const OCTETS: ([[u8; 4]; 256], [u8; 256]) = {
    let (mut text, mut len) = ([[0u8; 4]; 256], [0u8; 256]);
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let t = &mut text[i];
        len[i] = if b >= 100 {
            *t = [b'0' + b / 100, b'0' + (b / 10) % 10, b'0' + b % 10, b'.'];
            3
        } else if b >= 10 {
            *t = [b'0' + b / 10, b'0' + b % 10, b'.', 0];
            2
        } else {
            *t = [b'0' + b, b'.', 0, 0];
            1
        };
        i += 1;
    }
    (text, len)
};

/// Formats a dotted quad into `buf`, returning its length. Several times
/// faster than `Display`, which matters when every row has three addresses:
/// one 4-byte copy per octet from a table, no divisions or branches.
#[inline]
pub fn ipv4_text(o: [u8; 4], buf: &mut [u8; 15]) -> usize {
    let (text, n) = ipv4_text16(o);
    buf.copy_from_slice(&text[..15]);
    n
}

/// [`ipv4_text`] into 16 bytes (the text, then bytes to ignore): copying
/// a fixed 16 bytes is one store where a copy of the text's length is a
/// call.
#[inline]
pub fn ipv4_text16(o: [u8; 4]) -> ([u8; 16], usize) {
    // Assembled in a register: byte stores to memory read back as one
    // 16-byte word stall the store buffer.
    let mut text = 0u128;
    let mut n = 0;
    for b in o {
        text |= (u32::from_le_bytes(OCTETS.0[b as usize]) as u128) << (8 * n);
        n += OCTETS.1[b as usize] as usize + 1;
    }
    // Without the `.` after the last octet.
    (text.to_le_bytes(), n - 1)
}

/// Writes `ns` since the epoch as RFC 3339 UTC with as many fractional
/// digits as needed (`2026-11-27T13:05:01.5Z`).
pub fn write_rfc3339(ns: i64, out: &mut Vec<u8>) {
    let dt = chrono::DateTime::from_timestamp_nanos(ns);
    let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.fZ"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut out = Vec::new();
        write_rfc3339(1_700_000_000_123_000_000, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn the_fast_ipv4_formatter_agrees_with_display() {
        let every_octet = (0..=255u8).map(|b| [b, 255 - b, b / 2, b.wrapping_mul(7)]);
        for o in [[0, 0, 0, 0], [255, 255, 255, 255], [10, 9, 100, 99], [192, 0, 2, 1], [1, 20, 200, 0]]
            .into_iter()
            .chain(every_octet)
        {
            let mut buf = [0u8; 15];
            let n = ipv4_text(o, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), std::net::Ipv4Addr::from(o).to_string());
        }
    }

    #[test]
    fn addresses_render_by_family() {
        let mut out = Vec::new();
        write_addr(crate::schema::Addr::from("2001:db8::7".parse::<std::net::IpAddr>().unwrap()), &mut out);
        out.push(b' ');
        write_addr(crate::schema::Addr::v4(0xc0a8_0001), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "2001:db8::7 192.168.0.1");
    }
}

/// Reads flow records in the human form (one JSON object a line, what
/// [`JsonLines`] writes) back into flow-schema batches.
///
/// Lines are framed as they come and parsed together at [`JsonDecoder::take`];
/// only if that fails is each parsed alone, so a bad line is dropped alone.
#[derive(Default)]
pub struct JsonDecoder {
    text: Vec<u8>,
    /// End offset in `text` of each line pushed since the last take.
    ends: Vec<usize>,
}

impl JsonDecoder {
    /// Adds one record (a JSON object on one line).
    pub fn push(&mut self, line: &[u8]) -> Result<(), String> {
        let t = line.trim_ascii();
        if !(t.starts_with(b"{") && t.ends_with(b"}")) || t.contains(&b'\n') {
            return Err("not a JSON object on one line".into());
        }
        self.text.extend_from_slice(t);
        self.text.push(b'\n');
        self.ends.push(self.text.len());
        Ok(())
    }

    /// Records pushed since the last take.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when nothing was pushed since the last take.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records pushed since the last call as a batch, and the ones that
    /// did not decode (index among them, reason).
    pub fn take(&mut self) -> Result<(RecordBatch, Vec<(usize, String)>), String> {
        let text = std::mem::take(&mut self.text);
        let ends = std::mem::take(&mut self.ends);
        if let Ok(batch) = json_batch(&text)
            && batch.num_rows() == ends.len()
        {
            return Ok((batch, Vec::new()));
        }
        let (mut good, mut malformed, mut start) = (Vec::new(), Vec::new(), 0);
        for (i, &end) in ends.iter().enumerate() {
            match json_batch(&text[start..end]) {
                Ok(b) if b.num_rows() == 1 => good.push(b),
                Ok(_) => malformed.push((i, "not one JSON object".to_string())),
                Err(e) => malformed.push((i, e)),
            }
            start = end;
        }
        let batch = arrow::compute::concat_batches(&flow_schema(), &good).map_err(|e| e.to_string())?;
        Ok((batch, malformed))
    }
}

/// JSON lines in the human form → a flow batch. Addresses are read as text
/// and converted; other columns by arrow-json.
fn json_batch(text: &[u8]) -> Result<RecordBatch, String> {
    let flow = flow_schema();
    let read_schema: SchemaRef = Arc::new(Schema::new(
        flow.fields()
            .iter()
            .map(|f| {
                if f.data_type() == &schema::address_type() {
                    Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                } else if matches!(f.data_type(), DataType::Timestamp(..)) {
                    // Read zone-less (RFC 3339 text carries its offset),
                    // then label as UTC: named zones need chrono-tz.
                    Arc::new(Field::new(
                        f.name(),
                        DataType::Timestamp(TimeUnit::Nanosecond, None),
                        f.is_nullable(),
                    ))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let mut reader = arrow::json::ReaderBuilder::new(read_schema)
        .with_batch_size(1 << 20)
        .build(text)
        .map_err(|e| e.to_string())?;
    let Some(b) = reader.next().transpose().map_err(|e| e.to_string())? else {
        return Ok(RecordBatch::new_empty(flow));
    };
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (f, c) in flow.fields().iter().zip(b.columns()) {
        if f.data_type() == &schema::address_type() {
            let s = c.as_string::<i32>();
            let mut out = FixedSizeBinaryBuilder::with_capacity(s.len(), 16);
            for v in s.iter() {
                match v {
                    Some(t) => {
                        let ip = t
                            .parse::<std::net::IpAddr>()
                            .map_err(|_| format!("`{}` is not an address: {t:?}", f.name()))?;
                        out.append_value(crate::schema::Addr::from(ip)).map_err(|e| e.to_string())?
                    }
                    None => out.append_null(),
                }
            }
            cols.push(Arc::new(out.finish()));
        } else if matches!(f.data_type(), DataType::Timestamp(..)) {
            let t =
                c.as_primitive::<arrow::datatypes::TimestampNanosecondType>().clone().with_timezone("UTC");
            cols.push(Arc::new(t));
        } else {
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(flow, cols).map_err(|e| e.to_string())
}
