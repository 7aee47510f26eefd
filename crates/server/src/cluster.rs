//! The glue between the engine and a JetStream cluster: the settings, this
//! node's name, and the scheduler's commands carried by the cluster's
//! command transport (JSON payloads).

use crate::config::JetStreamSection;
use hookrelay_jetstream::{Commands, JetStreamConfig};
use hookrelay_scheduler::{CommandServer, Remote, RemoteAnswer, RemoteCommand};
use hookrelay_store::{BoxFuture, ControlError, StoreError};
use std::{sync::Arc, time::Duration};

/// The backend's settings from `[jetstream]`, `[store]` and `[ingest]`.
pub(crate) fn settings(
    js: &JetStreamSection,
    retention: Duration,
    dedup_window: Duration,
) -> JetStreamConfig {
    JetStreamConfig {
        urls: js.urls.clone(),
        replicas: js.replicas,
        partitions: js.partitions,
        takeover: js.takeover,
        retention,
        // `ingest.dedup_window`: the idempotency keys live as long.
        dedup_window,
        namespace: js.namespace.clone(),
        election_wait: js.election_wait,
    }
}

/// This node's name in the leases: configured, or new at every start (a
/// restarted node is a new member; its old leases simply expire).
pub(crate) fn node_id(js: &JetStreamSection) -> String {
    if js.node_id.is_empty() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("node-{}", &id[..12])
    } else {
        js.node_id.clone()
    }
}

/// Sends commands for partitions driven elsewhere through the cluster.
pub(crate) struct ClusterRemote {
    pub(crate) commands: Commands,
    /// How long a caller waits for the owner's answer: past a takeover, so
    /// that a command whose owner died is answered by the next one.
    pub(crate) wait: Duration,
}

impl Remote for ClusterRemote {
    fn send(
        &self,
        partition: hookrelay_core::Partition,
        command: RemoteCommand,
    ) -> BoxFuture<'_, Result<RemoteAnswer, ControlError>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(&command)
                .map_err(|e| ControlError::Store(StoreError::Task(e.to_string())))?;
            let answer = self
                .commands
                .request(partition, payload.into(), self.wait)
                .await?;
            serde_json::from_slice(&answer).map_err(|e| {
                ControlError::Store(StoreError::unavailable_msg(format!(
                    "an unreadable answer from partition {partition}'s owner: {e}"
                )))
            })
        })
    }
}

/// Runs the commands other nodes send to the partitions driven here.
pub(crate) fn command_server(commands: Commands) -> CommandServer {
    Arc::new(move |partition, handle, stop| {
        let commands = commands.clone();
        Box::pin(async move {
            commands
                .serve(
                    partition,
                    |payload| {
                        let handle = handle.clone();
                        async move {
                            let answer = match serde_json::from_slice::<RemoteCommand>(&payload) {
                                Ok(command) => command.run(&handle).await,
                                Err(e) => {
                                    RemoteAnswer::Conflict(format!("unreadable command: {e}"))
                                }
                            };
                            serde_json::to_vec(&answer).unwrap_or_default().into()
                        }
                    },
                    stop,
                )
                .await;
        })
    })
}
