//! Reading UDP datagrams out of pcap and pcapng files.
//!
//! Link types: Ethernet (with 802.1Q tags), Linux cooked (SLL, SLL2), raw
//! IPv4/IPv6 and BSD loopback. IPv4 and IPv6 (with the common extension
//! headers). Fragments and non-UDP packets are skipped and counted.

use std::io::Read;
use std::net::IpAddr;

use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser, RawBlock};
use pcap_file::{DataLink, PcapError, TsResolution};

/// A UDP datagram from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture time, ns since the epoch.
    pub time_ns: i64,
    /// Sender address (the exporter).
    pub src: IpAddr,
    /// Sender port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Counts of what a capture held besides UDP datagrams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Frames that were not IPv4/IPv6 UDP (not export traffic: not counted
    /// as lost).
    pub not_udp: u64,
    /// First fragments of fragmented UDP datagrams (not reassembled: each
    /// is a lost datagram).
    pub fragments: u64,
    /// Frames cut short by the capture's snap length or damaged, and a
    /// record cut off at the end of the file.
    pub truncated: u64,
    /// Records or blocks that could not be read (the reader skipped them and
    /// went on).
    pub damaged: u64,
}

impl Skipped {
    /// Datagrams (or records that might have held one) lost to damage:
    /// each counts as one record dropped, since its content is unknown.
    pub fn lost(&self) -> u64 {
        self.fragments + self.truncated + self.damaged
    }
}

/// Reads every UDP datagram of a pcap or pcapng file.
pub fn read_file(path: &std::path::Path) -> Result<(Vec<Datagram>, Skipped), String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    read_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads every UDP datagram of a pcap or pcapng image.
///
/// Damage never fails the whole capture: a record with an out-of-range
/// timestamp fraction is normalised (carried into the seconds, as tshark
/// reads it), a record cut off at the end is counted, and a pcapng block
/// that cannot be read is skipped (by its length, or by finding the next
/// block that reads) and counted. Only a file that is no capture at all is
/// an error.
pub fn read_bytes(bytes: &[u8]) -> Result<(Vec<Datagram>, Skipped), String> {
    let mut out = Vec::new();
    let mut skipped = Skipped::default();
    let magic = bytes.get(..4).ok_or("file too short for a capture")?;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        pcapng(bytes, &mut out, &mut skipped)?;
    } else {
        pcap(bytes, &mut out, &mut skipped)?;
    }
    Ok((out, skipped))
}

fn pcap(bytes: &[u8], out: &mut Vec<Datagram>, skipped: &mut Skipped) -> Result<(), String> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| format!("not a pcap file: {e}"))?;
    let header = parser.header();
    let frac_ns: i64 = match header.ts_resolution {
        TsResolution::MicroSecond => 1_000,
        TsResolution::NanoSecond => 1,
    };
    while !rest.is_empty() {
        match parser.next_raw_packet(rest) {
            Ok((rem, pkt)) => {
                rest = rem;
                // A fraction of a second of 1,000,000 µs or more is carried
                // into the seconds.
                let ts = (pkt.ts_sec as i64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(pkt.ts_frac as i64 * frac_ns);
                frame(header.datalink, &pkt.data, ts, out, skipped);
            }
            Err(PcapError::IncompleteBuffer) => {
                skipped.truncated += 1;
                break;
            }
            Err(_) => {
                // A classic pcap record has no trailer to find the next one
                // by: what follows cannot be framed.
                skipped.damaged += 1;
                break;
            }
        }
    }
    Ok(())
}

/// What a pcapng interface says about its packets.
#[derive(Clone, Copy)]
struct Interface {
    link: DataLink,
    /// Nanoseconds per timestamp unit, as a multiplier or (negative) divisor.
    unit: TsUnit,
}

#[derive(Clone, Copy)]
enum TsUnit {
    Mul(i64),
    Div(i64),
    Pow2(u8),
}

impl TsUnit {
    /// From `if_tsresol` (default microseconds).
    fn of(resol: Option<u8>) -> Self {
        match resol {
            None => Self::Mul(1_000),
            Some(r) if r & 0x80 != 0 => Self::Pow2(r & 0x7f),
            Some(r) if r <= 9 => Self::Mul(10i64.pow(9 - r as u32)),
            Some(r) => Self::Div(10i64.saturating_pow((r as u32).min(18) - 9)),
        }
    }

    fn ns(self, raw: u64) -> i64 {
        let raw = raw.min(i64::MAX as u64) as i64;
        match self {
            Self::Mul(m) => raw.saturating_mul(m),
            Self::Div(d) => raw / d.max(1),
            Self::Pow2(p) => ((raw as i128 * 1_000_000_000) >> p.min(127)).min(i64::MAX as i128) as i64,
        }
    }
}

const KNOWN_BLOCKS: [u32; 8] = [0x0a0d_0d0a, 1, 2, 3, 4, 5, 6, 0x0000_0bad];

fn pcapng(bytes: &[u8], out: &mut Vec<Datagram>, skipped: &mut Skipped) -> Result<(), String> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| format!("not a pcapng file: {e}"))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    while !rest.is_empty() {
        let before = rest;
        match parser.next_raw_block(rest) {
            Ok((rem, raw)) => {
                rest = rem;
                let block = match parser.section().endianness {
                    pcap_file::Endianness::Big => raw.try_into_block::<BigEndian>(),
                    pcap_file::Endianness::Little => raw.try_into_block::<LittleEndian>(),
                };
                match block {
                    Ok(Block::SectionHeader(_)) => interfaces.clear(),
                    Ok(Block::InterfaceDescription(idb)) => {
                        let resol = idb.options.iter().find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        });
                        interfaces.push(Interface { link: idb.linktype, unit: TsUnit::of(resol) });
                    }
                    Ok(Block::EnhancedPacket(epb)) => match interfaces.get(epb.interface_id as usize) {
                        Some(i) => {
                            let ts = i.unit.ns(epb.timestamp.as_nanos().min(u64::MAX as u128) as u64);
                            frame(i.link, &epb.data, ts, out, skipped);
                        }
                        None => skipped.damaged += 1,
                    },
                    Ok(Block::SimplePacket(spb)) => match interfaces.first() {
                        Some(i) => frame(i.link, &spb.data, 0, out, skipped),
                        None => skipped.damaged += 1,
                    },
                    Ok(_) => {}
                    Err(_) => skipped.damaged += 1,
                }
            }
            Err(PcapError::IncompleteBuffer) => {
                skipped.truncated += 1;
                break;
            }
            Err(_) => {
                // The block's framing is broken: find the next block that
                // reads (blocks are 4-byte aligned).
                skipped.damaged += 1;
                match resync(&parser, before) {
                    Some(r) => rest = r,
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// The input from the first 4-byte-aligned offset past `from`'s start where
/// a block of a known type reads whole.
fn resync<'a>(parser: &PcapNgParser, from: &'a [u8]) -> Option<&'a [u8]> {
    let big = parser.section().endianness == pcap_file::Endianness::Big;
    let mut at = 4;
    while at + 12 <= from.len() {
        let cand = &from[at..];
        let word = [cand[0], cand[1], cand[2], cand[3]];
        let (ty, reads) = if big {
            (u32::from_be_bytes(word), RawBlock::from_slice::<BigEndian>(cand).is_ok())
        } else {
            (u32::from_le_bytes(word), RawBlock::from_slice::<LittleEndian>(cand).is_ok())
        };
        if KNOWN_BLOCKS.contains(&ty) && reads {
            return Some(cand);
        }
        at += 4;
    }
    None
}

fn frame(link: DataLink, data: &[u8], ts: i64, out: &mut Vec<Datagram>, skipped: &mut Skipped) {
    let ip = match link {
        DataLink::ETHERNET => ethernet(data),
        DataLink::LINUX_SLL => data.get(16..).map(|p| (u16::from_be_bytes([data[14], data[15]]), p)),
        DataLink::LINUX_SLL2 => data.get(20..).map(|p| (u16::from_be_bytes([data[0], data[1]]), p)),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => data.first().map(|b| match b >> 4 {
            4 => (0x0800, data),
            _ => (0x86dd, data),
        }),
        DataLink::NULL | DataLink::LOOP => data.get(4..).map(|p| match p.first().map(|b| b >> 4) {
            Some(4) => (0x0800, p),
            _ => (0x86dd, p),
        }),
        _ => None,
    };
    let Some((ethertype, ip)) = ip else {
        skipped.not_udp += 1;
        return;
    };
    let parsed = match ethertype {
        0x0800 => ipv4(ip, skipped),
        0x86dd => ipv6(ip, skipped),
        _ => {
            skipped.not_udp += 1;
            None
        }
    };
    if let Some((src, udp)) = parsed {
        if udp.len() < 8 {
            skipped.truncated += 1;
            return;
        }
        let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        if len < 8 || len > udp.len() {
            skipped.truncated += 1;
            return;
        }
        out.push(Datagram {
            time_ns: ts,
            src,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..len].to_vec(),
        });
    }
}

fn ethernet(data: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut ty = u16::from_be_bytes([*data.get(12)?, *data.get(13)?]);
    while ty == 0x8100 || ty == 0x88a8 {
        at += 4;
        ty = u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]);
    }
    Some((ty, data.get(at + 2..)?))
}

fn ipv4<'a>(ip: &'a [u8], skipped: &mut Skipped) -> Option<(IpAddr, &'a [u8])> {
    if ip.len() < 20 {
        skipped.truncated += 1;
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if ihl < 20 || ip.len() < ihl || total < ihl {
        skipped.truncated += 1;
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        // Only a first fragment stands for a datagram; later ones would
        // count it twice.
        if frag & 0x1fff == 0 && ip[9] == 17 {
            skipped.fragments += 1;
        }
        return None;
    }
    if ip[9] != 17 {
        skipped.not_udp += 1;
        return None;
    }
    let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
    Some((src, &ip[ihl..total.min(ip.len())]))
}

fn ipv6<'a>(ip: &'a [u8], skipped: &mut Skipped) -> Option<(IpAddr, &'a [u8])> {
    if ip.len() < 40 {
        skipped.truncated += 1;
        return None;
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut next = ip[6];
    let mut at = 40;
    loop {
        match next {
            17 => break,
            0 | 43 | 60 => {
                let h = ip.get(at..at + 2)?;
                next = h[0];
                at += (h[1] as usize + 1) * 8;
            }
            44 => {
                let offset = ip.get(at + 2..at + 4).map_or(1, |o| u16::from_be_bytes([o[0], o[1]]) >> 3);
                if offset == 0 && ip.get(at) == Some(&17) {
                    skipped.fragments += 1;
                }
                return None;
            }
            _ => {
                skipped.not_udp += 1;
                return None;
            }
        }
    }
    Some((IpAddr::from(src), ip.get(at..)?))
}
