//! A channel bounded in rows, not batches, so memory stays bounded whatever
//! the batch size.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::batch::Batch;
use crate::ledger::{ComponentLedger, DropReason};

/// The receiving side is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the downstream component has stopped")]
pub struct Closed;

/// Sending half; clone it for fan-in.
#[derive(Clone)]
pub struct RowSender {
    tx: mpsc::UnboundedSender<(Batch, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    capacity: u32,
}

impl std::fmt::Debug for RowSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowSender").field("capacity", &self.capacity).finish()
    }
}

/// Receiving half.
pub struct RowReceiver {
    rx: mpsc::UnboundedReceiver<(Batch, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    capacity: u32,
    owner: Option<Arc<ComponentLedger>>,
}

/// A channel holding at most `capacity` rows. A batch larger than the whole
/// capacity is admitted alone, when the channel is empty.
pub fn channel(capacity: u32) -> (RowSender, RowReceiver) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(capacity as usize));
    (RowSender { tx, room: room.clone(), capacity }, RowReceiver { rx, room, capacity, owner: None })
}

/// A sender that does not keep the channel open: it can make a
/// [`RowSender`] while some other sender still exists.
#[derive(Clone)]
pub struct WeakRowSender {
    tx: mpsc::WeakUnboundedSender<(Batch, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    capacity: u32,
}

impl WeakRowSender {
    /// A sender, if the channel is still open.
    pub fn upgrade(&self) -> Option<RowSender> {
        Some(RowSender { tx: self.tx.upgrade()?, room: self.room.clone(), capacity: self.capacity })
    }
}

impl RowSender {
    /// A handle that can make senders without keeping the channel open.
    pub fn downgrade(&self) -> WeakRowSender {
        WeakRowSender { tx: self.tx.downgrade(), room: self.room.clone(), capacity: self.capacity }
    }

    /// Waits for room for the batch's rows, then enqueues it.
    ///
    /// Cancel safety: cancel-safe; a cancelled send enqueues nothing.
    pub async fn send(&self, batch: Batch) -> Result<(), Closed> {
        let rows = (batch.rows() as u64).min(self.capacity as u64) as u32;
        let permit = self.room.clone().acquire_many_owned(rows).await.map_err(|_| Closed)?;
        self.tx.send((batch, permit)).map_err(|_| Closed)
    }

    /// Rows waiting in the channel.
    pub fn queued(&self) -> u64 {
        (self.capacity as u64).saturating_sub(self.room.available_permits() as u64)
    }
}

impl RowReceiver {
    /// Charges batches still queued when the receiver is dropped (its
    /// component failed) to `owner` as received and dropped, so they are
    /// never lost silently.
    pub fn set_owner(&mut self, owner: Arc<ComponentLedger>) {
        self.owner = Some(owner);
    }

    /// The next batch, or `None` when every sender is gone and the channel
    /// is empty.
    ///
    /// Cancel safety: cancel-safe.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.rx.recv().await.map(|(b, _permit)| b)
    }

    /// Rows waiting in the channel.
    pub fn queued(&self) -> u64 {
        (self.capacity as u64).saturating_sub(self.room.available_permits() as u64)
    }
}

impl Drop for RowReceiver {
    fn drop(&mut self) {
        // Wake senders blocked on room that will never come.
        self.room.close();
        self.rx.close();
        while let Ok((batch, _permit)) = self.rx.try_recv() {
            if let Some(owner) = &self.owner {
                let rows = batch.rows() as u64;
                owner.received(rows);
                owner.dropped(DropReason::ComponentFailed, rows);
                // Not delivered: the source must be able to read it again
                // (a Kafka source does not commit past it).
                batch.acks.settle(crate::ack::AckStatus::Rejected);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::ack::Acks;
    use crate::batch::BatchMeta;

    fn batch(rows: u32) -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt32, false)]));
        let col = UInt32Array::from_iter_values(0..rows);
        let data = RecordBatch::try_new(schema, vec![Arc::new(col)]).unwrap();
        Batch::new(data, BatchMeta::new("t".into(), 0, 0), Acks::none())
    }

    #[tokio::test]
    async fn capacity_is_counted_in_rows() {
        let (tx, mut rx) = channel(100);
        tx.send(batch(60)).await.unwrap();
        assert_eq!(tx.queued(), 60);
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.send(batch(60))).await;
        assert!(blocked.is_err(), "a second 60-row batch must wait for room");
        assert_eq!(rx.recv().await.unwrap().rows(), 60);
        tx.send(batch(60)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().rows(), 60);
    }

    #[tokio::test]
    async fn an_oversized_batch_passes_alone_and_a_dropped_receiver_unblocks_senders() {
        let (tx, mut rx) = channel(10);
        tx.send(batch(500)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().rows(), 500);
        tx.send(batch(10)).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(batch(5)).await }
        });
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
    }
}
