//! Decoders sharing what they learn: a change is recorded once (an
//! identical refresh records nothing), and a decoder that never saw an
//! exporter's templates or options decodes its data with the right rate
//! once it is given the facts another decoder learned — parked data
//! included, at once.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use common::build::{V, data, message, options_template, record, template};
use spillway_netflow::decode::{Decoder, DecoderConfig, Fact, Learned};
use spillway_netflow::row::FlowBuilders;

const EXPORTER: spillway_core::addr::Addr = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 1]);
const NOW: i64 = 1_700_000_000_000_000_000;
const SRC4: u16 = 8;
const OCTETS: u16 = 1;
const SAMPLING_INTERVAL: u16 = 34;
const V9_SCOPE_SYSTEM: u16 = 1;

fn decode(d: &mut Decoder, out: &mut FlowBuilders, seq: u32, sets: &[Vec<u8>]) -> u64 {
    let m = message(V::V9, 7, seq, sets.len() as u16, sets);
    let o = d.decode(&m, EXPORTER, NOW, out);
    assert!(o.error.is_none(), "{:?}", o.error);
    o.records
}

fn rates(b: &RecordBatch) -> Vec<(Option<u32>, String)> {
    let r = b.column_by_name("sampling_rate").unwrap().as_primitive::<UInt32Type>();
    let s = b.column_by_name("sampling_source").unwrap().as_string::<i32>();
    r.iter().zip(s.iter()).map(|(r, s)| (r, s.unwrap().to_string())).collect()
}

fn flow_template() -> Vec<u8> {
    template(V::V9, 256, &[(SRC4, 4), (OCTETS, 4)])
}

fn sampling_options() -> Vec<Vec<u8>> {
    vec![
        options_template(V::V9, 300, &[(V9_SCOPE_SYSTEM, 4)], &[(SAMPLING_INTERVAL, 4)]),
        data(300, &[record(&[(0, 4), (512, 4)])]),
    ]
}

/// What a sharing decoder learns from the sampling options and the flow
/// template: options template 300, the exporter's rate, template 256.
fn facts_of_a_full_announcement() -> Vec<Learned> {
    let mut d = Decoder::new(DecoderConfig::default());
    d.share();
    let mut out = FlowBuilders::new(64);
    let mut sets = sampling_options();
    sets.push(flow_template());
    decode(&mut d, &mut out, 0, &sets);
    d.take_learned().collect()
}

fn flows(n: u64) -> Vec<u8> {
    data(256, &(0..n).map(|i| record(&[(0x0a00_0000 + i, 4), (100 + i, 4)])).collect::<Vec<_>>())
}

#[test]
fn changes_are_recorded_once_and_identical_refreshes_not_at_all() {
    let mut d = Decoder::new(DecoderConfig::default());
    d.share();
    let mut out = FlowBuilders::new(64);
    let mut sets = sampling_options();
    sets.push(flow_template());
    decode(&mut d, &mut out, 0, &sets);
    let learned: Vec<Learned> = d.take_learned().collect();
    let kinds: Vec<_> = learned
        .iter()
        .map(|l| match &l.fact {
            Fact::Template { id, scope_fields, .. } => format!("template {id} scope {scope_fields}"),
            Fact::ExporterRate(r) => format!("rate {r:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["template 300 scope 1", "rate Some(512)", "template 256 scope 0"]);
    assert!(learned.iter().all(|l| l.key.exporter == EXPORTER && l.key.domain == 7));
    // The exporter refreshes everything, unchanged: nothing to share.
    decode(&mut d, &mut out, 1, &sets);
    assert_eq!(d.take_learned().count(), 0);
    // A changed rate is news.
    let changed = vec![data(300, &[record(&[(0, 4), (1024, 4)])])];
    decode(&mut d, &mut out, 2, &changed);
    let l: Vec<_> = d.take_learned().map(|l| l.fact).collect();
    assert_eq!(l, [Fact::ExporterRate(Some(1024))]);
    // A decoder without sharing records nothing.
    let mut quiet = Decoder::new(DecoderConfig::default());
    decode(&mut quiet, &mut out, 0, &sets);
    assert!(!quiet.has_learned());
}

#[test]
fn a_decoder_given_anothers_facts_decodes_parked_data_at_once_with_the_announced_rate() {
    let facts = facts_of_a_full_announcement();

    // The balancer moves the exporter: the second decoder gets data only.
    let mut second = Decoder::new(DecoderConfig::default());
    second.share();
    let mut out = FlowBuilders::new(64);
    assert_eq!(decode(&mut second, &mut out, 1, &[flows(5)]), 0, "no template yet: parked");
    assert_eq!(second.pending().0, 1);
    let mut released = 0;
    for f in &facts {
        let (kept, o) = second.apply(f, &mut out);
        assert!(kept);
        released += o.records;
    }
    assert_eq!(released, 5, "the parked set decoded when its template arrived from the store");
    assert_eq!(second.pending(), (0, 0));
    assert_eq!(second.take_learned().count(), 0, "applied facts are not shared again");
    // New data decodes straight away, at the rate the first decoder learned.
    assert_eq!(decode(&mut second, &mut out, 2, &[flows(3)]), 3);
    let b = out.finish();
    assert_eq!(rates(&b), vec![(Some(512), "options".to_string()); 8]);
}

/// What a store held at start only fills in what a decoder does not hold
/// (`Collector::apply` skips a warm fact the decoder `holds`): a template
/// the exporter sent meanwhile, in another definition, is the fresher one.
#[test]
fn a_decoder_holds_what_it_learned_in_any_definition_and_nothing_else() {
    let facts = facts_of_a_full_announcement();
    assert_eq!(facts.len(), 3);
    let mut out = FlowBuilders::new(64);

    // The exporter's template 256 changed: it now carries octets first.
    let mut live = Decoder::new(DecoderConfig::default());
    assert!(facts.iter().all(|f| !live.holds(f)), "an empty decoder holds nothing");
    decode(&mut live, &mut out, 0, &[template(V::V9, 256, &[(OCTETS, 4), (SRC4, 4)])]);
    let held: Vec<bool> = facts.iter().map(|f| live.holds(f)).collect();
    assert_eq!(held, [false, false, true], "options template 300 and the rate: no; template 256: yes");
    // Another domain of the same exporter holds nothing of domain 7.
    let other =
        Learned { key: spillway_netflow::state::DomainKey { domain: 8, ..facts[2].key }, ..facts[2].clone() };
    assert!(!live.holds(&other));
    // Every kind, once applied.
    for f in &facts {
        live.apply(f, &mut out);
    }
    assert!(facts.iter().all(|f| live.holds(f)));
    let boot = Learned { key: facts[0].key, fact: Fact::Boot(1_700_000_000_000) };
    assert!(!live.holds(&boot));
    live.apply(&boot, &mut out);
    assert!(live.holds(&boot));
}
