//! sFlow counter samples as rows of the `counters` output.
//!
//! Where a column means what the `snmp` source's interface record means, it
//! has that name and type (`time`, `exporter`, `if_index`, `if_type`,
//! `if_speed`, `if_admin_status`, `if_oper_status`, `in_octets`, …,
//! `sys_uptime_ms`), so a billing job can read either. The counters are the
//! agent's absolute values (64-bit octets, 32-bit packets and errors, as
//! sFlow carries them); the rest are sFlow's own.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, FixedSizeBinaryArray, RecordBatch, TimestampNanosecondArray};
use arrow::array::{UInt8Array, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use spillway_core::addr::Addr;
use spillway_core::schema::{address_type, timestamp_type};

use super::{Cursor, SflowError};

/// One counter sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterRow {
    pub time: i64,
    pub agent: Addr,
    pub sub_agent: u32,
    pub source_id: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
    pub if_index: u32,
    pub generic: Option<Generic>,
    pub ethernet: Option<Ethernet>,
}

/// The generic interface counters (format 1): IF-MIB's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generic {
    pub if_type: u32,
    pub if_speed: u64,
    /// 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.
    pub direction: u32,
    /// Bit 0 admin up, bit 1 operationally up.
    pub status: u32,
    pub in_octets: u64,
    pub in_ucast: u32,
    pub in_multicast: u32,
    pub in_broadcast: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast: u32,
    pub out_multicast: u32,
    pub out_broadcast: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous: u32,
}

/// The Ethernet interface counters (format 2): EtherLike-MIB's dot3Stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ethernet {
    pub alignment_errors: u32,
    pub fcs_errors: u32,
    pub single_collision_frames: u32,
    pub multiple_collision_frames: u32,
    pub sqe_test_errors: u32,
    pub deferred_transmissions: u32,
    pub late_collisions: u32,
    pub excessive_collisions: u32,
    pub internal_mac_transmit_errors: u32,
    pub carrier_sense_errors: u32,
    pub frame_too_longs: u32,
    pub internal_mac_receive_errors: u32,
    pub symbol_errors: u32,
}

impl CounterRow {
    pub(super) fn generic(&mut self, r: &mut Cursor) -> Result<(), SflowError> {
        let if_index = r.u32("ifIndex")?;
        let g = Generic {
            if_type: r.u32("ifType")?,
            if_speed: r.u64("ifSpeed")?,
            direction: r.u32("ifDirection")?,
            status: r.u32("ifStatus")?,
            in_octets: r.u64("ifInOctets")?,
            in_ucast: r.u32("ifInUcastPkts")?,
            in_multicast: r.u32("ifInMulticastPkts")?,
            in_broadcast: r.u32("ifInBroadcastPkts")?,
            in_discards: r.u32("ifInDiscards")?,
            in_errors: r.u32("ifInErrors")?,
            in_unknown_protos: r.u32("ifInUnknownProtos")?,
            out_octets: r.u64("ifOutOctets")?,
            out_ucast: r.u32("ifOutUcastPkts")?,
            out_multicast: r.u32("ifOutMulticastPkts")?,
            out_broadcast: r.u32("ifOutBroadcastPkts")?,
            out_discards: r.u32("ifOutDiscards")?,
            out_errors: r.u32("ifOutErrors")?,
            promiscuous: r.u32("ifPromiscuousMode")?,
        };
        self.if_index = if_index;
        self.generic = Some(g);
        Ok(())
    }

    pub(super) fn ethernet(&mut self, r: &mut Cursor) -> Result<(), SflowError> {
        self.ethernet = Some(Ethernet {
            alignment_errors: r.u32("dot3StatsAlignmentErrors")?,
            fcs_errors: r.u32("dot3StatsFCSErrors")?,
            single_collision_frames: r.u32("dot3StatsSingleCollisionFrames")?,
            multiple_collision_frames: r.u32("dot3StatsMultipleCollisionFrames")?,
            sqe_test_errors: r.u32("dot3StatsSQETestErrors")?,
            deferred_transmissions: r.u32("dot3StatsDeferredTransmissions")?,
            late_collisions: r.u32("dot3StatsLateCollisions")?,
            excessive_collisions: r.u32("dot3StatsExcessiveCollisions")?,
            internal_mac_transmit_errors: r.u32("dot3StatsInternalMacTransmitErrors")?,
            carrier_sense_errors: r.u32("dot3StatsCarrierSenseErrors")?,
            frame_too_longs: r.u32("dot3StatsFrameTooLongs")?,
            internal_mac_receive_errors: r.u32("dot3StatsInternalMacReceiveErrors")?,
            symbol_errors: r.u32("dot3StatsSymbolErrors")?,
        });
        Ok(())
    }
}

/// The generic counters' columns: (name, type, value). 32-bit sFlow
/// counters widen to the `snmp` source's UInt64.
type GenericCol = (&'static str, DataType, fn(&Generic) -> u64);

const GENERIC: [GenericCol; 16] = [
    ("if_type", DataType::UInt32, |g| g.if_type as u64),
    ("if_speed", DataType::UInt64, |g| g.if_speed),
    ("in_octets", DataType::UInt64, |g| g.in_octets),
    ("out_octets", DataType::UInt64, |g| g.out_octets),
    ("in_errors", DataType::UInt64, |g| g.in_errors as u64),
    ("out_errors", DataType::UInt64, |g| g.out_errors as u64),
    ("in_discards", DataType::UInt64, |g| g.in_discards as u64),
    ("out_discards", DataType::UInt64, |g| g.out_discards as u64),
    ("in_ucast_pkts", DataType::UInt64, |g| g.in_ucast as u64),
    ("in_multicast_pkts", DataType::UInt64, |g| g.in_multicast as u64),
    ("in_broadcast_pkts", DataType::UInt64, |g| g.in_broadcast as u64),
    ("in_unknown_protos", DataType::UInt64, |g| g.in_unknown_protos as u64),
    ("out_ucast_pkts", DataType::UInt64, |g| g.out_ucast as u64),
    ("out_multicast_pkts", DataType::UInt64, |g| g.out_multicast as u64),
    ("out_broadcast_pkts", DataType::UInt64, |g| g.out_broadcast as u64),
    ("if_direction", DataType::UInt32, |g| g.direction as u64),
];

type EthernetCol = (&'static str, fn(&Ethernet) -> u32);

const ETHERNET: [EthernetCol; 13] = [
    ("dot3_alignment_errors", |e| e.alignment_errors),
    ("dot3_fcs_errors", |e| e.fcs_errors),
    ("dot3_single_collision_frames", |e| e.single_collision_frames),
    ("dot3_multiple_collision_frames", |e| e.multiple_collision_frames),
    ("dot3_sqe_test_errors", |e| e.sqe_test_errors),
    ("dot3_deferred_transmissions", |e| e.deferred_transmissions),
    ("dot3_late_collisions", |e| e.late_collisions),
    ("dot3_excessive_collisions", |e| e.excessive_collisions),
    ("dot3_internal_mac_transmit_errors", |e| e.internal_mac_transmit_errors),
    ("dot3_carrier_sense_errors", |e| e.carrier_sense_errors),
    ("dot3_frame_too_longs", |e| e.frame_too_longs),
    ("dot3_internal_mac_receive_errors", |e| e.internal_mac_receive_errors),
    ("dot3_symbol_errors", |e| e.symbol_errors),
];

/// Schema of the `counters` output of an `sflow` source.
pub fn schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut f = vec![
                Field::new("time", timestamp_type(), false),
                Field::new("exporter", address_type(), false),
                Field::new("sub_agent", DataType::UInt32, false),
                Field::new("source_id", DataType::UInt32, false),
                Field::new("sequence", DataType::UInt32, false),
                Field::new("sys_uptime_ms", DataType::UInt64, false),
                Field::new("if_index", DataType::UInt32, false),
                // IF-MIB's ifAdminStatus / ifOperStatus: 1 up, 2 down.
                Field::new("if_admin_status", DataType::UInt8, true),
                Field::new("if_oper_status", DataType::UInt8, true),
                Field::new("if_promiscuous", DataType::Boolean, true),
            ];
            f.extend(GENERIC.iter().map(|(n, t, _)| Field::new(*n, t.clone(), true)));
            f.extend(ETHERNET.iter().map(|(n, _)| Field::new(*n, DataType::UInt32, true)));
            Arc::new(Schema::new(f))
        })
        .clone()
}

/// Counter rows waiting to be emitted.
#[derive(Default)]
pub struct CounterRows {
    rows: Vec<CounterRow>,
}

impl CounterRows {
    pub fn push(&mut self, r: CounterRow) {
        self.rows.push(r);
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as a batch of [`schema`].
    pub fn take(&mut self) -> Option<RecordBatch> {
        if self.rows.is_empty() {
            return None;
        }
        let rows = std::mem::take(&mut self.rows);
        let u32s = |f: fn(&CounterRow) -> u32| -> ArrayRef {
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)))
        };
        let status = |bit: u32| -> ArrayRef {
            Arc::new(UInt8Array::from_iter(
                rows.iter().map(|r| r.generic.map(|g| if g.status & bit != 0 { 1 } else { 2 })),
            ))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.time)).with_timezone("UTC"),
            ),
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| r.agent)).expect("16-byte addresses"),
            ),
            u32s(|r| r.sub_agent),
            u32s(|r| r.source_id),
            u32s(|r| r.sequence),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.uptime_ms as u64))),
            u32s(|r| r.if_index),
            status(1),
            status(2),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.generic.map(|g| g.promiscuous == 1)))),
        ];
        for (_, ty, f) in &GENERIC {
            let v = rows.iter().map(|r| r.generic.as_ref().map(f));
            columns.push(match ty {
                DataType::UInt32 => Arc::new(UInt32Array::from_iter(v.map(|x| x.map(|x| x as u32)))),
                _ => Arc::new(UInt64Array::from_iter(v)),
            });
        }
        for (_, f) in &ETHERNET {
            columns.push(Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.ethernet.as_ref().map(f)))));
        }
        Some(RecordBatch::try_new(schema(), columns).expect("columns match the counters schema"))
    }
}
