//! Delivery state: records for deliveries that outlived their first attempt,
//! the due index, the attempt log and the dispatch cursor.
//!
//! Writes come in batches from the scheduler and are not fsynced one by one:
//! Records and due entries live in one tree (`state`, keys prefixed `r` and
//! `d`) so that one atomic batch changes both: a crash can never leave a
//! pending record without its due entry, or a due entry pointing at a record
//! that moved on. [`DeliveryStore::apply`] writes that batch, then attempts,
//! then the cursor, so sled's prefix recovery never keeps a cursor without the
//! records it depends on.

use crate::{keys, OrIo};
use hookrelay_core::{Attempt, DeliveryKey, DeliveryRecord, Partition, Seq, WebhookId};
use hookrelay_store::{
    codec, BoxFuture, DeliveryStore, DeliveryWrite, DueEntry, DueKind, Recent, StoreError,
};
use std::{
    collections::{HashMap, HashSet},
    ops::RangeInclusive,
    sync::Mutex,
};

/// Key prefix of records in the `state` tree.
pub(crate) const REC: u8 = b'r';
/// Key prefix of due entries in the `state` tree.
const DUE: u8 = b'd';
/// Key of the due index's size in the `state` tree, rewritten in every
/// batch that changes the index: a restart then knows how many deliveries
/// are pending without reading a million entries (u64, big-endian).
const DUE_COUNT: &[u8] = b"c";
/// Key prefix of the due index's size per webhook in the `state` tree
/// (`C` ++ webhook id → u64, big-endian; no key for a webhook with none),
/// rewritten with `c`. The prefix alone is the marker that the counts are
/// kept: a directory written before them is counted once at first need.
const DUE_BY_WEBHOOK: &[u8] = b"C";

fn webhook_count_key(id: &WebhookId) -> Vec<u8> {
    let mut out = DUE_BY_WEBHOOK.to_vec();
    out.extend_from_slice(id.as_str().as_bytes());
    out
}

pub(crate) fn record_key(k: &DeliveryKey) -> Vec<u8> {
    let mut out = vec![REC];
    out.extend_from_slice(&keys::delivery(k));
    out
}

fn due_key(at_ms: i64, k: &DeliveryKey) -> Vec<u8> {
    let mut out = vec![DUE];
    out.extend_from_slice(&keys::due(at_ms, k));
    out
}

/// Attempt number of the listing marker (real attempts count from 1).
const LISTED: u32 = 0;

const LEASE: u8 = 1;
const SCHEDULED: u8 = 0;

/// sled implementation of [`DeliveryStore`].
pub struct SledDeliveries {
    meta: sled::Tree,
    /// Records (`r` ++ delivery key) and due entries (`d` ++ due key).
    state: sled::Tree,
    attempts: sled::Tree,
    /// The due index's size as last written (`None` until first needed).
    due_count: Mutex<Option<u64>>,
    /// Its size per webhook as last written (`None` until first needed).
    due_by_webhook: Mutex<Option<HashMap<WebhookId, u64>>>,
    /// Delivery writes may use the free-space reserve, but an I/O failure
    /// is noted (it is sticky in sled).
    health: crate::Health,
}

impl SledDeliveries {
    pub(crate) fn open(
        db: &sled::Db,
        meta: sled::Tree,
        health: crate::Health,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            meta,
            state: db.open_tree("state").io()?,
            attempts: db.open_tree("attempts").io()?,
            due_count: Mutex::new(None),
            due_by_webhook: Mutex::new(None),
            health,
        })
    }

    /// The due index's size: as written with the index, or counted once
    /// (a directory written before the count was kept) and written.
    fn due_count(&self) -> Result<u64, StoreError> {
        let mut known = self.due_count.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = *known {
            return Ok(n);
        }
        let n = match self.state.get(DUE_COUNT).io()? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { what: "due count" })?,
            ),
            None => {
                let mut n = 0u64;
                for item in self.state.scan_prefix([DUE]) {
                    item.io()?;
                    n += 1;
                }
                self.health
                    .note(self.state.insert(DUE_COUNT, &n.to_be_bytes()).io())?;
                n
            }
        };
        *known = Some(n);
        Ok(n)
    }

    /// The due index's size per webhook: as written with the index, or
    /// counted once (a directory written before the counts were kept) and
    /// written, with the marker.
    fn with_due_by_webhook<T>(
        &self,
        f: impl FnOnce(&mut HashMap<WebhookId, u64>) -> T,
    ) -> Result<T, StoreError> {
        let mut known = self
            .due_by_webhook
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if known.is_none() {
            let mut counts = HashMap::new();
            if self.state.contains_key(DUE_BY_WEBHOOK).io()? {
                for item in self.state.scan_prefix(DUE_BY_WEBHOOK) {
                    let (k, v) = item.io()?;
                    let Some(id) = k.get(DUE_BY_WEBHOOK.len()..).filter(|id| !id.is_empty()) else {
                        continue;
                    };
                    let id = std::str::from_utf8(id).map_err(|_| StoreError::Corrupt {
                        what: "due count key",
                    })?;
                    let n = u64::from_be_bytes(
                        v.as_ref()
                            .try_into()
                            .map_err(|_| StoreError::Corrupt { what: "due count" })?,
                    );
                    counts.insert(WebhookId::from(id), n);
                }
            } else {
                for item in self.state.scan_prefix([DUE]) {
                    let (k, _) = item.io()?;
                    let (_, key) =
                        keys::parse_due(&k[1..]).ok_or(StoreError::Corrupt { what: "due key" })?;
                    *counts.entry(key.webhook_id).or_insert(0u64) += 1;
                }
                let mut batch = sled::Batch::default();
                for (id, n) in &counts {
                    batch.insert(webhook_count_key(id), &n.to_be_bytes());
                }
                batch.insert(DUE_BY_WEBHOOK, &[]);
                self.health.note(self.state.apply_batch(batch).io())?;
            }
            *known = Some(counts);
        }
        Ok(f(known.get_or_insert_with(HashMap::new)))
    }

    /// Writes one flush of the scheduler. Records and due entries go in one
    /// batch (atomic together), and only when there are any: every sled
    /// batch writes out and syncs the log buffer twice (sled 0.34 rolls it
    /// before and after pinning the batch), which the happy path, whose only
    /// writes are attempts and the cursor, need not pay. Attempts are single
    /// inserts: each stands alone, and sled recovers a prefix of the write
    /// order, so an attempt never survives a crash that lost a state change
    /// written before it.
    fn write(
        &self,
        state: Option<sled::Batch>,
        attempts: Vec<(Vec<u8>, Vec<u8>)>,
        cursor: Option<u64>,
    ) -> Result<(), sled::Error> {
        if let Some(state) = state {
            self.state.apply_batch(state)?;
        }
        for (k, v) in attempts {
            self.attempts.insert(k, v)?;
        }
        if let Some(s) = cursor {
            self.meta.insert(keys::META_CURSOR, &s.to_be_bytes())?;
        }
        Ok(())
    }

    fn parse_due_entry(k: &[u8], v: &[u8]) -> Result<DueEntry, StoreError> {
        let (at_ms, key) = keys::parse_due(k).ok_or(StoreError::Corrupt { what: "due key" })?;
        let kind = if v.first() == Some(&LEASE) {
            DueKind::Lease
        } else {
            DueKind::Scheduled
        };
        Ok(DueEntry { at_ms, key, kind })
    }
}

/// The synchronous sled calls behind [`DeliveryStore`] (one partition).
impl SledDeliveries {
    /// See [`DeliveryStore::apply`].
    pub fn apply(&self, writes: &[DeliveryWrite]) -> Result<(), StoreError> {
        // Records and due entries in one batch: atomic together.
        let mut state = sled::Batch::default();
        let mut attempts = Vec::new();
        let mut cursor = None;
        // The due index's size moves with the batch, by what each change
        // finds (an entry written twice or removed twice counts once).
        let mut index = IndexChanges::default();
        // Deliveries with an attempt in this batch, gathered only when a
        // record is written: the happy path's flushes (attempts and the
        // cursor) build nothing.
        let attempted: HashSet<&DeliveryKey> = if writes
            .iter()
            .any(|w| matches!(w, DeliveryWrite::Record(..)))
        {
            writes
                .iter()
                .filter_map(|w| match w {
                    DeliveryWrite::Attempt(k, _) => Some(k),
                    _ => None,
                })
                .collect()
        } else {
            HashSet::new()
        };
        for w in writes {
            match w {
                DeliveryWrite::Record(k, r) => {
                    state.insert(record_key(k), codec::encode(r));
                    // A listing marker (attempt 0, empty): the webhook's
                    // delivery list shows deliveries with no attempt yet
                    // (replayed, deferred) too. An attempt written with the
                    // record lists it already (an outcome: the record of a
                    // failure or of a retry's success).
                    if !attempted.contains(k) {
                        attempts.push((keys::attempt(k, LISTED), Vec::new()));
                    }
                }
                DeliveryWrite::Due(e) => {
                    let v = if e.kind == DueKind::Lease {
                        LEASE
                    } else {
                        SCHEDULED
                    };
                    let key = due_key(e.at_ms, &e.key);
                    index.set(&self.state, &key, &e.key.webhook_id, true)?;
                    state.insert(key, &[v]);
                }
                DeliveryWrite::Undue(at, k) => {
                    let key = due_key(*at, k);
                    index.set(&self.state, &key, &k.webhook_id, false)?;
                    state.remove(key);
                }
                DeliveryWrite::Attempt(k, a) => {
                    attempts.push((keys::attempt(k, a.attempt), codec::encode(a)));
                }
                DeliveryWrite::Cursor(s) => cursor = Some(cursor.unwrap_or(0).max(*s)),
            }
        }
        let count = if index.seen.is_empty() {
            None
        } else {
            let n = self.due_count()?.saturating_add_signed(index.delta);
            state.insert(DUE_COUNT, &n.to_be_bytes());
            Some(n)
        };
        let per_webhook: Vec<(WebhookId, u64)> = if index.by_webhook.values().any(|d| *d != 0) {
            self.with_due_by_webhook(|known| {
                index
                    .by_webhook
                    .iter()
                    .filter(|(_, d)| **d != 0)
                    .map(|(id, d)| {
                        let n = known
                            .get(id)
                            .copied()
                            .unwrap_or(0)
                            .saturating_add_signed(*d);
                        (id.clone(), n)
                    })
                    .collect()
            })?
        } else {
            Vec::new()
        };
        for (id, n) in &per_webhook {
            if *n == 0 {
                state.remove(webhook_count_key(id));
            } else {
                state.insert(webhook_count_key(id), &n.to_be_bytes());
            }
        }
        let state = writes.iter().any(DeliveryWrite::is_state).then_some(state);
        self.health.note(self.write(state, attempts, cursor).io())?;
        if let Some(n) = count {
            *self.due_count.lock().unwrap_or_else(|p| p.into_inner()) = Some(n);
        }
        if !per_webhook.is_empty() {
            self.with_due_by_webhook(|known| {
                for (id, n) in per_webhook {
                    if n == 0 {
                        known.remove(&id);
                    } else {
                        known.insert(id, n);
                    }
                }
            })?;
        }
        Ok(())
    }

    /// See [`DeliveryStore`].
    pub fn record(&self, key: &DeliveryKey) -> Result<Option<DeliveryRecord>, StoreError> {
        self.state
            .get(record_key(key))
            .io()?
            .map(|v| codec::decode(&v, "delivery"))
            .transpose()
    }

    /// See [`DeliveryStore`].
    pub fn due(&self, until_ms: i64, max: usize) -> Result<Vec<DueEntry>, StoreError> {
        fail::fail_point!("store::due", |_| Err(crate::injected()));
        let mut end = vec![DUE];
        end.extend_from_slice(&(until_ms.max(0) as u64).saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for item in self.state.range([DUE].as_slice()..end.as_slice()).take(max) {
            let (k, v) = item.io()?;
            out.push(Self::parse_due_entry(&k[1..], &v)?);
        }
        Ok(out)
    }

    /// See [`DeliveryStore`].
    pub fn recovery_scan(
        &self,
        leases_in: RangeInclusive<i64>,
    ) -> Result<(usize, Vec<DueEntry>), StoreError> {
        let count = usize::try_from(self.due_count()?).unwrap_or(usize::MAX);
        let bound = |ms: i64| {
            let mut k = vec![DUE];
            k.extend_from_slice(&(ms.max(0) as u64).to_be_bytes());
            k
        };
        let (from, to) = leases_in.into_inner();
        let mut leases = Vec::new();
        if from <= to {
            let end = bound(to.saturating_add(1).max(0));
            for item in self.state.range(bound(from)..end) {
                let (k, v) = item.io()?;
                if v.first() == Some(&LEASE) {
                    leases.push(Self::parse_due_entry(&k[1..], &v)?);
                }
            }
        }
        Ok((count, leases))
    }

    /// See [`DeliveryStore::due_by_webhook`].
    pub fn due_by_webhook(&self) -> Result<HashMap<WebhookId, u64>, StoreError> {
        self.with_due_by_webhook(|known| known.clone())
    }

    /// See [`DeliveryStore`].
    pub fn attempts(&self, key: &DeliveryKey) -> Result<Vec<Attempt>, StoreError> {
        let mut prefix = keys::attempt_prefix(&key.webhook_id);
        prefix.extend_from_slice(&key.seq.to_be_bytes());
        prefix.extend_from_slice(&key.generation.to_be_bytes());
        let mut out = Vec::new();
        for item in self.attempts.scan_prefix(prefix) {
            let (_, v) = item.io()?;
            if !v.is_empty() {
                out.push(codec::decode(&v, "attempt")?);
            }
        }
        Ok(out)
    }

    /// See [`DeliveryStore`].
    pub fn webhook_deliveries(
        &self,
        webhook: &WebhookId,
        after: Option<(Seq, u32)>,
        max: usize,
    ) -> Result<Vec<DeliveryKey>, StoreError> {
        let prefix = keys::attempt_prefix(webhook);
        let mut start = prefix.clone();
        if let Some((seq, generation)) = after {
            // Past every attempt of the `after` delivery.
            start.extend_from_slice(&seq.to_be_bytes());
            start.extend_from_slice(&generation.to_be_bytes());
            start.extend_from_slice(&[0xff; 4]);
        }
        let mut end = prefix.clone();
        end.pop();
        end.push(1);
        Self::distinct(webhook, &prefix, self.attempts.range(start..end), max)
    }

    /// See [`DeliveryStore`].
    pub fn webhook_deliveries_newest(
        &self,
        webhook: &WebhookId,
        before: Option<(Seq, u32)>,
        max: usize,
    ) -> Result<Vec<DeliveryKey>, StoreError> {
        let prefix = keys::attempt_prefix(webhook);
        let end = match before {
            // Short of the first attempt key of the `before` delivery.
            Some((seq, generation)) => {
                let mut end = prefix.clone();
                end.extend_from_slice(&seq.to_be_bytes());
                end.extend_from_slice(&generation.to_be_bytes());
                end
            }
            None => {
                let mut end = prefix.clone();
                end.pop();
                end.push(1);
                end
            }
        };
        Self::distinct(
            webhook,
            &prefix,
            self.attempts.range(prefix.clone()..end).rev(),
            max,
        )
    }

    /// The distinct deliveries of attempt keys under `prefix`, in the order
    /// `keys` gives them, at most `max`.
    fn distinct(
        webhook: &WebhookId,
        prefix: &[u8],
        keys: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        max: usize,
    ) -> Result<Vec<DeliveryKey>, StoreError> {
        let corrupt = || StoreError::Corrupt {
            what: "attempt key",
        };
        let mut out: Vec<DeliveryKey> = Vec::new();
        for item in keys {
            let (k, _) = item.io()?;
            let rest = k.strip_prefix(prefix).ok_or_else(corrupt)?;
            if rest.len() != 16 {
                return Err(corrupt());
            }
            let seq = Seq::from_be_bytes(rest[..8].try_into().map_err(|_| corrupt())?);
            let generation = u32::from_be_bytes(rest[8..12].try_into().map_err(|_| corrupt())?);
            if out
                .last()
                .is_some_and(|l| l.seq == seq && l.generation == generation)
            {
                continue;
            }
            if out.len() == max {
                break;
            }
            out.push(DeliveryKey {
                seq,
                generation,
                webhook_id: webhook.clone(),
            });
        }
        Ok(out)
    }

    /// See [`DeliveryStore`]: the webhook's attempt keys newest delivery
    /// first (keys are in log order, so a retry of an old delivery can sit
    /// behind older first attempts), reading at most `max` attempts.
    pub fn recent_attempts(
        &self,
        webhook: &WebhookId,
        since_ms: i64,
        max: usize,
    ) -> Result<Recent, StoreError> {
        let mut out = Recent::default();
        let mut read = 0;
        for item in self
            .attempts
            .scan_prefix(keys::attempt_prefix(webhook))
            .rev()
        {
            let (_, v) = item.io()?;
            if v.is_empty() {
                continue;
            }
            if read == max {
                out.truncated = true;
                break;
            }
            read += 1;
            let a: Attempt = codec::decode(&v, "attempt")?;
            if a.started_at_ms >= since_ms {
                out.attempts.push(a);
            }
        }
        Ok(out)
    }

    /// See [`DeliveryStore`].
    pub fn cursor(&self) -> Result<Seq, StoreError> {
        Ok(match self.meta.get(keys::META_CURSOR).io()? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(Seq::from_be_bytes)
                .map_err(|_| StoreError::Corrupt { what: "cursor" })?,
            None => 0,
        })
    }
}

/// The due-index changes of one batch: whether each key touched is there
/// after it, and by how much the index grows.
#[derive(Default)]
struct IndexChanges {
    seen: HashMap<Vec<u8>, bool>,
    delta: i64,
    by_webhook: HashMap<WebhookId, i64>,
}

impl IndexChanges {
    /// Notes that `key`, an entry of `webhook`'s, is (`present`) or is not
    /// there after this change.
    fn set(
        &mut self,
        tree: &sled::Tree,
        key: &[u8],
        webhook: &WebhookId,
        present: bool,
    ) -> Result<(), StoreError> {
        let was = match self.seen.get(key) {
            Some(&p) => p,
            None => tree.contains_key(key).io()?,
        };
        let d = i64::from(present) - i64::from(was);
        self.delta += d;
        if d != 0 {
            match self.by_webhook.get_mut(webhook) {
                Some(n) => *n += d,
                None => {
                    self.by_webhook.insert(webhook.clone(), d);
                }
            }
        }
        self.seen.insert(key.to_vec(), present);
        Ok(())
    }
}

/// sled's reads are quick in-memory or page-cache lookups, done on the
/// calling task; there is one partition.
impl DeliveryStore for SledDeliveries {
    fn apply<'a>(&'a self, writes: &'a [DeliveryWrite]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { SledDeliveries::apply(self, writes) })
    }

    fn record<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Option<DeliveryRecord>, StoreError>> {
        Box::pin(async move { SledDeliveries::record(self, key) })
    }

    fn due(
        &self,
        _partition: Partition,
        until_ms: i64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<DueEntry>, StoreError>> {
        Box::pin(async move { SledDeliveries::due(self, until_ms, max) })
    }

    fn due_by_webhook(
        &self,
        _partition: Partition,
    ) -> BoxFuture<'_, Result<HashMap<WebhookId, u64>, StoreError>> {
        Box::pin(async move { SledDeliveries::due_by_webhook(self) })
    }

    fn recovery_scan(
        &self,
        _partition: Partition,
        leases_in: RangeInclusive<i64>,
    ) -> BoxFuture<'_, Result<(usize, Vec<DueEntry>), StoreError>> {
        Box::pin(async move { SledDeliveries::recovery_scan(self, leases_in) })
    }

    fn attempts<'a>(
        &'a self,
        key: &'a DeliveryKey,
    ) -> BoxFuture<'a, Result<Vec<Attempt>, StoreError>> {
        Box::pin(async move { SledDeliveries::attempts(self, key) })
    }

    fn webhook_deliveries<'a>(
        &'a self,
        webhook: &'a WebhookId,
        after: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>> {
        Box::pin(async move { SledDeliveries::webhook_deliveries(self, webhook, after, max) })
    }

    fn recent_attempts<'a>(
        &'a self,
        webhook: &'a WebhookId,
        since_ms: i64,
        max: usize,
    ) -> BoxFuture<'a, Result<Recent, StoreError>> {
        Box::pin(async move { SledDeliveries::recent_attempts(self, webhook, since_ms, max) })
    }

    fn webhook_deliveries_newest<'a>(
        &'a self,
        webhook: &'a WebhookId,
        before: Option<(Seq, u32)>,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<DeliveryKey>, StoreError>> {
        Box::pin(
            async move { SledDeliveries::webhook_deliveries_newest(self, webhook, before, max) },
        )
    }

    fn cursor(&self, _partition: Partition) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(async move { SledDeliveries::cursor(self) })
    }
}

#[cfg(test)]
mod tests {
    use super::{DUE_BY_WEBHOOK, DUE_COUNT};
    use crate::Store;
    use hookrelay_core::{DeliveryKey, WebhookId};
    use hookrelay_store::{DeliveryWrite, DueEntry, DueKind};

    const ALL: std::ops::RangeInclusive<i64> = i64::MIN..=i64::MAX;

    fn key(seq: u64) -> DeliveryKey {
        DeliveryKey {
            seq,
            generation: 0,
            webhook_id: WebhookId::from("wh_count"),
        }
    }

    fn due(seq: u64, at_ms: i64) -> DeliveryWrite {
        DeliveryWrite::Due(DueEntry {
            at_ms,
            key: key(seq),
            kind: DueKind::Scheduled,
        })
    }

    #[test]
    fn a_record_written_with_its_attempt_needs_no_listing_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let record = hookrelay_store::conformance::record(1);
        let attempt = hookrelay_core::Attempt {
            attempt: 1,
            started_at_ms: 1,
            duration_ms: 1,
            status_code: Some(500),
            error: None,
            response_body: None,
        };
        s.deliveries
            .apply(&[
                DeliveryWrite::Attempt(key(1), attempt),
                DeliveryWrite::Record(key(1), record.clone()),
                DeliveryWrite::Record(key(2), record),
            ])
            .expect("apply");
        // One attempt, and one marker for the record written without one.
        assert_eq!(s.deliveries.attempts.len(), 2);
        let listed = s
            .deliveries
            .webhook_deliveries(&key(1).webhook_id, None, 10)
            .expect("list");
        assert_eq!(listed, vec![key(1), key(2)]);
    }

    #[tokio::test]
    async fn the_due_count_survives_a_restart_and_is_counted_once_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.deliveries
                .apply(&(1..=5).map(|n| due(n, 100 + n as i64)).collect::<Vec<_>>())
                .expect("apply");
            assert_eq!(s.deliveries.recovery_scan(ALL).expect("scan").0, 5);
            s.flush().await.expect("flush");
        }
        let s = crate::reopen(dir.path());
        assert_eq!(s.deliveries.recovery_scan(ALL).expect("scan").0, 5);
        // A directory written before the count was kept: counted, then kept.
        s.deliveries.state.remove(DUE_COUNT).expect("remove");
        s.flush().await.expect("flush");
        drop(s);
        let s = crate::reopen(dir.path());
        assert_eq!(s.deliveries.recovery_scan(ALL).expect("scan").0, 5);
        assert!(s.deliveries.state.contains_key(DUE_COUNT).expect("get"));
        s.deliveries
            .apply(&[DeliveryWrite::Undue(101, key(1))])
            .expect("apply");
        s.flush().await.expect("flush");
        drop(s);
        let s = crate::reopen(dir.path());
        assert_eq!(s.deliveries.recovery_scan(ALL).expect("scan").0, 4);
    }

    fn due_of(webhook: &str, seq: u64, at_ms: i64) -> DeliveryWrite {
        DeliveryWrite::Due(DueEntry {
            at_ms,
            key: DeliveryKey {
                seq,
                generation: 0,
                webhook_id: WebhookId::from(webhook),
            },
            kind: DueKind::Scheduled,
        })
    }

    #[tokio::test]
    async fn the_due_count_per_webhook_survives_a_restart_and_is_counted_once_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let counts = |s: &Store| {
            let mut c: Vec<_> = s
                .deliveries
                .due_by_webhook()
                .expect("counts")
                .into_iter()
                .map(|(w, n)| (w.0, n))
                .collect();
            c.sort();
            c
        };
        {
            let s = Store::open(dir.path()).expect("open");
            let mut writes: Vec<_> = (1..=3).map(|n| due_of("wh_a", n, 100)).collect();
            writes.push(due_of("wh_b", 9, 100));
            // The same entry twice counts once; a removal of one never
            // written counts nothing.
            writes.push(due_of("wh_b", 9, 100));
            writes.push(DeliveryWrite::Undue(5, key(77)));
            s.deliveries.apply(&writes).expect("apply");
            s.deliveries
                .apply(&[DeliveryWrite::Undue(
                    100,
                    DeliveryKey {
                        seq: 1,
                        generation: 0,
                        webhook_id: WebhookId::from("wh_a"),
                    },
                )])
                .expect("apply");
            assert_eq!(counts(&s), vec![("wh_a".into(), 2), ("wh_b".into(), 1)]);
            s.flush().await.expect("flush");
        }
        let s = crate::reopen(dir.path());
        assert_eq!(counts(&s), vec![("wh_a".into(), 2), ("wh_b".into(), 1)]);
        // A directory written before the counts were kept: counted once.
        for item in s.deliveries.state.scan_prefix(DUE_BY_WEBHOOK) {
            let (k, _) = item.expect("item");
            s.deliveries.state.remove(k).expect("remove");
        }
        s.flush().await.expect("flush");
        drop(s);
        let s = crate::reopen(dir.path());
        assert_eq!(counts(&s), vec![("wh_a".into(), 2), ("wh_b".into(), 1)]);
        assert!(s
            .deliveries
            .state
            .contains_key(DUE_BY_WEBHOOK)
            .expect("get"));
    }

    #[tokio::test]
    async fn passes_the_delivery_store_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        hookrelay_store::conformance::check_deliveries(&*s.deliveries, 0).await;
    }

    use hookrelay_store::conformance::model;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Random batches of writes read back as a `BTreeMap` model says,
        /// through every query, and again once flushed and reopened.
        #[test]
        fn behaves_as_the_model(batches in model::ops()) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                let m = {
                    let s = Store::open(dir.path()).expect("open");
                    let m = model::check_against_model(&*s.deliveries, 0, &batches).await;
                    s.flush().await.expect("flush");
                    m
                };
                let s = crate::reopen(dir.path());
                model::check_reads(&*s.deliveries, 0, &m, "after a reopen").await;
            });
        }
    }
}
