//! Commands from the API (manual retry, replay), run inside the scheduler
//! loop so that delivery state keeps a single writer.

use super::Scheduler;
use crate::lanes::{host_of, Board};
use hookrelay_core::{
    now_ms, DeliveryKey, DeliveryRecord, DeliveryStatus, Seq, WebhookId, WEBHOOK_TEST,
};
use hookrelay_store::{BoxFuture, ControlError, DeliveryControl, DeliveryWrite, DueEntry, DueKind};
use tokio::sync::{mpsc, oneshot};

/// Events read per step of a replay scan.
const REPLAY_BATCH: usize = 1024;

pub(crate) enum Command {
    Retry {
        key: DeliveryKey,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    Replay {
        webhook: WebhookId,
        since_ms: i64,
        until_ms: i64,
        reply: oneshot::Sender<Result<u64, ControlError>>,
    },
}

/// The API's side of the scheduler: implements [`DeliveryControl`].
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Command>,
    board: Board,
}

impl SchedulerHandle {
    pub(crate) fn new(capacity: usize, board: Board) -> (Self, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, board }, rx)
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
            let (reply, answer) = oneshot::channel();
            self.tx
                .send(Command::Replay {
                    webhook,
                    since_ms,
                    until_ms,
                    reply,
                })
                .await
                .map_err(|_| ControlError::Unavailable)?;
            answer.await.map_err(|_| ControlError::Unavailable)?
        })
    }
}

impl Scheduler {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Retry { key, reply } => {
                let _ = reply.send(self.retry(key));
            }
            Command::Replay {
                webhook,
                since_ms,
                until_ms,
                reply,
            } => {
                let _ = reply.send(self.replay(&webhook, since_ms, until_ms));
            }
        }
    }

    /// Attempts a delivery again now, under a lease like any recorded one.
    fn retry(&mut self, key: DeliveryKey) -> Result<(), ControlError> {
        if self.active.contains_key(&key) {
            return Err(ControlError::Conflict(
                "the delivery is already being attempted".into(),
            ));
        }
        let record = self.store.record(&key)?;
        if record
            .as_ref()
            .is_some_and(|r| r.status == DeliveryStatus::Pending)
        {
            return Err(ControlError::Conflict(
                "the delivery is already pending".into(),
            ));
        }
        let webhook = self
            .config
            .webhook(&key.webhook_id)
            .filter(|w| w.active)
            .ok_or_else(|| ControlError::Conflict("the webhook is inactive or deleted".into()))?;
        let event = self
            .log
            .read(key.seq, 1)?
            .into_iter()
            .find(|e| e.seq == key.seq)
            .ok_or_else(|| ControlError::NotFound("the event is no longer in the log".into()))?;
        let now = now_ms();
        let attempts = match &record {
            Some(r) => r.attempts,
            None => self.store.attempts(&key)?.len() as u32,
        };
        let rec = DeliveryRecord {
            status: DeliveryStatus::Pending,
            attempts,
            next_attempt_ms: now,
            last_status_code: record.as_ref().and_then(|r| r.last_status_code),
            last_error: record.as_ref().and_then(|r| r.last_error.clone()),
            event_type: event.event.event_type.clone(),
            event_id: event.event.id.clone(),
            created_at_ms: record
                .as_ref()
                .map_or(event.appended_at_ms, |r| r.created_at_ms),
            updated_at_ms: now,
        };
        self.pending_records += 1;
        self.dispatch_recorded(key, rec, Some(webhook), now)?;
        Ok(())
    }

    /// New deliveries (a fresh generation) of every event appended in
    /// `[since_ms, until_ms)` that the webhook's filter selects, due now.
    fn replay(
        &mut self,
        webhook: &WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<u64, ControlError> {
        let w = self
            .config
            .webhook(webhook)
            .filter(|w| w.active)
            .ok_or_else(|| ControlError::Conflict("the webhook is inactive or deleted".into()))?;
        let now = now_ms();
        // One generation per replay request, distinct from fan-out's 0.
        let generation = u32::try_from((now / 1000).max(1)).unwrap_or(u32::MAX);
        let mut from: Seq = 1;
        let mut count = 0u64;
        'scan: loop {
            let batch = self.log.read(from, REPLAY_BATCH)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            for e in batch {
                if e.appended_at_ms < since_ms {
                    continue;
                }
                if e.appended_at_ms >= until_ms {
                    break 'scan;
                }
                let ev = &e.event;
                if ev.device_id != w.device_id.as_str()
                    || ev.event_type == WEBHOOK_TEST
                    || !self.catalog.matches_any(&w.events, &ev.event_type)
                {
                    continue;
                }
                let key = DeliveryKey {
                    seq: e.seq,
                    generation,
                    webhook_id: w.id.clone(),
                };
                if self.active.contains_key(&key) {
                    continue;
                }
                let rec = DeliveryRecord {
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_ms: now,
                    last_status_code: None,
                    last_error: None,
                    event_type: ev.event_type.clone(),
                    event_id: ev.id.clone(),
                    created_at_ms: now,
                    updated_at_ms: now,
                };
                self.writes.push(DeliveryWrite::Record(key.clone(), rec));
                self.writes.push(DeliveryWrite::Due(DueEntry {
                    at_ms: now,
                    key,
                    kind: DueKind::Scheduled,
                }));
                self.pending_records += 1;
                count += 1;
            }
            if self.writes.len() >= 2 * REPLAY_BATCH {
                self.flush();
            }
            from = last + 1;
        }
        self.flush();
        Ok(count)
    }
}
