//! The CPU one batch costs the sink's file writer (this crate's column
//! encoders) beside arrow-rs's `ArrowWriter`, on the same demo flow
//! batches, alternating, in one process: nanoseconds of CPU per record,
//! for each codec. A fixed workload for comparing builds or settings.
//!
//! ```sh
//! cargo run --release -p spillway-parquet --example encode_loop [ROUNDS]
//! # ENCODE_LOOP_OURS_ONLY=1: ours only; ENCODE_LOOP_BINARY=1: 16-byte
//! # addresses; ENCODE_LOOP_PLAIN=1: PLAIN integers (default: delta);
//! # ENCODE_LOOP_DICTIONARY=low: dictionaries on the low-cardinality
//! # columns only (the sink's default before they were weighed per chunk;
//! # default: every column, as the sink); ENCODE_LOOP_INPUT=FILE: the
//! # first 1,048,576 rows of a file the sink wrote (say, of the netflow
//! # generator's records) instead of demo flows
//! ```

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use spillway_parquet::file::{FileWriter, addresses_to_strings};

/// This thread's CPU time so far, in seconds: the scheduler's count, in
/// nanoseconds (which this kernel still advances a tick, 4 ms, at a time;
/// hence the passes below).
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1e9
}

/// The sink's dictionary columns before each chunk weighed its dictionary
/// (ENCODE_LOOP_DICTIONARY=low).
const LOW_CARDINALITY: &[&str] = &[
    "exporter",
    "next_hop",
    "tcp_flags",
    "observation_domain",
    "flow_version",
    "protocol",
    "tos",
    "in_if",
    "out_if",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
    "vlan",
    "direction",
    "sampling_rate",
    "sampling_source",
];

/// 64 batches of 16,384 rows of a file the sink wrote, addresses back
/// to 16 bytes.
fn from_file(path: &std::path::Path) -> Vec<RecordBatch> {
    use arrow::array::{Array, AsArray, FixedSizeBinaryArray};
    let schema = spillway_core::schema::flow_schema();
    let file = std::fs::File::open(path).expect("ENCODE_LOOP_INPUT opens");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .with_batch_size(16384)
        .with_limit(64 * 16384)
        .build()
        .expect("a Parquet file");
    reader
        .map(|b| {
            let b = b.expect("the file reads");
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| {
                    let c = b.column_by_name(f.name()).expect("a file of the flow schema");
                    match (f.data_type(), c.data_type()) {
                        (DataType::FixedSizeBinary(16), DataType::Utf8) => {
                            let words = c.as_string::<i32>().iter().map(|s| {
                                s.map(|s| {
                                    let ip: std::net::IpAddr = s.parse().expect("address text");
                                    match ip {
                                        std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                                        std::net::IpAddr::V6(a) => a.octets(),
                                    }
                                })
                            });
                            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(words, 16).unwrap())
                                as ArrayRef
                        }
                        _ => arrow::compute::cast(c, f.data_type()).expect("the flow schema's type"),
                    }
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).expect("the flow schema")
        })
        .filter(|b| b.num_rows() == 16384)
        .collect()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut g = spillway_debug::demo::FlowGenerator::new(
        7,
        1000,
        1_767_225_600_000_000_000,
        Duration::from_micros(1),
    );
    let batches: Vec<RecordBatch> = match std::env::var_os("ENCODE_LOOP_INPUT") {
        Some(path) => from_file(std::path::Path::new(&path)),
        None => (0..64).map(|_| g.batch(16384)).collect(),
    };
    // Each measurement writes the batches this many times: the kernel
    // counts CPU time in scheduler ticks (4 ms here).
    const PASSES: usize = 4;
    let rows = (PASSES * batches.len() * 16384) as f64;
    let input = batches[0].schema();
    let stored = Arc::new(Schema::new(
        input
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::FixedSizeBinary(16) if std::env::var_os("ENCODE_LOOP_BINARY").is_none() => {
                    Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                }
                _ => f.clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let all: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
    let dictionary = match std::env::var("ENCODE_LOOP_DICTIONARY").as_deref() {
        Ok("low") => LOW_CARDINALITY,
        _ => &all[..],
    };
    for round in 1..=rounds {
        for (name, codec) in [
            ("none", Compression::UNCOMPRESSED),
            ("zstd 1", Compression::ZSTD(ZstdLevel::try_new(1).unwrap())),
            ("zstd -1", Compression::ZSTD(ZstdLevel::try_new(-1).unwrap())),
            ("zstd -3", Compression::ZSTD(ZstdLevel::try_new(-3).unwrap())),
            ("lz4", Compression::LZ4_RAW),
            ("snappy", Compression::SNAPPY),
        ] {
            let mut props = WriterProperties::builder()
                .set_compression(codec)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::Chunk);
            for c in dictionary {
                props = props.set_column_dictionary_enabled(ColumnPath::from(*c), true);
            }
            // The sink's default, DELTA_BINARY_PACKED integers, unless
            // ENCODE_LOOP_PLAIN is set.
            if std::env::var_os("ENCODE_LOOP_PLAIN").is_none() {
                for f in stored.fields().iter().filter(|f| {
                    f.data_type().is_integer() || matches!(f.data_type(), DataType::Timestamp(..))
                }) {
                    props = props.set_column_encoding(
                        ColumnPath::from(f.name().as_str()),
                        parquet::basic::Encoding::DELTA_BINARY_PACKED,
                    );
                }
            }
            for f in stored.fields().iter().filter(|f| f.data_type() == &DataType::Utf8) {
                props = props.set_column_statistics_enabled(
                    ColumnPath::from(f.name().as_str()),
                    EnabledStatistics::None,
                );
            }
            let props = props.build();
            let t = cpu();
            let mut ours = FileWriter::try_new(Vec::new(), input.clone(), stored.clone(), &props).unwrap();
            for b in batches.iter().cycle().take(PASSES * batches.len()) {
                ours.write(b).unwrap();
            }
            let ours_len = ours.close().unwrap().len();
            let ours_ns = (cpu() - t) * 1e9 / rows;
            if std::env::var_os("ENCODE_LOOP_OURS_ONLY").is_some() {
                println!(
                    "round {round} {name:<7} ours {ours_ns:7.1} ns/record {:6.1} B/record",
                    ours_len as f64 / rows
                );
                continue;
            }
            let t = cpu();
            let mut theirs = ArrowWriter::try_new(Vec::new(), stored.clone(), Some(props.clone())).unwrap();
            for b in batches.iter().cycle().take(PASSES * batches.len()) {
                let cols: Vec<ArrayRef> = b
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.data_type() == &DataType::FixedSizeBinary(16)
                            && std::env::var_os("ENCODE_LOOP_BINARY").is_none()
                        {
                            addresses_to_strings(c.as_ref())
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                theirs.write(&RecordBatch::try_new(stored.clone(), cols).unwrap()).unwrap();
            }
            let theirs_len = theirs.into_inner().unwrap().len();
            let theirs_ns = (cpu() - t) * 1e9 / rows;
            println!(
                "round {round} {name:<7} ours {ours_ns:7.1} ns/record {:6.1} B/record | arrow-rs {theirs_ns:7.1} ns/record {:6.1} B/record | {:.2}x",
                ours_len as f64 / rows,
                theirs_len as f64 / rows,
                ours_ns / theirs_ns
            );
        }
    }
}
