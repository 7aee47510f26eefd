//! The event log: chunks of events, one sled value per append.

use crate::{codec, BoxFuture, StoreError};
use hookrelay_core::{Event, Seq};
use serde::{Deserialize, Serialize};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};
use tokio::sync::watch;

/// One group commit's worth of events; event `i` has sequence `first + i`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// When the chunk was appended (unix ms): the events' append time.
    pub appended_at_ms: i64,
    /// The events, in sequence order.
    pub events: Vec<Event>,
}

/// An event read back from the log with its position and append time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Sequence number.
    pub seq: Seq,
    /// Append time, unix ms.
    pub appended_at_ms: i64,
    /// The event.
    pub event: Arc<Event>,
}

/// The durable event log.
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` as one atomic chunk and returns the first sequence.
    /// Not durable until [`EventLog::sync`] completes.
    fn append(&self, events: Vec<Event>, appended_at_ms: i64) -> Result<Seq, StoreError>;
    /// Makes every append so far durable, then advances [`EventLog::durable_head`].
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Up to `max` events with sequence ≥ `from`, in order, no further than
    /// the durable head.
    fn read(&self, from: Seq, max: usize) -> Result<Vec<LoggedEvent>, StoreError>;
    /// Watches the highest durable sequence (0 when empty).
    fn durable_head(&self) -> watch::Receiver<Seq>;
}

/// sled implementation of [`EventLog`].
pub struct SledLog {
    db: sled::Db,
    tree: sled::Tree,
    /// Next sequence to assign; the mutex also serialises appends.
    next: Mutex<Seq>,
    /// Highest sequence appended (not necessarily durable).
    appended: AtomicU64,
    durable: watch::Sender<Seq>,
}

impl SledLog {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let tree = db.open_tree("events")?;
        let last = match tree.last()? {
            Some((k, v)) => {
                let first = seq_of(&k)?;
                let chunk: Chunk = codec::decode(&v, "event chunk")?;
                first + chunk.events.len() as u64 - 1
            }
            None => 0,
        };
        Ok(Self {
            db: db.clone(),
            tree,
            next: Mutex::new(last + 1),
            appended: AtomicU64::new(last),
            durable: watch::Sender::new(last),
        })
    }

    /// Highest appended sequence.
    pub fn last_seq(&self) -> Seq {
        self.appended.load(Ordering::Acquire)
    }
}

fn seq_of(key: &[u8]) -> Result<Seq, StoreError> {
    key.try_into()
        .map(Seq::from_be_bytes)
        .map_err(|_| StoreError::Corrupt { what: "event key" })
}

impl EventLog for SledLog {
    fn append(&self, events: Vec<Event>, appended_at_ms: i64) -> Result<Seq, StoreError> {
        let n = events.len() as u64;
        let value = codec::encode(&Chunk {
            appended_at_ms,
            events,
        });
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let first = *next;
        self.tree.insert(first.to_be_bytes(), value)?;
        *next = first + n;
        self.appended.store(first + n - 1, Ordering::Release);
        Ok(first)
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let upto = self.last_seq();
            self.db.flush_async().await?;
            self.durable.send_if_modified(|d| {
                let moved = upto > *d;
                *d = (*d).max(upto);
                moved
            });
            Ok(())
        })
    }

    fn read(&self, from: Seq, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let head = *self.durable.borrow();
        let from = from.max(1);
        let mut out = Vec::new();
        if from > head || max == 0 {
            return Ok(out);
        }
        // Start at the chunk holding `from`: the last chunk key ≤ from.
        let start = match self.tree.range(..=from.to_be_bytes()).next_back() {
            Some(r) => r?.0,
            None => sled::IVec::from(&from.to_be_bytes()),
        };
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            let first = seq_of(&k)?;
            if first > head {
                break;
            }
            let chunk: Chunk = codec::decode(&v, "event chunk")?;
            for (i, event) in chunk.events.into_iter().enumerate() {
                let seq = first + i as u64;
                if seq < from {
                    continue;
                }
                if seq > head || out.len() >= max {
                    return Ok(out);
                }
                out.push(LoggedEvent {
                    seq,
                    appended_at_ms: chunk.appended_at_ms,
                    event: Arc::new(event),
                });
            }
        }
        Ok(out)
    }

    fn durable_head(&self) -> watch::Receiver<Seq> {
        self.durable.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn ev(i: usize) -> Event {
        Event {
            id: format!("evt_{i}"),
            device_id: "d".into(),
            event_type: "message.received".into(),
            occurred_at_ms: i as i64,
            data: "{}".into(),
        }
    }

    #[tokio::test]
    async fn append_read_across_chunks_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            assert_eq!(log.append((0..3).map(ev).collect(), 10).ok(), Some(1));
            assert_eq!(log.append((3..7).map(ev).collect(), 20).ok(), Some(4));
            // Nothing is readable before it is durable.
            assert!(log.read(1, 100).expect("read").is_empty());
            log.sync().await.expect("sync");
            assert_eq!(*log.durable_head().borrow(), 7);
            let got = log.read(2, 100).expect("read");
            assert_eq!(
                got.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (2..=7).collect::<Vec<_>>()
            );
            assert_eq!(got[0].event.id, "evt_1");
            assert_eq!(got[2].appended_at_ms, 20);
            let few = log.read(3, 2).expect("read");
            assert_eq!(few.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
            assert!(log.read(8, 10).expect("read").is_empty());
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(*store.log.durable_head().borrow(), 7);
        assert_eq!(store.log.append(vec![ev(8)], 30).ok(), Some(8));
    }

    #[test]
    fn unknown_newer_format_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        {
            let db = sled::open(dir.path()).expect("sled");
            let meta = db.open_tree("meta").expect("meta");
            meta.insert(crate::keys::META_FORMAT, &[9u8])
                .expect("insert");
            db.flush().expect("flush");
        }
        let err = Store::open(dir.path()).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("format version 9")));
    }
}
