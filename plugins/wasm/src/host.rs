//! The wasmtime side: one engine, compiled-module caches, the ABI calls,
//! and the few host functions a plugin may import.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use wasmtime::{
    Caller, Config, Engine, Extern, InstancePre, Linker, Memory, Module, Store, StoreLimits,
    StoreLimitsBuilder, Trap, TypedFunc,
};

/// The ABI version this host speaks (docs/wasm-abi.md).
pub const ABI_VERSION: u32 = 1;

/// Epoch tick: deadlines are counted in these.
const TICK: Duration = Duration::from_millis(5);

/// Per-plugin limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub memory: usize,
}

/// Why a call failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The module cannot be used at all (wrong ABI, missing export…).
    Load(String),
    /// It ran past its deadline.
    Timeout(Duration),
    /// It wanted more memory than its cap.
    Memory(usize),
    /// It panicked, with its message.
    Panic(String),
    /// It trapped (an `unreachable`, a bad access…).
    Trap(String),
    /// It returned an error with a message.
    Plugin(String),
    /// It answered something that is not a valid batch.
    Malformed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Load(m) => write!(f, "cannot load the plugin: {m}"),
            Failure::Timeout(d) => write!(f, "the plugin ran past its {d:?} deadline and was stopped"),
            Failure::Memory(cap) => write!(f, "the plugin needed more than its {} MiB memory cap", cap >> 20),
            Failure::Panic(m) => write!(f, "the plugin panicked: {m}"),
            Failure::Trap(m) => write!(f, "the plugin trapped: {m}"),
            Failure::Plugin(m) => write!(f, "the plugin returned an error: {m}"),
            Failure::Malformed(m) => write!(f, "the plugin's answer is malformed: {m}"),
        }
    }
}

impl std::error::Error for Failure {}

/// The process's engine, with a thread advancing its epoch.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = Config::new();
        c.epoch_interruption(true);
        c.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let e = Engine::new(&c).expect("a default wasmtime configuration");
        let ticker = e.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .expect("start the epoch thread");
        e
    })
}

/// What a store carries.
pub struct HostState {
    limits: StoreLimits,
    panic: Option<String>,
}

/// A loaded, pre-instantiated plugin.
pub struct Plugin {
    path: PathBuf,
    pre: InstancePre<HostState>,
    limits: Limits,
}

/// Loads `path`: compiled once per process (and cached on disk across
/// processes), checked for the ABI's exports and version.
pub fn load(path: &Path, limits: Limits) -> Result<Arc<Plugin>, Failure> {
    // Validation, schema resolution and build each load the plugin: the
    // second and third time it is the same, checked one.
    type PluginKey = (PathBuf, u64, Duration, usize);
    static PLUGINS: OnceLock<Mutex<HashMap<PluginKey, Arc<Plugin>>>> = OnceLock::new();
    static LOADED: OnceLock<Mutex<HashMap<(PathBuf, u64), Module>>> = OnceLock::new();
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Load(format!("cannot read {}: {e}", path.display())))?;
    let engine = engine();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    let key = h.finish();
    let plugin_key = (path.to_path_buf(), key, limits.timeout, limits.memory);
    let plugins = PLUGINS.get_or_init(Default::default);
    if let Some(p) = plugins.lock().ok().and_then(|m| m.get(&plugin_key).cloned()) {
        return Ok(p);
    }
    let cache = LOADED.get_or_init(Default::default);
    let cached = cache.lock().ok().and_then(|m| m.get(&(path.to_path_buf(), key)).cloned());
    let module = match cached {
        Some(m) => m,
        None => {
            let m = compile(engine, &bytes, key).map_err(|e| {
                Failure::Load(format!("{} is not a valid WebAssembly module: {e}", path.display()))
            })?;
            if let Ok(mut c) = cache.lock() {
                c.insert((path.to_path_buf(), key), m.clone());
            }
            m
        }
    };
    check_exports(&module).map_err(|m| Failure::Load(format!("{}: {m}", path.display())))?;
    let mut linker: Linker<HostState> = Linker::new(engine);
    define_host(&mut linker).map_err(|e| Failure::Load(e.to_string()))?;
    // Anything else the module imports (files, sockets, environment) is
    // not granted: calling it traps with the import's name.
    linker.define_unknown_imports_as_traps(&module).map_err(|e| Failure::Load(e.to_string()))?;
    let pre = linker.instantiate_pre(&module).map_err(|e| Failure::Load(e.to_string()))?;
    let plugin = Plugin { path: path.to_path_buf(), pre, limits };
    // The ABI version is checked by calling it.
    plugin.check_version()?;
    let plugin = Arc::new(plugin);
    if let Ok(mut m) = plugins.lock() {
        m.insert(plugin_key, plugin.clone());
    }
    Ok(plugin)
}

/// Compiles, or reads the compiled form from the on-disk cache.
///
/// A compiled module is native code: `Module::deserialize` on bytes an
/// attacker chose runs their code. The cache is therefore used only in a
/// directory this process's user owns and nobody else may enter (mode
/// 0700, created so), and each file carries the SHA-256 of what we wrote,
/// checked before deserializing: a file we did not write (or a corrupt one)
/// is refused, logged, and the module compiled afresh.
fn compile(engine: &Engine, bytes: &[u8], key: u64) -> wasmtime::Result<Module> {
    compile_in(engine, bytes, key, cache_dir())
}

// The one `unsafe` block of the crate: deserializing compiled code.
#[allow(unsafe_code)]
fn compile_in(engine: &Engine, bytes: &[u8], key: u64, dir: Option<PathBuf>) -> wasmtime::Result<Module> {
    let dir = dir.and_then(|d| private_dir(&d));
    let file = dir.as_ref().map(|d| d.join(format!("{key:016x}.cwasm")));
    if let Some(f) = &file
        && let Ok(stored) = std::fs::read(f)
    {
        match verified(&stored) {
            Some(payload) => {
                // SAFETY: these bytes are what this code wrote with
                // `Module::serialize` for an engine with the same
                // compatibility hash (in the file name): their SHA-256 was
                // checked, in a directory only our user can write.
                if let Ok(m) = unsafe { Module::deserialize(engine, payload) } {
                    return Ok(m);
                }
            }
            None => {
                tracing::warn!(file = %f.display(), "refusing a compiled-module cache file this process did not write; compiling afresh")
            }
        }
    }
    let m = Module::new(engine, bytes)?;
    if let (Some(f), Ok(b)) = (file, m.serialize()) {
        let mut stored = Sha256::digest(&b).to_vec();
        stored.extend_from_slice(&b);
        // Write then rename: a concurrent reader never sees half a file.
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, stored).is_ok() {
            let _ = std::fs::rename(&tmp, &f);
        }
    }
    Ok(m)
}

/// The payload of a cache file whose SHA-256 header matches it.
fn verified(stored: &[u8]) -> Option<&[u8]> {
    let (digest, payload) = stored.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

/// `dir`, created with mode 0700 if missing, if it is a directory owned by
/// this process's user that nobody else may enter; else `None` (logged
/// once): the cache is then not used.
fn private_dir(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Some(parent) = dir.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    // /proc/self belongs to the process's effective user.
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    let m = std::fs::symlink_metadata(dir).ok()?;
    let private = m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0;
    if !private {
        WARNED.call_once(|| {
            tracing::warn!(
                dir = %dir.display(),
                "the compiled-module cache directory is not private to this user (owner {}, mode {:o}); not using it",
                m.uid(),
                m.mode() & 0o777
            )
        });
        return None;
    }
    Some(dir.to_path_buf())
}

/// `$SPILLWAY_WASM_CACHE`, else `$XDG_CACHE_HOME/spillway/wasm`, else
/// `~/.cache/spillway/wasm`; `off` disables it.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("SPILLWAY_WASM_CACHE") {
        Some(v) if v == "off" => return None,
        Some(v) => return Some(PathBuf::from(v)),
        None => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("spillway").join("wasm"))
}

fn check_exports(module: &Module) -> Result<(), String> {
    let want = ["abi_version", "alloc", "dealloc", "init", "process", "memory"];
    let have: Vec<&str> = module.exports().map(|e| e.name()).collect();
    let missing: Vec<&str> = want.iter().copied().filter(|w| !have.contains(w)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not a Spillway plugin: it does not export {} (build it with spillway-sdk, see docs/plugins.md)",
            missing.join(", ")
        ))
    }
}

fn define_host(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // spillway.panic_message(ptr, len): the SDK's panic hook, so that a
    // panic's message reaches the logs instead of a bare `unreachable`.
    linker.func_wrap("spillway", "panic_message", |mut c: Caller<'_, HostState>, ptr: u32, len: u32| {
        let msg = read_guest(&mut c, ptr, len.min(4096)).map(|b| String::from_utf8_lossy(&b).into_owned());
        c.data_mut().panic = msg;
    })?;
    // WASI preview 1, the part every wasm32-wasip1 program needs: clocks,
    // random, and stdout/stderr into our log. Nothing else is granted.
    let w = "wasi_snapshot_preview1";
    linker.func_wrap(
        w,
        "clock_time_get",
        |mut c: Caller<'_, HostState>, id: u32, _prec: u64, out: u32| -> i32 {
            let ns = match id {
                0 => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                _ => monotonic_ns(),
            };
            if write_guest(&mut c, out, &ns.to_le_bytes()) { 0 } else { 21 }
        },
    )?;
    linker.func_wrap(w, "clock_res_get", |mut c: Caller<'_, HostState>, _id: u32, out: u32| -> i32 {
        if write_guest(&mut c, out, &1u64.to_le_bytes()) { 0 } else { 21 }
    })?;
    linker.func_wrap(w, "random_get", |mut c: Caller<'_, HostState>, buf: u32, len: u32| -> i32 {
        let mut r = spillway_core::rand::SplitMix64::new(monotonic_ns() ^ 0x5eed);
        let bytes: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
        if write_guest(&mut c, buf, &bytes) { 0 } else { 21 }
    })?;
    // No environment and no arguments: zero of each.
    fn none(c: &mut Caller<'_, HostState>, n: u32, size: u32) -> i32 {
        if write_guest(c, n, &0u32.to_le_bytes()) && write_guest(c, size, &0u32.to_le_bytes()) {
            0
        } else {
            21
        }
    }
    linker.func_wrap(w, "environ_sizes_get", |mut c: Caller<'_, HostState>, n: u32, size: u32| -> i32 {
        none(&mut c, n, size)
    })?;
    linker.func_wrap(w, "environ_get", |_c: Caller<'_, HostState>, _a: u32, _b: u32| -> i32 { 0 })?;
    linker.func_wrap(w, "args_sizes_get", |mut c: Caller<'_, HostState>, n: u32, size: u32| -> i32 {
        none(&mut c, n, size)
    })?;
    linker.func_wrap(w, "args_get", |_c: Caller<'_, HostState>, _a: u32, _b: u32| -> i32 { 0 })?;
    linker.func_wrap(w, "sched_yield", |_c: Caller<'_, HostState>| -> i32 { 0 })?;
    linker.func_wrap(w, "proc_exit", |_c: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!("the plugin called exit({code})")))
    })?;
    linker.func_wrap(
        w,
        "fd_write",
        |mut c: Caller<'_, HostState>, fd: u32, iovs: u32, n: u32, written: u32| -> i32 {
            if fd != 1 && fd != 2 {
                return 8; // EBADF: no files are granted
            }
            let mut text = Vec::new();
            for i in 0..n.min(64) {
                let Some(iov) = read_guest(&mut c, iovs + i * 8, 8) else { return 21 };
                let ptr = u32::from_le_bytes(iov[..4].try_into().expect("4"));
                let len = u32::from_le_bytes(iov[4..].try_into().expect("4"));
                let Some(b) = read_guest(&mut c, ptr, len.min(65536)) else { return 21 };
                text.extend_from_slice(&b);
            }
            let s = String::from_utf8_lossy(&text);
            for line in s.lines().filter(|l| !l.is_empty()) {
                tracing::info!(fd, "plugin: {line}");
            }
            if write_guest(&mut c, written, &(text.len() as u32).to_le_bytes()) { 0 } else { 21 }
        },
    )?;
    Ok(())
}

fn monotonic_ns() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

fn guest_memory(c: &mut Caller<'_, HostState>) -> Option<Memory> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn read_guest(c: &mut Caller<'_, HostState>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let m = guest_memory(c)?;
    m.data(&c).get(ptr as usize..ptr as usize + len as usize).map(<[u8]>::to_vec)
}

fn write_guest(c: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> bool {
    let Some(m) = guest_memory(c) else { return false };
    match m.data_mut(c).get_mut(ptr as usize..ptr as usize + bytes.len()) {
        Some(d) => {
            d.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// What crosses the boundary, as the plugin declared at init.
#[derive(Debug)]
struct Shape {
    /// Input columns sent; all when `None`.
    projection: Option<Vec<usize>>,
    output: OutputMode,
    /// The full output schema.
    schema: SchemaRef,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OutputMode {
    /// The reply is the output batch.
    Full,
    /// The reply's columns are appended to (or replace those of) the input.
    Append,
    /// The reply is a `keep` mask over the input.
    Mask,
}

impl Shape {
    /// Reads the init reply: [u32 LE length][shape JSON][IPC reply schema].
    fn parse(reply: &[u8], input: &SchemaRef) -> Result<Shape, Failure> {
        let bad = |m: String| Failure::Malformed(format!("init reply: {m}"));
        let n =
            u32::from_le_bytes(reply.get(..4).ok_or_else(|| bad("too short".into()))?.try_into().expect("4"))
                as usize;
        let meta: serde_json::Value =
            serde_json::from_slice(reply.get(4..4 + n).ok_or_else(|| bad("too short".into()))?)
                .map_err(|e| bad(format!("shape is not JSON: {e}")))?;
        let (reply_schema, _) = read_ipc(&reply[4 + n..])?;
        let projection = match meta.get("reads").and_then(|r| r.as_array()) {
            None => None,
            Some(cols) => Some(
                cols.iter()
                    .map(|c| {
                        let name = c.as_str().unwrap_or_default();
                        input.index_of(name).map_err(|_| {
                            Failure::Load(format!(
                                "the plugin reads column `{name}`, which its input does not have"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let output = match meta.get("output").and_then(|o| o.as_str()) {
            Some("full") | None => OutputMode::Full,
            Some("append") => OutputMode::Append,
            Some("mask") => OutputMode::Mask,
            Some(o) => return Err(bad(format!("unknown output mode `{o}`"))),
        };
        let schema = match output {
            OutputMode::Full => reply_schema,
            OutputMode::Append => {
                let mut fields: Vec<Arc<arrow::datatypes::Field>> = input.fields().iter().cloned().collect();
                for f in reply_schema.fields() {
                    match input.index_of(f.name()) {
                        Ok(i) => fields[i] = f.clone(),
                        Err(_) => fields.push(f.clone()),
                    }
                }
                Arc::new(arrow::datatypes::Schema::new(fields))
            }
            OutputMode::Mask => {
                let ok = reply_schema.fields().len() == 1
                    && reply_schema.field(0).data_type() == &arrow::datatypes::DataType::Boolean;
                if !ok {
                    return Err(bad("a mask reply must be one boolean column".into()));
                }
                input.clone()
            }
        };
        Ok(Shape { projection, output, schema })
    }

    /// The plugin's reply to `input`, made into the output batch.
    fn assemble(&self, input: &RecordBatch, reply: RecordBatch) -> Result<RecordBatch, Failure> {
        if self.output != OutputMode::Full && reply.num_rows() != input.num_rows() {
            return Err(Failure::Malformed(format!(
                "{} rows in the reply for {} rows sent",
                reply.num_rows(),
                input.num_rows()
            )));
        }
        let m = |e: arrow::error::ArrowError| Failure::Malformed(e.to_string());
        match self.output {
            OutputMode::Full => Ok(reply),
            OutputMode::Append => {
                let mut cols = input.columns().to_vec();
                for (f, c) in reply.schema().fields().iter().zip(reply.columns()) {
                    match input.schema().index_of(f.name()) {
                        Ok(i) => cols[i] = c.clone(),
                        Err(_) => cols.push(c.clone()),
                    }
                }
                RecordBatch::try_new(self.schema.clone(), cols).map_err(m)
            }
            OutputMode::Mask => {
                let mask = reply
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::BooleanArray>()
                    .ok_or_else(|| Failure::Malformed("the mask is not boolean".into()))?;
                arrow::compute::filter_record_batch(input, mask).map_err(m)
            }
        }
    }
}

/// A live instance with its own store.
pub struct PluginInstance {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: TypedFunc<(u32, u32), ()>,
    process: TypedFunc<(u32, u32), u64>,
    limits: Limits,
    buf: Vec<u8>,
    shape: Option<Shape>,
}

impl Plugin {
    fn new_store(&self) -> Store<HostState> {
        let limits =
            StoreLimitsBuilder::new().memory_size(self.limits.memory).trap_on_grow_failure(true).build();
        let mut store = Store::new(engine(), HostState { limits, panic: None });
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store
    }

    fn check_version(&self) -> Result<(), Failure> {
        let mut store = self.new_store();
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        let inst = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| Failure::Load(format!("cannot instantiate: {e}")))?;
        let v = inst
            .get_typed_func::<(), u32>(&mut store, "abi_version")
            .map_err(|e| Failure::Load(format!("`abi_version` has the wrong signature: {e}")))?
            .call(&mut store, ())
            .map_err(|e| Failure::Load(format!("`abi_version` failed: {e}")))?;
        if v != ABI_VERSION {
            return Err(Failure::Load(format!(
                "{} speaks plugin ABI version {v}, this spillway speaks version {ABI_VERSION}: rebuild it with a matching spillway-sdk",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// A fresh instance, initialised with the plugin's config for batches
    /// of `input`; returns it and the output schema it declares.
    pub fn instantiate(
        &self,
        config: &[u8],
        input: &SchemaRef,
    ) -> Result<(PluginInstance, SchemaRef), Failure> {
        let mut store = self.new_store();
        store.set_epoch_deadline(deadline_ticks(self.limits.timeout));
        let inst = self.pre.instantiate(&mut store).map_err(|e| classify(&store, e, self.limits))?;
        let memory = inst
            .get_memory(&mut store, "memory")
            .ok_or_else(|| Failure::Load("no `memory` export".into()))?;
        let alloc = typed(&inst, &mut store, "alloc")?;
        let dealloc = typed(&inst, &mut store, "dealloc")?;
        let init: TypedFunc<(u32, u32), u64> = typed(&inst, &mut store, "init")?;
        let process = typed(&inst, &mut store, "process")?;
        let mut live = PluginInstance {
            store,
            memory,
            alloc,
            dealloc,
            process,
            limits: self.limits,
            buf: Vec::new(),
            shape: None,
        };
        // init: [u32 LE config length][config JSON][IPC stream: the schema]
        let mut msg = (config.len() as u32).to_le_bytes().to_vec();
        msg.extend_from_slice(config);
        msg.extend_from_slice(&ipc(input, None).map_err(|e| Failure::Malformed(e.to_string()))?);
        let reply = live.call(init, &msg)?;
        let shape = Shape::parse(&reply, input)?;
        let schema = shape.schema.clone();
        live.shape = Some(shape);
        Ok((live, schema))
    }
}

fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    inst: &wasmtime::Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<TypedFunc<P, R>, Failure> {
    inst.get_typed_func(store, name).map_err(|e| {
        Failure::Load(format!("export `{name}` has the wrong signature (see docs/wasm-abi.md): {e}"))
    })
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// Names what went wrong in a call.
fn classify(store: &Store<HostState>, e: wasmtime::Error, limits: Limits) -> Failure {
    if let Some(t) = e.downcast_ref::<Trap>() {
        if *t == Trap::Interrupt {
            return Failure::Timeout(limits.timeout);
        }
        if let Some(p) = &store.data().panic {
            return Failure::Panic(p.clone());
        }
        return Failure::Trap(t.to_string());
    }
    let text = format!("{e:#}");
    if text.contains("memory") && (text.contains("grow") || text.contains("limit")) {
        return Failure::Memory(limits.memory);
    }
    if let Some(p) = &store.data().panic {
        return Failure::Panic(p.clone());
    }
    Failure::Trap(text)
}

impl PluginInstance {
    /// Runs `process` on one batch.
    pub fn process(&mut self, batch: &RecordBatch) -> Result<RecordBatch, Failure> {
        let projection = self
            .shape
            .as_ref()
            .ok_or_else(|| Failure::Load("process before init".into()))?
            .projection
            .as_deref();
        let sent = match projection {
            Some(p) => batch.project(p).map_err(|e| Failure::Malformed(e.to_string()))?,
            None => batch.clone(),
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        ipc_into(&sent.schema(), Some(&sent), &mut buf).map_err(|e| Failure::Malformed(e.to_string()))?;
        let f = self.process.clone();
        let reply = self.call(f, &buf);
        self.buf = buf;
        let (_, out) = read_ipc_owned(reply?)?;
        let out = out.ok_or_else(|| Failure::Malformed("the reply holds a schema but no batch".into()))?;
        self.shape.as_ref().expect("checked above").assemble(batch, out)
    }

    /// Copies `msg` in, calls `f(ptr, len)`, copies the reply out.
    fn call(&mut self, f: TypedFunc<(u32, u32), u64>, msg: &[u8]) -> Result<Vec<u8>, Failure> {
        let limits = self.limits;
        self.store.set_epoch_deadline(deadline_ticks(limits.timeout));
        self.store.data_mut().panic = None;
        let len = u32::try_from(msg.len()).map_err(|_| Failure::Malformed("batch over 4 GiB".into()))?;
        let ptr = self.alloc.call(&mut self.store, len).map_err(|e| classify(&self.store, e, limits))?;
        self.memory
            .data_mut(&mut self.store)
            .get_mut(ptr as usize..ptr as usize + msg.len())
            .ok_or_else(|| Failure::Malformed(format!("alloc returned {ptr}, outside its memory")))?
            .copy_from_slice(msg);
        // The message now belongs to the plugin (it frees it).
        let packed = f.call(&mut self.store, (ptr, len)).map_err(|e| classify(&self.store, e, limits))?;
        let (rptr, rlen) = ((packed >> 32) as usize, packed as u32 as usize);
        let (status, body) = {
            let mem = self.memory.data(&self.store);
            let reply = mem.get(rptr..rptr + rlen).ok_or_else(|| {
                Failure::Malformed(format!("reply at {rptr}+{rlen} is outside the plugin's memory"))
            })?;
            match reply.split_first() {
                // One copy, out of the plugin's memory into an aligned buffer
                // that the decoded arrays then share.
                Some((s, b)) => (*s, b.to_vec()),
                None => return Err(Failure::Malformed("empty reply".into())),
            }
        };
        let _ = self.dealloc.call(&mut self.store, (rptr as u32, rlen as u32));
        match status {
            0 => Ok(body),
            1 => Err(Failure::Plugin(String::from_utf8_lossy(&body).into_owned())),
            s => Err(Failure::Malformed(format!("unknown reply status {s}"))),
        }
    }
}

fn ipc(schema: &SchemaRef, batch: Option<&RecordBatch>) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    ipc_into(schema, batch, &mut out)?;
    Ok(out)
}

fn ipc_into(
    schema: &SchemaRef,
    batch: Option<&RecordBatch>,
    out: &mut Vec<u8>,
) -> Result<(), arrow::error::ArrowError> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(out, schema)?;
    if let Some(b) = batch {
        w.write(b)?;
    }
    w.finish()
}

/// Decodes an IPC stream from the plugin.
fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Option<RecordBatch>), Failure> {
    read_ipc_owned(bytes.to_vec())
}

/// Decodes an IPC stream from the plugin without copying the arrays out
/// of `bytes`, validating everything (the plugin is not trusted).
fn read_ipc_owned(bytes: Vec<u8>) -> Result<(SchemaRef, Option<RecordBatch>), Failure> {
    let bad = |e: arrow::error::ArrowError| Failure::Malformed(format!("not an Arrow IPC stream: {e}"));
    let mut buf = arrow::buffer::Buffer::from_vec(bytes);
    let mut d = arrow::ipc::reader::StreamDecoder::new();
    let mut batch = None;
    while !buf.is_empty() {
        if let Some(b) = d.decode(&mut buf).map_err(bad)? {
            batch = Some(b);
        }
    }
    d.finish().map_err(bad)?;
    let schema = d.schema().ok_or_else(|| Failure::Malformed("an IPC stream without a schema".into()))?;
    Ok((schema, batch))
}

/// Runs `f`, telling a multi-threaded tokio runtime that this thread will
/// be busy for a while (a plugin call may run up to its deadline).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const A: &str = r#"(module (func (export "a") (result i32) i32.const 1))"#;
    const B: &str = r#"(module (func (export "b") (result i32) i32.const 2))"#;

    fn exports(m: &Module) -> Vec<String> {
        m.exports().map(|e| e.name().to_string()).collect()
    }

    #[test]
    fn the_cache_refuses_a_file_it_did_not_write_and_a_directory_others_may_enter() {
        let engine = engine();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wasm");
        let file = dir.join(format!("{:016x}.cwasm", 7u64));
        // Written by us: private directory, a verified file, read back.
        let m = compile_in(engine, A.as_bytes(), 7, Some(dir.clone())).unwrap();
        assert_eq!(exports(&m), ["a"]);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(verified(&std::fs::read(&file).unwrap()).is_some());
        assert_eq!(exports(&compile_in(engine, A.as_bytes(), 7, Some(dir.clone())).unwrap()), ["a"]);
        // Someone else's file under that name — a real compiled module, of
        // other code — is refused: the module is compiled from its bytes.
        std::fs::write(&file, Module::new(engine, B).unwrap().serialize().unwrap()).unwrap();
        assert_eq!(exports(&compile_in(engine, A.as_bytes(), 7, Some(dir.clone())).unwrap()), ["a"]);
        assert!(verified(&std::fs::read(&file).unwrap()).is_some(), "replaced by ours");
        // A directory others may write is not used at all.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&dir).is_none());
        std::fs::remove_file(&file).unwrap();
        assert_eq!(exports(&compile_in(engine, A.as_bytes(), 7, Some(dir.clone())).unwrap()), ["a"]);
        assert!(!file.exists(), "nothing is written to a directory that is not private");
    }
}
