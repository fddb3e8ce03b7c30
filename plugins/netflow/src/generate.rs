//! A load generator that speaks real NetFlow v5, v9 and IPFIX over UDP.
//!
//! Each simulated exporter sends from its own loopback address (127.x.y.z),
//! with correct sequence numbers and periodic template refreshes. The
//! totals it returns (packets, records, sums of the bytes and packets
//! fields) let a test or bench reconcile a collector's output to the record.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What to send.
#[derive(Debug, Clone)]
pub struct Options {
    /// Collector address.
    pub target: SocketAddr,
    /// 5, 9 or 10.
    pub version: u16,
    /// Distinct exporters (source addresses 127.1.0.1, 127.1.0.2, …).
    pub exporters: u32,
    /// Records per second over all exporters; unlimited when `None`.
    pub rate: Option<u64>,
    /// Records to send in all; see also `duration`. One of them must be set.
    pub count: Option<u64>,
    /// How long to send.
    pub duration: Option<Duration>,
    /// Records per packet (at most 30 for v5).
    pub records_per_packet: usize,
    /// Each exporter resends its template every this many packets.
    pub template_refresh: u32,
    /// How templates (and sampling options) are sent.
    pub templates: Templates,
    /// Each exporter announces sampling in options data (v9/IPFIX):
    /// exporter `i` announces 1 in `rate << (i % 4)` ([`announced_rate`]).
    pub sampling_rate: Option<u32>,
    /// Options come from a second socket of the exporter (another source
    /// port), as some devices send them: behind a balancer hashing the
    /// port they can reach another collector than the data.
    pub options_from_second_port: bool,
    /// Seed of the record values.
    pub seed: u64,
}

impl Options {
    /// The end-to-end benches' load towards `target`: NetFlow v9 from 1,000
    /// exporters, 30 records per packet, templates every 20 packets; the
    /// caller sets the rate, count and duration.
    pub fn v9_load(target: SocketAddr) -> Self {
        Self {
            target,
            version: 9,
            exporters: 1000,
            rate: None,
            count: None,
            duration: None,
            records_per_packet: 30,
            template_refresh: 20,
            templates: Templates::Refreshed,
            sampling_rate: None,
            options_from_second_port: false,
            seed: 1,
        }
    }
}

/// How a generator sends templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Templates {
    /// With data, every `template_refresh` packets (the first included).
    #[default]
    Refreshed,
    /// Once per exporter in an announcement round before any data (with
    /// the sampling options), then `announce_pause` of quiet, then data
    /// only: a collector that did not see the round must learn them from
    /// elsewhere (a shared store).
    Once { announce_pause: Duration },
    /// Never: data only, for a collector that knows them already.
    Never,
}

/// The rate exporter `i` announces when the base rate is `base`.
pub fn announced_rate(base: u32, i: u32) -> u32 {
    base << (i % 4)
}

/// Exactly what was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// UDP datagrams.
    pub packets: u64,
    /// Flow records (templates not included).
    pub records: u64,
    /// Sum of the records' byte counters.
    pub sum_bytes: u64,
    /// Sum of the records' packet counters.
    pub sum_packets: u64,
}

const TEMPLATE_ID: u16 = 256;

/// Fields of the v9/IPFIX data template: (element id, length).
const V9_FIELDS: [(u16, u16); 17] = [
    (8, 4),  // sourceIPv4Address
    (12, 4), // destinationIPv4Address
    (15, 4), // ipNextHopIPv4Address
    (7, 2),  // sourceTransportPort
    (11, 2), // destinationTransportPort
    (4, 1),  // protocolIdentifier
    (6, 1),  // tcpControlBits
    (5, 1),  // ipClassOfService
    (10, 4), // ingressInterface
    (14, 4), // egressInterface
    (1, 8),  // octetDeltaCount
    (2, 8),  // packetDeltaCount
    (16, 4), // bgpSourceAsNumber
    (17, 4), // bgpDestinationAsNumber
    (9, 1),  // sourceIPv4PrefixLength
    (13, 1), // destinationIPv4PrefixLength
    (22, 4), // flowStartSysUpTime (v9) / replaced by flowStartMilliseconds in IPFIX
];

struct Exporter {
    sent_packets: u32,
    sent_records: u32,
    boot: Instant,
}

type Rng = spillway_core::rand::SplitMix64;

/// The source address of exporter `i`.
pub fn exporter_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 1 + (i / 62_500) as u8, ((i / 250) % 250) as u8, (1 + i % 250) as u8)
}

/// Sends as configured and returns the exact totals.
pub fn run(opts: &Options) -> std::io::Result<Totals> {
    run_paced(opts, &mut |_| {})
}

/// Like [`run`], calling `pace` with the records sent so far after each
/// datagram: it may wait (flow control by a receiver in the same process).
pub fn run_paced(opts: &Options, pace: &mut dyn FnMut(u64)) -> std::io::Result<Totals> {
    if opts.count.is_none() && opts.duration.is_none() {
        return Err(std::io::Error::other("give a record count or a duration"));
    }
    if !matches!(opts.version, 5 | 9 | 10) {
        return Err(std::io::Error::other(format!("version {} is not 5, 9 or 10", opts.version)));
    }
    let rpp = opts.records_per_packet.clamp(1, if opts.version == 5 { 30 } else { 400 });
    let mut exporters = Vec::with_capacity(opts.exporters as usize);
    let mut sockets = Vec::with_capacity(opts.exporters as usize);
    let mut option_sockets = Vec::new();
    for i in 0..opts.exporters.max(1) {
        let socket = UdpSocket::bind(SocketAddr::from((exporter_addr(i), 0)))?;
        socket.connect(opts.target)?;
        sockets.push(socket);
        if opts.options_from_second_port {
            let o = UdpSocket::bind(SocketAddr::from((exporter_addr(i), 0)))?;
            o.connect(opts.target)?;
            option_sockets.push(o);
        }
        exporters.push(Exporter { sent_packets: 0, sent_records: 0, boot: Instant::now() });
    }
    let mut rng = Rng::new(opts.seed);
    let mut totals = Totals::default();
    let mut buf = Vec::with_capacity(65536);
    let sampling = opts.sampling_rate.filter(|_| opts.version != 5);
    // The announcement round: templates and options, no data.
    if let Templates::Once { announce_pause } = opts.templates
        && opts.version != 5
    {
        for (i, ex) in exporters.iter_mut().enumerate() {
            let rate = sampling.map(|r| announced_rate(r, i as u32));
            let second = option_sockets.get(i).filter(|_| rate.is_some());
            buf.clear();
            build_announcement(
                &mut buf,
                ex,
                opts.version == 10,
                true,
                if second.is_some() { None } else { rate },
            );
            send(&sockets[i], &buf)?;
            totals.packets += 1;
            ex.sent_packets = ex.sent_packets.wrapping_add(1);
            if let Some(o) = second {
                buf.clear();
                build_announcement(&mut buf, ex, opts.version == 10, false, rate);
                send(o, &buf)?;
                totals.packets += 1;
                ex.sent_packets = ex.sent_packets.wrapping_add(1);
            }
        }
        std::thread::sleep(announce_pause);
    }
    let started = Instant::now();
    let mut e = 0usize;
    loop {
        let remaining = opts.count.map_or(u64::MAX, |c| c - totals.records);
        if remaining == 0 || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let Some(rate) = opts.rate {
            let due = started + Duration::from_secs_f64(totals.records as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let n = (rpp as u64).min(remaining) as usize;
        let ex = &mut exporters[e];
        let socket = &sockets[e];
        e = (e + 1) % opts.exporters.max(1) as usize;
        buf.clear();
        let with_template = opts.version != 5
            && opts.templates == Templates::Refreshed
            && ex.sent_packets % opts.template_refresh.max(1) == 0;
        let (bytes, packets) = match opts.version {
            5 => build_v5(&mut buf, ex, n, &mut rng),
            v => build_v9_ipfix(&mut buf, ex, n, &mut rng, v == 10, with_template),
        };
        send(socket, &buf)?;
        ex.sent_packets = ex.sent_packets.wrapping_add(1);
        ex.sent_records = ex.sent_records.wrapping_add(n as u32);
        totals.packets += 1;
        totals.records += n as u64;
        totals.sum_bytes += bytes;
        totals.sum_packets += packets;
        pace(totals.records);
    }
    Ok(totals)
}

/// Sends one datagram. A full socket buffer on loopback means the collector
/// is behind: retried rather than lost and counted as sent.
fn send(socket: &UdpSocket, buf: &[u8]) -> std::io::Result<()> {
    loop {
        match socket.send(buf) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                std::thread::sleep(Duration::from_micros(50));
            }
            // Nothing listens (yet): the datagram is lost; report it.
            Err(e) => return Err(e),
        }
    }
}

/// Options template id of the sampling announcement.
const OPTIONS_ID: u16 = 300;
/// samplingInterval (v9 SAMPLING_INTERVAL).
const SAMPLING_INTERVAL: u16 = 34;

/// A message with no data: the data template (`template`) and/or the
/// sampling options (`rate`: an options template and one options record).
fn build_announcement(b: &mut Vec<u8>, ex: &Exporter, ipfix: bool, template: bool, rate: Option<u32>) {
    let records = template as u16 + 2 * rate.is_some() as u16;
    let (secs, _) = unix_now();
    put_header(b, ex, ipfix, records, secs, ex.boot.elapsed().as_millis() as u32 + 1000);
    if template {
        put_template_set(b, ipfix);
    }
    if let Some(rate) = rate {
        if ipfix {
            // Options template set: scope observationDomainId (149).
            put16(b, 3);
            put16(b, 4 + 6 + 8);
            put16(b, OPTIONS_ID);
            put16(b, 2);
            put16(b, 1);
            put16(b, 149);
            put16(b, 4);
            put16(b, SAMPLING_INTERVAL);
            put16(b, 4);
        } else {
            // Options template flowset: scope System (1).
            put16(b, 1);
            put16(b, 4 + 6 + 8);
            put16(b, OPTIONS_ID);
            put16(b, 4);
            put16(b, 4);
            put16(b, 1);
            put16(b, 4);
            put16(b, SAMPLING_INTERVAL);
            put16(b, 4);
        }
        put16(b, OPTIONS_ID);
        put16(b, 4 + 8);
        put32(b, 0);
        put32(b, rate);
    }
    if ipfix {
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

/// The data template's fields: v9's, or IPFIX's (absolute times instead of
/// uptime-relative ones). Built once.
fn template_fields(ipfix: bool) -> &'static [(u16, u16)] {
    static FIELDS: std::sync::OnceLock<[Vec<(u16, u16)>; 2]> = std::sync::OnceLock::new();
    let f = FIELDS.get_or_init(|| {
        [false, true].map(|ipfix| {
            V9_FIELDS
                .iter()
                .map(|&(id, len)| if ipfix && id == 22 { (152, 8) } else { (id, len) })
                .chain([if ipfix { (153, 8) } else { (21, 4) }])
                .collect()
        })
    });
    &f[ipfix as usize]
}

/// A v9 or IPFIX message header exported at `secs` with the exporter up
/// for `uptime` ms; `count` is v9's record count (IPFIX's length is patched
/// by the caller once the message is complete).
fn put_header(b: &mut Vec<u8>, ex: &Exporter, ipfix: bool, count: u16, secs: u32, uptime: u32) {
    if ipfix {
        put16(b, 10);
        put16(b, 0);
        put32(b, secs);
        put32(b, ex.sent_records);
        put32(b, 0);
    } else {
        put16(b, 9);
        put16(b, count);
        put32(b, uptime);
        put32(b, secs);
        put32(b, ex.sent_packets);
        put32(b, 0);
    }
}

/// The data template's template set.
fn put_template_set(b: &mut Vec<u8>, ipfix: bool) {
    let fields = template_fields(ipfix);
    put16(b, if ipfix { 2 } else { 0 });
    put16(b, (8 + 4 * fields.len()) as u16);
    put16(b, TEMPLATE_ID);
    put16(b, fields.len() as u16);
    for (id, len) in fields {
        put16(b, *id);
        put16(b, *len);
    }
}

/// Builds `packets` messages round-robin over `exporters` without sending
/// them: (exporter index, message). For benches and tests.
pub fn messages(
    version: u16,
    exporters: u32,
    packets: usize,
    records_per_packet: usize,
    seed: u64,
) -> Vec<(u32, Vec<u8>)> {
    let mut state: Vec<Exporter> = (0..exporters.max(1))
        .map(|_| Exporter { sent_packets: 0, sent_records: 0, boot: Instant::now() })
        .collect();
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(packets);
    for p in 0..packets {
        let i = p % state.len();
        let ex = &mut state[i];
        let mut buf = Vec::with_capacity(1500);
        let template = ex.sent_packets.is_multiple_of(20);
        match version {
            5 => build_v5(&mut buf, ex, records_per_packet.min(30), &mut rng),
            v => build_v9_ipfix(&mut buf, ex, records_per_packet, &mut rng, v == 10, template),
        };
        ex.sent_packets += 1;
        ex.sent_records += records_per_packet as u32;
        out.push((i as u32, buf));
    }
    out
}

struct Flow {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
    in_if: u32,
    out_if: u32,
    bytes: u64,
    packets: u64,
    src_as: u32,
    dst_as: u32,
}

fn flow(rng: &mut Rng) -> Flow {
    let r = rng.next_u64();
    let r2 = rng.next_u64();
    let packets = 1 + r2 % 200;
    Flow {
        src: 0x0a00_0000 | (r as u32 & 0x00ff_ffff),
        dst: 0xc633_6400 | ((r >> 24) as u32 & 0xff),
        sport: 1024 + ((r >> 32) % 60_000) as u16,
        dport: [443, 80, 53, 22, 123][((r >> 48) % 5) as usize],
        proto: if (r >> 56).is_multiple_of(4) { 17 } else { 6 },
        flags: 0x18,
        in_if: 1 + ((r2 >> 8) % 10) as u32,
        out_if: 1 + ((r2 >> 16) % 10) as u32,
        bytes: packets * (40 + (r2 >> 24) % 1400),
        packets,
        src_as: 64_512 + ((r2 >> 40) % 100) as u32,
        dst_as: 64_512 + ((r2 >> 48) % 100) as u32,
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn unix_now() -> (u32, u32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as u32, d.subsec_nanos())
}

fn build_v5(b: &mut Vec<u8>, ex: &Exporter, n: usize, rng: &mut Rng) -> (u64, u64) {
    let (secs, nanos) = unix_now();
    let uptime = ex.boot.elapsed().as_millis() as u32 + 1000;
    put16(b, 5);
    put16(b, n as u16);
    put32(b, uptime);
    put32(b, secs);
    put32(b, nanos);
    put32(b, ex.sent_records);
    b.extend_from_slice(&[0, 0, 0, 0]);
    let (mut bytes, mut packets) = (0, 0);
    for _ in 0..n {
        let f = flow(rng);
        put32(b, f.src);
        put32(b, f.dst);
        put32(b, 0x0a00_ff01);
        put16(b, f.in_if as u16);
        put16(b, f.out_if as u16);
        put32(b, f.packets as u32);
        put32(b, f.bytes as u32);
        put32(b, uptime - 900);
        put32(b, uptime - 100);
        put16(b, f.sport);
        put16(b, f.dport);
        b.extend_from_slice(&[0, f.flags, f.proto, 0]);
        put16(b, f.src_as as u16);
        put16(b, f.dst_as as u16);
        b.extend_from_slice(&[24, 24, 0, 0]);
        bytes += f.bytes as u32 as u64;
        packets += f.packets as u32 as u64;
    }
    (bytes, packets)
}

fn build_v9_ipfix(
    b: &mut Vec<u8>,
    ex: &Exporter,
    n: usize,
    rng: &mut Rng,
    ipfix: bool,
    template: bool,
) -> (u64, u64) {
    let (secs, _) = unix_now();
    let uptime = ex.boot.elapsed().as_millis() as u32 + 1000;
    let export_ms = secs as u64 * 1000;
    put_header(b, ex, ipfix, n as u16 + template as u16, secs, uptime);
    if template {
        put_template_set(b, ipfix);
    }
    let set_start = b.len();
    put16(b, TEMPLATE_ID);
    put16(b, 0);
    let (mut bytes, mut packets) = (0, 0);
    for _ in 0..n {
        let f = flow(rng);
        put32(b, f.src);
        put32(b, f.dst);
        put32(b, 0x0a00_ff01);
        put16(b, f.sport);
        put16(b, f.dport);
        b.extend_from_slice(&[f.proto, f.flags, 0]);
        put32(b, f.in_if);
        put32(b, f.out_if);
        put64(b, f.bytes);
        put64(b, f.packets);
        put32(b, f.src_as);
        put32(b, f.dst_as);
        b.extend_from_slice(&[24, 24]);
        if ipfix {
            put64(b, export_ms - 900);
            put64(b, export_ms - 100);
        } else {
            put32(b, uptime - 900);
            put32(b, uptime - 100);
        }
        bytes += f.bytes;
        packets += f.packets;
    }
    // Pad the data set to a multiple of 4 bytes.
    while !(b.len() - set_start).is_multiple_of(4) {
        b.push(0);
    }
    let set_len = (b.len() - set_start) as u16;
    b[set_start + 2..set_start + 4].copy_from_slice(&set_len.to_be_bytes());
    if ipfix {
        let len = b.len() as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
    }
    (bytes, packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, DecoderConfig};
    use crate::row::FlowBuilders;

    #[test]
    fn an_announcement_then_data_only_decodes_at_the_announced_rate() {
        for ipfix in [false, true] {
            for split in [false, true] {
                let mut ex = Exporter { sent_packets: 0, sent_records: 0, boot: Instant::now() };
                let mut rng = Rng::new(3);
                let mut d = Decoder::new(DecoderConfig::default());
                let mut out = FlowBuilders::new(64);
                let exporter = spillway_core::addr::Addr([9; 16]);
                let mut buf = Vec::new();
                build_announcement(&mut buf, &ex, ipfix, true, if split { None } else { Some(512) });
                assert_eq!(d.decode(&buf, exporter, 0, &mut out).error, None);
                ex.sent_packets += 1;
                if split {
                    buf.clear();
                    build_announcement(&mut buf, &ex, ipfix, false, Some(512));
                    assert_eq!(d.decode(&buf, exporter, 0, &mut out).error, None);
                    ex.sent_packets += 1;
                }
                buf.clear();
                build_v9_ipfix(&mut buf, &ex, 10, &mut rng, ipfix, false);
                let o = d.decode(&buf, exporter, 0, &mut out);
                assert_eq!((o.records, o.error), (10, None), "ipfix {ipfix} split {split}");
                let b = out.finish();
                let rates = b.column_by_name("sampling_rate").unwrap();
                let rates = rates.as_any().downcast_ref::<arrow::array::UInt32Array>().unwrap();
                assert!(rates.iter().all(|r| r == Some(512)), "ipfix {ipfix} split {split}: {rates:?}");
            }
        }
        assert_eq!(announced_rate(100, 5), 200);
    }

    #[test]
    fn generated_messages_decode_to_the_totals_sent() {
        for version in [5u16, 9, 10] {
            let ex = Exporter { sent_packets: 0, sent_records: 0, boot: Instant::now() };
            let mut rng = Rng::new(3);
            let mut d = Decoder::new(DecoderConfig::default());
            let mut out = FlowBuilders::new(64);
            let mut buf = Vec::new();
            let (bytes, packets) = match version {
                5 => build_v5(&mut buf, &ex, 30, &mut rng),
                v => build_v9_ipfix(&mut buf, &ex, 30, &mut rng, v == 10, true),
            };
            let o = d.decode(&buf, spillway_core::addr::Addr([9; 16]), 0, &mut out);
            assert_eq!((o.records, o.error), (30, None), "v{version}");
            let b = out.finish();
            let sum = |c: &str| {
                let a = b
                    .column_by_name(c)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow::array::UInt64Array>()
                    .unwrap();
                arrow::compute::sum(a).unwrap()
            };
            assert_eq!((sum("bytes"), sum("packets")), (bytes, packets), "v{version}");
        }
    }
}
