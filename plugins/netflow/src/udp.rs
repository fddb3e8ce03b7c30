//! `netflow` source: NetFlow/IPFIX over UDP.
//!
//! `workers` sockets bound to the same address with `SO_REUSEPORT`; the
//! kernel spreads exporters over them by their address and port, so each
//! exporter's templates live in one worker. Each worker is a thread that
//! receives up to 64 datagrams per `recvmmsg` call (the [`crate::recv`]
//! module, the only one with `unsafe` code) and decodes them straight into
//! the flow schema's column buffers.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};
use spillway_core::ack::Acks;
use spillway_core::addr::Addr;
use spillway_core::component::{ComponentError, Source, SourceContext};
use spillway_core::config::{ByteSize, HumanDuration};
use spillway_core::events::Events;
use spillway_core::exporters::{SeenCache, SeenExporters};
use spillway_core::ledger::DropReason;
use spillway_core::registry::{BuildContext, BuildError, FieldIssue, SourceConfig};
use spillway_core::{Batch, BatchMeta};

use crate::collector::{self, Collector, SamplingSettings, SourceMetrics, TemplateSettings};
use crate::recv::MmsgBufs;

/// Config of the `netflow` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowConfig {
    /// Address to listen on, IPv4 or IPv6 (`[::]:2055` takes both families).
    pub listen: SocketAddr,
    /// Receiving sockets and decoding threads (`SO_REUSEPORT`).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Kernel receive buffer per socket. The kernel caps it at
    /// `net.core.rmem_max` unless the process has `CAP_NET_ADMIN` (then
    /// the source asks past the cap, `SO_RCVBUFFORCE`); the source logs what
    /// it got, and warns when it is less.
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Rows per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
    /// Longest a decoded record waits for its batch to fill.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    /// At a stop, how long the workers may take to read what the kernel had
    /// already queued. The sockets refuse new datagrams from the moment the
    /// stop begins (counted as `stopping`), so a live sender cannot keep the
    /// collector from exiting; what is still queued at the deadline is
    /// dropped and counted the same way.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// Exporter prefixes accepted; everything else is dropped and counted
    /// (`not_allowed`). All exporters when empty.
    #[serde(default)]
    pub allow: Vec<collector::Prefix>,
    /// Template state bounds and timeout.
    #[serde(default)]
    pub templates: TemplateSettings,
    /// Sampling rates from the config.
    #[serde(default)]
    pub sampling: SamplingSettings,
    /// More IPFIX Information Elements as columns, by IANA name
    /// (`flowEndReason`, `postNATSourceIPv4Address`, …), named in snake case.
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// Template and sampling state shared with the other collectors of a
    /// host (`type: file`) or a fleet (`type: kafka`): docs/deploy.md.
    #[serde(default)]
    pub shared_state: Option<crate::shared_state::SharedStateConfig>,
    /// Relay instead of decoding: one record per datagram (the datagram
    /// schema: receive time, exporter address and port, the address it was
    /// sent to, the payload), for a `kafka` sink with `encoding: datagram`
    /// and a `netflow_decode` transform behind the `kafka` source.
    #[serde(default)]
    pub relay: bool,
    /// What the source decodes: NetFlow here, sFlow for an `sflow` source.
    #[serde(skip)]
    pub protocol: collector::Protocol,
    /// sFlow sequence positions kept (an `sflow` source's `max_streams`).
    #[serde(skip, default = "default_max_streams")]
    pub max_streams: usize,
    /// Interval of the `completeness` output's rows.
    #[serde(default = "collector::default_completeness_interval")]
    pub completeness_interval: HumanDuration,
    /// A write-ahead journal on local disk: every datagram is appended as
    /// it arrives and decoded from there, so a crash, a sink outage or a
    /// slow disk costs nothing (docs/operations.md, "Durability").
    #[serde(default)]
    pub journal: Option<crate::journaled::JournalConfig>,
}

fn default_max_streams() -> usize {
    crate::sflow::DecoderSettings::default().max_streams
}

/// Config of the `sflow` source: sFlow v5 over UDP, on the `netflow`
/// source's receive path. sFlow describes itself in every datagram, so there
/// are no template settings and no shared state to configure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowSourceConfig {
    /// Address to listen on (`0.0.0.0:6343` is sFlow's port).
    pub listen: SocketAddr,
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default = "default_receive_buffer")]
    pub receive_buffer: ByteSize,
    #[serde(default = "default_batch_size")]
    pub batch_size: spillway_core::config::BatchSize,
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// Agent prefixes accepted (by the datagram's source address).
    #[serde(default)]
    pub allow: Vec<collector::Prefix>,
    /// Rates from the config: an override wins over the sample's own rate;
    /// a default serves samples that announce rate 0.
    #[serde(default)]
    pub sampling: SamplingSettings,
    /// Most sequence positions kept ((agent, sub-agent) datagram streams
    /// and (agent, source id) sample streams); the least recently used is
    /// evicted beyond it (counted).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Relay instead of decoding, as the `netflow` source's `relay`.
    #[serde(default)]
    pub relay: bool,
    /// Interval of the `completeness` output's rows.
    #[serde(default = "collector::default_completeness_interval")]
    pub completeness_interval: HumanDuration,
    /// A write-ahead journal, as the `netflow` source's.
    #[serde(default)]
    pub journal: Option<crate::journaled::JournalConfig>,
}

impl SflowSourceConfig {
    /// The `netflow` source's config that receives this.
    fn as_netflow(&self) -> NetflowConfig {
        NetflowConfig {
            listen: self.listen,
            workers: self.workers,
            receive_buffer: self.receive_buffer,
            batch_size: self.batch_size,
            flush_interval: self.flush_interval,
            drain_timeout: self.drain_timeout,
            allow: self.allow.clone(),
            templates: TemplateSettings::default(),
            sampling: self.sampling.clone(),
            extra_fields: Vec::new(),
            shared_state: None,
            relay: self.relay,
            protocol: collector::Protocol::Sflow,
            max_streams: self.max_streams,
            completeness_interval: self.completeness_interval,
            journal: self.journal.clone(),
        }
    }
}

impl SourceConfig for SflowSourceConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = self.as_netflow().validate();
        if self.max_streams == 0 {
            v.push(FieldIssue::new("max_streams", "must be at least 1"));
        }
        v
    }

    fn output_schema(&self) -> SchemaRef {
        self.as_netflow().output_schema()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        self.as_netflow().named_outputs()
    }

    fn reports_ready(&self) -> bool {
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        self.as_netflow().build(cx)
    }
}

spillway_core::register_source! {
    config: SflowSourceConfig,
    name: "sflow",
    description: "Receives sFlow v5 over UDP: flow samples as flow records, counter samples on `counters` (SO_REUSEPORT workers, recvmmsg).",
    example: "type: sflow\nlisten: \"0.0.0.0:6343\"\nworkers: 2\nallow: [\"10.0.0.0/8\"]\n",
}

fn default_workers() -> usize {
    2
}
fn default_receive_buffer() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_batch_size() -> spillway_core::config::BatchSize {
    spillway_core::config::BatchSize::new(8192)
}
fn default_flush_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(200))
}
fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

impl SourceConfig for NetflowConfig {
    fn validate(&self) -> Vec<FieldIssue> {
        let mut v = collector::validate(&self.templates, &self.extra_fields);
        if let Some(s) = &self.shared_state {
            v.extend(s.issues());
            if self.relay {
                v.push(FieldIssue::new(
                    "shared_state",
                    "a relay decodes nothing, so it has no state to share",
                ));
            }
        }
        if let Some(j) = &self.journal {
            v.extend(j.issues());
        }
        if self.workers == 0 || self.workers > 64 {
            v.push(FieldIssue::new("workers", "must be between 1 and 64"));
        }
        if self.flush_interval.get() < Duration::from_millis(1) {
            v.push(FieldIssue::new("flush_interval", "must be at least 1ms"));
        }
        if self.drain_timeout.get() > Duration::from_secs(600) {
            v.push(FieldIssue::new("drain_timeout", "must be at most 10m"));
        }
        v
    }

    fn output_schema(&self) -> SchemaRef {
        if self.relay {
            crate::relay::datagram_schema()
        } else {
            collector::output_schema(&self.extra_fields)
        }
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        match (self.relay, self.protocol) {
            (true, _) => Vec::new(),
            (false, collector::Protocol::Netflow) => collector::named_outputs(),
            (false, _) => collector::sflow_named_outputs(),
        }
    }

    fn reports_ready(&self) -> bool {
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        let allow = collector::allowlist(&self.allow);
        // Other components (an `snmp` source with `discover`) read which
        // exporters this source has heard from.
        let seen = Arc::new(SeenExporters::default());
        cx.publish(seen.clone());
        let mut cfg = self.clone();
        if let Some(j) = &mut cfg.journal {
            j.dir = cx.resolve(&j.dir);
        }
        Ok(Box::new(Netflow { cfg, allow, seen }))
    }
}

spillway_core::register_source! {
    config: NetflowConfig,
    name: "netflow",
    description: "Receives NetFlow v5/v9 and IPFIX over UDP (SO_REUSEPORT workers, recvmmsg).",
    example: "type: netflow\nlisten: \"0.0.0.0:2055\"\nworkers: 2\nallow: [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n",
}

struct Netflow {
    cfg: NetflowConfig,
    allow: Vec<ipnet::IpNet>,
    seen: Arc<SeenExporters>,
}

/// What a worker hands to the async side.
enum Sent {
    Flows(RecordBatch, i64, i64, Acks),
    Loss(RecordBatch),
    Counters(RecordBatch),
    Completeness(RecordBatch),
}

fn bind(cfg: &NetflowConfig, name: &str) -> std::io::Result<Socket> {
    bind_socket(cfg.listen, cfg.receive_buffer.get(), name)
}

/// A receive socket as every worker has one: `SO_REUSEPORT` (one per
/// worker on one address), dual-stack on IPv6, a 50 ms read timeout (so
/// that a worker notices a stop), and a receive buffer of `receive_buffer`
/// bytes (a warning when the kernel grants less).
fn bind_socket(listen: SocketAddr, receive_buffer: u64, name: &str) -> std::io::Result<Socket> {
    let domain = if listen.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    if listen.is_ipv6() {
        s.set_only_v6(false)?;
    }
    let want = receive_buffer.min(i32::MAX as u64 / 2) as usize;
    s.set_recv_buffer_size(want)?;
    // Linux reports twice what it grants (it counts bookkeeping).
    let mut got = s.recv_buffer_size()? / 2;
    if got < want && crate::recv::force_recv_buffer(&s, want) {
        got = s.recv_buffer_size()? / 2;
    }
    if got < want {
        tracing::warn!(
            component = name,
            requested = want,
            granted = got,
            "the kernel capped the UDP receive buffer; raise net.core.rmem_max (sysctl) to absorb bursts"
        );
    }
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.bind(&listen.into())?;
    Ok(s)
}

/// What a `netflow` source replaced by a reload leaves its successor: its
/// port claim, its bound sockets (datagrams wait in them meanwhile, none is
/// lost) and each worker's decoder (templates, sampling, sequence positions
/// and parked data).
struct Inherited {
    listen: SocketAddr,
    claim: std::fs::File,
    workers: Vec<(Socket, crate::decode::Decoder, Option<WorkerJournal>)>,
    /// Kernel drops already counted on these sockets.
    drops_seen: u64,
    /// The journal directory the workers use.
    journal: Option<std::path::PathBuf>,
}

/// How the workers are asked to stop.
const RUNNING: u8 = 0;
/// For good: refuse new datagrams, read what is queued, close.
const STOP: u8 = 1;
/// For a successor: stop reading, keep everything.
const HAND_OVER: u8 = 2;

#[async_trait]
impl Source for Netflow {
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext {
            name,
            mut out,
            mut named,
            shutdown,
            events,
            metrics,
            ready,
            handover,
            predecessor,
        } = cx;
        let mut loss_out = named.take("loss");
        let mut counters_out = named.take("counters");
        let mut completeness_out = named.take("completeness");
        // Drops that belong to no exporter (the kernel's), for the
        // completeness output.
        let mut unattributed = completeness_out
            .is_some()
            .then(|| crate::completeness::Completeness::new(self.cfg.completeness_interval.get()));
        // A reload replacing the source before us leaves its sockets, when
        // they are what we need: the same address, as many workers.
        let inherited = match predecessor {
            Some(p) => p.receive().await.and_then(|b| b.downcast::<Inherited>().ok()).map(|b| *b),
            None => None,
        };
        let inherited = match inherited {
            Some(i)
                if i.listen == self.cfg.listen
                    && i.workers.len() == self.cfg.workers
                    && i.journal == self.cfg.journal.as_ref().map(|j| j.dir.clone()) =>
            {
                Some(i)
            }
            Some(i) => {
                let n = discard_inherited(i, &events);
                note(&mut unattributed, Some((DropReason::Stopping, n)));
                None
            }
            None => None,
        };
        let extras = crate::iana::resolve_all(&self.cfg.extra_fields).map_err(ComponentError::new)?;
        let decoder_cfg =
            collector::decoder_config(&self.cfg.templates, &self.cfg.sampling, &extras, self.cfg.workers);
        let mut inherited_journals = Vec::new();
        let (claim, workers, drops_seen) = match inherited {
            Some(i) => {
                tracing::info!(component = %name, listen = %self.cfg.listen, "reload: taking over the sockets and decoder state of the source this one replaces");
                let workers = i
                    .workers
                    .into_iter()
                    .map(|(s, mut d, j)| {
                        d.reconfigure(decoder_cfg.clone());
                        inherited_journals.push(j);
                        (s, Some(d))
                    })
                    .collect();
                (i.claim, workers, i.drops_seen)
            }
            None => {
                // Claimed before anything is bound, so two collectors started
                // at the same moment cannot both pass the check below and
                // then both bind.
                let claim = claim_port(self.cfg.listen)?;
                if let Some(inode) = already_bound(self.cfg.listen) {
                    return Err(ComponentError::new(format!(
                        "another socket (inode {inode}) is already bound to {}; with SO_REUSEPORT the kernel would \
                         split the traffic between it and us. Stop the other collector or choose another address",
                        self.cfg.listen
                    )));
                }
                let mut workers = Vec::new();
                for _ in 0..self.cfg.workers {
                    let s = bind(&self.cfg, &name).map_err(|e| {
                        ComponentError::new(format!("cannot listen on {}: {e}", self.cfg.listen))
                    })?;
                    workers.push((s, None));
                }
                (claim, workers, 0)
            }
        };
        let rcvbuf = metrics
            .gauge("spillway_netflow_receive_buffer_bytes", "Kernel receive buffer granted per socket.");
        rcvbuf.set(workers[0].0.recv_buffer_size().unwrap_or(0) as u64 / 2);
        tracing::info!(component = %name, listen = %self.cfg.listen, workers = self.cfg.workers, "listening for {}", self.cfg.protocol.describe());
        // The store is read while the workers receive (see `shared_state`);
        // the source reports ready once every worker has applied it.
        // A journal replays data after a restart; the templates it needs are
        // kept beside it when no store is configured.
        let state_cfg = self.cfg.shared_state.clone().or_else(|| {
            self.cfg.journal.as_ref().filter(|_| !self.cfg.relay).map(|j| {
                crate::shared_state::SharedStateConfig::File {
                    path: j.dir.join("state"),
                    poll_interval: crate::shared_state::default_poll(),
                }
            })
        });
        let mut journals = match &self.cfg.journal {
            // A reload hands over the journals with everything in flight.
            Some(j) if inherited_journals.iter().all(Option::is_some) && !inherited_journals.is_empty() => {
                inherited_journals
                    .into_iter()
                    .map(|w| {
                        w.map(|mut w| {
                            w.cfg = j.clone();
                            w
                        })
                    })
                    .collect()
            }
            Some(j) => {
                open_journals(j, self.cfg.workers, &name, &events, &metrics)?.into_iter().map(Some).collect()
            }
            None => (0..self.cfg.workers).map(|_| None).collect::<Vec<_>>(),
        };
        let (_store, mut shares, warming) = match &state_cfg {
            Some(s) => {
                let (store, shares, warming) =
                    crate::shared_state::start(s, &name, &metrics, self.cfg.workers)
                        .map_err(|e| ComponentError::new(format!("shared state: {e}")))?;
                (Some(store), shares.into_iter().map(Some).collect(), Some(warming))
            }
            None => (None, (0..self.cfg.workers).map(|_| None).collect::<Vec<_>>(), None),
        };
        if warming.is_none() {
            ready.ready();
        }
        let mode = Arc::new(AtomicU8::new(RUNNING));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Sent>(self.cfg.workers * 2);
        let source_metrics = match self.cfg.protocol {
            collector::Protocol::Netflow => SourceMetrics::new(&metrics),
            _ => SourceMetrics::new(&metrics).with_sflow(&metrics),
        };
        let sflow_settings = crate::sflow::DecoderSettings {
            sampling: decoder_cfg.sampling.clone(),
            max_streams: (self.cfg.max_streams / self.cfg.workers).max(1),
        };
        let sockets: Vec<&Socket> = workers.iter().map(|(s, _)| s).collect();
        let drops = KernelDrops::new(&sockets, events.clone(), drops_seen);
        let mut threads = Vec::new();
        for (i, (socket, decoder)) in workers.into_iter().enumerate() {
            let mut collector = match decoder {
                Some(d) => Collector::with_decoder(
                    d,
                    self.cfg.batch_size.get(),
                    &extras,
                    events.clone(),
                    source_metrics.clone(),
                    name.clone(),
                ),
                None => Collector::new(
                    decoder_cfg.clone(),
                    self.cfg.batch_size.get(),
                    &extras,
                    events.clone(),
                    source_metrics.clone(),
                    name.clone(),
                ),
            };
            if loss_out.is_some() {
                collector.enable_loss();
            }
            if counters_out.is_some() {
                collector.enable_counters();
            }
            if completeness_out.is_some() {
                collector.enable_completeness(self.cfg.completeness_interval.get());
            }
            if self.cfg.protocol != collector::Protocol::Netflow {
                collector.set_protocol(self.cfg.protocol, sflow_settings.clone());
            }
            if self.cfg.relay {
                let local = socket.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(self.cfg.listen);
                collector.relay_to(Addr::from(local.ip()), local.port(), self.cfg.batch_size.get());
            }
            let journal = journals[i].take();
            if journal.is_some() {
                collector.enable_journal(&extras);
            }
            let share = shares[i].take();
            if share.is_some() {
                collector.share();
            }
            let w = Worker {
                index: i as u16,
                share,
                socket,
                collector,
                tx: tx.clone(),
                mode: mode.clone(),
                allow: self.allow.clone(),
                flush: self.cfg.flush_interval.get(),
                drain_timeout: self.cfg.drain_timeout.get(),
                events: events.clone(),
                seen: SeenCache::new(self.seen.clone()),
                journal,
            };
            let t = std::thread::Builder::new()
                .name(format!("netflow-{i}"))
                .spawn(move || w.run())
                .map_err(|e| ComponentError::new(format!("cannot start a receive thread: {e}")))?;
            threads.push(t);
        }
        drop(tx);
        let mut drops_tick = tokio::time::interval(Duration::from_secs(1));
        let mut stopping = false;
        let mut warm_pending = warming.is_some();
        loop {
            tokio::select! {
                _ = async { if let Some(w) = &warming { w.wait().await } }, if warm_pending => {
                    warm_pending = false;
                    ready.ready();
                }
                b = rx.recv() => {
                    let sent = match b {
                        Some(Sent::Flows(data, lo, hi, acks)) => {
                            out.send(Batch::new(data, BatchMeta::new(name.clone(), lo, hi), acks)).await
                        }
                        Some(Sent::Loss(data)) => match loss_out.as_mut() {
                            Some(o) => o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await,
                            None => Ok(()),
                        },
                        Some(Sent::Counters(data)) => match counters_out.as_mut() {
                            Some(o) => o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await,
                            None => Ok(()),
                        },
                        Some(Sent::Completeness(data)) => match completeness_out.as_mut() {
                            Some(o) => o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await,
                            None => Ok(()),
                        },
                        None => break,
                    };
                    if sent.is_err() {
                        mode.store(STOP, Ordering::Relaxed);
                        return Err(ComponentError::new("every downstream component has failed"));
                    }
                }
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    if handover.replacing() {
                        mode.store(HAND_OVER, Ordering::Relaxed);
                    } else {
                        // Drops the kernel counts from here on are datagrams
                        // our closed sockets refused, not a full buffer.
                        note(&mut unattributed, drops.poll());
                        drops.refusing.store(true, Ordering::Relaxed);
                        mode.store(STOP, Ordering::Relaxed);
                    }
                }
                _ = drops_tick.tick() => {
                    note(&mut unattributed, drops.poll());
                    if let (Some(c), Some(o)) = (&mut unattributed, completeness_out.as_mut()) {
                        c.roll(now_ns());
                        if let Some(data) = c.take() {
                            let _ = o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await;
                        }
                    }
                }
            }
        }
        note(&mut unattributed, drops.poll());
        if let (Some(c), Some(o)) = (&mut unattributed, completeness_out.as_mut()) {
            c.close();
            if let Some(data) = c.take() {
                let _ = o.send(Batch::new(data, BatchMeta::new(name.clone(), 0, 0), Acks::none())).await;
            }
        }
        // Journaled workers wait for the sinks' acknowledgements, which
        // come once the sinks see the end of our outputs; the wait is off
        // the async workers (a blocked one would hold the very task woken
        // by the end of its input).
        drop((out, loss_out, counters_out, completeness_out));
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().map(|t| t.join()).collect::<Vec<_>>())
                .await
                .unwrap_or_default();
        let left: Vec<_> = joined.into_iter().filter_map(|r| r.ok().flatten()).collect();
        if mode.load(Ordering::Relaxed) == HAND_OVER && left.len() == self.cfg.workers {
            let drops_seen = drops.seen();
            drop(drops);
            handover.give(Box::new(Inherited {
                listen: self.cfg.listen,
                claim,
                workers: left,
                drops_seen,
                journal: self.cfg.journal.as_ref().map(|j| j.dir.clone()),
            }));
        }
        Ok(())
    }
}

/// Counts what the kernel dropped in the completeness rows, as drops that
/// belong to no exporter.
fn note(c: &mut Option<crate::completeness::Completeness>, dropped: Option<(DropReason, u64)>) {
    if let (Some(c), Some((reason, n))) = (c, dropped)
        && n > 0
    {
        c.at(now_ns(), None).drop(reason, n);
    }
}

/// Inherited sockets this source cannot use (another address or number of
/// workers): what they hold is read and counted as `stopping`, then they
/// close.
fn discard_inherited(i: Inherited, events: &Events) -> u64 {
    let mut bufs = MmsgBufs::new();
    let mut n = 0u64;
    for (s, mut d, j) in i.workers {
        // A journal keeps what it holds for its next use.
        drop(j);
        let _ = s.set_nonblocking(true);
        while let Ok(k) = bufs.recv(s.as_raw_fd()) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n += d.drain_parked().len() as u64;
    }
    events.dropped(
        DropReason::Stopping,
        n,
        &"a reload changed the address or the number of workers: what the old sockets held is dropped",
    );
    n
}

struct Worker {
    /// Which worker of the source this is.
    index: u16,
    /// This worker's end of the shared state, when there is one.
    share: Option<crate::shared_state::WorkerShare>,
    socket: Socket,
    collector: Collector,
    tx: tokio::sync::mpsc::Sender<Sent>,
    mode: Arc<AtomicU8>,
    allow: Vec<ipnet::IpNet>,
    flush: Duration,
    drain_timeout: Duration,
    events: Events,
    seen: SeenCache,
    /// This worker's journal, when the source has one.
    journal: Option<WorkerJournal>,
}

/// A worker's journal: it appends, reads back, and tracks what is settled.
struct WorkerJournal {
    writer: Option<spillway_core::journal::Writer>,
    reader: spillway_core::journal::Reader,
    tracker: crate::journaled::Tracker,
    cfg: crate::journaled::JournalConfig,
    metrics: crate::journaled::JournalMetrics,
    /// A batch downstream had no room for yet.
    pending: Option<Sent>,
    /// The journal directory's lock, held while any worker uses it.
    _lock: Arc<std::fs::File>,
}

/// Sends the batch waiting for room, if any; whether downstream has room
/// for more.
fn offer(tx: &tokio::sync::mpsc::Sender<Sent>, pending: &mut Option<Sent>) -> bool {
    let Some(p) = pending.take() else { return true };
    match tx.try_send(p) {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::TrySendError::Full(p)) => {
            *pending = Some(p);
            false
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Records decoded from the journal per turn of the loop, between reads of
/// the socket.
const DECODE_TURN: usize = 256;

/// Opens each worker's journal (locked for this process), counting what a
/// torn tail lost.
fn open_journals(
    cfg: &crate::journaled::JournalConfig,
    workers: usize,
    name: &str,
    events: &Events,
    metrics: &spillway_core::metrics::Metrics,
) -> Result<Vec<WorkerJournal>, ComponentError> {
    let fail = |e: &dyn std::fmt::Display| ComponentError::new(format!("journal {}: {e}", cfg.dir.display()));
    std::fs::create_dir_all(&cfg.dir).map_err(|e| fail(&e))?;
    // One process per journal.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cfg.dir.join("lock"))
        .map_err(|e| fail(&e))?;
    if lock.try_lock().is_err() {
        return Err(fail(&"another process uses this journal (its lock is held)"));
    }
    // Data of workers this configuration does not have would never be
    // replayed: refuse rather than leave it.
    for e in std::fs::read_dir(&cfg.dir).map_err(|e| fail(&e))?.flatten() {
        let n = e.file_name();
        let Some(i) = n.to_str().and_then(|n| n.strip_prefix('w')).and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let holds = std::fs::read_dir(e.path())
            .map(|d| {
                d.flatten().any(|f| {
                    f.path().extension().is_some_and(|x| x == "seg")
                        && f.metadata().is_ok_and(|m| m.len() > spillway_core::journal::HEADER_LEN as u64)
                })
            })
            .unwrap_or(false);
        if i >= workers && holds {
            return Err(fail(&format_args!(
                "it holds data of worker {i}, but the source has {workers} workers; start it once with `workers: {}` to                  replay that data",
                i + 1
            )));
        }
    }
    let lock = Arc::new(lock);
    let jm = crate::journaled::JournalMetrics::new(metrics);
    let mut out = Vec::new();
    for i in 0..workers {
        let dir = cfg.worker_dir(i);
        let o =
            spillway_core::journal::open(&dir, cfg.segment_size.get(), cfg.fsync.0).map_err(|e| fail(&e))?;
        for d in &o.damage {
            jm.corrupt.add(1);
            tracing::error!(component = name, file = %d.path.display(), good = d.good, dropped_bytes = d.bad_bytes, why = d.why, "journal segment torn or corrupt: its good records are replayed, the rest is dropped");
            // How many datagrams the lost bytes held is unknown: one.
            events.dropped(
                DropReason::Malformed,
                1,
                &format_args!("a torn journal tail ({} bytes) in {}", d.bad_bytes, d.path.display()),
            );
        }
        if o.recovered > 0 {
            tracing::info!(
                component = name,
                worker = i,
                records = o.recovered,
                "journal: replaying what was not acknowledged before the last stop"
            );
        }
        let journal: Arc<str> = Arc::from(format!("{:016x}/w{i}", o.id));
        let replay_end = o.reader.shared().end();
        let tracker = crate::journaled::Tracker::new(Arc::from(name), journal, &dir, replay_end, jm.clone());
        out.push(WorkerJournal {
            writer: Some(o.writer),
            reader: o.reader,
            tracker,
            cfg: cfg.clone(),
            metrics: jm.clone(),
            pending: None,
            _lock: lock.clone(),
        });
    }
    Ok(out)
}

/// A socket filter that accepts nothing: `ret #0` (BPF_RET | BPF_K).
const REFUSE_ALL: [socket2::SockFilter; 1] = [socket2::SockFilter::new(0x06, 0, 0, 0)];

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Worker {
    /// Receives until stopped. Asked to hand over, it returns its socket and
    /// decoder for the source that replaces it.
    fn run(mut self) -> Option<(Socket, crate::decode::Decoder, Option<WorkerJournal>)> {
        if let Some(j) = self.journal.take() {
            return self.run_journaled(j).map(|(s, d, j)| (s, d, Some(j)));
        }
        let fd = self.socket.as_raw_fd();
        let mut bufs = MmsgBufs::new();
        let mut last_flush = Instant::now();
        let mut last_house = Instant::now();
        // After a stop the socket refuses new datagrams and we read what the
        // kernel had already queued, until it is empty or the deadline.
        let mut deadline: Option<Instant> = None;
        loop {
            if self.mode.load(Ordering::Relaxed) == HAND_OVER {
                // What is decoded goes downstream; the socket, what waits in
                // it, and everything the decoder knows (parked data
                // included) go to the successor.
                self.collector.housekeeping(now_ns());
                self.collector.close_completeness();
                self.seen.shared().update(self.collector.take_live());
                if !self.send() {
                    return None;
                }
                return Some((self.socket, self.collector.into_decoder(), None));
            }
            if deadline.is_none() && self.mode.load(Ordering::Relaxed) == STOP {
                deadline = Some(Instant::now() + self.drain_timeout);
                if let Err(e) = self.socket.attach_filter(&REFUSE_ALL) {
                    tracing::warn!(error = %e, "cannot close the socket to new datagrams; reading until the drain deadline");
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.discard_queued(&mut bufs);
                break;
            }
            let draining = deadline.is_some();
            match bufs.recv(fd) {
                Ok(n) => {
                    let now = now_ns();
                    for i in 0..n {
                        let (data, src) = bufs.datagram(i);
                        let Some((src, port)) = self.admit(src) else { continue };
                        self.collector.relay(data, src, port, now);
                        if self.collector.is_full() && !self.send() {
                            return None;
                        }
                    }
                }
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    if draining {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "receive failed; the worker stops");
                    break;
                }
            }
            if let Some(s) = &self.share {
                s.publish(self.collector.take_learned());
                for (l, from_start) in s.received() {
                    self.collector.apply(&l, from_start);
                }
                if self.collector.is_full() && !self.send() {
                    return None;
                }
            }
            if self.collector.buffered() > 0 && last_flush.elapsed() >= self.flush {
                if !self.send() {
                    return None;
                }
                last_flush = Instant::now();
            }
            if last_house.elapsed() >= Duration::from_secs(1) {
                self.collector.housekeeping(now_ns());
                self.seen.shared().update(self.collector.take_live());
                let (templates, parked) = self.collector.held_by_exporter();
                self.seen.shared().set_held(self.index, &templates, &parked);
                last_house = Instant::now();
            }
        }
        self.collector.housekeeping(now_ns());
        self.collector.abandon_parked(now_ns());
        self.collector.close_completeness();
        self.seen.shared().update(self.collector.take_live());
        self.send();
        None
    }

    /// The journaled loop: append what the socket holds, decode from the
    /// journal as far as downstream takes it, and settle what the sinks
    /// acknowledged. A reload is a stop here: the next source replays the
    /// journal.
    fn run_journaled(
        mut self,
        mut j: WorkerJournal,
    ) -> Option<(Socket, crate::decode::Decoder, WorkerJournal)> {
        let mut bufs = MmsgBufs::new();
        let mut last_flush = Instant::now();
        let mut last_house = Instant::now();
        let mut deadline: Option<Instant> = None;
        // Downstream refusing batches since (at a stop, bounded).
        let mut stalled: Option<Instant> = None;
        let (mut waited, mut received) = (false, 0usize);
        let shared = j.reader.shared().clone();
        let max = j.cfg.max_size.get();
        loop {
            if self.mode.load(Ordering::Relaxed) == HAND_OVER {
                // The successor continues with the socket, the decoder and
                // the journal (its batches in flight settle there).
                if let Some(w) = j.writer.as_mut() {
                    let _ = w.commit();
                }
                self.collector.housekeeping(now_ns());
                j.tracker.gone(&self.collector.take_gone_tags());
                self.collector.close_completeness();
                self.seen.shared().update(self.collector.take_live());
                self.seal(&mut j);
                if let Some(p) = j.pending.take()
                    && self.tx.blocking_send(p).is_err()
                {
                    return None;
                }
                if !self.send() {
                    return None;
                }
                return Some((self.socket, self.collector.into_decoder(), j));
            }
            if j.writer.is_some() {
                if deadline.is_none() && self.mode.load(Ordering::Relaxed) != RUNNING {
                    deadline = Some(Instant::now() + self.drain_timeout);
                    if let Err(e) = self.socket.attach_filter(&REFUSE_ALL) {
                        tracing::warn!(error = %e, "cannot close the socket to new datagrams; reading until the drain deadline");
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    self.discard_queued(&mut bufs);
                    if let Some(w) = j.writer.take() {
                        w.finish();
                    }
                } else {
                    (waited, received) =
                        self.receive_into_journal(&mut j, &mut bufs, &shared, max, deadline.is_some());
                }
            }
            // Decode while downstream takes batches, once the store's warm
            // set is applied: what arrives before waits in the journal
            // instead of being parked.
            let room = offer(&self.tx, &mut j.pending);
            let warm = self.share.as_ref().is_none_or(|s| !s.warming());
            if (!room || !warm) && !waited && received == 0 && j.writer.is_some() {
                // Nothing to decode and the socket is empty: rest.
                std::thread::sleep(Duration::from_millis(1));
            }
            if room && warm {
                stalled = None;
                let mut n = 0;
                while n < DECODE_TURN && !self.collector.is_full() {
                    let Some(e) = j.reader.next_record() else { break };
                    n += 1;
                    let (seq, addr, port, ts) = (e.seq, Addr(e.addr), e.port, e.received_ns);
                    if j.tracker.cuts(seq) {
                        self.seal_into(&mut j.tracker, &mut j.pending);
                    }
                    let committed = j.tracker.is_committed(seq);
                    let parks = self.collector.parks_total();
                    let rows = self.collector.flow_rows();
                    if self.collector.relays() {
                        if !committed {
                            self.collector.relay(e.payload, addr, port, ts);
                        }
                    } else {
                        self.collector.ingest_journaled(e.payload, addr, ts, seq, committed);
                    }
                    let parked = self.collector.parks_total() - parks;
                    let own = self.collector.flow_rows() > rows;
                    j.tracker.decoded(seq, parked, own, self.collector.take_released_tags());
                    if j.pending.is_some() {
                        // A cut batch waits for room.
                        break;
                    }
                }
                self.journal_drops(
                    &j.metrics,
                    shared.take_dropped(),
                    &"journal records deleted unread (`when_full: drop_oldest`, or unreadable)",
                );
                let flush_due = last_flush.elapsed() >= self.flush;
                if j.pending.is_none()
                    && (self.collector.is_full() || (flush_due && (self.collector.buffered() > 0 || n == 0)))
                {
                    self.seal(&mut j);
                    last_flush = Instant::now();
                }
            } else if !room && j.writer.is_none() {
                // Stopping while downstream takes nothing: what is left stays
                // in the journal for the next start.
                let since = *stalled.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.drain_timeout {
                    tracing::warn!(
                        records = shared.end() - j.reader.position(),
                        "downstream takes nothing: what the journal holds undecoded is replayed at the next start"
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            j.tracker.poll();
            if let Some(s) = &self.share {
                s.publish(self.collector.take_learned());
                for (l, from_start) in s.received() {
                    self.collector.apply(&l, from_start);
                }
            }
            if last_house.elapsed() >= Duration::from_secs(1) {
                self.collector.housekeeping(now_ns());
                j.tracker.gone(&self.collector.take_gone_tags());
                self.seen.shared().update(self.collector.take_live());
                let (templates, parked) = self.collector.held_by_exporter();
                self.seen.shared().set_held(self.index, &templates, &parked);
                j.tracker.checkpoint(&shared, j.reader.position());
                last_house = Instant::now();
            }
            if j.writer.is_none()
                && j.reader.caught_up()
                && j.pending.is_none()
                && self.collector.buffered() == 0
            {
                break;
            }
        }
        // Parked sets stay in the journal (their records are held): the next
        // start decodes them once their template is known.
        self.collector.housekeeping(now_ns());
        j.tracker.gone(&self.collector.take_gone_tags());
        if let Some(s) = &self.share {
            s.publish(self.collector.take_learned());
        }
        self.collector.close_completeness();
        self.seen.shared().update(self.collector.take_live());
        self.seal(&mut j);
        if let Some(p) = j.pending.take() {
            let _ = self.tx.blocking_send(p);
        }
        self.send();
        if j.tracker.held() > 0 {
            tracing::info!(
                records = j.tracker.held(),
                "journal records with data waiting for its template stay in the journal for the next start"
            );
        }
        if let Some(w) = j.writer.take() {
            w.finish();
        }
        let Worker { tx, .. } = self;
        drop(tx);
        j.tracker.wait(j.cfg.settle_timeout.get());
        j.tracker.checkpoint(&shared, j.reader.position());
        None
    }

    /// One `recvmmsg` into the journal, under the `when_full` policy.
    fn receive_into_journal(
        &mut self,
        j: &mut WorkerJournal,
        bufs: &mut MmsgBufs,
        shared: &spillway_core::journal::Shared,
        max: u64,
        draining: bool,
    ) -> (bool, usize) {
        use crate::journaled::WhenFull;
        let full = shared.bytes() >= max;
        if full {
            match j.cfg.when_full {
                WhenFull::Block => {
                    j.metrics.full_waits.add(1);
                    std::thread::sleep(Duration::from_millis(1));
                    return (true, 0);
                }
                WhenFull::DropOldest => {
                    shared.drop_oldest();
                }
                WhenFull::DropNewest => {}
            }
        }
        // Wait on the socket only when everything is decoded and downstream
        // has room; otherwise look and go back to decoding (or, while
        // downstream has no room, to a short sleep in the caller).
        let wait = j.reader.caught_up() && j.pending.is_none();
        let mut received = 0;
        let Some(w) = j.writer.as_mut() else { return (wait, 0) };
        let got =
            if wait { bufs.recv(self.socket.as_raw_fd()) } else { bufs.recv_nowait(self.socket.as_raw_fd()) };
        match got {
            Ok(n) => {
                received = n;
                let now = now_ns();
                let (mut refused, mut appended) = (0u64, 0u64);
                for i in 0..n {
                    let (data, src) = bufs.datagram(i);
                    let Some((src, port)) = self.admit(src) else { continue };
                    if full && j.cfg.when_full == WhenFull::DropNewest {
                        refused += 1;
                        continue;
                    }
                    w.append(now, src.0, port, data);
                    appended += 1;
                }
                j.metrics.appended.add(appended);
                self.journal_drops(&j.metrics, refused, &"the journal is full (`when_full: drop_newest`)");
                if let Err((lost, e)) = w.commit() {
                    tracing::error!(error = %e, lost, "cannot write to the journal; the datagrams of this batch are lost");
                    self.events.dropped(
                        DropReason::BufferFull,
                        lost.max(1),
                        &format_args!("the journal cannot be written: {e}"),
                    );
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // Empty: at a stop, the socket is drained.
                if draining && let Some(w) = j.writer.take() {
                    w.finish();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(error = %e, "receive failed; the worker stops receiving");
                if let Some(w) = j.writer.take() {
                    w.finish();
                }
            }
        }
        (wait, received)
    }

    /// Counts `n` datagrams the journal could not keep.
    fn journal_drops(&self, m: &crate::journaled::JournalMetrics, n: u64, why: &dyn std::fmt::Display) {
        if n > 0 {
            m.full_drops.add(n);
            self.events.dropped(DropReason::BufferFull, n, why);
        }
    }

    /// Ends the batch being built: its rows go (or wait) downstream with an
    /// acknowledgement naming the journal records they hold; the side
    /// outputs go as they do without a journal.
    fn seal(&mut self, j: &mut WorkerJournal) {
        self.seal_into(&mut j.tracker, &mut j.pending);
    }

    /// [`Self::seal`] with the journal's parts it needs.
    fn seal_into(&mut self, tracker: &mut crate::journaled::Tracker, pending: &mut Option<Sent>) {
        let batch = self.collector.take();
        let acks = tracker.seal(batch.is_some());
        if let Some((b, lo, hi)) = batch {
            // One batch waits at a time: the running loop seals only when
            // none does, a stop or a hand-over waits for room here.
            if let Some(p) = pending.take() {
                let _ = self.tx.blocking_send(p);
            }
            *pending = Some(Sent::Flows(b, lo, hi, acks));
            offer(&self.tx, pending);
        }
        self.send();
    }

    /// Reads and counts (as `stopping`) what is still queued at the drain
    /// deadline: the socket refuses new datagrams, so this ends.
    fn discard_queued(&mut self, bufs: &mut MmsgBufs) {
        let fd = self.socket.as_raw_fd();
        let _ = self.socket.set_nonblocking(true);
        let mut discarded = 0u64;
        while let Ok(n) = bufs.recv(fd) {
            if n == 0 {
                break;
            }
            discarded += n as u64;
        }
        self.events.dropped(
            DropReason::Stopping,
            discarded,
            &"datagrams still queued when the drain deadline passed",
        );
        self.collector.unattributed(DropReason::Stopping, discarded, now_ns());
    }

    /// The sender of a datagram when it is allowed (noted as seen); a
    /// refused one is counted.
    #[inline]
    fn admit(&mut self, src: Option<(Addr, u16)>) -> Option<(Addr, u16)> {
        let (src, port) = src?;
        if !self.allowed(src) {
            self.collector.reject(src);
            return None;
        }
        self.seen.note(src);
        Some((src, port))
    }

    fn allowed(&self, src: Addr) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let ip = std::net::IpAddr::from(src);
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Hands the buffered rows to the async side, waiting for room
    /// (backpressure: while we wait, the kernel buffer absorbs the burst).
    fn send(&mut self) -> bool {
        if let Some((b, lo, hi)) = self.collector.take()
            && self.tx.blocking_send(Sent::Flows(b, lo, hi, Acks::none())).is_err()
        {
            return false;
        }
        if let Some(c) = self.collector.take_counters()
            && self.tx.blocking_send(Sent::Counters(c)).is_err()
        {
            return false;
        }
        if let Some(c) = self.collector.take_completeness()
            && self.tx.blocking_send(Sent::Completeness(c)).is_err()
        {
            return false;
        }
        match self.collector.take_loss() {
            Some(l) => self.tx.blocking_send(Sent::Loss(l)).is_ok(),
            None => true,
        }
    }
}

/// Where the port claims live: `SPILLWAY_LOCK_DIR`, else `/run/lock/spillway`
/// (shared by every service on the host, unlike a private /tmp), else the
/// temporary directory.
fn lock_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("SPILLWAY_LOCK_DIR") {
        return d.into();
    }
    let run = std::path::Path::new("/run/lock/spillway");
    if std::fs::create_dir_all(run).is_ok() {
        return run.to_path_buf();
    }
    std::env::temp_dir().join("spillway-locks")
}

/// Claims UDP port `listen.port()` for this process: an exclusive lock on a
/// file named after it, held until the returned file is dropped (or the
/// process dies, whatever the signal). One port, one collector: with
/// `SO_REUSEPORT` a second one would silently take part of the traffic.
fn claim_port(listen: SocketAddr) -> Result<std::fs::File, ComponentError> {
    let dir = lock_dir();
    let path = dir.join(format!("udp-{}.lock", listen.port()));
    let fail = |e: &dyn std::fmt::Display| {
        ComponentError::new(format!("cannot claim UDP port {} ({}): {e}", listen.port(), path.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail(&e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ComponentError::new(format!(
            "another Spillway collector already claims UDP port {} (lock {}); with SO_REUSEPORT both would \
             silently split the traffic. Stop the other collector or choose another port",
            listen.port(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(&e)),
    }
}

/// The floor the `netflow` source's receive path is measured against (the
/// comparison harness's bare loop): `workers` sockets set up as the
/// source's ([`bind_socket`], one thread each), the same `recvmmsg`
/// buffers, and nothing done with the datagrams but count them. Calls
/// `report` with the count so far every `every`; runs until `report`
/// returns false.
pub fn bare_receive_loop(
    listen: SocketAddr,
    workers: usize,
    receive_buffer: usize,
    every: Duration,
    mut report: impl FnMut(u64) -> bool,
) -> std::io::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..workers.max(1) {
        let s = bind_socket(listen, receive_buffer as u64, "bare receive loop")?;
        let (count, stop) = (count.clone(), stop.clone());
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let mut bufs = MmsgBufs::new();
            while !stop.load(Ordering::Relaxed) {
                match bufs.recv(s.as_raw_fd()) {
                    Ok(n) => {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }));
    }
    while report(count.load(Ordering::Relaxed)) && !threads.iter().any(|t| t.is_finished()) {
        std::thread::sleep(every);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| std::io::Error::other("a bare receive thread panicked"))??;
    }
    Ok(())
}

/// Whether some socket on this machine is bound to `listen` (e.g. a
/// collector that has started).
pub fn is_listening(listen: SocketAddr) -> bool {
    already_bound(listen).is_some()
}

/// One socket of `/proc/net/udp{,6}`: the one parser of that format.
struct ProcSocket {
    /// Local address in the file's hex form (8 digits for IPv4, 32 for IPv6).
    addr: String,
    port: u16,
    inode: u64,
    drops: u64,
}

/// Every UDP socket of the host, IPv4 and IPv6.
fn proc_net_udp() -> impl Iterator<Item = ProcSocket> {
    ["/proc/net/udp", "/proc/net/udp6"].into_iter().flat_map(|file| {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (addr, port) = cols.get(1)?.split_once(':')?;
                Some(ProcSocket {
                    addr: addr.to_string(),
                    port: u16::from_str_radix(port, 16).ok()?,
                    inode: cols.get(9)?.parse().ok()?,
                    drops: cols.get(12).and_then(|d| d.parse().ok()).unwrap_or(0),
                })
            })
            .collect::<Vec<_>>()
    })
}

/// A UDP socket already bound to `listen` (same port, and the same address,
/// a wildcard on either side, or any IPv6 one), from `/proc/net/udp{,6}`.
fn already_bound(listen: SocketAddr) -> Option<u64> {
    proc_net_udp()
        .find(|s| {
            if s.port != listen.port() {
                return false;
            }
            let wildcard = s.addr.bytes().all(|b| b == b'0');
            let same = match listen.ip() {
                // The kernel prints an IPv4 address as a little-endian word.
                std::net::IpAddr::V4(v4) => {
                    s.addr.len() == 8
                        && u32::from_str_radix(&s.addr, 16).is_ok_and(|a| a.to_le_bytes() == v4.octets())
                }
                std::net::IpAddr::V6(_) => true,
            };
            wildcard || same || listen.ip().is_unspecified()
        })
        .map(|s| s.inode)
}

/// The kernel's drop counter of our sockets (from `/proc/net/udp{,6}`).
struct KernelDrops {
    inodes: Vec<u64>,
    /// Duplicates keep the sockets (and their /proc entries) alive until the
    /// final count, after the workers have closed theirs.
    _keep: Vec<Socket>,
    events: Events,
    seen: std::sync::Mutex<u64>,
    /// The source is stopping: its sockets refuse datagrams, and what the
    /// kernel drops now is that refusal.
    refusing: AtomicBool,
}

impl KernelDrops {
    fn new(sockets: &[&Socket], events: Events, seen: u64) -> Self {
        use std::os::unix::fs::MetadataExt;
        let inodes = sockets
            .iter()
            .filter_map(|s| {
                std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd())).ok().map(|m| m.ino())
            })
            .collect();
        Self {
            inodes,
            _keep: sockets.iter().filter_map(|s| s.try_clone().ok()).collect(),
            events,
            seen: std::sync::Mutex::new(seen),
            refusing: AtomicBool::new(false),
        }
    }

    /// Drops counted so far (what a successor must not count again).
    fn seen(&self) -> u64 {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts what the kernel dropped since the last poll; returns it.
    fn poll(&self) -> Option<(DropReason, u64)> {
        let total: u64 = proc_net_udp().filter(|s| self.inodes.contains(&s.inode)).map(|s| s.drops).sum();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if total <= *seen {
            return None;
        }
        // Each lost datagram held at least one record.
        let new = total - *seen;
        *seen = total;
        if self.refusing.load(Ordering::Relaxed) {
            self.events.dropped(
                DropReason::Stopping,
                new,
                &"datagrams arrived while the source was stopping and were refused",
            );
            Some((DropReason::Stopping, new))
        } else {
            self.events.dropped(
                DropReason::BufferFull,
                new,
                &"the kernel dropped datagrams: the receive buffer was full",
            );
            Some((DropReason::BufferFull, new))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process has `CAP_NET_ADMIN` (bit 12 of its effective
    /// capabilities).
    fn cap_net_admin() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
        u64::from_str_radix(eff, 16).unwrap() & (1 << 12) != 0
    }

    /// A receive buffer larger than `net.core.rmem_max` is granted whole to
    /// a process with `CAP_NET_ADMIN` (as root in CI), and capped otherwise.
    #[test]
    fn the_receive_buffer_passes_the_kernel_cap_with_cap_net_admin() {
        let cap: usize =
            std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        let want = (cap * 2).max(16 << 20);
        let s = bind_socket("127.0.0.1:0".parse().unwrap(), want as u64, "test").unwrap();
        let got = s.recv_buffer_size().unwrap() / 2;
        if cap_net_admin() {
            assert!(got >= want, "asked {want}, granted {got} (rmem_max {cap})");
        } else {
            assert_eq!(got, cap, "asked {want}, granted {got}");
        }
    }
}
