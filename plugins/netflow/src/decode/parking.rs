//! Data sets waiting for their template, bounded in bytes.
//!
//! Data before its template is normal (collector restarts, a balancer moving
//! an exporter); the sets wait here for [`Parked::take`] when the template
//! arrives, or until they expire. Every operation is O(1) (amortized): sets
//! sit in one arrival-ordered queue, and each template key keeps the ids of
//! its own sets, so releasing one template never walks the others'.
//!
//! The budget counts what a set really costs, its bytes plus a fixed
//! overhead per set, so a flood of empty sets cannot grow memory while the
//! byte count reads zero.

use std::collections::{HashMap, VecDeque};

use crate::row::Header;
use crate::state::TemplateKey;

/// What one parked set costs beyond its bytes: its slot in the queue, its
/// id in its key's list, a share of that list and its hash entry, and the
/// allocator's header on the body.
pub const SET_OVERHEAD: usize = std::mem::size_of::<Slot>() + 96;

/// A parked data set.
#[derive(Debug)]
pub struct ParkedSet {
    pub key: TemplateKey,
    pub header: Header,
    pub export_ms: i64,
    pub uptime_ms: u32,
    pub body: Box<[u8]>,
    /// The journal record it came from (0 without a journal).
    pub tag: u64,
}

#[derive(Debug)]
struct Slot {
    /// `None` once taken (released); the slot stays until it reaches the
    /// front of the queue, and its overhead stays charged until then.
    set: Option<ParkedSet>,
}

/// Why parked sets left without being decoded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// Waited longer than the template timeout.
    pub expired: u64,
    /// Pushed out to respect the byte budget (or larger than it).
    pub evicted: u64,
}

/// Parked data sets.
#[derive(Debug)]
pub struct Parked {
    queue: VecDeque<Slot>,
    /// Id of `queue[0]`.
    first_id: u64,
    by_key: HashMap<TemplateKey, VecDeque<u64>>,
    /// Charged bytes (bodies plus overhead per slot).
    bytes: usize,
    /// Sets waiting (slots not yet taken).
    live: usize,
    max_bytes: usize,
    /// The exporters of the sets dropped (evicted or expired) since the
    /// last [`Parked::take_gone_owners`], when someone attributes them.
    owners: Option<Vec<(spillway_core::addr::Addr, u64)>>,
}

impl Parked {
    /// An empty store of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            first_id: 0,
            by_key: HashMap::new(),
            bytes: 0,
            live: 0,
            max_bytes,
            owners: None,
        }
    }

    /// Records whose sets are dropped from now on.
    pub fn track_owners(&mut self) {
        self.owners.get_or_insert_with(Vec::new);
    }

    /// The exporters (and journal tags) of the sets dropped since the last
    /// call, one entry per set.
    pub fn take_gone_owners(&mut self) -> Vec<(spillway_core::addr::Addr, u64)> {
        self.owners.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether dropped sets wait to be attributed.
    pub fn has_gone_owners(&self) -> bool {
        self.owners.as_ref().is_some_and(|o| !o.is_empty())
    }

    /// A new budget; a smaller one takes effect at the next park.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// Sets waiting, and the bytes they are charged (their memory).
    pub fn usage(&self) -> (usize, usize) {
        (self.live, self.bytes)
    }

    /// Sets waiting, per exporter.
    pub fn by_exporter(&self) -> HashMap<spillway_core::addr::Addr, u32> {
        let mut m = HashMap::new();
        for (k, ids) in &self.by_key {
            *m.entry(k.domain.exporter).or_insert(0) += ids.len() as u32;
        }
        m
    }

    /// Whether any set waits for `key`.
    pub fn has(&self, key: &TemplateKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// Parks a set; older sets are evicted as needed to fit (counted in the
    /// result), and a set larger than the whole budget is refused (counted
    /// as evicted too).
    pub fn park(&mut self, set: ParkedSet) -> Gone {
        let mut gone = Gone::default();
        let cost = set.body.len() + SET_OVERHEAD;
        if cost > self.max_bytes {
            gone.evicted += 1;
            if let Some(o) = &mut self.owners {
                o.push((set.header.exporter, set.tag));
            }
            return gone;
        }
        while self.bytes + cost > self.max_bytes {
            match self.pop_front() {
                Some(true) => gone.evicted += 1,
                Some(false) => {}
                None => break,
            }
        }
        let id = self.first_id + self.queue.len() as u64;
        self.by_key.entry(set.key).or_default().push_back(id);
        self.queue.push_back(Slot { set: Some(set) });
        self.bytes += cost;
        self.live += 1;
        gone
    }

    /// Takes every set waiting for `key`, oldest first, into `into`.
    pub fn take(&mut self, key: &TemplateKey, into: &mut Vec<ParkedSet>) {
        let Some(ids) = self.by_key.remove(key) else { return };
        for id in ids {
            let Some(slot) = self.queue.get_mut((id - self.first_id) as usize) else { continue };
            if let Some(set) = slot.set.take() {
                self.bytes -= set.body.len();
                self.live -= 1;
                into.push(set);
            }
        }
        // Released slots at the front need not wait for older ones.
        while self.queue.front().is_some_and(|s| s.set.is_none()) {
            self.pop_front();
        }
    }

    /// Drops sets received at or before `cutoff` (ns).
    pub fn expire(&mut self, cutoff: i64) -> Gone {
        let mut gone = Gone::default();
        while let Some(front) = self.queue.front() {
            if front.set.as_ref().is_some_and(|s| s.header.time_received > cutoff) {
                break;
            }
            if self.pop_front() == Some(true) {
                gone.expired += 1;
            }
        }
        gone
    }

    /// Takes every waiting set, oldest first (a stop).
    pub fn drain(&mut self, into: &mut Vec<ParkedSet>) {
        while let Some(slot) = self.queue.pop_front() {
            self.first_id += 1;
            if let Some(set) = slot.set {
                into.push(set);
            }
        }
        self.by_key.clear();
        self.bytes = 0;
        self.live = 0;
    }

    /// Removes the front slot; `Some(true)` when it still held a set.
    fn pop_front(&mut self) -> Option<bool> {
        let slot = self.queue.pop_front()?;
        let id = self.first_id;
        self.first_id += 1;
        self.bytes -= SET_OVERHEAD;
        let Some(set) = slot.set else { return Some(false) };
        self.bytes -= set.body.len();
        self.live -= 1;
        if let Some(o) = &mut self.owners {
            o.push((set.header.exporter, set.tag));
        }
        if let Some(ids) = self.by_key.get_mut(&set.key) {
            // Ids of a key ascend, and every older slot has left: ours is first.
            if ids.front() == Some(&id) {
                ids.pop_front();
            }
            if ids.is_empty() {
                self.by_key.remove(&set.key);
            }
        }
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DomainKey;

    fn set(id: u16, t: i64, len: usize) -> ParkedSet {
        ParkedSet {
            key: TemplateKey {
                domain: DomainKey { exporter: spillway_core::addr::Addr([1; 16]), domain: 0 },
                id,
            },
            header: Header {
                time_received: t,
                exporter: spillway_core::addr::Addr([1; 16]),
                domain: 0,
                sequence: 0,
                version: 10,
            },
            export_ms: 0,
            uptime_ms: 0,
            body: vec![0u8; len].into_boxed_slice(),
            tag: 0,
        }
    }

    #[test]
    fn waiting_sets_are_counted_per_exporter_and_dropped_ones_attributed() {
        let mut p = Parked::new(1 << 20);
        p.track_owners();
        for i in 0..3 {
            p.park(set(256 + i, i as i64, 10));
        }
        let one = spillway_core::addr::Addr([1; 16]);
        assert_eq!(p.by_exporter().get(&one), Some(&3));
        let mut out = Vec::new();
        p.take(&set(256, 0, 0).key, &mut out);
        assert_eq!(p.by_exporter().get(&one), Some(&2), "a released set no longer waits");
        assert!(p.take_gone_owners().is_empty(), "a release is not a drop");
        assert_eq!(p.expire(10).expired, 2);
        assert_eq!(p.take_gone_owners(), vec![(one, 0), (one, 0)], "each expired set names its exporter");
        assert!(p.by_exporter().is_empty());
    }

    #[test]
    fn sets_are_taken_by_key_expire_in_order_and_fit_the_budget() {
        let mut p = Parked::new(10 * (SET_OVERHEAD + 100));
        for i in 0..6 {
            p.park(set(256 + (i % 2) as u16, i, 100));
        }
        assert_eq!(p.usage(), (6, 6 * (SET_OVERHEAD + 100)));
        let mut out = Vec::new();
        p.take(&set(256, 0, 0).key, &mut out);
        assert_eq!(out.iter().map(|s| s.header.time_received).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(p.usage().0, 3);
        assert_eq!(p.expire(4), Gone { expired: 2, evicted: 0 }, "1 and 3 are older than 4");
        assert_eq!(p.usage(), (1, SET_OVERHEAD + 100));
        // Filling past the budget evicts the oldest.
        let mut gone = Gone::default();
        for i in 10..25 {
            let g = p.park(set(300, i, 100));
            gone.evicted += g.evicted;
        }
        assert_eq!(p.usage().0, 10);
        assert_eq!(gone.evicted, 6);
        assert!(p.usage().1 <= 10 * (SET_OVERHEAD + 100));
    }

    #[test]
    fn empty_sets_are_charged_their_overhead() {
        let mut p = Parked::new(1 << 20);
        let mut evicted = 0;
        for i in 0..100_000 {
            evicted += p.park(set(256 + (i % 5000) as u16, i, 0)).evicted;
        }
        let (live, bytes) = p.usage();
        assert!(bytes <= 1 << 20);
        assert_eq!(live, (1 << 20) / SET_OVERHEAD);
        assert_eq!(evicted as usize + live, 100_000);
    }
}
