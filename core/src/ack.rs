//! End-to-end acknowledgements.
//!
//! A source that needs to know when its data is durable (a Kafka source
//! committing offsets, a disk buffer freeing a segment) attaches an [`Ack`]
//! to each batch. Fan-out and transforms clone the handle; every sink settles
//! its clone once the data is durable (or rejected). When the last clone is
//! gone the source's [`AckReceiver`] learns the batch's combined status.
//!
//! A clone that is dropped without being settled before it reached a sink
//! (for example because a filter removed every row of a branch) counts as
//! [`AckStatus::Dropped`], which is not a failure: no sink on that branch
//! needed the data. Once a sink has received a batch, its handles are the
//! sink's responsibility ([`Acks::take_responsibility`]): dropped unsettled
//! — the sink failed, or panicked, while holding it — they settle as
//! [`AckStatus::Rejected`], so a source never takes an undelivered batch for
//! done (a Kafka source would commit past it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::mpsc;

/// The combined fate of a batch across all its clones.
///
/// Statuses combine by taking the most severe: one rejecting sink makes the
/// batch rejected even if another sink delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum AckStatus {
    /// No sink took responsibility for the data (filtered or sampled out).
    Dropped = 0,
    /// Every sink that received the data made it durable.
    Delivered = 1,
    /// At least one sink failed to make the data durable.
    Rejected = 2,
}

impl AckStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Dropped,
            1 => Self::Delivered,
            _ => Self::Rejected,
        }
    }
}

/// A settled batch, as reported to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The id the source gave the batch in [`AckTracker::ack`].
    pub id: u64,
    /// The combined status of all clones.
    pub status: AckStatus,
}

struct Inner {
    id: u64,
    status: AtomicU8,
    notify: mpsc::UnboundedSender<Settled>,
    /// The journal records the batch holds, for sinks that store it.
    mark: Option<crate::journal::Mark>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let status = AckStatus::from_u8(self.status.load(Ordering::Acquire));
        // The source may have stopped listening (it is shutting down and no
        // longer cares); a failed send is then harmless.
        let _ = self.notify.send(Settled { id: self.id, status });
    }
}

/// One clone of a batch's acknowledgement handle. Cheap to clone.
#[derive(Clone)]
pub struct Ack(Arc<Inner>);

impl Ack {
    /// Records this clone's outcome; the most severe outcome wins.
    pub fn settle(&self, status: AckStatus) {
        self.0.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("id", &self.0.id).finish()
    }
}

/// The acknowledgement handles a batch carries. Usually zero (the source does
/// not track acks) or one; a transform that merges batches carries several.
#[derive(Debug, Default)]
pub struct Acks {
    handles: Vec<Ack>,
    /// A sink holds these: dropping them unsettled rejects them.
    owned: bool,
    /// Settled, or handed over to another `Acks` with [`Acks::extend`].
    done: AtomicBool,
}

impl Clone for Acks {
    /// Another token for the same handles, with the same responsibility and
    /// not yet settled.
    fn clone(&self) -> Self {
        Self { handles: self.handles.clone(), owned: self.owned, done: AtomicBool::new(false) }
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        if self.owned && !self.done.load(Ordering::Acquire) {
            for a in &self.handles {
                a.settle(AckStatus::Rejected);
            }
        }
    }
}

impl Acks {
    /// No tracking: settling is a no-op.
    pub fn none() -> Self {
        Self::default()
    }

    /// A single handle.
    pub fn one(ack: Ack) -> Self {
        Self { handles: vec![ack], owned: false, done: AtomicBool::new(false) }
    }

    /// Settles every handle with `status`.
    pub fn settle(&self, status: AckStatus) {
        for a in &self.handles {
            a.settle(status);
        }
        self.done.store(true, Ordering::Release);
    }

    /// Marks these handles as a sink's to settle: from now on, dropping them
    /// unsettled settles them [`AckStatus::Rejected`]. [`crate::component::SinkInput`]
    /// does this for every batch it hands a sink.
    pub fn take_responsibility(&mut self) {
        self.owned = true;
    }

    /// Takes over the handles of `other`, and its responsibility: `other`
    /// counts as settled, and these must be (used when batches are merged,
    /// or a sink gathers batches into a file).
    pub fn extend(&mut self, other: &Acks) {
        self.handles.extend(other.handles.iter().cloned());
        self.owned |= other.owned;
        other.done.store(true, Ordering::Release);
    }

    /// The journal marks of the data (one per handle that has one).
    pub fn marks(&self) -> impl Iterator<Item = &crate::journal::Mark> {
        self.handles.iter().filter_map(|a| a.0.mark.as_ref())
    }

    /// Number of handles carried.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when the batch is not tracked.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

/// Creates acknowledgement handles for a source and hands out the receiver on
/// which it learns about settled batches.
pub struct AckTracker {
    next_id: u64,
    tx: mpsc::UnboundedSender<Settled>,
}

/// Where a source learns that its batches have settled.
pub type AckReceiver = mpsc::UnboundedReceiver<Settled>;

impl AckTracker {
    /// A tracker and the receiver for its settlements.
    pub fn new() -> (Self, AckReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { next_id: 0, tx }, rx)
    }

    /// A fresh handle; its id is returned in the eventual [`Settled`].
    pub fn ack(&mut self) -> (u64, Ack) {
        self.make(None)
    }

    /// A fresh handle carrying the journal records its batch holds.
    pub fn ack_marked(&mut self, mark: crate::journal::Mark) -> (u64, Ack) {
        self.make(Some(mark))
    }

    fn make(&mut self, mark: Option<crate::journal::Mark>) -> (u64, Ack) {
        let id = self.next_id;
        self.next_id += 1;
        let inner =
            Inner { id, status: AtomicU8::new(AckStatus::Dropped as u8), notify: self.tx.clone(), mark };
        (id, Ack(Arc::new(inner)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_learns_only_when_every_clone_is_settled() {
        let (mut tracker, mut rx) = AckTracker::new();
        let (id, ack) = tracker.ack();
        let branch_a = Acks::one(ack.clone());
        let branch_b = Acks::one(ack);
        branch_a.settle(AckStatus::Delivered);
        drop(branch_a);
        assert!(rx.try_recv().is_err(), "one clone is still in flight");
        branch_b.settle(AckStatus::Delivered);
        drop(branch_b);
        assert_eq!(rx.try_recv().unwrap(), Settled { id, status: AckStatus::Delivered });
    }

    #[test]
    fn the_most_severe_outcome_wins() {
        let (mut tracker, mut rx) = AckTracker::new();
        let (_, ack) = tracker.ack();
        let filtered = ack.clone();
        let failed = ack.clone();
        ack.settle(AckStatus::Delivered);
        failed.settle(AckStatus::Rejected);
        drop((ack, failed, filtered));
        assert_eq!(rx.try_recv().unwrap().status, AckStatus::Rejected);
    }

    #[test]
    fn a_sink_dropping_what_it_holds_unsettled_rejects_it() {
        let (mut tracker, mut rx) = AckTracker::new();
        let (_, ack) = tracker.ack();
        let mut held = Acks::one(ack);
        held.take_responsibility();
        drop(held);
        assert_eq!(rx.try_recv().unwrap().status, AckStatus::Rejected);
        // Handed over to a file's handles, which are settled: delivered.
        let (_, ack) = tracker.ack();
        let mut batch = Acks::one(ack);
        batch.take_responsibility();
        let mut file = Acks::none();
        file.extend(&batch);
        drop(batch);
        file.settle(AckStatus::Delivered);
        drop(file);
        assert_eq!(rx.try_recv().unwrap().status, AckStatus::Delivered);
    }

    #[test]
    fn an_unsettled_clone_reports_dropped() {
        let (mut tracker, mut rx) = AckTracker::new();
        let (_, ack) = tracker.ack();
        drop(ack);
        assert_eq!(rx.try_recv().unwrap().status, AckStatus::Dropped);
    }
}
