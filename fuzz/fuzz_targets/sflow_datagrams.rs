//! Feeds one sFlow decoder a sequence of datagrams cut out of the input (the
//! sequence positions of one carry over to the next, as in a real session).
//!
//! The oracle is the ledger identity: every row a datagram appends is
//! counted in its outcome, an error is always a counted drop, and what a
//! datagram is charged never exceeds what its bytes could have held.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_netflow::row::FlowBuilders;
use spillway_netflow::sflow::{DecoderSettings, SflowDecoder};

fuzz_target!(|data: &[u8]| {
    // A small bound, so that fuzzing reaches the eviction path.
    let mut decoder = SflowDecoder::new(DecoderSettings { max_streams: 8, ..Default::default() });
    decoder.enable_losses();
    decoder.enable_counters();
    let mut out = FlowBuilders::new(1024);
    let mut rest = data;
    // Each datagram: a 2-byte length, then the datagram.
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let end = (2 + len).min(rest.len());
        let msg = &rest[2..end];
        let before = out.len();
        let o = decoder.decode(msg, 0, &mut out);
        assert_eq!((out.len() - before) as u64, o.records, "every row appended is counted");
        assert_eq!(o.error.is_some(), o.dropped > 0, "an error is always a counted drop");
        assert!(o.records + o.dropped <= msg.len() as u64 / 8 + 1, "charged more than the bytes could hold");
        let _ = decoder.take_losses();
        let _ = decoder.take_counters();
        rest = &rest[end..];
        if out.len() > 512 {
            assert_eq!(out.finish().num_columns(), 27);
        }
    }
    assert!(decoder.streams() <= 8);
    let _ = out.finish();
});
