//! The pcap/pcapng reader on arbitrary bytes, then every datagram it finds
//! through the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_netflow::capture;
use spillway_netflow::decode::{Decoder, DecoderConfig};
use spillway_netflow::row::FlowBuilders;

fuzz_target!(|data: &[u8]| {
    if let Ok((datagrams, _)) = capture::read_bytes(data) {
        let mut decoder = Decoder::new(DecoderConfig::default());
        let mut out = FlowBuilders::new(1024);
        for d in datagrams.iter().take(64) {
            decoder.decode(&d.payload, spillway_core::addr::Addr([1; 16]), d.time_ns, &mut out);
        }
    }
});
