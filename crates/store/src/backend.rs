//! What the server runs on, whatever the storage backend: the three engine
//! stores as trait objects, and the housekeeping only the backend knows how
//! to do. The server builds a [`Backend`] and never names a backend's types.

use crate::{
    BoxFuture, CompactStats, ConfigStore, DeliveryStore, EventLog, StoreError, StoreHealth,
};
use std::sync::Arc;

/// Chunks of the log a compaction pass removes at most.
const MAX_CHUNKS_PER_PASS: usize = 256;
/// Attempt entries a compaction pass sweeps at most.
const MAX_ATTEMPTS_PER_PASS: usize = 100_000;

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
}

impl crate::Store {
    /// This data directory as a [`Backend`].
    pub fn backend(self) -> Backend {
        Backend {
            log: self.log.clone(),
            config: self.config.clone(),
            deliveries: self.deliveries.clone(),
            health: self.health.clone(),
            housekeeping: Arc::new(self),
        }
    }
}

impl Housekeeping for crate::Store {
    fn compact(&self, before_ms: i64) -> BoxFuture<'_, Result<CompactStats, StoreError>> {
        let s = self.clone();
        Box::pin(async move {
            // sled's tree walks block: off the runtime threads.
            tokio::task::spawn_blocking(move || {
                s.compact(before_ms, MAX_CHUNKS_PER_PASS, MAX_ATTEMPTS_PER_PASS)
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }

    fn size_on_disk(&self) -> BoxFuture<'_, u64> {
        let s = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || crate::Store::size_on_disk(&s))
                .await
                .unwrap_or(0)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(crate::Store::flush(self))
    }
}
