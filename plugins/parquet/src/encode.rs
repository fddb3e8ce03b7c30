//! Column chunks of the flow schema's own column types, encoded here
//! rather than by arrow-rs: unsigned integers and timestamps, addresses
//! (as text or as 16 bytes), and strings where a dictionary may be used.
//!
//! arrow-rs's writer is general (nested data, any type), and that costs:
//! every value of every column goes through definition levels, a gather of
//! indices, a hashed dictionary and statistics one mini-batch at a time,
//! and addresses first become a `StringArray` of their own. Storing flows
//! spent ~60 % of its CPU there, compression aside (docs/performance.md).
//! Here a column's validity bitmap *is* its definition levels (bit-packed,
//! LSB first, in both formats), values are copied or rendered straight
//! into the page, dictionaries are keyed by the value itself with a check
//! of the previous one first (runs are the norm: a message's records share
//! the exporter), and min/max is one loop. The pages are ordinary Parquet
//! (data page v1, PLAIN or RLE_DICTIONARY, RLE/bit-packed levels) and go
//! through arrow-rs's page and file writers, so the file's framing,
//! footer and Arrow schema are arrow-rs's own. The unit test
//! `file::tests::own_encoder_agrees_with_arrow_rs` writes the same batches
//! both ways and requires the same data and statistics back.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::{Array, AsArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use spillway_core::addr::Addr;

/// What a column holds, as this encoder writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// UInt8/16/32 as INT32 (unsigned order).
    U32,
    /// UInt64 as INT64 (unsigned order).
    U64,
    /// Nanosecond timestamps as INT64 (signed order).
    I64,
    /// 16-byte addresses as UTF-8 text (BYTE_ARRAY).
    Text,
    /// 16-byte addresses as FIXED_LEN_BYTE_ARRAY(16).
    Fixed,
    /// Strings of a dictionary column as BYTE_ARRAY (UTF-8), such as
    /// `sampling_source`: a message's records share one, so a dictionary
    /// with runs looked up once costs next to nothing (arrow-rs's interns
    /// every value). A value's index into the dictionary's texts is its
    /// `u128`.
    Str,
}

impl Kind {
    /// The kind for input type `input` written as a column of `descr`, or
    /// `None` when arrow-rs should write it.
    fn of(
        input: &DataType,
        stored: &DataType,
        descr: &ColumnDescPtr,
        stats: bool,
        dict: bool,
    ) -> Option<Kind> {
        let physical = descr.physical_type();
        let kind = match (input, stored, physical) {
            (DataType::UInt8 | DataType::UInt16 | DataType::UInt32, _, PhysicalType::INT32) => Kind::U32,
            (DataType::UInt64, _, PhysicalType::INT64) => Kind::U64,
            (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Timestamp(..), PhysicalType::INT64) => {
                Kind::I64
            }
            (DataType::FixedSizeBinary(16), DataType::Utf8, PhysicalType::BYTE_ARRAY) if !stats => Kind::Text,
            (DataType::Utf8, DataType::Utf8, PhysicalType::BYTE_ARRAY) if dict => Kind::Str,
            (
                DataType::FixedSizeBinary(16),
                DataType::FixedSizeBinary(16),
                PhysicalType::FIXED_LEN_BYTE_ARRAY,
            ) => Kind::Fixed,
            _ => return None,
        };
        (descr.max_rep_level() == 0 && descr.max_def_level() <= 1).then_some(kind)
    }

    /// Bytes of one PLAIN value (address text: at most; strings: their
    /// length prefix, the text counted apart).
    fn width(self) -> usize {
        match self {
            Kind::U32 | Kind::Str => 4,
            Kind::U64 | Kind::I64 => 8,
            Kind::Text => 4 + 39,
            Kind::Fixed => 16,
        }
    }
}

/// A multiplicative hash for the dictionary's integer keys (SipHash, the
/// standard one, costs more than the rest of a value's encoding).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64((v as u64) ^ ((v >> 64) as u64).rotate_left(29));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(26);
    }
}

/// Values below this are found in a table rather than hashed (ports,
/// protocols, masks, VLANs, most interface indexes).
const SMALL: usize = 1 << 16;

/// A column chunk's dictionary: its values in order, and where each is.
struct Dict {
    /// Index + 1 of each value below [`SMALL`] (0: not in the dictionary);
    /// grown to the values seen, in powers of two from 256 (protocols,
    /// masks and flags need 1 KiB, ports all 256 KiB).
    small: Vec<u32>,
    index: HashMap<u128, u32, BuildHasherDefault<KeyHasher>>,
    values: Vec<u128>,
    /// Bytes the dictionary page will hold (PLAIN).
    bytes: usize,
    /// Where a new address's text is measured.
    scratch: Vec<u8>,
    /// A string column's texts, in dictionary order, and where each is.
    texts: Vec<Box<[u8]>>,
    text_index: HashMap<Box<[u8]>, u32>,
}

impl Dict {
    fn new() -> Self {
        Self {
            small: Vec::new(),
            index: HashMap::default(),
            values: Vec::new(),
            bytes: 0,
            scratch: Vec::new(),
            texts: Vec::new(),
            text_index: HashMap::new(),
        }
    }

    /// The index of string `s`, added when new.
    fn key_text(&mut self, s: &[u8]) -> u32 {
        if let Some(&i) = self.text_index.get(s) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(u128::from(i));
        self.texts.push(s.into());
        self.text_index.insert(s.into(), i);
        self.bytes += 4 + s.len();
        i
    }

    /// Value `v` of this dictionary's column of `kind`, PLAIN.
    fn put(&self, out: &mut Vec<u8>, kind: Kind, v: u128) {
        match kind {
            Kind::Str => put_bytes(out, &self.texts[v as usize]),
            _ => put_plain(out, kind, v),
        }
    }

    /// The index of `v`, added when new. (Runs of one value are looked up
    /// once by the caller, [`dict_indices`].) A small value already in the
    /// dictionary, the common case, is one load.
    #[inline(always)]
    fn key(&mut self, v: u128, kind: Kind) -> u32 {
        if v < SMALL as u128
            && let Some(&slot) = self.small.get(v as usize)
            && slot != 0
        {
            return slot - 1;
        }
        self.add(v, kind)
    }

    /// [`key`](Self::key) of a value that is new or not small.
    #[inline(never)]
    fn add(&mut self, v: u128, kind: Kind) -> u32 {
        let next = self.values.len() as u32;
        let i = if v < SMALL as u128 {
            let v = v as usize;
            if v >= self.small.len() {
                self.small.resize((v + 1).next_power_of_two().max(256), 0);
            }
            let slot = &mut self.small[v];
            if *slot == 0 {
                *slot = next + 1;
            }
            *slot - 1
        } else {
            *self.index.entry(v).or_insert(next)
        };
        if i == next {
            self.values.push(v);
            self.bytes += match kind {
                Kind::Text => {
                    self.scratch.clear();
                    put_text(&mut self.scratch, v);
                    self.scratch.len()
                }
                k => k.width(),
            };
        }
        i
    }

    /// Bytes of `indices` into this dictionary as [`pack_indices`] writes
    /// them (one run when they are all the same), with its page.
    fn encoded_size(&self, indices: &[u32]) -> usize {
        let width = bit_width(self.values.len()) as usize;
        let packed = match indices.first() {
            Some(&first) if indices.iter().all(|&i| i == first) => 10 + width.div_ceil(8),
            _ => (indices.len() * width).div_ceil(8),
        };
        self.bytes + packed
    }
}

/// One column chunk being encoded.
pub(crate) struct ColumnChunk {
    descr: ColumnDescPtr,
    kind: Kind,
    optional: bool,
    stats: bool,
    /// The chunk's codec: the configured one, or none where it does not
    /// pay (see `codec_pays`).
    codec: Compression,
    page_rows_limit: usize,
    page_bytes_limit: usize,
    dict_bytes_limit: usize,
    /// The chunk's dictionary, when dictionary encoding is on.
    dict: Option<Dict>,
    /// Whether pages still use it: a dictionary past its limit stops
    /// growing, and the pages after it are PLAIN.
    dict_active: bool,
    /// Whether any page used the dictionary.
    dict_used: bool,
    /// Whether the dictionary has been weighed against the page without it
    /// (on the first page with values: `fall_back_unless_dictionary_pays`).
    dict_weighed: bool,
    /// Whether any page is PLAIN.
    plain_used: bool,
    /// Whether integer pages that are not dictionary-encoded are
    /// DELTA_BINARY_PACKED (else PLAIN), and whether any page was.
    delta: bool,
    delta_used: bool,
    /// The page being filled: validity bits (LSB first), rows, values.
    valid: Vec<u8>,
    page_rows: usize,
    page_nulls: usize,
    values: Vec<u8>,
    indices: Vec<u32>,
    /// The last address rendered and where its PLAIN bytes start.
    last_text: Option<(u128, usize)>,
    /// Chunk totals and statistics (order keys: see `order`; strings:
    /// their smallest and largest, and the length statistics are cut to).
    text_range: Option<(Vec<u8>, Vec<u8>)>,
    truncate: Option<usize>,
    rows: u64,
    nulls: u64,
    min: u128,
    max: u128,
    pages: Vec<CompressedPage>,
    page_bytes: usize,
}

impl ColumnChunk {
    /// An encoder for the column `descr` fed from input type `input` and
    /// stored as `stored`, or `None` when arrow-rs should write it.
    pub(crate) fn new(
        descr: ColumnDescPtr,
        input: &DataType,
        stored: &DataType,
        props: &WriterProperties,
    ) -> Option<Self> {
        let path = descr.path().clone();
        let stats = props.statistics_enabled(&path) != EnabledStatistics::None;
        let kind = Kind::of(input, stored, &descr, stats, props.dictionary_enabled(&path))?;
        let integer = matches!(kind, Kind::U32 | Kind::U64 | Kind::I64);
        let delta = match props.encoding(&path) {
            None | Some(Encoding::PLAIN) => false,
            Some(Encoding::DELTA_BINARY_PACKED) if integer => true,
            // Any other encoding is arrow-rs's to write.
            Some(_) => return None,
        };
        Some(Self {
            optional: descr.max_def_level() == 1,
            stats,
            codec: props.compression(&path),
            page_rows_limit: props.data_page_row_count_limit().clamp(1, 1 << 20),
            page_bytes_limit: props.data_page_size_limit().max(1024),
            dict_bytes_limit: props.dictionary_page_size_limit().max(1024),
            dict: props.dictionary_enabled(&path).then(Dict::new),
            dict_active: props.dictionary_enabled(&path),
            dict_used: false,
            dict_weighed: false,
            plain_used: false,
            delta,
            delta_used: false,
            valid: Vec::new(),
            page_rows: 0,
            page_nulls: 0,
            values: Vec::new(),
            indices: Vec::new(),
            last_text: None,
            text_range: None,
            truncate: props.statistics_truncate_length(),
            rows: 0,
            nulls: 0,
            min: u128::MAX,
            max: 0,
            pages: Vec::new(),
            page_bytes: 0,
            descr,
            kind,
        })
    }

    /// Bytes held: finished pages and the page being filled.
    pub(crate) fn memory_size(&self) -> usize {
        self.page_bytes + self.values.len() + self.indices.len() * 4 + self.valid.len()
    }

    /// Appends `col` (the input column, all its rows; timestamps already
    /// in the stored unit).
    pub(crate) fn write(&mut self, col: &dyn Array, compressor: &mut Compressor) -> Result<()> {
        let n = col.len();
        let mut at = 0;
        while at < n {
            let take = (n - at).min(self.page_rows_limit - self.page_rows);
            self.append(col, at, take);
            at += take;
            if self.page_rows >= self.page_rows_limit || self.values.len() >= self.page_bytes_limit {
                self.flush_page(compressor)?;
            }
        }
        Ok(())
    }

    /// The order key of value `v`: unsigned values as they are, signed
    /// ones with the sign bit flipped, so that one `u128` compare orders
    /// every kind.
    #[inline]
    fn order(kind: Kind, v: u128) -> u128 {
        if kind == Kind::I64 { v ^ (1 << 63) } else { v }
    }

    /// Rows `at..at + len` of `col` into the page.
    fn append(&mut self, col: &dyn Array, at: usize, len: usize) {
        let nulls = col.nulls().filter(|n| n.null_count() > 0).map(|n| n.slice(at, len));
        let missing = nulls.as_ref().map_or(0, |n| n.null_count());
        if self.optional {
            let start = self.page_rows;
            self.valid.resize((start + len).div_ceil(8), 0);
            match &nulls {
                None => set_bits(&mut self.valid, start, len),
                Some(n) => {
                    arrow::util::bit_mask::set_bits(
                        &mut self.valid,
                        n.buffer().as_slice(),
                        start,
                        n.offset(),
                        len,
                    );
                }
            }
        }
        self.page_rows += len;
        self.page_nulls += missing;
        self.rows += len as u64;
        self.nulls += missing as u64;
        if missing == len {
            return;
        }
        let nulls = nulls.as_ref();
        let kind = self.kind;
        let stats = self.stats;
        let (mut lo, mut hi) = (self.min, self.max);
        let dict = if self.dict_active { self.dict.as_mut() } else { None };
        match (dict, kind) {
            // Statistics of dictionary pages come from the dictionary (every
            // value a page holds is in it) when the chunk closes.
            (Some(dict), _) => dict_indices(col, at, len, nulls, dict, kind, &mut self.indices),
            (None, Kind::Text) => {
                let values = &mut self.values;
                let last = &mut self.last_text;
                each_word(col, at, len, nulls, |v| {
                    let start = values.len();
                    match *last {
                        Some((l, from)) if l == v => values.extend_from_within(from..start),
                        _ => put_text(values, v),
                    }
                    *last = Some((v, start));
                });
            }
            (None, Kind::Str) => {
                let strings = col.as_string::<i32>();
                let (values, range) = (&mut self.values, &mut self.text_range);
                let mut put = |i: usize| {
                    let s = strings.value(at + i).as_bytes();
                    put_bytes(values, s);
                    if stats {
                        widen_text(range, s);
                    }
                };
                match nulls {
                    None => (0..len).for_each(&mut put),
                    Some(n) => n.valid_indices().for_each(put),
                }
            }
            (None, _) => {
                let (l, h) = plain(col, at, len, nulls, &mut self.values);
                if stats {
                    lo = lo.min(l);
                    hi = hi.max(h);
                }
            }
        }
        self.min = lo;
        self.max = hi;
    }

    /// Encodes, compresses and keeps the page being filled.
    fn flush_page(&mut self, compressor: &mut Compressor) -> Result<()> {
        if self.page_rows == 0 {
            return Ok(());
        }
        if self.dict_active && !self.dict_weighed && !self.indices.is_empty() {
            self.dict_weighed = true;
            self.fall_back_unless_dictionary_pays();
        }
        let buf = compressor.start();
        if self.optional {
            buf.extend_from_slice(&[0; 4]);
            if self.page_nulls == 0 || self.page_nulls == self.page_rows {
                rle_run(buf, self.page_rows, u32::from(self.page_nulls == 0), 1);
            } else {
                uleb128(buf, ((self.page_rows.div_ceil(8) as u64) << 1) | 1);
                buf.extend_from_slice(&self.valid);
            }
            let levels = (buf.len() - 4) as u32;
            buf[..4].copy_from_slice(&levels.to_le_bytes());
        }
        let encoding = if self.dict_active && !self.dict_weighed {
            // Only nulls so far, nothing to weigh the dictionary on: the
            // page has no values, and needs no dictionary to hold them.
            self.plain_used = true;
            Encoding::PLAIN
        } else if self.dict_active
            && let Some(dict) = self.dict.as_ref()
        {
            let width = bit_width(dict.values.len());
            buf.push(width as u8);
            pack_indices(buf, &self.indices, width);
            self.dict_used = true;
            Encoding::RLE_DICTIONARY
        } else if self.delta {
            delta_binary_packed(buf, &self.values, self.kind.width());
            self.delta_used = true;
            Encoding::DELTA_BINARY_PACKED
        } else {
            buf.extend_from_slice(&self.values);
            self.plain_used = true;
            Encoding::PLAIN
        };
        let header = || Page::DataPage {
            buf: Bytes::new(),
            num_values: self.page_rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let mut page = compressor.finish(header(), self.codec)?;
        if self.pages.is_empty() && self.codec != Compression::UNCOMPRESSED && self.dictionary_settled() {
            let values = self.page_nulls < self.page_rows;
            if values && !Self::codec_pays(&page) {
                // The page is still in the compressor, as it was.
                self.codec = Compression::UNCOMPRESSED;
                page = compressor.finish(header(), self.codec)?;
            }
        }
        self.page_bytes += page.compressed_size();
        self.pages.push(page);
        self.valid.clear();
        self.values.clear();
        self.indices.clear();
        self.last_text = None;
        self.page_rows = 0;
        self.page_nulls = 0;
        // A dictionary past its limit stops here: later pages are PLAIN.
        if self.dict.as_ref().is_some_and(|d| d.bytes >= self.dict_bytes_limit) {
            self.dict_active = false;
        }
        Ok(())
    }

    /// Whether the chunk's codec pays, judged by its first page (`page`,
    /// compressed): whether it saves at least a sixteenth of the page's
    /// bytes. Where it does not (delta-packed random values: ports,
    /// counters), the chunk is stored uncompressed, and neither writer nor
    /// reader spends time on a codec that saves nothing. Every page of a
    /// chunk has the chunk's codec, so the first page decides, and only
    /// where the encoding will not change (see `dictionary_settled`). A
    /// page with no values shows nothing and keeps the codec.
    fn codec_pays(page: &CompressedPage) -> bool {
        let (raw, packed) = (page.uncompressed_size(), page.compressed_size());
        raw.saturating_sub(packed) * 16 >= raw
    }

    /// Whether the pages after this one will be encoded as it is: there is
    /// no dictionary, or its values repeat at least 16 times on the page
    /// and it has used at most a sixteenth of its limit (interfaces, AS
    /// numbers, a customer's addresses). A dictionary that outgrows its
    /// limit turns the pages after it PLAIN, which compress well even where
    /// the indices before did not, so the codec stays for any other.
    fn dictionary_settled(&self) -> bool {
        match &self.dict {
            Some(d) if self.dict_active => {
                d.values.len() * 16 <= self.page_rows - self.page_nulls
                    && d.bytes * 16 <= self.dict_bytes_limit
            }
            _ => true,
        }
    }

    /// Leaves dictionary encoding for the rest of the chunk when, on its
    /// first page with values, the indices and the dictionary page come to
    /// no fewer bytes than the page's values encoded without it (PLAIN, or
    /// delta): parquet-mr's test, which weighs against PLAIN only. Those
    /// values then go into the page, and no dictionary page is written.
    /// Hashing every value of a column that a dictionary cannot shrink
    /// (random addresses, counters) costs more than the rest of its
    /// encoding; this bounds it to one page per chunk.
    fn fall_back_unless_dictionary_pays(&mut self) {
        let Some(dict) = self.dict.as_ref() else {
            return;
        };
        debug_assert!(self.values.is_empty());
        for &i in &self.indices {
            dict.put(&mut self.values, self.kind, dict.values[i as usize]);
        }
        let without = if self.delta {
            let mut packed = Vec::new();
            delta_binary_packed(&mut packed, &self.values, self.kind.width());
            packed.len()
        } else {
            self.values.len()
        };
        if dict.encoded_size(&self.indices) < without {
            self.values.clear();
            return;
        }
        // Every value of the page is in the dictionary, and only they are.
        if let Some(dict) = self.dict.take()
            && self.stats
        {
            self.widen_to(&dict);
        }
        self.dict_active = false;
        self.indices.clear();
    }

    /// Widens the chunk's statistics to hold every value of `dict`.
    fn widen_to(&mut self, dict: &Dict) {
        for &v in &dict.values {
            let o = Self::order(self.kind, v);
            self.min = self.min.min(o);
            self.max = self.max.max(o);
        }
        for t in &dict.texts {
            widen_text(&mut self.text_range, t);
        }
    }

    /// Finishes the chunk: its bytes (dictionary page first) and what the
    /// row group needs to know of it, offsets relative to those bytes.
    pub(crate) fn close(mut self, compressor: &mut Compressor) -> Result<(Bytes, ColumnCloseResult)> {
        self.flush_page(compressor)?;
        let mut sink = TrackedWrite::new(Vec::with_capacity(self.page_bytes + 4096));
        let (mut compressed, mut uncompressed) = (0u64, 0u64);
        let mut dict_offset = None;
        let mut data_offset = None;
        {
            let mut pages = SerializedPageWriter::new(&mut sink);
            if self.dict_used {
                let dict = self.dict.as_ref().ok_or_else(|| {
                    ParquetError::General("a dictionary-encoded column chunk lost its dictionary".into())
                })?;
                let buf = compressor.start();
                for &v in &dict.values {
                    dict.put(buf, self.kind, v);
                }
                let page = Page::DictionaryPage {
                    buf: Bytes::new(),
                    num_values: dict.values.len() as u32,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                let page = compressor.finish(page, self.codec)?;
                let spec = pages.write_page(page)?;
                dict_offset = Some(spec.offset as i64);
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
            }
            for page in std::mem::take(&mut self.pages) {
                let spec = pages.write_page(page)?;
                data_offset.get_or_insert(spec.offset as i64);
                compressed += spec.compressed_size as u64;
                uncompressed += spec.uncompressed_size as u64;
            }
            pages.close()?;
        }
        let bytes = Bytes::from(sink.into_inner()?);
        let mut encodings = vec![Encoding::RLE];
        if self.plain_used || self.dict_used {
            encodings.push(Encoding::PLAIN);
        }
        if self.dict_used {
            encodings.push(Encoding::RLE_DICTIONARY);
        }
        if self.delta_used {
            encodings.push(Encoding::DELTA_BINARY_PACKED);
        }
        let mut meta = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.codec)
            .set_encodings(encodings)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_offset.unwrap_or(0))
            .set_dictionary_page_offset(dict_offset);
        if self.stats {
            meta = meta.set_statistics(self.statistics());
        }
        let close = ColumnCloseResult {
            bytes_written: compressed,
            rows_written: self.rows,
            metadata: meta.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((bytes, close))
    }

    fn statistics(&mut self) -> Statistics {
        // (The chunk's last use of its dictionary.)
        if self.dict_used
            && let Some(d) = self.dict.take()
        {
            self.widen_to(&d);
        }
        let some = self.nulls < self.rows;
        // The order key flips back to the value.
        let (min, max) = (Self::order(self.kind, self.min), Self::order(self.kind, self.max));
        let nulls = Some(self.nulls);
        let signed = self.descr.sort_order().is_signed();
        let flba = |v: u128| FixedLenByteArray::from(ByteArray::from(v.to_be_bytes().to_vec()));
        match self.kind {
            Kind::U32 => {
                value_statistics(some.then_some((min as u32 as i32, max as u32 as i32)), nulls, signed)
            }
            Kind::U64 | Kind::I64 => {
                value_statistics(some.then_some((min as u64 as i64, max as u64 as i64)), nulls, signed)
            }
            Kind::Fixed | Kind::Text => value_statistics(some.then(|| (flba(min), flba(max))), nulls, signed),
            Kind::Str => {
                let Some((min, max)) = &self.text_range else {
                    return value_statistics::<ByteArray>(None, nulls, signed);
                };
                // Cut as arrow-rs cuts them: the smallest to a prefix, the
                // largest to a prefix with its last character raised.
                let (min, min_cut) = truncate_min(min, self.truncate);
                let (max, max_cut) = truncate_max(max, self.truncate);
                ValueStatistics::new(
                    Some(ByteArray::from(min)),
                    Some(ByteArray::from(max)),
                    None,
                    nulls,
                    false,
                )
                .with_backwards_compatible_min_max(signed)
                .with_min_is_exact(!min_cut)
                .with_max_is_exact(!max_cut)
                .into()
            }
        }
    }
}

/// Widens `range` (smallest and largest string so far) to hold `s`.
fn widen_text(range: &mut Option<(Vec<u8>, Vec<u8>)>, s: &[u8]) {
    match range {
        None => *range = Some((s.to_vec(), s.to_vec())),
        Some((lo, hi)) => {
            if s < lo.as_slice() {
                *lo = s.to_vec();
            }
            if s > hi.as_slice() {
                *hi = s.to_vec();
            }
        }
    }
}

/// The smallest string's statistic: cut to at most `limit` bytes at a
/// character boundary; whether it was cut.
fn truncate_min(s: &[u8], limit: Option<usize>) -> (Vec<u8>, bool) {
    let cut = limit.filter(|&l| s.len() > l).and_then(|l| {
        let text = std::str::from_utf8(s).ok()?;
        let at = (1..=l).rfind(|&i| text.is_char_boundary(i))?;
        Some(s[..at].to_vec())
    });
    match cut {
        Some(c) => (c, true),
        None => (s.to_vec(), false),
    }
}

/// The largest string's statistic: cut to at most `limit` bytes at a
/// character boundary, its last character that can be raised without
/// growing raised by one (and what followed it dropped), so that it is
/// still above every value; whether it was cut.
fn truncate_max(s: &[u8], limit: Option<usize>) -> (Vec<u8>, bool) {
    let cut = limit.filter(|&l| s.len() > l).and_then(|l| {
        let text = std::str::from_utf8(s).ok()?;
        let at = (l.saturating_sub(3)..=l).rfind(|&i| text.is_char_boundary(i))?;
        let text = text.get(..at)?;
        text.char_indices().rev().find_map(|(i, c)| {
            let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
            let mut raised = text.as_bytes()[..i + c.len_utf8()].to_vec();
            next.encode_utf8(&mut raised[i..]);
            Some(raised)
        })
    });
    match cut {
        Some(c) => (c, true),
        None => (s.to_vec(), false),
    }
}

/// Chunk statistics of a physical type: min and max (none when every value
/// is null), the null count, and whether readers that predate logical
/// types may use them (`signed`: only when the sort order is signed).
fn value_statistics<T>(min_max: Option<(T, T)>, nulls: Option<u64>, signed: bool) -> Statistics
where
    Statistics: From<ValueStatistics<T>>,
{
    let (min, max) = min_max.unzip();
    ValueStatistics::new(min, max, None, nulls, false).with_backwards_compatible_min_max(signed).into()
}

/// Calls `f` with each valid address of rows `at..at + len` of the
/// 16-byte column `col` (`nulls`: the validity of those rows, when some
/// are null), as the big-endian number of its bytes.
#[inline]
fn each_word(col: &dyn Array, at: usize, len: usize, nulls: Option<&NullBuffer>, mut f: impl FnMut(u128)) {
    let words = &words(col)[at..at + len];
    match nulls {
        None => words.iter().for_each(|&w| f(u128::from_be_bytes(w))),
        Some(n) => n.valid_indices().for_each(|i| f(u128::from_be_bytes(words[i]))),
    }
}

/// Value `v` of a column of `kind`, PLAIN (not of strings, whose values
/// are their dictionary's: [`Dict::put`]).
fn put_plain(out: &mut Vec<u8>, kind: Kind, v: u128) {
    match kind {
        Kind::U32 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        Kind::U64 | Kind::I64 => out.extend_from_slice(&(v as u64).to_le_bytes()),
        Kind::Fixed => out.extend_from_slice(&v.to_be_bytes()),
        Kind::Text => put_text(out, v),
        Kind::Str => unreachable!("strings are put from their dictionary"),
    }
}

/// A PLAIN BYTE_ARRAY value: its length (4 bytes, little-endian), then it.
fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// Address `v` as a PLAIN BYTE_ARRAY value: its text's length (4 bytes,
/// little-endian), then the text. An IPv4 address's length and text go in
/// one store, then the tail is cut.
fn put_text(out: &mut Vec<u8>, v: u128) {
    let start = out.len();
    let addr = Addr(v.to_be_bytes());
    if let Some(o) = addr.v4_octets() {
        let (text, n) = spillway_core::human::ipv4_text16(o);
        let mut item = [0u8; 20];
        item[..4].copy_from_slice(&(n as u32).to_le_bytes());
        item[4..].copy_from_slice(&text);
        out.extend_from_slice(&item);
        out.truncate(start + 4 + n);
    } else {
        out.extend_from_slice(&[0; 4]);
        spillway_core::human::write_addr(addr, out);
        let text = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&text.to_le_bytes());
    }
}

/// The dictionary indices of rows `at..at + len` of `col` onto `indices`.
/// Runs of one value (the norm: a message's records share most of these
/// columns) are looked up once.
fn dict_indices(
    col: &dyn Array,
    at: usize,
    len: usize,
    nulls: Option<&NullBuffer>,
    dict: &mut Dict,
    kind: Kind,
    indices: &mut Vec<u32>,
) {
    macro_rules! run {
        ($values:expr, $conv:expr) => {{
            let values = &$values[at..at + len];
            let mut prev = None;
            let mut key = |v| match prev {
                Some((p, k)) if p == v => k,
                _ => {
                    let k = dict.key($conv(v), kind);
                    prev = Some((v, k));
                    k
                }
            };
            match nulls {
                None => indices.extend(values.iter().map(|&v| key(v))),
                Some(n) => n.valid_indices().for_each(|i| indices.push(key(values[i]))),
            }
        }};
    }
    match col.data_type() {
        DataType::UInt8 => run!(col.as_primitive::<UInt8Type>().values(), u128::from),
        DataType::UInt16 => run!(col.as_primitive::<UInt16Type>().values(), u128::from),
        DataType::UInt32 => run!(col.as_primitive::<UInt32Type>().values(), u128::from),
        DataType::UInt64 => run!(col.as_primitive::<UInt64Type>().values(), u128::from),
        DataType::Timestamp(..) => run!(timestamps(col), |v: i64| u128::from(v as u64)),
        DataType::FixedSizeBinary(16) => run!(words(col), u128::from_be_bytes),
        DataType::Utf8 => {
            let strings = col.as_string::<i32>();
            let mut prev: Option<(&[u8], u32)> = None;
            let mut key = |i: usize| {
                let s = strings.value(at + i).as_bytes();
                match prev {
                    Some((p, k)) if p == s => k,
                    _ => {
                        let k = dict.key_text(s);
                        prev = Some((s, k));
                        k
                    }
                }
            };
            match nulls {
                None => indices.extend((0..len).map(&mut key)),
                Some(n) => n.valid_indices().for_each(|i| indices.push(key(i))),
            }
        }
        other => unreachable!("no encoding here for {other}"),
    }
}

/// A timestamp column's values, in its unit.
fn timestamps(col: &dyn Array) -> &ScalarBuffer<i64> {
    match col.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            col.as_primitive::<TimestampMicrosecondType>().values()
        }
        _ => col.as_primitive::<TimestampNanosecondType>().values(),
    }
}

/// A 16-byte binary column's values as words.
fn words(col: &dyn Array) -> &[[u8; 16]] {
    let (words, rest) = col.as_fixed_size_binary().value_data().as_chunks::<16>();
    debug_assert!(rest.is_empty());
    words
}

/// PLAIN values of rows `at..at + len` of `col` onto `out`: integers as
/// their Parquet physical type (INT32 or INT64, little-endian), addresses
/// as their 16 bytes. Returns the smallest and largest value written, as
/// order keys (see [`ColumnChunk::order`]; `(MAX, 0)` when none).
fn plain(
    col: &dyn Array,
    at: usize,
    len: usize,
    nulls: Option<&NullBuffer>,
    out: &mut Vec<u8>,
) -> (u128, u128) {
    // `$bytes`: the column's values as bytes, when they are already the
    // stored width (then, all valid, they are copied as they are);
    // `$put`: one value's stored bytes; `$key`: its order key.
    macro_rules! run {
        ($values:expr, $bytes:expr, $width:expr, $put:expr, $key:expr) => {{
            let values = &$values[at..at + len];
            match (nulls, $bytes) {
                (None, Some(bytes)) if cfg!(target_endian = "little") => {
                    out.extend_from_slice(&bytes[at * $width..(at + len) * $width]);
                }
                (None, _) => {
                    let start = out.len();
                    out.resize(start + len * $width, 0);
                    for (d, &v) in out[start..].chunks_exact_mut($width).zip(values) {
                        d.copy_from_slice(&$put(v));
                    }
                }
                (Some(n), _) => {
                    out.reserve((len - n.null_count()) * $width);
                    n.valid_indices().for_each(|i| out.extend_from_slice(&$put(values[i])));
                }
            }
            let (lo, hi) = match nulls {
                None => (values.iter().copied().min(), values.iter().copied().max()),
                Some(n) => {
                    let mut valid = n.valid_indices().map(|i| values[i]);
                    let first = valid.next();
                    valid.fold((first, first), |(lo, hi), v| (lo.min(Some(v)), hi.max(Some(v))))
                }
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) => ($key(lo), $key(hi)),
                _ => (u128::MAX, 0),
            }
        }};
    }
    let widen8 = |v: u8| u32::from(v).to_le_bytes();
    let widen16 = |v: u16| u32::from(v).to_le_bytes();
    match col.data_type() {
        DataType::UInt8 => {
            run!(col.as_primitive::<UInt8Type>().values(), None::<&[u8]>, 4, widen8, u128::from)
        }
        DataType::UInt16 => {
            run!(col.as_primitive::<UInt16Type>().values(), None::<&[u8]>, 4, widen16, u128::from)
        }
        DataType::UInt32 => {
            let v = col.as_primitive::<UInt32Type>().values();
            run!(v, Some(v.inner().as_slice()), 4, u32::to_le_bytes, u128::from)
        }
        DataType::UInt64 => {
            let v = col.as_primitive::<UInt64Type>().values();
            run!(v, Some(v.inner().as_slice()), 8, u64::to_le_bytes, u128::from)
        }
        DataType::Timestamp(..) => {
            let v = timestamps(col);
            run!(v, Some(v.inner().as_slice()), 8, i64::to_le_bytes, |v: i64| ColumnChunk::order(
                Kind::I64,
                u128::from(v as u64)
            ))
        }
        DataType::FixedSizeBinary(16) => {
            let words = words(col);
            run!(
                words,
                Some(col.as_fixed_size_binary().value_data()),
                16,
                |v: [u8; 16]| v,
                u128::from_be_bytes
            )
        }
        other => unreachable!("no encoding here for {other}"),
    }
}

/// Sets bits `start..start + len` of `bits` (already long enough).
fn set_bits(bits: &mut [u8], start: usize, len: usize) {
    let mut i = start;
    let end = start + len;
    while i < end && !i.is_multiple_of(8) {
        bits[i / 8] |= 1 << (i % 8);
        i += 1;
    }
    while i + 8 <= end {
        bits[i / 8] = 0xff;
        i += 8;
    }
    while i < end {
        bits[i / 8] |= 1 << (i % 8);
        i += 1;
    }
}

fn uleb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// An RLE run of `count` times `value`, `width` bits wide.
fn rle_run(out: &mut Vec<u8>, count: usize, value: u32, width: u32) {
    uleb128(out, (count as u64) << 1);
    out.extend_from_slice(&value.to_le_bytes()[..width.div_ceil(8) as usize]);
}

/// Bits for the indices of a dictionary of `n` values (at least 1).
fn bit_width(n: usize) -> u32 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1)
}

/// Dictionary indices in the RLE/bit-packed hybrid: one RLE run when they
/// are all the same, else one bit-packed run.
fn pack_indices(out: &mut Vec<u8>, indices: &[u32], width: u32) {
    let Some(&first) = indices.first() else {
        return;
    };
    if indices.iter().all(|&i| i == first) {
        rle_run(out, indices.len(), first, width);
        return;
    }
    let groups = indices.len().div_ceil(8);
    uleb128(out, ((groups as u64) << 1) | 1);
    out.reserve(groups * width as usize);
    let padding = std::iter::repeat_n(0, groups * 8 - indices.len());
    pack_bits(out, indices.iter().map(|&i| u64::from(i)).chain(padding), width);
}

/// Values per DELTA_BINARY_PACKED block, and miniblocks per block (the
/// sizes arrow-rs and parquet-mr write).
const DELTA_BLOCK: usize = 128;
const DELTA_MINIBLOCKS: usize = 4;
const DELTA_MINIBLOCK: usize = DELTA_BLOCK / DELTA_MINIBLOCKS;

/// `values` (PLAIN: little-endian, `width` 4 or 8 bytes each) in
/// DELTA_BINARY_PACKED: a header (block size, miniblocks per block, value
/// count, first value), then blocks of 128 deltas, each its smallest delta
/// and four miniblocks of 32 deltas above it, bit-packed as narrow as the
/// miniblock's largest needs. Deltas wrap in the physical type (INT32 or
/// INT64), as readers add them, so any values round-trip; counters and
/// timestamps, whose neighbours are close, pack to a few bits each.
fn delta_binary_packed(out: &mut Vec<u8>, values: &[u8], width: usize) {
    if width == 4 {
        delta_packed::<4>(out, values);
    } else {
        delta_packed::<8>(out, values);
    }
}

/// [`delta_binary_packed`] of `W`-byte values.
fn delta_packed<const W: usize>(out: &mut Vec<u8>, values: &[u8]) {
    let n = values.len() / W;
    let read = |b: &[u8]| -> i64 {
        if W == 4 {
            i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }
    };
    let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    uleb128(out, DELTA_BLOCK as u64);
    uleb128(out, DELTA_MINIBLOCKS as u64);
    uleb128(out, n as u64);
    if n == 0 {
        uleb128(out, 0);
        return;
    }
    uleb128(out, zigzag(read(&values[..W])));
    // A block's values after the one before them, and their deltas: fixed
    // arrays, one loop each, which the compiler unrolls and vectorizes.
    let mut block = [0i64; DELTA_BLOCK + 1];
    let mut deltas = [0i64; DELTA_BLOCK];
    let mut next = 1;
    while next < n {
        let m = (n - next).min(DELTA_BLOCK);
        for (v, b) in block.iter_mut().zip(values[(next - 1) * W..(next + m) * W].chunks_exact(W)) {
            *v = read(b);
        }
        next += m;
        // The delta in the physical type, widened.
        for ((d, &v), &prev) in deltas.iter_mut().zip(&block[1..]).zip(&block[..DELTA_BLOCK]) {
            *d = if W == 4 { i64::from((v as i32).wrapping_sub(prev as i32)) } else { v.wrapping_sub(prev) };
        }
        let min = deltas[..m].iter().copied().min().unwrap_or(0);
        uleb128(out, zigzag(min));
        // Each delta above the smallest, as unsigned: within the type's
        // width, since both are deltas of that type (INT64 wraps, as readers
        // do). The last miniblock is padded to 32 values with zeros.
        let mut above = [0u64; DELTA_BLOCK];
        for (a, &d) in above.iter_mut().zip(&deltas[..m]) {
            *a = d.wrapping_sub(min) as u64;
        }
        let minis = m.div_ceil(DELTA_MINIBLOCK);
        let mut widths = [0u8; DELTA_MINIBLOCKS];
        for (w, mini) in widths.iter_mut().zip(above.chunks_exact(DELTA_MINIBLOCK)).take(minis) {
            *w = (u64::BITS - mini.iter().fold(0, |a, &v| a | v).leading_zeros()) as u8;
        }
        out.extend_from_slice(&widths);
        for (&w, mini) in widths.iter().zip(above.chunks_exact(DELTA_MINIBLOCK)).take(minis) {
            pack32(out, mini.try_into().expect("32 values"), u32::from(w));
        }
    }
}

/// 32 values bit-packed, `width` bits each, LSB first: `4 * width` bytes,
/// written a 64-bit word at a time.
fn pack32(out: &mut Vec<u8>, values: &[u64; 32], width: u32) {
    if width == 0 {
        return;
    }
    let start = out.len();
    out.resize(start + 4 * width as usize, 0);
    let mut dst = out[start..].chunks_exact_mut(8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &v in values {
        acc |= v << bits;
        bits += width;
        if bits >= 64 {
            if let Some(d) = dst.next() {
                d.copy_from_slice(&acc.to_le_bytes());
            }
            bits -= 64;
            // The bits of `v` that did not fit (none when it ended the word).
            acc = if bits == 0 { 0 } else { v >> (width - bits) };
        }
    }
    // An odd width leaves half a word.
    let rest = dst.into_remainder();
    let len = rest.len();
    rest.copy_from_slice(&acc.to_le_bytes()[..len]);
}

/// `values` bit-packed, `width` bits each, LSB first (a whole number of
/// bytes: the caller passes a multiple of 8 values).
fn pack_bits(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, width: u32) {
    if width == 0 {
        return;
    }
    let (mut acc, mut bits) = (0u128, 0u32);
    for v in values {
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..bits.div_ceil(8) as usize]);
}

/// Page compression with the codecs the sink offers, as arrow-rs frames
/// them: a zstd frame, a raw LZ4 block (LZ4_RAW), a raw Snappy block.
///
/// Its two buffers live as long as the file: fresh page-sized buffers on
/// every page came from `mmap` and cost a page fault per 4 KiB (8 % of
/// the encoder's time).
pub(crate) struct Compressor {
    zstd: Option<zstd::bulk::Compressor<'static>>,
    snappy: snap::raw::Encoder,
    /// The page being assembled.
    page: Vec<u8>,
    /// The compressor's output.
    out: Vec<u8>,
}

impl Compressor {
    pub(crate) fn new(codec: Compression) -> Result<Self> {
        let zstd = match codec {
            Compression::ZSTD(level) => Some(
                zstd::bulk::Compressor::new(level.compression_level())
                    .map_err(|e| ParquetError::General(format!("zstd: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self { zstd, snappy: snap::raw::Encoder::new(), page: Vec::new(), out: Vec::new() })
    }

    /// The buffer to assemble the next page in, empty.
    fn start(&mut self) -> &mut Vec<u8> {
        self.page.clear();
        &mut self.page
    }

    /// `page` with the assembled bytes as its contents, compressed by
    /// `codec`.
    fn finish(&mut self, page: Page, codec: Compression) -> Result<CompressedPage> {
        let data = &self.page;
        let raw = data.len();
        let out = &mut self.out;
        let n = match codec {
            Compression::UNCOMPRESSED => None,
            Compression::ZSTD(_) => {
                let z = self.zstd.as_mut().ok_or_else(|| ParquetError::General("no zstd context".into()))?;
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(raw));
                Some(
                    z.compress_to_buffer(data, out)
                        .map_err(|e| ParquetError::General(format!("zstd: {e}")))?,
                )
            }
            Compression::LZ4_RAW => {
                out.resize(lz4_flex::block::get_maximum_output_size(raw), 0);
                Some(
                    lz4_flex::block::compress_into(data, out)
                        .map_err(|e| ParquetError::General(format!("lz4: {e}")))?,
                )
            }
            Compression::SNAPPY => {
                out.resize(snap::raw::max_compress_len(raw), 0);
                Some(
                    self.snappy
                        .compress(data, out)
                        .map_err(|e| ParquetError::General(format!("snappy: {e}")))?,
                )
            }
            other => return Err(ParquetError::General(format!("codec {other} is not offered"))),
        };
        // Uncompressed pages are copied from the page as it is.
        let buf = Bytes::copy_from_slice(n.map_or(data.as_slice(), |n| &out[..n]));
        let page = match page {
            Page::DataPage {
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                statistics,
                ..
            } => Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                statistics,
            },
            Page::DictionaryPage { num_values, encoding, is_sorted, .. } => {
                Page::DictionaryPage { buf, num_values, encoding, is_sorted }
            }
            Page::DataPageV2 { .. } => return Err(ParquetError::General("no v2 pages here".into())),
        };
        Ok(CompressedPage::new(page, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dictionary's table of small values grows to the values seen: an
    /// open file keeps one per dictionary column, so a table of all 65,536
    /// slots for protocols would cost 256 KiB each.
    #[test]
    fn the_small_value_table_grows_to_the_values_seen() {
        let mut d = Dict::new();
        assert!(d.small.is_empty(), "nothing before the first value");
        for v in [6, 17, 1, 6, 255] {
            d.key(v, Kind::U32);
        }
        assert_eq!(d.small.len(), 256, "protocols: 1 KiB");
        assert_eq!((d.key(17, Kind::U32), d.key(255, Kind::U32)), (1, 3), "indices in order of arrival");
        d.key(443, Kind::U32);
        assert_eq!(d.small.len(), 512);
        assert_eq!(d.key(6, Kind::U32), 0, "kept across growth");
        d.key(65_535, Kind::U32);
        assert_eq!(d.small.len(), SMALL);
        d.key(65_536, Kind::U32);
        assert_eq!(d.small.len(), SMALL, "larger values are hashed");
        assert_eq!(d.values, [6, 17, 1, 255, 443, 65_535, 65_536]);
        assert_eq!((d.key(443, Kind::U32), d.key(65_536, Kind::U32)), (4, 6));
    }

    #[test]
    fn hybrid_encodings_are_the_formats() {
        let mut out = Vec::new();
        rle_run(&mut out, 300, 1, 1);
        // 300 << 1 = 600 = 0b100_1011000 → 0xd8 0x04, then the value.
        assert_eq!(out, [0xd8, 0x04, 0x01]);
        let mut out = Vec::new();
        pack_indices(&mut out, &[0, 1, 2, 3, 4, 5, 6, 7, 1], 3);
        // Two groups of 8 (the second padded with zeros), 3 bits each.
        assert_eq!(out[0], (2 << 1) | 1);
        assert_eq!(&out[1..4], &[0b1000_1000, 0b1100_0110, 0b1111_1010]);
        assert_eq!(&out[4..7], &[1, 0, 0]);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 1);
        assert_eq!(bit_width(3), 2);
        assert_eq!(bit_width(256), 8);
        assert_eq!(bit_width(257), 9);
        let mut bits = vec![0u8; 3];
        set_bits(&mut bits, 3, 15);
        assert_eq!(bits, [0b1111_1000, 0xff, 0b0000_0011]);
    }
}
