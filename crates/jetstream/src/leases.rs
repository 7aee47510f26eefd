//! Which partitions this node drives: leases in the `<ns>_own` bucket.
//!
//! - `node.<id>`: a node's heartbeat, rewritten every tick.
//! - `part.<p>`: the lease of partition `p`; its value is the owner's id.
//!
//! The bucket's `max_age` is ¾ of `takeover`, so a key nobody rewrites
//! vanishes that long after its last write; every node ticks every ¼ of
//! `takeover`, renewing its leases by revision and taking free partitions
//! up to its share (P divided over the live nodes, the remainder going to
//! the first ids in order). A dead node's partitions
//! are therefore taken within `takeover`. A node that cannot renew a lease
//! for ½ of `takeover` stops driving that partition before the lease can
//! expire, so two nodes never drive one partition: the ½ counts from when
//! the last renewal was sent, and a tick still waiting on JetStream then is
//! cut short for it (JetStream's own request timeout is longer than the
//! lease). A node above its share
//! (because another joined) stops its extra partitions first and releases
//! their leases only once they stopped.

use crate::{
    lease_book::{share_of, Book},
    unavailable, JetStreamError,
};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::{future::join_all, TryStreamExt};
use hookrelay_core::Partition;
use hookrelay_store::StoreError;
use std::{collections::BTreeSet, time::Duration};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Keeps this node's partition leases; see the module docs.
pub struct Leases {
    bucket: kv::Store,
    node: String,
    partitions: u32,
    takeover: Duration,
    /// The leases held, and the rules about them.
    book: Book,
    /// What this node may drive.
    owned: watch::Sender<BTreeSet<Partition>>,
    /// What this node drives now (reported by the engine).
    running: watch::Receiver<BTreeSet<Partition>>,
    /// Whether the leases of an earlier life of this node were looked for.
    adopted: bool,
}

impl Leases {
    /// Leases for `node` over `partitions` partitions; `running` reports
    /// what the engine drives. Creates the bucket on first use.
    pub(crate) async fn open(
        js: &jetstream::Context,
        bucket: String,
        replicas: usize,
        node: String,
        partitions: u32,
        takeover: Duration,
        running: watch::Receiver<BTreeSet<Partition>>,
    ) -> Result<Self, JetStreamError> {
        let bucket = crate::ensure_bucket(
            js,
            kv::Config {
                bucket,
                history: 1,
                max_age: takeover * 3 / 4,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            bucket,
            node,
            partitions,
            takeover,
            book: Book::new(takeover),
            owned: watch::Sender::new(BTreeSet::new()),
            running,
            adopted: false,
        })
    }

    /// The partitions this node may drive, as they change.
    pub fn owned(&self) -> watch::Receiver<BTreeSet<Partition>> {
        self.owned.subscribe()
    }

    /// Ticks until `stop`; then releases every lease (once `running` is
    /// empty, or at once if it never empties within `takeover`).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.takeover / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            // A tick waiting on a slow JetStream must not keep this node
            // driving a partition whose lease may lapse meanwhile: it is
            // cut at the first fencing deadline, and the fence runs then.
            // A cut tick may leave a renewal applied whose revision this
            // node never learnt: its next renewal fails and it lets the
            // partition go, which is safe.
            let cut = self.book.fence_deadline(Instant::now());
            match tokio::time::timeout_at(cut, self.tick()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "partition leases: JetStream did not answer"),
                Err(_) => warn!("partition leases: JetStream answered too slowly to renew in time"),
            }
            self.fence();
        }
        self.owned.send_replace(BTreeSet::new());
        let _ =
            tokio::time::timeout(self.takeover, self.running.wait_for(BTreeSet::is_empty)).await;
        for p in std::mem::take(&mut self.book.held).into_keys() {
            let _ = self.bucket.delete(part_key(p)).await;
        }
        info!(node = %self.node, "partition leases released");
    }

    /// Stops driving partitions whose lease could not be renewed in time.
    fn fence(&mut self) {
        for p in self.book.fence(Instant::now()) {
            warn!(
                partition = p,
                "partition lease not renewed in time; stopping it"
            );
        }
        self.publish();
    }

    fn publish(&self) {
        let now = self.book.owned();
        self.owned.send_if_modified(|o| {
            let changed = *o != now;
            *o = now;
            changed
        });
    }

    async fn tick(&mut self) -> Result<(), StoreError> {
        let me = Bytes::from(self.node.clone());
        // Renew what we hold, all at once and beside the heartbeat: a tick
        // is as slow as its slowest answer, not the sum of them. A lease is
        // counted from when its renewal was sent, never from the answer:
        // the servers start its `max_age` somewhere in between.
        let running = self.running.borrow().clone();
        let renewals = self
            .book
            .to_renew(&running)
            .into_iter()
            .map(|(p, revision)| {
                let me = me.clone();
                let bucket = &self.bucket;
                async move {
                    let sent = Instant::now();
                    (p, sent, bucket.update(part_key(p), me, revision).await)
                }
            });
        let (heartbeat, renewed) = tokio::join!(
            self.bucket.put(format!("node.{}", self.node), me.clone()),
            join_all(renewals)
        );
        let mut stale = Vec::new();
        let mut failed = None;
        for (p, sent, answer) in renewed {
            match answer {
                Ok(revision) => self.book.renewed(p, revision, sent),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => stale.push(p),
                Err(e) => failed = Some(unavailable("renewing a lease", e)),
            }
        }
        let lost = self.sort_out(stale, &me).await?;
        for p in lost {
            warn!(
                partition = p,
                "partition lease expired or taken by another node; stopping it"
            );
            self.book.held.remove(&p);
        }
        heartbeat.map_err(|e| unavailable("heartbeat", e))?;
        if let Some(e) = failed {
            return Err(e);
        }
        for p in self.book.to_release(&running) {
            self.bucket
                .delete(part_key(p))
                .await
                .map_err(|e| unavailable("releasing a lease", e))?;
            self.book.held.remove(&p);
            info!(partition = p, "partition released");
        }
        // The fair share, from the live nodes and the taken partitions.
        let keys: Vec<String> = self
            .bucket
            .keys()
            .await
            .map_err(|e| unavailable("listing leases", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("listing leases", e))?;
        if !self.adopted {
            self.adopt(&keys, &me).await?;
            self.adopted = true;
        }
        let mut nodes: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("node."))
            .collect();
        if !nodes.contains(&self.node.as_str()) {
            nodes.push(&self.node);
        }
        nodes.sort_unstable();
        let taken: BTreeSet<Partition> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("part.")?.parse().ok())
            .collect();
        let share = share_of(self.partitions, &nodes, &self.node);
        self.book.give_up_above(share);
        let mut kept = self.book.kept();
        // Start where this node's id hashes to, so nodes spread their picks.
        let start = hookrelay_core::partition_of(&self.node, self.partitions);
        for p in self.book.candidates(self.partitions, start, &taken) {
            if kept >= share {
                break;
            }
            let sent = Instant::now();
            match self.bucket.create(part_key(p), me.clone()).await {
                Ok(revision) => {
                    self.book.take(p, revision, sent);
                    kept += 1;
                    info!(partition = p, node = %self.node, "partition taken");
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("taking a lease", e)),
            }
        }
        self.publish();
        Ok(())
    }
}

impl Leases {
    /// Of leases whose renewal found another revision than the one this
    /// node knows, those it lost. A lease still holding this node's id was
    /// renewed by a try whose answer never came (a tick cut short): its
    /// revision is taken, and it counts from the last renewal known sent.
    /// Any other lease expired while this node could not renew it, and
    /// another node may hold it: it is stopped at once.
    async fn sort_out(
        &mut self,
        stale: Vec<Partition>,
        me: &Bytes,
    ) -> Result<Vec<Partition>, StoreError> {
        let mut lost = Vec::new();
        for p in stale {
            let entry = self
                .bucket
                .entry(part_key(p))
                .await
                .map_err(|e| unavailable("reading a lease", e))?;
            match (entry, self.book.held.get_mut(&p)) {
                (Some(e), Some(h)) if e.operation == kv::Operation::Put && e.value == *me => {
                    h.revision = e.revision;
                }
                _ => lost.push(p),
            }
        }
        Ok(lost)
    }

    /// A node restarted under the same id (`jetstream.node_id`) takes back
    /// the leases its earlier life still holds, at once, instead of waiting
    /// for them to expire: nothing of that life runs any more.
    async fn adopt(&mut self, keys: &[String], me: &Bytes) -> Result<(), StoreError> {
        for key in keys {
            let Some(p) = key
                .strip_prefix("part.")
                .and_then(|p| p.parse::<Partition>().ok())
            else {
                continue;
            };
            let entry = self
                .bucket
                .entry(key.as_str())
                .await
                .map_err(|e| unavailable("reading a lease", e))?;
            let Some(entry) = entry.filter(|e| e.value == *me) else {
                continue;
            };
            let sent = Instant::now();
            if let Ok(revision) = self.bucket.update(key, me.clone(), entry.revision).await {
                self.book.take(p, revision, sent);
                info!(partition = p, node = %self.node, "partition taken back after a restart");
            }
        }
        Ok(())
    }
}

fn part_key(p: Partition) -> String {
    format!("part.{p}")
}
