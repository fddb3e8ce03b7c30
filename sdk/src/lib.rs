//! Write Spillway transforms in Rust; compile them to WebAssembly.
//!
//! One plain function with one attribute is a plugin:
//!
//! ```
//! use spillway_sdk::{Flow, map};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { ports: std::collections::HashMap<u16, String> }
//!
//! #[map(column = "app")]
//! fn app(flow: &Flow, cfg: &Config) -> Option<String> {
//!     flow.dst_port().and_then(|p| cfg.ports.get(&p).cloned())
//! }
//! # fn main() {
//! # use spillway_sdk::arrow_array::{RecordBatch, StringArray, UInt16Array};
//! # let schema = std::sync::Arc::new(spillway_sdk::arrow_schema::Schema::new(vec![
//! #     spillway_sdk::arrow_schema::Field::new("dst_port", spillway_sdk::arrow_schema::DataType::UInt16, true),
//! # ]));
//! # let batch = RecordBatch::try_new(schema, vec![std::sync::Arc::new(UInt16Array::from(vec![443, 22]))]).unwrap();
//! # let cfg = Config { ports: [(443, "web".to_string())].into() };
//! # let out = spillway_sdk::testing::run(|b, c: &Config| b.with_column("app", |f| app(f, c)), batch, &cfg).unwrap();
//! # let apps = out.column(1).as_any().downcast_ref::<StringArray>().unwrap();
//! # assert_eq!(apps.iter().collect::<Vec<_>>(), [Some("web"), None]);
//! # }
//! ```
//!
//! - `#[transform] fn f(batch: FlowBatch, cfg: &Config) -> Result<FlowBatch>`
//!   works a batch at a time;
//! - `#[map] fn f(flow: &Flow, cfg: &Config) -> T` adds a column;
//! - `#[filter] fn f(flow: &Flow, cfg: &Config) -> bool` keeps records.
//!
//! The config is the plugin's `config:` from the pipeline file, deserialized
//! with serde. Errors (`Err(...)`, or a panic) carry their message back to
//! the host, which counts the batch as a plugin error. The ABI is described
//! in docs/wasm-abi.md; this crate depends on neither tokio nor wasmtime and
//! builds for `wasm32-unknown-unknown` and `wasm32-wasip1` (and natively, for
//! tests).

use std::net::IpAddr;
use std::sync::Arc;

pub use arrow_array;
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
pub use arrow_schema;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
/// The flow schema's shared definition: column names, types, and the
/// `sampling_source` vocabulary.
pub use spillway_schema as schema;
use spillway_schema::names;
pub use spillway_sdk_macros::{filter, map, transform};

/// The ABI this SDK speaks; the host refuses a plugin with another.
pub const ABI_VERSION: u32 = 1;

/// The config of a plugin whose function takes none: any mapping is
/// accepted and ignored.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoConfig {}

/// A plugin's error: its message reaches the host's logs and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl Error {
    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

// Any displayable error converts, so `?` works on arrow, serde and string
// errors alike. (`Error` itself is deliberately not `Display`, which would
// collide with this blanket conversion.)
impl<T: std::fmt::Display> From<T> for Error {
    fn from(e: T) -> Self {
        Error(e.to_string())
    }
}

/// The result of a plugin function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A batch of flow records.
#[derive(Debug, Clone)]
pub struct FlowBatch {
    batch: RecordBatch,
    /// The columns the plugin declared it reads (`#[map(reads = [...])]`);
    /// `None`: all. An accessor for any other column panics with a message
    /// naming it, which the host reports as the plugin's error.
    reads: Option<&'static [&'static str]>,
}

impl FlowBatch {
    /// Wraps an Arrow batch.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch, reads: None }
    }

    /// Wraps a batch holding only the columns `reads` (empty: all).
    fn reading(batch: RecordBatch, reads: &'static [&'static str]) -> Self {
        Self { batch, reads: (!reads.is_empty()).then_some(reads) }
    }

    /// The Arrow batch, for authors who want it.
    pub fn arrow(&self) -> &RecordBatch {
        &self.batch
    }

    /// Takes the Arrow batch.
    pub fn into_arrow(self) -> RecordBatch {
        self.batch
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th record.
    pub fn get(&self, i: usize) -> Flow<'_> {
        Flow { cols: std::borrow::Cow::Owned(Cols::of(&self.batch, self.reads)), row: i }
    }

    /// Every record, in order.
    pub fn iter(&self) -> impl Iterator<Item = Flow<'_>> {
        let cols = Cols::of(&self.batch, self.reads);
        (0..self.len()).map(move |row| Flow { cols: std::borrow::Cow::Owned(cols.clone()), row })
    }

    /// Keeps the records for which `keep` is true.
    pub fn retain(self, mut keep: impl FnMut(&Flow<'_>) -> bool) -> Result<FlowBatch> {
        let cols = Cols::of(&self.batch, self.reads);
        let mask: BooleanArray = (0..self.len()).map(|row| Some(keep(&Flow::at(&cols, row)))).collect();
        let batch = arrow_select::filter::filter_record_batch(&self.batch, &mask)?;
        Ok(FlowBatch { batch, reads: self.reads })
    }

    /// Adds (or replaces) column `name` with one value per record.
    pub fn with_column<T: ColumnValue>(
        self,
        name: &str,
        mut value: impl FnMut(&Flow<'_>) -> T,
    ) -> Result<FlowBatch> {
        // The column table is looked up once and borrowed by every record.
        let cols = Cols::of(&self.batch, self.reads);
        let values: Vec<T> = (0..self.len()).map(|row| value(&Flow::at(&cols, row))).collect();
        let array = T::array(values);
        self.with_array(name, array)
    }

    /// Adds (or replaces) column `name`.
    pub fn with_array(self, name: &str, array: ArrayRef) -> Result<FlowBatch> {
        let schema = self.batch.schema();
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        let mut cols: Vec<ArrayRef> = self.batch.columns().to_vec();
        let field = Arc::new(Field::new(name, array.data_type().clone(), true));
        match schema.index_of(name) {
            Ok(i) => {
                fields[i] = field;
                cols[i] = array;
            }
            Err(_) => {
                fields.push(field);
                cols.push(array);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        Ok(FlowBatch { batch, reads: self.reads })
    }
}

/// Types a `#[map]` function may return: one value per record.
pub trait ColumnValue: Sized {
    /// The column of these values.
    fn array(values: Vec<Self>) -> ArrayRef;
}

macro_rules! column_value {
    ($t:ty, $a:ty) => {
        impl ColumnValue for Option<$t> {
            fn array(values: Vec<Self>) -> ArrayRef {
                Arc::new(<$a>::from(values))
            }
        }
        impl ColumnValue for $t {
            fn array(values: Vec<Self>) -> ArrayRef {
                Arc::new(<$a>::from(values))
            }
        }
    };
}
column_value!(String, StringArray);
column_value!(&'static str, StringArray);
column_value!(u64, UInt64Array);
column_value!(i64, Int64Array);
column_value!(f64, Float64Array);
column_value!(bool, BooleanArray);
column_value!(u32, UInt32Array);

/// Declares the typed view of the flow-schema columns the SDK offers: a
/// field per column, looked up by its shared name (`spillway_schema::names`),
/// and, for the test that keeps it true to the shared definition, the
/// columns a field could not read with its type.
macro_rules! cols {
    ($($field:ident: $ty:ty = $name:ident),* $(,)?) => {
        /// The columns of the flow schema a batch has, looked up once per batch.
        #[derive(Clone)]
        struct Cols<'a> {
            batch: &'a RecordBatch,
            reads: Option<&'static [&'static str]>,
            $($field: Option<&'a $ty>,)*
        }

        impl<'a> Cols<'a> {
            fn of(b: &'a RecordBatch, reads: Option<&'static [&'static str]>) -> Self {
                Cols { batch: b, reads, $($field: col(b, names::$name),)* }
            }

            #[cfg(test)]
            fn unread(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$field.is_none() {
                    v.push(names::$name);
                })*
                v
            }
        }
    };
}

cols! {
    time_received: TimestampNanosecondArray = TIME_RECEIVED,
    exporter: FixedSizeBinaryArray = EXPORTER,
    src_addr: FixedSizeBinaryArray = SRC_ADDR,
    dst_addr: FixedSizeBinaryArray = DST_ADDR,
    src_port: UInt16Array = SRC_PORT,
    dst_port: UInt16Array = DST_PORT,
    protocol: UInt8Array = PROTOCOL,
    in_if: UInt32Array = IN_IF,
    out_if: UInt32Array = OUT_IF,
    bytes: UInt64Array = BYTES,
    packets: UInt64Array = PACKETS,
    src_as: UInt32Array = SRC_AS,
    dst_as: UInt32Array = DST_AS,
    sampling_rate: UInt32Array = SAMPLING_RATE,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Option<&'a T> {
    b.column_by_name(name)?.as_any().downcast_ref::<T>()
}

/// One flow record: typed accessors over the flow schema (docs/pipelines.md
/// lists the columns). A column the batch lacks, or a null, reads as `None`;
/// a column outside the function's declared `reads` is the plugin's bug and
/// panics with a message naming it (the host reports it as the plugin's
/// error), rather than reading as `None`.
#[derive(Clone)]
pub struct Flow<'a> {
    cols: std::borrow::Cow<'a, Cols<'a>>,
    row: usize,
}

fn prim<T: arrow_array::ArrowPrimitiveType>(
    a: Option<&arrow_array::PrimitiveArray<T>>,
    row: usize,
) -> Option<T::Native> {
    a.filter(|a| a.is_valid(row)).map(|a| a.value(row))
}

fn addr(a: Option<&FixedSizeBinaryArray>, row: usize) -> Option<IpAddr> {
    let a = a.filter(|a| a.is_valid(row))?;
    let b: [u8; 16] = a.value(row).try_into().ok()?;
    let v6 = std::net::Ipv6Addr::from(b);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

impl<'a> Flow<'a> {
    fn at(cols: &'a Cols<'a>, row: usize) -> Self {
        Flow { cols: std::borrow::Cow::Borrowed(cols), row }
    }

    /// `col`, which is absent only because the batch lacks it, unless the
    /// plugin declared its `reads` without it: a bug in the plugin, said so.
    fn need<T>(&self, col: Option<T>, name: &str) -> Option<T> {
        if col.is_none()
            && let Some(reads) = self.cols.reads
            && !reads.contains(&name)
        {
            panic!(
                "the plugin reads column `{name}`, which is not in its `reads` ({}): add it there, \
                 e.g. #[map(reads = [..., \"{name}\"])]",
                reads.join(", ")
            );
        }
        col
    }

    /// Position in the batch.
    pub fn index(&self) -> usize {
        self.row
    }
    /// When the collector received it, ns since the epoch.
    pub fn time_received_ns(&self) -> Option<i64> {
        prim(self.need(self.cols.time_received, names::TIME_RECEIVED), self.row)
    }
    pub fn exporter(&self) -> Option<IpAddr> {
        addr(self.need(self.cols.exporter, names::EXPORTER), self.row)
    }
    pub fn src_addr(&self) -> Option<IpAddr> {
        addr(self.need(self.cols.src_addr, names::SRC_ADDR), self.row)
    }
    pub fn dst_addr(&self) -> Option<IpAddr> {
        addr(self.need(self.cols.dst_addr, names::DST_ADDR), self.row)
    }
    pub fn src_port(&self) -> Option<u16> {
        prim(self.need(self.cols.src_port, names::SRC_PORT), self.row)
    }
    /// Destination port (for ICMP: type << 8 | code).
    pub fn dst_port(&self) -> Option<u16> {
        prim(self.need(self.cols.dst_port, names::DST_PORT), self.row)
    }
    pub fn protocol(&self) -> Option<u8> {
        prim(self.need(self.cols.protocol, names::PROTOCOL), self.row)
    }
    pub fn in_if(&self) -> Option<u32> {
        prim(self.need(self.cols.in_if, names::IN_IF), self.row)
    }
    pub fn out_if(&self) -> Option<u32> {
        prim(self.need(self.cols.out_if, names::OUT_IF), self.row)
    }
    /// Octets; `None` when the exporter sent no counter (a NAT event).
    pub fn bytes(&self) -> Option<u64> {
        prim(self.need(self.cols.bytes, names::BYTES), self.row)
    }
    /// Packets; `None` when the exporter sent no counter.
    pub fn packets(&self) -> Option<u64> {
        prim(self.need(self.cols.packets, names::PACKETS), self.row)
    }
    pub fn src_as(&self) -> Option<u32> {
        prim(self.need(self.cols.src_as, names::SRC_AS), self.row)
    }
    pub fn dst_as(&self) -> Option<u32> {
        prim(self.need(self.cols.dst_as, names::DST_AS), self.row)
    }
    /// 1-in-N sampling rate; `None` when it is unknown (`sampling_source`
    /// is `unknown`: the record names a sampler never described).
    pub fn sampling_rate(&self) -> Option<u32> {
        prim(self.need(self.cols.sampling_rate, names::SAMPLING_RATE), self.row)
    }
    /// Any string column by name (an enrichment's output, say).
    pub fn str(&self, column: &str) -> Option<&str> {
        let a = self.need(col::<StringArray>(self.cols.batch, column), column)?;
        a.is_valid(self.row).then(|| a.value(self.row))
    }
    /// Any unsigned integer column by name, widened to u64.
    pub fn uint(&self, column: &str) -> Option<u64> {
        let c = self.need(self.cols.batch.column_by_name(column), column)?;
        if c.is_null(self.row) {
            return None;
        }
        let a = c.as_any();
        match c.data_type() {
            DataType::UInt8 => a.downcast_ref::<UInt8Array>().map(|a| a.value(self.row) as u64),
            DataType::UInt16 => a.downcast_ref::<UInt16Array>().map(|a| a.value(self.row) as u64),
            DataType::UInt32 => a.downcast_ref::<UInt32Array>().map(|a| a.value(self.row) as u64),
            DataType::UInt64 => a.downcast_ref::<UInt64Array>().map(|a| a.value(self.row)),
            _ => None,
        }
    }
}

#[doc(hidden)]
pub mod __private {
    //! What the macros call. Not a stable API.
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    type Run<C> = fn(FlowBatch, &C) -> Result<FlowBatch>;

    /// What the host sends and what the plugin answers (docs/wasm-abi.md).
    #[derive(Clone, Copy)]
    pub struct Shape {
        /// The input columns the function reads; all when empty.
        pub reads: &'static [&'static str],
        pub output: Output,
    }

    #[derive(Clone, Copy)]
    pub enum Output {
        /// The whole output batch.
        Full,
        /// Only this new column; the host appends it to the input.
        Append(&'static str),
        /// Only a boolean column (this one, sent as `keep`); the host
        /// keeps the input records where it is true.
        Mask(&'static str),
    }

    struct State {
        cfg: Box<dyn Any>,
        input: SchemaRef,
        shape: Shape,
    }

    /// The run's output, reduced to what the shape says to send.
    fn reduce(out: FlowBatch, output: Output) -> Result<RecordBatch> {
        let b = out.into_arrow();
        match output {
            Output::Full => Ok(b),
            Output::Append(col) | Output::Mask(col) => {
                let i = b.schema().index_of(col)?;
                let name = if matches!(output, Output::Mask(_)) { "keep" } else { col };
                let f = b.schema().field(i).clone().with_name(name);
                Ok(RecordBatch::try_new(Arc::new(Schema::new(vec![f])), vec![b.column(i).clone()])?)
            }
        }
    }

    thread_local! {
        static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    }

    #[cfg(target_family = "wasm")]
    #[link(wasm_import_module = "spillway")]
    unsafe extern "C" {
        /// Hands a panic message to the host before the trap.
        fn panic_message(ptr: *const u8, len: u32);
    }

    fn install_panic_hook() {
        #[cfg(target_family = "wasm")]
        std::panic::set_hook(Box::new(|info| {
            let what = info.payload_as_str().unwrap_or("a panic without a message");
            let msg = match info.location() {
                Some(l) => format!("{what} (at {}:{})", l.file(), l.line()),
                None => what.to_string(),
            };
            // SAFETY: the host copies `len` bytes at `ptr` out of our memory
            // during the call; both stay valid for its duration.
            unsafe { panic_message(msg.as_ptr(), msg.len() as u32) };
        }));
    }

    pub fn alloc(len: u32) -> u32 {
        let mut v = Vec::<u8>::with_capacity(len as usize);
        let p = v.as_mut_ptr();
        std::mem::forget(v);
        p as usize as u32
    }

    pub fn dealloc(ptr: u32, len: u32) {
        if len == 0 {
            return;
        }
        // SAFETY: `ptr`/`len` come from `alloc` (or a result buffer we
        // leaked) with exactly this capacity, and are freed once.
        unsafe { drop(Vec::from_raw_parts(ptr as usize as *mut u8, 0, len as usize)) };
    }

    /// Leaks `v` (status byte first) and returns its (ptr << 32 | len);
    /// the host frees it with `dealloc(ptr, len)`.
    fn leak(mut v: Vec<u8>) -> u64 {
        v.shrink_to_fit();
        // `dealloc(ptr, len)` rebuilds the Vec: capacity must equal length.
        if v.capacity() != v.len() {
            let mut w = Vec::with_capacity(v.len());
            w.extend_from_slice(&v);
            v = w;
        }
        let (p, n) = (v.as_mut_ptr() as usize as u64, v.len() as u64);
        std::mem::forget(v);
        (p << 32) | n
    }

    /// The message the host wrote at `ptr` (from `alloc(len)`): ownership
    /// passes to us with the call (ABI), so it is taken without a copy.
    fn take_input(ptr: u32, len: u32) -> Vec<u8> {
        if len == 0 {
            return Vec::new();
        }
        // SAFETY: `ptr` came from `alloc(len)`, i.e. a Vec<u8> of capacity
        // `len`; the host wrote `len` bytes there and, per the ABI, no
        // longer touches or frees it.
        unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len as usize, len as usize) }
    }

    fn ok_or_reply(r: Result<Vec<u8>>) -> u64 {
        match r {
            Ok(v) => leak(v),
            Err(e) => {
                let mut v = vec![1u8];
                v.extend_from_slice(e.0.as_bytes());
                leak(v)
            }
        }
    }

    /// `init`: [u32 LE config length][config JSON][IPC stream: input schema].
    /// Replies [u32 LE length][shape JSON][IPC stream: the reply schema].
    pub fn init<C: serde::de::DeserializeOwned + 'static>(
        ptr: u32,
        len: u32,
        run: Run<C>,
        shape: Shape,
    ) -> u64 {
        install_panic_hook();
        let r = (|| -> Result<Vec<u8>> {
            let buf = take_input(ptr, len);
            let n = u32::from_le_bytes(buf.get(..4).ok_or("short init message")?.try_into()?) as usize;
            let json = buf.get(4..4 + n).ok_or("short init message")?;
            let cfg: C = serde_json::from_slice(json).map_err(|e| format!("the plugin's config: {e}"))?;
            let mut schema = read_ipc(&buf[4 + n..])?.0;
            if !shape.reads.is_empty() {
                // What the host will send: only the columns read.
                let mut idx = Vec::new();
                for c in shape.reads {
                    idx.push(
                        schema
                            .index_of(c)
                            .map_err(|_| format!("the plugin reads column `{c}`, which the input lacks"))?,
                    );
                }
                schema = Arc::new(schema.project(&idx)?);
            }
            // The reply schema: run on an empty batch.
            let empty = RecordBatch::new_empty(schema.clone());
            let out = reduce(run(FlowBatch::reading(empty, shape.reads), &cfg)?, shape.output)?;
            let meta = serde_json::json!({
                "reads": if shape.reads.is_empty() { serde_json::Value::Null } else { shape.reads.into() },
                "output": match shape.output { Output::Full => "full", Output::Append(_) => "append", Output::Mask(_) => "mask" },
            });
            let meta = serde_json::to_vec(&meta)?;
            let mut bytes = vec![0u8];
            bytes.extend_from_slice(&(meta.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&meta);
            write_ipc_into(&out.schema(), None, &mut bytes)?;
            STATE.with(|s| *s.borrow_mut() = Some(State { cfg: Box::new(cfg), input: schema, shape }));
            Ok(bytes)
        })();
        ok_or_reply(r)
    }

    /// `process`: an IPC stream with one batch in; one batch out.
    pub fn process<C: 'static>(ptr: u32, len: u32, run: Run<C>) -> u64 {
        let r = (|| -> Result<Vec<u8>> {
            // Zero-copy: the arrays point into the message buffer. The
            // host produced it with arrow's writer: not validated again.
            let buf = arrow_buffer::Buffer::from_vec(take_input(ptr, len));
            let (schema, batch) = decode_trusted(buf)?;
            let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(schema));
            STATE.with(|s| {
                let s = s.borrow();
                let st = s.as_ref().ok_or("process called before init")?;
                if st.input.fields() != batch.schema().fields() {
                    return Err(Error("the batch's schema is not the one given to init".into()));
                }
                let cfg = st.cfg.downcast_ref::<C>().ok_or("config type")?;
                let out = reduce(run(FlowBatch::reading(batch, st.shape.reads), cfg)?, st.shape.output)?;
                let mut bytes = vec![0u8];
                write_ipc_into(&out.schema(), Some(&out), &mut bytes)?;
                Ok(bytes)
            })
        })();
        ok_or_reply(r)
    }

    pub fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Option<RecordBatch>)> {
        let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = r.schema();
        let batch = r.next().transpose()?;
        Ok((schema, batch))
    }

    pub fn write_ipc_into(schema: &Schema, batch: Option<&RecordBatch>, out: &mut Vec<u8>) -> Result<()> {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(out, schema)?;
        if let Some(b) = batch {
            w.write(b)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Decodes an IPC stream the host wrote, without copying the arrays
    /// out of `buf` and without re-validating them.
    fn decode_trusted(mut buf: arrow_buffer::Buffer) -> Result<(SchemaRef, Option<RecordBatch>)> {
        // SAFETY: the host wrote this stream with arrow's own IPC writer
        // from batches it had validated; skipping validation trusts the
        // host, which already has full power over this sandbox.
        let mut d = unsafe { arrow_ipc::reader::StreamDecoder::new().with_skip_validation(true) };
        let mut batch = None;
        while !buf.is_empty() {
            if let Some(b) = d.decode(&mut buf)? {
                batch = Some(b);
            }
        }
        let schema = d.schema().ok_or("an IPC stream without a schema")?;
        Ok((schema, batch))
    }
}

/// Runs a plugin function natively on a batch, as the host would: for
/// authors' unit tests (`cargo test` on the plugin crate).
pub mod testing {
    use super::*;

    /// Calls `run` with `cfg` on `batch` and returns its output.
    pub fn run<C>(
        run: fn(FlowBatch, &C) -> Result<FlowBatch>,
        batch: RecordBatch,
        cfg: &C,
    ) -> Result<RecordBatch> {
        run(FlowBatch::new(batch), cfg).map(FlowBatch::into_arrow)
    }

    /// As [`run`], for a function declared with `reads`: the batch is
    /// projected on those columns first, as the host does, so an accessor
    /// outside them fails here as it would in the host.
    pub fn run_reading<C>(
        run: fn(FlowBatch, &C) -> Result<FlowBatch>,
        reads: &'static [&'static str],
        batch: RecordBatch,
        cfg: &C,
    ) -> Result<RecordBatch> {
        let idx = reads
            .iter()
            .map(|c| batch.schema().index_of(c).map_err(|_| Error(format!("the batch lacks column `{c}`"))))
            .collect::<Result<Vec<_>>>()?;
        let batch = batch.project(&idx)?;
        run(FlowBatch::reading(batch, reads), cfg).map(FlowBatch::into_arrow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::UInt16Array;

    fn ports() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            schema::column(names::SRC_PORT).unwrap().field(),
            schema::column(names::DST_PORT).unwrap().field(),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt16Array::from(vec![1000, 2000])),
            Arc::new(UInt16Array::from(vec![Some(443), None])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn dst(b: FlowBatch, _: &()) -> Result<FlowBatch> {
        b.with_column("d", |f| f.dst_port().map(u64::from))
    }

    fn src(b: FlowBatch, _: &()) -> Result<FlowBatch> {
        b.with_column("s", |f| f.src_port().map(u64::from))
    }

    #[test]
    fn every_accessor_reads_its_column_of_the_shared_schema_with_its_type() {
        let b = RecordBatch::new_empty(Arc::new(schema::flow_schema()));
        let c = Cols::of(&b, None);
        assert!(c.unread().is_empty(), "accessors whose type is not the schema's: {:?}", c.unread());
    }

    #[test]
    fn a_column_the_batch_lacks_reads_as_none() {
        let b = ports().project(&[1]).unwrap();
        let out = testing::run(src, b, &()).unwrap();
        assert_eq!(out.column(1).null_count(), 2);
    }

    #[test]
    fn a_column_inside_reads_reads_its_values() {
        let out = testing::run_reading(dst, &["dst_port"], ports(), &()).unwrap();
        let d = out.column(1).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(d.iter().collect::<Vec<_>>(), [Some(443), None]);
    }

    #[test]
    #[should_panic(expected = "the plugin reads column `src_port`, which is not in its `reads` (dst_port)")]
    fn a_column_outside_reads_is_a_clear_error() {
        let _ = testing::run_reading(src, &["dst_port"], ports(), &());
    }
}
