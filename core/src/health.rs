//! What `/health` reports: each component's lifecycle state, and whether the
//! pipeline is ready for traffic (every source that says so has bound its
//! sockets, warmed its state…), which is what a load balancer's health
//! check and the quickstart wait for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The lifecycle state of one component, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Running.
    Running,
    /// Returned normally.
    Finished,
    /// Returned an error or panicked.
    Failed,
}

/// Component states shared with the admin endpoint.
pub type Health = Arc<Mutex<Vec<(String, ComponentState)>>>;

/// Whether the pipeline takes traffic: started, and every source that
/// reports readiness ([`crate::registry::SourceConfig::reports_ready`]) has
/// said it is ready.
pub struct Readiness {
    state: Mutex<ReadyState>,
    tx: watch::Sender<bool>,
}

#[derive(Default)]
struct ReadyState {
    started: bool,
    draining: bool,
    waiting: HashMap<String, bool>,
}

/// Where the pipeline is on its way in or out, as `/health/ready` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting, or a source is not ready yet (binding, warming its state).
    Warming,
    /// Takes traffic.
    Ready,
    /// Stopping: not ready, so a balancer stops sending; the sources still
    /// receive until the drain grace ends.
    Draining,
}

impl Phase {
    /// The word `/health/ready` answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warming => "warming",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }
}

impl Readiness {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), tx: watch::channel(false).0 })
    }

    fn update(&self, f: impl FnOnce(&mut ReadyState)) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st);
        let ready = st.started && st.waiting.values().all(|r| *r);
        self.tx.send_if_modified(|v| std::mem::replace(v, ready) != ready);
    }

    /// Every component has been started.
    pub(crate) fn started(&self) {
        self.update(|s| s.started = true);
    }

    /// The pipeline is stopping: not ready any more.
    pub(crate) fn stopping(&self) {
        self.update(|s| {
            s.started = false;
            s.draining = true;
        });
    }

    /// Source `name` will say when it is ready.
    pub(crate) fn expect(&self, name: &str) {
        self.update(|s| {
            s.waiting.insert(name.to_string(), false);
        });
    }

    /// Source `name` is gone (returned, or replaced by a reload).
    pub(crate) fn forget(&self, name: &str) {
        self.update(|s| {
            s.waiting.remove(name);
        });
    }

    fn set(&self, name: &str) {
        self.update(|s| {
            if let Some(r) = s.waiting.get_mut(name) {
                *r = true;
            }
        });
    }

    /// Ready now?
    pub fn is_ready(&self) -> bool {
        *self.tx.borrow()
    }

    /// Warming, ready or draining.
    pub fn phase(&self) -> Phase {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.draining {
            Phase::Draining
        } else if self.is_ready() {
            Phase::Ready
        } else {
            Phase::Warming
        }
    }

    /// Follows readiness.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// A source's handle on readiness.
#[derive(Clone)]
pub struct Ready {
    name: Arc<str>,
    readiness: Arc<Readiness>,
}

impl Ready {
    pub(crate) fn new(name: &str, readiness: Arc<Readiness>) -> Self {
        Self { name: name.into(), readiness }
    }

    /// The source takes traffic now (its sockets are bound).
    pub fn ready(&self) {
        self.readiness.set(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_started_and_every_reporting_source_said_so() {
        let r = Readiness::new();
        let mut rx = r.subscribe();
        r.expect("flows");
        r.expect("polls");
        assert_eq!(r.phase(), Phase::Warming);
        r.started();
        assert!(!r.is_ready());
        Ready::new("flows", r.clone()).ready();
        assert!(!r.is_ready());
        r.forget("polls");
        assert!(r.is_ready());
        assert!(rx.has_changed().unwrap());
        assert!(*rx.borrow_and_update());
        assert_eq!(r.phase(), Phase::Ready);
        r.stopping();
        assert!(!r.is_ready());
        assert_eq!(r.phase(), Phase::Draining);
    }
}
