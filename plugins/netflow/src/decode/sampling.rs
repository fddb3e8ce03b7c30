//! What sampling rate a record stands for, and where that came from.
//!
//! Exporters announce sampling in many ways (docs/netflow.md has the table):
//! in options data as a sampler table (`samplerId`/`selectorId` with an
//! interval, RFC 5477 selector parameters or a probability) or exporter-wide
//! (no sampler id, or id 0), and some inside every data record. The
//! precedence, first match wins:
//!
//! 1. an override in the pipeline config (`override`);
//! 2. the v5 header's interval (`header`);
//! 3. a rate carried in the data record itself (`record`);
//! 4. the sampler the record names, if not 0: its described rate
//!    (`options`), or, never described or not expressible as 1-in-N,
//!    `unknown` with a null rate — a guess would be a silent billing error;
//! 5. the exporter-wide rate from options data (`options`, or `unknown`);
//! 6. the config default for the exporter, else 1 (`default`).

use spillway_core::schema::SamplingSource;

use super::{Decoder, Fact};
use crate::state::{DomainKey, DomainState, SamplerRate};

/// The sampling parameters found in one record (data or options).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Announced {
    /// samplingInterval (34) / samplerRandomInterval (50).
    pub interval: Option<u64>,
    /// samplingPacketInterval (305).
    pub packet_interval: Option<u64>,
    /// samplingPacketSpace (306).
    pub packet_space: Option<u64>,
    /// samplingSize (309).
    pub size: Option<u64>,
    /// samplingPopulation (310).
    pub population: Option<u64>,
    /// samplingProbability (311).
    pub probability: Option<f64>,
    /// selectorAlgorithm (304).
    pub algorithm: Option<u64>,
}

/// RFC 5477 / IANA selectorAlgorithm values whose meaning we act on.
mod algorithm {
    pub const SYSTEMATIC_TIME: u64 = 2;
    pub const PROPERTY_MATCH: u64 = 5;
    pub const HASH_BOB: u64 = 6;
    pub const HASH_IPSX: u64 = 7;
    pub const HASH_CRC: u64 = 8;
    pub const FLOW_STATE: u64 = 9;
}

fn ratio(num: f64, den: f64) -> Option<u32> {
    (den > 0.0 && num >= den).then(|| (num / den).round().min(u32::MAX as f64) as u32)
}

impl Announced {
    /// The rate these parameters describe: `None` when they describe no
    /// sampling at all, `Some(None)` when they describe a selection that is
    /// not 1-in-N (time- or hash-based).
    pub fn rate(&self) -> Option<SamplerRate> {
        match self.algorithm {
            // Property-match filtering reports every packet that matches.
            Some(algorithm::PROPERTY_MATCH) => return Some(Some(1)),
            Some(
                algorithm::SYSTEMATIC_TIME
                | algorithm::HASH_BOB
                | algorithm::HASH_IPSX
                | algorithm::HASH_CRC
                | algorithm::FLOW_STATE,
            ) => return Some(None),
            _ => {}
        }
        if let (Some(n), Some(big_n)) = (self.size, self.population)
            && n > 0
        {
            return Some(ratio(big_n as f64, n as f64));
        }
        if let Some(p) = self.probability
            && p > 0.0
            && p <= 1.0
        {
            return Some(ratio(1.0, p));
        }
        match (self.packet_interval, self.packet_space) {
            (Some(i), Some(sp)) if i > 0 => return Some(ratio(i as f64 + sp as f64, i as f64)),
            // Some exporters send only the interval, meaning 1 in N.
            (Some(i), None) if i > 0 => return Some(Some(i.min(u32::MAX as u64) as u32)),
            _ => {}
        }
        match self.interval {
            Some(i) if i > 0 => Some(Some(i.min(u32::MAX as u64) as u32)),
            _ => self.algorithm.map(|_| None),
        }
    }
}

/// What one data set's records share for sampling, looked up once per set.
#[derive(Debug, Clone, Copy)]
pub(super) struct SetSampling {
    override_rate: Option<u32>,
    /// The exporter-wide rate, when announced.
    exporter: Option<SamplerRate>,
    default: Option<u32>,
}

impl SetSampling {
    /// The rate of a record that carries `own` (its in-record announcement)
    /// and names `sampler` (0 = none), given its domain's sampler table.
    #[inline]
    pub fn resolve(
        &self,
        own: Option<SamplerRate>,
        sampler: Option<u64>,
        state: Option<&DomainState>,
    ) -> (Option<u32>, SamplingSource) {
        if let Some(r) = self.override_rate {
            return (Some(r), SamplingSource::Override);
        }
        let known = |r: SamplerRate, source| match r {
            Some(r) => (Some(r), source),
            None => (None, SamplingSource::Unknown),
        };
        if let Some(r) = own {
            return known(r, SamplingSource::Record);
        }
        if let Some(id) = sampler.filter(|id| *id != 0) {
            return match state.and_then(|d| d.sampler(id)) {
                Some(r) => known(r, SamplingSource::Options),
                None => (None, SamplingSource::Unknown),
            };
        }
        if let Some(r) = self.exporter {
            return known(r, SamplingSource::Options);
        }
        (self.default, SamplingSource::Default)
    }
}

impl Decoder {
    /// The sampling context of a set from `key`.
    pub(super) fn set_sampling(&self, key: &DomainKey) -> SetSampling {
        SetSampling {
            override_rate: self.override_rate(key.exporter),
            exporter: self.state.peek(key).and_then(|d| d.rate),
            default: self.default_rate(key.exporter).0,
        }
    }

    /// Learns what an options record says: a sampler's rate (it names one),
    /// the exporter-wide rate (it names none, or sampler 0), the boot time.
    pub(super) fn learn_options(
        &mut self,
        key: DomainKey,
        announced: &Announced,
        sampler: Option<u64>,
        boot_ms: Option<i64>,
    ) {
        let rate = announced.rate();
        let mut kept = true;
        if let Some(r) = rate {
            match sampler.filter(|id| *id != 0) {
                Some(id) => {
                    let changed = self.state.peek(&key).and_then(|d| d.sampler(id)) != Some(r);
                    kept = self.state.set_sampler(key, id, r);
                    if kept && changed {
                        self.learned(key, Fact::Sampler { id, rate: r });
                    }
                }
                None => {
                    let changed = self.state.peek(&key).and_then(|d| d.rate) != Some(r);
                    kept = self.state.entry(key).map(|d| d.rate = Some(r)).is_some();
                    if kept && changed {
                        self.learned(key, Fact::ExporterRate(r));
                    }
                }
            }
        }
        if let Some(b) = boot_ms {
            let changed = self.state.peek(&key).and_then(|d| d.boot_ms) != Some(b);
            let ok = self.state.entry(key).map(|d| d.boot_ms = Some(b)).is_some();
            if ok && changed {
                self.learned(key, Fact::Boot(b));
            }
            kept &= ok;
        }
        if !kept {
            self.stats.options_refused += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(f: impl FnOnce(&mut Announced)) -> Option<SamplerRate> {
        let mut x = Announced::default();
        f(&mut x);
        x.rate()
    }

    #[test]
    fn every_announcement_gives_its_rate() {
        assert_eq!(a(|_| {}), None, "nothing announced");
        assert_eq!(a(|x| x.interval = Some(2048)), Some(Some(2048)));
        assert_eq!(a(|x| x.interval = Some(0)), None, "0 announces nothing");
        // Systematic count-based: 1 selected, 99 skipped → 1 in 100.
        assert_eq!(a(|x| (x.packet_interval, x.packet_space) = (Some(1), Some(99))), Some(Some(100)));
        assert_eq!(a(|x| (x.packet_interval, x.packet_space) = (Some(2), Some(98))), Some(Some(50)));
        assert_eq!(a(|x| x.packet_interval = Some(64)), Some(Some(64)));
        // Random n-out-of-N (IOS-XR): 1 of 256.
        assert_eq!(
            a(|x| (x.size, x.population, x.algorithm) = (Some(1), Some(256), Some(3))),
            Some(Some(256))
        );
        assert_eq!(a(|x| (x.size, x.population) = (Some(4), Some(1000))), Some(Some(250)));
        // Uniform probabilistic: p = 0.001.
        assert_eq!(a(|x| x.probability = Some(0.001)), Some(Some(1000)));
        assert_eq!(a(|x| x.probability = Some(0.0)), None);
        // Selections that are not 1-in-N, and filtering.
        assert_eq!(a(|x| (x.algorithm, x.interval) = (Some(2), Some(10))), Some(None), "time-based");
        assert_eq!(a(|x| x.algorithm = Some(6)), Some(None), "hash-based");
        assert_eq!(a(|x| x.algorithm = Some(5)), Some(Some(1)), "property match");
        assert_eq!(a(|x| x.algorithm = Some(3)), Some(None), "random n-of-N without its parameters");
    }

    #[test]
    fn precedence_is_override_record_sampler_exporter_default() {
        let mut d = DomainState::for_tests();
        let set = SetSampling { override_rate: None, exporter: Some(Some(10)), default: Some(1) };
        assert_eq!(set.resolve(Some(Some(2048)), Some(7), Some(&d)), (Some(2048), SamplingSource::Record));
        assert_eq!(set.resolve(None, Some(7), Some(&d)), (None, SamplingSource::Unknown), "7 not described");
        d.set_sampler_for_tests(7, Some(512));
        assert_eq!(set.resolve(None, Some(7), Some(&d)), (Some(512), SamplingSource::Options));
        assert_eq!(set.resolve(None, Some(0), Some(&d)), (Some(10), SamplingSource::Options), "0 names none");
        assert_eq!(set.resolve(None, None, Some(&d)), (Some(10), SamplingSource::Options));
        let none = SetSampling { override_rate: None, exporter: None, default: Some(100) };
        assert_eq!(none.resolve(None, None, None), (Some(100), SamplingSource::Default));
        let forced = SetSampling { override_rate: Some(64), ..set };
        assert_eq!(forced.resolve(Some(Some(2048)), Some(9), None), (Some(64), SamplingSource::Override));
    }
}
