//! v9 and IPFIX messages: the header, the sets, template and options
//! template sets, and data sets (decoded, or parked until their template
//! arrives).

use super::{DecodeError, Decoder, Outcome, ParkedSet, be16, be32};
use crate::row::{FlowBuilders, Header};
use crate::sequence::Units;
use crate::state::{DomainKey, TemplateKey, Version};
use crate::template::{FieldSpec, Template, TemplateKind};
use spillway_core::addr::Addr;

/// A message's header fields that its records need.
#[derive(Debug, Clone, Copy)]
pub(super) struct MessageTimes {
    /// Export time, ms since the epoch.
    pub export_ms: i64,
    /// v9: the exporter's uptime at export (ms); IPFIX: 0 (not sent).
    pub uptime_ms: u32,
}

impl MessageTimes {
    /// A time `up` ms into the exporter's uptime as ns since the epoch:
    /// from the header's uptime (v9), else from the boot time `boot_ms`
    /// (options data); `None` when neither is known.
    #[inline]
    pub fn uptime_ns(self, up: u32, boot_ms: Option<i64>) -> Option<i64> {
        if self.uptime_ms > 0 {
            // Wrapping difference handles the 49.7-day uptime rollover.
            let export_ns = self.export_ms.saturating_mul(1_000_000);
            Some(export_ns - self.uptime_ms.wrapping_sub(up) as i64 * 1_000_000)
        } else {
            boot_ms.map(|b| b.saturating_add(up as i64).saturating_mul(1_000_000))
        }
    }
}

impl Decoder {
    pub(super) fn v9_ipfix(
        &mut self,
        msg: &[u8],
        (exporter, now): (Addr, i64),
        out: &mut FlowBuilders,
        mut discard: Option<&mut FlowBuilders>,
        o: &mut Outcome,
        version: Version,
    ) {
        let ipfix = version == Version::Ipfix;
        let header_len = if ipfix { 16 } else { 20 };
        if msg.len() < header_len {
            o.fail(DecodeError::TooShort { len: msg.len() });
            return;
        }
        let (times, sequence, domain, end) = if ipfix {
            let length = be16(msg, 2);
            if (length as usize) > msg.len() || (length as usize) < header_len {
                o.fail(DecodeError::IpfixLength { header: length, len: msg.len() });
                return;
            }
            let t = MessageTimes { export_ms: be32(msg, 4) as i64 * 1000, uptime_ms: 0 };
            (t, be32(msg, 8), be32(msg, 12), length as usize)
        } else {
            let t = MessageTimes { export_ms: be32(msg, 8) as i64 * 1000, uptime_ms: be32(msg, 4) };
            (t, be32(msg, 12), be32(msg, 16), msg.len())
        };
        let key = DomainKey { exporter, domain };
        let h = Header { time_received: now, exporter, domain, sequence, version: version.number() };
        let mut at = header_len;
        // RFC 7011 §3.1: IPFIX sequence numbers count data records, options
        // records included (some exporters leave those out: the stream
        // learns which); a biflow split into two rows is still one.
        let mut units = Units::default();
        let mut countable = true;
        while at + 4 <= end {
            let set_id = be16(msg, at);
            let length = be16(msg, at + 2);
            if length < 4 || at + length as usize > end {
                o.fail(DecodeError::SetLength { offset: at, length, remaining: end - at });
                countable = false;
                break;
            }
            let body = &msg[at + 4..at + length as usize];
            at += length as usize;
            match (set_id, ipfix) {
                (0, false) | (2, true) => self.template_set(body, key, version, TemplateKind::Data, out, o),
                (1, false) | (3, true) => {
                    self.template_set(body, key, version, TemplateKind::Options, out, o)
                }
                (id, _) if id >= 256 => {
                    let tkey = TemplateKey { domain: key, id };
                    match self.state.template(&tkey) {
                        Some(t) if discard.is_some() => {
                            // Committed already: only its counts matter.
                            let r = match discard.as_deref_mut() {
                                Some(d) => self.data_set(body, &t, tkey, &h, times, d),
                                None => continue,
                            };
                            units.all = units.all.saturating_add(r.records);
                            units.flows = units.flows.saturating_add(r.flows);
                            if r.error.is_some() {
                                countable = false;
                            }
                        }
                        Some(t) => {
                            let r = self.data_set(body, &t, tkey, &h, times, out);
                            o.records += r.rows;
                            units.all = units.all.saturating_add(r.records);
                            units.flows = units.flows.saturating_add(r.flows);
                            if let Some(e) = r.error {
                                o.fail(e);
                                // How many records the rest held is unknown.
                                countable = false;
                            }
                        }
                        None if discard.is_some() => countable = false,
                        None => {
                            countable = false;
                            self.stats.pending_sets += 1;
                            let gone = self.parked.park(ParkedSet {
                                key: tkey,
                                header: h,
                                export_ms: times.export_ms,
                                uptime_ms: times.uptime_ms,
                                body: body.into(),
                                tag: self.tag,
                            });
                            self.stats.pending_evicted += gone.evicted;
                            o.evicted += gone.evicted;
                        }
                    }
                }
                _ => self.stats.unknown_sets += 1,
            }
        }
        // v9's sequence counts export packets; IPFIX's counts data records.
        let units = if ipfix { countable.then_some(units) } else { Some(Units::same(1)) };
        o.loss = self.observe(key, version, sequence, units, now);
    }

    fn template_set(
        &mut self,
        b: &[u8],
        key: DomainKey,
        version: Version,
        kind: TemplateKind,
        out: &mut FlowBuilders,
        o: &mut Outcome,
    ) {
        let mut fields = std::mem::take(&mut self.fields);
        if let Err(e) = self.templates_into(b, key, version, kind, out, o, &mut fields) {
            o.fail(e);
        }
        self.fields = fields;
    }

    #[allow(clippy::too_many_arguments)]
    fn templates_into(
        &mut self,
        mut b: &[u8],
        key: DomainKey,
        version: Version,
        kind: TemplateKind,
        out: &mut FlowBuilders,
        o: &mut Outcome,
        fields: &mut Vec<FieldSpec>,
    ) -> Result<(), DecodeError> {
        let ipfix = version == Version::Ipfix;
        let options = kind == TemplateKind::Options;
        // Fewer than 4 bytes left is padding.
        while b.len() >= 4 {
            let id = be16(b, 0);
            fields.clear();
            let scope_fields: u16;
            if !options || (ipfix && be16(b, 2) == 0) {
                let count = be16(b, 2);
                b = &b[4..];
                if count == 0 {
                    if !ipfix {
                        return Err(DecodeError::BadTemplate { template: id, why: "no fields" });
                    }
                    // IPFIX withdrawal: of one template, or of all of a kind.
                    self.stats.withdrawals += 1;
                    if id == 2 || id == 3 {
                        let withdrawn = if id == 3 { TemplateKind::Options } else { TemplateKind::Data };
                        self.state.remove_all_templates(&key, withdrawn);
                    } else {
                        self.state.remove_template(&TemplateKey { domain: key, id });
                    }
                    continue;
                }
                b = read_fields(b, count, version, id, fields)?;
                scope_fields = 0;
            } else if ipfix {
                if b.len() < 6 {
                    return Err(DecodeError::BadTemplate { template: id, why: "truncated options header" });
                }
                let count = be16(b, 2);
                let scope = be16(b, 4);
                if scope == 0 || scope > count {
                    return Err(DecodeError::BadTemplate { template: id, why: "bad scope field count" });
                }
                b = read_fields(&b[6..], count, version, id, fields)?;
                scope_fields = scope;
            } else {
                if b.len() < 6 {
                    return Err(DecodeError::BadTemplate { template: id, why: "truncated options header" });
                }
                let scope_len = be16(b, 2);
                let opt_len = be16(b, 4);
                if !scope_len.is_multiple_of(4) || !opt_len.is_multiple_of(4) {
                    return Err(DecodeError::BadTemplate {
                        template: id,
                        why: "options lengths not multiples of 4",
                    });
                }
                let count = ((scope_len as u32 + opt_len as u32) / 4) as u16;
                b = read_fields(&b[6..], count, version, id, fields)?;
                scope_fields = scope_len / 4;
                // v9 scope types are not IPFIX elements: keep them out of the plan.
                for f in fields.iter_mut().take(scope_fields as usize) {
                    f.enterprise = u32::MAX;
                }
                // Options templates are padded to 4 bytes at the set's end.
            }
            if id < 256 {
                return Err(DecodeError::BadTemplate { template: id, why: "template id below 256" });
            }
            if options {
                self.stats.options_templates += 1;
            } else {
                self.stats.templates += 1;
            }
            let tkey = TemplateKey { domain: key, id };
            // Exporters resend templates all the time; an unchanged one is
            // only marked fresh.
            if !self.state.refresh(&tkey, fields, scope_fields) {
                let Some(t) = Template::new(fields.clone(), scope_fields, &self.cfg.extra_ids) else {
                    return Err(DecodeError::BadTemplate { template: id, why: "fields describe no data" });
                };
                if self.state.insert_template(tkey, t) {
                    self.learned(key, super::Fact::Template { id, scope_fields, fields: fields.clone() });
                }
            }
            self.release(tkey, out, o);
        }
        Ok(())
    }

    /// Decodes parked sets that were waiting for `key`, now that it is known.
    pub(super) fn release(&mut self, key: TemplateKey, out: &mut FlowBuilders, o: &mut Outcome) {
        if !self.parked.has(&key) {
            return;
        }
        let Some(t) = self.state.template(&key) else { return };
        let mut sets = std::mem::take(&mut self.released);
        self.parked.take(&key, &mut sets);
        for p in sets.drain(..) {
            self.stats.pending_decoded += 1;
            if self.tagging {
                self.released_tags.push(p.tag);
            }
            let times = MessageTimes { export_ms: p.export_ms, uptime_ms: p.uptime_ms };
            let r = self.data_set(&p.body, &t, key, &p.header, times, out);
            o.records += r.rows;
            self.stats.pending_records += r.rows;
            // A parked set that turns out malformed is counted like any other.
            if let Some(e) = r.error {
                o.fail(e);
            }
        }
        self.released = sets;
    }
}

fn read_fields<'a>(
    mut b: &'a [u8],
    count: u16,
    version: Version,
    template: u16,
    fields: &mut Vec<FieldSpec>,
) -> Result<&'a [u8], DecodeError> {
    if count as usize * 4 > b.len() {
        return Err(DecodeError::BadTemplate { template, why: "more fields than the set holds" });
    }
    for _ in 0..count {
        if b.len() < 4 {
            return Err(DecodeError::BadTemplate { template, why: "truncated field specifier" });
        }
        let raw = be16(b, 0);
        let len = be16(b, 2);
        b = &b[4..];
        let mut f = FieldSpec { id: raw, len, enterprise: 0 };
        if version == Version::Ipfix && raw & 0x8000 != 0 {
            if b.len() < 4 {
                return Err(DecodeError::BadTemplate { template, why: "truncated enterprise number" });
            }
            f.id = raw & 0x7fff;
            f.enterprise = be32(b, 0);
            b = &b[4..];
        }
        // RFC 3954 has no variable-length fields, but H3C's v9 exporters use
        // IPFIX's encoding for them; we accept it in both versions.
        fields.push(f);
    }
    Ok(b)
}
