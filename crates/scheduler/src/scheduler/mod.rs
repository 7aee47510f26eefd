//! The scheduler loop: fan-out from the log, reports from the workers, the
//! due-index scan, spilling, and the dispatch cursor.

mod command;
mod commands;
mod dispatch;
mod due;
mod ledger;
mod outcome;
mod pending;
mod replay;
mod shares;

pub use commands::SchedulerHandle;

use crate::{
    lanes::{HostMemo, Lanes},
    limit::{LimitBounds, Signal},
    window::WindowEvent,
    SchedulerConfig,
};
use command::Command;
use hookrelay_core::{
    metric, named_webhook, signing, Attempt, AttemptReport, AttemptResult, Catalog, Clock,
    DeliveryConfig, DeliveryKey, DeliveryRecord, DeliveryStatus, DeliveryTask, DeviceId, ErrorKind,
    Partition, Progress, Seq, Webhook, WebhookId, WEBHOOK_TEST,
};
use hookrelay_store::{
    ConfigStore, DeliveryStore, DeliveryWrite, DueEntry, DueKind, EventLog, LoggedEvent, StoreError,
};
use ledger::{Active, Ledger};
use pending::Held;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    watch,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Longest pause between retries of a failed storage pass.
const STORAGE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Longest a state change (a record, a due entry) waits in memory for others
/// to share its write. Records and due entries are written in one atomic
/// batch, and each sled batch writes and syncs its log buffer twice: a
/// drain or a failing host that wrote one batch per pass of the loop paid
/// 1,200 syncs a second. Attempts and the cursor alone are written at once.
/// Reads of the state by the scheduler (the due scan, commands) write what
/// waits first; a crash loses at most this much of state that sled had not
/// synced anyway, and what it loses is attempted again (invariant 3).
const STATE_FLUSH_EVERY: Duration = Duration::from_millis(5);

/// The channels the server creates between scheduler, workers and ingest.
pub struct SchedulerChannels {
    /// Attempts to perform, to the workers.
    pub tasks: mpsc::Sender<DeliveryTask>,
    /// Attempt outcomes, from the workers.
    pub reports: mpsc::Receiver<AttemptReport>,
    /// The dispatch cursor and pending count, for ingest's back-pressure.
    pub progress: watch::Sender<Progress>,
}

/// Fans out the log and schedules every attempt. See the crate docs.
pub struct Scheduler {
    /// The log partition this scheduler drives.
    partition: Partition,
    log: Arc<dyn EventLog>,
    config: Arc<dyn ConfigStore>,
    store: Arc<dyn DeliveryStore>,
    catalog: Arc<Catalog>,
    cfg: SchedulerConfig,
    lease_margin_ms: i64,
    head: watch::Receiver<Seq>,
    /// What is in flight, held, counted and waiting to be written.
    ledger: Ledger,
    next_read: Seq,
    /// Events up to here may have records from before the last restart.
    recovery_horizon: Seq,
    lanes: Lanes,
    /// The lane of each webhook URL seen, parsed once.
    hosts: HostMemo,
    /// Scans of the due index so far (every few reads deeper).
    scans: u32,
    commands: tokio::sync::mpsc::Receiver<Command>,
    handle: SchedulerHandle,
    /// When state changes (not attempts or the cursor alone) were last
    /// written, and when those waiting in `writes` are due.
    state_written_at: tokio::time::Instant,
    state_due: Option<tokio::time::Instant>,
    /// Last sequence popped from the window by a spill, for the cursor.
    spilled_to: Option<Seq>,
    /// The persisted dispatch cursor.
    cursor: Seq,
    /// Auto-disable bookkeeping to write (webhook config changes are async
    /// and rare: transitions only).
    health: HashMap<WebhookId, Health>,
    disable_after_ms: i64,
    /// Where now comes from (the system's clock unless told otherwise).
    clock: Clock,
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

/// How long an attempt of `w` (of the longest timeout without one) holds
/// its delivery before it counts as lost.
fn lease_ms(w: Option<&Webhook>, margin_ms: i64) -> i64 {
    let timeout_s = i64::from(w.map_or(hookrelay_core::MAX_TIMEOUT_SECS, |w| w.timeout_secs));
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
        // The head is watched from `run`, once the partition is known (a
        // watch opened here would follow partition 0 on every node).
        let head = watch::Sender::new(0).subscribe();
        let lease_margin = delivery.lease_margin;
        let board = crate::lanes::Board::default();
        let busiest = crate::lanes::Busiest::default();
        let (handle, commands) = SchedulerHandle::new(
            cfg.command_channel,
            board.clone(),
            busiest.clone(),
            log.clone(),
            config.clone(),
            catalog.clone(),
        );
        Self {
            partition: 0,
            log,
            config,
            store,
            catalog,
            cfg,
            lease_margin_ms: i64::try_from(lease_margin.as_millis()).unwrap_or(i64::MAX / 2),
            head,
            ledger: Ledger::new(Arc::default()),
            next_read: 1,
            recovery_horizon: 0,
            lanes: Lanes::new(
                LimitBounds {
                    initial: delivery.per_host_concurrency,
                    min: delivery.per_host_concurrency_min,
                    max: delivery.per_host_concurrency_max,
                    adaptive: delivery.adaptive_concurrency,
                },
                delivery.concurrency,
                delivery.breaker_threshold,
                board,
                busiest,
            ),
            hosts: HostMemo::default(),
            scans: 0,
            commands,
            handle,
            state_written_at: tokio::time::Instant::now(),
            state_due: None,
            spilled_to: None,
            cursor: 0,
            health: HashMap::new(),
            disable_after_ms: i64::try_from(delivery.disable_after.as_millis())
                .unwrap_or(i64::MAX / 2),
            clock: Clock::system(),
        }
    }

    /// Reads the time from `clock` (the system's by default): due times,
    /// leases, record times and the failure clock all come from it.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.handle.set_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// Counts this partition's pending deliveries into the node's `shares`
    /// (by default, shares of its own without caps).
    #[must_use]
    pub fn with_shares(mut self, shares: Arc<hookrelay_core::PendingShares>) -> Self {
        self.handle.set_shares(shares.clone());
        self.ledger.pending = pending::Pending::new(shares);
        self
    }

    /// This scheduler drives `partition` of the log (0 by default).
    #[must_use]
    pub fn for_partition(mut self, partition: Partition) -> Self {
        self.partition = partition;
        self.handle.set_partition(partition);
        self
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
        self.head = self.log.durable_head(self.partition);
        // Recovery reads the store like a storage pass and is retried like
        // one: a partition taken over while a NATS server is dead meets the
        // same stalls the running schedulers ride out.
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            match self.recover().await {
                Ok(()) => break,
                Err(e) if started.elapsed() < self.cfg.storage_give_up => {
                    tries += 1;
                    self.ledger.writes.clear();
                    let backoff = Duration::from_millis(100u64 << (tries - 1).min(10))
                        .min(STORAGE_BACKOFF_MAX);
                    warn!(partition = self.partition, error = %e, tries, "recovery failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
                Err(e) => {
                    error!(partition = self.partition, error = %e, "recovery keeps failing; the scheduler stops");
                    return Err(e);
                }
            }
        }
        let mut reports = Vec::with_capacity(256);
        let mut next_tick = tokio::time::Instant::now();
        let mut failures = 0u32;
        let mut failing_since: Option<Instant> = None;
        // Once the workers stop taking tasks (shutdown), the loop goes on
        // taking their reports until the last attempt in flight has answered
        // or the shutdown ends it: every outcome is recorded.
        let mut workers_gone = false;
        loop {
            if !self.health.is_empty() {
                self.apply_health().await;
            }
            if self.ledger.window.len() >= self.cfg.window_events
                && self.lanes.len() < self.cfg.max_queued
            {
                self.spill();
            }
            // Storage errors are retried with backoff; past the budget the
            // scheduler ends with the error, and the server stops (loudly)
            // so that its supervisor restarts it.
            if let Err(e) = self.storage_pass(&mut next_tick).await {
                failures += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.cfg.storage_give_up {
                    error!(error = %e, failures, "delivery state storage keeps failing; the scheduler stops");
                    return Err(e);
                }
                let backoff = Duration::from_millis(100u64 << (failures - 1).min(10))
                    .min(STORAGE_BACKOFF_MAX);
                warn!(error = %e, failures, backoff_ms = backoff.as_millis() as u64, "storage pass failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
            failures = 0;
            failing_since = None;
            self.publish_progress(&ch.progress);
            if !workers_gone && !self.send_ready(&ch.tasks) {
                workers_gone = true;
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
                permit = ch.tasks.reserve(), if !workers_gone && self.lanes.has_sendable() => match permit {
                    Ok(p) => {
                        if let Some((_, t)) = self.next_sendable() {
                            self.mark_sent(&t.key);
                            p.send(t);
                        }
                    }
                    Err(_) => workers_gone = true,
                },
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                changed = self.head.changed(), if room => {
                    if changed.is_err() {
                        break;
                    }
                }
                // The next tick, or state changes waiting for their write.
                () = tokio::time::sleep_until(self.state_due.map_or(next_tick, |d| d.min(next_tick))) => {}
            }
        }
        while let Ok(r) = ch.reports.try_recv() {
            self.on_report(r);
        }
        self.advance_cursor();
        self.flush().await;
        self.publish_progress(&ch.progress);
        info!(in_flight = self.ledger.active.len(), "scheduler stopped");
        Ok(())
    }

    /// One turn's storage work: read the log, scan the due index on ticks,
    /// advance the cursor and write what is pending.
    async fn storage_pass(
        &mut self,
        next_tick: &mut tokio::time::Instant,
    ) -> Result<(), StoreError> {
        self.fill_from_log().await?;
        if tokio::time::Instant::now() >= *next_tick {
            // The scan reads the due index: it must see every change made.
            self.write(true).await?;
            let more = self.scan_due().await?;
            self.spill();
            self.defer_overflow();
            self.lanes.wake_throttled();
            self.lanes.housekeep(Instant::now());
            // A scan that stopped at its batch left due work behind: the
            // next one comes at the loop's next turn, not a tick later (a
            // backlog would otherwise drain at most a batch per tick).
            *next_tick =
                tokio::time::Instant::now() + if more { Duration::ZERO } else { self.cfg.tick };
        }
        self.advance_cursor();
        self.try_flush().await
    }

    fn publish_progress(&mut self, tx: &watch::Sender<Progress>) {
        self.ledger.pending.publish();
        let p = Progress {
            cursor: self.cursor,
            read: self.next_read.saturating_sub(1),
            pending: self.ledger.pending.total(),
        };
        tx.send_if_modified(|old| {
            let changed = *old != p;
            *old = p;
            changed
        });
    }

    fn advance_cursor(&mut self) {
        let popped = self.ledger.window.pop_settled().max(self.spilled_to.take());
        if let Some(seq) = popped {
            self.ledger.writes.push(DeliveryWrite::Cursor(seq));
            self.cursor = seq;
        }
    }

    /// Applies the pending writes, state changes at most once per
    /// [`STATE_FLUSH_EVERY`]; on failure keeps them for the next turn
    /// (sled keys are idempotent, so writing a prefix twice is harmless).
    async fn try_flush(&mut self) -> Result<(), StoreError> {
        self.write(false).await
    }

    /// Applies the pending writes; state changes wait for their turn unless
    /// `now`. Writes keep their order: what follows a waiting state change
    /// (the cursor above all) waits with it.
    async fn write(&mut self, now: bool) -> Result<(), StoreError> {
        if self.ledger.writes.is_empty() {
            return Ok(());
        }
        let state = self.ledger.writes.iter().any(DeliveryWrite::is_state);
        if state && !now {
            let due = self.state_written_at + STATE_FLUSH_EVERY;
            if tokio::time::Instant::now() < due {
                self.state_due = Some(due);
                return Ok(());
            }
        }
        self.store.apply(&self.ledger.writes).await?;
        self.ledger.writes.clear();
        self.state_due = None;
        if state {
            self.state_written_at = tokio::time::Instant::now();
        }
        Ok(())
    }

    /// Applies every pending write now, logging a failure: the main loop's
    /// next pass retries it and counts it.
    async fn flush(&mut self) {
        if let Err(e) = self.write(true).await {
            error!(error = %e, writes = self.ledger.writes.len(), "writing delivery state failed; will retry");
        }
    }
}
