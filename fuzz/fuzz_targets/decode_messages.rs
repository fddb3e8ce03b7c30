//! Feeds one stateful decoder a sequence of messages (v5, v9 or IPFIX, from
//! any number of exporters) cut out of the input: templates learned from one
//! message are used on the next, as in a real session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::row::FlowBuilders;

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut out = FlowBuilders::new(1024);
    let mut rest = data;
    // Each message: exporter byte, 2-byte length, then the message.
    while rest.len() >= 3 {
        let exporter = [rest[0]; 16];
        let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let end = (3 + len).min(rest.len());
        let o = decoder.decode(&rest[3..end], exporter, 0, &mut out);
        assert!(o.records <= 1 << 20);
        rest = &rest[end..];
        if out.len() > 512 {
            let batch = out.finish();
            assert_eq!(batch.num_columns(), 27);
        }
    }
    decoder.expire(i64::MAX);
    let _ = out.finish();
});
