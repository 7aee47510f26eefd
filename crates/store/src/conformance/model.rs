//! A model-based check of [`DeliveryStore`]: random batches of writes,
//! applied to the store and to a model made of `BTreeMap`s, then every read
//! compared between the two. [`ops`] generates the batches (proptest
//! shrinks a failing run to a short one); [`check_against_model`] runs one.
//!
//! Where the trait leaves an order open (due entries of the same time,
//! statistics attempts) the check holds the store to what is promised,
//! not to the model's order.

use crate::{DeliveryStore, DeliveryWrite, DueEntry, DueKind};
use hookrelay_core::{
    partition_seq, Attempt, DeliveryKey, DeliveryRecord, DeliveryStatus, ErrorKind, Partition, Seq,
    WebhookId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Keys the generated writes pick from.
const KEYS: u8 = 12;

/// The two webhooks of partition `p`'s deliveries: listings span
/// partitions, so each partition's run has webhooks of its own.
fn webhooks(p: Partition) -> [WebhookId; 2] {
    ["a", "b"].map(|w| WebhookId::from(format!("wh_{w}{p}").as_str()))
}

/// One generated write; keys and times are small numbers, so that writes
/// meet the same deliveries and due times tie.
#[derive(Clone, Debug)]
pub enum Write {
    /// A record for key `k`.
    Record {
        /// Which key.
        k: u8,
        /// Attempts so far.
        attempts: u8,
        /// Settled (`Delivered`/`Failed`) rather than pending.
        settled: bool,
    },
    /// A due entry for key `k` at `at` × 10 ms (with or without a record:
    /// the writes of a batch come in any order).
    Due {
        /// Which key.
        k: u8,
        /// When, in tens of ms.
        at: u8,
        /// A lease rather than a scheduled retry.
        lease: bool,
    },
    /// Removes the due entry of key `k` at `at` × 10 ms, if there is one.
    Undue {
        /// Which key.
        k: u8,
        /// When, in tens of ms.
        at: u8,
    },
    /// The next attempt of key `k`, started at `started` × 10 ms.
    Attempt {
        /// Which key.
        k: u8,
        /// When it started, in tens of ms.
        started: u8,
    },
    /// Moves the cursor on by `by`.
    Cursor {
        /// How far.
        by: u8,
    },
}

/// Batches of writes, as the scheduler applies them.
pub fn ops() -> impl Strategy<Value = Vec<Vec<Write>>> {
    let write = prop_oneof![
        3 => (0..KEYS, 0..6u8, any::<bool>())
            .prop_map(|(k, attempts, settled)| Write::Record { k, attempts, settled }),
        3 => (0..KEYS, 0..20u8, any::<bool>()).prop_map(|(k, at, lease)| Write::Due { k, at, lease }),
        2 => (0..KEYS, 0..20u8).prop_map(|(k, at)| Write::Undue { k, at }),
        2 => (0..KEYS, 0..20u8).prop_map(|(k, started)| Write::Attempt { k, started }),
        1 => (0..4u8).prop_map(|by| Write::Cursor { by }),
    ];
    prop::collection::vec(prop::collection::vec(write, 1..8), 1..12)
}

fn key(p: Partition, k: u8) -> DeliveryKey {
    DeliveryKey {
        seq: partition_seq(p, 1 + u64::from(k % 6)),
        generation: u32::from(k / 6),
        webhook_id: webhooks(p)[usize::from(k % 2)].clone(),
    }
}

/// What the store should hold.
#[derive(Default)]
pub struct Model {
    records: BTreeMap<DeliveryKey, DeliveryRecord>,
    /// `(at_ms, key)` → kind.
    due: BTreeMap<(i64, DeliveryKey), DueKind>,
    attempts: BTreeMap<DeliveryKey, Vec<Attempt>>,
    cursor: Seq,
}

impl Model {
    /// The store's write for `w`, applied to the model.
    fn write(&mut self, p: Partition, w: &Write) -> DeliveryWrite {
        match *w {
            Write::Record {
                k,
                attempts,
                settled,
            } => {
                let rec = DeliveryRecord {
                    status: match (settled, attempts % 2) {
                        (false, _) => DeliveryStatus::Pending,
                        (true, 0) => DeliveryStatus::Delivered,
                        (true, _) => DeliveryStatus::Failed,
                    },
                    attempts: u32::from(attempts),
                    next_attempt_ms: i64::from(attempts) * 100,
                    last_status_code: (attempts > 0).then_some(500),
                    last_error: (attempts > 0).then(|| "http_5xx".to_owned()),
                    event_type: "message.received".into(),
                    event_id: format!("evt_{k}"),
                    created_at_ms: 1,
                    updated_at_ms: i64::from(attempts) + 1,
                };
                self.records.insert(key(p, k), rec.clone());
                DeliveryWrite::Record(key(p, k), rec)
            }
            Write::Due { k, at, lease } => {
                let kind = if lease {
                    DueKind::Lease
                } else {
                    DueKind::Scheduled
                };
                let at_ms = i64::from(at) * 10;
                self.due.insert((at_ms, key(p, k)), kind);
                DeliveryWrite::Due(DueEntry {
                    at_ms,
                    key: key(p, k),
                    kind,
                })
            }
            Write::Undue { k, at } => {
                let at_ms = i64::from(at) * 10;
                self.due.remove(&(at_ms, key(p, k)));
                DeliveryWrite::Undue(at_ms, key(p, k))
            }
            Write::Attempt { k, started } => {
                let log = self.attempts.entry(key(p, k)).or_default();
                let a = Attempt {
                    attempt: log.len() as u32 + 1,
                    started_at_ms: i64::from(started) * 10,
                    duration_ms: 3,
                    status_code: Some(500),
                    error: Some(ErrorKind::Http5xx),
                    response_body: None,
                };
                log.push(a.clone());
                DeliveryWrite::Attempt(key(p, k), a)
            }
            Write::Cursor { by } => {
                self.cursor = partition_seq(p, 0).max(self.cursor) + u64::from(by);
                DeliveryWrite::Cursor(self.cursor)
            }
        }
    }

    fn due_entries(&self) -> Vec<(i64, DeliveryKey, DueKind)> {
        self.due
            .iter()
            .map(|((at, k), kind)| (*at, k.clone(), *kind))
            .collect()
    }

    /// The keys of `webhook` with attempts or a record, in sequence order.
    fn listed(&self, webhook: &WebhookId) -> Vec<DeliveryKey> {
        let mut keys: Vec<DeliveryKey> = self
            .records
            .keys()
            .chain(self.attempts.keys())
            .filter(|k| k.webhook_id == *webhook)
            .cloned()
            .collect();
        keys.sort_by_key(|k| (k.seq, k.generation));
        keys.dedup();
        keys
    }
}

fn entries(v: Vec<DueEntry>) -> Vec<(i64, DeliveryKey, DueKind)> {
    v.into_iter().map(|e| (e.at_ms, e.key, e.kind)).collect()
}

/// Applies `batches` to `store` (fresh and empty in partition `p`) and to
/// the model, comparing every read after each batch; returns the model,
/// for [`check_reads`] on the same state seen another way (reopened, or
/// from another node).
pub async fn check_against_model(
    store: &dyn DeliveryStore,
    p: Partition,
    batches: &[Vec<Write>],
) -> Model {
    let mut m = Model::default();
    for (i, batch) in batches.iter().enumerate() {
        let writes: Vec<DeliveryWrite> = batch.iter().map(|w| m.write(p, w)).collect();
        store.apply(&writes).await.expect("apply");
        check_reads(store, p, &m, &format!("after batch {i}")).await;
    }
    m
}

/// Compares every read of `store`'s partition `p` with `m`; `at` names
/// the moment in the failure message.
pub async fn check_reads(store: &dyn DeliveryStore, p: Partition, m: &Model, at: &str) {
    for k in 0..KEYS {
        let key = key(p, k);
        assert_eq!(
            store.record(&key).await.expect("record"),
            m.records.get(&key).cloned(),
            "{at}: record of {key:?}"
        );
        assert_eq!(
            store.attempts(&key).await.expect("attempts"),
            m.attempts.get(&key).cloned().unwrap_or_default(),
            "{at}: attempts of {key:?}"
        );
    }
    assert_eq!(
        store.cursor(p).await.expect("cursor"),
        m.cursor,
        "{at}: cursor"
    );
    check_due(store, p, m, at).await;
    for wh in webhooks(p) {
        check_listings(store, m, &wh, at).await;
    }
}

async fn check_due(store: &dyn DeliveryStore, p: Partition, m: &Model, at: &str) {
    let all = m.due_entries();
    let mut got = entries(store.due(p, i64::MAX, 1_000).await.expect("due"));
    assert!(
        got.windows(2).all(|w| w[0].0 <= w[1].0),
        "{at}: due earliest first"
    );
    got.sort();
    assert_eq!(got, all, "{at}: the whole due index");
    // A bounded read: the earliest `max` entries due by then, ties in any
    // order.
    for (until, max) in [(95, 3), (150, 100), (0, 2)] {
        let got = entries(store.due(p, until, max).await.expect("due"));
        let want: Vec<i64> = all
            .iter()
            .filter(|e| e.0 <= until)
            .take(max)
            .map(|e| e.0)
            .collect();
        assert_eq!(
            got.iter().map(|e| e.0).collect::<Vec<_>>(),
            want,
            "{at}: due({until}, {max}) times"
        );
        assert!(
            got.iter().all(|e| all.contains(e)),
            "{at}: due({until}, {max}) entries"
        );
    }
    let window = 50..=120;
    let (count, leases) = store.recovery_scan(p, window.clone()).await.expect("scan");
    assert_eq!(count, all.len(), "{at}: recovery count");
    let mut leases = entries(leases);
    leases.sort();
    let want: Vec<_> = all
        .iter()
        .filter(|e| e.2 == DueKind::Lease && window.contains(&e.0))
        .cloned()
        .collect();
    assert_eq!(leases, want, "{at}: leases in {window:?}");
    let mut per_webhook: HashMap<WebhookId, u64> = HashMap::new();
    for e in &all {
        *per_webhook.entry(e.1.webhook_id.clone()).or_default() += 1;
    }
    let mut got = store.due_by_webhook(p).await.expect("by webhook");
    got.retain(|_, n| *n > 0);
    assert_eq!(got, per_webhook, "{at}: due entries per webhook");
}

async fn check_listings(store: &dyn DeliveryStore, m: &Model, wh: &WebhookId, at: &str) {
    let listed = m.listed(wh);
    assert_eq!(
        store.webhook_deliveries(wh, None, 100).await.expect("list"),
        listed,
        "{at}: deliveries of {wh}"
    );
    if let Some(first) = listed.first() {
        assert_eq!(
            store
                .webhook_deliveries(wh, Some((first.seq, first.generation)), 100)
                .await
                .expect("list"),
            listed[1..],
            "{at}: deliveries of {wh} after the first"
        );
        assert_eq!(
            store.webhook_deliveries(wh, None, 1).await.expect("list"),
            listed[..1],
            "{at}: one delivery of {wh}"
        );
    }
    let mut newest = listed.clone();
    newest.reverse();
    assert_eq!(
        store
            .webhook_deliveries_newest(wh, None, 100)
            .await
            .expect("list"),
        newest,
        "{at}: deliveries of {wh}, newest first"
    );
    if let Some(last) = listed.last() {
        assert_eq!(
            store
                .webhook_deliveries_newest(wh, Some((last.seq, last.generation)), 100)
                .await
                .expect("list"),
            newest[1..],
            "{at}: deliveries of {wh} before the newest"
        );
    }
    let since = 50;
    let mut want: Vec<(i64, u32)> = m
        .attempts
        .iter()
        .filter(|(k, _)| k.webhook_id == *wh)
        .flat_map(|(_, log)| log.iter())
        .filter(|a| a.started_at_ms >= since)
        .map(|a| (a.started_at_ms, a.attempt))
        .collect();
    want.sort_unstable();
    let recent = store
        .recent_attempts(wh, since, 1_000)
        .await
        .expect("recent");
    let mut got: Vec<(i64, u32)> = recent
        .attempts
        .iter()
        .map(|a| (a.started_at_ms, a.attempt))
        .collect();
    got.sort_unstable();
    assert_eq!(got, want, "{at}: attempts of {wh} since {since}");
    assert!(!recent.truncated, "{at}: nothing left out below the bound");
}
