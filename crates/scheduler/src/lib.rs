//! Fan-out and retry scheduling for hookrelay.
//!
//! The [`Scheduler`] tails the event log from the persisted dispatch cursor,
//! matches each event against its device's active webhooks and hands first
//! attempts to the workers straight from memory, inside a bounded window.
//! The happy path writes no per-delivery state: only the attempt log entry.
//! A delivery gets a state record (and a due-index entry) only when an
//! attempt fails, or when it is still unsettled as the window must move on
//! ("spill"). The cursor advances over events all of whose deliveries are
//! settled or recorded, so after a crash the events past it are dispatched
//! again with the same delivery ids (invariant 2), and recorded deliveries
//! come back through the due index, leases included (invariant 3).
//!
//! The log is split in partitions; a scheduler drives one. [`Partitions`]
//! runs the schedulers of the partitions a node drives (all of them with
//! the embedded backend; its leased share on a cluster) over one worker
//! pool. The API asks for retries, replays and breaker state through
//! [`DeliveryControl`]: [`SchedulerHandle`] for one partition, [`Router`]
//! for all of them (sending commands for partitions driven elsewhere to
//! their owner through the backend's
//! [`Coordination`](hookrelay_store::Coordination)).
//!
//! Must not: perform HTTP, or talk to ingest except through the cursor watch.

mod config;
mod lanes;
mod limit;
mod node;
mod route;
mod scheduler;
mod window;

pub use config::SchedulerConfig;

pub use lanes::{HostConcurrency, BUSIEST_HOSTS};
pub use node::{FanoutLag, Partitions};
pub use route::{command_handler, LocalHandles, RemoteAnswer, RemoteCommand, Router};
pub use scheduler::{Scheduler, SchedulerChannels, SchedulerHandle};
#[cfg(test)]
mod tests;
