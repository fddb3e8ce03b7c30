//! Everything the decoder knows per (exporter address, observation domain):
//! templates, sampler tables, the exporter-wide sampling rate, the boot
//! time, sequence positions. Bounded in bytes, evicted in O(1).
//!
//! Source addresses can be spoofed and the observation domain comes from the
//! packet, so an outsider can make us create state at will. The store
//! therefore charges every entry what it costs (a conservative estimate of
//! its heap use), evicts the least recently used (exporter, domain) when the
//! budget is spent, caps how many domains one address may hold, and caps the
//! templates and samplers of one domain, evicting its least recently used
//! template. Every eviction is counted.

use spillway_core::addr::Addr;
use std::collections::HashMap;
use std::sync::Arc;

use lru::LruCache;

use crate::sequence::Stream;
use crate::template::Template;

/// An exporter's address (16 bytes, IPv4 v4-mapped) and observation domain
/// (the v9 source id, the IPFIX observation domain id, the v5 engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainKey {
    pub exporter: Addr,
    pub domain: u32,
}

/// A template's key: its exporter and domain, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    pub domain: DomainKey,
    pub id: u16,
}

/// The export protocol of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V9,
    Ipfix,
}

impl Version {
    /// The number in the message header and the `flow_version` column.
    pub fn number(self) -> u16 {
        match self {
            Self::V5 => 5,
            Self::V9 => 9,
            Self::Ipfix => 10,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one sampler selects: 1 in `n` packets, or a rate that cannot be
/// expressed as 1-in-N (time-based or hash-based selection).
pub type SamplerRate = Option<u32>;

/// Bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of state the store may hold.
    pub max_bytes: usize,
    /// Templates one (exporter, domain) may hold; the least recently used
    /// is evicted beyond this.
    pub max_templates_per_domain: usize,
    /// Observation domains one exporter address may hold; a new one beyond
    /// this is refused (counted) rather than evicting someone else's state.
    pub max_domains_per_exporter: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_templates_per_domain: 1024, max_domains_per_exporter: 256 }
    }
}

/// Most sampler table entries one domain may hold.
pub const MAX_SAMPLERS_PER_DOMAIN: usize = 256;

/// What an entry costs beyond its templates: the entry and its node in the
/// LRU list and hash table, and the per-address domain count.
const DOMAIN_COST: usize = std::mem::size_of::<DomainState>() + 160;
/// What a template costs beyond its fields: the `Arc`, its node in the
/// domain's LRU, and the allocator's headers.
const TEMPLATE_COST: usize = std::mem::size_of::<Template>() + 128;
/// Bytes per template field (its spec and its plan entry).
const FIELD_COST: usize = std::mem::size_of::<crate::template::FieldSpec>() + 2;
/// Bytes per sampler table entry.
const SAMPLER_COST: usize = 48;

fn template_cost(t: &Template) -> usize {
    TEMPLATE_COST + t.fields.len() * FIELD_COST
}

/// The state of one (exporter, domain).
#[derive(Debug)]
pub struct DomainState {
    templates: LruCache<u16, Arc<Template>>,
    /// Sampler table from options data: id → rate.
    samplers: HashMap<u64, SamplerRate>,
    /// Exporter-wide rate from options data that name no sampler.
    pub rate: Option<SamplerRate>,
    /// Boot time (ms since the epoch) from `systemInitTimeMilliseconds`.
    pub boot_ms: Option<i64>,
    /// Sequence positions per version.
    pub streams: [Option<Stream>; 3],
    /// Notices already logged for this exporter (bit per kind).
    pub noted: u8,
    /// What this entry is charged.
    bytes: usize,
}

impl DomainState {
    fn new() -> Self {
        Self {
            templates: LruCache::unbounded(),
            samplers: HashMap::new(),
            rate: None,
            boot_ms: None,
            streams: [None; 3],
            noted: 0,
            bytes: DOMAIN_COST,
        }
    }

    /// The sequence position of `version`'s stream.
    pub fn stream(&mut self, version: Version) -> &mut Option<Stream> {
        &mut self.streams[version.index()]
    }

    /// A sampler's rate: `None` when the sampler was never described.
    pub fn sampler(&self, id: u64) -> Option<SamplerRate> {
        self.samplers.get(&id).copied()
    }

    /// Whether a template with `id` is known (does not mark it used).
    pub fn has_template(&self, id: u16) -> bool {
        self.templates.contains(&id)
    }

    /// Templates held.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self::new()
    }

    #[cfg(test)]
    pub(crate) fn set_sampler_for_tests(&mut self, id: u64, rate: SamplerRate) {
        self.samplers.insert(id, rate);
    }
}

/// What a change to the store did beyond itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evictions {
    /// Templates evicted (with their domains, or alone).
    pub templates: u64,
    /// (exporter, domain) entries evicted.
    pub domains: u64,
}

/// The state of every (exporter, domain), bounded.
#[derive(Debug)]
pub struct StateStore {
    domains: LruCache<DomainKey, DomainState>,
    per_exporter: HashMap<Addr, u32>,
    limits: StoreLimits,
    bytes: usize,
    /// Evictions so far.
    pub evicted: Evictions,
    /// New domains refused because their exporter holds too many.
    pub refused_domains: u64,
}

impl StateStore {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            domains: LruCache::unbounded(),
            per_exporter: HashMap::new(),
            limits,
            bytes: 0,
            evicted: Evictions::default(),
            refused_domains: 0,
        }
    }

    /// New bounds; a smaller budget takes effect at the next insertion.
    pub fn set_limits(&mut self, limits: StoreLimits) {
        self.limits = limits;
    }

    /// Bytes the store is charged now (never above its budget for long:
    /// every insertion evicts down to it).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// (exporter, domain) entries held.
    pub fn len(&self) -> usize {
        self.domains.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The state of `key`, marked used; `None` if there is none.
    #[inline]
    pub fn get(&mut self, key: &DomainKey) -> Option<&mut DomainState> {
        self.domains.get_mut(key)
    }

    /// Templates (and options templates) held, per exporter.
    pub fn templates_by_exporter(&self) -> HashMap<Addr, u32> {
        let mut m = HashMap::new();
        for (k, d) in self.domains.iter() {
            *m.entry(k.exporter).or_insert(0) += d.template_count() as u32;
        }
        m
    }

    /// The state of `key` without marking it used.
    pub fn peek(&self, key: &DomainKey) -> Option<&DomainState> {
        self.domains.peek(key)
    }

    /// The state of `key`, created if need be; `None` when its exporter
    /// already holds the most domains it may (counted).
    #[inline]
    pub fn entry(&mut self, key: DomainKey) -> Option<&mut DomainState> {
        if !self.domains.contains(&key) {
            let n = self.per_exporter.entry(key.exporter).or_insert(0);
            if *n as usize >= self.limits.max_domains_per_exporter {
                self.refused_domains += 1;
                return None;
            }
            *n += 1;
            self.domains.push(key, DomainState::new());
            self.bytes += DOMAIN_COST;
            self.shrink(&key);
        }
        self.domains.get_mut(&key)
    }

    /// The template `id` of `key`, marked used. Cloning the `Arc` does not
    /// allocate.
    #[inline]
    pub fn template(&mut self, key: &TemplateKey) -> Option<Arc<Template>> {
        self.domains.get_mut(&key.domain)?.templates.get(&key.id).cloned()
    }

    /// If `key` already holds a template with exactly these fields, marks it
    /// used and returns true (a refresh: nothing to build, nothing to
    /// allocate).
    pub fn refresh(
        &mut self,
        key: &TemplateKey,
        fields: &[crate::template::FieldSpec],
        scope_fields: u16,
    ) -> bool {
        let Some(d) = self.domains.get_mut(&key.domain) else { return false };
        match d.templates.get(&key.id) {
            Some(t) => *t.fields == *fields && t.scope_fields == scope_fields,
            None => false,
        }
    }

    /// Adds or replaces a template; returns false when its domain was
    /// refused (see [`StateStore::entry`]).
    pub fn insert_template(&mut self, key: TemplateKey, t: Template) -> bool {
        let max_templates = self.limits.max_templates_per_domain;
        let cost = template_cost(&t);
        let Some(d) = self.entry(key.domain) else { return false };
        let mut freed = 0usize;
        let mut evicted = 0u64;
        if let Some(old) = d.templates.put(key.id, Arc::new(t)) {
            freed += template_cost(&old);
        }
        while d.templates.len() > max_templates {
            let Some((_, old)) = d.templates.pop_lru() else { break };
            freed += template_cost(&old);
            evicted += 1;
        }
        d.bytes = d.bytes + cost - freed;
        self.bytes = self.bytes + cost - freed;
        self.evicted.templates += evicted;
        self.shrink(&key.domain);
        true
    }

    /// Withdraws one template (IPFIX withdrawal).
    pub fn remove_template(&mut self, key: &TemplateKey) {
        if let Some(d) = self.domains.peek_mut(&key.domain)
            && let Some(old) = d.templates.pop(&key.id)
        {
            let cost = template_cost(&old);
            d.bytes -= cost;
            self.bytes -= cost;
        }
    }

    /// Withdraws every template of one kind of a domain.
    pub fn remove_all_templates(&mut self, key: &DomainKey, kind: crate::template::TemplateKind) {
        let Some(d) = self.domains.peek_mut(key) else { return };
        let ids: Vec<u16> = d.templates.iter().filter(|(_, t)| t.kind() == kind).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(old) = d.templates.pop(&id) {
                let cost = template_cost(&old);
                d.bytes -= cost;
                self.bytes -= cost;
            }
        }
    }

    /// Records a sampler's rate from options data; false if the domain's
    /// sampler table is full (the entry is not learned).
    pub fn set_sampler(&mut self, key: DomainKey, id: u64, rate: SamplerRate) -> bool {
        let Some(d) = self.entry(key) else { return false };
        if let Some(r) = d.samplers.get_mut(&id) {
            *r = rate;
            return true;
        }
        if d.samplers.len() >= MAX_SAMPLERS_PER_DOMAIN {
            return false;
        }
        d.samplers.insert(id, rate);
        d.bytes += SAMPLER_COST;
        self.bytes += SAMPLER_COST;
        self.shrink(&key);
        true
    }

    /// Evicts least recently used domains other than `keep` until the store
    /// fits its budget.
    fn shrink(&mut self, keep: &DomainKey) {
        while self.bytes > self.limits.max_bytes {
            let Some((k, _)) = self.domains.peek_lru() else { break };
            if k == keep {
                // Only the entry being changed is left: shed its templates.
                let Some(d) = self.domains.peek_mut(keep) else { break };
                let Some((_, old)) = d.templates.pop_lru() else { break };
                let cost = template_cost(&old);
                d.bytes -= cost;
                self.bytes -= cost;
                self.evicted.templates += 1;
                continue;
            }
            let Some((k, d)) = self.domains.pop_lru() else { break };
            self.bytes -= d.bytes;
            self.evicted.domains += 1;
            self.evicted.templates += d.templates.len() as u64;
            if let Some(n) = self.per_exporter.get_mut(&k.exporter) {
                *n -= 1;
                if *n == 0 {
                    self.per_exporter.remove(&k.exporter);
                }
            }
        }
    }
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new(StoreLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::FieldSpec;

    fn t(fields: usize) -> Template {
        let f = (0..fields).map(|i| FieldSpec { id: 1 + i as u16, len: 4, enterprise: 0 }).collect();
        Template::new(f, 0, &[]).unwrap()
    }

    fn key(e: u8, domain: u32, id: u16) -> TemplateKey {
        TemplateKey { domain: DomainKey { exporter: Addr([e; 16]), domain }, id }
    }

    #[test]
    fn templates_per_domain_are_capped_least_recently_used_first() {
        let mut s = StateStore::new(StoreLimits { max_templates_per_domain: 2, ..StoreLimits::default() });
        s.insert_template(key(1, 0, 256), t(3));
        s.insert_template(key(1, 0, 257), t(3));
        assert!(s.template(&key(1, 0, 256)).is_some());
        s.insert_template(key(1, 0, 258), t(3)); // evicts 257, the least recently used
        assert!(s.template(&key(1, 0, 257)).is_none());
        assert!(s.template(&key(1, 0, 256)).is_some());
        assert_eq!(s.evicted, Evictions { templates: 1, domains: 0 });
    }

    #[test]
    fn the_byte_budget_evicts_whole_domains_least_recently_used_first() {
        let budget = 4 * (DOMAIN_COST + template_cost(&t(10)));
        let mut s = StateStore::new(StoreLimits { max_bytes: budget, ..StoreLimits::default() });
        for e in 0..4 {
            s.insert_template(key(e, 0, 256), t(10));
        }
        assert_eq!(s.len(), 4);
        assert!(s.template(&key(0, 0, 256)).is_some()); // 0 is now the most recent
        s.insert_template(key(9, 0, 256), t(10));
        assert_eq!(s.len(), 4);
        assert!(s.template(&key(1, 0, 256)).is_none(), "1 was the least recently used");
        assert!(s.template(&key(0, 0, 256)).is_some());
        assert!(s.bytes() <= budget);
        assert_eq!(s.evicted, Evictions { templates: 1, domains: 1 });
        // A flood of new domains never grows the store past its budget.
        for i in 0..10_000u32 {
            s.insert_template(key((i % 200) as u8, i, 300), t(30));
            assert!(s.bytes() <= budget);
        }
    }

    #[test]
    fn one_address_cannot_hold_more_than_its_domains() {
        let mut s = StateStore::new(StoreLimits { max_domains_per_exporter: 3, ..StoreLimits::default() });
        for d in 0..3 {
            assert!(s.insert_template(key(1, d, 256), t(2)));
        }
        assert!(!s.insert_template(key(1, 3, 256), t(2)), "a fourth domain is refused");
        assert_eq!(s.refused_domains, 1);
        assert!(s.insert_template(key(2, 3, 256), t(2)), "other exporters are not affected");
        assert!(s.template(&key(1, 0, 256)).is_some(), "nothing of the first three was evicted");
    }

    #[test]
    fn charges_follow_replacements_and_withdrawals() {
        let mut s = StateStore::default();
        s.insert_template(key(1, 0, 256), t(10));
        let one = s.bytes();
        s.insert_template(key(1, 0, 256), t(20));
        assert_eq!(s.bytes(), one + 10 * FIELD_COST);
        s.remove_template(&key(1, 0, 256));
        assert_eq!(s.bytes(), DOMAIN_COST);
        assert!(s.set_sampler(DomainKey { exporter: Addr([1; 16]), domain: 0 }, 7, Some(512)));
        assert_eq!(s.bytes(), DOMAIN_COST + SAMPLER_COST);
    }
}
