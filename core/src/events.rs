//! What a component reports about its records, each event defined once: an
//! event makes its ledger entry, its series on `/metrics` (the ledger's
//! `spillway_records_*` series) and a rate-limited log line together, so a
//! count and its explanation cannot drift apart.
//!
//! Components get an [`Events`] in their context and never touch ledger
//! counters themselves. What they take in is implied: a sink's by its input,
//! a transform's by the runner, a source's by what it emits or reports
//! dropped — a source cannot take in records and forget to count them.
//!
//! ```
//! use spillway_core::events::Events;
//! use spillway_core::ledger::{ComponentKind, DropReason};
//! let ev = Events::standalone("flows", ComponentKind::Source);
//! ev.dropped(DropReason::NotAllowed, 3, &"exporter 192.0.2.9 is not in `allow`");
//! let e = ev.snapshot();
//! assert_eq!((e.received, e.dropped_total, e.in_flight), (3, 3, 0));
//! ```

use std::fmt::Display;
use std::sync::{Arc, Mutex};

use crate::ledger::{ComponentKind, ComponentLedger, DropReason, Ledger, LedgerEntry};
use crate::metrics::LogLimit;

/// The events of one component. Cheap to clone; shared by its threads.
#[derive(Clone)]
pub struct Events {
    ledger: Arc<ComponentLedger>,
    logs: Arc<Mutex<Vec<(DropReason, LogLimit)>>>,
}

impl Events {
    pub(crate) fn new(ledger: Arc<ComponentLedger>) -> Self {
        Self { ledger, logs: Arc::default() }
    }

    /// The events of a component outside any pipeline, with a ledger entry
    /// of its own (tests, benches).
    pub fn standalone(name: &str, kind: ComponentKind) -> Self {
        Self::new(Ledger::new().register(name, kind))
    }

    /// `n` records dropped for `reason`; `why` says what happened (logged,
    /// with how many were suppressed, a few times per ten seconds per
    /// reason; filtering and sampling, which are the pipeline's intent, at
    /// debug level). A source's dropped records count as taken in.
    pub fn dropped(&self, reason: DropReason, n: u64, why: &dyn Display) {
        if n == 0 {
            return;
        }
        if self.ledger.kind() == ComponentKind::Source {
            self.ledger.received(n);
        }
        self.ledger.dropped(reason, n);
        let name = self.ledger.name();
        if matches!(reason, DropReason::Filtered | DropReason::SampledOut) {
            tracing::debug!(component = %name, reason = reason.as_str(), records = n, "records dropped: {why}");
            return;
        }
        let allowed = {
            let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let i = match logs.iter().position(|(r, _)| *r == reason) {
                Some(i) => i,
                None => {
                    logs.push((reason, LogLimit::default()));
                    logs.len() - 1
                }
            };
            logs[i].1.allow()
        };
        if let Some(suppressed) = allowed {
            tracing::warn!(
                component = %name,
                reason = reason.as_str(),
                records = n,
                suppressed,
                "records dropped: {why}"
            );
        }
    }

    /// `n` records made durable (a sink).
    #[inline]
    pub fn delivered(&self, n: u64) {
        self.ledger.delivered(n);
    }

    /// The component's counters now.
    pub fn snapshot(&self) -> LedgerEntry {
        self.ledger.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures what the events log.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    #[test]
    fn every_reason_reaches_the_ledger_the_metrics_and_the_log_from_one_event() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let ledger = Ledger::new();
        tracing::subscriber::with_default(subscriber, || {
            for kind in [ComponentKind::Source, ComponentKind::Transform, ComponentKind::Sink] {
                let ev = Events::new(ledger.register(kind.as_str(), kind));
                for (i, r) in DropReason::ALL.iter().enumerate() {
                    ev.dropped(*r, i as u64 + 1, &format!("why {}", r.as_str()));
                }
            }
        });
        let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let mut metrics = String::new();
        ledger.prometheus(&mut metrics);
        for kind in [ComponentKind::Source, ComponentKind::Transform, ComponentKind::Sink] {
            let e = ledger.get(kind.as_str()).unwrap().snapshot();
            for (i, r) in DropReason::ALL.iter().enumerate() {
                let n = i as u64 + 1;
                assert_eq!(e.dropped.get(r.as_str()), Some(&n), "{kind:?} {r:?} in the ledger");
                let series = format!(
                    "spillway_records_dropped_total{{component=\"{}\",kind=\"{}\",reason=\"{}\"}} {n}",
                    kind.as_str(),
                    kind.as_str(),
                    r.as_str()
                );
                assert!(metrics.contains(&series), "{series} on /metrics");
                let line = format!("records dropped: why {}", r.as_str());
                assert!(
                    log.lines()
                        .any(|l| l.contains(&line) && l.contains(&format!("reason=\"{}\"", r.as_str()))),
                    "{r:?} in the log:\n{log}"
                );
            }
            // A source's drops are records it took in; others' came in by
            // their input.
            let total: u64 = (1..=DropReason::ALL.len() as u64).sum();
            let want_received = if kind == ComponentKind::Source { total } else { 0 };
            assert_eq!(e.received, want_received, "{kind:?}");
        }
    }

    #[test]
    fn repeated_drops_are_logged_a_few_times_then_counted_as_suppressed() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt().with_writer(capture.clone()).with_ansi(false).finish();
        let ev = Events::standalone("flows", ComponentKind::Source);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                ev.dropped(DropReason::Malformed, 1, &"bad");
            }
        });
        let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), LogLimit::PER_WINDOW as usize, "{log}");
        assert_eq!(ev.snapshot().dropped_total, 1000, "every one is counted");
    }
}
