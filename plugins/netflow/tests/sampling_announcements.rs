//! Every way an exporter announces sampling, built from the RFC field
//! layouts (RFC 3954 v9, RFC 7011 IPFIX, RFC 5477 PSAMP selectors), in
//! options data and inside data records: the rate and `sampling_source`
//! each record gets, the precedence between them, and the unknown-sampler
//! case (a null rate, counted, noted once — never 1 as if known).

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use common::build::{V, data, message, options_template, record, template};
use spillway_netflow::decode::{Decoder, DecoderConfig, NoticeKind};
use spillway_netflow::row::FlowBuilders;
use spillway_netflow::state::DomainKey;

const EXPORTER: spillway_core::addr::Addr = spillway_core::addr::Addr::from_v4_octets([192, 0, 2, 1]);

/// IANA elements used below.
const SRC4: u16 = 8;
const OCTETS: u16 = 1;
const SAMPLING_INTERVAL: u16 = 34;
const SAMPLING_ALGORITHM: u16 = 35;
const SAMPLER_ID: u16 = 48;
const SAMPLER_MODE: u16 = 49;
const SAMPLER_RANDOM_INTERVAL: u16 = 50;
const OBSERVATION_DOMAIN: u16 = 149;
const SELECTOR_ID: u16 = 302;
const SELECTOR_ALGORITHM: u16 = 304;
const PACKET_INTERVAL: u16 = 305;
const PACKET_SPACE: u16 = 306;
const TIME_INTERVAL: u16 = 307;
const SAMPLING_SIZE: u16 = 309;
const SAMPLING_POPULATION: u16 = 310;
const SAMPLING_PROBABILITY: u16 = 311;
/// v9 scope type "System".
const V9_SCOPE_SYSTEM: u16 = 1;

fn rows(b: &RecordBatch) -> Vec<(Option<u32>, String)> {
    let r = b.column_by_name("sampling_rate").unwrap().as_primitive::<UInt32Type>();
    let s = b.column_by_name("sampling_source").unwrap().as_string::<i32>();
    r.iter().zip(s.iter()).map(|(r, s)| (r, s.unwrap().to_string())).collect()
}

/// Decodes `msgs` in order with one decoder; every row's (rate, source).
fn decode(cfg: DecoderConfig, v: V, msgs: &[Vec<Vec<u8>>]) -> (Vec<(Option<u32>, String)>, Decoder) {
    let mut d = Decoder::new(cfg);
    let mut out = FlowBuilders::new(64);
    for (i, sets) in msgs.iter().enumerate() {
        let m = message(v, 7, i as u32, sets.len() as u16, sets);
        let o = d.decode(&m, EXPORTER, 1_700_000_000_000_000_000, &mut out);
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    (rows(&out.finish()), d)
}

fn one(v: V, msgs: &[Vec<Vec<u8>>]) -> Vec<(Option<u32>, String)> {
    decode(DecoderConfig::default(), v, msgs).0
}

fn src(n: u64) -> (u64, u16) {
    (0x0a00_0000 + n, 4)
}

fn opt(rate: u32) -> (Option<u32>, String) {
    (Some(rate), "options".into())
}

/// Options data describing a selector `302 = 1` with `fields`, then a data
/// record naming selector 1 (IPFIX).
fn ipfix_selector(fields: &[(u16, u16)], values: &[(u64, u16)]) -> Vec<(Option<u32>, String)> {
    let scope = [(SELECTOR_ID, 8)];
    let mut vals = vec![(1u64, 8u16)];
    vals.extend_from_slice(values);
    one(
        V::Ipfix,
        &[vec![
            options_template(V::Ipfix, 300, &scope, fields),
            data(300, &[record(&vals)]),
            template(V::Ipfix, 256, &[(SRC4, 4), (OCTETS, 4), (SELECTOR_ID, 8)]),
            data(256, &[record(&[src(1), (100, 4), (1, 8)])]),
        ]],
    )
}

#[test]
fn ipfix_selector_tables_per_rfc_5477() {
    // Cisco IOS-XR random n-out-of-N: 1 of 256.
    let f = [(SELECTOR_ALGORITHM, 2), (SAMPLING_SIZE, 4), (SAMPLING_POPULATION, 4)];
    assert_eq!(ipfix_selector(&f, &[(3, 2), (1, 4), (256, 4)]), vec![opt(256)]);
    // Systematic count-based: 1 selected, 99 skipped.
    let f = [(SELECTOR_ALGORITHM, 2), (PACKET_INTERVAL, 4), (PACKET_SPACE, 4)];
    assert_eq!(ipfix_selector(&f, &[(1, 2), (1, 4), (99, 4)]), vec![opt(100)]);
    // Uniform probabilistic, p = 0.01.
    let f = [(SELECTOR_ALGORITHM, 2), (SAMPLING_PROBABILITY, 8)];
    assert_eq!(ipfix_selector(&f, &[(4, 2), (0.01f64.to_bits(), 8)]), vec![opt(100)]);
    // Systematic time-based has no 1-in-N rate: unknown, never 1.
    let f = [(SELECTOR_ALGORITHM, 2), (TIME_INTERVAL, 4)];
    assert_eq!(ipfix_selector(&f, &[(2, 2), (10, 4)]), vec![(None, "unknown".into())]);
    // Property-match filtering reports every matching packet.
    let f = [(SELECTOR_ALGORITHM, 2)];
    assert_eq!(ipfix_selector(&f, &[(5, 2)]), vec![opt(1)]);
}

#[test]
fn ipfix_sampler_tables_and_exporter_wide_options() {
    // samplerId + samplerMode + samplerRandomInterval (the pre-PSAMP IEs).
    let got = one(
        V::Ipfix,
        &[vec![
            options_template(
                V::Ipfix,
                300,
                &[(SAMPLER_ID, 1)],
                &[(SAMPLER_MODE, 1), (SAMPLER_RANDOM_INTERVAL, 4)],
            ),
            data(300, &[record(&[(4, 1), (2, 1), (1000, 4)])]),
            template(V::Ipfix, 256, &[(SRC4, 4), (OCTETS, 4), (SAMPLER_ID, 1)]),
            data(256, &[record(&[src(1), (100, 4), (4, 1)]), record(&[src(2), (100, 4), (0, 1)])]),
        ]],
    );
    // Sampler 0 names none: no exporter-wide rate either, so the default.
    assert_eq!(got, vec![opt(1000), (Some(1), "default".into())]);
    // Exporter-wide: scoped to the observation domain, no sampler id.
    let got = one(
        V::Ipfix,
        &[vec![
            options_template(
                V::Ipfix,
                300,
                &[(OBSERVATION_DOMAIN, 4)],
                &[(SAMPLING_INTERVAL, 4), (SAMPLING_ALGORITHM, 1)],
            ),
            data(300, &[record(&[(7, 4), (512, 4), (2, 1)])]),
            template(V::Ipfix, 256, &[(SRC4, 4), (OCTETS, 4)]),
            data(256, &[record(&[src(1), (100, 4)])]),
        ]],
    );
    assert_eq!(got, vec![opt(512)]);
}

#[test]
fn rates_inside_data_records_v9_and_ipfix() {
    for v in [V::V9, V::Ipfix] {
        // Huawei v9 (and MikroTik IPFIX): SAMPLING_INTERVAL in every record.
        let got = one(
            v,
            &[vec![
                template(v, 256, &[(SRC4, 4), (OCTETS, 4), (SAMPLING_INTERVAL, 4)]),
                data(256, &[record(&[src(1), (100, 4), (2048, 4)]), record(&[src(2), (100, 4), (2048, 4)])]),
            ]],
        );
        assert_eq!(got, vec![(Some(2048), "record".into()); 2]);
    }
    // IPFIX in-record random n-out-of-N.
    let got = one(
        V::Ipfix,
        &[vec![
            template(V::Ipfix, 256, &[(SRC4, 4), (SAMPLING_SIZE, 4), (SAMPLING_POPULATION, 4)]),
            data(256, &[record(&[src(1), (1, 4), (64, 4)])]),
        ]],
    );
    assert_eq!(got, vec![(Some(64), "record".into())]);
}

#[test]
fn v9_sampler_tables_and_system_scoped_options() {
    // FLOW_SAMPLER_ID / FLOW_SAMPLER_MODE / FLOW_SAMPLER_RANDOM_INTERVAL.
    let got = one(
        V::V9,
        &[vec![
            options_template(
                V::V9,
                300,
                &[(V9_SCOPE_SYSTEM, 4)],
                &[(SAMPLER_ID, 1), (SAMPLER_MODE, 1), (SAMPLER_RANDOM_INTERVAL, 4)],
            ),
            data(300, &[record(&[(0, 4), (3, 1), (2, 1), (100, 4)])]),
            template(V::V9, 256, &[(SRC4, 4), (OCTETS, 4), (SAMPLER_ID, 1)]),
            data(256, &[record(&[src(1), (100, 4), (3, 1)])]),
        ]],
    );
    assert_eq!(got, vec![opt(100)]);
    // SAMPLING_INTERVAL / SAMPLING_ALGORITHM for the whole exporter.
    let got = one(
        V::V9,
        &[vec![
            options_template(
                V::V9,
                300,
                &[(V9_SCOPE_SYSTEM, 4)],
                &[(SAMPLING_INTERVAL, 4), (SAMPLING_ALGORITHM, 1)],
            ),
            data(300, &[record(&[(0, 4), (64, 4), (1, 1)])]),
            template(V::V9, 256, &[(SRC4, 4), (OCTETS, 4)]),
            data(256, &[record(&[src(1), (100, 4)])]),
        ]],
    );
    assert_eq!(got, vec![opt(64)]);
}

#[test]
fn a_sampler_not_yet_described_is_unknown_counted_and_noted_once() {
    let tpl = template(V::Ipfix, 256, &[(SRC4, 4), (OCTETS, 4), (SELECTOR_ID, 8)]);
    let rec = |n| record(&[src(n), (100, 4), (9, 8)]);
    let options = options_template(V::Ipfix, 300, &[(SELECTOR_ID, 8)], &[(SAMPLING_INTERVAL, 4)]);
    let described = data(300, &[record(&[(9, 8), (4096, 4)])]);
    let mut cfg = DecoderConfig::default();
    // A configured default does not stand in for a sampler the exporter named.
    cfg.sampling.defaults = vec![("192.0.2.0/24".parse().unwrap(), 100)];
    let (got, mut d) = decode(
        cfg,
        V::Ipfix,
        &[
            vec![tpl.clone(), data(256, &[rec(1), rec(2)])],
            vec![data(256, &[rec(3)])],
            vec![options, described, data(256, &[rec(4)])],
        ],
    );
    let unknown = (None, "unknown".to_string());
    assert_eq!(got, vec![unknown.clone(), unknown.clone(), unknown, opt(4096)]);
    assert_eq!(d.stats.sampling_unknown, 3);
    let notices: Vec<_> = d.take_notices().collect();
    assert_eq!(notices.len(), 1, "one notice per exporter, not per record: {notices:?}");
    assert_eq!(notices[0].kind, NoticeKind::SamplerUnknown { sampler: 9 });
}

#[test]
fn precedence_override_then_record_then_sampler_then_exporter_then_default() {
    let options = options_template(V::Ipfix, 300, &[(OBSERVATION_DOMAIN, 4)], &[(SAMPLING_INTERVAL, 4)]);
    let table = options_template(V::Ipfix, 301, &[(SELECTOR_ID, 8)], &[(SAMPLING_INTERVAL, 4)]);
    let sets = vec![
        options,
        data(300, &[record(&[(7, 4), (10, 4)])]),
        table,
        data(301, &[record(&[(5, 8), (50, 4)])]),
        template(V::Ipfix, 256, &[(SRC4, 4), (SELECTOR_ID, 8), (SAMPLING_INTERVAL, 4)]),
        data(
            256,
            &[
                record(&[src(1), (5, 8), (2048, 4)]), // in-record wins over its sampler
                record(&[src(2), (5, 8), (0, 4)]),    // interval 0 announces nothing: sampler 5
                record(&[src(3), (0, 8), (0, 4)]),    // sampler 0 names none: exporter-wide
            ],
        ),
    ];
    let got = one(V::Ipfix, std::slice::from_ref(&sets));
    assert_eq!(got, vec![(Some(2048), "record".into()), opt(50), opt(10)]);
    let mut cfg = DecoderConfig::default();
    cfg.sampling.overrides = vec![("192.0.2.1/32".parse().unwrap(), 64)];
    let (got, _) = decode(cfg, V::Ipfix, &[sets]);
    assert_eq!(got, vec![(Some(64), "override".into()); 3]);
    // Nothing announced: the config default, else 1.
    let plain = vec![template(V::Ipfix, 256, &[(SRC4, 4)]), data(256, &[record(&[src(1)])])];
    assert_eq!(one(V::Ipfix, std::slice::from_ref(&plain)), vec![(Some(1), "default".into())]);
    let mut cfg = DecoderConfig::default();
    cfg.sampling.defaults = vec![("192.0.2.0/24".parse().unwrap(), 100)];
    assert_eq!(decode(cfg, V::Ipfix, &[plain]).0, vec![(Some(100), "default".into())]);
}

#[test]
fn what_options_teach_is_kept_per_exporter_and_domain() {
    let (_, d) = decode(
        DecoderConfig::default(),
        V::Ipfix,
        &[vec![
            options_template(V::Ipfix, 300, &[(OBSERVATION_DOMAIN, 4)], &[(SAMPLING_INTERVAL, 4)]),
            data(300, &[record(&[(7, 4), (1000, 4)])]),
        ]],
    );
    let state = d.state().peek(&DomainKey { exporter: EXPORTER, domain: 7 }).unwrap();
    assert_eq!(state.rate, Some(Some(1000)));
    assert!(d.state().peek(&DomainKey { exporter: EXPORTER, domain: 8 }).is_none());
}
