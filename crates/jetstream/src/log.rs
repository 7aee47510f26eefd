//! The event log on JetStream.
//!
//! Partition `p` is the stream `<NS>_EV_<p>` with the one subject
//! `<ns>.ev.<p>`; a group commit is one message per partition it touches
//! (split further only past the server's payload limit or 65,536 events).
//! The event at offset `i` of the message with stream sequence `m` has the
//! sequence `partition_seq(p, m << 16 | i)`: sequences grow along a
//! partition and are not dense. A publish counts once JetStream has
//! acknowledged it, i.e. once it is stored on a quorum of replicas (with the
//! servers' `sync_interval: always`, on their disks).
//!
//! Idempotency keys live in the key-value bucket `<ns>_idem` whose entries
//! expire with the dedup window: a key is *claimed* (created empty) before
//! its event is published and *settled* (its sequence written) after, so two
//! nodes given the same event at once append it once. A claim left empty by
//! a node that died mid-commit is taken over once it is [`STALE_CLAIM`] old.

use crate::{
    failover::{Failover, MsgIds},
    names::Names,
    unavailable, JetStreamError,
};
use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
    kv,
    stream::DirectGetErrorKind,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::Bytes;
use futures_util::{future::join_all, StreamExt};
use hookrelay_core::{
    local_seq, partition_of, partition_seq, seq_partition, Event, Partition, Seq,
};
use hookrelay_store::{
    codec, Appended, BoxFuture, Chunk, ChunkIndex, EventLog, IdemKey, LoggedEvent, StoreError,
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

/// Offsets inside one message: 16 bits.
const OFFSET_BITS: u32 = 16;
/// Most events in one message.
const MAX_EVENTS_PER_MESSAGE: usize = 1 << OFFSET_BITS;
/// An empty claim older than this belongs to a node that died mid-commit.
pub(crate) const STALE_CLAIM: Duration = Duration::from_secs(30);
/// How long a commit waits for another node's fresh claim to settle.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// Decoded messages kept for readers (the tail fills it for the scheduler).
const CHUNK_CACHE: usize = 256;

/// A decoded message of the log.
struct DecodedChunk {
    appended_at_ms: i64,
    events: Vec<Arc<Event>>,
}

/// Recently read messages by `(partition, stream sequence)`, oldest first.
/// The header of an event message holding its chunk's index (base64 of
/// the codec's encoding).
const INDEX_HEADER: &str = "Hr-Index";

/// From this many chunks on, `chunk_index` streams instead of reading one by one.
const BATCH_READ: usize = 8;

type ChunkCache = Mutex<Vec<((Partition, u64), Arc<DecodedChunk>)>>;

/// The JetStream implementation of [`EventLog`].
pub struct JsLog {
    js: jetstream::Context,
    names: Names,
    idem: kv::Store,
    partitions: u32,
    /// Largest payload the servers take, bytes.
    max_payload: usize,
    heads: Vec<watch::Sender<Seq>>,
    /// One tail per partition, started at open, tracked by `tasks` and
    /// ended when the log is dropped.
    tails: Vec<JoinHandle<()>>,
    tasks: TaskTracker,
    /// Recently read messages by `(partition, stream sequence)`.
    cache: Arc<ChunkCache>,
    /// Each partition's stream, for direct reads without a lookup.
    streams: Vec<jetstream::stream::Stream>,
    /// Writes wait out a stream's leader election.
    failover: Failover,
    /// Message ids of published messages and values of key claims.
    ids: MsgIds,
}

impl Drop for JsLog {
    fn drop(&mut self) {
        for t in &self.tails {
            t.abort();
        }
        self.tasks.close();
    }
}

/// The sequence of offset `offset` of message `msg` of `partition`.
fn event_seq(partition: Partition, msg: u64, offset: usize) -> Seq {
    partition_seq(partition, (msg << OFFSET_BITS) | offset as u64)
}

/// `(message, offset)` of a sequence's local part.
fn split(seq: Seq) -> (u64, usize) {
    let local = local_seq(seq);
    (
        local >> OFFSET_BITS,
        (local & ((1 << OFFSET_BITS) - 1)) as usize,
    )
}

/// How one idempotency key stands before a commit.
enum Claim {
    /// Ours: publish the event, then settle at this revision.
    Ours,
    /// Already appended at this sequence.
    Taken(Seq),
}

impl JsLog {
    /// Opens the log: creates (or checks) the partition streams and the
    /// idempotency bucket.
    pub(crate) async fn open(
        js: jetstream::Context,
        names: Names,
        cfg: &crate::JetStreamConfig,
        max_payload: usize,
    ) -> Result<Self, JetStreamError> {
        let mut streams = Vec::with_capacity(cfg.partitions as usize);
        for p in 0..cfg.partitions {
            let config = jetstream::stream::Config {
                name: names.event_stream(p),
                subjects: vec![names.event_subject(p)],
                storage: jetstream::stream::StorageType::File,
                num_replicas: cfg.replicas,
                max_age: cfg.retention,
                allow_direct: true,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            };
            streams.push(crate::ensure_stream(&js, config).await?);
        }
        let idem = crate::ensure_bucket(
            &js,
            kv::Config {
                bucket: names.idem_bucket(),
                history: 1,
                max_age: cfg.dedup_window,
                storage: jetstream::stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            },
        )
        .await?;
        let heads: Vec<watch::Sender<Seq>> =
            (0..cfg.partitions).map(|_| watch::Sender::new(0)).collect();
        let cache = Arc::new(Mutex::new(Vec::with_capacity(CHUNK_CACHE)));
        let tasks = TaskTracker::new();
        let tails = (0..cfg.partitions)
            .map(|partition| {
                let tail = Tail {
                    js: js.clone(),
                    stream: names.event_stream(partition),
                    subject: names.event_subject(partition),
                    partition,
                    head: heads[partition as usize].clone(),
                    cache: cache.clone(),
                };
                tasks.spawn(
                    tail.run()
                        .instrument(tracing::info_span!("event stream tail", partition)),
                )
            })
            .collect();
        Ok(Self {
            js,
            names,
            idem,
            partitions: cfg.partitions,
            max_payload,
            heads,
            tails,
            tasks,
            cache,
            streams,
            failover: Failover::new(cfg.election_wait),
            ids: MsgIds::new(),
        })
    }

    fn cached(&self, partition: Partition, msg: u64) -> Option<Arc<DecodedChunk>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .rev()
            .find(|(k, _)| *k == (partition, msg))
            .map(|(_, c)| c.clone())
    }

    /// The first message of `partition` with stream sequence ≥ `msg`.
    /// The indexes of up to `max` messages of `partition` from message `msg`
    /// on, in one pass of an ordered consumer that receives only headers:
    /// each message carries its chunk's index, so replay planning moves no
    /// event bodies. A message without one is read whole.
    async fn indexes_from(
        &self,
        partition: Partition,
        msg: u64,
        max: usize,
    ) -> Result<Vec<(Seq, ChunkIndex)>, StoreError> {
        let what = "reading the event log";
        let stream = self
            .streams
            .get(partition as usize)
            .ok_or(StoreError::Corrupt { what: "partition" })?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.names.event_subject(partition),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: msg.max(1),
                },
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(what, e))?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(what, e))?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| unavailable(what, e))?;
            let info = m.info().map_err(|e| unavailable(what, e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let header = m
                .headers
                .as_ref()
                .and_then(|h| h.get(INDEX_HEADER))
                .and_then(|v| BASE64.decode(v.as_str()).ok());
            let index = match header {
                Some(bytes) => codec::decode(&bytes, "chunk index")?,
                None => match self.chunk_from(partition, seq).await? {
                    Some((_, chunk)) => {
                        let events: Vec<Event> =
                            chunk.events.iter().map(|e| (**e).clone()).collect();
                        ChunkIndex::of(&events, chunk.appended_at_ms)
                    }
                    None => break,
                },
            };
            out.push((event_seq(partition, seq, 0), index));
            if out.len() >= max || pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    async fn chunk_from(
        &self,
        partition: Partition,
        msg: u64,
    ) -> Result<Option<(u64, Arc<DecodedChunk>)>, StoreError> {
        if let Some(c) = self.cached(partition, msg) {
            return Ok(Some((msg, c)));
        }
        let stream = self
            .streams
            .get(partition as usize)
            .ok_or(StoreError::Corrupt { what: "partition" })?;
        let m = match stream
            .direct_get_next_for_subject(self.names.event_subject(partition), Some(msg.max(1)))
            .await
        {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(unavailable("reading the event log", e)),
        };
        let chunk = decode(&m.payload)?;
        insert(&self.cache, (partition, m.sequence), chunk.clone());
        Ok(Some((m.sequence, chunk)))
    }

    /// Claims every key, concurrently, with `claim` as the claims' value.
    async fn claim_all(
        &self,
        keys: &[(IdemKey, u32)],
        since_ms: i64,
        claim: &Bytes,
    ) -> Result<Vec<Claim>, StoreError> {
        join_all(keys.iter().map(|(k, _)| self.claim(*k, since_ms, claim)))
            .await
            .into_iter()
            .collect()
    }

    async fn claim(&self, key: IdemKey, since_ms: i64, claim: &Bytes) -> Result<Claim, StoreError> {
        let name = format!("{key:032x}");
        let started = tokio::time::Instant::now();
        loop {
            match self
                .failover
                .write(|| self.idem.create(&name, claim.clone()))
                .await
            {
                Ok(_) => return Ok(Claim::Ours),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("claiming an idempotency key", e)),
            }
            let Some(entry) = self
                .failover
                .write(|| self.idem.entry(&name))
                .await
                .map_err(|e| unavailable("reading an idempotency key", e))?
            else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if entry.value == *claim {
                // This commit's own claim, from a try whose answer was lost.
                return Ok(Claim::Ours);
            }
            let created_ms =
                i64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let age = Duration::from_millis(
                u64::try_from(hookrelay_core::now_ms() - created_ms).unwrap_or(0),
            );
            if let Ok(b) = <[u8; 8]>::try_from(entry.value.as_ref()) {
                if created_ms >= since_ms {
                    return Ok(Claim::Taken(Seq::from_be_bytes(b)));
                }
            } else if age < STALE_CLAIM {
                // Another node is committing this event right now.
                if started.elapsed() < CLAIM_WAIT {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                return Err(StoreError::unavailable_msg(
                    "the same event is being committed through another node; retry",
                ));
            }
            // Outside the window, or abandoned: take it over by revision.
            if self
                .failover
                .write(|| self.idem.update(&name, claim.clone(), entry.revision))
                .await
                .is_ok()
            {
                return Ok(Claim::Ours);
            }
        }
    }

    /// Writes the sequences of appended keys (claims of failed publishes
    /// are deleted so a retry need not wait for them to go stale).
    async fn settle(&self, settled: Vec<(IdemKey, Option<Seq>)>) {
        let results = join_all(settled.into_iter().map(|(k, seq)| async move {
            let name = format!("{k:032x}");
            match seq {
                Some(seq) => self
                    .failover
                    .write(|| {
                        self.idem
                            .put(&name, Bytes::copy_from_slice(&seq.to_be_bytes()))
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => self
                    .failover
                    .write(|| self.idem.delete(&name))
                    .await
                    .map_err(|e| e.to_string()),
            }
        }))
        .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            warn!(
                failed,
                "settling idempotency keys failed; a retry of those events waits for the claim to go stale"
            );
        }
    }

    /// Publishes one message per piece and waits for every acknowledgement;
    /// each piece's stream sequence, or why it failed. Partitions go
    /// concurrently; the pieces of one partition one after the other, so
    /// that a retry cannot put them out of order, and none after one that
    /// failed.
    async fn publish(&self, pieces: &[(Partition, Bytes, String)]) -> Vec<Result<u64, StoreError>> {
        let mut by_partition: Vec<(Partition, Vec<usize>)> = Vec::new();
        for (i, (p, _, _)) in pieces.iter().enumerate() {
            match by_partition.iter_mut().find(|(q, _)| q == p) {
                Some((_, list)) => list.push(i),
                None => by_partition.push((*p, vec![i])),
            }
        }
        let answers = join_all(by_partition.iter().map(|(_, list)| async move {
            let mut out = Vec::with_capacity(list.len());
            for i in list {
                let failed = out
                    .iter()
                    .any(|(_, r): &(usize, Result<u64, StoreError>)| r.is_err());
                let r = if failed {
                    Err(StoreError::unavailable_msg(
                        "not published: an earlier message of the partition failed",
                    ))
                } else {
                    self.publish_one(&pieces[*i]).await
                };
                out.push((*i, r));
            }
            out
        }))
        .await;
        let mut ordered: Vec<Option<Result<u64, StoreError>>> =
            (0..pieces.len()).map(|_| None).collect();
        for (i, r) in answers.into_iter().flatten() {
            ordered[i] = Some(r);
        }
        ordered
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Task("a piece was not published".into()))))
            .collect()
    }

    /// Publishes one message, waiting out an election of its stream's
    /// leader; a resend carries the same message id, so the stream keeps
    /// one copy.
    async fn publish_one(
        &self,
        (p, payload, index): &(Partition, Bytes, String),
    ) -> Result<u64, StoreError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INDEX_HEADER, index.as_str());
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .headers(headers)
            .message_id(self.ids.next());
        let subject = self.names.event_subject(*p);
        self.failover
            .write(|| async {
                self.js
                    .send_publish(subject.clone(), message.clone())
                    .await?
                    .await
            })
            .await
            .map(|ack| ack.sequence)
            .map_err(|e| unavailable("waiting for JetStream's acknowledgement", e))
    }

    /// Splits the events of one partition into messages within the payload
    /// and offset limits: `(partition, event indexes)`.
    fn pieces(&self, events: &[Event]) -> Vec<(Partition, Vec<usize>)> {
        let budget = self.max_payload.saturating_sub(4096).max(1);
        let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); self.partitions as usize];
        for (i, e) in events.iter().enumerate() {
            by_partition[partition_of(&e.device_id, self.partitions) as usize].push(i);
        }
        let mut out = Vec::new();
        for (p, idx) in by_partition.into_iter().enumerate() {
            let mut cur: Vec<usize> = Vec::new();
            let mut bytes = 0usize;
            for i in idx {
                let e = &events[i];
                let size = e.data.len() + e.id.len() + e.device_id.len() + e.event_type.len() + 32;
                if !cur.is_empty() && (bytes + size > budget || cur.len() == MAX_EVENTS_PER_MESSAGE)
                {
                    out.push((p as Partition, std::mem::take(&mut cur)));
                    bytes = 0;
                }
                bytes += size;
                cur.push(i);
            }
            if !cur.is_empty() {
                out.push((p as Partition, cur));
            }
        }
        out
    }
}

fn decode(payload: &[u8]) -> Result<Arc<DecodedChunk>, StoreError> {
    let chunk: Chunk = codec::decode(payload, "event chunk")?;
    Ok(Arc::new(DecodedChunk {
        appended_at_ms: chunk.appended_at_ms,
        events: chunk.events.into_iter().map(Arc::new).collect(),
    }))
}

fn insert(cache: &ChunkCache, key: (Partition, u64), chunk: Arc<DecodedChunk>) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.iter().any(|(k, _)| *k == key) {
        return;
    }
    if cache.len() >= CHUNK_CACHE {
        cache.remove(0);
    }
    cache.push((key, chunk));
}

/// Follows one partition's stream through an ephemeral consumer (see
/// [`crate::follow`]): moves the durable head as messages are stored and
/// caches them for the scheduler's reads. Reads again from the head with
/// backoff when the read fails or stalls; ends only when the log is dropped.
struct Tail {
    js: jetstream::Context,
    stream: String,
    subject: String,
    partition: Partition,
    head: watch::Sender<Seq>,
    cache: Arc<ChunkCache>,
}

impl Tail {
    async fn run(self) {
        let what = format!("event stream of partition {}", self.partition);
        crate::follow::follow_forever(what, || self.follow()).await;
    }

    fn note(&self, msg: u64, chunk: &DecodedChunk) {
        let last = event_seq(self.partition, msg, chunk.events.len().max(1) - 1);
        self.head.send_if_modified(|h| {
            let moved = last > *h;
            *h = (*h).max(last);
            moved
        });
    }

    async fn follow(&self) -> Result<(), String> {
        let (stream, next) = crate::follow::setup(async {
            let mut stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| e.to_string())?;
            let (mut next, _) = split(*self.head.borrow());
            if next == 0 {
                // Start at the end: the head is the last stored message.
                let last = stream
                    .info()
                    .await
                    .map_err(|e| e.to_string())?
                    .state
                    .last_sequence;
                if last > 0 {
                    let m = stream.direct_get(last).await.map_err(|e| e.to_string())?;
                    let chunk = decode(&m.payload).map_err(|e| e.to_string())?;
                    self.note(last, &chunk);
                    insert(&self.cache, (self.partition, last), chunk);
                }
                next = last;
            }
            Ok((stream, next))
        })
        .await?;
        let messages = crate::follow::tail(
            &stream,
            OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: next + 1,
                },
                ..Default::default()
            },
        )
        .await?;
        let mut messages = std::pin::pin!(messages);
        info!(
            partition = self.partition,
            from = next + 1,
            "following the event stream"
        );
        while let Some(m) = messages.next().await {
            let m = m?;
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            let chunk = decode(&m.payload).map_err(|e| e.to_string())?;
            self.note(seq, &chunk);
            insert(&self.cache, (self.partition, seq), chunk);
        }
        Ok(())
    }
}

impl EventLog for JsLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn append(
        &self,
        events: Vec<Event>,
        keys: Vec<(IdemKey, u32)>,
        appended_at_ms: i64,
        dedup_since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            let mut out: Vec<Option<Appended>> = vec![None; events.len()];
            // The claims' value is unique to this commit, so that a claim
            // written by a try whose answer was lost is known as ours.
            let claim = Bytes::from(self.ids.next());
            let claims = self.claim_all(&keys, dedup_since_ms, &claim).await?;
            let mut keyed: Vec<Option<IdemKey>> = vec![None; events.len()];
            for ((k, off), claim) in keys.iter().zip(claims) {
                let i = *off as usize;
                match claim {
                    Claim::Taken(seq) => out[i] = Some(Appended::Duplicate(seq)),
                    Claim::Ours => keyed[i] = Some(*k),
                }
            }
            let fresh: Vec<usize> = (0..events.len()).filter(|i| out[*i].is_none()).collect();
            let fresh_events: Vec<Event> = fresh.iter().map(|i| events[*i].clone()).collect();
            let pieces = self.pieces(&fresh_events);
            let payloads: Vec<(Partition, Bytes, String)> = pieces
                .iter()
                .map(|(p, idx)| {
                    let chunk = Chunk {
                        appended_at_ms,
                        events: idx.iter().map(|i| fresh_events[*i].clone()).collect(),
                    };
                    let index = ChunkIndex::of(&chunk.events, appended_at_ms);
                    (
                        *p,
                        Bytes::from(codec::encode(&chunk)),
                        BASE64.encode(codec::encode(&index)),
                    )
                })
                .collect();
            let acks = self.publish(&payloads).await;
            let mut settled = Vec::new();
            let mut failure = None;
            for ((p, idx), ack) in pieces.iter().zip(acks) {
                match ack {
                    Ok(msg) => {
                        let last = event_seq(*p, msg, idx.len().max(1) - 1);
                        self.heads[*p as usize].send_if_modified(|h| {
                            let moved = last > *h;
                            *h = (*h).max(last);
                            moved
                        });
                        for (offset, i) in idx.iter().enumerate() {
                            let at = fresh[*i];
                            let seq = event_seq(*p, msg, offset);
                            out[at] = Some(Appended::New(seq));
                            if let Some(k) = keyed[at] {
                                settled.push((k, Some(seq)));
                            }
                        }
                    }
                    Err(e) => {
                        for i in idx {
                            if let Some(k) = keyed[fresh[*i]] {
                                settled.push((k, None));
                            }
                        }
                        failure = Some(e);
                    }
                }
            }
            self.settle(settled).await;
            if let Some(e) = failure {
                return Err(e);
            }
            out.into_iter()
                .map(|a| a.ok_or_else(|| StoreError::Task("an event was not answered".into())))
                .collect()
        })
    }

    fn read(
        &self,
        partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<LoggedEvent>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            if partition >= self.partitions || max == 0 || seq_partition(from) > partition {
                return Ok(out);
            }
            let (mut msg, mut offset) = if seq_partition(from) < partition {
                (1, 0)
            } else {
                split(from)
            };
            while out.len() < max {
                let Some((at, chunk)) = self.chunk_from(partition, msg.max(1)).await? else {
                    break;
                };
                if at != msg {
                    offset = 0;
                }
                for (i, event) in chunk.events.iter().enumerate().skip(offset) {
                    if out.len() >= max {
                        break;
                    }
                    out.push(LoggedEvent {
                        seq: event_seq(partition, at, i),
                        appended_at_ms: chunk.appended_at_ms,
                        event: event.clone(),
                    });
                }
                msg = at + 1;
                offset = 0;
            }
            Ok(out)
        })
    }

    fn event(&self, seq: Seq) -> BoxFuture<'_, Result<Option<LoggedEvent>, StoreError>> {
        Box::pin(async move {
            let (msg, offset) = split(seq);
            let partition = seq_partition(seq);
            if partition >= self.partitions || msg == 0 {
                return Ok(None);
            }
            match self.chunk_from(partition, msg).await? {
                Some((at, chunk)) if at == msg => {
                    Ok(chunk.events.get(offset).map(|e| LoggedEvent {
                        seq,
                        appended_at_ms: chunk.appended_at_ms,
                        event: e.clone(),
                    }))
                }
                _ => Ok(None),
            }
        })
    }

    fn durable_head(&self, partition: Partition) -> watch::Receiver<Seq> {
        match self.heads.get(partition as usize) {
            Some(h) => h.subscribe(),
            None => watch::Sender::new(0).subscribe(),
        }
    }

    fn head_bound(&self, partition: Partition) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(async move {
            if partition >= self.partitions {
                return Ok(0);
            }
            let what = "reading the head of the event stream";
            let mut stream = self
                .js
                .get_stream(self.names.event_stream(partition))
                .await
                .map_err(|e| unavailable(what, e))?;
            let last = stream
                .info()
                .await
                .map_err(|e| unavailable(what, e))?
                .state
                .last_sequence;
            // The last message's event count is not in the stream's info:
            // its highest possible offset bounds every event in it.
            Ok(if last == 0 {
                0
            } else {
                event_seq(partition, last, MAX_EVENTS_PER_MESSAGE - 1)
            })
        })
    }

    fn chunk_index(
        &self,
        partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<(Seq, ChunkIndex)>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            if partition >= self.partitions || seq_partition(from) > partition {
                return Ok(out);
            }
            let mut msg = if seq_partition(from) < partition {
                1
            } else {
                let (m, offset) = split(from);
                // A chunk starts at offset 0: one that starts later is the next.
                if offset > 0 {
                    m + 1
                } else {
                    m.max(1)
                }
            };
            // Many chunks (replay planning) in one streamed pass; a few by
            // direct reads, which the tail's cache often answers.
            if max >= BATCH_READ {
                return self.indexes_from(partition, msg, max).await;
            }
            while out.len() < max {
                let Some((at, chunk)) = self.chunk_from(partition, msg).await? else {
                    break;
                };
                let events: Vec<Event> = chunk.events.iter().map(|e| (**e).clone()).collect();
                out.push((
                    event_seq(partition, at, 0),
                    ChunkIndex::of(&events, chunk.appended_at_ms),
                ));
                msg = at + 1;
            }
            Ok(out)
        })
    }

    fn first_seq_at(
        &self,
        partition: Partition,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Seq>, StoreError>> {
        Box::pin(async move {
            if partition >= self.partitions {
                return Ok(None);
            }
            let mut stream = self
                .js
                .get_stream(self.names.event_stream(partition))
                .await
                .map_err(|e| unavailable("event stream", e))?;
            let state = stream
                .info()
                .await
                .map_err(|e| unavailable("event stream", e))?
                .state
                .clone();
            if state.messages == 0 {
                return Ok(None);
            }
            // g(m): append time of the first message at or after m; it never
            // decreases with m. Bisect for the smallest m with g(m) ≥ at_ms.
            let (mut lo, mut hi) = (state.first_sequence.max(1), state.last_sequence);
            match self.chunk_from(partition, hi).await? {
                Some((_, c)) if c.appended_at_ms >= at_ms => {}
                _ => return Ok(None),
            }
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.chunk_from(partition, mid).await? {
                    Some((_, c)) if c.appended_at_ms >= at_ms => hi = mid,
                    _ => lo = mid + 1,
                }
            }
            Ok(self
                .chunk_from(partition, lo)
                .await?
                .map(|(at, _)| event_seq(partition, at, 0)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_split_back_into_message_and_offset() {
        let s = event_seq(5, 1234, 77);
        assert_eq!(seq_partition(s), 5);
        assert_eq!(split(s), (1234, 77));
        assert!(event_seq(5, 1234, 65_535) < event_seq(5, 1235, 0));
    }
}
