//! One Parquet file being written: arrow-rs's file writer, row groups and
//! Arrow schema, with each column chunk encoded by [`crate::encode`] when
//! it covers the column's type and by arrow-rs's column writer otherwise
//! (so any schema a pipeline makes is written, the flow schema's columns
//! the fast way).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::encode::{ColumnChunk, Compressor};

enum Column {
    Own(Box<ColumnChunk>),
    Arrow(Box<ArrowColumnWriter>),
}

/// Writes batches of the input schema into a file of the stored schema
/// (addresses as text where the stored field is `Utf8`).
pub struct FileWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    input: SchemaRef,
    stored: SchemaRef,
    props: Arc<WriterProperties>,
    /// Whether field `i` is an address stored as text.
    converted: Vec<bool>,
    /// The row group being filled: one entry per leaf column, made on its
    /// first rows.
    columns: Vec<Column>,
    compressor: Compressor,
    rows: usize,
    row_group_rows: usize,
    row_groups: usize,
}

impl<W: Write + Send> FileWriter<W> {
    pub fn try_new(out: W, input: SchemaRef, stored: SchemaRef, props: &WriterProperties) -> Result<Self> {
        let mut props = props.clone();
        let parquet = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(&stored)?;
        add_encoded_arrow_schema_to_metadata(&stored, &mut props);
        let props = Arc::new(props);
        let file = SerializedFileWriter::new(out, parquet.root_schema_ptr(), props.clone())?;
        let factory = ArrowRowGroupWriterFactory::new(&file, stored.clone());
        let converted = input
            .fields()
            .iter()
            .zip(stored.fields())
            .map(|(i, s)| i.data_type() != s.data_type() && s.data_type() == &DataType::Utf8)
            .collect();
        let codec = props.compression(&parquet::schema::types::ColumnPath::new(Vec::new()));
        Ok(Self {
            file,
            factory,
            input,
            stored,
            converted,
            columns: Vec::new(),
            compressor: Compressor::new(codec)?,
            rows: 0,
            row_group_rows: props.max_row_group_row_count().unwrap_or(1 << 20).max(1),
            row_groups: 0,
            props,
        })
    }

    /// Appends `batch` (of the input schema), closing row groups as they
    /// fill.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut at = 0;
        while at < batch.num_rows() {
            let take = (batch.num_rows() - at).min(self.row_group_rows - self.rows);
            let part = if take == batch.num_rows() { batch.clone() } else { batch.slice(at, take) };
            self.write_part(&part)?;
            at += take;
            if self.rows >= self.row_group_rows {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    fn write_part(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.columns.is_empty() {
            self.columns = self.new_columns()?;
        }
        let mut leaf = 0;
        for (i, col) in batch.columns().iter().enumerate() {
            let stored = self.stored.field(i).data_type();
            // Timestamps stored in another unit (`time_unit`), for either
            // writer.
            let cast;
            let col = if !self.converted[i] && col.data_type() != stored {
                cast = arrow::compute::cast(col, stored)?;
                &cast
            } else {
                col
            };
            if let Column::Own(c) = &mut self.columns[leaf] {
                c.write(col.as_ref(), &mut self.compressor)?;
                leaf += 1;
                continue;
            }
            let col = if self.converted[i] { addresses_to_strings(col.as_ref()) } else { col.clone() };
            for l in compute_leaves(self.stored.field(i), &col)? {
                match &mut self.columns[leaf] {
                    Column::Arrow(w) => w.write(&l)?,
                    Column::Own(_) => return Err(ParquetError::General("leaf columns out of step".into())),
                }
                leaf += 1;
            }
        }
        self.rows += batch.num_rows();
        Ok(())
    }

    /// The row group's column writers: ours for the leaves we encode,
    /// arrow-rs's for the others.
    fn new_columns(&self) -> Result<Vec<Column>> {
        let arrow = self.factory.create_column_writers(self.row_groups)?;
        let descr = self.file.schema_descr();
        let mut columns = Vec::with_capacity(arrow.len());
        let mut arrow = arrow.into_iter();
        for (input, stored) in self.input.fields().iter().zip(self.stored.fields()) {
            let leaves = leaf_count(stored.data_type());
            let own = (leaves == 1)
                .then(|| {
                    ColumnChunk::new(
                        descr.column(columns.len()),
                        input.data_type(),
                        stored.data_type(),
                        &self.props,
                    )
                })
                .flatten();
            match own {
                Some(c) => {
                    arrow.next();
                    columns.push(Column::Own(Box::new(c)));
                }
                None => {
                    for _ in 0..leaves {
                        let w = arrow
                            .next()
                            .ok_or_else(|| ParquetError::General("too few column writers".into()))?;
                        columns.push(Column::Arrow(Box::new(w)));
                    }
                }
            }
        }
        Ok(columns)
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns = std::mem::take(&mut self.columns);
        let mut rg = self.file.next_row_group()?;
        for c in columns {
            match c {
                Column::Own(c) => {
                    let (bytes, close) = c.close(&mut self.compressor)?;
                    rg.append_column(&bytes, close)?;
                }
                Column::Arrow(w) => w.close()?.append_to_row_group(&mut rg)?,
            }
        }
        rg.close()?;
        self.rows = 0;
        self.row_groups += 1;
        Ok(())
    }

    /// Bytes written to the file so far.
    pub(crate) fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Bytes held for the row group being filled.
    pub(crate) fn in_progress_size(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match c {
                Column::Own(c) => c.memory_size(),
                Column::Arrow(w) => w.get_estimated_total_bytes(),
            })
            .sum()
    }

    pub(crate) fn append_key_value_metadata(&mut self, kv: KeyValue) {
        self.file.append_key_value_metadata(kv);
    }

    /// Writes the last row group and the footer; the output back.
    pub fn close(mut self) -> Result<W> {
        self.flush_row_group()?;
        self.file.into_inner()
    }
}

/// Parquet leaf columns of a field of type `dt`.
fn leaf_count(dt: &DataType) -> usize {
    match dt {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
            leaf_count(f.data_type())
        }
        DataType::ListView(f) | DataType::LargeListView(f) => leaf_count(f.data_type()),
        _ => 1,
    }
}

/// An address column as text: the values and offsets are written
/// directly and checked as UTF-8 once for the whole column (a check and a
/// builder call per address cost more than formatting it). Only for a
/// column the encoder of [`crate::encode`] does not take.
pub fn addresses_to_strings(col: &dyn Array) -> ArrayRef {
    let bin = col.as_fixed_size_binary();
    let mut values: Vec<u8> = Vec::with_capacity(bin.len() * 15);
    let mut offsets: Vec<i32> = Vec::with_capacity(bin.len() + 1);
    offsets.push(0);
    // Runs of one address are common (the exporter of a message's
    // records, an unset next hop): those copy the text written before.
    let mut last: (&[u8], usize) = (&[], 0);
    for i in 0..bin.len() {
        if bin.is_valid(i) {
            let word = bin.value(i);
            let start = values.len();
            if word == last.0 {
                values.extend_from_within(last.1..start);
                last.1 = start;
            } else {
                let addr = spillway_core::addr::Addr::from_slice(word).unwrap_or_default();
                spillway_core::human::write_addr(addr, &mut values);
                last = (word, start);
            }
        }
        offsets.push(values.len() as i32);
    }
    let offsets = arrow::buffer::OffsetBuffer::new(arrow::buffer::ScalarBuffer::from(offsets));
    Arc::new(
        StringArray::try_new(offsets, arrow::buffer::Buffer::from_vec(values), bin.nulls().cloned())
            .expect("addresses are ASCII"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        FixedSizeBinaryArray, TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::schema::types::ColumnPath;
    use spillway_core::rand::SplitMix64;

    /// A column of `n` random values of `dt`: `nulls` in 8 rows null (none
    /// for a non-nullable field), drawn from `distinct` values (0: any;
    /// `u64::MAX`: climbing from a random start by steps below 1,000, as
    /// counters and times do, wrapping at the type's width).
    fn column(dt: &DataType, n: usize, r: &mut SplitMix64, nulls: u64, distinct: u64) -> ArrayRef {
        let mut climb = r.next_u64();
        let mut draw = |r: &mut SplitMix64| {
            let v = r.next_u64();
            match distinct {
                0 => v,
                u64::MAX => {
                    climb = climb.wrapping_add(v % 1000);
                    climb
                }
                _ => (v % distinct).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            }
        };
        let null = |r: &mut SplitMix64| nulls > 0 && r.next_u64() % 8 < nulls;
        match dt {
            DataType::UInt8 => Arc::new(
                (0..n).map(|_| if null(r) { None } else { Some(draw(r) as u8) }).collect::<UInt8Array>(),
            ),
            DataType::UInt16 => Arc::new(
                (0..n).map(|_| if null(r) { None } else { Some(draw(r) as u16) }).collect::<UInt16Array>(),
            ),
            DataType::UInt32 => Arc::new(
                (0..n).map(|_| if null(r) { None } else { Some(draw(r) as u32) }).collect::<UInt32Array>(),
            ),
            DataType::UInt64 => {
                Arc::new((0..n).map(|_| if null(r) { None } else { Some(draw(r)) }).collect::<UInt64Array>())
            }
            DataType::Timestamp(_, tz) => Arc::new(
                (0..n)
                    .map(|_| if null(r) { None } else { Some(draw(r) as i64) })
                    .collect::<TimestampNanosecondArray>()
                    .with_timezone_opt(tz.clone()),
            ),
            DataType::FixedSizeBinary(16) => {
                let rows: Vec<Option<[u8; 16]>> = (0..n)
                    .map(|_| {
                        if null(r) {
                            return None;
                        }
                        let v = draw(r);
                        let mut w = [0u8; 16];
                        if v % 3 == 0 {
                            // IPv6
                            w[..8].copy_from_slice(&v.to_be_bytes());
                            w[8..].copy_from_slice(&v.rotate_left(17).to_be_bytes());
                        } else {
                            w[10] = 0xff;
                            w[11] = 0xff;
                            w[12..].copy_from_slice(&(v as u32).to_be_bytes());
                        }
                        Some(w)
                    })
                    .collect();
                Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(rows.into_iter(), 16).unwrap())
            }
            // Short names mostly; now and then one longer than the 64
            // bytes statistics keep, smallest ("a…") or largest ("é…",
            // two bytes a character), so that both are cut.
            DataType::Utf8 => Arc::new(
                (0..n)
                    .map(|_| {
                        if null(r) {
                            return None;
                        }
                        let v = draw(r);
                        Some(match v % 11 {
                            0 => format!("{}{v}", "a".repeat(70)),
                            1 => format!("{}{}", "é".repeat(40), v % 3),
                            _ => format!("s{}", v % 5),
                        })
                    })
                    .collect::<StringArray>(),
            ),
            other => unreachable!("{other}"),
        }
    }

    /// What a test checks of a column chunk.
    #[derive(Debug, Clone)]
    struct Chunk {
        path: String,
        statistics: Option<String>,
        /// Whether it has DELTA_BINARY_PACKED pages.
        delta: bool,
        /// Whether it has a dictionary page.
        dict: bool,
        /// Whether its values are all null.
        all_null: bool,
        /// Whether it is compressed.
        compressed: bool,
    }

    type ReadBack = (Vec<RecordBatch>, Vec<Chunk>, Vec<usize>);

    fn read(bytes: Bytes) -> ReadBack {
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let reader = SerializedFileReader::new(bytes).unwrap();
        let md = reader.metadata();
        let mut stats = Vec::new();
        let mut groups = Vec::new();
        let mut first_row = 0;
        for rg in md.row_groups() {
            let rows = rg.num_rows() as usize;
            groups.push(rows);
            for (i, c) in rg.columns().iter().enumerate() {
                let delta = c.encodings().any(|e| e == parquet::basic::Encoding::DELTA_BINARY_PACKED);
                let dict = c.dictionary_page_offset().is_some();
                let all_null = all.column(i).slice(first_row, rows).null_count() == rows;
                stats.push(Chunk {
                    path: c.column_path().string(),
                    statistics: c.statistics().map(|s| format!("{s:?}")),
                    delta,
                    dict,
                    all_null,
                    compressed: c.compression() != Compression::UNCOMPRESSED,
                });
            }
            first_row += rows;
        }
        (batches, stats, groups)
    }

    /// A batch of the flow schema, each column what `column_of` makes for
    /// its field.
    fn flow_batch(mut column_of: impl FnMut(&Field) -> ArrayRef) -> RecordBatch {
        let input = spillway_core::schema::flow_schema();
        let columns = input.fields().iter().map(|f| column_of(f)).collect();
        RecordBatch::try_new(input, columns).unwrap()
    }

    /// `batch` (of the flow schema, stored as it is) written by our writer
    /// with `props`: its column chunks, once it has read back the same.
    fn write_back(batch: &RecordBatch, props: &WriterProperties) -> Vec<Chunk> {
        let schema = batch.schema();
        let mut w = FileWriter::try_new(Vec::new(), schema.clone(), schema.clone(), props).unwrap();
        w.write(batch).unwrap();
        let (back, chunks, _) = read(Bytes::from(w.close().unwrap()));
        assert_eq!(&arrow::compute::concat_batches(&schema, &back).unwrap(), batch, "read back");
        chunks
    }

    /// Delta pages read back for deltas of every width, INT32 and INT64:
    /// each miniblock of 32 is packed as wide as its largest delta, odd
    /// widths end in half a word, and the last block is cut short.
    #[test]
    fn delta_pages_round_trip_every_width() {
        let mut r = SplitMix64::new(5);
        let n = 65 * 128 + 77;
        let width = |i: usize| (i / 128) as u32;
        let (mut seq, mut bytes) = (0u32, 0u64);
        let step = |r: &mut SplitMix64, w: u32| if w == 0 { 0 } else { r.next_u64() >> (64 - w) };
        let mut sequence = Vec::new();
        let mut counter = Vec::new();
        for i in 0..n {
            let w = width(i);
            seq = seq.wrapping_add(step(&mut r, w.min(32)) as u32);
            bytes = bytes.wrapping_add(step(&mut r, w.min(64)));
            sequence.push(seq);
            counter.push(bytes);
        }
        let batch = flow_batch(|f| match f.name().as_str() {
            "sequence" => Arc::new(UInt32Array::from(sequence.clone())) as ArrayRef,
            "bytes" => Arc::new(UInt64Array::from(counter.clone())),
            _ => column(f.data_type(), n, &mut r, 0, 1),
        });
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_data_page_row_count_limit(1 << 20)
            .set_column_encoding(ColumnPath::from("sequence"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
            .set_column_encoding(ColumnPath::from("bytes"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
            .build();
        let chunks = write_back(&batch, &props);
        for c in ["sequence", "bytes"] {
            assert!(chunks.iter().any(|k| k.path == c && k.delta), "{c} is delta-packed");
        }
    }

    /// A chunk keeps its codec only where it pays: random counters,
    /// delta-packed, are stored uncompressed; addresses as 16 bytes, whose
    /// IPv4 prefix zstd squeezes, stay compressed; the file reads back.
    /// A chunk with a dictionary that is still growing keeps the codec,
    /// though indices of random values do not compress: when it outgrows
    /// its limit the pages after it are PLAIN, and compress. One that is
    /// settled on the first page (256 values, each some 80 times) is
    /// weighed like any other, and its random indices are not compressed.
    #[test]
    fn codec_is_kept_only_where_it_pays() {
        let mut r = SplitMix64::new(3);
        let n = 50_000;
        let batch = flow_batch(|f| match f.name().as_str() {
            "bytes" | "src_addr" => column(f.data_type(), n, &mut r, 0, 0),
            "dst_addr" => column(f.data_type(), n, &mut r, 0, 5000),
            "in_if" => column(f.data_type(), n, &mut r, 0, 256),
            _ => column(f.data_type(), n, &mut r, 0, 1),
        });
        for codec in [Compression::ZSTD(ZstdLevel::try_new(1).unwrap()), Compression::LZ4_RAW] {
            let props = WriterProperties::builder()
                .set_compression(codec)
                .set_dictionary_enabled(false)
                .set_column_encoding(ColumnPath::from("bytes"), parquet::basic::Encoding::DELTA_BINARY_PACKED)
                .build();
            let chunks = write_back(&batch, &props);
            let compressed = |name: &str| chunks.iter().find(|c| c.path == name).unwrap().compressed;
            assert!(!compressed("bytes"), "{codec}: random counters stored as they are");
            assert!(compressed("src_addr"), "{codec}: addresses compressed");
        }
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("dst_addr"), true)
            .set_column_dictionary_enabled(ColumnPath::from("in_if"), true)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
            .set_dictionary_page_size_limit(40_000)
            .build();
        let chunks = write_back(&batch, &props);
        let dst = chunks.iter().find(|c| c.path == "dst_addr").unwrap();
        assert!(dst.dict && dst.compressed, "{dst:?}");
        let in_if = chunks.iter().find(|c| c.path == "in_if").unwrap();
        assert!(in_if.dict && !in_if.compressed, "{in_if:?}");
    }

    /// A dictionary is weighed against what the page would be without it:
    /// a counter that climbs by 0 or 1 is a dictionary of half its rows
    /// (fewer bytes than PLAIN, so parquet-mr would keep it) but a bit per
    /// value as delta, so with delta integers it falls back; with PLAIN
    /// ones it stays. Five ports keep their dictionary either way, and so
    /// does a constant (one run of indices, smaller than delta's blocks).
    #[test]
    fn dictionary_is_weighed_against_the_encoding_it_replaces() {
        let mut r = SplitMix64::new(11);
        let n = 20_000;
        let batch = flow_batch(|f| match f.name().as_str() {
            "sequence" => Arc::new((0..n as u32).map(|i| Some(1_000_000 + i / 2)).collect::<UInt32Array>()),
            "dst_port" => column(f.data_type(), n, &mut r, 0, 5),
            "tos" => column(f.data_type(), n, &mut r, 0, 1),
            _ => column(f.data_type(), n, &mut r, 0, 0),
        });
        for delta in [true, false] {
            let mut props = WriterProperties::builder()
                .set_dictionary_enabled(false)
                .set_column_dictionary_enabled(ColumnPath::from("sequence"), true)
                .set_column_dictionary_enabled(ColumnPath::from("dst_port"), true)
                .set_column_dictionary_enabled(ColumnPath::from("tos"), true);
            if delta {
                for c in ["sequence", "dst_port", "tos"] {
                    props = props.set_column_encoding(
                        ColumnPath::from(c),
                        parquet::basic::Encoding::DELTA_BINARY_PACKED,
                    );
                }
            }
            let props = props.build();
            let chunks = write_back(&batch, &props);
            let chunk = |name: &str| {
                let c = chunks.iter().find(|c| c.path == name).unwrap();
                (c.delta, c.dict)
            };
            assert_eq!(chunk("sequence"), (delta, !delta), "sequence, delta {delta}");
            assert_eq!(chunk("dst_port"), (false, true), "dst_port, delta {delta}");
            assert_eq!(chunk("tos"), (false, true), "tos, delta {delta}");
        }
    }

    /// The same batches written by arrow-rs's writer and by ours read back
    /// the same, with the same statistics and row groups, for every codec
    /// and address form, with nulls, runs, high and low cardinality
    /// (dictionaries that outgrow their limit), pages cut often, batches
    /// sliced, and integers PLAIN or DELTA_BINARY_PACKED (every other
    /// round; the chunks that have delta pages must be the same ones).
    /// Values wrap, run, and climb by small steps. Where the dictionary
    /// does not pay on a chunk's first page ours leaves it (parquet-mr's
    /// rule) and arrow-rs keeps it: those chunks must have no dictionary
    /// page, and delta pages exactly when integers are delta; both outcomes
    /// must occur. Ours stores chunks uncompressed where the codec does not
    /// pay, and that too must happen, and not always.
    #[test]
    fn own_encoder_agrees_with_arrow_rs() {
        let input = spillway_core::schema::flow_schema();
        let mut r = SplitMix64::new(7);
        let (mut fell_back, mut kept) = (0, 0);
        let (mut compressed, mut uncompressed) = (0, 0);
        for round in 0..24u64 {
            let codec = match round % 4 {
                0 => Compression::ZSTD(ZstdLevel::try_new(1).unwrap()),
                1 => Compression::LZ4_RAW,
                2 => Compression::SNAPPY,
                _ => Compression::UNCOMPRESSED,
            };
            let text = round % 3 != 2;
            let delta = round % 2 == 1;
            let stored = Arc::new(Schema::new_with_metadata(
                input
                    .fields()
                    .iter()
                    .map(|f| {
                        if text && f.data_type() == &DataType::FixedSizeBinary(16) {
                            Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                        } else {
                            f.clone()
                        }
                    })
                    .collect::<Vec<_>>(),
                input.metadata().clone(),
            ));
            let mut props = WriterProperties::builder()
                .set_compression(codec)
                .set_max_row_group_row_count(Some(3000 + (round as usize % 5) * 1777))
                .set_data_page_row_count_limit(500 + (round as usize % 3) * 1500)
                .set_dictionary_page_size_limit(if round % 2 == 0 { 2048 } else { 1 << 20 })
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::Chunk);
            for (i, f) in input.fields().iter().enumerate() {
                let path = ColumnPath::from(f.name().as_str());
                if (i as u64 + round).is_multiple_of(3) {
                    props = props.set_column_dictionary_enabled(path.clone(), true);
                }
                if delta
                    && f.data_type() != &DataType::FixedSizeBinary(16)
                    && f.data_type() != &DataType::Utf8
                {
                    props = props
                        .set_column_encoding(path.clone(), parquet::basic::Encoding::DELTA_BINARY_PACKED);
                }
                if text && f.data_type() == &DataType::FixedSizeBinary(16) {
                    props = props.set_column_statistics_enabled(path, EnabledStatistics::None);
                }
            }
            let props = props.build();
            let mut ours = FileWriter::try_new(Vec::new(), input.clone(), stored.clone(), &props).unwrap();
            let mut theirs = ArrowWriter::try_new(Vec::new(), stored.clone(), Some(props.clone())).unwrap();
            for b in 0..5 {
                let n = [1usize, 700, 2500, 4096, 9000][(round as usize + b) % 5];
                let columns: Vec<ArrayRef> = input
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let nulls =
                            if f.is_nullable() { [0, 1, 4, 8][(i + b + round as usize) % 4] } else { 0 };
                        let distinct = [0, 1, 3, 200, 5000, u64::MAX][(i * 7 + b + round as usize) % 6];
                        column(f.data_type(), n + 3, &mut r, nulls, distinct).slice(3, n)
                    })
                    .collect();
                let batch = RecordBatch::try_new(input.clone(), columns).unwrap();
                ours.write(&batch).unwrap();
                let converted: Vec<ArrayRef> = batch
                    .columns()
                    .iter()
                    .zip(stored.fields())
                    .map(|(c, f)| {
                        if f.data_type() == &DataType::Utf8 && c.data_type() != &DataType::Utf8 {
                            addresses_to_strings(c.as_ref())
                        } else {
                            c.clone()
                        }
                    })
                    .collect();
                theirs.write(&RecordBatch::try_new(stored.clone(), converted).unwrap()).unwrap();
            }
            let (ours, theirs) =
                (read(Bytes::from(ours.close().unwrap())), read(Bytes::from(theirs.into_inner().unwrap())));
            assert_eq!(ours.2, theirs.2, "round {round}: row groups");
            assert_eq!(ours.1.len(), theirs.1.len(), "round {round}: column chunks");
            for (a, b) in ours.1.iter().zip(&theirs.1) {
                assert_eq!((&a.path, &a.statistics), (&b.path, &b.statistics), "round {round}: statistics");
                let ty = input.field_with_name(&a.path).unwrap().data_type();
                // (Strings without a dictionary are arrow-rs's on both
                // sides.)
                let own =
                    ty != &DataType::Utf8 || props.dictionary_enabled(&ColumnPath::from(a.path.as_str()));
                if a.dict == b.dict {
                    assert_eq!(a.delta, b.delta, "round {round}: delta pages of {}", a.path);
                    kept += usize::from(a.dict && own);
                } else if a.all_null {
                    // Only nulls: ours needs no dictionary page for them.
                    assert!(!a.dict, "round {round}: {} has a dictionary of nothing", a.path);
                } else {
                    assert!(b.dict && !a.dict, "round {round}: {} has a dictionary arrow-rs lacks", a.path);
                    let integer = !matches!(ty, DataType::FixedSizeBinary(16) | DataType::Utf8);
                    assert_eq!(
                        a.delta,
                        delta && integer,
                        "round {round}: delta pages of {} after falling back",
                        a.path
                    );
                    fell_back += 1;
                }
                // Ours stores a chunk uncompressed where the codec does not
                // pay; arrow-rs always compresses.
                assert_eq!(b.compressed, codec != Compression::UNCOMPRESSED, "round {round}: {}", b.path);
                if !own || !b.compressed {
                    assert_eq!(a.compressed, b.compressed, "round {round}: codec of {}", a.path);
                } else if a.compressed {
                    compressed += 1;
                } else {
                    uncompressed += 1;
                }
            }
            assert_eq!(ours.1.iter().any(|c| c.delta), delta, "round {round}: delta pages");
            let (a, b) = (
                arrow::compute::concat_batches(&stored, &ours.0).unwrap(),
                arrow::compute::concat_batches(&stored, &theirs.0).unwrap(),
            );
            assert_eq!(a.num_rows(), b.num_rows(), "round {round}");
            for (i, f) in stored.fields().iter().enumerate() {
                assert_eq!(a.column(i).as_ref(), b.column(i).as_ref(), "round {round}: column {}", f.name());
            }
        }
        assert!(fell_back > 0 && kept > 0, "dictionaries left {fell_back} times, kept {kept} times");
        assert!(compressed > 0 && uncompressed > 0, "chunks compressed {compressed}, stored {uncompressed}");
    }
}
