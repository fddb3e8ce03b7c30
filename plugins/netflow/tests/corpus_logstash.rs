//! All 92 vendor payloads from logstash-codec-netflow: each decodes on its own
//! without panicking, to the counts tshark gives (tshark_counts.tsv), every
//! disagreement explained below.

mod common;

use std::collections::BTreeMap;

/// Payloads where we and tshark 4.0.17 disagree, and why.
const DISAGREEMENTS: [(&str, &str); 5] = [
    (
        "ipfix_test_ixia_tpldata256.pcap",
        "tshark counts no data record for templates with variable-length enterprise fields; the \
         payload carries one complete flow (360 bytes, 4 packets, UDP) after its template, and \
         logstash's own spec decodes it too",
    ),
    ("ipfix_test_ixia_tpldata271.pcap", "as the previous one: two complete flows that tshark does not count"),
    (
        "netflow5_test_invalid01.pcap",
        "the header claims 55582 records where v5 allows 30 and the packet holds 30: the header \
         is corrupt, so the packet is counted malformed instead of guessed at",
    ),
    (
        "netflow5_test_invalid02.pcap",
        "the header claims 163 records in a packet that holds 30: counted malformed, as above",
    ),
    (
        "netflow9_test_invalid01.pcap",
        "the header's record count (2) disagrees with the 5 records present and tshark stops \
         there; exporters miscount often, so we decode every well-formed set (an options template \
         and 3 data records)",
    ),
];

#[test]
fn every_logstash_payload_decodes_to_tsharks_counts() {
    let Some(corpus) = common::corpus() else { return };
    let tsv = std::fs::read_to_string(corpus.join("tshark_counts.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut report = BTreeMap::new();
    let mut seen = 0;
    for line in lines {
        let c: Vec<&str> = line.split('\t').collect();
        let file = c[col("file")];
        if !file.starts_with("logstash-codec-netflow/pcap_single/") {
            continue;
        }
        seen += 1;
        let n = |name: &str| c[col(name)].parse::<u64>().unwrap_or(0);
        let d = common::decode_capture(&corpus.join(file));
        let s = d.decoder.stats;
        let ours = (
            s.templates,
            s.options_templates,
            d.batch.num_rows() as u64 - s.biflows + s.options_records,
            s.pending_sets,
        );
        // tshark's `templates` counts options templates too.
        let theirs = (
            n("templates") - n("opt_templates"),
            n("opt_templates"),
            n("data_records") + n("v5_records"),
            n("notemplate_sets"),
        );
        if ours != theirs {
            let name = file.rsplit('/').next().unwrap().to_string();
            report.insert(name, format!("ours (templates, options templates, data records, sets without template) = {ours:?}, tshark {theirs:?}, errors {:?}", d.errors));
        }
    }
    assert_eq!(seen, 92, "every logstash payload has a tshark line");
    let unexplained: Vec<String> = report
        .iter()
        .filter(|(k, _)| !DISAGREEMENTS.iter().any(|(f, _)| f == k))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} unexplained disagreements:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}
