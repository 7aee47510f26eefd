//! The event log's seam: chunks of events, one per append, what an append
//! answers, and the [`EventLog`] trait every backend implements.

use crate::{BoxFuture, StoreError};
use hookrelay_core::{Event, Partition, Seq};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::watch;

/// One group commit's worth of events; event `i` has sequence `first + i`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// When the chunk was appended (unix ms): the events' append time.
    pub appended_at_ms: i64,
    /// The events, in sequence order.
    pub events: Vec<Event>,
}

/// An event read back from the log with its position and append time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Sequence number.
    pub seq: Seq,
    /// Append time, unix ms.
    pub appended_at_ms: i64,
    /// The event.
    pub event: Arc<Event>,
}

/// The idempotency key of an event: a 128-bit hash of `(device_id, id)`.
pub type IdemKey = u128;

/// An idempotency key with the sequence it was appended at and when (ms).
pub type KeyedSeq = (IdemKey, Seq, i64);

/// Idempotency keys of one chunk, persisted beside it (one value per chunk).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkKeys {
    /// When the chunk was appended (unix ms).
    pub appended_at_ms: i64,
    /// `(key, offset in the chunk)` of the events that carried a producer id.
    pub keys: Vec<(IdemKey, u32)>,
}

/// What one chunk holds, kept beside it so that replay can find a device's
/// events without decoding chunks that hold none of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkIndex {
    /// When the chunk was appended (unix ms).
    pub appended_at_ms: i64,
    /// Events in the chunk.
    pub len: u32,
    /// Each device id in the chunk with its event types and their counts.
    pub devices: Vec<(String, Vec<(String, u32)>)>,
}

impl ChunkIndex {
    /// The index of a chunk of `events` appended at `appended_at_ms`.
    pub fn of(events: &[Event], appended_at_ms: i64) -> Self {
        let mut devices: Vec<(String, Vec<(String, u32)>)> = Vec::new();
        for e in events {
            let at = match devices.iter().position(|(d, _)| *d == e.device_id) {
                Some(i) => i,
                None => {
                    devices.push((e.device_id.clone(), Vec::new()));
                    devices.len() - 1
                }
            };
            let types = &mut devices[at].1;
            match types.iter_mut().find(|(t, _)| *t == e.event_type) {
                Some((_, n)) => *n += 1,
                None => types.push((e.event_type.clone(), 1)),
            }
        }
        Self {
            appended_at_ms,
            len: u32::try_from(events.len()).unwrap_or(u32::MAX),
            devices,
        }
    }

    /// The event types of `device` in this chunk, with counts.
    pub fn types_of(&self, device: &str) -> &[(String, u32)] {
        self.devices
            .iter()
            .find(|(d, _)| d == device)
            .map_or(&[], |(_, t)| t.as_slice())
    }
}

/// How one event of an append was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Appended at this sequence.
    New(Seq),
    /// Its idempotency key was already taken by the event at this sequence
    /// (appended through another node): nothing was appended for it.
    Duplicate(Seq),
}

/// The durable event log, split into [`EventLog::partitions`] partitions by
/// [`hookrelay_core::partition_of`] the device id. Sequences carry their
/// partition ([`hookrelay_core::seq_partition`]) and grow within it; they
/// need not be dense.
pub trait EventLog: Send + Sync + 'static {
    /// Number of partitions (fixed when the log is created).
    fn partitions(&self) -> u32;
    /// Appends `events` and resolves once they are durable, with one answer
    /// per event in order.
    ///
    /// The log owns idempotency: `keys` are the idempotency keys of the
    /// events that carried a producer id, by offset, distinct within a call.
    /// An event whose key was appended at or after `dedup_since_ms`, through
    /// this node or any other sharing the backend, is answered
    /// [`Appended::Duplicate`] with the sequence that took the key, and
    /// nothing is appended for it. A key appended before `dedup_since_ms` is
    /// free again (and may be forgotten): its event is appended anew.
    fn append(
        &self,
        events: Vec<Event>,
        keys: Vec<(IdemKey, u32)>,
        appended_at_ms: i64,
        dedup_since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>>;
    /// Up to `max` events of `partition` with sequence ≥ `from`, in order,
    /// no further than its durable head.
    fn read(
        &self,
        partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<LoggedEvent>, StoreError>>;
    /// The event at `seq`, if it is (still) in the log.
    fn event(&self, seq: Seq) -> BoxFuture<'_, Result<Option<LoggedEvent>, StoreError>>;
    /// Watches the highest durable sequence of `partition` (0 when empty).
    fn durable_head(&self, partition: Partition) -> watch::Receiver<Seq>;
    /// A sequence no event of `partition` made durable before the call
    /// exceeds, read from the backend now (a watch of
    /// [`EventLog::durable_head`] may not have caught up yet on a shared
    /// log). A scheduler taking a partition bounds its recovery with it.
    fn head_bound(&self, partition: Partition) -> BoxFuture<'_, Result<Seq, StoreError>> {
        let head = *self.durable_head(partition).borrow();
        Box::pin(async move { Ok(head) })
    }
    /// Index entries of up to `max` chunks of `partition` whose first
    /// sequence is ≥ `from`, in order, no further than the durable head.
    fn chunk_index(
        &self,
        partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<(Seq, ChunkIndex)>, StoreError>>;
    /// First sequence of the first chunk of `partition` appended at or after
    /// `at_ms` (append times never decrease along a partition).
    fn first_seq_at(
        &self,
        partition: Partition,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Seq>, StoreError>>;
}
