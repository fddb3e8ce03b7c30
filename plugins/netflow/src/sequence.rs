//! Sequence-number accounting per (exporter, observation domain).
//!
//! What a sequence number counts differs by version: v5 counts flow records
//! before this packet, v9 counts export packets, IPFIX counts data records
//! before this message (RFC 7011 §3.1). Some IPFIX exporters (softflowd
//! among them) count the records *including* the current message's. We learn
//! each stream's convention from its first consistent step and then hold it,
//! so a real exporter's convention never reads as loss.

use std::collections::HashMap;

/// The counting convention of an IPFIX stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Convention {
    Unknown,
    /// RFC 7011: records before this message.
    BeforeMessage,
    /// Records up to and including this message.
    IncludingMessage,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    last_seq: u32,
    last_units: u32,
    last_ns: i64,
    convention: Convention,
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

/// Tracks every stream; bounded like the template store.
#[derive(Debug)]
pub struct SequenceTracker {
    streams: HashMap<([u8; 16], u32, u16), Stream>,
    max_streams: usize,
    pub stats: SeqStats,
}

impl SequenceTracker {
    /// A tracker for at most `max_streams` streams.
    pub fn new(max_streams: usize) -> Self {
        Self { streams: HashMap::new(), max_streams, stats: SeqStats::default() }
    }

    /// Observes a message. `units` is what the message adds to the counter
    /// (records for v5 and IPFIX, 1 for v9); `None` when it cannot be known
    /// (an IPFIX message with data sets waiting for their template).
    pub fn observe(
        &mut self,
        exporter: [u8; 16],
        domain: u32,
        version: u16,
        seq: u32,
        units: Option<u32>,
        now_ns: i64,
    ) -> SeqEvent {
        let key = (exporter, domain, version);
        let Some(s) = self.streams.get_mut(&key) else {
            if self.streams.len() >= self.max_streams {
                self.streams.clear();
            }
            let convention = if version == 10 { Convention::Unknown } else { Convention::BeforeMessage };
            self.streams.insert(
                key,
                Stream {
                    last_seq: seq,
                    last_units: units.unwrap_or(0),
                    last_ns: now_ns,
                    convention,
                    resync: units.is_none(),
                },
            );
            return SeqEvent::default();
        };
        let cur = units.unwrap_or(0);
        let mut event = SeqEvent { previous_ns: s.last_ns, ..SeqEvent::default() };
        if !s.resync {
            let before = s.last_seq.wrapping_add(s.last_units);
            let including = s.last_seq.wrapping_add(cur);
            let expected = match s.convention {
                Convention::IncludingMessage => including,
                Convention::BeforeMessage => before,
                Convention::Unknown => {
                    if units.is_some() && before != including {
                        if seq == before {
                            s.convention = Convention::BeforeMessage;
                        } else if seq == including {
                            s.convention = Convention::IncludingMessage;
                        }
                    }
                    if seq == including { including } else { before }
                }
            };
            event.expected = expected;
            let ahead = seq.wrapping_sub(expected);
            let behind = expected.wrapping_sub(seq);
            if ahead == 0 {
            } else if ahead < MAX_GAP {
                event.missing = ahead as u64;
            } else if behind <= MAX_REORDER {
                event.reordered = true;
            } else {
                event.reset = true;
            }
        }
        if event.reordered {
            // A late message does not move the stream forward.
            self.stats.reordered += 1;
            return event;
        }
        self.stats.missing += event.missing;
        self.stats.resets += event.reset as u64;
        s.last_seq = seq;
        s.last_units = cur;
        s.last_ns = now_ns;
        s.resync = units.is_none();
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: [u8; 16] = [7; 16];

    fn clean(e: SeqEvent) -> bool {
        e.missing == 0 && !e.reordered && !e.reset
    }

    #[test]
    fn v9_counts_packets_and_reports_gaps_and_reordering() {
        let mut t = SequenceTracker::new(8);
        for s in [10, 11, 12] {
            assert!(clean(t.observe(E, 0, 9, s, Some(1), 0)));
        }
        let gap = t.observe(E, 0, 9, 15, Some(1), 0);
        assert_eq!((gap.missing, gap.expected), (2, 13));
        assert!(t.observe(E, 0, 9, 14, Some(1), 0).reordered);
        assert!(clean(t.observe(E, 0, 9, 16, Some(1), 0)));
        assert!(t.observe(E, 0, 9, 3_000_000_000, Some(1), 0).reset);
        assert_eq!(t.stats, SeqStats { missing: 2, reordered: 1, resets: 1 });
    }

    #[test]
    fn ipfix_learns_either_counting_convention() {
        let mut rfc = SequenceTracker::new(8);
        let mut incl = SequenceTracker::new(8);
        let records = [5u32, 3, 7, 2, 9];
        let (mut a, mut b) = (0u32, 0u32);
        for r in records {
            // RFC: sequence = records before this message.
            rfc.observe(E, 1, 10, a, Some(r), 0);
            a += r;
            // softflowd: sequence includes this message's records.
            b += r;
            incl.observe(E, 1, 10, b, Some(r), 0);
        }
        assert_eq!(rfc.stats, SeqStats::default());
        assert_eq!(incl.stats, SeqStats::default());
        // A lost message of 4 records is loss under either convention.
        a += 4;
        rfc.observe(E, 1, 10, a, Some(1), 0);
        b += 4 + 1;
        incl.observe(E, 1, 10, b, Some(1), 0);
        assert_eq!(rfc.stats.missing, 4);
        assert_eq!(incl.stats.missing, 4);
    }

    #[test]
    fn an_uncountable_message_resyncs_instead_of_guessing() {
        let mut t = SequenceTracker::new(8);
        t.observe(E, 1, 10, 0, Some(5), 0);
        t.observe(E, 1, 10, 5, None, 0);
        assert!(clean(t.observe(E, 1, 10, 17, Some(2), 0)));
        assert!(clean(t.observe(E, 1, 10, 19, Some(1), 0)));
    }
}
