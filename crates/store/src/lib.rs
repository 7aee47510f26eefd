//! Storage for hookrelay: the traits the engine is written against and the
//! embedded sled backend.
//!
//! # What it owns
//! - [`EventLog`]: the durable, append-only event log, in partitions.
//!   Appends are written as *chunks* (one per group commit, in segment files
//!   indexed by sled) and
//!   are durable when [`EventLog::append`] resolves;
//!   [`EventLog::durable_head`] tells readers how far a partition is durable.
//! - [`ConfigStore`]: organizations, apps, hashed tokens and webhooks, mirrored
//!   in memory so a change is visible to the very next fan-out and attempt.
//! - [`DeliveryStore`]: the state of deliveries that could not be settled by
//!   their first attempt, the due index, the attempt log and the dispatch cursor.
//!
//! It must not know about HTTP, gRPC or delivery policy.
//!
//! # On-disk layout (sled trees; integers big-endian so key order is numeric order)
//! | tree | key | value |
//! | --- | --- | --- |
//! | `meta` | `format_version`, `dispatch_cursor` | u8 / u64 |
//! | `events` | first seq of the chunk (u64) | where the chunk is in its segment file (or, in directories of format 1, the [`Chunk`] itself) |
//! | `event_keys` | first seq of the chunk | [`ChunkKeys`]: idempotency keys |
//! | `chunk_index` | first seq of the chunk | [`ChunkIndex`]: devices and event types |
//! | `state` | `r` ++ seq ++ generation ++ webhook id | `DeliveryRecord` |
//! | `state` | `d` ++ due ms (u64) ++ delivery key | 1 byte: 0 scheduled, 1 lease |
//! | `state` | `c` | how many `d` entries there are (u64), written with them |
//! | `attempts` | webhook id ++ 0 ++ seq ++ generation ++ attempt | `Attempt` |
//! | `orgs`, `apps`, `webhooks` | id | record |
//! | `bound` | device id | organization id (kept after the app is deleted) |
//! | `tokens` | SHA-256 of the token | scope |
//! | `device_tokens` | token id (`tok_…`) | [`DeviceToken`] |
//! | `ingest_keys` | SHA-256 of the key | [`IngestKey`] |
//!
//! The chunks' bytes are in `segments/<id>.seg` beside sled's files (see
//! `segments.rs`): sled holds on to what is written through it, and the
//! log is most of what is written.
//!
//! Values go through [`codec`]: one format-version byte, then bincode 2.
//!
//! # Recovery
//! An acknowledged event is in a chunk whose segment was fsynced; sled's
//! entries for the newest segment are rebuilt from its frames at open.
//! Delivery writes are not fsynced one by one (sled flushes them every
//! 200 ms): sled recovers a prefix of the write order, and the dispatch
//! cursor is written after the records it depends on, so after a crash the
//! scheduler re-dispatches every event past the surviving cursor.

mod backend;
pub mod codec;
mod config;
mod deliveries;
mod error;
mod health;
mod keys;
mod log;
mod retention;
mod segments;
mod sled_config;
mod webhook_record;

pub use backend::{Backend, Housekeeping};
#[cfg(any(test, feature = "testkit"))]
pub use config::conformance;
pub use config::{
    App, AppRecord, CheckedConfig, ConfigChange, ConfigLog, ConfigMirror, ConfigOwner, ConfigStore,
    ConfigVersion, DeviceToken, IngestKey, Org, OrgRecord, PrimaryChange, SharedMirror,
    Subscribers, TokenScope, WebhookChange,
};
pub use deliveries::{DeliveryStore, DeliveryWrite, DueEntry, DueKind, Recent};
pub use error::{failpoints_from_env, StoreError};
pub use health::{Reachability, StoreHealth};
pub use log::{Appended, Chunk, ChunkIndex, ChunkKeys, EventLog, IdemKey, KeyedSeq, LoggedEvent};
pub use retention::CompactStats;

use std::{future::Future, path::Path, pin::Pin, sync::Arc};

/// The data directory's format: 2 since the event log's chunks moved to
/// segment files, 3 since the due index's size is kept beside it, 4 since
/// its size per webhook is too (a build that did not keep them up to date
/// must not write the directory again). Directories of formats 1 to 3 are
/// read and upgraded.
const DIR_FORMAT: u8 = 4;

/// sled's page cache unless configured: 24 MiB. Each MiB of it costs about
/// three of RSS once sled holds much state: a backlog of 1,000,000 pending
/// deliveries held 346 MiB with 64 MiB of cache, 260 with 32, 227 with 24
/// and 190 with 16, whose drain was a seventh slower (docs/benchmarks.md).
pub const DEFAULT_CACHE_BYTES: u64 = 24 * 1024 * 1024;

/// The directory of the event log's segment files, inside the data directory.
const SEGMENTS_DIR: &str = "segments";

/// A boxed future, for the async methods of the object-safe store traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An open data directory: every store of the embedded backend.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The event log.
    pub log: Arc<log::SledLog>,
    /// Configuration.
    pub config: Arc<sled_config::SledConfig>,
    /// Delivery state.
    pub deliveries: Arc<deliveries::SledDeliveries>,
    retention: Arc<retention::Retention>,
    /// Whether writes can be taken (reserve, sticky I/O failure).
    pub health: StoreHealth,
}

impl Store {
    /// Opens (or creates) the data directory at `path`, with no free-space
    /// reserve and the default cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, 0, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the data directory at `path`; appends are refused
    /// while less than `min_free_bytes` are free on its filesystem, and
    /// sled's page cache is `cache_bytes`.
    ///
    /// Fails with [`StoreError::UnsupportedFormat`] when the directory was
    /// written by a newer, unknown format.
    pub fn open_with(
        path: &Path,
        min_free_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: e,
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get(keys::META_FORMAT)?.as_deref() {
            Some([DIR_FORMAT]) => {}
            // Format 1 holds its chunks inline; they are read as they are
            // and go with retention. Format 2 has no count of the due index;
            // it is counted once when first needed. Marking the directory
            // keeps older builds from misreading it or letting the count go
            // stale. Format 3 has no count per webhook: likewise counted
            // once when first needed.
            None | Some([1..=3]) => {
                meta.insert(keys::META_FORMAT, &[DIR_FORMAT])?;
                db.flush()?;
            }
            Some(v) => {
                return Err(StoreError::UnsupportedFormat {
                    found: v.first().copied().unwrap_or(0),
                    supported: DIR_FORMAT,
                })
            }
        }
        let health = StoreHealth::new(path.to_owned(), min_free_bytes);
        let log = Arc::new(log::SledLog::open(
            &db,
            &path.join(SEGMENTS_DIR),
            health.clone(),
        )?);
        let config = Arc::new(config::CheckedConfig::new(
            sled_config::SledConfigLog::open(&db, health.clone())?,
        ));
        let deliveries = Arc::new(deliveries::SledDeliveries::open(&db, meta, health.clone())?);
        let retention = Arc::new(retention::Retention::new(log.first_seq()?));
        Ok(Self {
            db,
            log,
            config,
            deliveries,
            retention,
            health,
        })
    }

    /// Size of the data directory on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.log.segments_size()
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        fail::fail_point!("store::flush", |_| Err(error::injected()));
        self.health
            .note(self.db.flush_async().await.map_err(StoreError::from))?;
        Ok(())
    }
}

/// Opens `dir` again in a test that dropped its [`Store`] just before:
/// sled's background threads let go of the directory's lock a moment after
/// the last handle, so an open at once can fail with `WouldBlock`.
#[cfg(test)]
pub(crate) fn reopen(dir: &Path) -> Store {
    for _ in 0..100 {
        match Store::open(dir) {
            Err(StoreError::Open { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.expect("reopen"),
        }
    }
    Store::open(dir).expect("reopen")
}
