//! sFlow v5 decoding: every sample and record kind into the flow schema and
//! the counters output, interface format bits, sequence and drop accounting,
//! counter samples checked against tshark, and hostile bytes (truncation at
//! every byte, flipped bytes, absurd counts) counted, never a panic.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use spillway_core::addr::Addr;
use spillway_netflow::row::FlowBuilders;
use spillway_netflow::sflow::counters::{Ethernet, Generic};
use spillway_netflow::sflow::encode::{CounterSample, Datagram, FlowRecord, FlowSample, Sample};
use spillway_netflow::sflow::{DecoderSettings, FLOW_VERSION, LossKind, SflowDecoder, is_sflow};

/// An Ethernet frame: VLAN 42, IPv4 TCP 10.0.0.1:1234 → 10.0.0.2:443, SYN,
/// total length 1500 (only the first bytes are sampled).
fn frame() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 42, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0x10, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[
        0x04, 0xd2, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

fn v4(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn agent() -> Addr {
    Addr::from(v4("192.0.2.9"))
}

fn flow(seq: u32, source_id: u32, records: Vec<FlowRecord>) -> FlowSample {
    FlowSample {
        sequence: seq,
        source_id,
        rate: 512,
        pool: seq * 512,
        input: 3,
        output: 7,
        records,
        ..FlowSample::default()
    }
}

fn header() -> FlowRecord {
    FlowRecord::Header { protocol: 1, frame_length: 1518, stripped: 4, bytes: frame() }
}

fn datagram(seq: u32, samples: Vec<Sample>) -> Vec<u8> {
    Datagram { agent: agent(), sub_agent: 1, sequence: seq, uptime_ms: 60_000, samples }.encode()
}

fn decoder() -> SflowDecoder {
    let mut d = SflowDecoder::new(DecoderSettings::default());
    d.enable_losses();
    d.enable_counters();
    d
}

fn decode(d: &mut SflowDecoder, msgs: &[Vec<u8>]) -> (RecordBatch, u64, u64) {
    let mut b = FlowBuilders::new(1024);
    let (mut records, mut dropped) = (0, 0);
    for (i, m) in msgs.iter().enumerate() {
        let o = d.decode(m, 1_000 + i as i64, &mut b);
        records += o.records;
        dropped += o.dropped;
    }
    (b.finish(), records, dropped)
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_ref()
}

fn addr(b: &RecordBatch, name: &str, i: usize) -> Option<std::net::IpAddr> {
    let c = col(b, name).as_fixed_size_binary();
    c.is_valid(i).then(|| Addr::from_slice(c.value(i)).unwrap().ip())
}

fn u32_at(b: &RecordBatch, name: &str, i: usize) -> Option<u32> {
    let c = col(b, name).as_primitive::<UInt32Type>();
    c.is_valid(i).then(|| c.value(i))
}

#[test]
fn sflow_is_told_apart_from_netflow_by_its_first_bytes() {
    assert!(is_sflow(&datagram(1, vec![])));
    assert!(!is_sflow(&[0, 5, 0, 1]), "NetFlow v5");
    assert!(!is_sflow(&[0, 10, 0, 16]), "IPFIX");
    assert!(!is_sflow(&[0, 0]));
}

#[test]
fn a_compact_flow_sample_with_extended_data_fills_the_flow_schema() {
    let records = vec![
        header(),
        FlowRecord::Switch { src_vlan: 100, dst_vlan: 200 },
        FlowRecord::Router { next_hop: v4("192.0.2.254"), src_mask: 24, dst_mask: 16 },
        FlowRecord::Gateway {
            next_hop: v4("198.51.100.1"),
            own_as: 64500,
            src_as: 64501,
            src_peer_as: 64502,
            path: vec![vec![64510, 64511], vec![64512]],
        },
        // Another enterprise's record is skipped by its length.
        FlowRecord::Other { format: (9 << 12) | 5, bytes: vec![1, 2, 3, 4] },
    ];
    let mut d = decoder();
    let (b, records, dropped) = decode(&mut d, &[datagram(1, vec![Sample::Flow(flow(1, 3, records))])]);
    assert_eq!((records, dropped, b.num_rows()), (1, 0, 1));
    assert_eq!(addr(&b, "src_addr", 0), Some(v4("10.0.0.1")));
    assert_eq!(addr(&b, "dst_addr", 0), Some(v4("10.0.0.2")));
    assert_eq!(addr(&b, "exporter", 0), Some(v4("192.0.2.9")));
    assert_eq!(addr(&b, "next_hop", 0), Some(v4("192.0.2.254")), "the router's next hop wins");
    assert_eq!(col(&b, "src_port").as_primitive::<UInt16Type>().value(0), 1234);
    assert_eq!(col(&b, "dst_port").as_primitive::<UInt16Type>().value(0), 443);
    assert_eq!(col(&b, "protocol").as_primitive::<UInt8Type>().value(0), 6);
    assert_eq!(col(&b, "tcp_flags").as_primitive::<UInt16Type>().value(0), 0x02);
    assert_eq!(col(&b, "tos").as_primitive::<UInt8Type>().value(0), 0x10);
    assert_eq!(col(&b, "vlan").as_primitive::<UInt16Type>().value(0), 100, "extended switch wins");
    assert_eq!(col(&b, "bytes").as_primitive::<UInt64Type>().value(0), 1518, "the sampled frame's length");
    assert_eq!(col(&b, "packets").as_primitive::<UInt64Type>().value(0), 1);
    assert_eq!(u32_at(&b, "sampling_rate", 0), Some(512));
    assert_eq!(col(&b, "sampling_source").as_string::<i32>().value(0), "record");
    assert_eq!((u32_at(&b, "in_if", 0), u32_at(&b, "out_if", 0)), (Some(3), Some(7)));
    assert_eq!((u32_at(&b, "src_as", 0), u32_at(&b, "dst_as", 0)), (Some(64501), Some(64512)));
    assert_eq!(col(&b, "src_mask").as_primitive::<UInt8Type>().value(0), 24);
    assert_eq!(col(&b, "dst_mask").as_primitive::<UInt8Type>().value(0), 16);
    assert_eq!(col(&b, "flow_version").as_primitive::<UInt16Type>().value(0), FLOW_VERSION);
    assert_eq!(u32_at(&b, "observation_domain", 0), Some(1), "the sub-agent");
    assert_eq!(d.stats.records_skipped, 1);
}

#[test]
fn an_expanded_sample_from_an_ipv6_agent_with_only_a_sampled_ipv6_record() {
    let src = v4("2001:db8::1");
    let dst = v4("2001:db8::2");
    let sample = FlowSample {
        expanded: true,
        sequence: 9,
        source_id: 0x00ab_cdef, // type 0 (ifIndex), index 0xabcdef
        rate: 0,                // announces none: the config's default (1) with its source
        input: 1_000_000,
        output: (2 << 30) | 3, // several interfaces: no one ifIndex
        records: vec![FlowRecord::Ip {
            length: 1280,
            protocol: 17,
            src,
            dst,
            src_port: 53,
            dst_port: 5353,
            tcp_flags: 0x3f,
            tos: 0,
        }],
        ..FlowSample::default()
    };
    let msg = Datagram {
        agent: Addr::from(v4("2001:db8::9")),
        sub_agent: 0,
        sequence: 1,
        uptime_ms: 1,
        samples: vec![Sample::Flow(sample)],
    }
    .encode();
    let (b, records, _) = decode(&mut decoder(), &[msg]);
    assert_eq!(records, 1);
    assert_eq!(addr(&b, "exporter", 0), Some(v4("2001:db8::9")));
    assert_eq!((addr(&b, "src_addr", 0), addr(&b, "dst_addr", 0)), (Some(src), Some(dst)));
    assert_eq!(
        col(&b, "bytes").as_primitive::<UInt64Type>().value(0),
        1280,
        "the IP length without a header"
    );
    assert!(col(&b, "tcp_flags").is_null(0), "flags of a UDP packet are not TCP flags");
    assert_eq!(u32_at(&b, "in_if", 0), Some(1_000_000), "expanded interfaces take 32 bits");
    assert_eq!(u32_at(&b, "out_if", 0), None);
    assert_eq!(u32_at(&b, "sampling_rate", 0), Some(1));
    assert_eq!(col(&b, "sampling_source").as_string::<i32>().value(0), "default");
}

#[test]
fn interface_format_bits_name_an_interface_only_in_format_zero() {
    let cases = [
        (5, Some(5)),
        (0x3fff_ffff, None),     // unknown
        ((1 << 30) | 258, None), // discarded, with a reason
        ((2 << 30) | 4, None),   // sent to 4 interfaces
    ];
    for (raw, want) in cases {
        let s = FlowSample { output: raw, ..flow(1, 1, vec![header()]) };
        let (b, ..) = decode(&mut decoder(), &[datagram(1, vec![Sample::Flow(s)])]);
        assert_eq!(u32_at(&b, "out_if", 0), want, "{raw:#x}");
    }
}

#[test]
fn an_override_in_the_config_wins_over_the_sample_rate() {
    let mut s = DecoderSettings::default();
    s.sampling.overrides.push(("192.0.2.0/24".parse().unwrap(), 1000));
    let mut d = SflowDecoder::new(s);
    let (b, ..) = decode(&mut d, &[datagram(1, vec![Sample::Flow(flow(1, 1, vec![header()]))])]);
    assert_eq!(u32_at(&b, "sampling_rate", 0), Some(1000));
    assert_eq!(col(&b, "sampling_source").as_string::<i32>().value(0), "override");
}

#[test]
fn sequence_gaps_and_agent_drops_become_losses() {
    let mut d = decoder();
    let sample = |seq: u32, drops: u32| Sample::Flow(FlowSample { drops, ..flow(seq, 5, vec![header()]) });
    // Datagrams 1, 2, 5 (3 and 4 lost); source 5's samples 1, 2, 3, then 9
    // (5 lost, the rest of the gap were in the lost datagrams); the agent's
    // drop counter grows by 7 at the last sample.
    let msgs = [
        datagram(1, vec![sample(1, 10)]),
        datagram(2, vec![sample(2, 10), sample(3, 10)]),
        datagram(5, vec![sample(9, 17)]),
    ];
    let (_, records, dropped) = decode(&mut d, &msgs);
    assert_eq!((records, dropped), (4, 0));
    let mut losses = d.take_losses();
    losses.sort_by_key(|l| l.kind as u8);
    let got: Vec<(LossKind, u32, u32, u64, Option<u32>)> =
        losses.iter().map(|l| (l.kind, l.expected, l.received, l.missing, l.source_id)).collect();
    assert_eq!(
        got,
        vec![
            (LossKind::Datagrams, 3, 5, 2, None),
            (LossKind::FlowSamples, 4, 9, 5, Some(5)),
            (LossKind::AgentDrops, 9, 9, 7, Some(5)),
        ]
    );
    assert_eq!((d.stats.datagrams_missing, d.stats.agent_drops, d.sequence_stats().missing), (2, 7, 5));
}

fn counters(seq: u32, if_index: u32, in_octets: u64) -> Sample {
    let g = Generic {
        if_type: 6,
        if_speed: 10_000_000_000,
        direction: 1,
        status: 3,
        in_octets,
        in_ucast: 1000 + seq,
        in_multicast: 5,
        in_broadcast: 6,
        in_discards: 7,
        in_errors: 8,
        in_unknown_protos: 9,
        out_octets: in_octets / 2,
        out_ucast: 2000,
        out_multicast: 11,
        out_broadcast: 12,
        out_discards: 13,
        out_errors: 14,
        promiscuous: 2,
    };
    let e = Ethernet { fcs_errors: 21, alignment_errors: 22, symbol_errors: 23, ..Ethernet::default() };
    Sample::Counters(CounterSample {
        expanded: seq.is_multiple_of(2),
        sequence: seq,
        source_id: if_index,
        generic: Some((if_index, g)),
        ethernet: Some(e),
    })
}

/// An Ethernet/IPv4/UDP frame from 192.0.2.9:50000 to 127.0.0.1:6343.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[192, 0, 2, 9, 127, 0, 0, 1]);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&[0xc3, 0x50, 0x18, 0xc7, (ulen >> 8) as u8, ulen as u8, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn pcap(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (i, p) in payloads.iter().enumerate() {
        let f = udp_frame(p);
        for v in [1_700_000_000 + i as u32, 0, f.len() as u32, f.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&f);
    }
    b
}

#[test]
fn counter_samples_match_tshark() {
    let msgs: Vec<Vec<u8>> = (1..=4)
        .map(|i| {
            datagram(
                i,
                vec![counters(i, 10 + i, 1 << 40 | i as u64), counters(i + 100, 20 + i, 77 * i as u64)],
            )
        })
        .collect();
    let mut d = decoder();
    let (flows, records, dropped) = decode(&mut d, &msgs);
    assert_eq!((flows.num_rows(), records, dropped), (0, 0, 0));
    let c = d.take_counters().expect("counter rows");
    assert_eq!(c.num_rows(), 8);
    let u64s = |n: &str| -> Vec<u64> { col(&c, n).as_primitive::<UInt64Type>().values().to_vec() };
    let u32s = |n: &str| -> Vec<u64> {
        col(&c, n).as_primitive::<UInt32Type>().values().iter().map(|v| *v as u64).collect()
    };
    assert_eq!(col(&c, "if_admin_status").as_primitive::<UInt8Type>().value(0), 1);
    assert_eq!(col(&c, "if_oper_status").as_primitive::<UInt8Type>().value(0), 1);
    assert_eq!(u64s("sys_uptime_ms")[0], 60_000);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counters.pcap");
    std::fs::write(&path, pcap(&msgs)).unwrap();
    let fields = ["ifindex", "iftype", "ifspeed", "ifinoct", "ifinerr", "ifoutoct", "dot3StatsFCSErrors"];
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r").arg(&path).args(["-d", "udp.port==6343,sflow", "-T", "fields", "-E", "occurrence=a"]);
    cmd.args(["-E", "aggregator=,"]);
    for f in fields {
        cmd.args(["-e", &format!("sflow_245.{f}")]);
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        other => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "tshark is required under CI=true: {other:?}"
            );
            eprintln!("skipping the tshark comparison: no tshark");
            return;
        }
    };
    let mut theirs: Vec<Vec<u64>> = vec![Vec::new(); fields.len()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for (i, v) in line.split('\t').enumerate() {
            theirs[i].extend(v.split(',').filter(|x| !x.is_empty()).map(|x| x.parse::<u64>().unwrap()));
        }
    }
    let ours = [
        u32s("if_index"),
        u32s("if_type"),
        u64s("if_speed"),
        u64s("in_octets"),
        u64s("in_errors"),
        u64s("out_octets"),
        u32s("dot3_fcs_errors"),
    ];
    for (i, f) in fields.iter().enumerate() {
        assert_eq!(ours[i], theirs[i], "{f}");
    }
}

/// Decodes `msg` in a fresh decoder and checks the books: what it produced
/// plus what it counted as dropped covers every sample, and at least one
/// part is counted when anything could not be read.
fn account(msg: &[u8], samples: u64) -> (u64, u64) {
    let mut d = decoder();
    let mut b = FlowBuilders::new(64);
    let o = d.decode(msg, 1, &mut b);
    let counters = d.take_counters().map_or(0, |c| c.num_rows() as u64);
    assert_eq!(o.records, b.len() as u64);
    assert!(o.records + counters <= samples, "more out than in");
    if o.error.is_some() {
        assert!(o.dropped >= 1, "an error with nothing counted");
    }
    (o.records + counters, o.dropped)
}

#[test]
fn every_truncation_and_byte_flip_is_counted_never_a_panic() {
    let samples = vec![
        Sample::Flow(flow(1, 1, vec![header(), FlowRecord::Switch { src_vlan: 1, dst_vlan: 2 }])),
        counters(1, 1, 5),
        Sample::Flow(FlowSample { expanded: true, ..flow(2, 1, vec![header()]) }),
    ];
    let n = samples.len() as u64;
    let msg = datagram(1, samples);
    assert_eq!(account(&msg, n), (n, 0));
    for cut in 0..msg.len() {
        let (out, dropped) = account(&msg[..cut], n);
        assert!(out < n, "a datagram cut at {cut} of {} decoded whole", msg.len());
        assert!(dropped >= 1, "a cut at {cut} dropped nothing");
        assert!(out + dropped <= n + 1, "cut at {cut}: {out} out + {dropped} dropped for {n} samples");
    }
    for at in 0..msg.len() {
        for flip in [0xff, 0x80, 0x01] {
            let mut m = msg.clone();
            m[at] ^= flip;
            account(&m, u32::MAX as u64);
        }
    }
}

#[test]
fn an_absurd_sample_count_is_bounded_by_the_bytes_that_hold_it() {
    let mut msg = datagram(1, vec![Sample::Flow(flow(1, 1, vec![header()]))]);
    // The sample count sits after version, address type, address, sub-agent,
    // sequence and uptime.
    msg[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
    let (out, dropped) = account(&msg, u32::MAX as u64);
    assert_eq!(out, 1);
    assert!((1..=2).contains(&dropped), "{dropped} dropped for a datagram with no bytes left");
}
