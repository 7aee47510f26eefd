//! Scheduler behaviour against a real store and a scripted fake worker, in
//! paused time: the scheduler's clock follows tokio's, so retries, leases
//! and ticks come as soon as the runtime has nothing else to do.

use crate::{Scheduler, SchedulerChannels, SchedulerConfig};
use hookrelay_core::{
    Attempt, AttemptReport, AttemptResult, Catalog, Clock, DeliveryConfig, DeliveryStatus,
    DeliveryTask, DeviceId, Event, OrgId, Progress, RetryPolicy, Webhook, WebhookId,
};
use hookrelay_sled::Store;
use hookrelay_store::ConfigStore;
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub(crate) fn webhook(id: &str, events: &[&str]) -> Webhook {
    Webhook {
        id: WebhookId::from(id),
        org_id: OrgId::from("org_1"),
        device_id: DeviceId::from("dev"),
        name: String::new(),
        url: "https://example.com".into(),
        events: events.iter().map(|s| (*s).to_owned()).collect(),
        active: true,
        primary: false,
        retry_attempts: 2,
        timeout_secs: 5,
        retry_policy: RetryPolicy {
            base_delay_ms: 20,
            ..RetryPolicy::default()
        },
        headers: Default::default(),
        secret: None,
        previous_secrets: Vec::new(),
        rate_limit: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        failing_since_ms: None,
        scope: Default::default(),
        number: 0,
        event_names: Default::default(),
    }
}

fn event(i: u32, ty: &str) -> Event {
    Event {
        id: format!("evt_{i}"),
        device_id: "dev".into(),
        event_type: ty.into(),
        occurred_at_ms: 1000,
        data: "{}".into(),
    }
}

struct Running {
    tasks: mpsc::Receiver<DeliveryTask>,
    reports: mpsc::Sender<AttemptReport>,
    progress: watch::Receiver<Progress>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    control: crate::SchedulerHandle,
}

fn start(store: &Store) -> Running {
    start_with(
        store,
        SchedulerConfig {
            tick: Duration::from_millis(5),
            ..SchedulerConfig::default()
        },
        DeliveryConfig {
            lease_margin: Duration::from_secs(1),
            ..DeliveryConfig::default()
        },
    )
}

fn start_with(store: &Store, cfg: SchedulerConfig, delivery: DeliveryConfig) -> Running {
    start_sharing(store, cfg, delivery, Arc::default())
}

fn start_sharing(
    store: &Store,
    cfg: SchedulerConfig,
    delivery: DeliveryConfig,
    shares: Arc<hookrelay_core::PendingShares>,
) -> Running {
    let (task_tx, tasks) = mpsc::channel(64);
    let (reports, report_rx) = mpsc::channel(64);
    let (progress_tx, progress) = watch::channel(Progress::default());
    let s = Scheduler::new(
        store.log.clone(),
        store.config.clone(),
        store.deliveries.clone(),
        Arc::new(Catalog::builtin()),
        cfg,
        &delivery,
    )
    .with_shares(shares)
    .with_clock(Clock::following_tokio());
    let control = s.handle();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let ch = SchedulerChannels {
        tasks: task_tx,
        reports: report_rx,
        progress: progress_tx,
    };
    let handle = tokio::spawn(async move {
        s.run(ch, token).await.expect("scheduler");
    });
    Running {
        tasks,
        reports,
        progress,
        stop,
        handle,
        control,
    }
}

fn report(t: &DeliveryTask, ok: bool) -> AttemptReport {
    AttemptReport {
        key: t.key.clone(),
        attempt: Attempt {
            attempt: t.attempt,
            started_at_ms: 0,
            duration_ms: 1,
            status_code: Some(if ok { 200 } else { 500 }),
            error: None,
            response_body: None,
        },
        elapsed: Duration::from_millis(1),
        result: if ok {
            AttemptResult::Delivered
        } else {
            AttemptResult::Failed {
                retry_after_ms: None,
            }
        },
    }
}

/// Logs event 1 (`message.received`) and makes it durable.
async fn log_one_event(store: &Store) {
    store
        .log
        .insert_chunk(vec![event(1, "message.received")], vec![], 1)
        .expect("append");
    store.log.sync().await.expect("sync");
}

/// A fresh store holding `w` and event 1 (`message.received`), durable;
/// the directory lives as long as the first of the pair.
async fn store_with(w: Webhook) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.config.put_webhook(w).await.expect("wh");
    log_one_event(&store).await;
    (dir, store)
}

async fn next(r: &mut Running) -> DeliveryTask {
    tokio::time::timeout(Duration::from_secs(5), r.tasks.recv())
        .await
        .expect("a task in time")
        .expect("channel open")
}

#[tokio::test(start_paused = true)]
async fn fans_out_retries_to_failure_and_moves_the_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .config
        .put_webhook(webhook("wh_a", &["message.*"]))
        .await
        .expect("wh");
    store
        .config
        .put_webhook(webhook("wh_b", &["call.offer"]))
        .await
        .expect("wh");
    store
        .log
        .insert_chunk(
            vec![
                event(1, "message.received"),
                event(2, "call.offer"),
                event(3, "chat.pin"),
            ],
            vec![],
            1,
        )
        .expect("append");
    store.log.sync().await.expect("sync");
    let mut r = start(&store);

    let t1 = next(&mut r).await;
    let t2 = next(&mut r).await;
    assert_eq!((t1.key.seq, t1.key.webhook_id.as_str()), (1, "wh_a"));
    assert_eq!((t2.key.seq, t2.key.webhook_id.as_str()), (2, "wh_b"));
    assert!(String::from_utf8_lossy(&t1.envelope).contains("\"id\":\"evt_1\""));
    r.reports.send(report(&t1, true)).await.expect("send");
    // wh_b fails every time: 1 + retry_attempts (2) attempts, then failed.
    let mut t = t2;
    for n in 1..=3 {
        assert_eq!(t.attempt, n);
        r.reports.send(report(&t, false)).await.expect("send");
        if n < 3 {
            t = next(&mut r).await;
        }
    }
    // The cursor passes all three events: 1 delivered, 2 recorded, 3 matched nothing.
    tokio::time::timeout(
        Duration::from_secs(5),
        r.progress.wait_for(|p| p.cursor == 3),
    )
    .await
    .expect("cursor in time")
    .expect("watch");
    let key_b = t.key.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rec = store.deliveries.record(&key_b).expect("record");
        if rec.as_ref().map(|r| r.status) == Some(DeliveryStatus::Failed) {
            assert_eq!(rec.map(|r| r.attempts), Some(3));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never failed: {rec:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    assert_eq!(
        store.deliveries.attempts(&key_b).expect("attempts").len(),
        3
    );
    assert_eq!(
        store.deliveries.attempts(&t1.key).expect("attempts").len(),
        1
    );
    // The happy path wrote no record.
    assert_eq!(store.deliveries.record(&t1.key).expect("record"), None);
    assert_eq!(store.deliveries.cursor().expect("cursor"), 3);
    assert!(r.tasks.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_retry_right_after_a_failure_sees_it_though_its_write_waits_for_its_turn() {
    use hookrelay_store::DeliveryControl;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    for id in ["wh_a", "wh_b"] {
        let mut w = webhook(id, &["message.*"]);
        w.retry_attempts = 0;
        store.config.put_webhook(w).await.expect("wh");
    }
    log_one_event(&store).await;
    let mut r = start(&store);
    let a = next(&mut r).await;
    let b = next(&mut r).await;
    // Two failures in a row: the second's record waits up to 5 ms for
    // others to share its write; the retry must see it anyway.
    r.reports.send(report(&a, false)).await.expect("send");
    r.reports.send(report(&b, false)).await.expect("send");
    tokio::task::yield_now().await;
    r.control
        .retry(b.key.clone())
        .await
        .expect("retry of a failed delivery");
    let again = next(&mut r).await;
    assert_eq!((again.key.clone(), again.attempt), (b.key.clone(), 2));
    r.stop.cancel();
    r.handle.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn unanswered_first_attempts_are_dispatched_again_after_restart() {
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    let mut r = start(&store);
    let first = next(&mut r).await;
    // Stop without answering: as if the process died mid-attempt.
    r.stop.cancel();
    r.handle.await.expect("join");
    assert_eq!(store.deliveries.cursor().expect("cursor"), 0);

    let mut r = start(&store);
    let again = next(&mut r).await;
    assert_eq!(again.key, first.key, "same delivery id after restart");
    assert_eq!(again.attempt, 1);
    r.reports.send(report(&again, true)).await.expect("send");
    tokio::time::timeout(
        Duration::from_secs(5),
        r.progress.wait_for(|p| p.cursor == 1),
    )
    .await
    .expect("cursor in time")
    .expect("watch");
    r.stop.cancel();
    r.handle.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_spilled_delivery_in_flight_comes_back_through_its_lease() {
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    // The report sender stays alive but silent: the attempt is never answered.
    let mut r = start_with(
        &store,
        SchedulerConfig {
            tick: Duration::from_millis(5),
            spill_after: Duration::from_millis(20),
            ..SchedulerConfig::default()
        },
        DeliveryConfig {
            lease_margin: Duration::from_secs(1),
            ..DeliveryConfig::default()
        },
    );
    let t = tokio::time::timeout(Duration::from_secs(5), r.tasks.recv())
        .await
        .expect("task")
        .expect("open");
    // Never answered: the window spills it to a record, and the cursor moves on.
    tokio::time::timeout(
        Duration::from_secs(5),
        r.progress.wait_for(|p| p.cursor == 1),
    )
    .await
    .expect("cursor in time")
    .expect("watch");
    let rec = store
        .deliveries
        .record(&t.key)
        .expect("record")
        .expect("spilled record");
    assert_eq!(rec.status, DeliveryStatus::Pending);
    assert_eq!(rec.attempts, 0);
    r.stop.cancel();
    r.handle.await.expect("join");
    assert_eq!(
        store
            .deliveries
            .recovery_scan(i64::MIN..=i64::MAX)
            .expect("scan")
            .1
            .len(),
        1
    );

    // Restart: the lease is released at once and the same delivery is retried.
    let mut r = start(&store);
    let again = next(&mut r).await;
    assert_eq!(again.key, t.key);
    assert_eq!(again.attempt, 1);
    r.reports.send(report(&again, true)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store
        .deliveries
        .record(&t.key)
        .expect("rec")
        .map(|r| r.status)
        != Some(DeliveryStatus::Delivered)
    {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    assert!(store
        .deliveries
        .recovery_scan(i64::MIN..=i64::MAX)
        .expect("scan")
        .1
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_makes_a_hung_attempt_due_again() {
    let mut w = webhook("wh_a", &["*"]);
    w.timeout_secs = 1;
    let (_dir, store) = store_with(w).await;
    // The report sender stays alive but silent: the attempt is never answered.
    let mut r = start_with(
        &store,
        SchedulerConfig {
            tick: Duration::from_millis(5),
            spill_after: Duration::from_millis(20),
            ..SchedulerConfig::default()
        },
        DeliveryConfig {
            // Lease = timeout (1 s) + no margin.
            lease_margin: Duration::ZERO,
            ..DeliveryConfig::default()
        },
    );
    let first = tokio::time::timeout(Duration::from_secs(5), r.tasks.recv())
        .await
        .expect("task")
        .expect("open");
    assert_eq!(first.attempt, 1);
    // The worker hangs: no report. The lease expires and attempt 2 is dispatched.
    let second = tokio::time::timeout(Duration::from_secs(5), r.tasks.recv())
        .await
        .expect("task")
        .expect("open");
    assert_eq!(second.key, first.key);
    assert_eq!(second.attempt, 2);
    // A late failure of attempt 1 changes nothing (it must not count as
    // attempt 2's outcome and schedule a third); attempt 2's success delivers.
    r.reports.send(report(&first, false)).await.expect("send");
    r.reports.send(report(&second, true)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store
        .deliveries
        .record(&first.key)
        .expect("rec")
        .map(|r| r.status)
        != Some(DeliveryStatus::Delivered)
    {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    let rec = store
        .deliveries
        .record(&first.key)
        .expect("rec")
        .expect("record");
    assert_eq!(rec.attempts, 2);
    let log = store.deliveries.attempts(&first.key).expect("attempts");
    assert_eq!(log.len(), 2);
    assert!(r.tasks.try_recv().is_err(), "no third attempt");
    // Attempt 1's entry holds its real (late) outcome, not the synthetic timeout.
    assert_eq!(log[0].status_code, Some(500));
}

/// Writes pending retries (one failed attempt each) of logged events: a
/// record and a scheduled due entry per `(seq, webhook, due ms)`, and the
/// cursor past them.
fn pending_retries(store: &Store, retries: &[(u64, &str, i64)]) {
    use hookrelay_core::{DeliveryKey, DeliveryRecord};
    use hookrelay_store::{DeliveryWrite, DueEntry, DueKind};
    let mut writes = Vec::new();
    for &(seq, wh, at) in retries {
        let key = DeliveryKey {
            seq,
            generation: 0,
            webhook_id: WebhookId::from(wh),
        };
        let record = DeliveryRecord {
            status: DeliveryStatus::Pending,
            attempts: 1,
            next_attempt_ms: at,
            last_status_code: Some(500),
            last_error: None,
            event_type: "message.received".into(),
            event_id: format!("evt_{seq}"),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        writes.push(DeliveryWrite::Record(key.clone(), record));
        writes.push(DeliveryWrite::Due(DueEntry {
            at_ms: at,
            key,
            kind: DueKind::Scheduled,
        }));
    }
    let last = retries.iter().map(|r| r.0).max().unwrap_or(0);
    writes.push(DeliveryWrite::Cursor(last));
    store.deliveries.apply(&writes).expect("apply");
}

/// Logs `n` events of type `message.received`, numbered from 1.
async fn log_events(store: &Store, n: u32) {
    let events = (1..=n).map(|i| event(i, "message.received")).collect();
    store.log.insert_chunk(events, vec![], 1).expect("append");
    store.log.sync().await.expect("sync");
}

#[tokio::test(start_paused = true)]
async fn due_work_of_another_host_behind_a_full_lane_is_not_starved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    for (id, url) in [("wh_a", "https://a.example"), ("wh_b", "https://b.example")] {
        let mut w = webhook(id, &["message.*"]);
        w.url = url.into();
        store.config.put_webhook(w).await.expect("wh");
    }
    log_events(&store, 21).await;
    // Twenty retries of host a are due, and one of host b falls due once
    // a's lane is full.
    let b_due = Clock::following_tokio().unix_ms() + 300;
    let mut retries: Vec<_> = (1..=20).map(|seq| (seq, "wh_a", seq as i64)).collect();
    retries.push((21, "wh_b", b_due));
    pending_retries(&store, &retries);
    // Host a takes one attempt at a time (never answered here) and its
    // lane holds two: every shallow read of the due index (two batches of
    // four) finds only a's full lane; b's entry is within the full depth
    // (eight batches).
    let mut r = start_with(
        &store,
        SchedulerConfig {
            tick: Duration::from_millis(5),
            due_batch: 4,
            lane_queue: 2,
            ..SchedulerConfig::default()
        },
        DeliveryConfig {
            lease_margin: Duration::from_secs(1),
            per_host_concurrency: 1,
            per_host_concurrency_min: 1,
            adaptive_concurrency: false,
            ..DeliveryConfig::default()
        },
    );
    let mut from_a = 0;
    loop {
        let t = next(&mut r).await;
        if t.key.webhook_id.as_str() == "wh_b" {
            assert_eq!(t.key.seq, 21);
            break;
        }
        from_a += 1;
    }
    assert_eq!(from_a, 1, "host a has one attempt in flight at a time");
    r.stop.cancel();
    r.handle.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_due_backlog_larger_than_a_batch_is_taken_without_waiting_a_tick_per_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .config
        .put_webhook(webhook("wh_a", &["message.*"]))
        .await
        .expect("wh");
    log_events(&store, 12).await;
    let retries: Vec<_> = (1..=12).map(|seq| (seq, "wh_a", seq as i64)).collect();
    pending_retries(&store, &retries);
    // Three batches of four are due; a tick is a second.
    let mut r = start_with(
        &store,
        SchedulerConfig {
            tick: Duration::from_secs(1),
            due_batch: 4,
            ..SchedulerConfig::default()
        },
        DeliveryConfig::default(),
    );
    let started = tokio::time::Instant::now();
    for _ in 0..12 {
        next(&mut r).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the three batches took {:?}",
        started.elapsed()
    );
    r.stop.cancel();
    r.handle.await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_retry_in_flight_leaves_its_record_and_comes_back_through_its_lease() {
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    let mut r = start(&store);
    let first = next(&mut r).await;
    r.reports.send(report(&first, false)).await.expect("send");
    // The retry goes out (its record says when it fell due) and is never
    // answered: the scheduler stops as if the process died mid-attempt.
    let second = next(&mut r).await;
    assert_eq!((second.key.clone(), second.attempt), (first.key.clone(), 2));
    r.stop.cancel();
    r.handle.await.expect("join");
    let rec = store
        .deliveries
        .record(&first.key)
        .expect("record")
        .expect("a record after a failure");
    assert_eq!((rec.status, rec.attempts), (DeliveryStatus::Pending, 1));

    let mut r = start(&store);
    let again = next(&mut r).await;
    assert_eq!((again.key.clone(), again.attempt), (first.key.clone(), 2));
    r.reports.send(report(&again, true)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rec = store.deliveries.record(&first.key).expect("record");
        if rec.as_ref().map(|r| r.status) == Some(DeliveryStatus::Delivered) {
            assert_eq!(rec.map(|r| r.attempts), Some(2));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rec:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    assert_eq!(
        store
            .deliveries
            .attempts(&first.key)
            .expect("attempts")
            .len(),
        2,
        "the unanswered attempt left no entry; its retry did"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_lease_already_due_at_start_is_sent_by_the_due_scan() {
    use hookrelay_core::{DeliveryKey, DeliveryRecord};
    use hookrelay_store::{DeliveryWrite, DueEntry, DueKind};
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    // A retry was in flight when the process died, long enough ago that
    // its lease is due: the recovery's window leaves it to the due scan.
    let key = DeliveryKey {
        seq: 1,
        generation: 0,
        webhook_id: WebhookId::from("wh_a"),
    };
    let now = Clock::following_tokio().unix_ms();
    let record = DeliveryRecord {
        status: DeliveryStatus::Pending,
        attempts: 1,
        next_attempt_ms: now - 70_000,
        last_status_code: Some(500),
        last_error: None,
        event_type: "message.received".into(),
        event_id: "evt_1".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    store
        .deliveries
        .apply(&[
            DeliveryWrite::Record(key.clone(), record),
            DeliveryWrite::Due(DueEntry {
                at_ms: now - 1_000,
                key: key.clone(),
                kind: DueKind::Lease,
            }),
            DeliveryWrite::Cursor(1),
        ])
        .expect("apply");
    let mut r = start(&store);
    let t = next(&mut r).await;
    assert_eq!((t.key.clone(), t.attempt), (key.clone(), 2));
    r.reports.send(report(&t, true)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store
        .deliveries
        .record(&key)
        .expect("record")
        .map(|r| r.status)
        != Some(DeliveryStatus::Delivered)
    {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    assert_eq!(
        store
            .deliveries
            .recovery_scan(i64::MIN..=i64::MAX)
            .expect("scan")
            .0,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_retry_held_by_its_scheduled_entry_counts_as_a_timeout() {
    let mut w = webhook("wh_a", &["*"]);
    w.timeout_secs = 1;
    let (_dir, store) = store_with(w).await;
    let mut r = start_with(
        &store,
        SchedulerConfig {
            tick: Duration::from_millis(5),
            ..SchedulerConfig::default()
        },
        DeliveryConfig {
            // Lease = timeout (1 s) + no margin.
            lease_margin: Duration::ZERO,
            ..DeliveryConfig::default()
        },
    );
    let first = next(&mut r).await;
    r.reports.send(report(&first, false)).await.expect("send");
    // The retry goes out from its scheduled entry and is never answered:
    // once its timeout has passed it counts as one, and the next goes out.
    let second = next(&mut r).await;
    assert_eq!((second.key.clone(), second.attempt), (first.key.clone(), 2));
    let third = next(&mut r).await;
    assert_eq!((third.key.clone(), third.attempt), (first.key.clone(), 3));
    r.reports.send(report(&third, true)).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store
        .deliveries
        .record(&first.key)
        .expect("rec")
        .map(|r| r.status)
        != Some(DeliveryStatus::Delivered)
    {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop.cancel();
    r.handle.await.expect("join");
    let log = store.deliveries.attempts(&first.key).expect("attempts");
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].error, Some(hookrelay_core::ErrorKind::Timeout));
    assert_eq!(
        store
            .deliveries
            .recovery_scan(i64::MIN..=i64::MAX)
            .expect("scan")
            .0,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn tenant_shares_follow_pending_deliveries_and_come_back_after_a_restart() {
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    store
        .log
        .insert_chunk(
            vec![event(2, "message.received"), event(3, "message.received")],
            vec![],
            2,
        )
        .expect("append");
    store.log.sync().await.expect("sync");
    let shares = Arc::new(hookrelay_core::PendingShares::new(
        hookrelay_core::ShareLimits::default(),
    ));
    let cfg = || SchedulerConfig {
        tick: Duration::from_millis(5),
        ..SchedulerConfig::default()
    };
    let delivery = || DeliveryConfig {
        lease_margin: Duration::from_secs(1),
        ..DeliveryConfig::default()
    };
    let (wh, org) = (WebhookId::from("wh_a"), OrgId::from("org_1"));
    let counted = |n: u64| {
        let shares = shares.clone();
        let (wh, org) = (wh.clone(), org.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(5), async {
                while (shares.webhook(&wh), shares.organization(&org)) != (n, n) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "expected {n} pending, counted {} for the webhook and {} for its organization",
                    shares.webhook(&wh),
                    shares.organization(&org)
                )
            });
        }
    };
    let mut r = start_sharing(&store, cfg(), delivery(), shares.clone());
    let tasks = [next(&mut r).await, next(&mut r).await, next(&mut r).await];
    counted(3).await;
    // A success settles one; failures keep theirs pending (retries).
    r.reports.send(report(&tasks[0], true)).await.expect("send");
    r.reports
        .send(report(&tasks[1], false))
        .await
        .expect("send");
    r.reports
        .send(report(&tasks[2], false))
        .await
        .expect("send");
    counted(2).await;
    // A stopped scheduler takes its part back out.
    r.stop.cancel();
    r.handle.await.expect("join");
    counted(0).await;
    // After a restart the count starts from the store.
    let r = start_sharing(&store, cfg(), delivery(), shares.clone());
    counted(2).await;
    r.stop.cancel();
    r.handle.await.expect("join");
}

/// The sled store, but its first `fail` cursor reads fail as a stalled
/// backend's do (a partition taken over while a NATS server is dead).
struct StallingAtStart {
    inner: Arc<dyn hookrelay_store::DeliveryStore>,
    fail: std::sync::atomic::AtomicU32,
}

impl hookrelay_store::DeliveryStore for StallingAtStart {
    fn apply<'a>(
        &'a self,
        writes: &'a [hookrelay_store::DeliveryWrite],
    ) -> hookrelay_store::BoxFuture<'a, Result<(), hookrelay_store::StoreError>> {
        hookrelay_store::DeliveryStore::apply(&*self.inner, writes)
    }
    fn record<'a>(
        &'a self,
        key: &'a hookrelay_core::DeliveryKey,
    ) -> hookrelay_store::BoxFuture<
        'a,
        Result<Option<hookrelay_core::DeliveryRecord>, hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::record(&*self.inner, key)
    }
    fn due(
        &self,
        p: hookrelay_core::Partition,
        until_ms: i64,
        max: usize,
    ) -> hookrelay_store::BoxFuture<
        '_,
        Result<Vec<hookrelay_store::DueEntry>, hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::due(&*self.inner, p, until_ms, max)
    }
    fn recovery_scan(
        &self,
        p: hookrelay_core::Partition,
        leases_in: std::ops::RangeInclusive<i64>,
    ) -> hookrelay_store::BoxFuture<
        '_,
        Result<(usize, Vec<hookrelay_store::DueEntry>), hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::recovery_scan(&*self.inner, p, leases_in)
    }
    fn due_by_webhook(
        &self,
        p: hookrelay_core::Partition,
    ) -> hookrelay_store::BoxFuture<
        '_,
        Result<std::collections::HashMap<WebhookId, u64>, hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::due_by_webhook(&*self.inner, p)
    }
    fn attempts<'a>(
        &'a self,
        key: &'a hookrelay_core::DeliveryKey,
    ) -> hookrelay_store::BoxFuture<'a, Result<Vec<Attempt>, hookrelay_store::StoreError>> {
        hookrelay_store::DeliveryStore::attempts(&*self.inner, key)
    }
    fn webhook_deliveries<'a>(
        &'a self,
        webhook: &'a WebhookId,
        after: Option<(u64, u32)>,
        max: usize,
    ) -> hookrelay_store::BoxFuture<
        'a,
        Result<Vec<hookrelay_core::DeliveryKey>, hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::webhook_deliveries(&*self.inner, webhook, after, max)
    }
    fn recent_attempts<'a>(
        &'a self,
        webhook: &'a WebhookId,
        since_ms: i64,
        max: usize,
    ) -> hookrelay_store::BoxFuture<'a, Result<hookrelay_store::Recent, hookrelay_store::StoreError>>
    {
        hookrelay_store::DeliveryStore::recent_attempts(&*self.inner, webhook, since_ms, max)
    }
    fn webhook_deliveries_newest<'a>(
        &'a self,
        webhook: &'a WebhookId,
        before: Option<(u64, u32)>,
        max: usize,
    ) -> hookrelay_store::BoxFuture<
        'a,
        Result<Vec<hookrelay_core::DeliveryKey>, hookrelay_store::StoreError>,
    > {
        hookrelay_store::DeliveryStore::webhook_deliveries_newest(
            &*self.inner,
            webhook,
            before,
            max,
        )
    }
    fn cursor(
        &self,
        p: hookrelay_core::Partition,
    ) -> hookrelay_store::BoxFuture<'_, Result<u64, hookrelay_store::StoreError>> {
        let left = self
            .fail
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if left {
            return Box::pin(async {
                Err(hookrelay_store::StoreError::unavailable_msg(
                    "JetStream did not answer",
                ))
            });
        }
        hookrelay_store::DeliveryStore::cursor(&*self.inner, p)
    }
}

#[tokio::test(start_paused = true)]
async fn a_recovery_that_meets_a_stalled_store_is_retried_not_fatal() {
    let (_dir, store) = store_with(webhook("wh_a", &["*"])).await;
    let stalling = Arc::new(StallingAtStart {
        inner: store.deliveries.clone(),
        fail: std::sync::atomic::AtomicU32::new(3),
    });
    let (task_tx, mut tasks) = mpsc::channel(64);
    let (_reports, report_rx) = mpsc::channel(64);
    let (progress_tx, _progress) = watch::channel(Progress::default());
    let s = Scheduler::new(
        store.log.clone(),
        store.config.clone(),
        stalling.clone(),
        Arc::new(Catalog::builtin()),
        SchedulerConfig {
            tick: Duration::from_millis(5),
            ..SchedulerConfig::default()
        },
        &DeliveryConfig::default(),
    );
    let stop = CancellationToken::new();
    let token = stop.clone();
    let run = tokio::spawn(async move {
        s.run(
            SchedulerChannels {
                tasks: task_tx,
                reports: report_rx,
                progress: progress_tx,
            },
            token,
        )
        .await
    });
    // Three failed starts later, the event is delivered as ever.
    let task = tokio::time::timeout(Duration::from_secs(10), tasks.recv())
        .await
        .expect("a task in time")
        .expect("channel open");
    assert_eq!(task.attempt, 1);
    assert_eq!(stalling.fail.load(std::sync::atomic::Ordering::Relaxed), 0);
    stop.cancel();
    run.await.expect("join").expect("no failure");
}
