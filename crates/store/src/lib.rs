//! The storage seam of hookrelay: the traits the engine is written against,
//! whatever the backend, and what every backend shares. No backend lives
//! here; each is a crate of its own (`hookrelay-sled`, `hookrelay-jetstream`)
//! that implements these traits and builds a [`Backend`].
//!
//! # What it owns
//! - [`EventLog`]: the durable, append-only event log, in partitions.
//!   Appends are written as [`Chunk`]s (one per group commit) and are durable
//!   when [`EventLog::append`] resolves; [`EventLog::durable_head`] tells
//!   readers how far a partition is durable. The log owns idempotency
//!   (`ingest.dedup_window`): [`RecentKeys`] is the window of a log with one
//!   writer.
//! - [`ConfigStore`]: organizations, apps, hashed tokens and webhooks, mirrored
//!   in memory so a change is visible to the very next fan-out and attempt.
//!   [`CheckedConfig`] enforces the rules (uniqueness, limits, ownership) once
//!   for every backend, over a backend's [`ConfigLog`].
//! - [`DeliveryStore`]: the state of deliveries that could not be settled by
//!   their first attempt, the due index, the attempt log and the dispatch
//!   cursor.
//! - [`Housekeeping`]: retention, size, the final flush.
//! - [`DeliveryControl`]: what the API may ask of the scheduler (retry,
//!   replay), which alone writes delivery state.
//! - [`Coordination`]: for a backend several nodes share, which partitions
//!   this node drives and the transport of commands to another's.
//! - [`StoreHealth`]: whether the backend can take writes (readiness).
//! - [`StoreError`]: one error for every backend; a backend's own error is
//!   its boxed source.
//! - [`codec`]: the one encoding of stored values (a version byte, then
//!   bincode 2).
//! - `conformance` (feature `testkit`): the checks every backend's stores
//!   must pass, run by each backend crate's tests.
//!
//! It must not know about HTTP, gRPC, delivery policy, or any backend.

mod backend;
pub mod codec;
mod config;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod control;
mod coordination;
mod deliveries;
mod error;
mod health;
mod idempotency;
mod log;

pub use backend::{Backend, CompactStats, Housekeeping};
pub use config::{
    App, AppRecord, CheckedConfig, ConfigChange, ConfigLog, ConfigMirror, ConfigOwner, ConfigStore,
    ConfigVersion, DeviceToken, IngestKey, Org, OrgRecord, PrimaryChange, SharedMirror,
    Subscribers, TokenScope, WebhookChange,
};
pub use control::{ControlError, DeliveryControl};
pub use coordination::{CommandHandler, Coordination, Membership, PartitionSet};
pub use deliveries::{DeliveryStore, DeliveryWrite, DueEntry, DueKind, Recent};
pub use error::{BoxError, StoreError};
pub use health::{Reachability, StoreHealth};
pub use idempotency::{Admitted, KeyHasher, KeyMap, RecentKeys};
pub use log::{Appended, Chunk, ChunkIndex, ChunkKeys, EventLog, IdemKey, KeyedSeq, LoggedEvent};

use std::{future::Future, pin::Pin};

/// A boxed future, for the async methods of the object-safe store traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
