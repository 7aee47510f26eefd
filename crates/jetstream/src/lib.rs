//! The NATS JetStream backend of hookrelay: the store traits of
//! `hookrelay-store` on a JetStream cluster, so that several `hookrelay serve`
//! processes form one engine.
//!
//! # What it owns
//! - [`JsLog`](log::JsLog): the event log, one stream per partition, with
//!   the idempotency window in a key-value bucket shared by every node.
//! - [`JsDeliveries`]: delivery state (records with their due entries,
//!   attempts, cursors); each partition's due index in its owner's memory.
//! - [`Leases`]: which partitions this node drives, by leases with
//!   takeover, shared out over the live nodes.
//! - [`JsConfig`]: configuration, one message per owner in a stream every
//!   node follows into its in-memory mirror; writes serialised cluster-wide.
//!
//! # Names
//! Everything lives under a namespace (`hr` by default; see [`names`]):
//! streams `HR_EV_<p>` and `HR_CFG`, subjects `hr.ev.<p>` and `hr.cfg.…`, buckets `hr_idem`, `hr_meta`.
//! The number of partitions is written to `hr_meta` by the first node and
//! checked by every later one: it is fixed once the streams exist.
//!
//! # Durability
//! A write counts once JetStream acknowledged it, i.e. stored it on a quorum
//! of replicas. That is on disk only when the servers run with
//! `jetstream { sync_interval: always }`: the default (a sync every two
//! minutes) can lose acknowledged writes when servers die together.
//!
//! Must not: know about HTTP, gRPC, or delivery policy.

mod backend;
mod commands;
mod config;
mod deliveries;
mod failover;
mod follow;
mod lease_book;
mod leases;
mod log;
pub mod names;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backend::{open_node, ClusterNode};
pub use commands::Commands;
pub use config::{JsConfig, JsConfigLog};
pub use deliveries::JsDeliveries;
pub use leases::Leases;
pub use log::JsLog;

use async_nats::jetstream::{self, kv};
use names::Names;
use std::time::Duration;

/// Settings of the JetStream backend (`[jetstream]` in the server's config).
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// Server URLs (`nats://host:port`); the client fails over between them.
    pub urls: Vec<String>,
    /// Replicas of every stream and bucket (1, 3 or 5).
    pub replicas: usize,
    /// Partitions of the event log; fixed when the streams are created.
    pub partitions: u32,
    /// A dead node's partitions move to the others within this.
    pub takeover: Duration,
    /// How long events are kept (the streams' `max_age`).
    pub retention: Duration,
    /// The idempotency window (the key bucket's `max_age`).
    pub dedup_window: Duration,
    /// Prefix of every stream, subject and bucket name.
    pub namespace: String,
    /// How long a write waits for a stream whose leader died to elect
    /// another before it fails.
    pub election_wait: Duration,
    /// This node's name in the leases; empty for a new one at every start
    /// (a restarted node is then a new member, its old leases expire).
    pub node_id: String,
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// No server could be reached.
    #[error("cannot connect to NATS at {urls}: {message}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client's error.
        message: String,
    },
    /// A stream or bucket could not be created or checked.
    #[error("JetStream {what}: {message}")]
    Setup {
        /// Which stream or bucket.
        what: String,
        /// The server's or client's error.
        message: String,
    },
    /// The cluster's streams were made with other settings.
    #[error("{0}")]
    Mismatch(String),
}

/// A store error for JetStream being unreachable or refusing.
pub(crate) fn unavailable(
    what: &str,
    e: impl Into<hookrelay_store::BoxError>,
) -> hookrelay_store::StoreError {
    hookrelay_store::StoreError::unavailable(what, e)
}

/// The client and its JetStream context.
pub async fn connect(
    cfg: &JetStreamConfig,
) -> Result<(async_nats::Client, jetstream::Context), JetStreamError> {
    let addrs = cfg
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| JetStreamError::Connect {
            urls: cfg.urls.join(","),
            message: e.to_string(),
        })?;
    let client = async_nats::ConnectOptions::new()
        .name("hookrelay")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| JetStreamError::Connect {
            urls: cfg.urls.join(","),
            message: e.to_string(),
        })?;
    let js = jetstream::new(client.clone());
    Ok((client, js))
}

/// Opens the event log of the cluster `js` talks to, creating its streams
/// on first use and checking the partition count against the cluster's.
pub async fn open_log(
    client: &async_nats::Client,
    js: jetstream::Context,
    cfg: &JetStreamConfig,
) -> Result<JsLog, JetStreamError> {
    let names = Names::new(&cfg.namespace);
    check_partitions(&js, &names, cfg).await?;
    let max_payload = client.server_info().max_payload;
    JsLog::open(js, names, cfg, max_payload).await
}

/// Opens the configuration of the cluster `js` talks to: creates its stream
/// on first use, loads this node's mirror and keeps following it.
pub async fn open_config(
    js: jetstream::Context,
    cfg: &JetStreamConfig,
) -> Result<JsConfig, JetStreamError> {
    let log = JsConfigLog::open(
        js,
        Names::new(&cfg.namespace),
        cfg.replicas,
        failover::Failover::new(cfg.election_wait),
    )
    .await?;
    Ok(hookrelay_store::CheckedConfig::new(log))
}

/// Opens the delivery state of the cluster `js` talks to, creating its
/// streams on first use.
pub async fn open_deliveries(
    js: jetstream::Context,
    cfg: &JetStreamConfig,
) -> Result<JsDeliveries, JetStreamError> {
    let names = Names::new(&cfg.namespace);
    let meta = meta_bucket(&js, &names, cfg).await?;
    JsDeliveries::open(js, names, meta, cfg).await
}

/// This node's partition leases; `running` reports the partitions the
/// engine drives. Run them with [`Leases::run`].
pub async fn open_leases(
    js: &jetstream::Context,
    cfg: &JetStreamConfig,
    node: String,
    running: tokio::sync::watch::Receiver<std::collections::BTreeSet<hookrelay_core::Partition>>,
) -> Result<Leases, JetStreamError> {
    let names = Names::new(&cfg.namespace);
    Leases::open(
        js,
        names.lease_bucket(),
        cfg.replicas,
        node,
        cfg.partitions,
        cfg.takeover,
        running,
    )
    .await
}

/// The bucket of cluster-wide settings and cursors.
async fn meta_bucket(
    js: &jetstream::Context,
    names: &Names,
    cfg: &JetStreamConfig,
) -> Result<kv::Store, JetStreamError> {
    ensure_bucket(
        js,
        kv::Config {
            bucket: names.meta_bucket(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        },
    )
    .await
}

/// Writes the partition count on first use; refuses a different one later.
async fn check_partitions(
    js: &jetstream::Context,
    names: &Names,
    cfg: &JetStreamConfig,
) -> Result<(), JetStreamError> {
    if cfg.partitions == 0 || cfg.partitions > hookrelay_core::MAX_PARTITIONS {
        return Err(JetStreamError::Mismatch(format!(
            "jetstream.partitions must be 1..={}",
            hookrelay_core::MAX_PARTITIONS
        )));
    }
    let meta = meta_bucket(js, names, cfg).await?;
    let want = cfg.partitions.to_string();
    let setup = |e: &dyn std::fmt::Display| JetStreamError::Setup {
        what: names.meta_bucket(),
        message: e.to_string(),
    };
    match meta.create("partitions", want.clone().into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let have = meta
                .get("partitions")
                .await
                .map_err(|e| setup(&e))?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if have == want {
                Ok(())
            } else {
                Err(JetStreamError::Mismatch(format!(
                    "jetstream.partitions is {want} but the cluster's event log has {have}; \
                     the partition count is fixed when the streams are created"
                )))
            }
        }
        Err(e) => Err(setup(&e)),
    }
}

/// Creates a stream, or checks that the existing one can be used and brings
/// its retention and replicas to `config`.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, JetStreamError> {
    let name = config.name.clone();
    let setup = |e: &dyn std::fmt::Display| JetStreamError::Setup {
        what: format!("stream {name}"),
        message: e.to_string(),
    };
    match js.get_stream(&name).await {
        Ok(mut s) => {
            let have = s.info().await.map_err(|e| setup(&e))?.config.clone();
            if have.max_age != config.max_age || have.num_replicas != config.num_replicas {
                js.update_stream(jetstream::stream::Config {
                    max_age: config.max_age,
                    num_replicas: config.num_replicas,
                    ..have
                })
                .await
                .map_err(|e| setup(&e))?;
            }
            Ok(s)
        }
        Err(_) => js.create_stream(config).await.map_err(|e| setup(&e)),
    }
}

/// Creates a key-value bucket, or opens the existing one.
pub(crate) async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, JetStreamError> {
    let name = config.bucket.clone();
    match js.get_key_value(&name).await {
        Ok(b) => {
            // A bucket made with another lifetime of its keys (the dedup
            // window, say) takes the configured one: otherwise a changed
            // `ingest.dedup_window` would be silently ignored.
            let setup = |e: &dyn std::fmt::Display| JetStreamError::Setup {
                what: format!("bucket {name}"),
                message: e.to_string(),
            };
            let stream = format!("KV_{name}");
            let mut info = js
                .get_stream(&stream)
                .await
                .map_err(|e| setup(&e))?
                .info()
                .await
                .map_err(|e| setup(&e))?
                .config
                .clone();
            if info.max_age != config.max_age {
                info.max_age = config.max_age;
                // The server refuses a duplicate window past the age.
                if !config.max_age.is_zero() && info.duplicate_window > config.max_age {
                    info.duplicate_window = config.max_age;
                }
                js.update_stream(info).await.map_err(|e| setup(&e))?;
            }
            Ok(b)
        }
        Err(_) => js
            .create_key_value(config)
            .await
            .map_err(|e| JetStreamError::Setup {
                what: format!("bucket {name}"),
                message: e.to_string(),
            }),
    }
}
