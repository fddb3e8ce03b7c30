//! Vendor sessions in ../shared/corpus that announce sampling (or name
//! samplers in their records), checked against tshark's decoding of the
//! same captures: the rate every exporter-wide announcement gives, and the
//! records naming a sampler that no options data describes, which must be
//! `unknown` with a null rate, not 1.

mod common;

use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;

/// The sessions of beats/pcap_from_dat whose payloads carry sampling
/// options or sampler ids (found with tshark over the whole corpus).
const SESSIONS: [&str; 8] = [
    "IPFIX-options-template-from-Juniper-MX240-JunOS-15.1-R6-S3",
    "IPFIX",
    "Netflow-9-Cisco-ASR-9000-series-template-260",
    "Netflow-9-Cisco-NBAR-flowset-262",
    "Netflow-9-Fortigate-FortiOS-5.2.1",
    "Netflow-9-IE150-IE151",
    "Netflow-9-field-layer2segmentid",
    "Netflow9-Juniper-SRX-options-template-with-0-scope-field-length",
];

/// What tshark reads in a capture: announced 1-in-N rates, and the sampler
/// ids that data records name.
#[derive(Debug, Default)]
struct Tshark {
    rates: Vec<u32>,
    sampler_ids: Vec<u64>,
}

fn tshark(pcap: &std::path::Path) -> Option<Tshark> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "udp.port==2055,cflow", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "cflow.sampling_interval", "-e", "cflow.sampler_random_interval"])
        .args(["-e", "cflow.sampling_packet_interval", "-e", "cflow.sampling_packet_space"])
        .args(["-e", "cflow.sampler_id"])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("tshark is required under CI=true (apt-get install tshark)");
            }
            eprintln!("skipping: no tshark");
            return None;
        }
    };
    let mut t = Tshark::default();
    let nums = |s: &str| -> Vec<u64> {
        s.split(',').filter(|v| !v.is_empty()).map(|v| v.parse().unwrap()).collect()
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let col = |i: usize| nums(cols.get(i).copied().unwrap_or(""));
        t.rates.extend(col(0).into_iter().chain(col(1)).filter(|r| *r > 0).map(|r| r as u32));
        for (i, sp) in col(2).into_iter().zip(col(3)) {
            if let Some(r) = (i + sp).checked_div(i) {
                t.rates.push(r as u32);
            }
        }
        t.sampler_ids.extend(col(4));
    }
    Some(t)
}

#[test]
fn vendor_sampling_announcements_match_tshark() {
    let Some(corpus) = common::corpus() else { return };
    let mut checked_rows = 0;
    for name in SESSIONS {
        let pcap = corpus.join("beats/pcap_from_dat").join(format!("{name}.pcap"));
        let Some(t) = tshark(&pcap) else { return };
        let d = common::decode_capture(&pcap);
        let rates = d.batch.column_by_name("sampling_rate").unwrap().as_primitive::<UInt32Type>();
        let sources = d.batch.column_by_name("sampling_source").unwrap().as_string::<i32>();
        let rows: Vec<(Option<u32>, &str)> = rates.iter().zip(sources.iter().map(Option::unwrap)).collect();
        let named = t.sampler_ids.iter().filter(|id| **id != 0).count();
        let unknown = rows.iter().filter(|(_, s)| *s == "unknown").count();
        t.rates.iter().for_each(|r| assert!(*r >= 1));
        if t.rates.is_empty() {
            // Nothing describes the samplers these records name: each such
            // record is unknown (a biflow record may make two rows).
            assert!(
                unknown >= named,
                "{name}: {unknown} unknown rows for {named} records naming a sampler: {rows:?}"
            );
            assert!(rows.iter().all(|(r, s)| (*s == "unknown") == r.is_none()), "{name}: {rows:?}");
            let rest: Vec<_> = rows.iter().filter(|(_, s)| *s != "unknown").collect();
            assert!(rest.iter().all(|(r, s)| *r == Some(1) && *s == "default"), "{name}: {rest:?}");
        } else {
            // An exporter-wide announcement: every row carries that rate.
            assert_eq!(named, 0, "{name}: sessions here name no sampler when they announce a rate");
            let want = t.rates[t.rates.len() - 1];
            assert!(
                rows.iter().all(|(r, s)| *r == Some(want) && *s == "options"),
                "{name}: tshark {t:?}, ours {rows:?}"
            );
            if rows.is_empty() {
                // Options only: the rate is learned for the exporter's later data.
                let key = first_source(&pcap);
                assert_eq!(d.decoder.state().peek(&key).and_then(|s| s.rate), Some(Some(want)), "{name}");
            }
        }
        checked_rows += rows.len();
        eprintln!("{name}: tshark {t:?}; {} rows, {unknown} unknown", rows.len());
    }
    assert!(checked_rows > 20, "the sessions decode to rows: {checked_rows}");
}

/// The (exporter, domain) of the capture's first export message.
fn first_source(pcap: &std::path::Path) -> spillway_netflow::state::DomainKey {
    let (datagrams, _) = spillway_netflow::capture::read_file(pcap).unwrap();
    let m = &datagrams[0].payload;
    let at = if u16::from_be_bytes([m[0], m[1]]) == 10 { 12 } else { 16 };
    let domain = u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let exporter = spillway_core::schema::Addr::from(datagrams[0].src);
    spillway_netflow::state::DomainKey { exporter, domain }
}
