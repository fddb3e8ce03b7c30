//! Shared by the corpus tests: where the corpus is, and decoding a capture.
#![allow(dead_code)]

use std::path::PathBuf;

use arrow::array::RecordBatch;
use spillway_core::schema::{addr_to_bytes, flow_schema};
use spillway_netflow::capture;
use spillway_netflow::decode::{DecodeError, Decoder, DecoderConfig};
use spillway_netflow::row::FlowBuilders;

/// `../shared/corpus`, or `$SPILLWAY_CORPUS`. Under CI=true a missing corpus
/// fails the test; elsewhere the test is skipped.
pub fn corpus() -> Option<PathBuf> {
    let p = std::env::var_os("SPILLWAY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    if p.join("README.md").exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the corpus is required under CI=true: {} is missing", p.display());
    }
    eprintln!("skipping: no corpus at {}", p.display());
    None
}

/// Everything decoding a capture produced.
pub struct Decoded {
    pub batch: RecordBatch,
    pub errors: Vec<DecodeError>,
    pub decoder: Decoder,
    pub datagrams: usize,
}

/// Decodes every datagram of a capture, in order, with one decoder.
pub fn decode_capture(path: &std::path::Path) -> Decoded {
    let (datagrams, _) = capture::read_file(path).unwrap();
    decode_datagrams(datagrams.iter().map(|d| (d.src, d.time_ns, d.payload.as_slice())))
}

/// Decodes payloads with one decoder.
pub fn decode_datagrams<'a>(items: impl Iterator<Item = (std::net::IpAddr, i64, &'a [u8])>) -> Decoded {
    let mut decoder = Decoder::new(DecoderConfig::default());
    let mut b = FlowBuilders::new(1024);
    let mut batches = Vec::new();
    let mut errors = Vec::new();
    let mut n = 0;
    for (src, ts, payload) in items {
        n += 1;
        let o = decoder.decode(payload, addr_to_bytes(src), ts, &mut b);
        if let Some(e) = o.error {
            errors.push(e);
        }
        if b.len() >= 1024 {
            batches.push(b.finish());
        }
    }
    batches.push(b.finish());
    let batch = arrow::compute::concat_batches(&flow_schema(), &batches).unwrap();
    Decoded { batch, errors, decoder, datagrams: n }
}

pub fn u64_sum(b: &RecordBatch, col: &str) -> u64 {
    let a = b.column_by_name(col).unwrap().as_any().downcast_ref::<arrow::array::UInt64Array>().unwrap();
    arrow::compute::sum(a).unwrap_or(0)
}
