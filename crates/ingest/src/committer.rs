//! Group commit.
//!
//! Every append waiting when the committer wakes goes into one log append
//! (one chunk per partition); each waiter is answered once the log says it
//! is durable (invariant 1). Events that carried a producer id go with
//! their idempotency key (a 128-bit hash of `(device_id, id)`) and the start
//! of `ingest.dedup_window`: the log owns idempotency, on every backend,
//! and answers a key taken within the window as a duplicate of its
//! original sequence, appending nothing for it. Only the repeats a batch
//! itself holds (the same key from two requests merged into one commit) are
//! resolved here.

use crate::{IngestConfig, IngestError};
use hookrelay_core::{now_ms, Event, Progress, Seq};
use hookrelay_store::{Appended, EventLog, IdemKey, KeyMap};
use sha2::{Digest, Sha256};
use std::{sync::Arc, time::Duration};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// One event to append; `keyed` when the producer gave its id (only those
/// take part in deduplication: generated ids are unique by construction).
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The validated event.
    pub event: Event,
    /// Whether `event.id` came from the producer.
    pub keyed: bool,
}

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
    events: Vec<Incoming>,
    reply: oneshot::Sender<Result<Vec<Accepted>, IngestError>>,
}

/// The cloneable side producers use.
#[derive(Clone)]
pub struct CommitterHandle {
    tx: mpsc::Sender<Request>,
    /// The log's durable head, when it has one partition (a partitioned log
    /// is bounded by its backend's limits and the pending deliveries).
    head: Option<watch::Receiver<Seq>>,
    progress: watch::Receiver<Progress>,
    max_backlog: u64,
    max_pending: u64,
}

impl CommitterHandle {
    /// Appends `events` atomically (all or none) and answers once they are
    /// durable. Refuses with [`IngestError::Overloaded`], appending nothing,
    /// when the fan-out backlog or the pending deliveries are over their limits.
    pub async fn append(&self, events: Vec<Incoming>) -> Result<Vec<Accepted>, IngestError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.check_load()?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { events, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    fn check_load(&self) -> Result<(), IngestError> {
        let progress = *self.progress.borrow();
        let backlog = self
            .head
            .as_ref()
            .map_or(0, |h| h.borrow().saturating_sub(progress.cursor));
        if backlog > self.max_backlog {
            return Err(IngestError::Overloaded {
                what: "unfanned events",
                current: backlog,
                limit: self.max_backlog,
            });
        }
        if progress.pending > self.max_pending {
            return Err(IngestError::Overloaded {
                what: "pending deliveries",
                current: progress.pending,
                limit: self.max_pending,
            });
        }
        Ok(())
    }
}

/// The idempotency key of `(device_id, id)`. Device ids cannot contain
/// control characters, so the NUL separator is unambiguous.
pub fn idempotency_key(device_id: &str, id: &str) -> IdemKey {
    let mut h = Sha256::new();
    h.update(device_id.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(b)
}

/// The single task that writes the log.
pub struct Committer {
    rx: mpsc::Receiver<Request>,
    log: Arc<dyn EventLog>,
    max_batch_events: usize,
    commit_interval: Duration,
    window_ms: i64,
}

/// How one event of a commit is answered.
enum Answer {
    /// Appended at this offset of the chunk.
    New(u32),
    /// A repeat of the event at this offset of the same chunk.
    RepeatInCommit(u32),
}

impl Committer {
    /// A committer over `log`; `progress` watches the scheduler (for the
    /// back-pressure limits).
    pub fn new(
        log: Arc<dyn EventLog>,
        config: &IngestConfig,
        progress: watch::Receiver<Progress>,
    ) -> (Self, CommitterHandle) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let handle = CommitterHandle {
            tx,
            head: (log.partitions() == 1).then(|| log.durable_head(0)),
            progress,
            max_backlog: config.max_backlog,
            max_pending: config.max_pending_deliveries,
        };
        let committer = Self {
            rx,
            log,
            max_batch_events: config.max_batch_events.max(1),
            commit_interval: config.commit_interval,
            window_ms: i64::try_from(config.dedup_window.as_millis()).unwrap_or(i64::MAX / 2),
        };
        (committer, handle)
    }

    /// Commits until `shutdown`; then stops taking new requests, commits
    /// the ones already queued, and returns.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch: Vec<Request> = Vec::new();
        // When the last commit started: the next one starts no sooner than
        // `commit_interval` after it (commit pacing, see `IngestConfig`).
        let mut last_start: Option<tokio::time::Instant> = None;
        loop {
            let first = tokio::select! {
                r = self.rx.recv() => r,
                () = shutdown.cancelled() => {
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            if let Some(at) = last_start.map(|t| t + self.commit_interval) {
                if at > tokio::time::Instant::now() && first.events.len() < self.max_batch_events {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
            last_start = Some(tokio::time::Instant::now());
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

    async fn commit(&mut self, batch: &mut Vec<Request>) {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.window_ms);
        let total = batch.iter().map(|r| r.events.len()).sum();
        let mut events = Vec::with_capacity(total);
        let mut keys: Vec<(IdemKey, u32)> = Vec::new();
        let mut in_batch: KeyMap<u32> = KeyMap::default();
        let mut answers: Vec<Vec<(String, Answer)>> = Vec::with_capacity(batch.len());
        for r in batch.iter_mut() {
            let mut mine = Vec::with_capacity(r.events.len());
            for inc in r.events.drain(..) {
                let id = inc.event.id.clone();
                if inc.keyed {
                    let k = idempotency_key(&inc.event.device_id, &inc.event.id);
                    if let Some(offset) = in_batch.get(&k) {
                        // Same key twice in one commit: the second is a duplicate of the first.
                        mine.push((id, Answer::RepeatInCommit(*offset)));
                        continue;
                    }
                    let offset = events.len() as u32;
                    in_batch.insert(k, offset);
                    keys.push((k, offset));
                }
                mine.push((id, Answer::New(events.len() as u32)));
                events.push(inc.event);
            }
            answers.push(mine);
        }
        let n = events.len();
        let taken = if n == 0 {
            Vec::new()
        } else {
            match self.log.append(events, keys, now, cutoff).await {
                Ok(taken) if taken.len() == n => taken,
                Ok(taken) => {
                    let e = hookrelay_store::StoreError::Task(format!(
                        "the log answered {} of {n} events",
                        taken.len()
                    ));
                    return fail(batch, &e, n);
                }
                Err(e) => return fail(batch, &e, n),
            }
        };
        answer(batch, answers, &taken);
    }
}

/// Answers every request of a committed batch; `taken` is the log's answer
/// for each event of the chunk.
fn answer(batch: &mut Vec<Request>, answers: Vec<Vec<(String, Answer)>>, taken: &[Appended]) {
    for (r, mine) in batch.drain(..).zip(answers) {
        let accepted = mine
            .into_iter()
            .map(|(event_id, a)| {
                let (sequence, duplicate) = match a {
                    Answer::New(off) => match taken[off as usize] {
                        Appended::New(seq) => (seq, false),
                        Appended::Duplicate(seq) => (seq, true),
                    },
                    Answer::RepeatInCommit(off) => match taken[off as usize] {
                        Appended::New(seq) | Appended::Duplicate(seq) => (seq, true),
                    },
                };
                Accepted {
                    event_id,
                    sequence,
                    duplicate,
                }
            })
            .collect();
        // A producer that went away no longer needs its answer.
        let _ = r.reply.send(Ok(accepted));
    }
}

/// Answers every request of a failed batch with UNAVAILABLE.
fn fail(batch: &mut Vec<Request>, e: &hookrelay_store::StoreError, n: usize) {
    error!(error = %e, events = n, "appending to the event log failed");
    for r in batch.drain(..) {
        let _ = r.reply.send(Err(IngestError::Unavailable(e.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::Partition;
    use hookrelay_store::{BoxFuture, ChunkIndex, LoggedEvent, StoreError};
    use std::sync::Mutex;

    /// A log that takes every append at once and notes each one's size and
    /// (virtual) time.
    #[derive(Default)]
    struct Counting {
        commits: Mutex<Vec<(usize, Duration)>>,
        next: Mutex<Seq>,
        head: watch::Sender<Seq>,
        started: Mutex<Option<tokio::time::Instant>>,
    }

    impl EventLog for Counting {
        fn partitions(&self) -> u32 {
            1
        }
        fn append(
            &self,
            events: Vec<Event>,
            _keys: Vec<(IdemKey, u32)>,
            _at: i64,
            _since: i64,
        ) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
            let start = self
                .started
                .lock()
                .expect("lock")
                .get_or_insert_with(tokio::time::Instant::now)
                .to_owned();
            self.commits
                .lock()
                .expect("lock")
                .push((events.len(), start.elapsed()));
            let mut next = self.next.lock().expect("lock");
            let out = (0..events.len())
                .map(|_| {
                    *next += 1;
                    Appended::New(*next)
                })
                .collect();
            Box::pin(async move { Ok(out) })
        }
        fn read(
            &self,
            _: Partition,
            _: Seq,
            _: usize,
        ) -> BoxFuture<'_, Result<Vec<LoggedEvent>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn event(&self, _: Seq) -> BoxFuture<'_, Result<Option<LoggedEvent>, StoreError>> {
            Box::pin(async { Ok(None) })
        }
        fn durable_head(&self, _: Partition) -> watch::Receiver<Seq> {
            self.head.subscribe()
        }
        fn chunk_index(
            &self,
            _: Partition,
            _: Seq,
            _: usize,
        ) -> BoxFuture<'_, Result<Vec<(Seq, ChunkIndex)>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn first_seq_at(
            &self,
            _: Partition,
            _: i64,
        ) -> BoxFuture<'_, Result<Option<Seq>, StoreError>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn incoming(i: usize) -> Vec<Incoming> {
        vec![Incoming {
            event: Event {
                id: format!("evt_{i}"),
                device_id: "dev".into(),
                event_type: "message.received".into(),
                occurred_at_ms: 0,
                data: "{}".into(),
            },
            keyed: false,
        }]
    }

    /// Appends one event at once, then two more 1 ms and 2 ms later; returns
    /// the commits the log saw (events, virtual time since the first).
    async fn three_appends(interval: Duration) -> Vec<(usize, Duration)> {
        let log = Arc::new(Counting::default());
        let cfg = IngestConfig {
            commit_interval: interval,
            ..IngestConfig::default()
        };
        let (_progress_tx, progress) = watch::channel(Progress::default());
        let (committer, handle) = Committer::new(log.clone(), &cfg, progress);
        let stop = CancellationToken::new();
        let task = tokio::spawn(committer.run(stop.clone()));
        handle.append(incoming(0)).await.expect("first");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let h = handle.clone();
        let second = tokio::spawn(async move { h.append(incoming(1)).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        let third = handle.append(incoming(2)).await.expect("third");
        let second = second.await.expect("join").expect("second");
        assert_ne!(second[0].sequence, third[0].sequence);
        stop.cancel();
        task.await.expect("committer");
        let commits = log.commits.lock().expect("lock").clone();
        commits
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_shares_paced_commits_and_a_quiet_one_commits_at_once() {
        // The first event after a quiet spell is committed at once; the two
        // that follow within the interval wait for its end and share one.
        let paced = three_appends(Duration::from_millis(10)).await;
        assert_eq!(paced.len(), 2, "{paced:?}");
        assert_eq!(paced[0], (1, Duration::ZERO));
        assert_eq!(paced[1].0, 2);
        assert!(
            paced[1].1 >= Duration::from_millis(10) && paced[1].1 < Duration::from_millis(12),
            "{paced:?}"
        );
        // Without pacing each is committed as it comes.
        let unpaced = three_appends(Duration::ZERO).await;
        let sizes: Vec<usize> = unpaced.iter().map(|c| c.0).collect();
        assert_eq!(sizes, [1, 1, 1], "{unpaced:?}");
        assert!(unpaced[2].1 < Duration::from_millis(3), "{unpaced:?}");
    }

    #[test]
    fn keys_separate_device_and_id() {
        assert_ne!(idempotency_key("ab", "c"), idempotency_key("a", "bc"));
        assert_eq!(idempotency_key("a", "b"), idempotency_key("a", "b"));
    }
}
