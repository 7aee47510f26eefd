//! A node's whole view of the cluster: the stores behind the engine's
//! traits, the command transport and the connection.

use crate::{
    commands::Commands, names::Names, open_config, open_deliveries, open_log, JetStreamConfig,
    JetStreamError,
};
use async_nats::jetstream;
use hookrelay_store::{Backend, BoxFuture, CompactStats, Housekeeping, StoreError, StoreHealth};
use std::sync::Arc;

/// What `hookrelay serve` runs on with `backend = "jetstream"`.
pub struct ClusterNode {
    /// The stores.
    pub backend: Backend,
    /// Commands to other partitions' owners.
    pub commands: Commands,
    /// The JetStream context (for the leases).
    pub js: jetstream::Context,
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
    Ok(ClusterNode {
        backend: Backend {
            log: Arc::new(log),
            config: Arc::new(config),
            deliveries: Arc::new(deliveries),
            housekeeping: Arc::new(Upkeep { js: js.clone() }),
            health,
        },
        commands,
        js,
    })
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
