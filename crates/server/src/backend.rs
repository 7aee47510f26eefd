//! Opening the backend `[store] backend` names: the one place in the
//! server that names one. Everything after works on the [`Backend`] it
//! returns (the stores, the housekeeping and, on a shared backend, the
//! coordination of the nodes). A third backend is one crate that builds a
//! `Backend` and one arm here.

use crate::config::{Config, StoreBackend};
use anyhow::Context;
use hookrelay_store::Backend;
use tracing::info;

/// Opens the stores the configuration names (creating them on first use).
pub(crate) async fn open_backend(config: &Config) -> anyhow::Result<Backend> {
    match config.store.backend {
        StoreBackend::Sled => {
            let path = config.store.path.clone();
            let reserve = config.store.min_free_bytes;
            let cache = config.store.cache_bytes;
            let store = tokio::task::spawn_blocking(move || {
                hookrelay_sled::Store::open_with(&path, reserve, cache)
            })
            .await
            .context("store open task failed")?
            .with_context(|| format!("cannot open the store at {}", config.store.path.display()))?;
            Ok(store.backend())
        }
        StoreBackend::Jetstream => {
            let cfg = jetstream_settings(config);
            let node = hookrelay_jetstream::open_node(&cfg)
                .await
                .context("cannot open the JetStream backend")?;
            info!(node = %node.node, partitions = cfg.partitions, "joined the JetStream cluster");
            Ok(node.backend)
        }
    }
}

/// The JetStream backend's settings from `[jetstream]`, `[store]` and
/// `[ingest]`.
fn jetstream_settings(config: &Config) -> hookrelay_jetstream::JetStreamConfig {
    let js = &config.jetstream;
    hookrelay_jetstream::JetStreamConfig {
        urls: js.urls.clone(),
        replicas: js.replicas,
        partitions: js.partitions,
        takeover: js.takeover,
        retention: config.store.retention,
        // `ingest.dedup_window`: the idempotency keys live as long.
        dedup_window: config.ingest.dedup_window,
        namespace: js.namespace.clone(),
        election_wait: js.election_wait,
        node_id: js.node_id.clone(),
    }
}
