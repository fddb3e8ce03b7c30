//! Packet headers as they were on the wire: Ethernet (802.1Q, QinQ), MPLS
//! (label stack, pseudowire control word), IPv4, IPv6 (extension headers),
//! TCP, UDP, SCTP, ICMP and ICMPv6.
//!
//! IPFIX PSAMP exporters send the first bytes of sampled packets
//! (`dataLinkFrameSection`, `ipHeaderPacketSection`, …) and sFlow agents send
//! raw packet headers; both become flow records through this parser. Sections
//! are usually cut short (128 bytes is common), so every layer is read as far
//! as the bytes go and nothing past the end is ever touched. Nothing here
//! allocates.
//!
//! ```
//! use spillway_netflow::packet::{Headers, ethernet};
//! // Ethernet, IPv4 (UDP 10.0.0.1:53 → 10.0.0.2:40000), the header only.
//! let mut f = vec![0u8; 12];
//! f.extend_from_slice(&[0x08, 0x00]);
//! f.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
//! f.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 40, 0, 0]);
//! let mut h = Headers::default();
//! ethernet(&f, &mut h);
//! assert_eq!((h.protocol, h.src_port, h.dst_port, h.ip_length), (Some(17), Some(53), Some(40000), Some(60)));
//! ```

use spillway_core::schema::Addr;

/// What the headers of one packet said. `None` where the bytes ended before
/// the field, or the packet has no such layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// The outermost 802.1Q VLAN id.
    pub vlan: Option<u16>,
    /// The inner VLAN id of a QinQ (802.1ad) frame.
    pub inner_vlan: Option<u16>,
    /// MPLS labels crossed (0 when the packet had none).
    pub mpls_labels: u8,
    /// The top MPLS label.
    pub mpls_top_label: Option<u32>,
    pub src_addr: Option<Addr>,
    pub dst_addr: Option<Addr>,
    /// IP protocol (IPv6: the upper-layer header after extension headers).
    pub protocol: Option<u8>,
    /// IPv4 type of service / IPv6 traffic class.
    pub tos: Option<u8>,
    /// The IP packet's whole length from its header (IPv4 total length,
    /// IPv6 payload length + 40).
    pub ip_length: Option<u32>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// TCP flags including NS (9 bits).
    pub tcp_flags: Option<u16>,
    /// ICMP/ICMPv6 type << 8 | code.
    pub icmp: Option<u16>,
    /// A fragment other than the first: no transport header to read.
    pub later_fragment: bool,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;

/// Deepest MPLS label stack followed (real stacks have a handful).
const MAX_LABELS: u8 = 16;
/// Ethernet frames nested in pseudowires followed (EoMPLS in EoMPLS …).
const MAX_NESTING: u8 = 2;

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses an Ethernet frame (from the destination MAC on).
pub fn ethernet(frame: &[u8], h: &mut Headers) {
    ethernet_nested(frame, h, 0);
}

fn ethernet_nested(frame: &[u8], h: &mut Headers, depth: u8) {
    let Some(mut ty) = be16(frame, 12) else { return };
    let mut at = 14;
    while matches!(ty, ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD) {
        let Some(tci) = be16(frame, at) else { return };
        let id = tci & 0x0fff;
        if h.vlan.is_none() {
            h.vlan = Some(id);
        } else if h.inner_vlan.is_none() {
            h.inner_vlan = Some(id);
        }
        let Some(next) = be16(frame, at + 2) else { return };
        ty = next;
        at += 4;
    }
    let Some(rest) = frame.get(at..) else { return };
    match ty {
        ETH_IPV4 | ETH_IPV6 => ip(rest, h),
        ETH_MPLS | ETH_MPLS_MC => mpls_nested(rest, h, depth),
        _ => {}
    }
}

/// Parses an MPLS label stack and what follows its bottom label.
pub fn mpls(stack: &[u8], h: &mut Headers) {
    mpls_nested(stack, h, 0);
}

fn mpls_nested(mut b: &[u8], h: &mut Headers, depth: u8) {
    loop {
        let Some(entry) = b.get(..4) else { return };
        let label = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) >> 12;
        if h.mpls_labels == 0 {
            h.mpls_top_label = Some(label);
        }
        h.mpls_labels = h.mpls_labels.saturating_add(1);
        b = &b[4..];
        if entry[2] & 1 == 1 || h.mpls_labels >= MAX_LABELS {
            break;
        }
    }
    mpls_payload_nested(b, h, depth);
}

/// Parses what an MPLS label stack carries: IPv4, IPv6, or (first nibble
/// 0, the pseudowire control word of RFC 4385) an Ethernet frame.
pub fn mpls_payload(b: &[u8], h: &mut Headers) {
    mpls_payload_nested(b, h, 0);
}

fn mpls_payload_nested(b: &[u8], h: &mut Headers, depth: u8) {
    match b.first().map(|x| x >> 4) {
        Some(4 | 6) => ip(b, h),
        Some(0) if depth < MAX_NESTING => {
            if let Some(frame) = b.get(4..) {
                ethernet_nested(frame, h, depth + 1);
            }
        }
        _ => {}
    }
}

/// Parses an IPv4 or IPv6 packet (from its first header byte), and the
/// transport header after it.
pub fn ip(b: &[u8], h: &mut Headers) {
    match b.first().map(|x| x >> 4) {
        Some(4) => ipv4(b, h),
        Some(6) => ipv6(b, h),
        _ => {}
    }
}

fn ipv4(b: &[u8], h: &mut Headers) {
    let Some(&vihl) = b.first() else { return };
    let ihl = (vihl & 0x0f) as usize * 4;
    h.tos = b.get(1).copied();
    h.ip_length = be16(b, 2).map(u32::from);
    let frag = be16(b, 6);
    h.protocol = b.get(9).copied();
    if let Some(a) = b.get(12..16) {
        h.src_addr = Some(Addr::v4(u32::from_be_bytes([a[0], a[1], a[2], a[3]])));
    }
    if let Some(a) = b.get(16..20) {
        h.dst_addr = Some(Addr::v4(u32::from_be_bytes([a[0], a[1], a[2], a[3]])));
    }
    if ihl < 20 {
        return;
    }
    if frag.is_some_and(|f| f & 0x1fff != 0) {
        h.later_fragment = true;
        return;
    }
    if let (Some(p), Some(rest)) = (h.protocol, b.get(ihl..)) {
        transport(p, rest, h);
    }
}

fn ipv6(b: &[u8], h: &mut Headers) {
    if let (Some(x), Some(y)) = (b.first(), b.get(1)) {
        h.tos = Some((x << 4) | (y >> 4));
    }
    h.ip_length = be16(b, 4).map(|l| l as u32 + 40);
    let address = |at: usize| b.get(at..at + 16).and_then(Addr::from_slice);
    h.src_addr = address(8);
    h.dst_addr = address(24);
    let Some(&first) = b.get(6) else { return };
    let mut next = first;
    let mut at = 40;
    // Extension headers, as far as they are in the section.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (b.get(at), b.get(at + 1)) else {
                    h.protocol = Some(next);
                    return;
                };
                next = n;
                at += (len as usize + 1) * 8;
            }
            44 => {
                let (Some(&n), Some(off)) = (b.get(at), be16(b, at + 2)) else {
                    h.protocol = Some(next);
                    return;
                };
                next = n;
                at += 8;
                if off >> 3 != 0 {
                    h.protocol = Some(next);
                    h.later_fragment = true;
                    return;
                }
            }
            51 => {
                let (Some(&n), Some(&len)) = (b.get(at), b.get(at + 1)) else {
                    h.protocol = Some(next);
                    return;
                };
                next = n;
                at += (len as usize + 2) * 4;
            }
            _ => break,
        }
    }
    h.protocol = Some(next);
    if let Some(rest) = b.get(at..) {
        transport(next, rest, h);
    }
}

/// Parses a transport header of IP protocol `protocol`.
pub fn transport(protocol: u8, b: &[u8], h: &mut Headers) {
    match protocol {
        // TCP, UDP, UDP-Lite, SCTP, DCCP: ports first.
        6 | 17 | 33 | 132 | 136 => {
            h.src_port = be16(b, 0);
            h.dst_port = be16(b, 2);
            if protocol == 6
                && let (Some(&hi), Some(&lo)) = (b.get(12), b.get(13))
            {
                h.tcp_flags = Some((((hi & 1) as u16) << 8) | lo as u16);
            }
        }
        1 | 58 => h.icmp = be16(b, 0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp() -> Vec<u8> {
        let mut p = vec![0x45, 0x10, 0, 48, 0, 1, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 2];
        p.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 28, 0, 0]);
        p
    }

    fn ipv6_tcp() -> Vec<u8> {
        let mut p = vec![0x60, 0xa0, 0, 0, 0, 20, 6, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // TCP 443 → 50000, flags SYN|ACK, NS set.
        p.extend_from_slice(&[0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0x51, 0x12, 0, 0, 0, 0, 0, 0]);
        p
    }

    fn eth(ty: u16, tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for (tpid, id) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&ty.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn parse(f: impl Fn(&mut Headers)) -> Headers {
        let mut h = Headers::default();
        f(&mut h);
        h
    }

    #[test]
    fn ethernet_vlan_qinq_ipv4_udp() {
        let h =
            parse(|h| ethernet(&eth(ETH_IPV4, &[(ETH_QINQ, 100), (ETH_VLAN, 0x2000 | 7)], &ipv4_udp()), h));
        assert_eq!((h.vlan, h.inner_vlan), (Some(100), Some(7)));
        assert_eq!(h.src_addr, Some(Addr::v4(0xc000_0201)));
        assert_eq!(h.dst_addr, Some(Addr::v4(0xc633_6402)));
        assert_eq!((h.protocol, h.tos, h.ip_length), (Some(17), Some(0x10), Some(48)));
        assert_eq!((h.src_port, h.dst_port, h.tcp_flags), (Some(5000), Some(53), None));
    }

    #[test]
    fn ipv6_tcp_with_ns_flag_and_traffic_class() {
        let h = parse(|h| ethernet(&eth(ETH_IPV6, &[], &ipv6_tcp()), h));
        assert_eq!((h.protocol, h.tos, h.ip_length), (Some(6), Some(0x0a), Some(60)));
        assert_eq!((h.src_port, h.dst_port, h.tcp_flags), (Some(443), Some(50000), Some(0x112)));
        assert_eq!(h.src_addr.unwrap().octets()[15], 1);
    }

    #[test]
    fn ipv6_extension_headers_and_later_fragments() {
        // Hop-by-hop (8 bytes) then a first fragment then UDP.
        let mut p = ipv6_tcp()[..40].to_vec();
        p[6] = 0;
        p.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
        p.extend_from_slice(&[0, 7, 0, 9, 0, 8, 0, 0]);
        let h = parse(|h| ip(&p, h));
        assert_eq!(
            (h.protocol, h.src_port, h.dst_port, h.later_fragment),
            (Some(17), Some(7), Some(9), false)
        );
        // Offset 1 (8 bytes in): no transport header.
        p[50] = 0;
        p[51] = 8;
        let h = parse(|h| ip(&p, h));
        assert_eq!((h.protocol, h.src_port, h.later_fragment), (Some(17), None, true));
    }

    #[test]
    fn mpls_stack_then_ip_or_pseudowire_ethernet() {
        let mut stack = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        stack.extend_from_slice(&ipv4_udp());
        let h = parse(|h| ethernet(&eth(ETH_MPLS, &[], &stack), h));
        assert_eq!((h.mpls_labels, h.mpls_top_label), (2, Some(16)));
        assert_eq!((h.protocol, h.dst_port), (Some(17), Some(53)));
        // EoMPLS: bottom label, control word, an Ethernet frame with a VLAN.
        let mut pw = vec![0x00, 0x05, 0x01, 0x40, 0, 0, 0, 0];
        pw.extend_from_slice(&eth(ETH_IPV6, &[(ETH_VLAN, 42)], &ipv6_tcp()));
        let h = parse(|h| mpls(&pw, h));
        assert_eq!((h.mpls_labels, h.vlan, h.protocol, h.src_port), (1, Some(42), Some(6), Some(443)));
    }

    #[test]
    fn icmp_type_and_code() {
        let mut p = ipv4_udp();
        p[9] = 1;
        p[20] = 3;
        p[21] = 1;
        let h = parse(|h| ip(&p, h));
        assert_eq!((h.protocol, h.icmp, h.src_port), (Some(1), Some(0x0301), None));
    }

    #[test]
    fn every_truncation_reads_only_what_is_there() {
        let frames = [
            eth(ETH_IPV4, &[(ETH_VLAN, 5)], &ipv4_udp()),
            eth(ETH_IPV6, &[], &ipv6_tcp()),
            eth(
                ETH_MPLS,
                &[],
                &[[0x00, 0x05, 0x01, 0x40, 0, 0, 0, 0].as_slice(), &eth(ETH_IPV4, &[], &ipv4_udp())].concat(),
            ),
        ];
        for f in &frames {
            let whole = parse(|h| ethernet(f, h));
            for cut in 0..f.len() {
                let h = parse(|h| ethernet(&f[..cut], h));
                // A field read from a cut frame is the whole frame's value.
                for (a, b) in [(h.src_port, whole.src_port), (h.dst_port, whole.dst_port)] {
                    assert!(a.is_none() || a == b, "{cut}");
                }
                assert!(h.src_addr.is_none() || h.src_addr == whole.src_addr, "{cut}");
            }
        }
    }
}
