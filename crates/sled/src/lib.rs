//! The embedded backend of hookrelay: one data directory, one partition.
//!
//! # What it owns
//! - the event log ([`hookrelay_store::EventLog`]): appends are written as
//!   chunks (one per group commit) in segment files indexed by sled, and are
//!   durable when the append resolves;
//! - configuration ([`hookrelay_store::ConfigStore`]) in sled trees, behind
//!   the seam's [`hookrelay_store::CheckedConfig`];
//! - delivery state ([`hookrelay_store::DeliveryStore`]): records, the due
//!   index, the attempt log and the dispatch cursor, in sled trees;
//! - retention, size and flushing ([`hookrelay_store::Housekeeping`]).
//!
//! [`Store::open_with`] opens a directory and [`Store::backend`] hands it to
//! the engine as a [`Backend`]; nothing above this crate names its types.
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

mod deliveries;
mod health;
mod keys;
mod log;
mod retention;
mod segments;
mod sled_config;
mod webhook_record;

pub(crate) use health::{Health, OrIo};
use hookrelay_store::{Backend, BoxFuture, CompactStats, Housekeeping, StoreError, StoreHealth};
use std::{path::Path, sync::Arc};

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

/// Chunks of the log a compaction pass removes at most.
const MAX_CHUNKS_PER_PASS: usize = 256;
/// Attempt entries a compaction pass sweeps at most.
const MAX_ATTEMPTS_PER_PASS: usize = 100_000;

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
    health: Health,
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
                source: e.into(),
            })?;
        let meta = db.open_tree("meta").io()?;
        match meta.get(keys::META_FORMAT).io()?.as_deref() {
            Some([DIR_FORMAT]) => {}
            // Format 1 holds its chunks inline; they are read as they are
            // and go with retention. Format 2 has no count of the due index;
            // it is counted once when first needed. Marking the directory
            // keeps older builds from misreading it or letting the count go
            // stale. Format 3 has no count per webhook: likewise counted
            // once when first needed.
            None | Some([1..=3]) => {
                meta.insert(keys::META_FORMAT, &[DIR_FORMAT]).io()?;
                db.flush().io()?;
            }
            Some(v) => {
                return Err(StoreError::UnsupportedFormat {
                    found: v.first().copied().unwrap_or(0),
                    supported: DIR_FORMAT,
                })
            }
        }
        let health = Health::new(path.to_owned(), min_free_bytes);
        let log = Arc::new(log::SledLog::open(
            &db,
            &path.join(SEGMENTS_DIR),
            health.clone(),
        )?);
        let config = Arc::new(hookrelay_store::CheckedConfig::new(
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
        fail::fail_point!("store::flush", |_| Err(injected()));
        self.health.note(flush_db(&self.db).await)?;
        Ok(())
    }

    /// Whether the directory can take writes (reserve, sticky I/O failure).
    pub fn health(&self) -> StoreHealth {
        self.health.shared().clone()
    }

    /// This data directory as a [`Backend`].
    pub fn backend(self) -> Backend {
        Backend {
            log: self.log.clone(),
            config: self.config.clone(),
            deliveries: self.deliveries.clone(),
            health: self.health(),
            housekeeping: Arc::new(self),
            // One process owns the directory: it drives partition 0.
            coordination: None,
        }
    }
}

impl Housekeeping for Store {
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
            tokio::task::spawn_blocking(move || Store::size_on_disk(&s))
                .await
                .unwrap_or(0)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::flush(self))
    }
}

/// The error an injected store fault returns (tests with `failpoints`).
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn injected() -> StoreError {
    StoreError::io(std::io::Error::other("injected store fault"))
}

/// Reads fail-point configuration from `FAILPOINTS` (builds with the
/// `failpoints` feature only; elsewhere a no-op). Malformed configuration is
/// an error, never a panic.
pub fn failpoints_from_env() -> Result<(), String> {
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, actions) = item
                .split_once('=')
                .ok_or_else(|| format!("FAILPOINTS: {item:?} is not name=actions"))?;
            fail::cfg(name, actions)?;
        }
    }
    Ok(())
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

/// Flushes `db` on tokio's blocking pool. Not `sled::Db::flush_async`: that
/// runs on sled's own threads, which tokio cannot see, so a runtime whose
/// time is paused (the scheduler's tests) would take itself for idle and
/// jump its clock past every deadline while a flush is under way.
pub(crate) async fn flush_db(db: &sled::Db) -> Result<(), StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .map_err(StoreError::io)?
        .map(drop)
        .io()
}
