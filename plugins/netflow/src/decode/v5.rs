//! NetFlow v5: a fixed header and fixed 48-byte records.

use spillway_core::schema::{Addr, SamplingSource};

use super::records::Field;
use super::{DecodeError, Decoder, Outcome, be16, be32};
use crate::row::{ExtraValues, FlowBuilders, Header, Row, present};
use crate::sequence::Units;
use crate::state::{DomainKey, Version};

const HEADER: usize = 24;
const RECORD: usize = 48;

impl Decoder {
    pub(super) fn v5(
        &mut self,
        msg: &[u8],
        exporter: Addr,
        now: i64,
        out: &mut FlowBuilders,
        o: &mut Outcome,
    ) {
        if msg.len() < HEADER {
            o.fail(DecodeError::TooShort { len: msg.len() });
            return;
        }
        let count = be16(msg, 2);
        if msg.len() < HEADER + count as usize * RECORD {
            o.fail(DecodeError::V5Length { count, len: msg.len() });
            return;
        }
        let uptime = be32(msg, 4);
        let export_ns = be32(msg, 8) as i64 * 1_000_000_000 + be32(msg, 12) as i64;
        let sequence = be32(msg, 16);
        // Engine type and id identify the flow cache, like an observation domain.
        let domain = ((msg[20] as u32) << 8) | msg[21] as u32;
        // The top two bits are the sampling mode, the rest the interval.
        let header_rate = (be16(msg, 22) & 0x3fff) as u32;
        let h = Header { time_received: now, exporter, domain, sequence, version: 5 };
        let (rate, source) = match (self.override_rate(exporter), header_rate) {
            (Some(r), _) => (Some(r), SamplingSource::Override),
            (None, r) if r > 0 => (Some(r), SamplingSource::Header),
            _ => self.default_rate(exporter),
        };
        let time = move |up: u64| export_ns - uptime.wrapping_sub(up as u32) as i64 * 1_000_000;
        if self.columnar && !out.has_extras() {
            // Column by column, as a fixed-length template's set is.
            let recs = &msg[HEADER..HEADER + count as usize * RECORD];
            let t = out.grow(&h, count as usize, (rate, source));
            let (from, m) = (t.at, &mut 0u32);
            let f = |at, len| Field { recs, stride: RECORD, at, len };
            use present::*;
            f(0, 4).addresses(t.src_addr, from, m, SRC_ADDR);
            f(4, 4).addresses(t.dst_addr, from, m, DST_ADDR);
            f(8, 4).addresses(t.next_hop, from, m, NEXT_HOP);
            f(12, 2).fill(t.in_if, from, m, IN_IF, |v| v as u32);
            f(14, 2).fill(t.out_if, from, m, OUT_IF, |v| v as u32);
            f(16, 4).fill(t.packets, from, m, PACKETS, |v| v);
            f(20, 4).fill(t.bytes, from, m, BYTES, |v| v);
            f(24, 4).fill(t.flow_start, from, m, FLOW_START, time);
            f(28, 4).fill(t.flow_end, from, m, FLOW_END, time);
            f(32, 2).fill(t.src_port, from, m, SRC_PORT, |v| v as u16);
            f(34, 2).fill(t.dst_port, from, m, DST_PORT, |v| v as u16);
            f(37, 1).fill(t.tcp_flags, from, m, TCP_FLAGS, |v| v as u16);
            f(38, 1).fill(t.protocol, from, m, PROTOCOL, |v| v as u8);
            f(39, 1).fill(t.tos, from, m, TOS, |v| v as u8);
            f(40, 2).fill(t.src_as, from, m, SRC_AS, |v| v as u32);
            f(42, 2).fill(t.dst_as, from, m, DST_AS, |v| v as u32);
            f(44, 1).fill(t.src_mask, from, m, SRC_MASK, |v| v as u8);
            f(45, 1).fill(t.dst_mask, from, m, DST_MASK, |v| v as u8);
            let filled = *m;
            t.close(filled);
        } else {
            for i in 0..count as usize {
                let r = &msg[HEADER + i * RECORD..HEADER + (i + 1) * RECORD];
                let first = be32(r, 24);
                let last = be32(r, 28);
                let row = Row {
                    src_addr: Some(Addr::v4(be32(r, 0))),
                    dst_addr: Some(Addr::v4(be32(r, 4))),
                    next_hop: Some(Addr::v4(be32(r, 8))),
                    in_if: Some(be16(r, 12) as u32),
                    out_if: Some(be16(r, 14) as u32),
                    packets: Some(be32(r, 16) as u64),
                    bytes: Some(be32(r, 20) as u64),
                    flow_start: Some(time(first as u64)),
                    flow_end: Some(time(last as u64)),
                    src_port: Some(be16(r, 32)),
                    dst_port: Some(be16(r, 34)),
                    tcp_flags: Some(r[37] as u16),
                    protocol: Some(r[38]),
                    tos: Some(r[39]),
                    src_as: Some(be16(r, 40) as u32),
                    dst_as: Some(be16(r, 42) as u32),
                    src_mask: Some(r[44]),
                    dst_mask: Some(r[45]),
                    vlan: None,
                    direction: None,
                    sampling_rate: rate,
                    sampling_source: source,
                };
                out.push(&h, &row, &ExtraValues::NONE);
            }
        }
        o.records += count as u64;
        // v5 counts flow records.
        let key = DomainKey { exporter, domain };
        o.loss = self.observe(key, Version::V5, sequence, Some(Units::same(count as u32)), now);
    }
}
