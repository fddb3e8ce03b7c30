//! Sequence-number accounting per (exporter, observation domain).
//!
//! What a sequence number counts differs by version: v5 counts flow records
//! before this packet, v9 counts export packets, IPFIX counts data records
//! before this message (RFC 7011 §3.1) — every data record, options records
//! included; a biflow split into two rows is still one record.
//!
//! Real IPFIX exporters do not all follow the RFC: softflowd counts the
//! records *including* the current message's, and leaves options records
//! out. A stream therefore starts with every plausible convention (before or
//! including the message, with or without options records) and each step
//! that tells them apart removes those it contradicts; what remains is held.
//! A real exporter's convention never reads as loss, and a message lost
//! after the convention is known reads as exactly its records.

use crate::state::Version;

/// What one message adds to its stream's counter, per convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Units {
    /// Every data record (RFC 7011), or 1 for a v9 packet.
    pub all: u32,
    /// Flow records only (options records left out).
    pub flows: u32,
}

impl Units {
    /// The same count under both conventions (v5 records, v9 packets).
    pub fn same(n: u32) -> Self {
        Self { all: n, flows: n }
    }
}

/// A counting convention: before or including the message, all records or
/// flow records only.
const BEFORE_ALL: u8 = 1;
const BEFORE_FLOWS: u8 = 2;
const INCLUDING_ALL: u8 = 4;
const INCLUDING_FLOWS: u8 = 8;
/// In order of preference while several remain (the RFC's first).
const CONVENTIONS: [u8; 4] = [BEFORE_ALL, BEFORE_FLOWS, INCLUDING_ALL, INCLUDING_FLOWS];

/// One stream's position: kept per (exporter, observation domain, version)
/// in the decoder's bounded per-exporter state, so it is evicted with it.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    last_seq: u32,
    last_units: Units,
    last_ns: i64,
    /// Conventions not contradicted so far (a set of the bits above).
    plausible: u8,
    /// The previous message could not be counted (undecodable sets).
    resync: bool,
}

/// What one message told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqEvent {
    /// Units (records, or packets for v9) missing before this message.
    pub missing: u64,
    /// The sequence number this message should have had.
    pub expected: u32,
    /// When the previous message of the stream arrived (ns).
    pub previous_ns: i64,
    /// The message came late or twice.
    pub reordered: bool,
    /// The counter jumped in a way that can only be a restart.
    pub reset: bool,
}

/// Counters of sequence events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeqStats {
    pub missing: u64,
    pub reordered: u64,
    pub resets: u64,
}

/// Largest forward jump read as loss rather than an exporter restart.
const MAX_GAP: u32 = 1 << 20;
/// Largest backward step read as reordering rather than a restart.
const MAX_REORDER: u32 = 1 << 12;

impl Stream {
    /// A stream first seen with sequence number `seq`. `units` is what the
    /// message adds to the counter; `None` when it cannot be known (an IPFIX
    /// message with data sets waiting for their template).
    pub fn new(version: Version, seq: u32, units: Option<Units>, now_ns: i64) -> Self {
        Self {
            last_seq: seq,
            last_units: units.unwrap_or_default(),
            last_ns: now_ns,
            plausible: match version {
                Version::Ipfix => BEFORE_ALL | BEFORE_FLOWS | INCLUDING_ALL | INCLUDING_FLOWS,
                Version::V5 | Version::V9 => BEFORE_ALL,
            },
            resync: units.is_none(),
        }
    }

    /// What the counter should read now under `convention`.
    fn candidate(&self, convention: u8, cur: Units) -> u32 {
        match convention {
            BEFORE_ALL => self.last_seq.wrapping_add(self.last_units.all),
            BEFORE_FLOWS => self.last_seq.wrapping_add(self.last_units.flows),
            INCLUDING_ALL => self.last_seq.wrapping_add(cur.all),
            _ => self.last_seq.wrapping_add(cur.flows),
        }
    }

    /// Observes the stream's next message.
    pub fn observe(&mut self, seq: u32, units: Option<Units>, now_ns: i64, stats: &mut SeqStats) -> SeqEvent {
        let cur = units.unwrap_or_default();
        let mut event = SeqEvent { previous_ns: self.last_ns, ..SeqEvent::default() };
        if !self.resync {
            let matching = CONVENTIONS
                .iter()
                .filter(|c| self.plausible & **c != 0 && self.candidate(**c, cur) == seq)
                .fold(0u8, |m, c| m | c);
            if matching != 0 {
                event.expected = seq;
                // Countable evidence narrows the conventions; an uncountable
                // message (units unknown) proves nothing.
                if units.is_some() {
                    self.plausible = matching;
                }
            } else {
                let preferred =
                    CONVENTIONS.iter().copied().find(|c| self.plausible & c != 0).unwrap_or(BEFORE_ALL);
                let expected = self.candidate(preferred, cur);
                event.expected = expected;
                let ahead = seq.wrapping_sub(expected);
                let behind = expected.wrapping_sub(seq);
                if ahead < MAX_GAP {
                    event.missing = ahead as u64;
                } else if behind <= MAX_REORDER {
                    event.reordered = true;
                } else {
                    event.reset = true;
                }
            }
        }
        if event.reordered {
            // A late message does not move the stream forward.
            stats.reordered += 1;
            return event;
        }
        stats.missing += event.missing;
        stats.resets += event.reset as u64;
        self.last_seq = seq;
        self.last_units = cur;
        self.last_ns = now_ns;
        self.resync = units.is_none();
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(e: SeqEvent) -> bool {
        e.missing == 0 && !e.reordered && !e.reset
    }

    /// Feeds `(seq, units)` messages to one stream.
    struct Feed {
        stream: Option<Stream>,
        version: Version,
        stats: SeqStats,
    }

    impl Feed {
        fn new(version: Version) -> Self {
            Self { stream: None, version, stats: SeqStats::default() }
        }

        fn observe(&mut self, seq: u32, units: Option<u32>) -> SeqEvent {
            self.observe_units(seq, units.map(Units::same))
        }

        fn observe_units(&mut self, seq: u32, units: Option<Units>) -> SeqEvent {
            match &mut self.stream {
                Some(s) => s.observe(seq, units, 0, &mut self.stats),
                None => {
                    self.stream = Some(Stream::new(self.version, seq, units, 0));
                    SeqEvent::default()
                }
            }
        }
    }

    #[test]
    fn v9_counts_packets_and_reports_gaps_and_reordering() {
        let mut t = Feed::new(Version::V9);
        for s in [10, 11, 12] {
            assert!(clean(t.observe(s, Some(1))));
        }
        let gap = t.observe(15, Some(1));
        assert_eq!((gap.missing, gap.expected), (2, 13));
        assert!(t.observe(14, Some(1)).reordered);
        assert!(clean(t.observe(16, Some(1))));
        assert!(t.observe(3_000_000_000, Some(1)).reset);
        assert_eq!(t.stats, SeqStats { missing: 2, reordered: 1, resets: 1 });
    }

    #[test]
    fn ipfix_learns_either_counting_convention() {
        let mut rfc = Feed::new(Version::Ipfix);
        let mut incl = Feed::new(Version::Ipfix);
        let records = [5u32, 3, 7, 2, 9];
        let (mut a, mut b) = (0u32, 0u32);
        for r in records {
            // RFC: sequence = records before this message.
            rfc.observe(a, Some(r));
            a += r;
            // softflowd: sequence includes this message's records.
            b += r;
            incl.observe(b, Some(r));
        }
        assert_eq!(rfc.stats, SeqStats::default());
        assert_eq!(incl.stats, SeqStats::default());
        // A lost message of 4 records is loss under either convention.
        a += 4;
        rfc.observe(a, Some(1));
        b += 4 + 1;
        incl.observe(b, Some(1));
        assert_eq!(rfc.stats.missing, 4);
        assert_eq!(incl.stats.missing, 4);
    }

    #[test]
    fn options_records_count_or_not_as_the_exporter_counts_them() {
        // (flow records, options records) per message.
        let msgs = [(5u32, 1u32), (3, 0), (7, 2), (2, 0), (9, 1), (4, 3)];
        let units = |(f, o): (u32, u32)| Some(Units { all: f + o, flows: f });
        // RFC 7011: before the message, options records included.
        let mut rfc = Feed::new(Version::Ipfix);
        // softflowd: including the message, flow records only.
        let mut soft = Feed::new(Version::Ipfix);
        let (mut a, mut b) = (100u32, 100u32);
        for m in msgs {
            assert!(clean(rfc.observe_units(a, units(m))));
            a += m.0 + m.1;
            b += m.0;
            assert!(clean(soft.observe_units(b, units(m))));
        }
        assert_eq!(rfc.stream.unwrap().plausible, BEFORE_ALL);
        assert_eq!(soft.stream.unwrap().plausible, INCLUDING_FLOWS);
        // A lost message of 6 flow and 2 options records: each stream sees
        // exactly what it counts of it.
        a += 8;
        let e = rfc.observe_units(a, units((1, 0)));
        assert_eq!(e.missing, 8);
        b += 6 + 1;
        let e = soft.observe_units(b, units((1, 0)));
        assert_eq!(e.missing, 6);
    }

    #[test]
    fn an_uncountable_message_resyncs_instead_of_guessing() {
        let mut t = Feed::new(Version::Ipfix);
        t.observe(0, Some(5));
        t.observe(5, None);
        assert!(clean(t.observe(17, Some(2))));
        assert!(clean(t.observe(19, Some(1))));
    }
}
