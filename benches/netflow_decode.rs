//! Decode throughput (records/s on one core) for v5, v9 and IPFIX, beside the
//! `netflow_parser` crate decoding the same buffers in the same run; and
//! the cost of shared state on the hot path (`with_shared_state`: a decoder
//! recording changes for a store while the exporters refresh unchanged
//! templates, which must cost nothing measurable beside `spillway_into_arrow`).
//! `decode_sflow`: sFlow v5 flow samples (128-byte raw headers, 7 per
//! datagram as pmacctd and switches send them) in the same run, records/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_core::addr::Addr;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::generate;
use spillway_netflow::row::FlowBuilders;

const PACKETS: usize = 2000;

fn bench(c: &mut Criterion) {
    for (version, rpp) in [(5u16, 30usize), (9, 30), (10, 30)] {
        let msgs = generate::messages(version, 100, PACKETS, rpp, 7);
        let records = (PACKETS * rpp) as u64;
        let exporters: Vec<Addr> = (0..100)
            .map(|i| spillway_core::schema::Addr::from(std::net::IpAddr::V4(generate::exporter_addr(i))))
            .collect();
        let mut g = c.benchmark_group(format!("decode_v{version}"));
        g.throughput(Throughput::Elements(records));
        // One loop for both: sharing on or off is the only difference.
        let (msgs, exporters) = (&msgs, &exporters);
        let decode = move |shared: bool| {
            let mut d = Decoder::new(DecoderConfig::default());
            if shared {
                d.share();
            }
            let mut out = FlowBuilders::new(8192);
            move || {
                let mut n = 0;
                for (e, m) in msgs {
                    n += d.decode(m, exporters[*e as usize], 0, &mut out).records;
                    if out.is_full() {
                        std::hint::black_box(out.finish());
                    }
                    // What a worker does after each receive batch.
                    if d.has_learned() {
                        n += d.take_learned().count() as u64;
                    }
                }
                n
            }
        };
        g.bench_function("spillway_into_arrow", |b| b.iter(decode(false)));
        g.bench_function("with_shared_state", |b| b.iter(decode(true)));
        g.bench_function("netflow_parser", |b| {
            let mut p = netflow_parser::NetflowParser::default();
            // The comparison is only fair if it decodes what we decode.
            for (_, m) in msgs {
                let r = p.parse_bytes(m);
                assert!(
                    r.error.is_none() && !r.packets.is_empty(),
                    "netflow_parser rejects a v{version} message"
                );
            }
            b.iter(|| {
                for (_, m) in msgs {
                    let _ = std::hint::black_box(p.parse_bytes(m));
                }
            })
        });
        g.finish();
    }
    let datagrams = spillway_netflow::sflow::encode::flow_datagrams(100, PACKETS, 7);
    let mut g = c.benchmark_group("decode_sflow");
    g.throughput(Throughput::Elements((PACKETS * 7) as u64));
    g.bench_function("spillway_into_arrow", |b| {
        let mut d = spillway_netflow::sflow::SflowDecoder::new(Default::default());
        let mut out = FlowBuilders::new(8192);
        b.iter(|| {
            let mut n = 0;
            for (_, m) in &datagrams {
                n += d.decode(m, 0, &mut out).records;
                if out.is_full() {
                    std::hint::black_box(out.finish());
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
