//! Component metrics beyond the ledger (packets, templates, sequence gaps,
//! socket drops), rendered on `/metrics` next to it.
//!
//! Handles are registered once, when a component starts, and updated with a
//! relaxed atomic operation; nothing on the hot path looks anything up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Raises the count to `total` if it is higher (for mirroring a counter
    /// kept elsewhere, such as the kernel's).
    #[inline]
    pub fn set_max(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Moves the value by `to - from`: for a gauge that several workers
    /// share, each adding the change of its own part.
    #[inline]
    pub fn adjust(&self, from: u64, to: u64) {
        if to > from {
            self.0.fetch_add(to - from, Ordering::Relaxed);
        } else if from > to {
            self.0.fetch_sub(from - to, Ordering::Relaxed);
        }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Rate limit for a repeated log line: a few lines per ten seconds, each
/// saying how many were suppressed before it.
#[derive(Debug)]
pub struct LogLimit {
    window: std::time::Instant,
    in_window: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self { window: std::time::Instant::now(), in_window: 0, suppressed: 0 }
    }
}

impl LogLimit {
    /// Lines allowed per window.
    pub const PER_WINDOW: u32 = 5;
    /// The window.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

    /// Whether to log this occurrence: `Some(n)` with the number suppressed
    /// since the last line that was logged, or `None` (counted as
    /// suppressed).
    pub fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if now.duration_since(self.window) >= Self::WINDOW {
            self.window = now;
            self.in_window = 0;
        }
        if self.in_window < Self::PER_WINDOW {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

struct Entry {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: String,
    /// Alive while some handle is: a series comes and goes with what
    /// measures it (a component, an SNMP target).
    value: std::sync::Weak<AtomicU64>,
}

fn label_text(labels: &[(&str, &str)]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    parts.join(",")
}

/// The metric series of one topology, besides its ledger's. Cheap to
/// clone. A series stays registered as long as a handle to it lives.
#[derive(Clone, Default)]
pub struct Registry(Arc<Mutex<Vec<Entry>>>);

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn register(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<AtomicU64> {
        let labels = label_text(labels);
        let mut reg = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) =
            reg.iter().find(|e| e.name == name && e.labels == labels).and_then(|e| e.value.upgrade())
        {
            return v;
        }
        reg.retain(|e| e.value.strong_count() > 0);
        let value = Arc::new(AtomicU64::new(0));
        reg.push(Entry { name, help, kind, labels, value: Arc::downgrade(&value) });
        value
    }

    /// Registers (or finds) a counter.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        Counter(self.register(name, help, "counter", labels))
    }

    /// Registers (or finds) a gauge.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(self.register(name, help, "gauge", labels))
    }

    /// The registry as seen by component `name`: its series carry the
    /// `component` label.
    pub fn component(&self, name: &str) -> Metrics {
        Metrics { registry: self.clone(), component: name.into() }
    }

    /// Appends every live series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut reg = self.0.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|e| e.value.strong_count() > 0);
        let mut names: Vec<&'static str> = Vec::new();
        for e in reg.iter() {
            if !names.contains(&e.name) {
                names.push(e.name);
            }
        }
        for name in names {
            let first = reg.iter().find(|e| e.name == name).expect("present");
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", first.help, first.kind);
            for e in reg.iter().filter(|e| e.name == name) {
                let Some(v) = e.value.upgrade() else { continue };
                let value = v.load(Ordering::Relaxed);
                if e.labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{}}} {value}", e.labels);
                }
            }
        }
    }
}

/// One component's metrics: every series it registers carries its
/// `component` label.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    component: Arc<str>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("component", &self.component).finish()
    }
}

impl Metrics {
    /// Metrics of a component outside any topology (tests, benches).
    pub fn standalone(component: &str) -> Self {
        Registry::new().component(component)
    }

    /// A counter of this component.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// A counter of this component with more labels (`target`, `result`…).
    pub fn counter_with(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.registry.counter(name, help, &self.labels(labels))
    }

    /// A gauge of this component.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    /// A gauge of this component with more labels.
    pub fn gauge_with(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.registry.gauge(name, help, &self.labels(labels))
    }

    fn labels<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut l = vec![("component", &*self.component)];
        l.extend_from_slice(more);
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_with_their_labels_and_go_with_their_handles() {
        let reg = Registry::new();
        let m = reg.component("flows");
        let c = m.counter("spillway_test_packets_total", "Packets.");
        c.add(3);
        m.counter("spillway_test_packets_total", "Packets.").add(1);
        let g = m.gauge_with("spillway_test_buffer_bytes", "Buffer.", &[("target", "edge\"1")]);
        g.set(42);
        let mut out = String::new();
        reg.render(&mut out);
        assert!(out.contains("spillway_test_packets_total{component=\"flows\"} 4"), "{out}");
        assert!(out.contains(
            "# TYPE spillway_test_buffer_bytes gauge\nspillway_test_buffer_bytes{component=\"flows\",target=\"edge\\\"1\"} 42"
        ), "{out}");
        // A target that goes takes its series with it.
        drop(g);
        let mut out = String::new();
        reg.render(&mut out);
        assert!(!out.contains("spillway_test_buffer_bytes"), "{out}");
        assert!(out.contains("spillway_test_packets_total"));
    }
}
