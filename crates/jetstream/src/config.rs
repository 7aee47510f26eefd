//! Configuration on JetStream: the records of each owner (an organization,
//! or a device id with its app, tokens and webhooks) are one message of the
//! stream `<NS>_CFG`, on the subject `<ns>.cfg.org.<id>` or
//! `<ns>.cfg.app.<id>` (ids hex-encoded), with `max_msgs_per_subject = 1`:
//! the stream holds exactly the current records.
//!
//! Every node follows the stream (see `crate::follow`) into its
//! [`SharedMirror`], so a change made on one node reaches the others as fast
//! as JetStream delivers it (milliseconds). Writes are serialised across the
//! cluster: a commit is published with `Nats-Expected-Last-Sequence` set to
//! the stream sequence its checks ran against, so the servers refuse it when
//! another node wrote in between, and [`CheckedConfig`] checks again on the
//! newer mirror. A commit returns once this node's mirror shows it.
//! A commit resent after a lost answer carries its first copy's message
//! id, and the stream answers it as a duplicate of that copy, not as a
//! conflict.

use crate::{
    failover::{Failover, MsgIds},
    names::{hex, Names},
    unavailable, JetStreamError,
};
use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
    context::PublishErrorKind,
};
use futures_util::StreamExt;
use hookrelay_store::{
    codec, AppRecord, BoxFuture, CheckedConfig, ConfigChange, ConfigLog, ConfigOwner,
    ConfigVersion, OrgRecord, SharedMirror, StoreError,
};
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::task::TaskTracker;
use tracing::{error, info, Instrument};

/// The layout of a record message this build writes.
const LAYOUT: u8 = 1;
/// How long a write waits for the mirror to reach the stream's end.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration of a JetStream cluster, checked by [`CheckedConfig`].
pub type JsConfig = CheckedConfig<JsConfigLog>;

/// The configuration stream and this node's mirror of it.
pub struct JsConfigLog {
    js: jetstream::Context,
    names: Names,
    mirror: Arc<SharedMirror>,
    /// The stream sequence the mirror shows.
    applied: watch::Receiver<u64>,
    /// Follows the stream into the mirror; tracked by `tasks`, ended when
    /// the log is dropped.
    tail: JoinHandle<()>,
    tasks: TaskTracker,
    /// Writes wait out the stream's leader election.
    failover: Failover,
    ids: MsgIds,
}

impl Drop for JsConfigLog {
    fn drop(&mut self) {
        self.tail.abort();
        self.tasks.close();
    }
}

impl JsConfigLog {
    /// Creates (or checks) the stream, loads the mirror and starts following.
    pub(crate) async fn open(
        js: jetstream::Context,
        names: Names,
        replicas: usize,
        failover: Failover,
    ) -> Result<Self, JetStreamError> {
        crate::ensure_stream(
            &js,
            jetstream::stream::Config {
                name: names.config_stream(),
                subjects: vec![names.config_subjects()],
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                max_messages_per_subject: 1,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        let mirror = Arc::new(SharedMirror::default());
        let (tx, applied) = watch::channel(0);
        let tasks = TaskTracker::new();
        let tail = tasks.spawn(
            Tail {
                js: js.clone(),
                names: names.clone(),
                mirror: mirror.clone(),
                applied: tx,
            }
            .run()
            .instrument(tracing::info_span!("configuration stream tail")),
        );
        let log = Self {
            js,
            names,
            mirror,
            applied,
            tail,
            tasks,
            failover,
            ids: MsgIds::new(),
        };
        log.sync_now().await.map_err(|e| JetStreamError::Setup {
            what: log.names.config_stream(),
            message: e.to_string(),
        })?;
        Ok(log)
    }

    /// The stream's last sequence, once the mirror shows it.
    async fn sync_now(&self) -> Result<u64, StoreError> {
        let stream = self
            .js
            .get_stream(self.names.config_stream())
            .await
            .map_err(|e| unavailable("reading the configuration stream", e))?;
        let last = stream.cached_info().state.last_sequence;
        self.caught_up(last).await?;
        Ok(last)
    }

    async fn caught_up(&self, seq: u64) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(SYNC_TIMEOUT, async {
            applied.wait_for(|a| *a >= seq).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::unavailable_msg(
                "the configuration follower stopped",
            )),
            Err(_) => Err(StoreError::unavailable_msg(format!(
                "the configuration mirror did not reach sequence {seq} within {SYNC_TIMEOUT:?}"
            ))),
        }
    }

    fn subject(&self, owner: &ConfigOwner) -> String {
        match owner {
            ConfigOwner::Org(id) => self.names.config_subject("org", &hex(id.as_str())),
            ConfigOwner::App(id) => self.names.config_subject("app", &hex(id.as_str())),
        }
    }

    /// The new records of `owner` after `changes`, encoded.
    fn record(&self, owner: &ConfigOwner, changes: &[ConfigChange]) -> Result<Vec<u8>, StoreError> {
        let m = self.mirror.read();
        match owner {
            ConfigOwner::Org(id) => {
                let mut rec = m.org_record(id).or_else(|| {
                    changes.iter().find_map(|c| match c {
                        ConfigChange::PutOrg(o) => Some(OrgRecord::new(o.clone())),
                        _ => None,
                    })
                });
                let rec = rec.as_mut().ok_or(StoreError::NotFound {
                    what: "organization",
                })?;
                changes.iter().for_each(|c| rec.apply(c));
                Ok(codec::encode_as(LAYOUT, &*rec))
            }
            ConfigOwner::App(id) => {
                let mut rec = m.app_record(id).or_else(|| {
                    changes.iter().find_map(|c| match c {
                        ConfigChange::Bind { device, org } => {
                            Some(AppRecord::new(device.clone(), org.clone()))
                        }
                        _ => None,
                    })
                });
                let rec = rec.as_mut().ok_or(StoreError::NotFound { what: "app" })?;
                changes.iter().for_each(|c| rec.apply(c));
                Ok(codec::encode_as(LAYOUT, &*rec))
            }
        }
    }
}

impl ConfigLog for JsConfigLog {
    fn mirror(&self) -> &SharedMirror {
        &self.mirror
    }

    fn sync(&self) -> BoxFuture<'_, Result<ConfigVersion, StoreError>> {
        Box::pin(self.sync_now())
    }

    fn next_number(&self, version: ConfigVersion) -> Result<u64, StoreError> {
        // The commit is stored at exactly `version + 1` or not at all: the
        // stream sequence is unique for ever, so it numbers the webhook.
        Ok(version + 1)
    }

    fn commit(
        &self,
        version: ConfigVersion,
        changes: Vec<ConfigChange>,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // Every write of the config store changes one owner's records;
            // should one ever span several, they are published in order,
            // each expecting the one before.
            let mut owners: Vec<(ConfigOwner, Vec<ConfigChange>)> = Vec::new();
            {
                let m = self.mirror.read();
                for c in changes {
                    let owner = m.owner_of(&c).ok_or(StoreError::NotFound {
                        what: "configuration record",
                    })?;
                    match owners.iter_mut().find(|(o, _)| *o == owner) {
                        Some((_, list)) => list.push(c),
                        None => owners.push((owner, vec![c])),
                    }
                }
            }
            let mut expected = version;
            for (owner, changes) in &owners {
                let payload = self.record(owner, changes)?;
                let message = jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .expected_last_sequence(expected)
                    .message_id(self.ids.next());
                let subject = self.subject(owner);
                let ack = self
                    .failover
                    .write(|| async {
                        self.js
                            .send_publish(subject.clone(), message.clone())
                            .await?
                            .await
                    })
                    .await;
                match ack {
                    Ok(ack) => expected = ack.sequence,
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        if expected == version {
                            return Ok(false);
                        }
                        return Err(unavailable("configuration write interrupted", e));
                    }
                    Err(e) => return Err(unavailable("writing configuration", e)),
                }
            }
            self.caught_up(expected).await?;
            Ok(true)
        })
    }
}

/// Follows the configuration stream into the mirror. Reconnects with
/// backoff; ends only when the log is dropped.
struct Tail {
    js: jetstream::Context,
    names: Names,
    mirror: Arc<SharedMirror>,
    applied: watch::Sender<u64>,
}

impl Tail {
    async fn run(self) {
        crate::follow::follow_forever("configuration stream".into(), || self.follow()).await;
    }

    async fn follow(&self) -> Result<(), String> {
        let stream = crate::follow::setup(async {
            self.js
                .get_stream(self.names.config_stream())
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        let from = *self.applied.borrow() + 1;
        let messages = crate::follow::tail(
            &stream,
            OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            },
        )
        .await?;
        let mut messages = std::pin::pin!(messages);
        info!(from, "following the configuration stream");
        while let Some(m) = messages.next().await {
            let m = m?;
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            self.apply(&m.subject, &m.payload);
            self.applied.send_replace(seq);
        }
        Ok(())
    }

    fn apply(&self, subject: &str, payload: &[u8]) {
        let kind = subject.rsplit('.').nth(1).unwrap_or_default();
        let changes = match kind {
            "org" => codec::decode_as::<OrgRecord>(LAYOUT, payload, "organization record")
                .map(|r| self.mirror.read().org_changes(r)),
            "app" => codec::decode_as::<AppRecord>(LAYOUT, payload, "app record")
                .map(|r| self.mirror.read().app_changes(r)),
            _ => Err(StoreError::Corrupt {
                what: "configuration subject",
            }),
        };
        match changes {
            Ok(changes) => self.mirror.apply(changes),
            // A record this build cannot read is left out, loudly: the rest
            // of the configuration still applies.
            Err(e) => error!(%subject, error = %e, "a configuration record could not be read"),
        }
    }
}
