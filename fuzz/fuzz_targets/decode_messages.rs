//! Feeds one stateful decoder a sequence of messages (v5, v9 or IPFIX, from
//! any number of exporters) cut out of the input: templates learned from one
//! message are used on the next, as in a real session.
//!
//! The oracle is the ledger identity: every row a message appends is
//! counted in its outcome, and every data set parked is, at the end,
//! decoded, expired, evicted or still held — nothing is produced uncounted
//! and nothing vanishes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::row::FlowBuilders;

fuzz_target!(|data: &[u8]| {
    let mut cfg = DecoderConfig::default();
    // Small budgets, so that fuzzing reaches the eviction paths.
    cfg.max_pending_bytes = 4096;
    cfg.limits.max_bytes = 1 << 16;
    let mut decoder = Decoder::new(cfg);
    let mut out = FlowBuilders::new(1024);
    let mut rest = data;
    // Each message: exporter byte, 2-byte length, then the message.
    while rest.len() >= 3 {
        let exporter = spillway_core::addr::Addr([rest[0]; 16]);
        let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let end = (3 + len).min(rest.len());
        let before = out.len();
        let o = decoder.decode(&rest[3..end], exporter, 0, &mut out);
        assert_eq!((out.len() - before) as u64, o.records, "every row appended is counted");
        assert_eq!(o.error.is_some(), o.dropped > 0, "an error is always a counted drop");
        rest = &rest[end..];
        if out.len() > 512 {
            let batch = out.finish();
            assert_eq!(batch.num_columns(), 27);
        }
    }
    decoder.expire(i64::MAX);
    let s = decoder.stats;
    let (live, _) = decoder.pending();
    assert_eq!(
        s.pending_sets,
        s.pending_decoded + s.pending_expired + s.pending_evicted + live as u64,
        "every parked set is accounted for: {s:?}"
    );
    let _ = out.finish();
});
