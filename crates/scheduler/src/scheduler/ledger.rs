//! The scheduler's ledger: the deliveries queued or in flight, the dispatch
//! window, the pending counts and the writes waiting for the next flush.
//! Its transitions take the time as an argument and say what the loop must
//! do about them; the loop around it does the I/O (reads, flushes, the
//! workers' channel) and keeps the lanes.

use super::pending::{Held, Pending};
use crate::window::Window;
use hookrelay_core::{
    metric, AttemptReport, AttemptResult, DeliveryKey, DeliveryRecord, DeliveryStatus,
    PendingShares, Webhook,
};
use hookrelay_store::{ConfigStore, DeliveryWrite, DueEntry, DueKind};
use std::{collections::HashMap, sync::Arc};

/// What the scheduler remembers of a delivery it has queued or in flight.
pub(super) struct Active {
    /// Number of the attempt queued or in flight.
    pub(super) attempt: u32,
    /// Once the delivery has a record, the due time of the entry that holds
    /// it while it is attempted: its lease, or the scheduled entry it fell
    /// due by. `None` while it is a first attempt held only by the window.
    pub(super) lease_at: Option<i64>,
    /// When the attempt was handed to the workers (`None` while queued here).
    pub(super) sent_at_ms: Option<i64>,
    /// The lane (target host) it is queued or in flight in.
    pub(super) host: Arc<str>,
    pub(super) event_id: Arc<str>,
    pub(super) event_type: Arc<str>,
    pub(super) created_at_ms: i64,
}

pub(super) struct Ledger {
    /// Deliveries queued here or in flight, by key.
    pub(super) active: HashMap<DeliveryKey, Active>,
    /// Events whose first attempts are not all settled, in order.
    pub(super) window: Window,
    /// How many deliveries are pending, and the tenants' shares of them.
    pub(super) pending: Pending,
    /// Writes waiting for the next flush, in order.
    pub(super) writes: Vec<DeliveryWrite>,
}

/// What a report means for the loop.
pub(super) struct Reported {
    /// The lane the attempt ran in: it has room again.
    pub(super) host: Arc<str>,
    /// The delivery's webhook, as configured now.
    pub(super) webhook: Option<Arc<Webhook>>,
}

/// The record of `a` after `attempts` attempts, `status`, changed at `now`.
pub(super) fn record_for(
    a: &Active,
    attempts: u32,
    status: DeliveryStatus,
    now: i64,
) -> DeliveryRecord {
    DeliveryRecord {
        status,
        attempts,
        next_attempt_ms: 0,
        last_status_code: None,
        last_error: None,
        event_type: a.event_type.to_string(),
        event_id: a.event_id.to_string(),
        created_at_ms: a.created_at_ms,
        updated_at_ms: now,
    }
}

impl Ledger {
    /// Nothing in flight, counting into the node's `shares`.
    pub(super) fn new(shares: Arc<PendingShares>) -> Self {
        Self {
            active: HashMap::new(),
            window: Window::default(),
            pending: Pending::new(shares),
            writes: Vec::new(),
        }
    }

    /// Puts a queued delivery off by `delay_ms` from `now` without
    /// spending an attempt (its lane is too far behind): a pending record
    /// due then, in place of what held it.
    pub(super) fn defer(&mut self, key: &DeliveryKey, now: i64, delay_ms: i64) {
        let Some(a) = self.active.remove(key) else {
            return;
        };
        if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, key.clone()));
        } else {
            self.window.settle(key);
            self.pending.recorded();
        }
        let mut rec = record_for(&a, a.attempt - 1, DeliveryStatus::Pending, now);
        rec.next_attempt_ms = now + delay_ms;
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
        self.writes.push(DeliveryWrite::Due(DueEntry {
            at_ms: now + delay_ms,
            key: key.clone(),
            kind: DueKind::Scheduled,
        }));
    }

    /// Ends, at `now`, a queued delivery whose webhook is gone or inactive.
    pub(super) fn cancel(&mut self, config: &dyn ConfigStore, key: &DeliveryKey, now: i64) {
        let Some(a) = self.active.remove(key) else {
            return;
        };
        let held = if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, key.clone()));
            Held::Record
        } else {
            self.window.settle(key);
            Held::Window
        };
        self.pending.settled(config, &key.webhook_id, held);
        let rec = record_for(&a, a.attempt - 1, DeliveryStatus::Cancelled, now);
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
    }

    /// A first attempt still unsettled when its event leaves the window, at
    /// `now`: a record and a lease due at `lease_at` hold it from now on,
    /// so the cursor can move past its event.
    pub(super) fn spill(&mut self, key: &DeliveryKey, now: i64, lease_at: i64) {
        self.window.settle(key);
        let Some(a) = self.active.get_mut(key) else {
            return;
        };
        let mut rec = record_for(a, a.attempt - 1, DeliveryStatus::Pending, now);
        rec.next_attempt_ms = lease_at;
        a.lease_at = Some(lease_at);
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
        self.writes.push(DeliveryWrite::Due(DueEntry {
            at_ms: lease_at,
            key: key.clone(),
            kind: DueKind::Lease,
        }));
        self.pending.recorded();
    }

    /// The records of a replay step, each with its due entry (at the
    /// record's own time: the due scan treats any other as a stale
    /// schedule); a delivery queued or in flight here is left alone.
    pub(super) fn replayed(
        &mut self,
        config: &dyn ConfigStore,
        entries: Vec<(DeliveryKey, DeliveryRecord)>,
    ) {
        for (key, rec) in entries {
            if self.active.contains_key(&key) {
                continue;
            }
            let at_ms = rec.next_attempt_ms;
            self.pending.scheduled(config, &key.webhook_id);
            self.writes.push(DeliveryWrite::Record(key.clone(), rec));
            self.writes.push(DeliveryWrite::Due(DueEntry {
                at_ms,
                key,
                kind: DueKind::Scheduled,
            }));
        }
    }

    /// A worker's report of an attempt, at `now`: the attempt is logged;
    /// the delivery it belongs to (unless a later attempt superseded it) is
    /// settled, or scheduled again by its webhook's retry policy. `None`
    /// for a superseded attempt (logged only).
    pub(super) fn report(
        &mut self,
        config: &dyn ConfigStore,
        r: AttemptReport,
        now: i64,
    ) -> Option<Reported> {
        self.writes
            .push(DeliveryWrite::Attempt(r.key.clone(), r.attempt.clone()));
        if self.active.get(&r.key).map(|a| a.attempt) != Some(r.attempt.attempt) {
            // An attempt whose lease expired (and was counted as a timeout)
            // answered late: its real outcome replaces the log entry; the
            // delivery has moved on.
            tracing::warn!(delivery = %r.key.id(), attempt = r.attempt.attempt, "late report of a superseded attempt; attempt logged only");
            return None;
        }
        let a = self.active.remove(&r.key)?;
        let held = if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, r.key.clone()));
            Held::Record
        } else {
            self.window.settle(&r.key);
            Held::Window
        };
        self.pending.settled(config, &r.key.webhook_id, held);
        let webhook = config.webhook(&r.key.webhook_id);
        let reported = Reported {
            host: a.host.clone(),
            webhook: webhook.clone(),
        };
        let n = a.attempt;
        let mut rec = match r.result {
            AttemptResult::Delivered => {
                if a.lease_at.is_none() {
                    // The happy path: the attempt log entry is the only write.
                    return Some(reported);
                }
                record_for(&a, n, DeliveryStatus::Delivered, now)
            }
            AttemptResult::Failed { retry_after_ms } => match webhook.as_deref() {
                Some(w) if w.active && n <= w.retry_attempts => {
                    let delay = w.retry_policy.next_delay_ms(n, retry_after_ms);
                    let next = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX / 2));
                    let mut rec = record_for(&a, n, DeliveryStatus::Pending, now);
                    rec.next_attempt_ms = next;
                    self.writes.push(DeliveryWrite::Due(DueEntry {
                        at_ms: next,
                        key: r.key.clone(),
                        kind: DueKind::Scheduled,
                    }));
                    self.pending.scheduled(config, &r.key.webhook_id);
                    rec
                }
                Some(w) if w.active => {
                    metrics::counter!(metric::DELIVERIES_FAILED).increment(1);
                    record_for(&a, n, DeliveryStatus::Failed, now)
                }
                _ => record_for(&a, n, DeliveryStatus::Cancelled, now),
            },
        };
        rec.last_status_code = r.attempt.status_code;
        rec.last_error = r.attempt.error.map(|e| e.as_str().to_owned());
        self.writes.push(DeliveryWrite::Record(r.key, rec));
        Some(reported)
    }
}

#[cfg(test)]
mod tests {
    //! The report transition on its own: no loop, no timers, the time given.
    use super::*;
    use crate::window::WindowEvent;
    use hookrelay_core::{Attempt, ErrorKind, WebhookId};
    use std::time::Duration;

    const NOW: i64 = 1_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: hookrelay_sled::Store,
        ledger: Ledger,
    }

    /// A ledger with webhook `wh_a` (two retries, from 1 s) configured.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = hookrelay_sled::Store::open(dir.path()).expect("open");
        let mut webhook = crate::tests::webhook("wh_a", &["*"]);
        webhook.url = "https://a.example".into();
        webhook.retry_policy.base_delay_ms = 1_000;
        // Setting up the configuration is the only async step.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(store.config.put_webhook(webhook))
            .expect("webhook");
        Fixture {
            _dir: dir,
            store,
            ledger: Ledger::new(Arc::default()),
        }
    }

    fn key(seq: u64) -> DeliveryKey {
        DeliveryKey {
            seq,
            generation: 0,
            webhook_id: WebhookId::from("wh_a"),
        }
    }

    /// Attempt `attempt` of `key` in flight, held by `lease_at` (or, with
    /// none, by the window as a first attempt).
    fn in_flight(f: &mut Fixture, key: &DeliveryKey, attempt: u32, lease_at: Option<i64>) {
        let config = &*f.store.config;
        match lease_at {
            None => {
                f.ledger.window.push(WindowEvent {
                    seq: key.seq,
                    unsettled: vec![key.clone()],
                    entered: tokio::time::Instant::now(),
                });
                f.ledger.pending.created(config, &key.webhook_id);
            }
            Some(_) => f.ledger.pending.scheduled(config, &key.webhook_id),
        }
        f.ledger.active.insert(
            key.clone(),
            Active {
                attempt,
                lease_at,
                sent_at_ms: Some(NOW - 10),
                host: "https://a.example".into(),
                event_id: "evt_1".into(),
                event_type: "message.received".into(),
                created_at_ms: 5,
            },
        );
    }

    fn report(key: &DeliveryKey, attempt: u32, ok: bool) -> AttemptReport {
        AttemptReport {
            key: key.clone(),
            attempt: Attempt {
                attempt,
                started_at_ms: NOW - 10,
                duration_ms: 10,
                status_code: Some(if ok { 200 } else { 503 }),
                error: (!ok).then_some(ErrorKind::Http5xx),
                response_body: None,
            },
            elapsed: Duration::from_millis(10),
            result: if ok {
                AttemptResult::Delivered
            } else {
                AttemptResult::Failed {
                    retry_after_ms: None,
                }
            },
        }
    }

    #[test]
    fn a_delivered_first_attempt_writes_only_its_attempt() {
        let mut f = fixture();
        let k = key(1);
        in_flight(&mut f, &k, 1, None);
        let r = f
            .ledger
            .report(&*f.store.config, report(&k, 1, true), NOW)
            .expect("reported");
        assert_eq!(&*r.host, "https://a.example");
        assert!(r.webhook.is_some());
        assert!(matches!(f.ledger.writes[..], [DeliveryWrite::Attempt(..)]));
        assert_eq!(f.ledger.pending.total(), 0);
        assert_eq!(
            f.ledger.window.pop_settled(),
            Some(1),
            "the window moves on"
        );
        assert!(f.ledger.active.is_empty());
    }

    #[test]
    fn a_failed_attempt_with_retries_left_is_scheduled_by_the_policy() {
        let mut f = fixture();
        let k = key(2);
        in_flight(&mut f, &k, 1, None);
        f.ledger.report(&*f.store.config, report(&k, 1, false), NOW);
        let w = &f.ledger.writes;
        assert_eq!(w.len(), 3, "{w:?}");
        let DeliveryWrite::Due(due) = &w[1] else {
            panic!("a due entry: {w:?}")
        };
        // The first retry waits the base delay, ±20 % jitter.
        assert!((NOW + 800..=NOW + 1_200).contains(&due.at_ms), "{due:?}");
        assert_eq!(due.kind, DueKind::Scheduled);
        let DeliveryWrite::Record(_, rec) = &w[2] else {
            panic!("a record: {w:?}")
        };
        assert_eq!(rec.status, DeliveryStatus::Pending);
        assert_eq!((rec.attempts, rec.next_attempt_ms), (1, due.at_ms));
        assert_eq!(rec.last_status_code, Some(503));
        assert_eq!(rec.last_error.as_deref(), Some("http_5xx"));
        assert_eq!(
            f.ledger.pending.total(),
            1,
            "still pending, now by a record"
        );
        assert_eq!(f.ledger.pending.records(), 1);
    }

    #[test]
    fn the_last_attempt_failing_fails_the_delivery_and_frees_its_lease() {
        let mut f = fixture();
        let k = key(3);
        in_flight(&mut f, &k, 3, Some(NOW + 60_000));
        f.ledger.report(&*f.store.config, report(&k, 3, false), NOW);
        let w = &f.ledger.writes;
        assert!(
            matches!(&w[1], DeliveryWrite::Undue(at, _) if *at == NOW + 60_000),
            "{w:?}"
        );
        let DeliveryWrite::Record(_, rec) = &w[2] else {
            panic!("a record: {w:?}")
        };
        assert_eq!((rec.status, rec.attempts), (DeliveryStatus::Failed, 3));
        assert_eq!(f.ledger.pending.total(), 0);
    }

    #[test]
    fn a_deferred_first_attempt_becomes_a_pending_record_without_spending_an_attempt() {
        let mut f = fixture();
        let k = key(5);
        in_flight(&mut f, &k, 1, None);
        f.ledger.defer(&k, NOW, 5_000);
        let w = &f.ledger.writes;
        let (DeliveryWrite::Record(_, rec), DeliveryWrite::Due(due)) = (&w[0], &w[1]) else {
            panic!("a record and its due entry: {w:?}")
        };
        assert_eq!((rec.status, rec.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!((rec.next_attempt_ms, due.at_ms), (NOW + 5_000, NOW + 5_000));
        assert_eq!(f.ledger.pending.total(), 1);
        assert_eq!(f.ledger.pending.records(), 1, "held by its record now");
        assert_eq!(f.ledger.window.pop_settled(), Some(5));
    }

    #[test]
    fn a_cancelled_retry_frees_its_lease_and_leaves_the_count() {
        let mut f = fixture();
        let k = key(6);
        in_flight(&mut f, &k, 2, Some(NOW + 9_000));
        f.ledger.cancel(&*f.store.config, &k, NOW);
        let w = &f.ledger.writes;
        assert!(matches!(&w[0], DeliveryWrite::Undue(at, _) if *at == NOW + 9_000));
        let DeliveryWrite::Record(_, rec) = &w[1] else {
            panic!("a record: {w:?}")
        };
        assert_eq!((rec.status, rec.attempts), (DeliveryStatus::Cancelled, 1));
        assert_eq!(f.ledger.pending.total(), 0);
    }

    #[test]
    fn a_spilled_first_attempt_is_held_by_a_record_and_a_lease() {
        let mut f = fixture();
        let k = key(7);
        in_flight(&mut f, &k, 1, None);
        f.ledger.spill(&k, NOW, NOW + 6_000);
        let w = &f.ledger.writes;
        let (DeliveryWrite::Record(_, rec), DeliveryWrite::Due(due)) = (&w[0], &w[1]) else {
            panic!("a record and its lease: {w:?}")
        };
        assert_eq!((rec.status, rec.attempts), (DeliveryStatus::Pending, 0));
        assert_eq!((due.at_ms, due.kind), (NOW + 6_000, DueKind::Lease));
        assert_eq!(f.ledger.active[&k].lease_at, Some(NOW + 6_000));
        assert_eq!(f.ledger.window.pop_settled(), Some(7));
        assert_eq!(
            (f.ledger.pending.total(), f.ledger.pending.records()),
            (1, 1)
        );
        // Its report now frees the lease and writes the outcome.
        f.ledger
            .report(&*f.store.config, report(&k, 1, true), NOW + 10);
        assert!(matches!(&f.ledger.writes[3], DeliveryWrite::Undue(at, _) if *at == NOW + 6_000));
        assert_eq!(f.ledger.pending.total(), 0);
    }

    #[test]
    fn replayed_records_are_due_at_their_own_time_and_skip_what_is_in_flight() {
        let mut f = fixture();
        in_flight(&mut f, &key(8), 1, None);
        let entries = [8, 9]
            .map(|n| {
                (
                    key(n),
                    DeliveryRecord::pending("message.received", "evt_r", NOW),
                )
            })
            .to_vec();
        f.ledger.replayed(&*f.store.config, entries);
        let w = &f.ledger.writes;
        assert_eq!(w.len(), 2, "the one in flight is left alone: {w:?}");
        assert!(matches!(&w[1], DeliveryWrite::Due(d) if d.at_ms == NOW && d.key == key(9)));
        assert_eq!(f.ledger.pending.total(), 2);
    }

    #[test]
    fn a_superseded_attempt_is_logged_and_changes_nothing_else() {
        let mut f = fixture();
        let k = key(4);
        in_flight(&mut f, &k, 2, Some(NOW + 60_000));
        assert!(f
            .ledger
            .report(&*f.store.config, report(&k, 1, true), NOW)
            .is_none());
        assert!(matches!(f.ledger.writes[..], [DeliveryWrite::Attempt(..)]));
        assert_eq!(f.ledger.active[&k].attempt, 2);
        assert_eq!(f.ledger.pending.total(), 1);
    }
}
