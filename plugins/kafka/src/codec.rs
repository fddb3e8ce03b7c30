//! Records ⇄ Kafka messages: JSON (the human form of the file sink, one
//! record per message) and protobuf (docs/flow.proto).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Schema};
use prost::Message;
use spillway_core::addr::Addr;
use spillway_core::human::{JsonDecoder, JsonLines, write_addr};
use spillway_core::schema::{flow_schema, names};

use crate::proto::*;

/// How records are written into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf {
        length_delimited: bool,
    },
    /// The relay tier's datagrams.
    Datagram,
}

/// Encodes batches of one schema.
pub struct Encoder {
    encoding: Encoding,
    json: JsonLines,
    msg: FlowMessage,
}

impl Encoder {
    pub fn new(encoding: Encoding, schema: &Schema) -> Self {
        Self { encoding, json: JsonLines::new(schema), msg: FlowMessage::default() }
    }

    /// Appends every row of `batch` to `buf` as one message each; `ends`
    /// gets each message's end offset.
    pub fn encode(&mut self, batch: &RecordBatch, buf: &mut Vec<u8>, ends: &mut Vec<usize>) {
        match self.encoding {
            Encoding::Json => {
                for row in 0..batch.num_rows() {
                    self.json.write_row(batch, row, buf);
                    ends.push(buf.len());
                }
            }
            Encoding::Datagram => encode_datagrams(batch, buf, ends),
            Encoding::Protobuf { length_delimited } => {
                let cols = FlowColumns::of(batch);
                for row in 0..batch.num_rows() {
                    cols.fill(row, &mut self.msg);
                    if length_delimited {
                        self.msg.encode_length_delimited(buf).expect("a Vec grows");
                    } else {
                        self.msg.encode(buf).expect("a Vec grows");
                    }
                    ends.push(buf.len());
                }
            }
        }
    }
}

/// Declares the codec's typed view of the flow-schema columns: a field per
/// column, looked up by the shared name (`spillway_schema::names`), and, for
/// the test that keeps it true to the shared definition, the columns of a
/// batch that a field could not read with its type.
macro_rules! flow_columns {
    ($($field:ident: $ty:ty = $name:ident),* $(,)?) => {
        /// The flow-schema columns of a batch that has them (by name and type).
        struct FlowColumns<'a> {
            $($field: Option<&'a $ty>,)*
        }

        impl<'a> FlowColumns<'a> {
            fn of(b: &'a RecordBatch) -> Self {
                Self { $($field: col(b, names::$name),)* }
            }

            #[cfg(test)]
            fn unread(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$field.is_none() {
                    v.push(names::$name);
                })*
                v
            }
        }
    };
}

flow_columns! {
    time_received: TimestampNanosecondArray = TIME_RECEIVED,
    flow_start: TimestampNanosecondArray = FLOW_START,
    flow_end: TimestampNanosecondArray = FLOW_END,
    exporter: arrow::array::FixedSizeBinaryArray = EXPORTER,
    observation_domain: UInt32Array = OBSERVATION_DOMAIN,
    sequence: UInt32Array = SEQUENCE,
    flow_version: UInt16Array = FLOW_VERSION,
    src_addr: arrow::array::FixedSizeBinaryArray = SRC_ADDR,
    dst_addr: arrow::array::FixedSizeBinaryArray = DST_ADDR,
    next_hop: arrow::array::FixedSizeBinaryArray = NEXT_HOP,
    src_port: UInt16Array = SRC_PORT,
    dst_port: UInt16Array = DST_PORT,
    protocol: UInt8Array = PROTOCOL,
    tcp_flags: UInt16Array = TCP_FLAGS,
    tos: UInt8Array = TOS,
    in_if: UInt32Array = IN_IF,
    out_if: UInt32Array = OUT_IF,
    bytes: UInt64Array = BYTES,
    packets: UInt64Array = PACKETS,
    src_as: UInt32Array = SRC_AS,
    dst_as: UInt32Array = DST_AS,
    src_mask: UInt8Array = SRC_MASK,
    dst_mask: UInt8Array = DST_MASK,
    vlan: UInt16Array = VLAN,
    direction: UInt8Array = DIRECTION,
    sampling_rate: UInt32Array = SAMPLING_RATE,
    sampling_source: StringArray = SAMPLING_SOURCE,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Option<&'a T> {
    b.column_by_name(name)?.as_any().downcast_ref::<T>()
}

fn get<'a, A: Array + 'static, T>(a: Option<&'a A>, row: usize, f: impl Fn(&'a A, usize) -> T) -> Option<T> {
    a.filter(|a| a.is_valid(row)).map(|a| f(a, row))
}

fn put_addr(v: &mut Vec<u8>, a: Option<&[u8]>) {
    v.clear();
    if let Some(a) = a {
        match Addr::from_slice(a).and_then(|a| a.v4_octets()) {
            Some(v4) => v.extend_from_slice(&v4),
            None => v.extend_from_slice(a),
        }
    }
}

impl FlowColumns<'_> {
    /// Fills `m` from one row, reusing its buffers.
    fn fill(&self, r: usize, m: &mut FlowMessage) {
        let mut present = 0;
        let mut flag = |has: bool, bit: u32| {
            if has {
                present |= bit;
            }
        };
        let ts = |a: Option<&TimestampNanosecondArray>| get(a, r, |a, i| a.value(i).max(0) as u64);
        let u32v = |a: Option<&UInt32Array>| get(a, r, |a, i| a.value(i));
        let u16v = |a: Option<&UInt16Array>| get(a, r, |a, i| a.value(i) as u32);
        let u8v = |a: Option<&UInt8Array>| get(a, r, |a, i| a.value(i) as u32);
        m.time_received_ns = ts(self.time_received).unwrap_or(0);
        let start = ts(self.flow_start);
        let end = ts(self.flow_end);
        flag(start.is_some(), HAS_START);
        flag(end.is_some(), HAS_END);
        m.time_flow_start_ns = start.unwrap_or(0);
        m.time_flow_end_ns = end.unwrap_or(0);
        put_addr(&mut m.sampler_address, get(self.exporter, r, |a, i| a.value(i)));
        m.observation_domain_id = u32v(self.observation_domain).unwrap_or(0);
        let seq = u32v(self.sequence);
        flag(seq.is_some(), HAS_SEQUENCE);
        m.sequence_num = seq.unwrap_or(0);
        m.flow_version = u16v(self.flow_version).unwrap_or(0);
        m.r#type = match m.flow_version {
            5 => NETFLOW_V5,
            9 => NETFLOW_V9,
            10 => IPFIX,
            _ => FLOW_UNKNOWN,
        };
        let src = get(self.src_addr, r, |a, i| a.value(i));
        put_addr(&mut m.src_addr, src);
        put_addr(&mut m.dst_addr, get(self.dst_addr, r, |a, i| a.value(i)));
        put_addr(&mut m.next_hop, get(self.next_hop, r, |a, i| a.value(i)));
        m.etype = match src {
            Some(a) if Addr::from_slice(a).and_then(|a| a.v4_octets()).is_some() => 0x0800,
            Some(_) => 0x86dd,
            None => 0,
        };
        let proto = u8v(self.protocol);
        flag(proto.is_some(), HAS_PROTO);
        m.proto = proto.unwrap_or(0);
        let (sp, dp) = (u16v(self.src_port), u16v(self.dst_port));
        flag(sp.is_some() || dp.is_some(), HAS_PORTS);
        let icmp = matches!(m.proto, 1 | 58);
        m.src_port = sp.unwrap_or(0);
        if icmp {
            // goflow2 carries ICMP type/code in their own fields.
            let d = dp.unwrap_or(0);
            (m.icmp_type, m.icmp_code, m.dst_port) = (d >> 8, d & 0xff, 0);
        } else {
            (m.icmp_type, m.icmp_code, m.dst_port) = (0, 0, dp.unwrap_or(0));
        }
        let tf = u16v(self.tcp_flags);
        flag(tf.is_some(), HAS_TCP_FLAGS);
        m.tcp_flags = tf.unwrap_or(0);
        let tos = u8v(self.tos);
        flag(tos.is_some(), HAS_TOS);
        m.ip_tos = tos.unwrap_or(0);
        let (i, o) = (u32v(self.in_if), u32v(self.out_if));
        flag(i.is_some(), HAS_IN_IF);
        flag(o.is_some(), HAS_OUT_IF);
        m.in_if = i.unwrap_or(0);
        m.out_if = o.unwrap_or(0);
        let (bytes, packets) =
            (get(self.bytes, r, |a, i| a.value(i)), get(self.packets, r, |a, i| a.value(i)));
        flag(bytes.is_some(), HAS_BYTES);
        flag(packets.is_some(), HAS_PACKETS);
        m.bytes = bytes.unwrap_or(0);
        m.packets = packets.unwrap_or(0);
        let (sa, da) = (u32v(self.src_as), u32v(self.dst_as));
        flag(sa.is_some() || da.is_some(), HAS_AS);
        m.src_as = sa.unwrap_or(0);
        m.dst_as = da.unwrap_or(0);
        let (sm, dm) = (u8v(self.src_mask), u8v(self.dst_mask));
        flag(sm.is_some() || dm.is_some(), HAS_MASKS);
        m.src_net = sm.unwrap_or(0);
        m.dst_net = dm.unwrap_or(0);
        let vlan = u16v(self.vlan);
        flag(vlan.is_some(), HAS_VLAN);
        m.vlan_id = vlan.unwrap_or(0);
        m.direction = u8v(self.direction);
        // An unknown rate is absent (goflow2 writes 0 for it too), never 1.
        let rate = u32v(self.sampling_rate);
        flag(rate.is_some(), HAS_SAMPLING_RATE);
        m.sampling_rate = rate.unwrap_or(0) as u64;
        m.sampling_source.clear();
        if let Some(s) = get(self.sampling_source, r, |a, i| a.value(i)) {
            m.sampling_source.push_str(s);
        }
        m.present = present;
    }
}

/// Datagram-schema rows in their binary form (the schema was checked when
/// the pipeline was built).
fn encode_datagrams(b: &RecordBatch, buf: &mut Vec<u8>, ends: &mut Vec<usize>) {
    use arrow::datatypes::{TimestampNanosecondType, UInt16Type};
    use spillway_schema::datagram as d;
    let col = |n: &str| b.column_by_name(n).expect("the datagram schema");
    let time = col(d::TIME_RECEIVED).as_primitive::<TimestampNanosecondType>();
    let exporter = col(d::EXPORTER).as_fixed_size_binary();
    let port = col(d::EXPORTER_PORT).as_primitive::<UInt16Type>();
    let to = col(d::COLLECTOR).as_fixed_size_binary();
    let to_port = col(d::COLLECTOR_PORT).as_primitive::<UInt16Type>();
    let payload = col(d::PAYLOAD).as_binary::<i32>();
    let a16 = |v: &[u8]| -> [u8; 16] { v.try_into().unwrap_or([0; 16]) };
    for row in 0..b.num_rows() {
        d::Datagram {
            time_received: time.value(row),
            exporter: a16(exporter.value(row)),
            exporter_port: port.value(row),
            collector: a16(to.value(row)),
            collector_port: to_port.value(row),
            payload: payload.value(row),
        }
        .encode(buf);
        ends.push(buf.len());
    }
}

/// Datagram records decoded from messages, column by column.
#[derive(Default)]
struct DatagramRows {
    time: Vec<i64>,
    exporter: Vec<u8>,
    port: Vec<u16>,
    to: Vec<u8>,
    to_port: Vec<u16>,
    payload: arrow::array::BinaryBuilder,
}

impl DatagramRows {
    fn push(&mut self, msg: &[u8]) -> Result<(), DecodeError> {
        let g = spillway_schema::datagram::decode(msg)?;
        self.time.push(g.time_received);
        self.exporter.extend_from_slice(&g.exporter);
        self.port.push(g.exporter_port);
        self.to.extend_from_slice(&g.collector);
        self.to_port.push(g.collector_port);
        self.payload.append_value(g.payload);
        Ok(())
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    fn finish(&mut self) -> Result<RecordBatch, String> {
        use arrow::array::{ArrayRef, FixedSizeBinaryArray, TimestampNanosecondArray, UInt16Array};
        use arrow::buffer::Buffer;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(std::mem::take(&mut self.time)).with_timezone("UTC")),
            Arc::new(FixedSizeBinaryArray::new(
                16,
                Buffer::from_vec(std::mem::take(&mut self.exporter)),
                None,
            )),
            Arc::new(UInt16Array::from(std::mem::take(&mut self.port))),
            Arc::new(FixedSizeBinaryArray::new(16, Buffer::from_vec(std::mem::take(&mut self.to)), None)),
            Arc::new(UInt16Array::from(std::mem::take(&mut self.to_port))),
            Arc::new(self.payload.finish()),
        ];
        RecordBatch::try_new(Arc::new(spillway_schema::datagram::schema()), cols).map_err(|e| e.to_string())
    }
}

/// Writes the message key of a row: the key column in human form
/// (addresses as text, numbers in decimal, strings as they are).
pub fn write_key(col: &dyn Array, row: usize, out: &mut Vec<u8>) {
    if col.is_null(row) {
        return;
    }
    match col.data_type() {
        DataType::FixedSizeBinary(16) => {
            let a = col.as_fixed_size_binary();
            write_addr(Addr::from_slice(a.value(row)).expect("16 bytes"), out);
        }
        DataType::Utf8 => out.extend_from_slice(col.as_string::<i32>().value(row).as_bytes()),
        _ => {
            let start = out.len();
            spillway_core::human::write_value(col, row, out);
            // Strip JSON quoting of other types.
            if out.len() >= start + 2 && out[start] == b'"' && out[out.len() - 1] == b'"' {
                out.pop();
                out.remove(start);
            }
        }
    }
}

/// Why a message could not be decoded.
pub type DecodeError = String;

/// Decodes messages into flow batches.
pub struct Decoder {
    encoding: Encoding,
    rows: Rows,
    json: JsonDecoder,
    datagrams: DatagramRows,
}

/// What `take` decoded: the batch, and the messages that turned out
/// malformed only when decoded (index among the messages pushed since the
/// last take, reason).
pub struct Decoded {
    pub batch: RecordBatch,
    pub malformed: Vec<(usize, DecodeError)>,
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            rows: Rows::default(),
            json: JsonDecoder::default(),
            datagrams: DatagramRows::default(),
        }
    }

    /// Adds one message. A protobuf message is decoded here; a JSON one is
    /// only framed (parsed once, with the batch, in [`Decoder::take`]).
    pub fn push(&mut self, payload: &[u8]) -> Result<(), DecodeError> {
        match self.encoding {
            Encoding::Protobuf { length_delimited } => {
                let m = if length_delimited {
                    FlowMessage::decode_length_delimited(payload)
                } else {
                    FlowMessage::decode(payload)
                }
                .map_err(|e| format!("not a FlowMessage: {e}"))?;
                self.rows.push(&m)
            }
            Encoding::Json => self.json.push(payload),
            Encoding::Datagram => self.datagrams.push(payload),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self.encoding {
            Encoding::Json => self.json.len(),
            Encoding::Protobuf { .. } => self.rows.len,
            Encoding::Datagram => self.datagrams.len(),
        }
    }

    /// The records added since the last call, as a flow-schema batch.
    ///
    /// JSON messages are decoded together; only if that fails is each
    /// decoded alone, so that one bad message is dropped alone.
    pub fn take(&mut self) -> Result<Decoded, String> {
        match self.encoding {
            Encoding::Protobuf { .. } => {
                Ok(Decoded { batch: std::mem::take(&mut self.rows).finish()?, malformed: Vec::new() })
            }
            Encoding::Json => {
                let (batch, malformed) = self.json.take()?;
                Ok(Decoded { batch, malformed })
            }
            Encoding::Datagram => Ok(Decoded { batch: self.datagrams.finish()?, malformed: Vec::new() }),
        }
    }
}

/// Protobuf records column by column.
#[derive(Default)]
struct Rows {
    len: usize,
    time_received: Vec<i64>,
    flow_start: Vec<Option<i64>>,
    flow_end: Vec<Option<i64>>,
    exporter: Vec<Addr>,
    observation_domain: Vec<u32>,
    sequence: Vec<Option<u32>>,
    flow_version: Vec<u16>,
    src_addr: Vec<Option<Addr>>,
    dst_addr: Vec<Option<Addr>>,
    next_hop: Vec<Option<Addr>>,
    src_port: Vec<Option<u16>>,
    dst_port: Vec<Option<u16>>,
    protocol: Vec<Option<u8>>,
    tcp_flags: Vec<Option<u16>>,
    tos: Vec<Option<u8>>,
    in_if: Vec<Option<u32>>,
    out_if: Vec<Option<u32>>,
    bytes: Vec<Option<u64>>,
    packets: Vec<Option<u64>>,
    src_as: Vec<Option<u32>>,
    dst_as: Vec<Option<u32>>,
    src_mask: Vec<Option<u8>>,
    dst_mask: Vec<Option<u8>>,
    vlan: Vec<Option<u16>>,
    direction: Vec<Option<u8>>,
    sampling_rate: Vec<Option<u32>>,
    sampling_source: Vec<String>,
}

fn addr16(b: &[u8]) -> Result<Option<Addr>, DecodeError> {
    match b.len() {
        0 => Ok(None),
        n => Addr::from_slice(b).map(Some).ok_or_else(|| format!("an address of {n} bytes")),
    }
}

impl Rows {
    fn push(&mut self, m: &FlowMessage) -> Result<(), DecodeError> {
        let exporter = addr16(&m.sampler_address)?.ok_or("no sampler_address (exporter)")?;
        let (src, dst, nh) = (addr16(&m.src_addr)?, addr16(&m.dst_addr)?, addr16(&m.next_hop)?);
        let p = m.present;
        // A message from goflow2 itself has no presence bits: take its
        // fields as present.
        let has = |bit: u32| p == 0 || p & bit != 0;
        let icmp = matches!(m.proto, 1 | 58);
        self.len += 1;
        self.time_received.push(m.time_received_ns as i64);
        self.flow_start.push(has(HAS_START).then_some(m.time_flow_start_ns as i64));
        self.flow_end.push(has(HAS_END).then_some(m.time_flow_end_ns as i64));
        self.exporter.push(exporter);
        self.observation_domain.push(m.observation_domain_id);
        self.sequence.push(has(HAS_SEQUENCE).then_some(m.sequence_num));
        self.flow_version.push(match (m.flow_version, m.r#type) {
            (0, NETFLOW_V5) => 5,
            (0, NETFLOW_V9) => 9,
            (0, IPFIX) => 10,
            (v, _) => v as u16,
        });
        self.src_addr.push(src);
        self.dst_addr.push(dst);
        self.next_hop.push(nh);
        self.src_port.push(has(HAS_PORTS).then_some(m.src_port as u16));
        let dport = if icmp { (m.icmp_type << 8 | m.icmp_code) as u16 } else { m.dst_port as u16 };
        self.dst_port.push(has(HAS_PORTS).then_some(dport));
        self.protocol.push(has(HAS_PROTO).then_some(m.proto as u8));
        self.tcp_flags.push(has(HAS_TCP_FLAGS).then_some(m.tcp_flags as u16));
        self.tos.push(has(HAS_TOS).then_some(m.ip_tos as u8));
        self.in_if.push(has(HAS_IN_IF).then_some(m.in_if));
        self.out_if.push(has(HAS_OUT_IF).then_some(m.out_if));
        self.bytes.push(has(HAS_BYTES).then_some(m.bytes));
        self.packets.push(has(HAS_PACKETS).then_some(m.packets));
        self.src_as.push(has(HAS_AS).then_some(m.src_as));
        self.dst_as.push(has(HAS_AS).then_some(m.dst_as));
        self.src_mask.push(has(HAS_MASKS).then_some(m.src_net as u8));
        self.dst_mask.push(has(HAS_MASKS).then_some(m.dst_net as u8));
        self.vlan.push(has(HAS_VLAN).then_some(m.vlan_id as u16));
        self.direction.push(m.direction.map(|d| d as u8));
        // goflow2 writes 0 for a rate it does not know.
        let rate = (has(HAS_SAMPLING_RATE) && m.sampling_rate > 0)
            .then(|| m.sampling_rate.min(u32::MAX as u64) as u32);
        self.sampling_rate.push(rate);
        self.sampling_source.push(if m.sampling_source.is_empty() {
            if p == 0 { "exporter".into() } else { "none".into() }
        } else {
            m.sampling_source.clone()
        });
        Ok(())
    }

    fn finish(self) -> Result<RecordBatch, String> {
        let ts = |v: Vec<Option<i64>>| {
            Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")) as ArrayRef
        };
        let addrs = |v: Vec<Option<Addr>>| -> Result<ArrayRef, String> {
            let mut b = FixedSizeBinaryBuilder::with_capacity(v.len(), 16);
            for a in v {
                match a {
                    Some(a) => b.append_value(a).map_err(|e| e.to_string())?,
                    None => b.append_null(),
                }
            }
            Ok(Arc::new(b.finish()))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from(self.time_received).with_timezone("UTC")),
            ts(self.flow_start),
            ts(self.flow_end),
            addrs(self.exporter.into_iter().map(Some).collect())?,
            Arc::new(UInt32Array::from(self.observation_domain)),
            Arc::new(UInt32Array::from(self.sequence)),
            Arc::new(UInt16Array::from(self.flow_version)),
            addrs(self.src_addr)?,
            addrs(self.dst_addr)?,
            addrs(self.next_hop)?,
            Arc::new(UInt16Array::from(self.src_port)),
            Arc::new(UInt16Array::from(self.dst_port)),
            Arc::new(UInt8Array::from(self.protocol)),
            Arc::new(UInt16Array::from(self.tcp_flags)),
            Arc::new(UInt8Array::from(self.tos)),
            Arc::new(UInt32Array::from(self.in_if)),
            Arc::new(UInt32Array::from(self.out_if)),
            Arc::new(UInt64Array::from(self.bytes)),
            Arc::new(UInt64Array::from(self.packets)),
            Arc::new(UInt32Array::from(self.src_as)),
            Arc::new(UInt32Array::from(self.dst_as)),
            Arc::new(UInt8Array::from(self.src_mask)),
            Arc::new(UInt8Array::from(self.dst_mask)),
            Arc::new(UInt16Array::from(self.vlan)),
            Arc::new(UInt8Array::from(self.direction)),
            Arc::new(UInt32Array::from(self.sampling_rate)),
            Arc::new(StringArray::from(self.sampling_source)),
        ];
        RecordBatch::try_new(flow_schema(), cols).map_err(|e| e.to_string())
    }
}

/// Whether `schema` can be encoded as protobuf: every flow-schema column it
/// has must have the flow schema's type.
pub fn protobuf_compatible(schema: &Schema) -> Result<(), String> {
    let flow = flow_schema();
    for f in flow.fields() {
        if let Ok(g) = schema.field_with_name(f.name())
            && g.data_type() != f.data_type()
        {
            return Err(format!(
                "column `{}` is {} but the protobuf encoding needs the flow schema's {}",
                f.name(),
                g.data_type(),
                f.data_type()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordBatch {
        let mut g = spillway_debug_like::batches();
        g.pop().unwrap()
    }

    mod spillway_debug_like {
        use super::*;
        /// A few hand-made flow records covering nulls, v4/v6 and ICMP.
        pub fn batches() -> Vec<RecordBatch> {
            let flows = r#"
{"time_received":"2026-11-27T10:00:00.123456789Z","flow_start":"2026-11-27T09:59:59Z","flow_end":"2026-11-27T10:00:00Z","exporter":"10.0.0.1","observation_domain":7,"sequence":42,"flow_version":10,"src_addr":"192.0.2.1","dst_addr":"198.51.100.2","next_hop":"10.0.0.254","src_port":51000,"dst_port":443,"protocol":6,"tcp_flags":27,"tos":0,"in_if":3,"out_if":4,"bytes":1500,"packets":3,"src_as":64500,"dst_as":64501,"src_mask":24,"dst_mask":16,"vlan":100,"direction":0,"sampling_rate":100,"sampling_source":"options"}
{"time_received":"2026-11-27T10:00:01Z","exporter":"2001:db8::1","observation_domain":0,"flow_version":5,"src_addr":"2001:db8::2","dst_addr":"2001:db8::3","protocol":58,"src_port":0,"dst_port":33024,"bytes":64,"packets":1,"sampling_rate":1,"sampling_source":"none"}
"#;
            let mut d = JsonDecoder::default();
            for l in flows.trim().lines() {
                d.push(l.as_bytes()).unwrap();
            }
            vec![d.take().unwrap().0]
        }
    }

    #[test]
    fn the_codec_reads_every_column_of_the_shared_schema_with_its_type() {
        let schema = flow_schema();
        let b = RecordBatch::new_empty(schema.clone());
        let c = FlowColumns::of(&b);
        assert!(c.unread().is_empty(), "columns the codec cannot read: {:?}", c.unread());
        assert_eq!(schema.fields().len(), spillway_core::schema::COLUMNS.len());
    }

    #[test]
    fn protobuf_round_trips_every_field_and_null() {
        let b = sample();
        for length_delimited in [true, false] {
            let enc = Encoding::Protobuf { length_delimited };
            let mut e = Encoder::new(enc, &b.schema());
            let (mut buf, mut ends) = (Vec::new(), Vec::new());
            e.encode(&b, &mut buf, &mut ends);
            let mut d = Decoder::new(enc);
            let mut start = 0;
            for end in ends {
                d.push(&buf[start..end]).unwrap();
                start = end;
            }
            assert_eq!(d.take().unwrap().batch, b);
        }
    }

    #[test]
    fn json_round_trips_in_the_human_form() {
        let b = sample();
        let mut e = Encoder::new(Encoding::Json, &b.schema());
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        e.encode(&b, &mut buf, &mut ends);
        let mut d = Decoder::new(Encoding::Json);
        let mut start = 0;
        for &end in &ends {
            d.push(&buf[start..end]).unwrap();
            start = end;
        }
        let got = d.take().unwrap();
        assert!(got.malformed.is_empty());
        assert_eq!(got.batch, b);
        // A bad message is rejected, alone: framing at push, content when
        // the batch is decoded.
        assert!(d.push(b"[1]").is_err());
        let first = &buf[..ends[0]];
        d.push(first).unwrap();
        let bad_addr =
            String::from_utf8_lossy(first).replace("\"exporter\":\"10.0.0.1\"", "\"exporter\":\"nope\"");
        assert_ne!(bad_addr.as_bytes(), first);
        d.push(bad_addr.as_bytes()).unwrap();
        d.push(first).unwrap();
        d.push(b"{\"exporter\":\"10.0.0.1\"}").unwrap(); // no time_received, bytes, …
        let got = d.take().unwrap();
        assert_eq!(got.batch.num_rows(), 2);
        assert_eq!(got.malformed.iter().map(|m| m.0).collect::<Vec<_>>(), [1, 3]);
        assert!(got.malformed[0].1.contains("not an address"), "{:?}", got.malformed);
    }

    #[test]
    fn icmp_goes_to_goflow2s_icmp_fields() {
        let b = sample();
        let mut e = Encoder::new(Encoding::Protobuf { length_delimited: false }, &b.schema());
        let (mut buf, mut ends) = (Vec::new(), Vec::new());
        e.encode(&b, &mut buf, &mut ends);
        let m = FlowMessage::decode(&buf[ends[0]..ends[1]]).unwrap();
        assert_eq!((m.icmp_type, m.icmp_code, m.dst_port, m.etype), (129, 0, 0, 0x86dd));
        assert_eq!(m.src_addr.len(), 16);
        let m = FlowMessage::decode(&buf[..ends[0]]).unwrap();
        assert_eq!((m.src_addr.len(), m.etype, m.r#type, m.dst_port), (4, 0x0800, IPFIX, 443));
    }
}
