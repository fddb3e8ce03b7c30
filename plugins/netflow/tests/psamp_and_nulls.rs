//! IPFIX PSAMP records that carry the packet itself become real flow rows:
//! the header parser reads each link type and encapsulation out of
//! `dataLinkFrameSection`, `ipHeaderPacketSection`, `ipPayloadPacketSection`
//! and the MPLS sections. Counters a template does not carry are null, not
//! 0, and records whose time cannot be known are counted and noted.

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt64Type};
use common::build::{V, data, message, options_template, record, template};
use spillway_core::schema::Addr;
use spillway_netflow::decode::{Decoder, DecoderConfig, NoticeKind};
use spillway_netflow::row::FlowBuilders;

const EXPORTER: spillway_core::addr::Addr = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 7]);
const VARLEN: u16 = 0xffff;

fn eth(ty: u16, tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, id) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 10.1.1.1 → 10.2.2.2, `total` bytes long, then `l4`.
fn ipv4(proto: u8, total: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0x28];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 1, 1, 1, 10, 2, 2, 2]);
    p.extend_from_slice(l4);
    p
}

/// IPv6 2001:db8::1 → 2001:db8::2 with `payload_len`, then `l4`.
fn ipv6(next: u8, payload_len: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0x00, 0, 0];
    p.extend_from_slice(&payload_len.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(l4);
    p
}

fn tcp(sp: u16, dp: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sp.to_be_bytes());
    t.extend_from_slice(&dp.to_be_bytes());
    t.extend_from_slice(&[0; 8]);
    t.extend_from_slice(&[0x50, flags, 0, 0, 0, 0, 0, 0]);
    t
}

fn udp(sp: u16, dp: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sp.to_be_bytes());
    u.extend_from_slice(&dp.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

fn mpls(labels: &[u32]) -> Vec<u8> {
    let mut m = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let bos = (i + 1 == labels.len()) as u32;
        m.extend_from_slice(&((l << 12) | (bos << 8) | 64).to_be_bytes());
    }
    m
}

/// A variable-length field's encoding.
fn varlen(v: &[u8]) -> Vec<u8> {
    let mut r =
        if v.len() < 255 { vec![v.len() as u8] } else { vec![255, (v.len() >> 8) as u8, v.len() as u8] };
    r.extend_from_slice(v);
    r
}

/// Decodes IPFIX `sets`; the batch and the decoder.
fn decode(msgs: &[Vec<Vec<u8>>]) -> (RecordBatch, Decoder) {
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(64);
    for (i, sets) in msgs.iter().enumerate() {
        let o =
            d.decode(&message(V::Ipfix, 1, i as u32, 0, sets), EXPORTER, 1_700_000_000_000_000_000, &mut out);
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    (out.finish(), d)
}

/// What a PSAMP row says, column by column.
#[derive(Debug, PartialEq)]
struct Seen {
    src: Option<String>,
    dst: Option<String>,
    protocol: Option<u8>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    tcp_flags: Option<u16>,
    tos: Option<u8>,
    vlan: Option<u16>,
    bytes: Option<u64>,
    packets: Option<u64>,
}

fn seen(b: &RecordBatch) -> Vec<Seen> {
    let addr = |c: &str, i: usize| {
        let a = b.column_by_name(c).unwrap().as_fixed_size_binary();
        a.is_valid(i).then(|| Addr::from_slice(a.value(i)).unwrap().ip().to_string())
    };
    let u8c = |c: &str| b.column_by_name(c).unwrap().as_primitive::<UInt8Type>().clone();
    let u16c = |c: &str| b.column_by_name(c).unwrap().as_primitive::<UInt16Type>().clone();
    let u64c = |c: &str| b.column_by_name(c).unwrap().as_primitive::<UInt64Type>().clone();
    let get = |a: &dyn Array, i: usize| a.is_valid(i);
    (0..b.num_rows())
        .map(|i| Seen {
            src: addr("src_addr", i),
            dst: addr("dst_addr", i),
            protocol: get(&u8c("protocol"), i).then(|| u8c("protocol").value(i)),
            src_port: get(&u16c("src_port"), i).then(|| u16c("src_port").value(i)),
            dst_port: get(&u16c("dst_port"), i).then(|| u16c("dst_port").value(i)),
            tcp_flags: get(&u16c("tcp_flags"), i).then(|| u16c("tcp_flags").value(i)),
            tos: get(&u8c("tos"), i).then(|| u8c("tos").value(i)),
            vlan: get(&u16c("vlan"), i).then(|| u16c("vlan").value(i)),
            bytes: get(&u64c("bytes"), i).then(|| u64c("bytes").value(i)),
            packets: get(&u64c("packets"), i).then(|| u64c("packets").value(i)),
        })
        .collect()
}

fn v4(
    proto: u8,
    sp: Option<u16>,
    dp: Option<u16>,
    flags: Option<u16>,
    vlan: Option<u16>,
    bytes: u64,
) -> Seen {
    Seen {
        src: Some("10.1.1.1".into()),
        dst: Some("10.2.2.2".into()),
        protocol: Some(proto),
        src_port: sp,
        dst_port: dp,
        tcp_flags: flags,
        tos: Some(0x28),
        vlan,
        bytes: Some(bytes),
        packets: Some(1),
    }
}

/// One record per section: (element id, bytes) plus dataLinkFrameSize.
fn section_rows(ie: u16, sections: &[Vec<u8>]) -> Vec<Seen> {
    let tpl = template(V::Ipfix, 256, &[(312, 2), (ie, VARLEN)]);
    let recs: Vec<Vec<u8>> =
        sections.iter().map(|s| [record(&[(s.len() as u64 + 4, 2)]), varlen(s)].concat()).collect();
    seen(&decode(&[vec![tpl, data(256, &recs)]]).0)
}

#[test]
fn data_link_frame_sections_of_every_encapsulation() {
    let frames = vec![
        // 802.1Q, IPv4, TCP SYN|ACK.
        eth(0x0800, &[(0x8100, 100)], &ipv4(6, 1500, &tcp(443, 50000, 0x12))),
        // QinQ (802.1ad outer 200, inner 7), IPv6, UDP.
        eth(0x86dd, &[(0x88a8, 200), (0x8100, 7)], &ipv6(17, 100, &udp(5353, 53))),
        // MPLS, two labels, IPv4 ICMP echo request (type 8).
        eth(0x8847, &[], &[mpls(&[16, 17]), ipv4(1, 84, &[8, 0, 0, 0])].concat()),
        // MPLS pseudowire: control word, then an Ethernet frame with VLAN 42.
        eth(
            0x8847,
            &[],
            &[mpls(&[99]), vec![0, 0, 0, 0], eth(0x0800, &[(0x8100, 42)], &ipv4(17, 60, &udp(1, 2)))]
                .concat(),
        ),
    ];
    let rows = section_rows(315, &frames);
    let v6 = Seen {
        src: Some("2001:db8::1".into()),
        dst: Some("2001:db8::2".into()),
        protocol: Some(17),
        src_port: Some(5353),
        dst_port: Some(53),
        tcp_flags: None,
        tos: Some(0),
        vlan: Some(200),
        bytes: Some(140),
        packets: Some(1),
    };
    assert_eq!(
        rows,
        vec![
            v4(6, Some(443), Some(50000), Some(0x12), Some(100), 1500),
            v6,
            v4(1, None, Some(0x0800), None, None, 84),
            v4(17, Some(1), Some(2), None, Some(42), 60),
        ]
    );
}

#[test]
fn ip_header_ip_payload_and_mpls_sections() {
    assert_eq!(
        section_rows(313, &[ipv4(17, 576, &udp(123, 123))]),
        vec![v4(17, Some(123), Some(123), None, None, 576)]
    );
    assert_eq!(
        section_rows(316, &[[mpls(&[3000]), ipv4(6, 40, &tcp(22, 40000, 0x10))].concat()]),
        vec![v4(6, Some(22), Some(40000), Some(0x10), None, 40)]
    );
    assert_eq!(
        section_rows(317, &[ipv4(6, 52, &tcp(80, 1234, 0x18))]),
        vec![v4(6, Some(80), Some(1234), Some(0x18), None, 52)]
    );
    // ipPayloadPacketSection: the transport header, its protocol from the
    // record's own protocolIdentifier; bytes from ipTotalLength.
    let tpl = template(V::Ipfix, 256, &[(8, 4), (12, 4), (4, 1), (224, 2), (314, VARLEN)]);
    let rec =
        [record(&[(0x0a01_0101, 4), (0x0a02_0202, 4), (17, 1), (200, 2)]), varlen(&udp(67, 68))].concat();
    let rows = seen(&decode(&[vec![tpl, data(256, &[rec])]]).0);
    assert_eq!(
        (rows[0].src_port, rows[0].dst_port, rows[0].bytes, rows[0].packets),
        (Some(67), Some(68), Some(200), Some(1))
    );
}

#[test]
fn a_cut_section_reads_what_is_there_and_other_link_types_are_counted_by_size() {
    // The first 16 bytes of an Ethernet IPv4 frame: no addresses, no ports.
    let frame = eth(0x0800, &[], &ipv4(6, 1500, &tcp(1, 2, 2)));
    let rows = section_rows(315, &[frame[..16].to_vec()]);
    assert_eq!(rows[0].src, None);
    assert_eq!(rows[0].src_port, None);
    assert_eq!((rows[0].bytes, rows[0].packets), (Some(20), Some(1)), "dataLinkFrameSize, one packet");
    // dataLinkFrameType 2 (802.11) is not parsed: counted by its frame size.
    let tpl = template(V::Ipfix, 256, &[(408, 2), (312, 2), (315, VARLEN)]);
    let rec = [record(&[(2, 2), (1400, 2)]), varlen(&[0u8; 64])].concat();
    let rows = seen(&decode(&[vec![tpl, data(256, &[rec])]]).0);
    assert_eq!((rows[0].src.clone(), rows[0].bytes, rows[0].packets), (None, Some(1400), Some(1)));
}

#[test]
fn counters_a_template_does_not_carry_are_null() {
    // A NAT event: addresses, postNATSourceIPv4Address (225), natEvent (230).
    let tpl = template(V::Ipfix, 256, &[(8, 4), (12, 4), (225, 4), (230, 1)]);
    let rec = record(&[(0x0a00_0001, 4), (0x0a00_0002, 4), (0xc633_6401, 4), (1, 1)]);
    let (b, _) = decode(&[vec![tpl, data(256, &[rec])]]);
    let rows = seen(&b);
    assert_eq!((rows[0].bytes, rows[0].packets), (None, None));
    assert_eq!(b.column_by_name("bytes").unwrap().null_count(), 1);
}

#[test]
fn uptime_relative_times_without_a_boot_time_are_null_counted_and_noted_once() {
    // flowStartSysUpTime (22), flowEndSysUpTime (21): IPFIX has no uptime
    // in its header, so they need systemInitTimeMilliseconds (160).
    let tpl = template(V::Ipfix, 256, &[(8, 4), (1, 4), (22, 4), (21, 4)]);
    let rec = || record(&[(0x0a00_0001, 4), (100, 4), (5_000, 4), (9_000, 4)]);
    let boot = options_template(V::Ipfix, 300, &[(149, 4)], &[(160, 8)]);
    let boot_ms: u64 = 1_699_999_000_000;
    let (b, mut d) = decode(&[
        vec![tpl, data(256, &[rec(), rec()])],
        vec![data(256, &[rec()])],
        vec![boot, data(300, &[record(&[(1, 4), (boot_ms, 8)])]), data(256, &[rec()])],
    ]);
    let start =
        b.column_by_name("flow_start").unwrap().as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    assert_eq!(
        start.iter().collect::<Vec<_>>(),
        vec![None, None, None, Some((boot_ms as i64 + 5_000) * 1_000_000)]
    );
    assert_eq!(d.stats.time_unknown, 3);
    let notices: Vec<_> = d.take_notices().collect();
    assert_eq!(notices.iter().map(|n| n.kind).collect::<Vec<_>>(), vec![NoticeKind::TimeUnknown]);
    assert_eq!(notices[0].exporter, Addr::v4(0xc000_0207));
}
