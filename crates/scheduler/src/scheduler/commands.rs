//! Commands from the API (manual retry, replay). Delivery state keeps a
//! single writer, the scheduler loop: a retry runs inside it; a replay is
//! planned and read *off* the loop (see [`super::replay`]) and only its
//! ready-made records are handed in, in bounded batches.

use super::{command::Command, replay, Scheduler};
use crate::lanes::{host_of, Board, Busiest, HostConcurrency};
use hookrelay_core::{
    partition_of, Catalog, DeliveryKey, DeliveryRecord, DeliveryStatus, Partition, WebhookId,
};
use hookrelay_store::{BoxFuture, ConfigStore, DeliveryWrite, EventLog};
use hookrelay_store::{ControlError, DeliveryControl};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// The API's side of the scheduler: implements [`DeliveryControl`].
#[derive(Clone)]
pub struct SchedulerHandle {
    /// The partition of the scheduler this handle commands.
    partition: Partition,
    tx: mpsc::Sender<Command>,
    board: Board,
    busiest: Busiest,
    log: Arc<dyn EventLog>,
    config: Arc<dyn ConfigStore>,
    catalog: Arc<Catalog>,
    replays: TaskTracker,
    /// The node's pending shares: a replay adds to a tenant's only below.
    shares: Arc<hookrelay_core::PendingShares>,
    clock: hookrelay_core::Clock,
}

impl SchedulerHandle {
    pub(crate) fn new(
        capacity: usize,
        board: Board,
        busiest: Busiest,
        log: Arc<dyn EventLog>,
        config: Arc<dyn ConfigStore>,
        catalog: Arc<Catalog>,
    ) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = Self {
            partition: 0,
            tx,
            board,
            busiest,
            log,
            config,
            catalog,
            replays: TaskTracker::new(),
            shares: Arc::default(),
            clock: hookrelay_core::Clock::system(),
        };
        (handle, rx)
    }

    pub(crate) fn set_shares(&mut self, shares: Arc<hookrelay_core::PendingShares>) {
        self.shares = shares;
    }

    pub(crate) fn set_clock(&mut self, clock: hookrelay_core::Clock) {
        self.clock = clock;
    }

    pub(crate) fn set_partition(&mut self, partition: Partition) {
        self.partition = partition;
    }

    /// The partition of the scheduler this handle commands.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// Hosts whose circuit is open in this scheduler.
    pub fn open_circuits(&self) -> usize {
        self.board.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The hosts with the most attempts in flight in this scheduler (at
    /// most ten, refreshed every second), with their concurrency limits.
    pub fn busiest_hosts(&self) -> Vec<HostConcurrency> {
        self.busiest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replays still handing deliveries to the scheduler (for shutdown).
    pub fn replays(&self) -> TaskTracker {
        self.replays.clone()
    }
}

impl DeliveryControl for SchedulerHandle {
    fn circuit_open(&self, url: &str) -> bool {
        self.board
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&host_of(url))
    }

    fn retry(&self, key: DeliveryKey) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.tx
                .send(Command::Retry { key, reply })
                .await
                .map_err(|_| ControlError::Unavailable)?;
            answer.await.map_err(|_| ControlError::Unavailable)?
        })
    }

    fn replay(
        &self,
        webhook: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'_, Result<u64, ControlError>> {
        Box::pin(async move {
            let w = self
                .config
                .webhook(&webhook)
                .filter(|w| w.active)
                .ok_or_else(|| {
                    ControlError::Conflict("the webhook is inactive or deleted".into())
                })?;
            // A tenant at its share replays nothing more now; one below it
            // replays, its feeder waiting whenever the share fills.
            self.shares
                .check_webhook(&w.id, &w.org_id)
                .map_err(|over| ControlError::OverShare(over.to_string()))?;
            // Never events logged for a device id before it was bound.
            let sources: replay::Sources = match w.app() {
                Some(device) => {
                    let bound_at = self
                        .config
                        .app(device)
                        .map(|a| a.created_at_ms)
                        .ok_or_else(|| ControlError::NotFound("the app no longer exists".into()))?;
                    [(device.to_string(), since_ms.max(bound_at))].into()
                }
                None => self
                    .config
                    .apps_of(&w.org_id)
                    .into_iter()
                    .map(|a| (a.id.0, since_ms.max(a.created_at_ms)))
                    .collect(),
            };
            // This scheduler replays its own partition's devices; a router
            // in front of several sums their counts.
            let partitions = self.log.partitions();
            let sources: replay::Sources = sources
                .into_iter()
                .filter(|(device, _)| partition_of(device, partitions) == self.partition)
                .collect();
            let plan = replay::plan(
                &*self.log,
                self.partition,
                &self.catalog,
                &sources,
                &w.events,
                until_ms,
            )
            .await?;
            let count = plan.count;
            if count > 0 {
                let feeder = replay::Feeder {
                    log: self.log.clone(),
                    catalog: self.catalog.clone(),
                    tx: self.tx.clone(),
                    webhook: w,
                    sources,
                    shares: self.shares.clone(),
                    // One generation per replay request, distinct from fan-out's 0.
                    generation: u32::try_from((self.clock.unix_ms() / 1000).max(1))
                        .unwrap_or(u32::MAX),
                    clock: self.clock.clone(),
                };
                self.replays.spawn(feeder.run(plan));
            }
            Ok(count)
        })
    }
}

impl Scheduler {
    pub(super) async fn on_command(&mut self, cmd: Command) {
        // A command reads the state: it must see every change made.
        self.flush().await;
        match cmd {
            Command::Retry { key, reply } => {
                let _ = reply.send(self.retry(key).await);
            }
            Command::Replayed(entries) => self.take_replayed(entries).await,
        }
    }

    /// Writes the records of a replay step with their due entries.
    async fn take_replayed(&mut self, entries: Vec<(DeliveryKey, DeliveryRecord)>) {
        self.ledger.replayed(&*self.config, entries);
        self.flush().await;
    }

    /// Attempts a delivery again now, under a lease like any recorded one.
    async fn retry(&mut self, key: DeliveryKey) -> Result<(), ControlError> {
        if self.ledger.active.contains_key(&key) {
            return Err(ControlError::Conflict(
                "the delivery is already being attempted".into(),
            ));
        }
        // Decided here, in the single writer: of concurrent retries of one
        // delivery the first makes it pending and the others find it so.
        let record = match self.store.record(&key).await? {
            Some(r) if matches!(r.status, DeliveryStatus::Failed | DeliveryStatus::Cancelled) => r,
            Some(r) => {
                return Err(ControlError::Conflict(format!(
                    "the delivery is {}; only failed and cancelled deliveries are retried",
                    r.status.as_str()
                )))
            }
            None => {
                return Err(ControlError::Conflict(
                    "only failed and cancelled deliveries are retried".into(),
                ))
            }
        };
        let webhook = self
            .config
            .webhook(&key.webhook_id)
            .filter(|w| w.active)
            .ok_or_else(|| ControlError::Conflict("the webhook is inactive or deleted".into()))?;
        self.ledger
            .pending
            .shares()
            .check_webhook(&webhook.id, &webhook.org_id)
            .map_err(|over| ControlError::OverShare(over.to_string()))?;
        // The event must be one the webhook receives (the API only passes
        // deliveries it found; this keeps the rule where the data is read).
        let event = self
            .log
            .event(key.seq)
            .await?
            .filter(|e| self.config.receives(&webhook, &e.event, e.appended_at_ms))
            .ok_or_else(|| ControlError::NotFound("the event is no longer in the log".into()))?;
        let now = self.clock.unix_ms();
        let rec = DeliveryRecord {
            event_type: event.event.event_type.clone(),
            event_id: event.event.id.clone(),
            ..record.pending_again(now)
        };
        self.ledger
            .pending
            .scheduled(&*self.config, &key.webhook_id);
        // Pending again: the record says so before the attempt goes out.
        self.ledger
            .writes
            .push(DeliveryWrite::Record(key.clone(), rec.clone()));
        self.dispatch_recorded(key, rec, Some(webhook), now, None)
            .await?;
        Ok(())
    }
}
