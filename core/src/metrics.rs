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
    value: Arc<AtomicU64>,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn label_text(labels: &[(&str, &str)]) -> String {
    let parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\""))).collect();
    parts.join(",")
}

fn register(
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &[(&str, &str)],
) -> Arc<AtomicU64> {
    let labels = label_text(labels);
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = reg.iter().find(|e| e.name == name && e.labels == labels) {
        return e.value.clone();
    }
    let value = Arc::new(AtomicU64::new(0));
    reg.push(Entry { name, help, kind, labels, value: value.clone() });
    value
}

/// Registers (or finds) a counter.
pub fn counter(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
    Counter(register(name, help, "counter", labels))
}

/// Registers (or finds) a gauge.
pub fn gauge(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
    Gauge(register(name, help, "gauge", labels))
}

/// Appends every registered metric in the Prometheus text format.
pub fn render(out: &mut String) {
    let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&'static str> = reg.iter().map(|e| e.name).collect();
    names.dedup();
    let mut done: Vec<&str> = Vec::new();
    for name in names {
        if done.contains(&name) {
            continue;
        }
        done.push(name);
        let first = reg.iter().find(|e| e.name == name).expect("present");
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", first.help, first.kind);
        for e in reg.iter().filter(|e| e.name == name) {
            let value = e.value.load(Ordering::Relaxed);
            if e.labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {value}", e.labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_labels() {
        let c = counter("spillway_test_packets_total", "Packets.", &[("component", "flows")]);
        c.add(3);
        counter("spillway_test_packets_total", "Packets.", &[("component", "flows")]).add(1);
        let g = gauge("spillway_test_buffer_bytes", "Buffer.", &[("component", "flows")]);
        g.set(42);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("spillway_test_packets_total{component=\"flows\"} 4"), "{out}");
        assert!(out.contains(
            "# TYPE spillway_test_buffer_bytes gauge\nspillway_test_buffer_bytes{component=\"flows\"} 42"
        ));
    }
}
