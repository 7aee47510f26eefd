//! How nodes sharing a backend split the work: which partitions this node
//! drives, and how a command reaches the node that drives another one. A
//! backend one process owns has no [`Coordination`]: that process drives
//! every partition (sled: partition 0) and runs every command itself.

use crate::{BoxFuture, StoreError};
use hookrelay_core::Partition;
use std::{collections::BTreeSet, sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Partitions, as a set.
pub type PartitionSet = BTreeSet<Partition>;

/// Answers one command's payload with the answer's.
pub type CommandHandler = Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// This node's part once it joined the others.
pub struct Membership {
    /// The partitions this node may drive, as they change.
    pub owned: watch::Receiver<PartitionSet>,
    /// Keeps this node's share until the token is cancelled, then gives it
    /// up (each partition once the engine stopped driving it). The engine
    /// runs it as a task of its own; its end before the token is a failure.
    pub keep: Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>,
}

/// Membership and the command transport of a backend several nodes share.
pub trait Coordination: Send + Sync + 'static {
    /// This node's name among the others.
    fn node(&self) -> &str;
    /// Joins the nodes; `running` reports the partitions the engine drives
    /// now (a partition given up is released only once it stopped).
    fn join(
        &self,
        running: watch::Receiver<PartitionSet>,
    ) -> BoxFuture<'_, Result<Membership, StoreError>>;
    /// How long a command waits for the answer of a partition's owner:
    /// past a takeover, so a command whose owner died is answered by the
    /// next one.
    fn command_wait(&self) -> Duration;
    /// Sends `payload` to whoever drives `partition` and waits up to
    /// [`Coordination::command_wait`] for the answer. A command not
    /// answered in time is kept, and runs once the partition has an owner.
    fn request(
        &self,
        partition: Partition,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StoreError>>;
    /// Answers the commands sent to `partition` with `handler` until `stop`.
    fn serve(
        &self,
        partition: Partition,
        handler: CommandHandler,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}
