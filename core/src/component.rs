//! The three runtime traits — [`Source`], [`Transform`], [`Sink`] — and the
//! contexts the runner hands them.
//!
//! Shutdown is a cascade. The runner fires each source's [`Shutdown`]; a
//! source stops taking new input, emits what it still holds and returns.
//! When every upstream of a component has returned its input ends, so a
//! transform is asked to [`Transform::finish`] and a sink sees
//! [`SinkInput::recv`] return `None`, flushes, settles and returns. Nothing
//! in flight is abandoned on a graceful stop.

use std::sync::Arc;

use async_trait::async_trait;

use crate::batch::Batch;
pub use crate::channel::Closed;
use crate::channel::{RowReceiver, RowSender};
pub use crate::events::Events;
use crate::ledger::{ComponentLedger, DropReason, EdgeCounter};
pub use crate::metrics::Metrics;

/// Fires once when the pipeline is asked to stop. Cheap to clone.
pub type Shutdown = tokio_util::sync::CancellationToken;

/// A failure that stops a component (and, gracefully, its pipeline).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    /// What went wrong, as a sentence.
    pub message: String,
}

impl ComponentError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// One downstream of an output: its input channel, its ledger entry, and
/// the edge counter between the two.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) tx: RowSender,
    pub(crate) downstream: Arc<ComponentLedger>,
    pub(crate) edge: Arc<EdgeCounter>,
}

/// The downstreams of one output. The runner replaces the list when a
/// reload rewires the pipeline; a send takes the list as it is then.
#[derive(Default)]
pub(crate) struct Targets(std::sync::Mutex<Arc<Vec<Target>>>);

impl Targets {
    pub(crate) fn new(targets: Vec<Target>) -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(Arc::new(targets))))
    }

    fn current(&self) -> Arc<Vec<Target>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs a new list; senders of the old one are dropped once no send
    /// uses them any more, which is what lets a replaced component's input
    /// end.
    pub(crate) fn replace(&self, targets: Vec<Target>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(targets);
    }
}

/// Whose output it is, which decides what a send counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A source's main output: what it emits, it took in.
    Source,
    /// A transform's main output: the runner counted what came in.
    Transform,
    /// A named output (`flows.loss`, `t.errors`), a ledger entry of its
    /// own: what enters it, it receives.
    Named,
}

/// Where a source or transform sends its batches: every downstream input.
pub struct Output {
    targets: Arc<Targets>,
    ledger: Arc<ComponentLedger>,
    role: Role,
}

impl Output {
    pub(crate) fn new(targets: Arc<Targets>, ledger: Arc<ComponentLedger>, role: Role) -> Self {
        Self { targets, ledger, role }
    }

    /// Sends `batch` to every downstream component, waiting for room in
    /// each (backpressure). Counts the records as emitted (and, for a source
    /// or a named output, as taken in), and on each edge as sent.
    ///
    /// A downstream that has failed no longer takes batches: the records meant
    /// for it are charged to it as received and dropped
    /// ([`DropReason::ComponentFailed`]), rejected for their source, and the
    /// other downstreams still get theirs. `Err(Closed)` means every
    /// downstream has failed.
    ///
    /// Cancel safety: not cancel-safe. If the future is dropped part-way, some
    /// downstreams may have received the batch and others not.
    pub async fn send(&mut self, batch: Batch) -> Result<(), Closed> {
        let rows = batch.rows() as u64;
        if rows == 0 {
            return Ok(());
        }
        if self.role != Role::Transform {
            self.ledger.received(rows);
        }
        self.ledger.emitted(rows);
        let targets = self.targets.current();
        let mut delivered_somewhere = targets.is_empty();
        for t in targets.iter() {
            t.edge.sent(rows);
            match t.tx.send(batch.clone()).await {
                Ok(()) => delivered_somewhere = true,
                Err(Closed) => {
                    t.downstream.received(rows);
                    t.downstream.dropped(DropReason::ComponentFailed, rows);
                    batch.acks.settle(crate::ack::AckStatus::Rejected);
                }
            }
        }
        if delivered_somewhere { Ok(()) } else { Err(Closed) }
    }
}

impl Drop for Output {
    /// A producer done with its output lets go of its downstreams' inputs,
    /// so that they end once every producer is done.
    fn drop(&mut self) {
        self.targets.replace(Vec::new());
    }
}

/// A source's named outputs that some component reads (see
/// [`crate::registry::SourceConfig::named_outputs`]). Each has its own
/// ledger entry, `SOURCE.OUTPUT`, whose `received` counts the records the
/// source sends to it.
#[derive(Default)]
pub struct NamedOutputs(Vec<(String, Output)>);

impl NamedOutputs {
    pub(crate) fn new(outputs: Vec<(String, Output)>) -> Self {
        Self(outputs)
    }

    /// Takes the output called `name`; `None` when nobody reads it (then the
    /// source should not produce it).
    pub fn take(&mut self, name: &str) -> Option<Output> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// What a source replaced by a reload leaves to its successor: resources
/// that must not be closed and reopened (a UDP source's bound sockets and
/// decoder state, so that no datagram and no template is lost).
///
/// Every source has one. When a reload replaces it, the runner marks it
/// [`Handover::replacing`] before stopping the source; the source may then
/// [`Handover::give`] what it holds instead of closing it. Its successor
/// awaits [`Handover::receive`], which resolves when something is given or
/// the old source has returned.
#[derive(Default)]
pub struct Handover {
    state: std::sync::Mutex<HandoverState>,
    notify: tokio::sync::Notify,
}

#[derive(Default)]
enum HandoverState {
    #[default]
    Running,
    Replacing,
    Given(Box<dyn std::any::Any + Send>),
    Finished,
}

impl Handover {
    /// Whether this source is being stopped to be replaced by a reload
    /// (rather than for good).
    pub fn replacing(&self) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), HandoverState::Replacing)
    }

    /// Leaves `what` to the successor.
    pub fn give(&self, what: Box<dyn std::any::Any + Send>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = HandoverState::Given(what);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// What the predecessor left, once it has left it or returned.
    ///
    /// Cancel safety: cancel-safe; nothing is taken until it resolves.
    pub async fn receive(&self) -> Option<Box<dyn std::any::Any + Send>> {
        loop {
            let notified = self.notify.notified();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                match std::mem::take(&mut *st) {
                    HandoverState::Given(v) => {
                        *st = HandoverState::Finished;
                        return Some(v);
                    }
                    HandoverState::Finished => {
                        *st = HandoverState::Finished;
                        return None;
                    }
                    other => *st = other,
                }
            }
            notified.await;
        }
    }

    pub(crate) fn mark_replacing(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*st, HandoverState::Running) {
            *st = HandoverState::Replacing;
        }
    }

    /// The source returned: a successor waiting gets what was given, or
    /// nothing.
    pub(crate) fn finish(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*st, HandoverState::Given(_)) {
            *st = HandoverState::Finished;
        }
        drop(st);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// What a source gets from the runner.
pub struct SourceContext {
    /// The component's name in the pipeline file.
    pub name: Arc<str>,
    /// Downstream.
    pub out: Output,
    /// Named outputs that have readers.
    pub named: NamedOutputs,
    /// Fires when the source must stop.
    pub shutdown: Shutdown,
    /// What the source reports: records it drops, with why. What it takes
    /// in is counted by what it emits and drops.
    pub events: Events,
    /// The source's own metric series.
    pub metrics: Metrics,
    /// Tells the pipeline the source takes traffic (for sources whose
    /// config [`crate::registry::SourceConfig::reports_ready`]).
    pub ready: crate::health::Ready,
    /// What this source may leave to a successor when a reload replaces it.
    pub handover: Arc<Handover>,
    /// The instance this one replaces (a reload), to receive what it left.
    pub predecessor: Option<Arc<Handover>>,
}

/// Produces batches.
///
/// A source reports every record it rejects ([`Events::dropped`]);
/// [`Output::send`] counts what it emits. Both count as taken in. When `shutdown` fires it must stop accepting input promptly, emit
/// what it already accepted, and return `Ok(())`. Returning on its own (end
/// of a file, a `count` reached) ends its part of the pipeline the same way.
#[async_trait]
pub trait Source: Send {
    /// Runs the source to completion.
    async fn run(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError>;
}

/// The caller-owned output of a transform call: batches to pass on and the
/// counters for records the transform removes.
pub struct Emitter {
    batches: Vec<Batch>,
    ledger: Arc<ComponentLedger>,
    events: Events,
    /// Named outputs that have readers.
    wired: Vec<String>,
    named: Vec<(&'static str, Batch)>,
}

impl Emitter {
    /// An emitter counting into `ledger`. The runner makes one per
    /// transform; tests and benches make their own to drive a transform
    /// directly.
    pub fn new(ledger: Arc<ComponentLedger>) -> Self {
        Self::with_outputs(ledger, Vec::new())
    }

    /// An emitter whose named outputs `wired` have readers.
    pub fn with_outputs(ledger: Arc<ComponentLedger>, wired: Vec<String>) -> Self {
        let events = Events::new(ledger.clone());
        Self { batches: Vec::new(), ledger, events, wired, named: Vec::new() }
    }

    /// Whether named output `name` has a reader.
    pub fn has_output(&self, name: &str) -> bool {
        self.wired.iter().any(|w| w == name)
    }

    /// Sends `batch` to named output `name`. Its records must already be
    /// accounted for in this transform (counted as dropped with a reason):
    /// the named output's own ledger entry counts them as received. A
    /// batch for an output without readers is discarded.
    pub fn push_to(&mut self, name: &'static str, batch: Batch) {
        if self.has_output(name) {
            self.named.push((name, batch));
        }
    }

    /// Takes the batches pushed to named outputs so far.
    pub fn drain_named(&mut self) -> std::vec::Drain<'_, (&'static str, Batch)> {
        self.named.drain(..)
    }

    /// Passes `batch` downstream.
    pub fn push(&mut self, batch: Batch) {
        self.batches.push(batch);
    }

    /// Counts `n` records removed on purpose or by failure, and says why
    /// (see [`Events::dropped`]).
    pub fn dropped(&self, reason: DropReason, n: u64, why: &dyn std::fmt::Display) {
        self.events.dropped(reason, n, why);
    }

    /// The transform's events, for what it reports from elsewhere than a
    /// batch (a reload that failed, a lookup that missed).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Counts `n` input records folded into records this transform makes.
    pub fn merged(&self, n: u64) {
        self.ledger.merged(n);
    }

    /// Counts `n` records this transform made (before pushing them).
    pub fn created(&self, n: u64) {
        self.ledger.created(n);
    }

    /// Takes the batches pushed so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Batch> {
        self.batches.drain(..)
    }
}

/// Turns batches into batches, synchronously, on the hot path.
///
/// Every record a transform takes in must be pushed on (possibly reshaped),
/// counted as dropped with a reason, or held (and reported by
/// [`Transform::in_flight`]) until a later call or [`Transform::finish`].
pub trait Transform: Send {
    /// Processes one batch. An `Err` drops the whole batch, counted under the
    /// error's reason; the transform keeps running.
    fn process(&mut self, batch: Batch, out: &mut Emitter) -> Result<(), TransformError>;

    /// Called at a fixed interval if [`Transform::tick_interval`] is set,
    /// e.g. to close windows when no input arrives.
    fn tick(&mut self, _out: &mut Emitter) {}

    /// How often to call [`Transform::tick`]; `None` (the default) for never.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called once when every input has ended: emit everything still held.
    fn finish(&mut self, _out: &mut Emitter) {}
}

/// A transform's failure on one batch.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransformError {
    /// How the batch's records are counted.
    pub reason: DropReason,
    /// What went wrong.
    pub message: String,
}

/// The input of a sink: batches from every upstream, until they all end.
pub struct SinkInput {
    rx: Input,
    ledger: Arc<ComponentLedger>,
}

/// Where a sink's batches come from.
enum Input {
    /// Its input channel.
    Channel(RowReceiver),
    /// Its disk buffer, which counted the records as it took them in.
    Buffer(tokio::sync::mpsc::Receiver<crate::disk_buffer::Buffered>),
}

impl SinkInput {
    pub(crate) fn new(rx: RowReceiver, ledger: Arc<ComponentLedger>) -> Self {
        Self { rx: Input::Channel(rx), ledger }
    }

    /// Batches read from the sink's disk buffer.
    pub(crate) fn buffered(
        rx: tokio::sync::mpsc::Receiver<crate::disk_buffer::Buffered>,
        ledger: Arc<ComponentLedger>,
    ) -> Self {
        Self { rx: Input::Buffer(rx), ledger }
    }

    /// The next batch, or `None` once every upstream has finished. Counts the
    /// records as received.
    ///
    /// Cancel safety: cancel-safe. If the future is dropped before it
    /// completes, no batch is lost.
    pub async fn recv(&mut self) -> Option<Batch> {
        let mut b = match &mut self.rx {
            Input::Channel(rx) => {
                let b = rx.recv().await?;
                self.ledger.received(b.rows() as u64);
                b
            }
            Input::Buffer(rx) => rx.recv().await?.batch,
        };
        // The sink answers for it now: dropped unsettled, it is rejected.
        b.acks.take_responsibility();
        Some(b)
    }
}

/// What a sink gets from the runner.
pub struct SinkContext {
    /// The component's name in the pipeline file.
    pub name: Arc<str>,
    /// What the sink reports: records `delivered` (durable) and dropped.
    /// What it receives is counted by its input.
    pub events: Events,
    /// The sink's own metric series.
    pub metrics: Metrics,
}

/// Makes batches durable.
///
/// A sink reports records [`Events::delivered`] only once they are durable
/// and then settles the batch's acknowledgements
/// ([`crate::ack::Acks::settle`]); a permanent failure is reported dropped
/// with [`DropReason::SinkError`] and settled as rejected. When its input ends it flushes everything it holds
/// and returns; it is never cancelled mid-write by a graceful shutdown.
#[async_trait]
pub trait Sink: Send {
    /// Runs the sink until its input ends.
    async fn run(self: Box<Self>, input: SinkInput, cx: SinkContext) -> Result<(), ComponentError>;
}
