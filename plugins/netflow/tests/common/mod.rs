//! Shared by the corpus tests: where the corpus is, and decoding a capture.
#![allow(dead_code)]

use std::path::PathBuf;

use arrow::array::RecordBatch;
use spillway_core::schema::{Addr, flow_schema};
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

/// Runs a reference tool and returns its standard output. Under CI=true a
/// missing tool fails the test; elsewhere the check is skipped.
pub fn tool(name: &str, args: &[&str]) -> Option<String> {
    match std::process::Command::new(name).args(args).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => panic!("{name} {args:?} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{name} is required under CI=true: {e}");
            }
            eprintln!("skipping: {name}: {e}");
            None
        }
    }
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
        let o = decoder.decode(payload, Addr::from(src), ts, &mut b);
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

/// Builds v9 and IPFIX messages field by field, as RFC 3954 and RFC 7011
/// lay them out.
pub mod build {
    /// A v9 or IPFIX export.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum V {
        V9,
        Ipfix,
    }

    /// A template set with one template: (element id, length) per field.
    pub fn template(v: V, id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (f, l) in fields {
            body.extend_from_slice(&f.to_be_bytes());
            body.extend_from_slice(&l.to_be_bytes());
        }
        set(if v == V::Ipfix { 2 } else { 0 }, &body)
    }

    /// An options template set: scope fields, then option fields. For v9
    /// the scope field ids are v9 scope types (1 System, 2 Interface …).
    pub fn options_template(v: V, id: u16, scope: &[(u16, u16)], fields: &[(u16, u16)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&id.to_be_bytes());
        match v {
            V::Ipfix => {
                body.extend_from_slice(&((scope.len() + fields.len()) as u16).to_be_bytes());
                body.extend_from_slice(&(scope.len() as u16).to_be_bytes());
            }
            V::V9 => {
                body.extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
                body.extend_from_slice(&((fields.len() * 4) as u16).to_be_bytes());
            }
        }
        for (f, l) in scope.iter().chain(fields) {
            body.extend_from_slice(&f.to_be_bytes());
            body.extend_from_slice(&l.to_be_bytes());
        }
        set(if v == V::Ipfix { 3 } else { 1 }, &body)
    }

    /// A data set of template `id` holding `records` (each already encoded).
    pub fn data(id: u16, records: &[Vec<u8>]) -> Vec<u8> {
        set(id, &records.concat())
    }

    /// A set with its header, padded to 4 bytes.
    pub fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&id.to_be_bytes());
        let pad = (4 - (body.len() % 4)) % 4;
        s.extend_from_slice(&((4 + body.len() + pad) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s.extend(std::iter::repeat_n(0, pad));
        s
    }

    /// A record from big-endian values: (value, length) per field.
    pub fn record(values: &[(u64, u16)]) -> Vec<u8> {
        let mut r = Vec::new();
        for (v, l) in values {
            r.extend_from_slice(&v.to_be_bytes()[8 - *l as usize..]);
        }
        r
    }

    /// A whole message: header then sets. `records` is v9's header count.
    pub fn message(v: V, domain: u32, seq: u32, records: u16, sets: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        let export_secs: u32 = 1_700_000_000;
        match v {
            V::Ipfix => {
                m.extend_from_slice(&10u16.to_be_bytes());
                m.extend_from_slice(&[0, 0]);
                m.extend_from_slice(&export_secs.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.extend_from_slice(&domain.to_be_bytes());
            }
            V::V9 => {
                m.extend_from_slice(&9u16.to_be_bytes());
                m.extend_from_slice(&records.to_be_bytes());
                m.extend_from_slice(&3_600_000u32.to_be_bytes());
                m.extend_from_slice(&export_secs.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.extend_from_slice(&domain.to_be_bytes());
            }
        }
        for s in sets {
            m.extend_from_slice(s);
        }
        if v == V::Ipfix {
            let len = m.len() as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
        }
        m
    }
}
