//! The exporters a flow source has heard from, shared with components that
//! act on them (the `snmp` source polls every router that sends flows).
//!
//! A flow source publishes one [`SeenExporters`] under its name at build
//! time; each receive thread keeps a [`SeenCache`] so that the shared set is
//! locked only when an address is new to that thread.

use crate::addr::Addr;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// Exporter address → when it was first seen.
#[derive(Debug, Default)]
pub struct SeenExporters {
    inner: Mutex<HashMap<IpAddr, SystemTime>>,
}

impl SeenExporters {
    /// Records `addr` (v4-mapped addresses are stored as IPv4).
    pub fn note(&self, addr: IpAddr) {
        let addr = addr.to_canonical();
        if let Ok(mut m) = self.inner.lock() {
            m.entry(addr).or_insert_with(SystemTime::now);
        }
    }

    /// Every exporter seen so far, in address order.
    pub fn snapshot(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.inner.lock().map(|m| m.keys().copied().collect()).unwrap_or_default();
        v.sort();
        v
    }

    /// How many exporters have been seen.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |m| m.len())
    }

    /// Whether none has been seen.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A thread's memory of what it already reported, bounded so that a flood
/// of spoofed sources cannot grow it without limit (beyond the bound every
/// message takes the shared lock, which is still correct).
#[derive(Debug)]
pub struct SeenCache {
    shared: std::sync::Arc<SeenExporters>,
    local: HashSet<Addr>,
}

const LOCAL_BOUND: usize = 1 << 16;

impl SeenCache {
    /// A cache in front of `shared`.
    pub fn new(shared: std::sync::Arc<SeenExporters>) -> Self {
        Self { shared, local: HashSet::new() }
    }

    /// Notes an exporter given as a 16-byte (v4-mapped for IPv4) address.
    #[inline]
    pub fn note(&mut self, addr: Addr) {
        if self.local.contains(&addr) {
            return;
        }
        self.shared.note(std::net::IpAddr::from(addr));
        if self.local.len() < LOCAL_BOUND {
            self.local.insert(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_and_plain_ipv4_are_one_exporter() {
        let s = std::sync::Arc::new(SeenExporters::default());
        let mut c = SeenCache::new(s.clone());
        c.note(crate::schema::Addr::v4(0x7f00_0001));
        c.note(crate::schema::Addr::v4(0x7f00_0001));
        s.note("::ffff:127.0.0.1".parse().unwrap());
        s.note("127.0.0.2".parse().unwrap());
        assert_eq!(s.snapshot(), vec!["127.0.0.1".parse::<IpAddr>().unwrap(), "127.0.0.2".parse().unwrap()]);
    }
}
