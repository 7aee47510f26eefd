//! The scheduler loop: fan-out from the log, reports from the workers, the
//! due-index scan, spilling, and the dispatch cursor.

mod commands;

pub use commands::SchedulerHandle;

use crate::{
    lanes::{host_of, Lanes},
    window::{Window, WindowEvent},
    SchedulerConfig,
};
use commands::Command;
use hookrelay_core::{
    metric, now_ms, signing, Attempt, AttemptReport, AttemptResult, Catalog, DeliveryConfig,
    DeliveryKey, DeliveryRecord, DeliveryStatus, DeliveryTask, DeviceId, ErrorKind, Progress, Seq,
    Webhook, WebhookId, WEBHOOK_TEST,
};
use hookrelay_store::{
    ConfigStore, DeliveryStore, DeliveryWrite, DueEntry, DueKind, EventLog, LoggedEvent, StoreError,
};
use std::{collections::HashMap, sync::Arc, time::Instant};
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    watch,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The channels the server creates between scheduler, workers and ingest.
pub struct SchedulerChannels {
    /// Attempts to perform, to the workers.
    pub tasks: mpsc::Sender<DeliveryTask>,
    /// Attempt outcomes, from the workers.
    pub reports: mpsc::Receiver<AttemptReport>,
    /// The dispatch cursor and pending count, for ingest's back-pressure.
    pub progress: watch::Sender<Progress>,
}

/// What the scheduler remembers of a delivery it has queued or in flight.
struct Active {
    /// Number of the attempt queued or in flight.
    attempt: u32,
    /// The lease's due time once the delivery has a record; `None` while it
    /// is a first attempt held only by the window.
    lease_at: Option<i64>,
    /// When the attempt was handed to the workers (`None` while queued here).
    sent_at_ms: Option<i64>,
    /// The lane (target host) it is queued or in flight in.
    host: Arc<str>,
    event_id: Arc<str>,
    event_type: Arc<str>,
    created_at_ms: i64,
}

/// Fans out the log and schedules every attempt. See the crate docs.
pub struct Scheduler {
    log: Arc<dyn EventLog>,
    config: Arc<dyn ConfigStore>,
    store: Arc<dyn DeliveryStore>,
    catalog: Arc<Catalog>,
    cfg: SchedulerConfig,
    lease_margin_ms: i64,
    head: watch::Receiver<Seq>,
    window: Window,
    next_read: Seq,
    /// Events up to here may have records from before the last restart.
    recovery_horizon: Seq,
    lanes: Lanes,
    active: HashMap<DeliveryKey, Active>,
    commands: tokio::sync::mpsc::Receiver<Command>,
    handle: SchedulerHandle,
    writes: Vec<DeliveryWrite>,
    /// Deliveries with a pending record (due index entries).
    pending_records: i64,
    /// First attempts held only by the window.
    unrecorded: i64,
    /// Last sequence popped from the window by a spill, for the cursor.
    spilled_to: Option<Seq>,
    /// The persisted dispatch cursor.
    cursor: Seq,
    /// Auto-disable bookkeeping to write (webhook config changes are async
    /// and rare: transitions only).
    health: HashMap<WebhookId, Health>,
    disable_after_ms: i64,
}

/// A change to a webhook's failure clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    /// A success: clear `failing_since`.
    Recovered,
    /// The first failure since the last success.
    FailingSince(i64),
    /// Failing for longer than `delivery.disable_after`: deactivate.
    Disable,
}

fn lease_ms(w: Option<&Webhook>, margin_ms: i64) -> i64 {
    let timeout_s = w.map_or(60, |w| i64::from(w.timeout_secs));
    timeout_s * 1000 + margin_ms
}

impl Scheduler {
    /// A scheduler over the three stores. From `delivery` it takes the lease
    /// margin (added to a webhook's timeout to give an attempt's lease) and
    /// the per-host concurrency limit.
    pub fn new(
        log: Arc<dyn EventLog>,
        config: Arc<dyn ConfigStore>,
        store: Arc<dyn DeliveryStore>,
        catalog: Arc<Catalog>,
        cfg: SchedulerConfig,
        delivery: &DeliveryConfig,
    ) -> Self {
        let head = log.durable_head();
        let lease_margin = delivery.lease_margin;
        let board = crate::lanes::Board::default();
        let (handle, commands) = SchedulerHandle::new(cfg.command_channel, board.clone());
        Self {
            log,
            config,
            store,
            catalog,
            cfg,
            lease_margin_ms: i64::try_from(lease_margin.as_millis()).unwrap_or(i64::MAX / 2),
            head,
            window: Window::default(),
            next_read: 1,
            recovery_horizon: 0,
            lanes: Lanes::new(
                delivery.per_host_concurrency,
                delivery.breaker_threshold,
                board,
            ),
            active: HashMap::new(),
            commands,
            handle,
            writes: Vec::new(),
            pending_records: 0,
            unrecorded: 0,
            spilled_to: None,
            cursor: 0,
            health: HashMap::new(),
            disable_after_ms: i64::try_from(delivery.disable_after.as_millis())
                .unwrap_or(i64::MAX / 2),
        }
    }

    /// The handle the API uses to retry and replay deliveries.
    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    /// Runs until `shutdown`, then takes the reports still waiting, writes
    /// what it holds and returns. Attempts still unanswered come back after a
    /// restart: first attempts through the cursor, the others through leases.
    pub async fn run(
        mut self,
        mut ch: SchedulerChannels,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        self.recover()?;
        let mut reports = Vec::with_capacity(256);
        let mut next_tick = tokio::time::Instant::now();
        loop {
            if !self.health.is_empty() {
                self.apply_health().await;
            }
            if self.window.len() >= self.cfg.window_events && self.lanes.len() < self.cfg.max_queued
            {
                self.spill();
            }
            self.fill_from_log()?;
            if tokio::time::Instant::now() >= next_tick {
                self.scan_due()?;
                self.spill();
                self.defer_overflow();
                self.lanes.wake_throttled();
                self.update_gauges();
                next_tick = tokio::time::Instant::now() + self.cfg.tick;
            }
            self.advance_cursor();
            self.flush();
            self.publish_progress(&ch.progress);
            if !self.send_ready(&ch.tasks) {
                break;
            }
            let room = self.has_room();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                n = ch.reports.recv_many(&mut reports, 256) => {
                    if n == 0 {
                        break;
                    }
                    for r in reports.drain(..) {
                        self.on_report(r);
                    }
                }
                permit = ch.tasks.reserve(), if self.lanes.has_sendable() => match permit {
                    Ok(p) => {
                        if let Some((_, t)) = self.next_sendable() {
                            self.mark_sent(&t.key);
                            p.send(t);
                        }
                    }
                    Err(_) => break,
                },
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                changed = self.head.changed(), if room => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(next_tick) => {}
            }
        }
        while let Ok(r) = ch.reports.try_recv() {
            self.on_report(r);
        }
        self.advance_cursor();
        self.flush();
        self.publish_progress(&ch.progress);
        info!(in_flight = self.active.len(), "scheduler stopped");
        Ok(())
    }

    fn has_room(&self) -> bool {
        self.window.len() < self.cfg.window_events && self.lanes.len() < self.cfg.max_queued
    }

    /// Notes a transition of a webhook's failure clock (written by
    /// [`Scheduler::apply_health`]).
    fn track_health(&mut self, w: &Webhook, ok: bool, now: i64) {
        let change = match (ok, w.failing_since_ms) {
            (true, Some(_)) => Some(Health::Recovered),
            (true, None) => None,
            (false, None) => Some(Health::FailingSince(now)),
            (false, Some(since)) if w.active && now - since >= self.disable_after_ms => {
                Some(Health::Disable)
            }
            (false, Some(_)) => None,
        };
        if let Some(change) = change {
            // Within one batch the first transition wins, except that a
            // success always wins.
            let entry = self.health.entry(w.id.clone()).or_insert(change);
            if change == Health::Recovered {
                *entry = change;
            }
        }
    }

    /// Writes the noted failure-clock transitions; deactivates webhooks that
    /// failed for too long and announces it with a `webhook.disabled` event.
    async fn apply_health(&mut self) {
        let now = now_ms();
        for (id, change) in std::mem::take(&mut self.health) {
            // Read-modify-write under the store's lock: an API change made
            // meanwhile (a PATCH deactivating it, say) is never overwritten.
            let mut disabled = false;
            let result = self
                .config
                .update_webhook(
                    &id,
                    Box::new(|next: &mut Webhook| match change {
                        Health::Recovered => next.failing_since_ms.take().is_some(),
                        Health::FailingSince(t) if next.failing_since_ms.is_none() => {
                            next.failing_since_ms = Some(t);
                            true
                        }
                        Health::FailingSince(_) => false,
                        Health::Disable if next.active => {
                            next.active = false;
                            next.updated_at_ms = now;
                            disabled = true;
                            true
                        }
                        Health::Disable => false,
                    }),
                )
                .await;
            let w = match result {
                Ok(Some(w)) => w,
                Ok(None) => continue,
                Err(e) => {
                    error!(webhook_id = %id, error = %e, "updating the webhook's failure clock failed");
                    continue;
                }
            };
            if disabled {
                warn!(webhook_id = %id, since = ?w.failing_since_ms, "webhook disabled after failing for too long");
                let event = hookrelay_core::Event {
                    id: hookrelay_core::new_event_id(),
                    device_id: w.device_id.to_string(),
                    event_type: hookrelay_core::WEBHOOK_DISABLED.to_owned(),
                    occurred_at_ms: now,
                    data: serde_json::json!({
                        "webhook_id": w.id,
                        "url": w.url,
                        "failing_since": w.failing_since_ms.map(hookrelay_core::rfc3339_ms),
                        "disabled_at": hookrelay_core::rfc3339_ms(now),
                    })
                    .to_string(),
                };
                let appended = match self.log.append(vec![event], vec![], now) {
                    Ok(_) => self.log.sync().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = appended {
                    error!(webhook_id = %id, error = %e, "appending webhook.disabled failed");
                }
            }
        }
    }

    /// The next queued task with its webhook's configuration as of now
    /// (invariant 5: every attempt uses the current URL, headers, secret and
    /// timeout). Tasks whose webhook was deleted or deactivated are cancelled
    /// here instead of sent.
    fn next_sendable(&mut self) -> Option<(Arc<str>, DeliveryTask)> {
        while let Some((host, mut task)) = self.lanes.pop() {
            match self.config.webhook(&task.key.webhook_id) {
                Some(w) if w.active => {
                    task.webhook = w;
                    return Some((host, task));
                }
                _ => {
                    self.lanes.done(&host, 0, None);
                    self.cancel(&task.key);
                }
            }
        }
        None
    }

    /// Queues a task in its host's lane.
    fn enqueue(&mut self, task: DeliveryTask) {
        let host = host_of(&task.webhook.url);
        if let Some(a) = self.active.get_mut(&task.key) {
            a.host = host.clone();
        }
        self.lanes.push(host, task);
    }

    /// When memory is full (reading the log is blocked), moves what waits
    /// beyond a lane's queue cap to disk (a pending record due when the lane
    /// would reach it), without spending an attempt: a slow lane then stops
    /// blocking the others. A burst to healthy lanes just waits in the log.
    fn defer_overflow(&mut self) {
        if self.lanes.len() < self.cfg.max_queued {
            return;
        }
        for (task, wait_ms) in self.lanes.overflow(self.cfg.lane_queue) {
            self.defer(&task.key, wait_ms.clamp(1000, 60_000));
        }
    }

    fn defer(&mut self, key: &DeliveryKey, delay_ms: i64) {
        let Some(a) = self.active.remove(key) else {
            return;
        };
        let now = now_ms();
        if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, key.clone()));
        } else {
            self.window.settle(key);
            self.unrecorded -= 1;
            self.pending_records += 1;
        }
        let mut rec = self.record_for(&a, a.attempt - 1, DeliveryStatus::Pending, now);
        rec.next_attempt_ms = now + delay_ms;
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
        self.writes.push(DeliveryWrite::Due(DueEntry {
            at_ms: now + delay_ms,
            key: key.clone(),
            kind: DueKind::Scheduled,
        }));
    }

    /// Ends a queued delivery whose webhook is gone or inactive.
    fn cancel(&mut self, key: &DeliveryKey) {
        let Some(a) = self.active.remove(key) else {
            return;
        };
        let now = now_ms();
        if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, key.clone()));
            self.pending_records -= 1;
        } else {
            self.window.settle(key);
            self.unrecorded -= 1;
        }
        let rec = self.record_for(&a, a.attempt - 1, DeliveryStatus::Cancelled, now);
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
    }

    fn mark_sent(&mut self, key: &DeliveryKey) {
        if let Some(a) = self.active.get_mut(key) {
            a.sent_at_ms = Some(now_ms());
        }
    }

    fn publish_progress(&self, tx: &watch::Sender<Progress>) {
        let p = Progress {
            cursor: self.cursor,
            pending: (self.pending_records + self.unrecorded).max(0) as u64,
        };
        tx.send_if_modified(|old| {
            let changed = *old != p;
            *old = p;
            changed
        });
    }

    /// Sends queued tasks while the channel has room; `false` if the workers
    /// are gone.
    fn send_ready(&mut self, tx: &mpsc::Sender<DeliveryTask>) -> bool {
        while let Some((host, task)) = self.next_sendable() {
            let key = task.key.clone();
            match tx.try_send(task) {
                Ok(()) => self.mark_sent(&key),
                Err(TrySendError::Full(task)) => {
                    self.lanes.unpop(host, task);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    /// After a restart nothing is in flight: every lease is stale, so those
    /// deliveries are due now.
    fn recover(&mut self) -> Result<(), StoreError> {
        let cursor = self.store.cursor()?;
        self.cursor = cursor;
        self.next_read = cursor + 1;
        self.recovery_horizon = *self.head.borrow();
        let now = now_ms();
        let leases = self.store.leases()?;
        for lease in &leases {
            self.writes
                .push(DeliveryWrite::Undue(lease.at_ms, lease.key.clone()));
            if let Some(mut rec) = self.store.record(&lease.key)? {
                rec.next_attempt_ms = now;
                rec.updated_at_ms = now;
                self.writes
                    .push(DeliveryWrite::Record(lease.key.clone(), rec));
                self.writes.push(DeliveryWrite::Due(DueEntry {
                    at_ms: now,
                    key: lease.key.clone(),
                    kind: DueKind::Scheduled,
                }));
            }
        }
        self.store.apply(&self.writes)?;
        self.writes.clear();
        self.pending_records = self.store.due_len() as i64;
        info!(
            cursor,
            head = self.recovery_horizon,
            pending = self.pending_records,
            released_leases = leases.len(),
            "scheduler recovered"
        );
        Ok(())
    }

    fn fill_from_log(&mut self) -> Result<(), StoreError> {
        let head = *self.head.borrow_and_update();
        while self.next_read <= head && self.has_room() {
            let room = (self.cfg.window_events - self.window.len()).clamp(1, 1024);
            let events = self.log.read(self.next_read, room)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for e in events {
                self.fan_out(e)?;
            }
            self.next_read = last + 1;
        }
        Ok(())
    }

    fn fan_out(&mut self, e: LoggedEvent) -> Result<(), StoreError> {
        let ev = &e.event;
        let device = DeviceId::from(ev.device_id.as_str());
        let matching: Vec<Arc<Webhook>> = if ev.event_type == WEBHOOK_TEST {
            // A test event goes to the one webhook named in it, whatever its filter.
            test_target(&ev.data)
                .and_then(|id| self.config.webhook(&id))
                .filter(|w| w.active && w.device_id == device)
                .into_iter()
                .collect()
        } else {
            self.config
                .webhooks_of(&device)
                .into_iter()
                .filter(|w| w.active && self.catalog.matches_any(&w.events, &ev.event_type))
                .collect()
        };
        let mut unsettled = Vec::with_capacity(matching.len());
        if !matching.is_empty() {
            let envelope: Arc<[u8]> = signing::envelope(
                &ev.id,
                &ev.event_type,
                ev.occurred_at_ms.div_euclid(1000),
                &ev.device_id,
                &ev.data,
            )
            .into();
            let event_id: Arc<str> = ev.id.as_str().into();
            let event_type: Arc<str> = ev.event_type.as_str().into();
            for webhook in matching {
                let key = DeliveryKey {
                    seq: e.seq,
                    generation: 0,
                    webhook_id: webhook.id.clone(),
                };
                if self.active.contains_key(&key) {
                    continue;
                }
                // Re-read after a crash: a delivery with a record is the due
                // index's, not the window's.
                if e.seq <= self.recovery_horizon && self.store.record(&key)?.is_some() {
                    continue;
                }
                self.active.insert(
                    key.clone(),
                    Active {
                        attempt: 1,
                        lease_at: None,
                        sent_at_ms: None,
                        host: Arc::from(""),
                        event_id: event_id.clone(),
                        event_type: event_type.clone(),
                        created_at_ms: e.appended_at_ms,
                    },
                );
                self.enqueue(DeliveryTask {
                    key: key.clone(),
                    attempt: 1,
                    event_id: event_id.clone(),
                    envelope: envelope.clone(),
                    webhook,
                    occurred_at_ms: ev.occurred_at_ms,
                });
                unsettled.push(key);
            }
            metrics::counter!(metric::DELIVERIES_CREATED).increment(unsettled.len() as u64);
            self.unrecorded += unsettled.len() as i64;
        }
        self.window.push(WindowEvent {
            seq: e.seq,
            unsettled,
            entered: Instant::now(),
        });
        Ok(())
    }

    fn record_for(
        &self,
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

    fn on_report(&mut self, r: AttemptReport) {
        let now = now_ms();
        self.writes
            .push(DeliveryWrite::Attempt(r.key.clone(), r.attempt.clone()));
        if self.active.get(&r.key).map(|a| a.attempt) != Some(r.attempt.attempt) {
            // An attempt whose lease expired (and was counted as a timeout)
            // answered late: its real outcome replaces the log entry; the
            // delivery has moved on.
            warn!(delivery = %r.key.id(), attempt = r.attempt.attempt, "late report of a superseded attempt; attempt logged only");
            return;
        }
        let Some(a) = self.active.remove(&r.key) else {
            return;
        };
        self.lanes.done(
            &a.host,
            r.attempt.duration_ms,
            Some(r.result == AttemptResult::Delivered),
        );
        if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, r.key.clone()));
            self.pending_records -= 1;
        } else {
            self.window.settle(&r.key);
            self.unrecorded -= 1;
        }
        let webhook = self.config.webhook(&r.key.webhook_id);
        if let Some(w) = webhook.as_deref() {
            self.track_health(w, r.result == AttemptResult::Delivered, now);
        }
        let n = a.attempt;
        let mut rec = match r.result {
            AttemptResult::Delivered => {
                if a.lease_at.is_none() {
                    // The happy path: the attempt log entry is the only write.
                    return;
                }
                self.record_for(&a, n, DeliveryStatus::Delivered, now)
            }
            AttemptResult::Failed { retry_after_ms } => match webhook.as_deref() {
                Some(w) if w.active && n <= w.retry_attempts => {
                    let delay = w.retry_policy.next_delay_ms(n, retry_after_ms);
                    let next = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX / 2));
                    let mut rec = self.record_for(&a, n, DeliveryStatus::Pending, now);
                    rec.next_attempt_ms = next;
                    self.writes.push(DeliveryWrite::Due(DueEntry {
                        at_ms: next,
                        key: r.key.clone(),
                        kind: DueKind::Scheduled,
                    }));
                    self.pending_records += 1;
                    rec
                }
                Some(w) if w.active => {
                    metrics::counter!(metric::DELIVERIES_FAILED).increment(1);
                    self.record_for(&a, n, DeliveryStatus::Failed, now)
                }
                _ => self.record_for(&a, n, DeliveryStatus::Cancelled, now),
            },
        };
        rec.last_status_code = r.attempt.status_code;
        rec.last_error = r.attempt.error.map(|e| e.as_str().to_owned());
        self.writes.push(DeliveryWrite::Record(r.key, rec));
    }

    fn scan_due(&mut self) -> Result<(), StoreError> {
        if self.lanes.len() >= self.cfg.max_queued {
            return Ok(());
        }
        let now = now_ms();
        // Scan past the entries of lanes that are already full (they stay
        // due, untouched) so other hosts are not starved, within a bound.
        let mut taken = 0;
        for e in self.store.due(now, self.cfg.due_batch * 8)? {
            if taken >= self.cfg.due_batch || self.lanes.len() >= self.cfg.max_queued {
                break;
            }
            let webhook = self.config.webhook(&e.key.webhook_id);
            if !self.active.contains_key(&e.key) {
                if let Some(w) = webhook.as_deref() {
                    if self.lanes.lane_len(&host_of(&w.url)) >= self.cfg.lane_queue {
                        continue;
                    }
                }
                taken += 1;
            }
            if let Some(a) = self.active.get_mut(&e.key) {
                if e.kind == DueKind::Lease && a.lease_at == Some(e.at_ms) {
                    if let Some(sent) = a.sent_at_ms {
                        // Handed to a worker and unanswered past timeout +
                        // margin: the attempt is lost (a hung worker); it
                        // counts as a timeout and the policy decides what next.
                        let report = AttemptReport {
                            key: e.key.clone(),
                            attempt: Attempt {
                                attempt: a.attempt,
                                started_at_ms: sent,
                                duration_ms: u32::try_from(now - sent).unwrap_or(u32::MAX),
                                status_code: None,
                                error: Some(ErrorKind::Timeout),
                                response_body: Some("lease expired without an answer".into()),
                            },
                            result: AttemptResult::Failed {
                                retry_after_ms: None,
                            },
                        };
                        warn!(delivery = %e.key.id(), attempt = a.attempt, "lease expired in flight; counted as a timeout");
                        self.on_report(report);
                        continue;
                    }
                }
                // Still queued here (not yet handed to a worker): the lease is
                // extended. A stale scheduled entry is dropped.
                self.writes
                    .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
                if e.kind == DueKind::Lease {
                    let lease = now + lease_ms(webhook.as_deref(), self.lease_margin_ms);
                    a.lease_at = Some(lease);
                    self.writes.push(DeliveryWrite::Due(DueEntry {
                        at_ms: lease,
                        key: e.key.clone(),
                        kind: DueKind::Lease,
                    }));
                } else {
                    self.pending_records -= 1;
                }
                continue;
            }
            self.writes
                .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
            let rec = match self.store.record(&e.key)? {
                Some(rec)
                    if rec.status == DeliveryStatus::Pending && rec.next_attempt_ms == e.at_ms =>
                {
                    rec
                }
                // A stale entry (superseded schedule): just drop it.
                _ => {
                    self.pending_records -= 1;
                    continue;
                }
            };
            self.dispatch_recorded(e.key, rec, webhook, now)?;
        }
        Ok(())
    }

    /// Queues the next attempt of a delivery that has a record, under a lease.
    fn dispatch_recorded(
        &mut self,
        key: DeliveryKey,
        mut rec: DeliveryRecord,
        webhook: Option<Arc<Webhook>>,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(webhook) = webhook.filter(|w| w.active) else {
            rec.status = DeliveryStatus::Cancelled;
            rec.updated_at_ms = now;
            self.writes.push(DeliveryWrite::Record(key, rec));
            self.pending_records -= 1;
            return Ok(());
        };
        let event = self
            .log
            .read(key.seq, 1)?
            .into_iter()
            .find(|e| e.seq == key.seq);
        let Some(event) = event else {
            error!(delivery = %key.id(), "event no longer in the log; delivery failed");
            rec.status = DeliveryStatus::Failed;
            rec.last_error = Some("event_missing".into());
            rec.updated_at_ms = now;
            self.writes.push(DeliveryWrite::Record(key, rec));
            self.pending_records -= 1;
            return Ok(());
        };
        let lease = now + lease_ms(Some(&webhook), self.lease_margin_ms);
        rec.next_attempt_ms = lease;
        rec.updated_at_ms = now;
        let ev = &event.event;
        let event_id: Arc<str> = ev.id.as_str().into();
        self.active.insert(
            key.clone(),
            Active {
                attempt: rec.attempts + 1,
                lease_at: Some(lease),
                sent_at_ms: None,
                host: Arc::from(""),
                event_id: event_id.clone(),
                event_type: ev.event_type.as_str().into(),
                created_at_ms: rec.created_at_ms,
            },
        );
        self.enqueue(DeliveryTask {
            key: key.clone(),
            attempt: rec.attempts + 1,
            event_id,
            envelope: signing::envelope(
                &ev.id,
                &ev.event_type,
                ev.occurred_at_ms.div_euclid(1000),
                &ev.device_id,
                &ev.data,
            )
            .into(),
            webhook,
            occurred_at_ms: ev.occurred_at_ms,
        });
        self.writes.push(DeliveryWrite::Record(key.clone(), rec));
        self.writes.push(DeliveryWrite::Due(DueEntry {
            at_ms: lease,
            key,
            kind: DueKind::Lease,
        }));
        Ok(())
    }

    /// Writes records for the oldest event's unsettled deliveries when it has
    /// held the window too long (or the window is full), so the cursor moves on.
    fn spill(&mut self) {
        let now = now_ms();
        let stale_before = Instant::now()
            .checked_sub(self.cfg.spill_after)
            .unwrap_or_else(Instant::now);
        // Once full, the window is spilled down to three quarters in one go:
        // settled events queued behind an unsettled front must not hold
        // reading to one event per tick.
        // Only when the window (not the lanes) is what stops reading: with full
        // lanes, spilling would just turn a burst into state records.
        let low_water = self.cfg.window_events - self.cfg.window_events / 4;
        let mut draining =
            self.window.len() >= self.cfg.window_events && self.lanes.len() < self.cfg.max_queued;
        loop {
            draining &= self.window.len() > low_water;
            let deadline = if draining {
                Instant::now()
            } else {
                stale_before
            };
            let Some(front) = self.window.stale_front(deadline) else {
                break;
            };
            let keys = front.unsettled.clone();
            for key in keys {
                self.window.settle(&key);
                let Some(a) = self.active.get(&key) else {
                    continue;
                };
                let webhook = self.config.webhook(&key.webhook_id);
                let lease = now + lease_ms(webhook.as_deref(), self.lease_margin_ms);
                let mut rec = self.record_for(a, a.attempt - 1, DeliveryStatus::Pending, now);
                rec.next_attempt_ms = lease;
                self.writes.push(DeliveryWrite::Record(key.clone(), rec));
                self.writes.push(DeliveryWrite::Due(DueEntry {
                    at_ms: lease,
                    key: key.clone(),
                    kind: DueKind::Lease,
                }));
                if let Some(a) = self.active.get_mut(&key) {
                    a.lease_at = Some(lease);
                }
                self.unrecorded -= 1;
                self.pending_records += 1;
            }
            match self.window.pop_settled() {
                Some(seq) => self.spilled_to = Some(seq),
                None => break,
            }
        }
    }

    fn advance_cursor(&mut self) {
        let popped = self.window.pop_settled().max(self.spilled_to.take());
        if let Some(seq) = popped {
            self.writes.push(DeliveryWrite::Cursor(seq));
            self.cursor = seq;
        }
    }

    /// Applies the pending writes; on failure keeps them for the next turn.
    fn flush(&mut self) {
        if self.writes.is_empty() {
            return;
        }
        match self.store.apply(&self.writes) {
            Ok(()) => self.writes.clear(),
            // Kept for the next turn; sled keys are idempotent, so writing a
            // prefix twice is harmless.
            Err(e) => {
                error!(error = %e, writes = self.writes.len(), "writing delivery state failed; will retry")
            }
        }
    }

    fn update_gauges(&self) {
        let head = *self.head.borrow();
        metrics::gauge!(metric::LOG_SEQUENCE).set(head as f64);
        metrics::gauge!(metric::FANOUT_LAG).set(head.saturating_sub(self.next_read - 1) as f64);
        metrics::gauge!(metric::CIRCUITS_OPEN).set(self.lanes.open_breakers() as f64);
        metrics::gauge!(metric::DELIVERIES_PENDING)
            .set((self.pending_records + self.unrecorded).max(0) as f64);
    }
}

/// The webhook a `webhook.test` event is for: its data's `webhook_id`.
fn test_target(data: &str) -> Option<WebhookId> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v.get("webhook_id")?.as_str().map(WebhookId::from)
}
