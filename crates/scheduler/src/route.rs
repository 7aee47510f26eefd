//! Commands to the partitions of a cluster. The API talks to one
//! [`Router`]: a command for a partition this node drives goes to its
//! scheduler's [`SchedulerHandle`]; any other goes through the backend's
//! [`Coordination`] (as JSON) to the partition's owner, which runs it with
//! [`RemoteCommand::run`] ([`command_handler`]).

use crate::SchedulerHandle;
use hookrelay_core::{partition_of, seq_partition, DeliveryKey, Partition, WebhookId};
use hookrelay_store::{BoxFuture, CommandHandler, ConfigStore, Coordination, StoreError};
use hookrelay_store::{ControlError, DeliveryControl};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

/// A command for a partition's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteCommand {
    /// [`DeliveryControl::retry`].
    Retry(DeliveryKey),
    /// [`DeliveryControl::replay`], for the owner's partition only.
    Replay {
        /// The webhook.
        webhook: WebhookId,
        /// From, unix ms.
        since_ms: i64,
        /// Until (exclusive), unix ms.
        until_ms: i64,
    },
}

/// What the owner answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteAnswer {
    /// Done; for a replay, how many deliveries it made.
    Done(u64),
    /// [`ControlError::NotFound`].
    NotFound(String),
    /// [`ControlError::Conflict`].
    Conflict(String),
    /// [`ControlError::OverShare`].
    OverShare(String),
    /// The owner could not run it now.
    Unavailable(String),
}

impl RemoteCommand {
    /// Runs the command on the scheduler of its partition.
    pub async fn run(self, local: &SchedulerHandle) -> RemoteAnswer {
        let result = match self {
            Self::Retry(key) => local.retry(key).await.map(|()| 0),
            Self::Replay {
                webhook,
                since_ms,
                until_ms,
            } => local.replay(webhook, since_ms, until_ms).await,
        };
        match result {
            Ok(n) => RemoteAnswer::Done(n),
            Err(ControlError::NotFound(m)) => RemoteAnswer::NotFound(m),
            Err(ControlError::Conflict(m)) => RemoteAnswer::Conflict(m),
            Err(ControlError::OverShare(m)) => RemoteAnswer::OverShare(m),
            Err(e) => RemoteAnswer::Unavailable(e.to_string()),
        }
    }
}

impl From<RemoteAnswer> for Result<u64, ControlError> {
    fn from(a: RemoteAnswer) -> Self {
        match a {
            RemoteAnswer::Done(n) => Ok(n),
            RemoteAnswer::NotFound(m) => Err(ControlError::NotFound(m)),
            RemoteAnswer::Conflict(m) => Err(ControlError::Conflict(m)),
            RemoteAnswer::OverShare(m) => Err(ControlError::OverShare(m)),
            RemoteAnswer::Unavailable(m) => Err(ControlError::Store(
                hookrelay_store::StoreError::unavailable_msg(m),
            )),
        }
    }
}

/// Runs the commands other nodes send to the partition of `local`.
pub fn command_handler(local: SchedulerHandle) -> CommandHandler {
    Arc::new(move |payload: Vec<u8>| {
        let local = local.clone();
        Box::pin(async move {
            let answer = match serde_json::from_slice::<RemoteCommand>(&payload) {
                Ok(command) => command.run(&local).await,
                Err(e) => RemoteAnswer::Conflict(format!("unreadable command: {e}")),
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    })
}

/// Sends `command` to the owner of `partition` through `remote`.
async fn send_remote(
    remote: &dyn Coordination,
    partition: Partition,
    command: &RemoteCommand,
) -> Result<RemoteAnswer, ControlError> {
    let payload = serde_json::to_vec(command)
        .map_err(|e| ControlError::Store(StoreError::Task(e.to_string())))?;
    let answer = remote.request(partition, payload).await?;
    serde_json::from_slice(&answer).map_err(|e| {
        ControlError::Store(StoreError::unavailable_msg(format!(
            "an unreadable answer from partition {partition}'s owner: {e}"
        )))
    })
}

/// The schedulers this node drives, by partition (kept by the runner).
pub type LocalHandles = Arc<RwLock<HashMap<Partition, SchedulerHandle>>>;

/// [`DeliveryControl`] over every partition of the log.
pub struct Router {
    partitions: u32,
    local: LocalHandles,
    remote: Option<Arc<dyn Coordination>>,
    config: Arc<dyn ConfigStore>,
}

impl Router {
    /// A router over `partitions` partitions; `remote` is `None` when this
    /// node drives them all (the embedded backend).
    pub fn new(
        partitions: u32,
        local: LocalHandles,
        remote: Option<Arc<dyn Coordination>>,
        config: Arc<dyn ConfigStore>,
    ) -> Self {
        Self {
            partitions,
            local,
            remote,
            config,
        }
    }

    fn local(&self, p: Partition) -> Option<SchedulerHandle> {
        self.local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&p)
            .cloned()
    }

    async fn send(&self, p: Partition, command: RemoteCommand) -> Result<u64, ControlError> {
        if let Some(h) = self.local(p) {
            return command.run(&h).await.into();
        }
        match &self.remote {
            Some(r) => send_remote(&**r, p, &command).await?.into(),
            None => Err(ControlError::Unavailable),
        }
    }
}

impl DeliveryControl for Router {
    fn circuit_open(&self, url: &str) -> bool {
        // Breakers are kept by each scheduler: open on any this node drives.
        self.local
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|h| h.circuit_open(url))
    }

    fn retry(&self, key: DeliveryKey) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move {
            self.send(seq_partition(key.seq), RemoteCommand::Retry(key))
                .await
                .map(|_| ())
        })
    }

    fn replay(
        &self,
        webhook: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'_, Result<u64, ControlError>> {
        Box::pin(async move {
            let w = self
                .config
                .webhook(&webhook)
                .ok_or_else(|| ControlError::NotFound("the webhook no longer exists".into()))?;
            // An app's webhook reaches one partition; an organization-wide
            // one, every partition.
            let parts: Vec<Partition> = match w.app() {
                Some(device) => vec![partition_of(device.as_str(), self.partitions)],
                None => (0..self.partitions).collect(),
            };
            // Every partition at once: each plans its own share.
            let counts = futures_util::future::try_join_all(parts.into_iter().map(|p| {
                let command = RemoteCommand::Replay {
                    webhook: webhook.clone(),
                    since_ms,
                    until_ms,
                };
                self.send(p, command)
            }))
            .await?;
            Ok(counts.into_iter().sum())
        })
    }
}
