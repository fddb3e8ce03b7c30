//! The packet-header parser (PSAMP packet sections, sFlow raw headers) on
//! arbitrary bytes, entered at every layer it can start from: it must never
//! panic, and a field it reads must come from inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_netflow::packet::{self, Headers};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let mut h = Headers::default();
    match first % 5 {
        0 => packet::ethernet(rest, &mut h),
        1 => packet::ip(rest, &mut h),
        2 => packet::mpls(rest, &mut h),
        3 => packet::mpls_payload(rest, &mut h),
        _ => packet::transport(first, rest, &mut h),
    }
    assert!(h.mpls_labels <= 16 * 3);
    if h.src_port.is_some() || h.icmp.is_some() {
        assert!(rest.len() >= 2);
    }
});
