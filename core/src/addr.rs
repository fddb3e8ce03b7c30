//! [`Addr`]: an IP address in the engine's 16-byte form, the form of every
//! address column of the flow schema (`FixedSizeBinary(16)`): IPv6 as is,
//! IPv4 v4-mapped (`::ffff:a.b.c.d`). One type instead of bare `[u8; 16]`
//! arrays, so an address cannot be confused with other 16 bytes and every
//! conversion is written once.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The v4-mapped prefix.
const V4_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// An address in the engine's 16-byte form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// `::` (all zero).
    pub const UNSPECIFIED: Addr = Addr([0; 16]);
    /// `0.0.0.0`, v4-mapped: what exporters send for "no address" in an
    /// IPv4 field.
    pub const V4_UNSPECIFIED: Addr = Addr::v4(0);

    /// An IPv4 address given as a big-endian `u32`, v4-mapped.
    #[inline]
    pub const fn v4(addr: u32) -> Addr {
        let o = addr.to_be_bytes();
        Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3]])
    }

    /// An IPv4 address from its four octets, v4-mapped.
    #[inline]
    pub const fn from_v4_octets(o: [u8; 4]) -> Addr {
        Addr::v4(u32::from_be_bytes(o))
    }

    /// The address in `b`: 4 bytes (IPv4) or 16 (IPv6, or the 16-byte form);
    /// `None` for any other length.
    #[inline]
    pub fn from_slice(b: &[u8]) -> Option<Addr> {
        match b.len() {
            4 => Some(Addr::from_v4_octets([b[0], b[1], b[2], b[3]])),
            16 => {
                let mut a = [0; 16];
                a.copy_from_slice(b);
                Some(Addr(a))
            }
            _ => None,
        }
    }

    /// The address as std knows it (IPv4 when v4-mapped).
    #[inline]
    pub fn ip(self) -> IpAddr {
        match self.v4_octets() {
            Some(o) => IpAddr::V4(Ipv4Addr::from(o)),
            None => IpAddr::V6(Ipv6Addr::from(self.0)),
        }
    }

    /// The IPv4 octets of a v4-mapped address.
    #[inline]
    pub fn v4_octets(&self) -> Option<[u8; 4]> {
        (self.0[..12] == V4_PREFIX).then(|| [self.0[12], self.0[13], self.0[14], self.0[15]])
    }

    /// The sixteen bytes.
    #[inline]
    pub fn octets(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<IpAddr> for Addr {
    #[inline]
    fn from(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr::from_v4_octets(v4.octets()),
            IpAddr::V6(v6) => Addr(v6.octets()),
        }
    }
}

impl From<Ipv4Addr> for Addr {
    #[inline]
    fn from(ip: Ipv4Addr) -> Addr {
        Addr::from_v4_octets(ip.octets())
    }
}

impl From<Addr> for IpAddr {
    #[inline]
    fn from(a: Addr) -> IpAddr {
        a.ip()
    }
}

impl AsRef<[u8]> for Addr {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", self.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_both_families() {
        for s in ["10.1.2.3", "0.0.0.0", "2001:db8::1", "::1", "::", "::ffff:1.2.3.4"] {
            let ip: IpAddr = s.parse().unwrap();
            let a = Addr::from(ip);
            let back = a.ip();
            // `::ffff:1.2.3.4` is the v4-mapped form: it comes back as IPv4.
            let want = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            assert_eq!(back, want, "{s}");
            assert_eq!(Addr::from(back), a);
        }
        assert_eq!(Addr::v4(0x0a01_0203).to_string(), "10.1.2.3");
        assert_eq!(Addr::from_slice(&[10, 1, 2, 3]), Some(Addr::v4(0x0a01_0203)));
        assert_eq!(Addr::from_slice(&[1, 2, 3]), None);
        assert_eq!(Addr::V4_UNSPECIFIED.v4_octets(), Some([0; 4]));
        assert_eq!(Addr::UNSPECIFIED.v4_octets(), None);
    }
}
