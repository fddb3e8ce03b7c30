//! What the decoder learns that other decoders can use: templates, options
//! templates, sampler tables, exporter-wide rates and boot times, per
//! (exporter, domain). A decoder with sharing on records each *change* as a
//! [`Learned`] fact (an identical refresh records nothing); facts from
//! elsewhere are [`Decoder::apply`]'d without being recorded again, and a
//! template that arrives this way decodes its parked data at once.

use super::{Decoder, Outcome};
use crate::row::FlowBuilders;
use crate::state::{DomainKey, SamplerRate, TemplateKey};
use crate::template::{FieldSpec, Template};

/// One thing learned about an (exporter, domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A data template (`scope_fields` 0) or an options template.
    Template { id: u16, scope_fields: u16, fields: Vec<FieldSpec> },
    /// A sampler table entry.
    Sampler { id: u64, rate: SamplerRate },
    /// The exporter-wide sampling rate.
    ExporterRate(SamplerRate),
    /// The exporter's boot time, ms since the epoch.
    Boot(i64),
}

/// A fact and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub key: DomainKey,
    pub fact: Fact,
}

/// Most facts held between two [`Decoder::take_learned`] (one message can
/// hold thousands of templates; the collector takes them after each).
const MAX_LEARNED: usize = 1 << 16;

impl Decoder {
    /// Records changes as [`Learned`] facts from now on.
    pub fn share(&mut self) {
        self.sharing = true;
    }

    /// Records `fact` if sharing is on.
    pub(super) fn learned(&mut self, key: DomainKey, fact: Fact) {
        if self.sharing {
            if self.learned.len() < MAX_LEARNED {
                self.learned.push(Learned { key, fact });
            } else {
                self.stats.share_overflow += 1;
            }
        }
    }

    /// Facts learned since the last call.
    pub fn take_learned(&mut self) -> std::vec::Drain<'_, Learned> {
        self.learned.drain(..)
    }

    /// Whether facts are waiting.
    pub fn has_learned(&self) -> bool {
        !self.learned.is_empty()
    }

    /// Whether this decoder already holds a definition of what `l`
    /// defines (the same or another).
    pub fn holds(&self, l: &Learned) -> bool {
        let Some(d) = self.state.peek(&l.key) else { return false };
        match &l.fact {
            Fact::Template { id, .. } => d.has_template(*id),
            Fact::Sampler { id, .. } => d.sampler(*id).is_some(),
            Fact::ExporterRate(_) => d.rate.is_some(),
            Fact::Boot(_) => d.boot_ms.is_some(),
        }
    }

    /// Applies a fact learned elsewhere (not recorded again). A template
    /// decodes the data parked for it into `out` (counted in the outcome);
    /// false when the fact could not be kept (its exporter holds too many
    /// domains, the sampler table is full, or the template describes no
    /// data).
    pub fn apply(&mut self, l: &Learned, out: &mut FlowBuilders) -> (bool, Outcome) {
        let mut o = Outcome::default();
        let kept = match &l.fact {
            Fact::Template { id, scope_fields, fields } => {
                let key = TemplateKey { domain: l.key, id: *id };
                if self.state.refresh(&key, fields, *scope_fields) {
                    true
                } else {
                    let inserted = Template::new(fields.clone(), *scope_fields, &self.cfg.extra_ids)
                        .is_some_and(|t| self.state.insert_template(key, t));
                    if inserted {
                        self.release(key, out, &mut o);
                    }
                    inserted
                }
            }
            Fact::Sampler { id, rate } => self.state.set_sampler(l.key, *id, *rate),
            Fact::ExporterRate(r) => self.state.entry(l.key).map(|d| d.rate = Some(*r)).is_some(),
            Fact::Boot(b) => self.state.entry(l.key).map(|d| d.boot_ms = Some(*b)).is_some(),
        };
        (kept, o)
    }
}
