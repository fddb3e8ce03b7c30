//! Templates and what each field of a record means to the flow schema.
//!
//! A template is compiled once, when it arrives, into a plan: one
//! [`Target`] per field. Decoding a record is then a walk over the plan with
//! no lookups.

use std::collections::HashMap;
use std::sync::Arc;

/// Length value marking a variable-length field (IPFIX, RFC 7011 §7).
pub const VARLEN: u16 = 65535;

/// One field of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Information element id (without the enterprise bit).
    pub id: u16,
    /// Encoded length, or [`VARLEN`].
    pub len: u16,
    /// Private enterprise number; 0 for IANA elements.
    pub enterprise: u32,
}

/// Where a field's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Skip,
    Bytes,
    Packets,
    BytesTotal,
    PacketsTotal,
    Protocol,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    SrcAddr,
    DstAddr,
    NextHop,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    Vlan,
    Direction,
    /// icmpTypeCodeIPv4 / icmpTypeCodeIPv6 (type << 8 | code).
    IcmpTypeCode,
    /// staIPv4Address (wireless station; Cisco WLC): the source or the
    /// destination, by flowDirection.
    StationAddr,
    /// RFC 5103 reverse counters of a biflow (enterprise 29305).
    ReverseBytes,
    ReversePackets,
    /// The n-th configured extra column (`extra_fields`).
    Extra(u8),
    /// flowStartSysUpTime / flowEndSysUpTime (ms since the device booted).
    StartUptime,
    EndUptime,
    StartSeconds,
    EndSeconds,
    StartMillis,
    EndMillis,
    StartMicros,
    EndMicros,
    StartNanos,
    EndNanos,
    StartDeltaMicros,
    EndDeltaMicros,
    /// systemInitTimeMilliseconds: the boot time, for uptime-relative times.
    SystemInit,
    SamplerId,
    SamplingInterval,
    PacketInterval,
    PacketSpace,
}

/// What an IANA element (enterprise 0) means to us.
pub fn target_of(id: u16) -> Target {
    use Target::*;
    match id {
        // initiatorOctets/Packets and responderOctets/Packets (Cisco NSEL and
        // others) describe a biflow like RFC 5103's reverse counters.
        1 | 231 => Bytes,
        2 | 298 => Packets,
        232 => ReverseBytes,
        299 => ReversePackets,
        4 => Protocol,
        5 => Tos,
        6 => TcpFlags,
        7 => SrcPort,
        8 | 27 => SrcAddr,
        9 | 29 => SrcMask,
        10 => InIf,
        11 => DstPort,
        12 | 28 => DstAddr,
        13 | 30 => DstMask,
        32 | 139 => IcmpTypeCode,
        366 => StationAddr,
        14 => OutIf,
        15 | 62 => NextHop,
        16 => SrcAs,
        17 => DstAs,
        21 => EndUptime,
        22 => StartUptime,
        34 | 50 => SamplingInterval,
        48 | 302 => SamplerId,
        58 | 243 => Vlan,
        61 => Direction,
        85 => BytesTotal,
        86 => PacketsTotal,
        150 => StartSeconds,
        151 => EndSeconds,
        152 => StartMillis,
        153 => EndMillis,
        154 => StartMicros,
        155 => EndMicros,
        156 => StartNanos,
        157 => EndNanos,
        158 => StartDeltaMicros,
        159 => EndDeltaMicros,
        160 => SystemInit,
        305 => PacketInterval,
        306 => PacketSpace,
        _ => Skip,
    }
}

/// Private enterprise number of RFC 5103 reverse elements.
pub const REVERSE_PEN: u32 = 29305;

/// What an RFC 5103 reverse element means to us.
pub fn reverse_target_of(id: u16) -> Target {
    match id {
        1 | 85 => Target::ReverseBytes,
        2 | 86 => Target::ReversePackets,
        _ => Target::Skip,
    }
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Fields, scope fields first for options templates.
    pub fields: Box<[FieldSpec]>,
    /// One target per field.
    pub plan: Box<[Target]>,
    /// Number of leading scope fields (0 for a data template).
    pub scope_fields: u16,
    /// Smallest record length (variable-length fields count their length
    /// prefix only); never 0.
    pub min_len: usize,
    /// Whether any field is variable-length.
    pub varlen: bool,
}

impl Template {
    /// Compiles `fields`; `None` if the template could not describe a record
    /// (no fields, or only zero-length ones).
    /// `extra_ids` are the IANA elements configured as extra columns, in
    /// column order.
    pub fn new(fields: Vec<FieldSpec>, scope_fields: u16, extra_ids: &[u16]) -> Option<Self> {
        let mut min_len = 0usize;
        let mut varlen = false;
        for f in &fields {
            if f.len == VARLEN {
                varlen = true;
                min_len += 1;
            } else {
                min_len += f.len as usize;
            }
        }
        if fields.is_empty() || min_len == 0 {
            return None;
        }
        let plan = fields
            .iter()
            .map(|f| match f.enterprise {
                0 => match extra_ids.iter().position(|x| *x == f.id) {
                    Some(i) => Target::Extra(i as u8),
                    None => target_of(f.id),
                },
                REVERSE_PEN => reverse_target_of(f.id),
                _ => Target::Skip,
            })
            .collect();
        Some(Self { fields: fields.into_boxed_slice(), plan, scope_fields, min_len, varlen })
    }

    /// Whether this is an options template.
    pub fn is_options(&self) -> bool {
        self.scope_fields > 0
    }
}

/// Key of a template: exporter address, observation domain, template id.
pub type TemplateKey = ([u8; 16], u32, u16);

/// Bounds of the template store (source addresses can be spoofed).
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Most distinct (exporter, domain) pairs.
    pub max_exporters: usize,
    /// Most templates per (exporter, domain).
    pub max_templates_per_exporter: usize,
}

/// Templates of every exporter, bounded, with least-recently-used eviction.
#[derive(Debug)]
pub struct TemplateStore {
    exporters: HashMap<([u8; 16], u32), ExporterTemplates>,
    limits: StoreLimits,
    clock: u64,
    /// Templates evicted to respect the bounds.
    pub evicted: u64,
}

#[derive(Debug, Default)]
struct ExporterTemplates {
    templates: HashMap<u16, (Arc<Template>, u64)>,
    last_used: u64,
}

impl TemplateStore {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> Self {
        Self { exporters: HashMap::new(), limits, clock: 0, evicted: 0 }
    }

    /// The template for `key`, marking it used. Cloning the `Arc` does not
    /// allocate.
    #[inline]
    pub fn get(&mut self, key: TemplateKey) -> Option<Arc<Template>> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.exporters.get_mut(&(key.0, key.1))?;
        e.last_used = clock;
        let (t, used) = e.templates.get_mut(&key.2)?;
        *used = clock;
        Some(t.clone())
    }

    /// Whether a template for `key` is known (does not mark it used).
    #[inline]
    pub fn contains(&self, key: TemplateKey) -> bool {
        self.exporters.get(&(key.0, key.1)).is_some_and(|e| e.templates.contains_key(&key.2))
    }

    /// Adds or refreshes a template; returns true when it is new or changed.
    pub fn insert(&mut self, key: TemplateKey, t: Template) -> bool {
        self.clock += 1;
        let clock = self.clock;
        if !self.exporters.contains_key(&(key.0, key.1)) && self.exporters.len() >= self.limits.max_exporters
        {
            let oldest = self.exporters.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k);
            if let Some(k) = oldest
                && let Some(e) = self.exporters.remove(&k)
            {
                self.evicted += e.templates.len() as u64;
            }
        }
        let e = self.exporters.entry((key.0, key.1)).or_default();
        e.last_used = clock;
        if !e.templates.contains_key(&key.2) && e.templates.len() >= self.limits.max_templates_per_exporter {
            let oldest = e.templates.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k);
            if let Some(k) = oldest {
                e.templates.remove(&k);
                self.evicted += 1;
            }
        }
        if let Some((old, used)) = e.templates.get_mut(&key.2) {
            *used = clock;
            if **old == t {
                return false;
            }
            *old = Arc::new(t);
            return true;
        }
        e.templates.insert(key.2, (Arc::new(t), clock));
        true
    }

    /// If `key` already holds a template with exactly these fields, marks it
    /// used and returns true (a refresh: nothing to build, nothing to
    /// allocate).
    pub fn refresh(&mut self, key: TemplateKey, fields: &[FieldSpec], scope_fields: u16) -> bool {
        self.clock += 1;
        let clock = self.clock;
        let Some(e) = self.exporters.get_mut(&(key.0, key.1)) else { return false };
        let Some((t, used)) = e.templates.get_mut(&key.2) else { return false };
        if *t.fields != *fields || t.scope_fields != scope_fields {
            return false;
        }
        *used = clock;
        e.last_used = clock;
        true
    }

    /// Withdraws one template (IPFIX withdrawal).
    pub fn remove(&mut self, key: TemplateKey) {
        if let Some(e) = self.exporters.get_mut(&(key.0, key.1)) {
            e.templates.remove(&key.2);
        }
    }

    /// Withdraws every template of one kind (data or options) of an exporter.
    pub fn remove_all(&mut self, exporter: [u8; 16], domain: u32, options: bool) {
        if let Some(e) = self.exporters.get_mut(&(exporter, domain)) {
            e.templates.retain(|_, (t, _)| t.is_options() != options);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: u16) -> Template {
        Template::new(vec![FieldSpec { id, len: 4, enterprise: 0 }], 0, &[]).unwrap()
    }

    #[test]
    fn the_store_is_bounded_and_evicts_the_least_recently_used() {
        let mut s = TemplateStore::new(StoreLimits { max_exporters: 2, max_templates_per_exporter: 2 });
        let a = [1; 16];
        let b = [2; 16];
        let c = [3; 16];
        s.insert((a, 0, 256), t(1));
        s.insert((a, 0, 257), t(2));
        assert!(s.get((a, 0, 256)).is_some());
        s.insert((a, 0, 258), t(3)); // evicts 257, the least recently used
        assert!(s.get((a, 0, 257)).is_none());
        assert_eq!(s.evicted, 1);
        s.insert((b, 0, 256), t(1));
        s.get((a, 0, 256));
        s.insert((c, 0, 256), t(1)); // evicts exporter b
        assert!(s.get((b, 0, 256)).is_none());
        assert!(s.get((a, 0, 258)).is_some());
        assert_eq!(s.evicted, 2);
    }

    #[test]
    fn templates_that_describe_nothing_are_refused() {
        assert!(Template::new(vec![], 0, &[]).is_none());
        assert!(Template::new(vec![FieldSpec { id: 1, len: 0, enterprise: 0 }], 0, &[]).is_none());
        let varlen = Template::new(vec![FieldSpec { id: 1, len: VARLEN, enterprise: 0 }], 0, &[]).unwrap();
        assert!(varlen.varlen && varlen.min_len == 1);
    }
}
