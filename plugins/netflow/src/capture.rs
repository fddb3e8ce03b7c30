//! Reading UDP datagrams out of pcap and pcapng files.
//!
//! Link types: Ethernet (with 802.1Q tags), Linux cooked (SLL, SLL2), raw
//! IPv4/IPv6 and BSD loopback. IPv4 and IPv6 (with the common extension
//! headers). Fragments and non-UDP packets are skipped and counted.

use std::io::Read;
use std::net::IpAddr;

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

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
    /// Frames that were not IPv4/IPv6 UDP.
    pub not_udp: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Frames cut short by the capture's snap length or damaged.
    pub truncated: u64,
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
pub fn read_bytes(bytes: &[u8]) -> Result<(Vec<Datagram>, Skipped), String> {
    let mut out = Vec::new();
    let mut skipped = Skipped::default();
    let magic = bytes.get(..4).ok_or("file too short for a capture")?;
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut r = PcapNgReader::new(bytes).map_err(|e| format!("not a pcapng file: {e}"))?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            let block = block.map_err(|e| format!("damaged pcapng block: {e}"))?;
            match block {
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    let link = links.get(epb.interface_id as usize).copied().unwrap_or(DataLink::ETHERNET);
                    let ts = epb.timestamp.as_nanos() as i64;
                    frame(link, &epb.data, ts, &mut out, &mut skipped);
                }
                Block::SimplePacket(spb) => {
                    let link = links.first().copied().unwrap_or(DataLink::ETHERNET);
                    frame(link, &spb.data, 0, &mut out, &mut skipped);
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(bytes).map_err(|e| format!("not a pcap file: {e}"))?;
        let link = r.header().datalink;
        while let Some(pkt) = r.next_packet() {
            let pkt = pkt.map_err(|e| format!("damaged pcap record: {e}"))?;
            let ts = pkt.timestamp.as_nanos() as i64;
            frame(link, &pkt.data, ts, &mut out, &mut skipped);
        }
    }
    Ok((out, skipped))
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
        skipped.fragments += 1;
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
                skipped.fragments += 1;
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
