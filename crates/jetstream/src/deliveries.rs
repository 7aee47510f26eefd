//! Delivery state on JetStream.
//!
//! - **State** (stream `<NS>_DS`, `max_msgs_per_subject = 1`): one message
//!   per delivery that has a record, on `<ns>.ds.<p>.<seq>.<gen>.<webhook>`,
//!   holding its record and its due entries, so one publish changes both.
//!   Only deliveries that outlived their first attempt have one, as on sled.
//! - **Due index**: in the memory of the partition's owner, loaded from the
//!   partition's state messages when its scheduler starts
//!   ([`DeliveryStore::recovery_scan`]) and dropped when it stops
//!   ([`DeliveryStore::release`]); each owner is the only writer of its
//!   partitions, so memory and stream agree while it drives them. The owner
//!   also knows which deliveries past the cursor have a state message, so
//!   the scheduler's record check of every event it re-reads after a
//!   restart costs no round trip for the many that have none.
//! - **Attempts** (stream `<NS>_ATT`): one message per attempt on
//!   `<ns>.att.<webhook>.<seq>.<gen>`; the subjects of a webhook list its
//!   deliveries.
//! - **Cursors**: `cursor.<p>` in the meta bucket, written after the state
//!   and attempts of the same batch are acknowledged.
//!
//! Both streams keep messages for the retention period (`max_age`).

use crate::{
    failover::{transient, Failover},
    names::{hex, unhex, Names},
    unavailable, JetStreamError,
};
use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
    kv,
    stream::LastRawMessageErrorKind,
};
use bytes::Bytes;
use futures_util::{future::join_all, StreamExt, TryStreamExt};
use hookrelay_core::{
    now_ms, seq_partition, Attempt, DeliveryKey, DeliveryRecord, Partition, Seq, WebhookId,
};
use hookrelay_store::{
    codec, BoxFuture, DeliveryStore, DeliveryWrite, DueEntry, DueKind, Recent, StoreError,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::{hash_map::Entry, BTreeMap, BTreeSet, HashMap},
    ops::RangeInclusive,
    sync::Mutex,
};

/// The layout of state messages this build writes.
const LAYOUT: u8 = 1;

/// What a state message holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    record: Option<DeliveryRecord>,
    /// `(at_ms, lease)`.
    due: Vec<(i64, bool)>,
}

/// The due index of one owned partition, and the state of every delivery
/// in it (those with due entries: the pending ones).
#[derive(Default)]
struct Owned {
    due: BTreeMap<(i64, DeliveryKey), DueKind>,
    states: HashMap<DeliveryKey, State>,
    /// The dispatch cursor as last written: what is past it is known below.
    floor: Seq,
    /// Every delivery of an event past `floor` that has a state message
    /// (bounded by the scheduler's window: the set is cut at each cursor).
    recorded: BTreeSet<DeliveryKey>,
}

impl Owned {
    fn new(floor: Seq) -> Self {
        Self {
            floor,
            ..Self::default()
        }
    }

    /// Whether `key` has a state message, when memory knows it.
    fn has_state(&self, key: &DeliveryKey) -> Option<bool> {
        (key.seq > self.floor).then(|| self.recorded.contains(key))
    }

    /// The cursor moved to `to`: what is at or below it is no longer kept.
    fn raise_floor(&mut self, to: Seq) {
        if to <= self.floor {
            return;
        }
        self.floor = to;
        self.recorded = self.recorded.split_off(&DeliveryKey {
            seq: to.saturating_add(1),
            generation: 0,
            webhook_id: WebhookId::from(""),
        });
    }

    fn set(&mut self, key: &DeliveryKey, state: State) {
        if key.seq > self.floor {
            self.recorded.insert(key.clone());
        }
        if let Some(old) = self.states.remove(key) {
            for (at, _) in old.due {
                self.due.remove(&(at, key.clone()));
            }
        }
        if state.due.is_empty() {
            return;
        }
        for (at, lease) in &state.due {
            let kind = if *lease {
                DueKind::Lease
            } else {
                DueKind::Scheduled
            };
            self.due.insert((*at, key.clone()), kind);
        }
        self.states.insert(key.clone(), state);
    }
}

/// The JetStream implementation of [`DeliveryStore`].
pub struct JsDeliveries {
    js: jetstream::Context,
    names: Names,
    meta: kv::Store,
    /// The state stream, for reads by subject.
    state: jetstream::stream::Stream,
    owned: Mutex<HashMap<Partition, Owned>>,
    /// Writes wait out a stream's leader election.
    failover: Failover,
}

impl JsDeliveries {
    /// Creates (or checks) the state and attempt streams.
    pub(crate) async fn open(
        js: jetstream::Context,
        names: Names,
        meta: kv::Store,
        cfg: &crate::JetStreamConfig,
    ) -> Result<Self, JetStreamError> {
        let mut opened = Vec::new();
        for (name, subjects, per_subject) in [
            (names.state_stream(), names.state_subjects(), 1),
            (names.attempt_stream(), names.attempt_subjects(), -1),
        ] {
            // Every read of these streams goes to the leader (consumers and
            // message gets): no direct gets from followers that may lag.
            let stream = crate::ensure_stream(
                &js,
                jetstream::stream::Config {
                    name,
                    subjects: vec![subjects],
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    max_age: cfg.retention,
                    max_messages_per_subject: per_subject,
                    ..Default::default()
                },
            )
            .await?;
            opened.push(stream);
        }
        let state = opened
            .into_iter()
            .next()
            .ok_or_else(|| JetStreamError::Setup {
                what: names.state_stream(),
                message: "not opened".into(),
            })?;
        Ok(Self {
            js,
            names,
            meta,
            state,
            owned: Mutex::new(HashMap::new()),
            failover: Failover::new(cfg.election_wait),
        })
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, Owned>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state_subject(&self, k: &DeliveryKey) -> String {
        self.names.state_subject(
            seq_partition(k.seq),
            &format!(
                "{:016x}.{:08x}.{}",
                k.seq,
                k.generation,
                hex(k.webhook_id.as_str())
            ),
        )
    }

    fn attempt_subject(&self, k: &DeliveryKey) -> String {
        self.names.attempt_subject(
            &hex(k.webhook_id.as_str()),
            &format!("{:016x}.{:08x}", k.seq, k.generation),
        )
    }

    /// Every delivery of `webhook` with attempts or a record (one attempt
    /// subject each), unordered.
    async fn delivery_keys(&self, webhook: &WebhookId) -> Result<Vec<(Seq, u32)>, StoreError> {
        let what = "listing deliveries";
        let stream = self
            .js
            .get_stream(self.names.attempt_stream())
            .await
            .map_err(|e| unavailable(what, e))?;
        let filter = self.names.attempt_subject(&hex(webhook.as_str()), ">");
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| unavailable(what, e))?
            .try_collect()
            .await
            .map_err(|e| unavailable(what, e))?;
        Ok(subjects
            .iter()
            .filter_map(|(s, _)| parse_attempt_subject(s))
            .collect())
    }

    /// Every message of `stream` on `filter` (the last per subject when
    /// `last_per_subject`), read with an ordered consumer.
    async fn read_all(
        &self,
        stream: String,
        filter: String,
        last_per_subject: bool,
    ) -> Result<Vec<jetstream::Message>, StoreError> {
        let policy = if last_per_subject {
            DeliverPolicy::LastPerSubject
        } else {
            DeliverPolicy::All
        };
        Ok(self.read(stream, filter, policy, usize::MAX).await?.0)
    }

    /// How many attempt messages on `filter` were written at or after
    /// `start` (an ordered consumer's pending count; nothing is read).
    async fn pending_since(
        &self,
        filter: &str,
        start: time::OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let what = "counting attempts";
        let stream = self
            .js
            .get_stream(self.names.attempt_stream())
            .await
            .map_err(|e| unavailable(what, e))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(what, e))?;
        Ok(consumer.cached_info().num_pending as usize)
    }

    /// Up to `max` messages of `stream` on `filter` from where `policy`
    /// starts, read with an ordered consumer, and whether more were left.
    async fn read(
        &self,
        stream: String,
        filter: String,
        policy: DeliverPolicy,
        max: usize,
    ) -> Result<(Vec<jetstream::Message>, bool), StoreError> {
        let what = "reading delivery state";
        let stream = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| unavailable(what, e))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter,
                deliver_policy: policy,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(what, e))?;
        let n = consumer.cached_info().num_pending as usize;
        if n == 0 || max == 0 {
            return Ok((Vec::new(), n > 0));
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(what, e))?;
        let mut out = Vec::with_capacity(n.min(max));
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| unavailable(what, e))?;
            let pending = m.info().map_err(|e| unavailable(what, e))?.pending;
            out.push(m);
            if pending == 0 {
                break;
            }
            if out.len() == max {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// Loads a partition's due index from its state messages.
    async fn load(&self, p: Partition) -> Result<(), StoreError> {
        let msgs = self
            .read_all(
                self.names.state_stream(),
                self.names.state_subject(p, ">"),
                true,
            )
            .await?;
        let mut owned = Owned::new(self.cursor_of(p).await?);
        for m in msgs {
            let key = parse_state_subject(&m.subject).ok_or(StoreError::Corrupt {
                what: "delivery state subject",
            })?;
            let state: State = codec::decode_as(LAYOUT, &m.payload, "delivery state")?;
            owned.set(&key, state);
        }
        self.owned().insert(p, owned);
        Ok(())
    }

    async fn ensure_loaded(&self, p: Partition) -> Result<(), StoreError> {
        if self.owned().contains_key(&p) {
            return Ok(());
        }
        self.load(p).await
    }

    /// The stored state of a delivery, from the stream.
    async fn fetch(&self, key: &DeliveryKey) -> Result<Option<State>, StoreError> {
        let what = "reading a delivery";
        let stream = &self.state;
        // From the stream's leader, not a follower (direct gets may be
        // answered by one that lags): a delivery just settled reads settled.
        match stream
            .get_last_raw_message_by_subject(&self.state_subject(key))
            .await
        {
            Ok(m) => Ok(Some(codec::decode_as(
                LAYOUT,
                &m.payload,
                "delivery state",
            )?)),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(unavailable(what, e)),
        }
    }

    /// Publishes every message with their acknowledgements awaited
    /// together, then resends those that failed one by one, waiting out a
    /// leader election. A resent state message changes nothing (the last
    /// per subject counts); an attempt resent after a lost answer may be
    /// listed twice, which costs less than a message id per attempt held in
    /// the servers' memory.
    async fn publish_all(
        &self,
        messages: Vec<(String, Bytes)>,
        what: &str,
    ) -> Result<(), StoreError> {
        let send = |subject: &String, payload: &Bytes| {
            self.js.send_publish(
                subject.clone(),
                jetstream::message::PublishMessage::build().payload(payload.clone()),
            )
        };
        let mut acks = Vec::with_capacity(messages.len());
        for (subject, payload) in &messages {
            acks.push(send(subject, payload).await);
        }
        let answers = join_all(acks.into_iter().map(|sent| async move {
            match sent {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            }
        }))
        .await;
        for ((subject, payload), answer) in messages.iter().zip(answers) {
            match answer {
                Ok(()) => {}
                Err(e) if !transient(&e) => return Err(unavailable(what, e)),
                Err(_) => {
                    self.failover
                        .write(|| async { send(subject, payload).await?.await })
                        .await
                        .map_err(|e| unavailable(what, e))?;
                }
            }
        }
        Ok(())
    }

    async fn apply_writes(&self, writes: &[DeliveryWrite]) -> Result<(), StoreError> {
        // Fold the batch per delivery: one state message each.
        let mut order: Vec<DeliveryKey> = Vec::new();
        let mut folded: HashMap<DeliveryKey, (State, bool)> = HashMap::new();
        let mut attempts: Vec<(String, Bytes)> = Vec::new();
        let mut cursors: BTreeMap<Partition, Seq> = BTreeMap::new();
        {
            let owned = self.owned();
            for w in writes {
                match w {
                    DeliveryWrite::Record(k, r) => {
                        let e = fold_entry(&mut folded, &mut order, &owned, k);
                        if e.0.record.is_none() {
                            // A listing marker (an empty attempt) for a
                            // delivery's first record (new to this owner, or
                            // known so far by its due entries only): the
                            // webhook's list shows deliveries with no
                            // attempt yet too.
                            attempts.push((self.attempt_subject(k), Bytes::new()));
                        }
                        e.0.record = Some(r.clone());
                        e.1 = true;
                    }
                    DeliveryWrite::Due(d) => {
                        let e = fold_entry(&mut folded, &mut order, &owned, &d.key);
                        e.0.due.retain(|(at, _)| *at != d.at_ms);
                        e.0.due.push((d.at_ms, d.kind == DueKind::Lease));
                    }
                    DeliveryWrite::Undue(at, k) => fold_entry(&mut folded, &mut order, &owned, k)
                        .0
                        .due
                        .retain(|(a, _)| a != at),
                    DeliveryWrite::Attempt(k, a) => {
                        attempts.push((self.attempt_subject(k), codec::encode(a).into()))
                    }
                    DeliveryWrite::Cursor(s) => {
                        let c = cursors.entry(seq_partition(*s)).or_insert(0);
                        *c = (*c).max(*s);
                    }
                }
            }
        }
        let mut states = Vec::with_capacity(order.len());
        for k in order {
            let Some((mut state, known)) = folded.remove(&k) else {
                continue;
            };
            if !known {
                // Due entries for a delivery this node holds no state of:
                // its record is in the stream (it has no due entries, or
                // they would be in memory).
                if state.due.is_empty() {
                    continue;
                }
                state.record = self.fetch(&k).await?.and_then(|s| s.record);
            }
            states.push((k, state));
        }
        let messages = states
            .iter()
            .map(|(k, s)| (self.state_subject(k), codec::encode_as(LAYOUT, s).into()))
            .collect();
        self.publish_all(messages, "writing delivery state").await?;
        {
            let mut owned = self.owned();
            for (k, s) in states {
                if let Some(o) = owned.get_mut(&seq_partition(k.seq)) {
                    o.set(&k, s);
                }
            }
        }
        self.publish_all(attempts, "writing attempts").await?;
        for (p, s) in cursors {
            let key = format!("cursor.{p}");
            self.failover
                .write(|| {
                    self.meta
                        .put(&key, Bytes::copy_from_slice(&s.to_be_bytes()))
                })
                .await
                .map_err(|e| unavailable("writing the dispatch cursor", e))?;
            if let Some(o) = self.owned().get_mut(&p) {
                o.raise_floor(s);
            }
        }
        Ok(())
    }

    async fn cursor_of(&self, partition: Partition) -> Result<Seq, StoreError> {
        let v = self
            .meta
            .get(format!("cursor.{partition}"))
            .await
            .map_err(|e| unavailable("reading the dispatch cursor", e))?;
        match v {
            None => Ok(0),
            Some(b) => b
                .as_ref()
                .try_into()
                .map(Seq::from_be_bytes)
                .map_err(|_| StoreError::Corrupt { what: "cursor" }),
        }
    }
}

/// An entry of an owner's due index as the trait answers it.
fn due_entry(((at, key), kind): (&(i64, DeliveryKey), &DueKind)) -> DueEntry {
    DueEntry {
        at_ms: *at,
        key: key.clone(),
        kind: *kind,
    }
}

/// The folded state of `k` in a batch: what memory holds of it at first
/// (`true` when memory held it), then each write of the batch.
fn fold_entry<'m>(
    folded: &'m mut HashMap<DeliveryKey, (State, bool)>,
    order: &mut Vec<DeliveryKey>,
    owned: &HashMap<Partition, Owned>,
    k: &DeliveryKey,
) -> &'m mut (State, bool) {
    match folded.entry(k.clone()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            order.push(k.clone());
            let known = owned
                .get(&seq_partition(k.seq))
                .and_then(|o| o.states.get(k).cloned());
            let found = known.is_some();
            v.insert((known.unwrap_or_default(), found))
        }
    }
}

/// The delivery key of a state subject `<ns>.ds.<p>.<seq>.<gen>.<webhook>`.
fn parse_state_subject(subject: &str) -> Option<DeliveryKey> {
    let mut parts = subject.rsplit('.');
    let webhook = unhex(parts.next()?)?;
    let generation = u32::from_str_radix(parts.next()?, 16).ok()?;
    let seq = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some(DeliveryKey {
        seq,
        generation,
        webhook_id: WebhookId::from(webhook.as_str()),
    })
}

/// `(seq, generation)` of an attempt subject `<ns>.att.<webhook>.<seq>.<gen>`.
/// The first `max` of `keys` as `webhook`'s delivery keys.
fn listed(webhook: &WebhookId, keys: Vec<(Seq, u32)>, max: usize) -> Vec<DeliveryKey> {
    keys.into_iter()
        .take(max)
        .map(|(seq, generation)| DeliveryKey {
            seq,
            generation,
            webhook_id: webhook.clone(),
        })
        .collect()
}

fn parse_attempt_subject(subject: &str) -> Option<(Seq, u32)> {
    let mut parts = subject.rsplit('.');
    let generation = u32::from_str_radix(parts.next()?, 16).ok()?;
    let seq = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((seq, generation))
}

impl DeliveryStore for JsDeliveries {
    fn apply<'a>(&'a self, writes: &'a [DeliveryWrite]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.apply_writes(writes))
    }

    fn record<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Option<DeliveryRecord>, StoreError>> {
        Box::pin(async move {
            let held = self.owned().get(&seq_partition(key.seq)).and_then(|o| {
                match o.states.get(key) {
                    // Pending: its state is in memory.
                    Some(s) => Some(s.record.clone()),
                    // Past the cursor and never recorded: no record.
                    None if o.has_state(key) == Some(false) => Some(None),
                    // Settled, or at or below the cursor: ask the stream.
                    None => None,
                }
            });
            match held {
                Some(r) => Ok(r),
                None => Ok(self.fetch(key).await?.and_then(|s| s.record)),
            }
        })
    }

    fn due(
        &self,
        partition: Partition,
        until_ms: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<DueEntry>, StoreError>> {
        Box::pin(async move {
            self.ensure_loaded(partition).await?;
            let owned = self.owned();
            let Some(o) = owned.get(&partition) else {
                return Ok(Vec::new());
            };
            Ok(o.due
                .iter()
                .take_while(|((at, _), _)| *at <= until_ms)
                .take(max)
                .map(due_entry)
                .collect())
        })
    }

    fn recovery_scan(
        &self,
        partition: Partition,
        leases_in: RangeInclusive<i64>,
    ) -> BoxFuture<'_, Result<(usize, Vec<DueEntry>), StoreError>> {
        Box::pin(async move {
            // A node taking a partition reads its state afresh: whatever it
            // held from an earlier ownership may have moved on.
            self.load(partition).await?;
            let owned = self.owned();
            let Some(o) = owned.get(&partition) else {
                return Ok((0, Vec::new()));
            };
            let leases = o
                .due
                .iter()
                .filter(|((at, _), kind)| **kind == DueKind::Lease && leases_in.contains(at))
                .map(due_entry)
                .collect();
            Ok((o.due.len(), leases))
        })
    }

    fn due_by_webhook(
        &self,
        partition: Partition,
    ) -> BoxFuture<'_, Result<HashMap<WebhookId, u64>, StoreError>> {
        Box::pin(async move {
            self.ensure_loaded(partition).await?;
            let owned = self.owned();
            let mut counts = HashMap::new();
            if let Some(o) = owned.get(&partition) {
                for (_, key) in o.due.keys() {
                    *counts.entry(key.webhook_id.clone()).or_insert(0u64) += 1;
                }
            }
            Ok(counts)
        })
    }

    fn attempts<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Vec<Attempt>, StoreError>> {
        Box::pin(async move {
            let msgs = self
                .read_all(
                    self.names.attempt_stream(),
                    self.attempt_subject(key),
                    false,
                )
                .await?;
            let mut out: Vec<Attempt> = Vec::with_capacity(msgs.len());
            for m in msgs.iter().filter(|m| !m.payload.is_empty()) {
                out.push(codec::decode(&m.payload, "attempt")?);
            }
            out.sort_by_key(|a| a.attempt);
            out.dedup_by_key(|a| a.attempt);
            Ok(out)
        })
    }

    /// The attempts written since `since_ms` (message time; an attempt is
    /// written when it ends, so never before it started). When there are
    /// more than `max`, the newest `max`: the start time is moved later by
    /// bisection over message times, counting what each start would read
    /// (`num_pending`) without reading it.
    fn recent_attempts<'a>(
        &'a self,
        webhook: &'a WebhookId,
        since_ms: i64,
        max: usize,
    ) -> BoxFuture<'a, Result<Recent, StoreError>> {
        Box::pin(async move {
            let filter = self.names.attempt_subject(&hex(webhook.as_str()), ">");
            let at = |ns: i128| {
                time::OffsetDateTime::from_unix_timestamp_nanos(ns)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            };
            let mut start = i128::from(since_ms) * 1_000_000;
            let truncated = self.pending_since(&filter, at(start)).await? > max;
            if truncated {
                // The latest start that still reads more than `max`, and
                // the earliest that reads at most `max`.
                let (mut more, mut fits) = (start, i128::from(now_ms() + 1_000) * 1_000_000);
                while fits - more > 1 {
                    let mid = more + (fits - more) / 2;
                    if self.pending_since(&filter, at(mid)).await? > max {
                        more = mid;
                    } else {
                        fits = mid;
                    }
                }
                start = fits;
            }
            let (msgs, _) = self
                .read(
                    self.names.attempt_stream(),
                    filter,
                    DeliverPolicy::ByStartTime {
                        start_time: at(start),
                    },
                    max,
                )
                .await?;
            let mut attempts = Vec::with_capacity(msgs.len());
            for m in msgs.iter().filter(|m| !m.payload.is_empty()) {
                let a: Attempt = codec::decode(&m.payload, "attempt")?;
                if a.started_at_ms >= since_ms {
                    attempts.push(a);
                }
            }
            Ok(Recent {
                attempts,
                truncated,
            })
        })
    }

    fn webhook_deliveries<'a>(
        &'a self,
        webhook: &'a WebhookId,
        after: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>> {
        Box::pin(async move {
            let mut keys = self.delivery_keys(webhook).await?;
            keys.retain(|k| after.is_none_or(|a| *k > a));
            keys.sort_unstable();
            Ok(listed(webhook, keys, max))
        })
    }

    fn webhook_deliveries_newest<'a>(
        &'a self,
        webhook: &'a WebhookId,
        before: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>> {
        Box::pin(async move {
            let mut keys = self.delivery_keys(webhook).await?;
            keys.retain(|k| before.is_none_or(|b| *k < b));
            keys.sort_unstable_by(|a, b| b.cmp(a));
            Ok(listed(webhook, keys, max))
        })
    }

    fn cursor(&self, partition: Partition) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(self.cursor_of(partition))
    }

    fn release(&self, partition: Partition) {
        self.owned().remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_delivery() {
        let names = Names::new("t");
        let key = DeliveryKey {
            seq: hookrelay_core::partition_seq(3, 77),
            generation: 2,
            webhook_id: WebhookId::from("wh_a.b c"),
        };
        let subject = names.state_subject(
            3,
            &format!(
                "{:016x}.{:08x}.{}",
                key.seq,
                key.generation,
                hex(key.webhook_id.as_str())
            ),
        );
        assert_eq!(parse_state_subject(&subject), Some(key.clone()));
        let att = names.attempt_subject(&hex("wh_a.b c"), &format!("{:016x}.{:08x}", key.seq, 2));
        assert_eq!(parse_attempt_subject(&att), Some((key.seq, 2)));
        assert_eq!(unhex("zz"), None);
    }
}
