//! Commands to the owner of a partition (retry, replay), carried by the
//! work-queue stream `<NS>_CMD` on `<ns>.cmd.<p>`: a command is stored
//! until the partition's owner runs and acknowledges it, so it survives
//! the death of the owner (the next owner runs it). Each partition has one
//! durable consumer, `cmd_<p>`, that every successive owner binds to. The
//! sender waits for the answer on a reply subject named in the command's
//! `Hr-Reply` header. The payloads are opaque here.

use crate::{
    failover::{Failover, MsgIds},
    names::Names,
    unavailable, JetStreamError,
};
use async_nats::{
    jetstream::{
        self,
        consumer::{pull, AckPolicy},
        stream::RetentionPolicy,
    },
    HeaderMap,
};
use bytes::Bytes;
use futures_util::StreamExt;
use hookrelay_core::Partition;
use hookrelay_store::StoreError;
use std::{future::Future, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::warn;

const REPLY: &str = "Hr-Reply";
/// How long an owner has to run a command before it is delivered again.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// The command transport.
#[derive(Clone)]
pub struct Commands {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    /// Sends wait out the stream's leader election; a resend keeps its
    /// message id, so the owner gets the command once.
    failover: Failover,
    ids: Arc<MsgIds>,
}

impl Commands {
    pub(crate) async fn open(
        client: async_nats::Client,
        js: jetstream::Context,
        names: Names,
        replicas: usize,
        failover: Failover,
    ) -> Result<Self, JetStreamError> {
        crate::ensure_stream(
            &js,
            jetstream::stream::Config {
                name: names.command_stream(),
                subjects: vec![names.command_subjects()],
                retention: RetentionPolicy::WorkQueue,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                // A command nobody ran in a day is moot.
                max_age: Duration::from_secs(24 * 3600),
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            client,
            js,
            names,
            failover,
            ids: Arc::new(MsgIds::new()),
        })
    }

    /// Stores `payload` for the owner of `partition` and waits up to
    /// `timeout` for its answer. On a timeout the command stays stored and
    /// still runs once the partition has an owner.
    pub async fn request(
        &self,
        partition: Partition,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, StoreError> {
        let inbox = self.client.new_inbox();
        let mut answers = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable("waiting for a command's answer", e))?;
        let mut headers = HeaderMap::new();
        headers.insert(REPLY, inbox.as_str());
        let message = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(self.ids.next());
        let subject = self.names.command_subject(partition);
        self.failover
            .write(|| async {
                self.js
                    .send_publish(subject.clone(), message.clone())
                    .await?
                    .await
            })
            .await
            .map_err(|e| unavailable("sending a command", e))?;
        match tokio::time::timeout(timeout, answers.next()).await {
            Ok(Some(m)) => Ok(m.payload),
            Ok(None) => Err(StoreError::unavailable_msg("the answer subscription ended")),
            Err(_) => Err(StoreError::unavailable_msg(format!(
                "partition {partition}'s owner did not answer within {timeout:?}; \
                 the command is kept and runs when the partition has an owner"
            ))),
        }
    }

    /// Runs the commands of `partition` with `run` until `stop`, answering
    /// each and acknowledging it once answered. Reconnects on errors.
    pub async fn serve<F, Fut>(&self, partition: Partition, run: F, stop: CancellationToken)
    where
        F: Fn(Bytes) -> Fut,
        Fut: Future<Output = Bytes>,
    {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let served = tokio::select! {
                () = stop.cancelled() => return,
                r = self.serve_once(partition, &run) => r,
            };
            if let Err(e) = served {
                failures += 1;
                warn!(partition, error = %e, failures, "serving commands failed; retrying");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(100 << failures.min(5))) => {}
            }
        }
    }

    async fn serve_once<F, Fut>(&self, partition: Partition, run: &F) -> Result<(), String>
    where
        F: Fn(Bytes) -> Fut,
        Fut: Future<Output = Bytes>,
    {
        let stream = self
            .js
            .get_stream(self.names.command_stream())
            .await
            .map_err(|e| e.to_string())?;
        let name = format!("cmd_{partition}");
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.names.command_subject(partition),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let answer = run(m.payload.clone()).await;
            let reply = m
                .headers
                .as_ref()
                .and_then(|h| h.get(REPLY))
                .map(|v| v.as_str().to_owned());
            if let Some(reply) = reply {
                // The sender may be gone (it timed out, or died): the
                // command ran all the same.
                let _ = self.client.publish(reply, answer).await;
            }
            m.ack().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
