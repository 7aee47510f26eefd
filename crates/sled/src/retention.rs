//! Retention: removing what no one needs any more, in small batches.
//!
//! A chunk may go when it was appended before the retention horizon, every
//! event in it is behind the dispatch cursor, and none of its deliveries has
//! a pending record. Chunks go strictly from the front of the log, so the log
//! stays a contiguous suffix and replay reaches back to its first chunk. The
//! terminal records of removed events go with them; their attempt-log entries
//! are swept by a resumable scan of the attempts tree.

use crate::{keys, OrIo};
use hookrelay_core::{DeliveryRecord, DeliveryStatus, Seq};
use hookrelay_store::{codec, CompactStats, StoreError};
use std::sync::Mutex;

/// Compaction state kept between passes.
pub(crate) struct Retention {
    /// Highest removed sequence.
    horizon: Mutex<Seq>,
    /// Where the attempts sweep resumes.
    sweep_from: Mutex<Vec<u8>>,
}

impl Retention {
    pub(crate) fn new(first_seq: Option<Seq>) -> Self {
        Self {
            horizon: Mutex::new(first_seq.map_or(0, |f| f.saturating_sub(1))),
            sweep_from: Mutex::new(Vec::new()),
        }
    }
}

impl crate::Store {
    /// One compaction pass: removes at most `max_chunks` chunks appended
    /// before `before_ms`, and sweeps at most `max_attempts` attempt entries.
    pub fn compact(
        &self,
        before_ms: i64,
        max_chunks: usize,
        max_attempts: usize,
    ) -> Result<CompactStats, StoreError> {
        let cursor = self.deliveries.cursor()?;
        let events = self.db.open_tree("events").io()?;
        let index = self.db.open_tree(crate::log::INDEX_TREE).io()?;
        let records = self.db.open_tree("state").io()?;
        let mut stats = CompactStats::default();
        let mut horizon = *self
            .retention
            .horizon
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        'chunks: for item in events.iter().take(max_chunks) {
            let (k, v) = item.io()?;
            let first = Seq::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { what: "event key" })?,
            );
            let head = crate::log::chunk_head(&v)?;
            let last = first + head.len.saturating_sub(1);
            if head.appended_at_ms >= before_ms || last > cursor {
                break;
            }
            let start = [&[crate::deliveries::REC][..], &first.to_be_bytes()].concat();
            let end = [&[crate::deliveries::REC][..], &(last + 1).to_be_bytes()].concat();
            let mut terminal = Vec::new();
            for r in records.range(start..end) {
                let (rk, rv) = r.io()?;
                let rec: DeliveryRecord = codec::decode(&rv, "delivery")?;
                if rec.status == DeliveryStatus::Pending {
                    break 'chunks;
                }
                terminal.push(rk);
            }
            let mut batch = sled::Batch::default();
            for rk in &terminal {
                batch.remove(rk.clone());
            }
            records.apply_batch(batch).io()?;
            events.remove(&k).io()?;
            index.remove(&k).io()?;
            stats.chunks += 1;
            stats.events += head.len;
            stats.records += terminal.len();
            horizon = last;
        }
        if stats.chunks > 0 {
            // Recovery restores the newest segment's chunks from its frames,
            // but none that retention removed.
            self.db
                .open_tree("meta")
                .io()?
                .insert(keys::META_LOG_HORIZON, &horizon.to_be_bytes())
                .io()?;
            // A segment file goes only once no surviving entry can point
            // into it, even after a crash.
            self.db.flush().io()?;
            self.log.release_segments()?;
        }
        *self
            .retention
            .horizon
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = horizon;
        stats.horizon = horizon;
        if horizon > 0 {
            stats.attempts = self.sweep_attempts(horizon, max_attempts)?;
        }
        Ok(stats)
    }

    /// Removes attempt entries of events at or below `horizon`, scanning at
    /// most `max` entries from where the last sweep stopped.
    fn sweep_attempts(&self, horizon: Seq, max: usize) -> Result<usize, StoreError> {
        let attempts = self.db.open_tree("attempts").io()?;
        let mut from = self
            .retention
            .sweep_from
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut scanned = 0;
        let mut next = Vec::new();
        for item in attempts.range(from.clone()..) {
            let (k, _) = item.io()?;
            scanned += 1;
            if scanned > max {
                next = k.to_vec();
                break;
            }
            if keys::attempt_seq(&k).is_some_and(|s| s <= horizon) {
                batch.remove(k);
                removed += 1;
            }
        }
        attempts.apply_batch(batch).io()?;
        // Wrapped around: the next sweep starts from the beginning.
        *from = next;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use hookrelay_core::{Attempt, DeliveryKey, DeliveryRecord, DeliveryStatus, Event, WebhookId};
    use hookrelay_store::DeliveryWrite;

    fn ev() -> Event {
        Event {
            id: "e".into(),
            device_id: "d".into(),
            event_type: "message.sent".into(),
            occurred_at_ms: 0,
            data: "{}".into(),
        }
    }

    fn key(seq: u64) -> DeliveryKey {
        DeliveryKey {
            seq,
            generation: 0,
            webhook_id: WebhookId::from("wh_a"),
        }
    }

    fn rec(status: DeliveryStatus) -> DeliveryRecord {
        DeliveryRecord {
            status,
            attempts: 1,
            next_attempt_ms: 0,
            last_status_code: None,
            last_error: None,
            event_type: "message.sent".into(),
            event_id: "e".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn attempt() -> Attempt {
        Attempt {
            attempt: 1,
            started_at_ms: 0,
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            response_body: None,
        }
    }

    #[tokio::test]
    async fn retention_removes_only_what_it_may() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        // Chunks: [1,2] old, [3,4] old with a pending delivery, [5] young, [6] old-but-past-cursor.
        s.log
            .insert_chunk(vec![ev(), ev()], vec![], 100)
            .expect("append");
        s.log
            .insert_chunk(vec![ev(), ev()], vec![], 200)
            .expect("append");
        s.log
            .insert_chunk(vec![ev()], vec![], 10_000)
            .expect("append");
        s.log.sync().await.expect("sync");
        s.deliveries
            .apply(&[
                DeliveryWrite::Record(key(1), rec(DeliveryStatus::Failed)),
                DeliveryWrite::Record(key(3), rec(DeliveryStatus::Pending)),
                DeliveryWrite::Attempt(key(1), attempt()),
                DeliveryWrite::Attempt(key(2), attempt()),
                DeliveryWrite::Attempt(key(3), attempt()),
                DeliveryWrite::Cursor(5),
            ])
            .expect("apply");
        let st = s.compact(5_000, 10, 100).expect("compact");
        // Attempt entries: two attempts (key 1's record, written with its
        // attempt, needs no listing marker).
        assert_eq!(
            (st.chunks, st.events, st.records, st.attempts),
            (1, 2, 1, 2)
        );
        assert_eq!(st.horizon, 2);
        assert!(s
            .log
            .read_from(1, 10)
            .expect("read")
            .iter()
            .all(|e| e.seq >= 3));
        assert_eq!(s.deliveries.record(&key(1)).expect("rec"), None);
        assert!(s.deliveries.record(&key(3)).expect("rec").is_some());
        assert_eq!(s.deliveries.attempts(&key(3)).expect("att").len(), 1);

        // Once the pending delivery ends, its chunk may go; the young one stays.
        s.deliveries
            .apply(&[DeliveryWrite::Record(
                key(3),
                rec(DeliveryStatus::Delivered),
            )])
            .expect("apply");
        let st = s.compact(5_000, 10, 100).expect("compact");
        assert_eq!((st.chunks, st.events, st.attempts), (1, 2, 2));
        let left: Vec<u64> = s
            .log
            .read_from(1, 10)
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, vec![5]);
        // Past the cursor nothing goes, however old.
        s.log.insert_chunk(vec![ev()], vec![], 1).expect("append");
        s.log.sync().await.expect("sync");
        let st = s.compact(i64::MAX, 10, 100).expect("compact");
        assert_eq!(st.chunks, 1, "only [5], which is behind the cursor");
        assert_eq!(s.log.read_from(1, 10).expect("read").len(), 1);
    }
}
