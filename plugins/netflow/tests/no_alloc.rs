//! The warmed decode path allocates nothing per record: once templates are
//! known, decoding a whole softflowd session (v5, v9, IPFIX), twice, into
//! column buffers with room for it performs no heap allocation at all.

// A counting global allocator is the point of this test.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use spillway_core::schema::Addr;
use spillway_netflow::capture;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::row::FlowBuilders;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts calls made while
// this thread has counting switched on.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_a_warmed_session_allocates_nothing() {
    let Some(corpus) = common::corpus() else { return };
    for v in ["v5/export_v5.pcap", "v9/export_v9.pcap", "v10/export_v10.pcap"] {
        let (datagrams, _) = capture::read_file(&corpus.join("softflowd").join(v)).unwrap();
        let msgs: Vec<(Addr, i64, &[u8])> =
            datagrams.iter().map(|d| (Addr::from(d.src), d.time_ns, d.payload.as_slice())).collect();
        let mut decoder = Decoder::new(DecoderConfig::default());
        let mut warm = FlowBuilders::new(8192);
        for (src, ts, m) in &msgs {
            decoder.decode(m, *src, *ts, &mut warm);
        }
        let mut out = FlowBuilders::new(10_000);
        let mut pass = || {
            ALLOCATIONS.with(|a| a.set(0));
            COUNTING.with(|c| c.set(true));
            let mut records = 0;
            for (src, ts, m) in &msgs {
                records += decoder.decode(m, *src, *ts, &mut out).records;
            }
            COUNTING.with(|c| c.set(false));
            (records, ALLOCATIONS.with(Cell::get))
        };
        let (records, first) = pass();
        let (again, second) = pass();
        assert!(records > 2900 && again == records, "{v}: {records} then {again}");
        assert_eq!(first, 0, "{v}: {first} allocations decoding {records} records");
        assert_eq!(second, 0, "{v}: {second} allocations decoding {records} more records");
    }
}

#[test]
fn decoding_psamp_packet_sections_and_sampler_lookups_allocates_nothing() {
    use common::build::{V, data, message, options_template, record, template};
    // A frame: Ethernet, 802.1Q, IPv4, UDP.
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0, 0, 5, 0x08, 0];
    frame.extend_from_slice(&[0x45, 0, 0, 200, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    frame.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 180, 0, 0]);
    let mut rec = record(&[(7, 8), (frame.len() as u64 + 4, 2)]);
    rec.push(frame.len() as u8);
    rec.extend_from_slice(&frame);
    let first = vec![
        options_template(V::Ipfix, 300, &[(302, 8)], &[(34, 4)]),
        data(300, &[record(&[(7, 8), (512, 4)])]),
        template(V::Ipfix, 256, &[(302, 8), (312, 2), (315, 0xffff)]),
        data(256, &[rec.clone(), rec.clone()]),
    ];
    let later = vec![data(256, &vec![rec; 20])];
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(4096);
    let exporter = Addr::from("192.0.2.1".parse::<std::net::IpAddr>().unwrap());
    decoder.decode(&message(V::Ipfix, 1, 0, 0, &first), exporter, 0, &mut out);
    let msgs: Vec<Vec<u8>> = (1..50).map(|i| message(V::Ipfix, 1, i * 20, 0, &later)).collect();
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let mut records = 0;
    for m in &msgs {
        records += decoder.decode(m, exporter, 0, &mut out).records;
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(records, 49 * 20);
    assert_eq!(ALLOCATIONS.with(Cell::get), 0, "allocations decoding {records} PSAMP records");
    let b = out.finish();
    let rate = b.column_by_name("sampling_rate").unwrap();
    assert_eq!(rate.null_count(), 0, "selector 7 is described");
}
