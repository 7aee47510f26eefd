//! The delivery state's seam: records for deliveries that outlived their
//! first attempt, the due index, the attempt log and the dispatch cursor, as
//! the scheduler writes them in batches ([`DeliveryWrite`]) and the API reads
//! them back. A backend must apply a batch so that a crash never leaves a
//! cursor ahead of the records it depends on (see [`DeliveryStore::apply`]).

use crate::{BoxFuture, StoreError};
use hookrelay_core::{Attempt, DeliveryKey, DeliveryRecord, Partition, Seq, WebhookId};
use std::{collections::HashMap, ops::RangeInclusive};

/// Why a due entry exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DueKind {
    /// A retry scheduled by the backoff policy.
    Scheduled,
    /// An attempt in flight: due again when the lease expires (after a crash
    /// or a hang), removed when the attempt reports.
    Lease,
}

/// One entry of the due index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueEntry {
    /// When the delivery is due, unix ms.
    pub at_ms: i64,
    /// Which delivery.
    pub key: DeliveryKey,
    /// Why.
    pub kind: DueKind,
}

/// One change to delivery state.
#[derive(Clone, Debug)]
pub enum DeliveryWrite {
    /// Creates or replaces a delivery's record.
    Record(DeliveryKey, DeliveryRecord),
    /// Adds a due entry.
    Due(DueEntry),
    /// Removes the due entry at `at_ms` for `key`.
    Undue(i64, DeliveryKey),
    /// Appends an attempt to the log.
    Attempt(DeliveryKey, Attempt),
    /// Moves the dispatch cursor: every delivery of every event ≤ it is
    /// settled or has a record.
    Cursor(Seq),
}

impl DeliveryWrite {
    /// A change to a record or the due index (these are written together,
    /// atomically), as opposed to an attempt or the cursor.
    pub fn is_state(&self) -> bool {
        matches!(self, Self::Record(..) | Self::Due(_) | Self::Undue(..))
    }
}

/// Delivery-state storage. Each partition has one writer at a time (the
/// node that owns it); the due index and the cursor are per partition.
pub trait DeliveryStore: Send + Sync + 'static {
    /// Applies writes in order (records, due, attempts, cursor). Not durable
    /// one by one, but a backend never keeps a cursor without the records
    /// written before it.
    fn apply<'a>(&'a self, writes: &'a [DeliveryWrite]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// A delivery's record, if it has one.
    fn record<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Option<DeliveryRecord>, StoreError>>;
    /// Up to `max` due entries of `partition` with `at_ms ≤ until_ms`,
    /// earliest first.
    fn due(
        &self,
        partition: Partition,
        until_ms: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<DueEntry>, StoreError>>;
    /// What a partition's scheduler needs of its due index when it starts:
    /// how many entries it holds, and the leases among the entries due in
    /// `leases_in` (nothing of the partition is in flight on the node that
    /// just took it, so every lease is stale; those due before the window
    /// are due now anyway, and none is due after it). The sled backend
    /// keeps the count, so this reads only the window, not the index.
    fn recovery_scan(
        &self,
        partition: Partition,
        leases_in: RangeInclusive<i64>,
    ) -> BoxFuture<'_, Result<(usize, Vec<DueEntry>), StoreError>>;
    /// The due index's entries of `partition` counted per webhook (the
    /// tenants' pending shares start from it): kept beside the index by
    /// the sled backend, counted in memory by JetStream's. Asked after
    /// [`Self::recovery_scan`].
    fn due_by_webhook(
        &self,
        partition: Partition,
    ) -> BoxFuture<'_, Result<HashMap<WebhookId, u64>, StoreError>>;
    /// The attempt log of one delivery, in order.
    fn attempts<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Vec<Attempt>, StoreError>>;
    /// A webhook's deliveries that have attempts or a record, in sequence
    /// order, after `(seq, generation)` when given (cursor pagination).
    fn webhook_deliveries<'a>(
        &'a self,
        webhook: &'a WebhookId,
        after: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>>;
    /// A webhook's attempts that started at or after `since_ms`, for its
    /// statistics: at most `max`, the newest when there are more (the
    /// answer then says it stopped short). In no promised order.
    fn recent_attempts<'a>(
        &'a self,
        webhook: &'a WebhookId,
        since_ms: i64,
        max: usize,
    ) -> BoxFuture<'a, Result<Recent, StoreError>>;
    /// The same deliveries newest first: those before `(seq, generation)`
    /// when given, in descending sequence order.
    fn webhook_deliveries_newest<'a>(
        &'a self,
        webhook: &'a WebhookId,
        before: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>>;
    /// The dispatch cursor of `partition` (0 before anything was dispatched).
    fn cursor(&self, partition: Partition) -> BoxFuture<'_, Result<Seq, StoreError>>;
    /// The scheduler of `partition` on this node has stopped (the partition
    /// moved away or the node is stopping): a backend that holds a
    /// partition's state in memory while it drives it drops it, since
    /// another node writes it from now on.
    fn release(&self, _partition: Partition) {}
}

/// What [`DeliveryStore::recent_attempts`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recent {
    /// The attempts found.
    pub attempts: Vec<Attempt>,
    /// The search stopped at its bound: older attempts of the window may
    /// exist that are not in `attempts`.
    pub truncated: bool,
}
