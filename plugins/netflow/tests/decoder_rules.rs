//! The decoder's rules on hand-made and corpus messages: malformed input
//! never panics and is always reported (every truncation of every corpus
//! message, byte flips, broken headers, sets and templates); data before its
//! template is parked and released; sampling rates carry their provenance;
//! template withdrawal works.

mod common;

use spillway_core::schema::Addr;
use spillway_netflow::capture;
use spillway_netflow::decode::{DecodeError, Decoder, DecoderConfig, SET_OVERHEAD};
use spillway_netflow::row::FlowBuilders;

const EXPORTER: spillway_core::addr::Addr = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 1]);

fn payloads(corpus: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(corpus.join("logstash-codec-netflow/pcap_single"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for v in ["v5/export_v5.pcap", "v9/export_v9.pcap", "v10/export_v10.pcap", "v10_milli/export_v10.pcap"] {
        files.push(corpus.join("softflowd").join(v));
    }
    let mut out = Vec::new();
    for f in files {
        let (d, _) = capture::read_file(&f).unwrap();
        // The first few messages of a session carry its templates.
        out.extend(d.into_iter().take(6).map(|d| d.payload));
    }
    out
}

#[test]
fn every_truncation_of_every_corpus_message_is_handled() {
    let Some(corpus) = common::corpus() else { return };
    let msgs = payloads(&corpus);
    assert!(msgs.len() > 100);
    let mut out = FlowBuilders::new(4096);
    let mut truncations = 0u64;
    for full in &msgs {
        // A decoder that knows the templates, so that truncated data sets
        // reach the record decoder rather than the pending buffer.
        let mut warm = Decoder::new(DecoderConfig::default());
        warm.decode(full, EXPORTER, 0, &mut out);
        let whole = warm.decode(full, EXPORTER, 0, &mut out).records;
        for cut in 0..full.len() {
            let before = out.len();
            let o = warm.decode(&full[..cut], EXPORTER, 0, &mut out);
            assert_eq!((out.len() - before) as u64, o.records, "every row appended is counted");
            truncations += 1;
            assert!(o.records <= whole, "a truncated message cannot hold more records");
            if cut < 4 {
                assert!(matches!(o.error, Some(DecodeError::TooShort { .. })), "{cut}: {:?}", o.error);
            }
        }
        if out.len() > 100_000 {
            out.finish();
        }
    }
    eprintln!("{truncations} truncations decoded without a panic");
}

#[test]
fn byte_flips_never_panic() {
    let Some(corpus) = common::corpus() else { return };
    let msgs = payloads(&corpus);
    let mut out = FlowBuilders::new(4096);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut errors = 0u64;
    for full in &msgs {
        let mut d = Decoder::new(DecoderConfig::default());
        for _ in 0..200 {
            let mut m = full.clone();
            for _ in 0..3 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % m.len().max(1);
                if let Some(b) = m.get_mut(i) {
                    *b ^= (rng >> 32) as u8 | 1;
                }
            }
            let before = out.len();
            let o = d.decode(&m, EXPORTER, 0, &mut out);
            // The ledger identity, the oracle the fuzz targets use too.
            assert_eq!((out.len() - before) as u64, o.records, "every row appended is counted");
            assert_eq!(o.error.is_some(), o.dropped > 0, "every error is a counted drop");
            errors += o.error.is_some() as u64;
            if out.len() > 100_000 {
                out.finish();
            }
        }
    }
    assert!(errors > 0, "flipped bytes must produce some errors");
}

fn ipfix(sets: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 10, 0, 0, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
    m.extend_from_slice(sets);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

fn decode(m: &[u8]) -> (u64, Option<DecodeError>) {
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(16);
    let o = d.decode(m, Addr::from("192.0.2.1".parse::<std::net::IpAddr>().unwrap()), 0, &mut out);
    (o.records, o.error)
}

#[test]
fn broken_structures_get_precise_errors() {
    // Unknown version.
    assert_eq!(decode(&[0, 7, 0, 0, 0, 0]).1, Some(DecodeError::UnknownVersion { version: 7 }));
    // IPFIX length field larger than the datagram.
    let mut m = ipfix(&[]);
    m[3] = 200;
    assert!(matches!(decode(&m).1, Some(DecodeError::IpfixLength { .. })));
    // A set whose length runs past the message.
    assert!(matches!(decode(&ipfix(&[0, 2, 0, 40, 1, 0, 0, 1])).1, Some(DecodeError::SetLength { .. })));
    // A set length below its own header.
    assert!(matches!(decode(&ipfix(&[0, 2, 0, 2])).1, Some(DecodeError::SetLength { .. })));
    // A template announcing far more fields than the set holds.
    let absurd = ipfix(&[0, 2, 0, 12, 1, 0, 0xff, 0xff, 0, 8, 0, 4]);
    assert!(matches!(
        decode(&absurd).1,
        Some(DecodeError::BadTemplate { why: "more fields than the set holds", .. })
    ));
    // A template whose only field has length 0 describes no data.
    let zero = ipfix(&[0, 2, 0, 12, 1, 0, 0, 1, 0, 8, 0, 0]);
    assert!(matches!(decode(&zero).1, Some(DecodeError::BadTemplate { why: "fields describe no data", .. })));
    // A template id below 256.
    let low = ipfix(&[0, 2, 0, 12, 0, 9, 0, 1, 0, 8, 0, 4]);
    assert!(matches!(decode(&low).1, Some(DecodeError::BadTemplate { why: "template id below 256", .. })));
    // An options template with no scope fields.
    let scope = ipfix(&[0, 3, 0, 14, 1, 0, 0, 1, 0, 0, 0, 8, 0, 4]);
    assert!(matches!(decode(&scope).1, Some(DecodeError::BadTemplate { why: "bad scope field count", .. })));
    // A variable-length field whose length runs past the set.
    let varlen = ipfix(&[0, 2, 0, 12, 1, 0, 0, 1, 0, 82, 0xff, 0xff, 1, 0, 0, 8, 200, 1, 2, 3]);
    assert_eq!(decode(&varlen), (0, Some(DecodeError::RecordOverrun { template: 256 })));
    // A v5 header that claims more records than it carries.
    let mut v5 = vec![0u8; 24 + 48];
    v5[1] = 5;
    v5[3] = 2;
    assert_eq!(decode(&v5).1, Some(DecodeError::V5Length { count: 2, len: 72 }));
}

#[test]
fn data_before_its_template_is_held_and_decoded_when_the_template_arrives() {
    // template 256: sourceIPv4Address, octetDeltaCount(4), packetDeltaCount(4)
    let template = [0, 2, 0, 20, 1, 0, 0, 3, 0, 8, 0, 4, 0, 1, 0, 4, 0, 2, 0, 4];
    let data = [1, 0, 0, 28, 10, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 2, 10, 0, 0, 2, 0, 0, 2, 0, 0, 0, 0, 3];
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(16);
    let o = d.decode(&ipfix(&data), EXPORTER, 1, &mut out);
    assert_eq!((o.records, d.pending()), (0, (1, 24 + SET_OVERHEAD)));
    let o = d.decode(&ipfix(&template), EXPORTER, 2, &mut out);
    assert_eq!(o.records, 2, "both parked records decode when the template comes");
    assert_eq!(d.pending(), (0, 0));
    let b = out.finish();
    assert_eq!(common::u64_sum(&b, "bytes"), 256 + 512);
    assert_eq!(common::u64_sum(&b, "packets"), 5);
    // A set whose template never comes expires and is counted.
    d.decode(&ipfix(&[2, 0, 0, 8, 1, 2, 3, 4]), EXPORTER, 10, &mut out);
    assert_eq!(d.expire(10 + 600 * 1_000_000_000).expired, 1);
    assert_eq!(d.stats.pending_expired, 1);
}

/// An IPFIX message from `exporter` with the given sets.
fn decode_with(d: &mut Decoder, sets: &[u8], out: &mut FlowBuilders) -> u64 {
    d.decode(&ipfix(sets), EXPORTER, 0, out).records
}

#[test]
fn sampling_rates_come_from_options_data_config_or_default_with_provenance() {
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::UInt32Type;
    // Options template 300: scope samplerId(48), option samplingInterval(34).
    let opt_tpl = [0, 3, 0, 18, 1, 44, 0, 2, 0, 1, 0, 48, 0, 4, 0, 34, 0, 4];
    // Options data: sampler 7 samples 1 in 512.
    let opt_data = [1, 44, 0, 12, 0, 0, 0, 7, 0, 0, 2, 0];
    // Data template 256: sourceIPv4Address, octetDeltaCount, samplerId.
    let tpl = [0, 2, 0, 20, 1, 0, 0, 3, 0, 8, 0, 4, 0, 1, 0, 4, 0, 48, 0, 4];
    // Two records: one names sampler 7, one names unknown sampler 9.
    let data = [1, 0, 0, 28, 10, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0, 7, 10, 0, 0, 2, 0, 0, 0, 100, 0, 0, 0, 9];
    let cfg = |defaults: &[(&str, u32)], overrides: &[(&str, u32)]| {
        let mut c = DecoderConfig::default();
        c.sampling.defaults = defaults.iter().map(|(p, r)| (p.parse().unwrap(), *r)).collect();
        c.sampling.overrides = overrides.iter().map(|(p, r)| (p.parse().unwrap(), *r)).collect();
        c
    };
    let rates = |c: DecoderConfig| {
        let mut d = Decoder::new(c);
        let mut out = FlowBuilders::new(16);
        let mut sets = Vec::new();
        sets.extend_from_slice(&opt_tpl);
        sets.extend_from_slice(&opt_data);
        sets.extend_from_slice(&tpl);
        sets.extend_from_slice(&data);
        assert_eq!(decode_with(&mut d, &sets, &mut out), 2);
        let b = out.finish();
        let r: Vec<Option<u32>> =
            b.column_by_name("sampling_rate").unwrap().as_primitive::<UInt32Type>().iter().collect();
        let s = b.column_by_name("sampling_source").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let s: Vec<String> = s.iter().map(|v| v.unwrap().to_string()).collect();
        (r, s)
    };
    // Sampler 7 is known from options; sampler 9 is not: its rate is
    // unknown, never guessed, even with a configured default.
    assert_eq!(rates(cfg(&[], &[])), (vec![Some(512), None], vec!["options".into(), "unknown".into()]));
    assert_eq!(
        rates(cfg(&[("192.0.2.0/24", 100)], &[])),
        (vec![Some(512), None], vec!["options".into(), "unknown".into()])
    );
    // An override wins over what the exporter says.
    assert_eq!(
        rates(cfg(&[], &[("192.0.2.1/32", 64)])),
        (vec![Some(64), Some(64)], vec!["override".into(), "override".into()])
    );
}

#[test]
fn v5_header_sampling_and_ipfix_withdrawal() {
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::UInt32Type;
    // v5, one record, sampling interval 0x4064: mode 1, interval 100.
    let mut v5 = vec![0u8; 24 + 48];
    v5[1] = 5;
    v5[3] = 1;
    v5[22] = 0x40;
    v5[23] = 0x64;
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(16);
    assert_eq!(d.decode(&v5, EXPORTER, 0, &mut out).records, 1);
    let b = out.finish();
    assert_eq!(b.column_by_name("sampling_rate").unwrap().as_primitive::<UInt32Type>().value(0), 100);
    let s = b.column_by_name("sampling_source").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(s.value(0), "header");

    // IPFIX: a template, then its withdrawal; later data waits for a new one.
    let tpl = [0, 2, 0, 12, 1, 0, 0, 1, 0, 8, 0, 4];
    let withdraw = [0, 2, 0, 8, 1, 0, 0, 0];
    let data = [1, 0, 0, 8, 10, 0, 0, 1];
    let mut d = Decoder::new(DecoderConfig::default());
    assert_eq!(decode_with(&mut d, &[tpl.as_slice(), &data].concat(), &mut out), 1);
    assert_eq!(decode_with(&mut d, &withdraw, &mut out), 0);
    assert_eq!(d.stats.withdrawals, 1);
    assert_eq!(decode_with(&mut d, &data, &mut out), 0, "withdrawn: the data is parked");
    assert_eq!(d.pending().0, 1);
    assert_eq!(decode_with(&mut d, &tpl, &mut out), 1, "the refreshed template releases it");
}
