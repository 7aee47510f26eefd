//! A node's whole view of the cluster as one [`Backend`]: the stores behind
//! the engine's traits, and its coordination (the partition leases and the
//! command transport).

use crate::{
    commands::Commands, names::Names, open_config, open_deliveries, open_leases, open_log,
    JetStreamConfig, JetStreamError,
};
use async_nats::jetstream;
use bytes::Bytes;
use hookrelay_core::Partition;
use hookrelay_store::{
    Backend, BoxFuture, CommandHandler, CompactStats, Coordination, Housekeeping, Membership,
    PartitionSet, StoreError, StoreHealth,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What `hookrelay serve` runs on with `backend = "jetstream"`.
pub struct ClusterNode {
    /// The stores and the coordination.
    pub backend: Backend,
    /// This node's name in the leases.
    pub node: String,
}

/// Setup attempts before a node gives up starting.
const SETUP_ATTEMPTS: u32 = 5;

/// Connects and opens every store, creating streams and buckets on first
/// use. JetStream can refuse setup calls for a moment (a stream electing
/// its leader, a busy server): those are tried again, with backoff, up to
/// five times; a mismatch of settings is not.
pub async fn open_node(cfg: &JetStreamConfig) -> Result<ClusterNode, JetStreamError> {
    let mut attempt = 1;
    loop {
        match open_once(cfg).await {
            Err(JetStreamError::Setup { what, message }) if attempt < SETUP_ATTEMPTS => {
                tracing::warn!(%what, %message, attempt, "JetStream setup failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn open_once(cfg: &JetStreamConfig) -> Result<ClusterNode, JetStreamError> {
    let (client, js) = crate::connect(cfg).await?;
    let log = open_log(&client, js.clone(), cfg).await?;
    let config = open_config(js.clone(), cfg).await?;
    let deliveries = open_deliveries(js.clone(), cfg).await?;
    let commands = Commands::open(
        client.clone(),
        js.clone(),
        Names::new(&cfg.namespace),
        cfg.replicas,
        crate::failover::Failover::new(cfg.election_wait),
    )
    .await?;
    let probe = client.clone();
    let health = StoreHealth::remote(Arc::new(move || match probe.connection_state() {
        async_nats::connection::State::Connected => None,
        other => Some(format!("JetStream unreachable ({other})")),
    }));
    let node = if cfg.node_id.is_empty() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("node-{}", &id[..12])
    } else {
        cfg.node_id.clone()
    };
    let coordination = JsCoordination {
        js: js.clone(),
        cfg: cfg.clone(),
        node: node.clone(),
        commands,
    };
    Ok(ClusterNode {
        backend: Backend {
            log: Arc::new(log),
            config: Arc::new(config),
            deliveries: Arc::new(deliveries),
            housekeeping: Arc::new(Upkeep { js: js.clone() }),
            health,
            coordination: Some(Arc::new(coordination)),
        },
        node,
    })
}

/// The nodes of one namespace: leases in a bucket, commands in a stream
/// per partition (see the crate docs).
struct JsCoordination {
    js: jetstream::Context,
    cfg: JetStreamConfig,
    node: String,
    commands: Commands,
}

impl Coordination for JsCoordination {
    fn node(&self) -> &str {
        &self.node
    }

    fn join(
        &self,
        running: watch::Receiver<PartitionSet>,
    ) -> BoxFuture<'_, Result<Membership, StoreError>> {
        Box::pin(async move {
            let leases = open_leases(&self.js, &self.cfg, self.node.clone(), running)
                .await
                .map_err(|e| StoreError::unavailable("opening the partition leases", e))?;
            Ok(Membership {
                owned: leases.owned(),
                keep: Box::new(move |stop: CancellationToken| Box::pin(leases.run(stop))),
            })
        })
    }

    fn command_wait(&self) -> Duration {
        self.cfg.takeover * 2
    }

    fn request(
        &self,
        partition: Partition,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            self.commands
                .request(partition, Bytes::from(payload), self.command_wait())
                .await
                .map(|b| b.to_vec())
        })
    }

    fn serve(
        &self,
        partition: Partition,
        handler: CommandHandler,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let commands = self.commands.clone();
        Box::pin(async move {
            commands
                .serve(
                    partition,
                    |payload: Bytes| {
                        let handler = handler.clone();
                        async move { Bytes::from(handler(payload.to_vec()).await) }
                    },
                    stop,
                )
                .await;
        })
    }
}

/// Housekeeping on JetStream: the streams expire old messages themselves
/// (`max_age`), and every write is on a quorum when it returns.
struct Upkeep {
    js: jetstream::Context,
}

impl Housekeeping for Upkeep {
    fn compact(&self, _before_ms: i64) -> BoxFuture<'_, Result<CompactStats, StoreError>> {
        Box::pin(async { Ok(CompactStats::default()) })
    }

    fn size_on_disk(&self) -> BoxFuture<'_, u64> {
        // The account's JetStream storage: what the streams hold on each
        // server, replicas not counted.
        Box::pin(async move { self.js.query_account().await.map_or(0, |a| a.storage) })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}
