//! Group commit: every append waiting when the committer wakes goes into one
//! log chunk and one flush; each waiter is answered after that flush.

use crate::{IngestConfig, IngestError};
use hookrelay_core::{now_ms, Event, Seq};
use hookrelay_store::EventLog;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// One accepted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The event id (the producer's or a generated `evt_...`).
    pub event_id: String,
    /// Position in the log.
    pub sequence: Seq,
    /// Whether the same `(device_id, id)` had been accepted before.
    pub duplicate: bool,
}

struct Request {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Accepted>, IngestError>>,
}

/// The cloneable side producers use.
#[derive(Clone)]
pub struct CommitterHandle {
    tx: mpsc::Sender<Request>,
    head: watch::Receiver<Seq>,
    dispatched: watch::Receiver<Seq>,
    max_backlog: u64,
}

impl CommitterHandle {
    /// Appends `events` atomically (all or none) and answers once they are
    /// durable. Refuses with [`IngestError::Overloaded`] when the fan-out
    /// backlog is over the limit, appending nothing.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Accepted>, IngestError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let backlog = self.backlog();
        if backlog > self.max_backlog {
            return Err(IngestError::Overloaded {
                backlog,
                limit: self.max_backlog,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { events, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Durable events not yet fanned out.
    pub fn backlog(&self) -> u64 {
        self.head.borrow().saturating_sub(*self.dispatched.borrow())
    }
}

/// The single task that writes the log.
pub struct Committer {
    rx: mpsc::Receiver<Request>,
    log: Arc<dyn EventLog>,
    max_batch_events: usize,
}

impl Committer {
    /// A committer over `log`; `dispatched` watches the scheduler's cursor
    /// (for the backlog limit).
    pub fn new(
        log: Arc<dyn EventLog>,
        config: &IngestConfig,
        dispatched: watch::Receiver<Seq>,
    ) -> (Self, CommitterHandle) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let handle = CommitterHandle {
            tx,
            head: log.durable_head(),
            dispatched,
            max_backlog: config.max_backlog,
        };
        let committer = Self {
            rx,
            log,
            max_batch_events: config.max_batch_events.max(1),
        };
        (committer, handle)
    }

    /// Commits until `shutdown`; then stops taking new requests, commits the
    /// ones already queued, and returns.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch: Vec<Request> = Vec::new();
        loop {
            let first = tokio::select! {
                r = self.rx.recv() => r,
                () = shutdown.cancelled() => {
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut events = first.events.len();
            batch.push(first);
            while events < self.max_batch_events {
                match self.rx.try_recv() {
                    Ok(r) => {
                        events += r.events.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch).await;
        }
        info!("ingest committer stopped");
    }

    async fn commit(&self, batch: &mut Vec<Request>) {
        let mut all = Vec::with_capacity(batch.iter().map(|r| r.events.len()).sum());
        let mut ids = Vec::with_capacity(batch.len());
        for r in batch.iter_mut() {
            ids.push(r.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
            all.append(&mut r.events);
        }
        let n = all.len();
        let result = match self.log.append(all, now_ms()) {
            Ok(first) => match self.log.sync().await {
                Ok(()) => Ok(first),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(first) => {
                let mut seq = first;
                for (r, ids) in batch.drain(..).zip(ids) {
                    let accepted = ids
                        .into_iter()
                        .map(|event_id| {
                            let a = Accepted {
                                event_id,
                                sequence: seq,
                                duplicate: false,
                            };
                            seq += 1;
                            a
                        })
                        .collect();
                    // A producer that went away no longer needs its answer.
                    let _ = r.reply.send(Ok(accepted));
                }
            }
            Err(e) => {
                error!(error = %e, events = n, "appending to the event log failed");
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(IngestError::Unavailable(e.to_string())));
                }
            }
        }
    }
}
