//! IPFIX/v9 elements beyond the flow schema, requested by IANA name, arrive
//! as typed columns with the values Filebeat's golden files hold.

mod common;

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use spillway_core::schema::Addr;
use spillway_netflow::capture;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::iana;
use spillway_netflow::row::FlowBuilders;

#[test]
fn cisco_asa_flow_ids_events_and_nat_addresses_match_the_golden_events() {
    let Some(corpus) = common::corpus() else { return };
    let names: Vec<String> =
        ["flowId", "firewallEvent", "postNATSourceIPv4Address"].iter().map(|s| s.to_string()).collect();
    let extras = iana::resolve_all(&names).unwrap();
    let cfg = DecoderConfig { extra_ids: extras.iter().map(|e| e.id).collect(), ..DecoderConfig::default() };
    let mut d = Decoder::new(cfg);
    let mut out = FlowBuilders::with_extras(1024, &extras);
    let (datagrams, _) =
        capture::read_file(&corpus.join("beats/pcap_from_dat/Netflow-9-Cisco-ASA-2.pcap")).unwrap();
    for dg in &datagrams {
        d.decode(&dg.payload, Addr::from(dg.src), dg.time_ns, &mut out);
    }
    let b = out.finish();
    let schema = b.schema();
    assert_eq!(schema.field_with_name("flow_id").unwrap().data_type(), &arrow::datatypes::DataType::UInt64);
    assert_eq!(
        schema.field_with_name("post_nat_source_ipv4_address").unwrap().data_type(),
        &spillway_core::schema::address_type()
    );
    let ids = b.column_by_name("flow_id").unwrap().as_primitive::<UInt64Type>();
    let events = b.column_by_name("firewall_event").unwrap().as_primitive::<UInt64Type>();
    let nat = b.column_by_name("post_nat_source_ipv4_address").unwrap().as_fixed_size_binary();
    let ours: BTreeSet<(u64, u64, String)> = (0..b.num_rows())
        .filter(|&i| !ids.is_null(i))
        .map(|i| (ids.value(i), events.value(i), Addr::from_slice(nat.value(i)).unwrap().ip().to_string()))
        .collect();

    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("beats/golden/Netflow-9-Cisco-ASA-2.golden.json")).unwrap(),
    )
    .unwrap();
    let theirs: BTreeSet<(u64, u64, String)> = golden["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["Fields"]["netflow"])
        .map(|n| {
            (
                n["flow_id"].as_u64().unwrap(),
                n["firewall_event"].as_u64().unwrap(),
                n["post_nat_source_ipv4_address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
}

#[test]
fn unknown_and_duplicate_names_are_refused_with_a_reason() {
    assert!(iana::resolve_all(&["flowEndReasn".into()]).unwrap_err().contains("did you mean"));
    assert!(iana::resolve_all(&["flowId".into(), "FLOWID".into()]).unwrap_err().contains("listed twice"));
    assert!(iana::resolve_all(&vec!["flowId".to_string(); 17]).unwrap_err().contains("at most 16"));
}
