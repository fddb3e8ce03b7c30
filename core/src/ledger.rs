//! The record ledger: per-component counts that must always balance.
//!
//! For every component the engine counts records received, emitted
//! (passed downstream), delivered (made durable by a sink) and dropped, each
//! drop with a [`DropReason`]. At any moment
//!
//! ```text
//! received + created = emitted + delivered + dropped + merged + in_flight
//! ```
//!
//! `created` and `merged` are zero except for components that combine
//! records: an aggregation that folds N input records into M result rows
//! counts the N as `merged` and the M as `created` (then `emitted`).
//!
//! where `in_flight` is what the component holds right now (a sink's
//! unflushed file, a transform's open window). At shutdown every component's
//! `in_flight` is zero and each edge carries exactly what its upstream
//! emitted. The counters are relaxed atomics: one `fetch_add` per batch, not
//! per record.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why records were dropped. Every drop in the engine has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Input that could not be decoded.
    Malformed,
    /// Data whose template never arrived within the configured time.
    TemplateTimeout,
    /// A buffer was full and the policy was `drop_newest`.
    BufferFull,
    /// Removed by a filter.
    Filtered,
    /// Removed by sampling.
    SampledOut,
    /// A plugin failed on the batch.
    PluginError,
    /// A sink permanently failed to write the records.
    SinkError,
    /// Arrived after its window closed.
    Late,
    /// The sender is not in the allowlist.
    NotAllowed,
    /// State was evicted to respect a bound.
    Evicted,
    /// The component that held the records failed.
    ComponentFailed,
    /// Data still waiting for its template when its source stopped.
    TemplateMissing,
    /// Arrived while its source was stopping: refused, or not read by the
    /// drain deadline.
    Stopping,
}

impl DropReason {
    /// Every reason, in display order.
    pub const ALL: [DropReason; 13] = [
        Self::Malformed,
        Self::TemplateTimeout,
        Self::BufferFull,
        Self::Filtered,
        Self::SampledOut,
        Self::PluginError,
        Self::SinkError,
        Self::Late,
        Self::NotAllowed,
        Self::Evicted,
        Self::ComponentFailed,
        Self::TemplateMissing,
        Self::Stopping,
    ];

    /// The label used in metrics and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TemplateTimeout => "template_timeout",
            Self::BufferFull => "buffer_full",
            Self::Filtered => "filtered",
            Self::SampledOut => "sampled_out",
            Self::PluginError => "plugin_error",
            Self::SinkError => "sink_error",
            Self::Late => "late",
            Self::NotAllowed => "not_allowed",
            Self::Evicted => "evicted",
            Self::ComponentFailed => "component_failed",
            Self::TemplateMissing => "template_missing",
            Self::Stopping => "stopping",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What kind of component a ledger entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// Produces records.
    Source,
    /// Turns batches into batches.
    Transform,
    /// Makes records durable somewhere.
    Sink,
}

impl ComponentKind {
    /// `source`, `transform` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Transform => "transform",
            Self::Sink => "sink",
        }
    }
}

/// The counters of one component. Shared by the component and the runner.
#[derive(Debug)]
pub struct ComponentLedger {
    name: Arc<str>,
    kind: ComponentKind,
    received: AtomicU64,
    emitted: AtomicU64,
    delivered: AtomicU64,
    created: AtomicU64,
    merged: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl ComponentLedger {
    /// The component's name in the pipeline file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component's kind.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// Counts records taken in (from the network, a file, or upstream).
    #[inline]
    pub fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Records received so far (one counter, without a whole snapshot).
    pub fn received_count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Counts records passed downstream.
    #[inline]
    pub fn emitted(&self, n: u64) {
        self.emitted.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts records made durable by a sink.
    #[inline]
    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts new records a component made (aggregate rows).
    #[inline]
    pub fn created(&self, n: u64) {
        self.created.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts input records folded into records the component made.
    #[inline]
    pub fn merged(&self, n: u64) {
        self.merged.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts records dropped for `reason`.
    #[inline]
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// A consistent-enough copy of the counters.
    ///
    /// Counters are read one by one; `in_flight` is derived and saturates at
    /// zero so that a read racing with an update never shows a negative.
    pub fn snapshot(&self) -> LedgerEntry {
        let dropped: Vec<(DropReason, u64)> = DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped[r.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let delivered = self.delivered.load(Ordering::Relaxed);
        let emitted = self.emitted.load(Ordering::Relaxed);
        let received = self.received.load(Ordering::Relaxed);
        let created = self.created.load(Ordering::Relaxed);
        let merged = self.merged.load(Ordering::Relaxed);
        let dropped_total: u64 = dropped.iter().map(|(_, n)| n).sum();
        LedgerEntry {
            component: self.name.to_string(),
            kind: self.kind,
            received,
            emitted,
            delivered,
            dropped_total,
            dropped: dropped.into_iter().map(|(r, n)| (r.as_str().to_string(), n)).collect(),
            created,
            merged,
            in_flight: (received + created).saturating_sub(emitted + delivered + dropped_total + merged),
        }
    }
}

/// A snapshot of one component's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Component name.
    pub component: String,
    /// Component kind.
    pub kind: ComponentKind,
    /// Records taken in.
    pub received: u64,
    /// Records passed downstream.
    pub emitted: u64,
    /// Records made durable.
    pub delivered: u64,
    /// Sum of all drops.
    pub dropped_total: u64,
    /// Drops by reason (only reasons with a non-zero count).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Records the component made (aggregate rows).
    pub created: u64,
    /// Input records folded into records the component made.
    pub merged: u64,
    /// Records the component holds now.
    pub in_flight: u64,
}

/// Records sent along one edge of the pipeline: from an output
/// (`flows`, or a named one, `flows.loss`) to a component's input. A
/// component's `received` must end equal to the sum over the edges into it,
/// whatever reloads rewired in between.
#[derive(Debug)]
pub struct EdgeCounter {
    /// The upstream output.
    pub from: Arc<str>,
    /// The downstream component.
    pub to: Arc<str>,
    sent: AtomicU64,
}

impl EdgeCounter {
    /// Counts records sent along the edge.
    #[inline]
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Records sent so far.
    pub fn get(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Entries {
    components: Vec<Arc<ComponentLedger>>,
    edges: Vec<Arc<EdgeCounter>>,
}

/// The ledger of a whole pipeline: its components' counters and its edges.
/// Cheap to clone; every clone sees components added later (a reload).
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    inner: Arc<std::sync::RwLock<Entries>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters of component `name`, registered if new: a component
    /// replaced by a reload carries on counting in the same entry.
    pub fn register(&self, name: &str, kind: ComponentKind) -> Arc<ComponentLedger> {
        let mut e = self.write();
        if let Some(c) = e.components.iter().find(|c| &*c.name == name && c.kind == kind) {
            return c.clone();
        }
        let entry = Arc::new(ComponentLedger {
            name: name.into(),
            kind,
            received: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            created: AtomicU64::new(0),
            merged: AtomicU64::new(0),
            dropped: Default::default(),
        });
        e.components.push(entry.clone());
        entry
    }

    /// The counters of component `name`, if registered.
    pub fn get(&self, name: &str) -> Option<Arc<ComponentLedger>> {
        self.read().components.iter().find(|c| &*c.name == name).cloned()
    }

    /// The counter of the edge `from` → `to`, registered if new.
    pub fn edge(&self, from: &str, to: &str) -> Arc<EdgeCounter> {
        let mut e = self.write();
        if let Some(x) = e.edges.iter().find(|x| &*x.from == from && &*x.to == to) {
            return x.clone();
        }
        let x = Arc::new(EdgeCounter { from: from.into(), to: to.into(), sent: AtomicU64::new(0) });
        e.edges.push(x.clone());
        x
    }

    /// Snapshots every component, in registration order.
    pub fn snapshot(&self) -> Vec<LedgerEntry> {
        self.read().components.iter().map(|c| c.snapshot()).collect()
    }

    /// Every edge and what it carried so far.
    pub fn edges(&self) -> Vec<(String, String, u64)> {
        self.read().edges.iter().map(|e| (e.from.to_string(), e.to.to_string(), e.get())).collect()
    }

    /// Every way the books do not balance. `settled` says the pipeline has
    /// drained: then each component must account for exactly what it took
    /// in, and have received exactly what its edges carried. While running,
    /// records may be in flight, so only the impossible is reported: more
    /// accounted for than taken in, more received than sent.
    pub fn imbalances(&self, settled: bool) -> Vec<Imbalance> {
        let entries = self.snapshot();
        let edges = self.edges();
        let mut out = Vec::new();
        for e in &entries {
            let accounted = e.emitted + e.delivered + e.dropped_total + e.merged;
            let took = e.received + e.created;
            if accounted > took || (settled && accounted != took) {
                out.push(Imbalance {
                    component: e.component.clone(),
                    records: accounted.abs_diff(took),
                    message: format!(
                        "{} `{}` received {} records but accounted for {} (emitted {}, delivered {}, dropped {})",
                        e.kind.as_str(),
                        e.component,
                        e.received,
                        accounted,
                        e.emitted,
                        e.delivered,
                        e.dropped_total
                    ),
                });
            }
            let into: Vec<&(String, String, u64)> =
                edges.iter().filter(|(_, to, _)| *to == e.component).collect();
            if into.is_empty() {
                continue;
            }
            let sent: u64 = into.iter().map(|(_, _, n)| n).sum();
            if e.received > sent || (settled && e.received != sent) {
                out.push(Imbalance {
                    component: e.component.clone(),
                    records: e.received.abs_diff(sent),
                    message: format!(
                        "`{}` received {} records but its inputs sent it {sent}",
                        e.component, e.received
                    ),
                });
            }
        }
        out
    }

    /// Renders the ledger as an aligned text table.
    pub fn table(&self) -> String {
        render_table(&self.snapshot())
    }

    /// Renders the counters in the Prometheus text exposition format.
    pub fn prometheus(&self, out: &mut String) {
        let entries = self.snapshot();
        type Counter = (&'static str, &'static str, fn(&LedgerEntry) -> u64);
        let counters: [Counter; 6] = [
            ("spillway_records_received_total", "Records taken in by the component.", |e| e.received),
            ("spillway_records_emitted_total", "Records passed downstream.", |e| e.emitted),
            ("spillway_records_delivered_total", "Records made durable by a sink.", |e| e.delivered),
            ("spillway_records_created_total", "Records a component made (aggregate rows).", |e| e.created),
            ("spillway_records_merged_total", "Input records folded into records a component made.", |e| {
                e.merged
            }),
            ("spillway_records_in_flight", "Records the component holds now.", |e| e.in_flight),
        ];
        for (metric, help, get) in counters {
            let ty = if metric.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {ty}");
            for e in &entries {
                let _ = writeln!(
                    out,
                    "{metric}{{component=\"{}\",kind=\"{}\"}} {}",
                    e.component,
                    e.kind.as_str(),
                    get(e)
                );
            }
        }
        let metric = "spillway_records_dropped_total";
        let _ = writeln!(out, "# HELP {metric} Records dropped, by reason.\n# TYPE {metric} counter");
        for c in &self.read().components {
            for r in DropReason::ALL {
                let n = c.dropped[r.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{metric}{{component=\"{}\",kind=\"{}\",reason=\"{}\"}} {n}",
                    c.name,
                    c.kind.as_str(),
                    r.as_str()
                );
            }
        }
        let metric = "spillway_edge_records_total";
        let _ = writeln!(
            out,
            "# HELP {metric} Records sent from an output to a component.\n# TYPE {metric} counter"
        );
        for (from, to, n) in self.edges() {
            let _ = writeln!(out, "{metric}{{from=\"{from}\",to=\"{to}\"}} {n}");
        }
        let metric = "spillway_ledger_imbalance_records";
        let _ = writeln!(
            out,
            "# HELP {metric} Records by which a component's books fail to balance while running (always 0 unless a bug).\n# TYPE {metric} gauge"
        );
        let imbalances = self.imbalances(false);
        for e in &entries {
            let n: u64 = imbalances.iter().filter(|i| i.component == e.component).map(|i| i.records).sum();
            let _ =
                writeln!(out, "{metric}{{component=\"{}\",kind=\"{}\"}} {n}", e.component, e.kind.as_str());
        }
    }
}

/// One way a ledger does not balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imbalance {
    /// The component whose books are off.
    pub component: String,
    /// By how many records.
    pub records: u64,
    /// What is off, as a sentence.
    pub message: String,
}

/// Renders snapshots as the table printed at shutdown.
pub fn render_table(entries: &[LedgerEntry]) -> String {
    let headers = ["component", "kind", "received", "emitted", "delivered", "dropped", "in_flight"];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let dropped = if e.dropped.is_empty() {
                "0".to_string()
            } else {
                let parts: Vec<String> = e.dropped.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.join(", ")
            };
            [
                e.component.clone(),
                e.kind.as_str().to_string(),
                e.received.to_string(),
                if e.created > 0 || e.merged > 0 {
                    format!("{} ({} rows made of {} merged)", e.emitted, e.created, e.merged)
                } else {
                    e.emitted.to_string()
                },
                e.delivered.to_string(),
                dropped,
                e.in_flight.to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns align left, counts align right.
            if i < 2 {
                let _ = write!(out, "{cell:<w$}  ");
            } else {
                let _ = write!(out, "{cell:>w$}  ");
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_what_is_not_yet_accounted_for() {
        let ledger = Ledger::new();
        let sink = ledger.register("archive", ComponentKind::Sink);
        sink.received(100);
        sink.delivered(60);
        sink.dropped(DropReason::SinkError, 15);
        let e = sink.snapshot();
        assert_eq!(e.in_flight, 25);
        assert_eq!(e.received, e.emitted + e.delivered + e.dropped_total + e.in_flight);
        assert_eq!(e.dropped.into_iter().collect::<Vec<_>>(), vec![("sink_error".to_string(), 15)]);
    }

    #[test]
    fn prometheus_text_names_component_kind_and_reason() {
        let ledger = Ledger::new();
        let f = ledger.register("flows", ComponentKind::Source);
        f.received(7);
        f.dropped(DropReason::Malformed, 2);
        let mut out = String::new();
        ledger.prometheus(&mut out);
        assert!(out.contains("spillway_records_received_total{component=\"flows\",kind=\"source\"} 7"));
        assert!(out.contains(
            "spillway_records_dropped_total{component=\"flows\",kind=\"source\",reason=\"malformed\"} 2"
        ));
    }

    #[test]
    fn imbalances_show_while_running_and_at_the_end() {
        let ledger = Ledger::new();
        let src = ledger.register("flows", ComponentKind::Source);
        let sink = ledger.register("out", ComponentKind::Sink);
        let edge = ledger.edge("flows", "out");
        src.received(10);
        src.emitted(10);
        edge.sent(10);
        sink.received(4);
        // In flight: fine while running, not once drained.
        assert!(ledger.imbalances(false).is_empty());
        assert_eq!(ledger.imbalances(true).len(), 2, "4 of 10 received, 0 of 4 accounted");
        // A bug: a sink that delivers more than it received.
        sink.delivered(6);
        let live = ledger.imbalances(false);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!((live[0].component.as_str(), live[0].records), ("out", 2));
        let mut text = String::new();
        ledger.prometheus(&mut text);
        assert!(
            text.contains("spillway_ledger_imbalance_records{component=\"out\",kind=\"sink\"} 2"),
            "{text}"
        );
        assert!(text.contains("spillway_edge_records_total{from=\"flows\",to=\"out\"} 10"), "{text}");
        // The same name carries on in the same entry.
        assert!(Arc::ptr_eq(&sink, &ledger.register("out", ComponentKind::Sink)));
    }
}
