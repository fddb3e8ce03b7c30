//! Sequence accounting per the RFCs: v5 counts flow records, v9 export
//! packets, IPFIX every data record of a message (options records included;
//! a biflow split into two rows is still one record). A gapless export with
//! options records and biflows shows no gap in any version, and dropping one
//! message shows exactly its records (packets for v9) missing.

mod common;

use common::build::{V, data, message, options_template, record, template};
use spillway_netflow::decode::{Decoder, DecoderConfig, Loss};
use spillway_netflow::row::FlowBuilders;

const EXPORTER: spillway_core::addr::Addr = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 9]);

const SRC4: u16 = 8;
const DST4: u16 = 12;
/// initiatorOctets / responderOctets (NSEL-style biflow counters).
const INITIATOR_OCTETS: u16 = 231;
const RESPONDER_OCTETS: u16 = 232;
const OBSERVATION_DOMAIN: u16 = 149;
const SAMPLING_INTERVAL: u16 = 34;

/// Message `i` of a session: (flow records, options records) and its sets.
fn ipfix_sets(i: u32) -> (u32, u32, Vec<Vec<u8>>) {
    let flows = 1 + i % 4;
    let options = i % 3;
    let mut sets = Vec::new();
    if i == 0 {
        sets.push(template(
            V::Ipfix,
            256,
            &[(SRC4, 4), (DST4, 4), (INITIATOR_OCTETS, 4), (RESPONDER_OCTETS, 4)],
        ));
        sets.push(options_template(V::Ipfix, 300, &[(OBSERVATION_DOMAIN, 4)], &[(SAMPLING_INTERVAL, 4)]));
    }
    if options > 0 {
        let recs: Vec<Vec<u8>> = (0..options).map(|_| record(&[(1, 4), (1, 4)])).collect();
        sets.push(data(300, &recs));
    }
    // Every flow record is a biflow: two rows each.
    let recs: Vec<Vec<u8>> = (0..flows)
        .map(|f| record(&[(0x0a00_0001, 4), (0x0a00_0100 + f as u64, 4), (100, 4), (900, 4)]))
        .collect();
    sets.push(data(256, &recs));
    (flows, options, sets)
}

fn run(msgs: impl Iterator<Item = Vec<u8>>) -> (Vec<Loss>, u64, Decoder) {
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(1 << 16);
    let mut losses = Vec::new();
    let mut rows = 0;
    for (i, m) in msgs.enumerate() {
        let o = d.decode(&m, EXPORTER, i as i64, &mut out);
        assert!(o.error.is_none(), "{:?}", o.error);
        rows += o.records;
        losses.extend(o.loss);
    }
    (losses, rows, d)
}

#[test]
fn ipfix_counts_every_data_record_options_included_biflows_once() {
    const N: u32 = 40;
    let mut seq = 0u32;
    let mut msgs = Vec::new();
    let mut records = Vec::new();
    for i in 0..N {
        let (flows, options, sets) = ipfix_sets(i);
        msgs.push(message(V::Ipfix, 1, seq, 0, &sets));
        records.push(flows + options);
        seq += flows + options;
    }
    let (losses, rows, d) = run(msgs.clone().into_iter());
    assert!(losses.is_empty(), "a gapless export shows no gap: {losses:?}");
    assert_eq!(d.sequence_stats().missing, 0);
    assert!(d.stats.biflows > 0 && d.stats.options_records > 0);
    assert_eq!(rows, 2 * (0..N).map(|i| ipfix_sets(i).0 as u64).sum::<u64>(), "a biflow is two rows");
    // Drop message 17: exactly its records are missing.
    let (losses, _, _) = run(msgs.iter().enumerate().filter(|(i, _)| *i != 17).map(|(_, m)| m.clone()));
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].missing, records[17] as u64);
    assert_eq!(losses[0].version, 10);
}

#[test]
fn v9_counts_export_packets() {
    let mut msgs = Vec::new();
    for i in 0..30u32 {
        let (flows, options, mut sets) = ipfix_sets(i);
        if i == 0 {
            sets[0] =
                template(V::V9, 256, &[(SRC4, 4), (DST4, 4), (INITIATOR_OCTETS, 4), (RESPONDER_OCTETS, 4)]);
            sets[1] = options_template(V::V9, 300, &[(1, 4)], &[(SAMPLING_INTERVAL, 4)]);
        }
        let count = (flows + options + if i == 0 { 2 } else { 0 }) as u16;
        msgs.push(message(V::V9, 1, 1000 + i, count, &sets));
    }
    let (losses, _, d) = run(msgs.clone().into_iter());
    assert!(losses.is_empty(), "{losses:?}");
    assert_eq!(d.sequence_stats().missing, 0);
    let (losses, _, _) =
        run(msgs.iter().enumerate().filter(|(i, _)| *i != 5 && *i != 6).map(|(_, m)| m.clone()));
    assert_eq!(losses.iter().map(|l| l.missing).collect::<Vec<_>>(), vec![2], "two packets");
}

fn v5(seq: u32, count: u16) -> Vec<u8> {
    let mut m = vec![0u8; 24 + 48 * count as usize];
    m[1] = 5;
    m[2..4].copy_from_slice(&count.to_be_bytes());
    m[16..20].copy_from_slice(&seq.to_be_bytes());
    m
}

#[test]
fn v5_counts_flow_records() {
    let mut seq = 0;
    let mut msgs = Vec::new();
    for i in 0..30u32 {
        let count = 1 + (i % 30) as u16;
        msgs.push(v5(seq, count));
        seq += count as u32;
    }
    let (losses, _, _) = run(msgs.clone().into_iter());
    assert!(losses.is_empty(), "{losses:?}");
    let (losses, _, _) = run(msgs.iter().enumerate().filter(|(i, _)| *i != 9).map(|(_, m)| m.clone()));
    assert_eq!(losses.iter().map(|l| l.missing).collect::<Vec<_>>(), vec![10], "message 9 held 10 flows");
}
