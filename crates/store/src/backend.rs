//! What the server runs on, whatever the storage backend: the three engine
//! stores as trait objects, the housekeeping only the backend knows how to
//! do, and the coordination of the nodes that share it. The server builds a
//! [`Backend`] and never names a backend's types.

use crate::{
    BoxFuture, ConfigStore, Coordination, DeliveryStore, EventLog, StoreError, StoreHealth,
};
use hookrelay_core::Seq;
use std::sync::Arc;

/// What one compaction pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Log chunks removed.
    pub chunks: usize,
    /// Events in them.
    pub events: u64,
    /// Terminal delivery records removed.
    pub records: usize,
    /// Attempt-log entries removed.
    pub attempts: usize,
    /// Highest sequence no longer in the log (0: nothing removed ever).
    pub horizon: Seq,
}

/// Storage upkeep the server schedules: retention, size, the final flush.
pub trait Housekeeping: Send + Sync + 'static {
    /// One bounded retention pass: removes settled events appended before
    /// `before_ms`, with their delivery state and attempts.
    fn compact(&self, before_ms: i64) -> BoxFuture<'_, Result<CompactStats, StoreError>>;
    /// Bytes the backend holds on disk (for the `store_bytes` gauge).
    fn size_on_disk(&self) -> BoxFuture<'_, u64>;
    /// Makes everything written so far durable (before the process exits).
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Every store of one backend.
#[derive(Clone)]
pub struct Backend {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// Configuration.
    pub config: Arc<dyn ConfigStore>,
    /// Delivery state.
    pub deliveries: Arc<dyn DeliveryStore>,
    /// Retention, size and flushing.
    pub housekeeping: Arc<dyn Housekeeping>,
    /// Whether writes can be taken.
    pub health: StoreHealth,
    /// How the nodes sharing the backend split the partitions and reach
    /// each other's; `None` for a backend one process owns.
    pub coordination: Option<Arc<dyn Coordination>>,
}
