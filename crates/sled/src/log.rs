//! The event log: chunks of events, one per append, their bytes in segment
//! files ([`crate::segments`]) and their place in sled.

use crate::{
    segments::{FrameBuf, Loc, Segments},
    OrIo,
};
use hookrelay_core::{Event, Partition, Seq};
use hookrelay_store::{
    codec, Appended, BoxFuture, Chunk, ChunkIndex, ChunkKeys, EventLog, IdemKey, KeyedSeq,
    LoggedEvent, RecentKeys, StoreError,
};

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio::sync::watch;

/// How often (in append time) keys past the idempotency window are
/// dropped, from memory and from the `event_keys` tree.
const PRUNE_EVERY_MS: i64 = 60_000;

/// The idempotency window: one process owns a sled directory, so the keys
/// appended within `ingest.dedup_window` are all here, loaded at open from
/// the keys persisted beside the chunks.
struct KeyWindow {
    recent: RecentKeys,
    /// Append time of the last prune.
    pruned_at_ms: i64,
}

/// sled implementation of [`EventLog`].
pub struct SledLog {
    db: sled::Db,
    /// Appends are refused while free space is below the reserve.
    health: crate::Health,
    /// First sequence of each chunk → its [`Loc`] (or, written by builds
    /// before segment files, the chunk itself).
    tree: sled::Tree,
    /// The chunks' bytes (shared with rolls on the blocking pool).
    segments: Arc<Segments>,
    keys: sled::Tree,
    index: sled::Tree,
    /// Recently decoded chunks by first sequence: retries and listings read
    /// single events, and a chunk holds thousands.
    cache: Mutex<Vec<(Seq, Arc<DecodedChunk>)>>,
    /// Next sequence to assign; the mutex also serialises appends.
    next: Mutex<Seq>,
    /// Highest sequence appended (not necessarily durable).
    appended: AtomicU64,
    durable: watch::Sender<Seq>,
    /// Held across a whole append (check, write, sync, record): a key is
    /// taken only once its event is durable, and never twice.
    window: tokio::sync::Mutex<KeyWindow>,
    #[cfg(feature = "ack-before-flush")]
    last_flush: Mutex<std::time::Instant>,
}

impl SledLog {
    pub(crate) fn open(
        db: &sled::Db,
        segments_dir: &Path,
        health: crate::Health,
    ) -> Result<Self, StoreError> {
        let tree = db.open_tree("events").io()?;
        let keys = db.open_tree("event_keys").io()?;
        let index = db.open_tree(INDEX_TREE).io()?;
        let segments = Segments::open(segments_dir)?;
        let horizon = match db
            .open_tree("meta")
            .io()?
            .get(crate::keys::META_LOG_HORIZON)
            .io()?
        {
            Some(v) => seq_of(&v)?,
            None => 0,
        };
        recover_newest_segment(&tree, &index, &keys, &segments, horizon)?;
        // Index entries are written after their chunk's place, so the last
        // chunks may lack one after a crash (sled keeps a prefix of the
        // write order), and logs written before the index existed lack them
        // all: rebuild them from the chunks, newest first, down to the first
        // chunk that has one.
        let mut built = 0usize;
        for item in tree.iter().rev() {
            let (k, v) = item.io()?;
            if index.contains_key(&k).io()? {
                break;
            }
            let Some(chunk) = load_chunk(&segments, &v)? else {
                break;
            };
            index
                .insert(
                    k,
                    codec::encode(&ChunkIndex::of(&chunk.events, chunk.appended_at_ms)),
                )
                .io()?;
            built += 1;
        }
        if built > 0 {
            tracing::info!(
                chunks = built,
                "rebuilt chunk index entries of the event log"
            );
        }
        let last = match tree.last().io()? {
            Some((k, v)) => {
                let first = seq_of(&k)?;
                first + chunk_head(&v)?.len.saturating_sub(1)
            }
            None => 0,
        };
        let mut log = Self {
            db: db.clone(),
            health,
            tree,
            segments: Arc::new(segments),
            keys,
            index,
            cache: Mutex::new(Vec::with_capacity(CHUNK_CACHE)),
            next: Mutex::new(last + 1),
            appended: AtomicU64::new(last),
            durable: watch::Sender::new(last),
            window: tokio::sync::Mutex::new(KeyWindow {
                recent: RecentKeys::default(),
                pruned_at_ms: i64::MIN,
            }),
            #[cfg(feature = "ack-before-flush")]
            last_flush: Mutex::new(std::time::Instant::now()),
        };
        // Every persisted key: those past the window go at the first prune.
        let recent = RecentKeys::from_keys(log.keys_since(i64::MIN)?);
        if !recent.is_empty() {
            tracing::info!(keys = recent.len(), "idempotency window loaded");
        }
        log.window.get_mut().recent = recent;
        Ok(log)
    }

    /// First sequence still in the log, if any.
    pub fn first_seq(&self) -> Result<Option<Seq>, StoreError> {
        self.tree.first().io()?.map(|(k, _)| seq_of(&k)).transpose()
    }

    /// Highest appended sequence.
    pub fn last_seq(&self) -> Seq {
        self.appended.load(Ordering::Acquire)
    }

    /// Bytes in segment files.
    pub(crate) fn segments_size(&self) -> u64 {
        self.segments.size_on_disk()
    }

    /// Deletes the segment files that hold no chunk still in the log (call
    /// once their removal from sled is durable). Returns how many went.
    pub(crate) fn release_segments(&self) -> Result<usize, StoreError> {
        let keep_from = match self.tree.first().io()? {
            // Inline chunks are older than every segment: keep them all.
            Some((_, v)) => match loc_of(&v)? {
                Some(loc) => loc.segment,
                None => return Ok(0),
            },
            None => u64::MAX,
        };
        self.segments.remove_before(keep_from)
    }
}

/// The tree of [`ChunkIndex`] entries, keyed like the chunks.
pub(crate) const INDEX_TREE: &str = "chunk_index";

/// Decoded chunks kept in [`SledLog`]'s cache.
const CHUNK_CACHE: usize = 8;

/// A chunk with its events shared, as the cache keeps it.
struct DecodedChunk {
    appended_at_ms: i64,
    events: Vec<Arc<Event>>,
}

impl SledLog {
    /// The chunk whose events-tree value is `value`, decoded; `None` when
    /// its segment is gone (retention removed it after the value was read).
    fn decoded(&self, first: Seq, value: &[u8]) -> Result<Option<Arc<DecodedChunk>>, StoreError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(f, _)| *f == first) {
            let hit = cache.remove(i);
            let chunk = hit.1.clone();
            cache.push(hit);
            return Ok(Some(chunk));
        }
        drop(cache);
        let Some(chunk) = load_chunk(&self.segments, value)? else {
            return Ok(None);
        };
        let decoded = Arc::new(DecodedChunk {
            appended_at_ms: chunk.appended_at_ms,
            events: chunk.events.into_iter().map(Arc::new).collect(),
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CHUNK_CACHE {
            cache.remove(0);
        }
        cache.push((first, decoded.clone()));
        Ok(Some(decoded))
    }
}

/// The version byte of a [`Loc`] value in the events tree; chunks written
/// inline by builds before segment files carry [`codec::FORMAT_VERSION`].
const LOC_LAYOUT: u8 = 2;

/// The [`Loc`] in an events-tree value, or `None` for an inline chunk.
fn loc_of(v: &[u8]) -> Result<Option<Loc>, StoreError> {
    match codec::version_of(v) {
        Some(LOC_LAYOUT) => codec::decode_as(LOC_LAYOUT, v, "event chunk location").map(Some),
        _ => Ok(None),
    }
}

/// The chunk an events-tree value stands for; `None` when its segment is
/// gone (retention removed it).
fn load_chunk(segments: &Segments, value: &[u8]) -> Result<Option<Chunk>, StoreError> {
    match loc_of(value)? {
        Some(loc) => match segments.read(&loc)? {
            Some(bytes) => codec::decode(&bytes, "event chunk").map(Some),
            None => Ok(None),
        },
        None => codec::decode(value, "event chunk").map(Some),
    }
}

/// The append time and event count of an events-tree value, either kind.
pub(crate) fn chunk_head(v: &[u8]) -> Result<codec::ChunkHead, StoreError> {
    match codec::version_of(v) {
        // A Loc starts with the same two fields as a chunk.
        Some(LOC_LAYOUT) => codec::decode_as(LOC_LAYOUT, v, "event chunk location"),
        _ => codec::decode_chunk_head(v),
    }
}

/// After a crash sled may lack the places of the newest segment's last
/// chunks (they were acknowledged on the segment's fsync, not sled's), or
/// list chunks whose bytes never reached the disk (never acknowledged). The
/// segment's frames are the truth: rewrites the entries (place, index,
/// keys) of every whole frame, drops every entry past the last one, and
/// cuts the segment there. Chunks at or below `horizon` were removed by
/// retention and stay removed. See [`crate::segments`].
fn recover_newest_segment(
    tree: &sled::Tree,
    index: &sled::Tree,
    keys: &sled::Tree,
    segments: &Segments,
    horizon: Seq,
) -> Result<(), StoreError> {
    let active = segments.active_id();
    let (frames, end) = segments.active_frames()?;
    // Where the log stands before the active segment: its chunks follow on.
    let mut next: Option<Seq> = None;
    for item in tree.iter().rev() {
        let (k, v) = item.io()?;
        if loc_of(&v)?.is_some_and(|l| l.segment >= active) {
            continue;
        }
        next = Some(seq_of(&k)? + chunk_head(&v)?.len);
        break;
    }
    let (mut restored, mut cut_at) = (0usize, end);
    for frame in frames {
        if frame.first_seq <= horizon {
            continue;
        }
        if next.is_some_and(|n| n != frame.first_seq) {
            cut_at = frame.start;
            break;
        }
        let k = frame.first_seq.to_be_bytes();
        let loc = codec::encode_as(LOC_LAYOUT, &frame.loc);
        if tree.get(k).io()?.as_deref() != Some(&loc[..]) {
            tree.insert(k, loc).io()?;
            restored += 1;
        }
        if !index.contains_key(k).io()? {
            if let Some(chunk) = segments.read(&frame.loc)? {
                let chunk: Chunk = codec::decode(&chunk, "event chunk")?;
                index
                    .insert(
                        k,
                        codec::encode(&ChunkIndex::of(&chunk.events, chunk.appended_at_ms)),
                    )
                    .io()?;
            }
        }
        if !frame.keys.is_empty() && !keys.contains_key(k).io()? {
            keys.insert(k, frame.keys).io()?;
        }
        next = Some(frame.first_seq + frame.loc.len);
    }
    // Every entry past the last whole frame: in this segment (bytes that
    // never reached the disk) or pointing at a segment that is not there.
    let mut dropped = 0usize;
    let doomed: Vec<sled::IVec> = match next {
        Some(n) => tree
            .range(n.to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .io()?,
        None => tree.iter().keys().collect::<Result<_, _>>().io()?,
    };
    for k in &doomed {
        tree.remove(k).io()?;
        index.remove(k).io()?;
        keys.remove(k).io()?;
        dropped += 1;
    }
    segments.truncate_active(cut_at)?;
    if restored > 0 || dropped > 0 {
        tree.flush().io()?;
    }
    if restored > 0 {
        tracing::info!(
            chunks = restored,
            "restored the places of acknowledged chunks from the newest segment"
        );
    }
    if dropped > 0 {
        tracing::warn!(
            chunks = dropped,
            "dropped unacknowledged chunks whose bytes did not reach the disk before a crash"
        );
    }
    Ok(())
}

fn seq_of(key: &[u8]) -> Result<Seq, StoreError> {
    key.try_into()
        .map(Seq::from_be_bytes)
        .map_err(|_| StoreError::Corrupt { what: "event key" })
}

impl SledLog {
    /// Writes `events` as one chunk (not yet durable) and returns its first
    /// sequence.
    pub fn insert_chunk(
        &self,
        events: Vec<Event>,
        keys: Vec<(IdemKey, u32)>,
        appended_at_ms: i64,
    ) -> Result<Seq, StoreError> {
        let n = events.len() as u64;
        // A full disk would leave sled in a sticky error state; refusing
        // while inside the reserve keeps the store writable once space
        // returns.
        self.health.check_space()?;
        if n == 0 {
            return Ok(*self.next.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let index = codec::encode(&ChunkIndex::of(&events, appended_at_ms));
        let keys = if keys.is_empty() {
            Vec::new()
        } else {
            codec::encode(&ChunkKeys {
                appended_at_ms,
                keys,
            })
        };
        // The chunk, most of the bytes, is encoded straight into its frame.
        let chunk = Chunk {
            appended_at_ms,
            events,
        };
        let frame = FrameBuf::new(
            |b| codec::encode_into(b, codec::FORMAT_VERSION, &chunk),
            |b| b.extend_from_slice(&keys),
        );
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let first = *next;
        // A full segment's places must be durable in sled before the next
        // segment exists: recovery rebuilds only the newest one's.
        let loc =
            self.health
                .note(self.segments.append(first, frame, appended_at_ms, n, || {
                    self.db.flush().map(drop).io()
                }))?;
        self.health.note(
            self.tree
                .insert(first.to_be_bytes(), codec::encode_as(LOC_LAYOUT, &loc))
                .io(),
        )?;
        // After the chunk (recovery keeps a prefix of the write order): an
        // index entry never describes a chunk that is not there.
        self.index.insert(first.to_be_bytes(), index).io()?;
        // Written after the chunk: recovery keeps a prefix of the write
        // order, so a surviving key never points past the log.
        if !keys.is_empty() {
            self.keys.insert(first.to_be_bytes(), keys).io()?;
        }
        *next = first + n;
        self.appended.store(first + n - 1, Ordering::Release);
        Ok(first)
    }

    /// Makes every chunk written so far durable, then advances the durable
    /// head over them.
    pub async fn sync(&self) -> Result<(), StoreError> {
        #[cfg(feature = "ack-before-flush")]
        if self.skip_flush() {
            return Ok(());
        }
        let upto = self.last_seq();
        // Taken after `upto`: every chunk up to it is in this segment or in
        // one fsynced when it filled. The segment's frames are all an
        // acknowledged chunk needs (sled's entries for them are rebuilt
        // from the newest segment at open), so sled is not flushed here.
        let segment = self.segments.active_file();
        let synced = tokio::task::spawn_blocking(move || segment.sync_data())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .io();
        self.health.note(synced)?;
        self.durable.send_if_modified(|d| {
            let moved = upto > *d;
            *d = (*d).max(upto);
            moved
        });
        Ok(())
    }

    /// Fault injection for the crash test's self-check only: appends are
    /// answered before they are flushed, and the log is flushed lazily
    /// (every 250 ms), breaking invariant 1 the way an engine that "flushes
    /// periodically" does. The durable head still moves only after a flush.
    #[cfg(feature = "ack-before-flush")]
    fn skip_flush(&self) -> bool {
        let mut last = self.last_flush.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < std::time::Duration::from_millis(250) {
            return true;
        }
        *last = std::time::Instant::now();
        false
    }

    /// Events with sequence ≥ `from`, no further than the durable head.
    pub fn read_from(&self, from: Seq, max: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let head = *self.durable.borrow();
        let from = from.max(1);
        let mut out = Vec::new();
        if from > head || max == 0 {
            return Ok(out);
        }
        // Start at the chunk holding `from`: the last chunk key ≤ from.
        let start = match self.tree.range(..=from.to_be_bytes()).next_back() {
            Some(r) => r.io()?.0,
            None => sled::IVec::from(&from.to_be_bytes()),
        };
        for item in self.tree.range(start..) {
            let (k, v) = item.io()?;
            let first = seq_of(&k)?;
            if first > head {
                break;
            }
            let Some(chunk) = self.decoded(first, &v)? else {
                if self.tree.contains_key(&k).io()? {
                    // Still in the log, its bytes gone: never skip silently.
                    return Err(StoreError::Corrupt {
                        what: "event log (a segment file is missing)",
                    });
                }
                // Removed by retention while this read went on.
                continue;
            };
            let skip = from.saturating_sub(first) as usize;
            for (i, event) in chunk.events.iter().enumerate().skip(skip) {
                let seq = first + i as u64;
                if seq > head || out.len() >= max {
                    return Ok(out);
                }
                out.push(LoggedEvent {
                    seq,
                    appended_at_ms: chunk.appended_at_ms,
                    event: event.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Index entries of chunks from `from`, no further than the durable head.
    pub fn chunk_index_from(
        &self,
        from: Seq,
        max: usize,
    ) -> Result<Vec<(Seq, ChunkIndex)>, StoreError> {
        let head = *self.durable.borrow();
        let mut out = Vec::new();
        for item in self.index.range(from.to_be_bytes()..).take(max) {
            let (k, v) = item.io()?;
            let first = seq_of(&k)?;
            if first > head {
                break;
            }
            out.push((first, codec::decode(&v, "chunk index")?));
        }
        Ok(out)
    }

    /// First sequence of the first chunk appended at or after `at_ms`, by
    /// bisection over the chunk index.
    pub fn first_seq_at_ms(&self, at_ms: i64) -> Result<Option<Seq>, StoreError> {
        // g(s): append time of the first chunk whose key is ≥ s; it never
        // decreases with s. Bisect for the smallest s with g(s) ≥ at_ms.
        let g = |s: Seq| -> Result<Option<(Seq, i64)>, StoreError> {
            match self.index.range(s.to_be_bytes()..).next() {
                Some(item) => {
                    let (k, v) = item.io()?;
                    let ix: ChunkIndex = codec::decode(&v, "chunk index")?;
                    Ok(Some((seq_of(&k)?, ix.appended_at_ms)))
                }
                None => Ok(None),
            }
        };
        let (Some(first), Some(last)) = (self.index.first().io()?, self.index.last().io()?) else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (seq_of(&first.0)?, seq_of(&last.0)?);
        match g(hi)? {
            Some((_, at)) if at >= at_ms => {}
            _ => return Ok(None),
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match g(mid)? {
                Some((_, at)) if at >= at_ms => hi = mid,
                _ => lo = mid + 1,
            }
        }
        Ok(g(lo)?.map(|(seq, _)| seq))
    }

    fn keys_since(&self, since_ms: i64) -> Result<Vec<KeyedSeq>, StoreError> {
        let last = self.last_seq();
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (k, v) = item.io()?;
            let first = seq_of(&k)?;
            let chunk: ChunkKeys = codec::decode(&v, "event keys")?;
            if chunk.appended_at_ms < since_ms {
                continue;
            }
            for (key, offset) in chunk.keys {
                let seq = first + u64::from(offset);
                if seq <= last {
                    out.push((key, seq, chunk.appended_at_ms));
                }
            }
        }
        Ok(out)
    }

    fn prune_keys_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.keys.iter() {
            let (k, v) = item.io()?;
            let chunk: ChunkKeys = codec::decode(&v, "event keys")?;
            // Chunks are appended in time order: stop at the first young one.
            if chunk.appended_at_ms >= before_ms {
                break;
            }
            batch.remove(k);
            n += 1;
        }
        self.keys.apply_batch(batch).io()?;
        Ok(n)
    }
}

/// One partition: every call names partition 0, and sled's reads are
/// quick in-memory or page-cache lookups, done on the calling task.
impl EventLog for SledLog {
    fn partitions(&self) -> u32 {
        1
    }

    fn append(
        &self,
        events: Vec<Event>,
        keys: Vec<(IdemKey, u32)>,
        appended_at_ms: i64,
        dedup_since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<Appended>, StoreError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let mut window = self.window.lock().await;
            if appended_at_ms.saturating_sub(window.pruned_at_ms) >= PRUNE_EVERY_MS {
                window.recent.prune(dedup_since_ms);
                // Old keys on disk are only reloaded and pruned again at the
                // next open: a failure here must not refuse the append.
                if let Err(e) = self.prune_keys_before(dedup_since_ms) {
                    tracing::warn!(error = %e, "pruning idempotency keys failed; trying again in a minute");
                }
                window.pruned_at_ms = appended_at_ms;
            }
            let mut admitted = window.recent.admit(events, keys, dedup_since_ms);
            let n = admitted.events.len() as u64;
            if n == 0 {
                return Ok(admitted.answers(0));
            }
            // A full segment is closed (fsync, sled's flush, a directory
            // fsync: milliseconds) on the blocking pool, not on the
            // committer's runtime thread. The chunk then goes to a segment
            // with room; a rare append racing this one (the scheduler's
            // `webhook.disabled`) waits for the roll or rolls itself.
            if self.segments.full() {
                let segments = self.segments.clone();
                let db = self.db.clone();
                let rolled = tokio::task::spawn_blocking(move || {
                    segments.roll(|| db.flush().map(drop).io())
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?;
                self.health.note(rolled)?;
            }
            let events = std::mem::take(&mut admitted.events);
            let first = self.insert_chunk(events, admitted.keys.clone(), appended_at_ms)?;
            self.sync().await?;
            // Durable: from now on the keys are taken.
            window.recent.record(&admitted, first, appended_at_ms);
            Ok(admitted.answers(first))
        })
    }

    fn read(
        &self,
        _partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<LoggedEvent>, StoreError>> {
        Box::pin(async move { self.read_from(from, max) })
    }

    fn event(&self, seq: Seq) -> BoxFuture<'_, Result<Option<LoggedEvent>, StoreError>> {
        Box::pin(async move { Ok(self.read_from(seq, 1)?.into_iter().find(|e| e.seq == seq)) })
    }

    fn durable_head(&self, _partition: Partition) -> watch::Receiver<Seq> {
        self.durable.subscribe()
    }

    fn chunk_index(
        &self,
        _partition: Partition,
        from: Seq,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<(Seq, ChunkIndex)>, StoreError>> {
        Box::pin(async move { self.chunk_index_from(from, max) })
    }

    fn first_seq_at(
        &self,
        _partition: Partition,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<Option<Seq>, StoreError>> {
        Box::pin(async move { self.first_seq_at_ms(at_ms) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use std::os::unix::fs::FileExt;

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
    async fn passes_the_event_log_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        hookrelay_store::conformance::check_log(&*store.log).await;
    }

    /// The window outlives the process: keys appended within it are
    /// duplicates after a restart; those past it are pruned from disk by
    /// the next append a minute on.
    #[tokio::test]
    async fn the_idempotency_window_survives_a_restart_and_is_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let a = store
                .log
                .append(vec![ev(1), ev(2)], vec![(21, 0), (22, 1)], 1_000, 0)
                .await
                .expect("append");
            assert_eq!(a, [Appended::New(1), Appended::New(2)]);
            store.flush().await.expect("flush");
        }
        let store = crate::reopen(dir.path());
        let again = store
            .log
            .append(vec![ev(1), ev(3)], vec![(21, 0), (23, 1)], 2_000, 500)
            .await
            .expect("append");
        assert_eq!(again, [Appended::Duplicate(1), Appended::New(3)]);
        // A minute of append time on, keys before the window's start go.
        store
            .log
            .append(vec![ev(4)], vec![], 62_000, 1_500)
            .await
            .expect("append");
        assert_eq!(
            store.log.keys_since(i64::MIN).expect("keys"),
            vec![(23, 3, 2_000)],
            "the keys appended at 1 000 are pruned from disk"
        );
        let late = store
            .log
            .append(vec![ev(2)], vec![(22, 0)], 63_000, 1_500)
            .await
            .expect("append");
        assert_eq!(late, [Appended::New(5)], "and free again");
    }

    #[tokio::test]
    async fn append_read_across_chunks_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            assert_eq!(
                log.insert_chunk((0..3).map(ev).collect(), vec![(11, 2)], 10)
                    .ok(),
                Some(1)
            );
            assert_eq!(
                log.insert_chunk((3..7).map(ev).collect(), vec![(12, 0), (13, 3)], 20)
                    .ok(),
                Some(4)
            );
            // Nothing is readable before it is durable.
            assert!(log.read_from(1, 100).expect("read").is_empty());
            log.sync().await.expect("sync");
            assert_eq!(*log.durable_head(0).borrow(), 7);
            let got = log.read_from(2, 100).expect("read");
            assert_eq!(
                got.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (2..=7).collect::<Vec<_>>()
            );
            assert_eq!(got[0].event.id, "evt_1");
            assert_eq!(got[2].appended_at_ms, 20);
            let few = log.read_from(3, 2).expect("read");
            assert_eq!(few.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
            assert!(log.read_from(8, 10).expect("read").is_empty());
        }
        let store = crate::reopen(dir.path());
        assert_eq!(*store.log.durable_head(0).borrow(), 7);
        assert_eq!(
            store.log.keys_since(0).expect("keys"),
            vec![(11, 3, 10), (12, 4, 20), (13, 7, 20)]
        );
        assert_eq!(store.log.keys_since(15).expect("keys").len(), 2);
        assert_eq!(store.log.prune_keys_before(15).expect("prune"), 1);
        assert_eq!(store.log.keys_since(0).expect("keys").len(), 2);
        assert_eq!(
            store.log.insert_chunk(vec![ev(8)], vec![], 30).ok(),
            Some(8)
        );
    }

    #[tokio::test]
    async fn the_chunk_index_finds_devices_and_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let log = &store.log;
        let mut other = ev(0);
        other.device_id = "e".into();
        log.insert_chunk(vec![ev(1), ev(2)], vec![], 10)
            .expect("append");
        log.insert_chunk(vec![other.clone()], vec![], 20)
            .expect("append");
        log.insert_chunk(vec![other, ev(3)], vec![], 20)
            .expect("append");
        log.insert_chunk(vec![ev(4)], vec![], 35).expect("append");
        log.sync().await.expect("sync");
        let ix = log.chunk_index_from(1, 10).expect("index");
        assert_eq!(
            ix.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![1, 3, 4, 6]
        );
        assert_eq!(ix[0].1.types_of("d"), &[("message.received".to_owned(), 2)]);
        assert!(ix[1].1.types_of("d").is_empty());
        assert_eq!(ix[2].1.len, 2);
        for (at, want) in [
            (0, Some(1)),
            (10, Some(1)),
            (11, Some(3)),
            (20, Some(3)),
            (21, Some(6)),
            (35, Some(6)),
            (36, None),
        ] {
            assert_eq!(log.first_seq_at_ms(at).expect("bisect"), want, "at {at}");
        }
    }

    /// The active segment's file and where each of its frames starts.
    fn frames_of(store: &Store) -> (std::path::PathBuf, Vec<u64>) {
        let segs = &store.log.segments;
        let path = segs.dir().join(format!("{:012}.seg", segs.active_id()));
        assert!(path.exists());
        let (frames, _) = segs.active_frames().expect("frames");
        (path, frames.iter().map(|f| f.start).collect())
    }

    #[tokio::test]
    async fn chunks_whose_bytes_missed_the_disk_are_dropped_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (segment, starts) = {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            log.insert_chunk((0..3).map(ev).collect(), vec![(11, 0)], 10)
                .expect("append");
            log.sync().await.expect("sync");
            // Two more chunks whose places reach sled (its own flush timer)
            // but whose bytes do not all reach the segment: a crash
            // between the two.
            log.insert_chunk((3..5).map(ev).collect(), vec![(12, 1)], 20)
                .expect("append");
            log.insert_chunk((5..6).map(ev).collect(), vec![], 30)
                .expect("append");
            store.db.flush().expect("sled flush");
            frames_of(&store)
        };
        assert_eq!(starts.len(), 3);
        // The kernel wrote out the last chunk's page but not the middle one's.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("segment");
        file.write_all_at(&[0u8; 8], starts[1] + 60)
            .expect("scribble");
        drop(file);

        let store = crate::reopen(dir.path());
        let log = &store.log;
        assert_eq!(*log.durable_head(0).borrow(), 3);
        assert_eq!(
            log.read_from(1, 100).expect("read").len(),
            3,
            "the acknowledged chunk is whole"
        );
        assert_eq!(log.keys_since(0).expect("keys"), vec![(11, 1, 10)]);
        assert_eq!(log.chunk_index_from(1, 10).expect("index").len(), 1);
        // The log goes on where the good frames end, with the next sequence.
        assert_eq!(std::fs::metadata(&segment).expect("meta").len(), starts[1]);
        assert_eq!(log.insert_chunk(vec![ev(9)], vec![], 40).ok(), Some(4));
        log.sync().await.expect("sync");
        let got = log.read_from(1, 100).expect("read");
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].event.id, "evt_9");
    }

    #[tokio::test]
    async fn acknowledged_chunks_sled_lost_are_restored_from_their_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            log.insert_chunk((0..2).map(ev).collect(), vec![], 10)
                .expect("append");
            log.sync().await.expect("sync");
            store.db.flush().expect("flush");
            // Acknowledged on the segment's fsync alone; sled's flush timer
            // had not written its entries when the process died.
            log.insert_chunk((2..5).map(ev).collect(), vec![(21, 2)], 20)
                .expect("append");
            log.sync().await.expect("sync");
            for t in [&log.tree, &log.index, &log.keys] {
                t.remove(3u64.to_be_bytes()).expect("remove");
            }
            store.db.flush().expect("flush");
        }
        let store = crate::reopen(dir.path());
        let log = &store.log;
        assert_eq!(*log.durable_head(0).borrow(), 5);
        let got = log.read_from(1, 100).expect("read");
        assert_eq!(
            got.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(),
            ["evt_0", "evt_1", "evt_2", "evt_3", "evt_4"]
        );
        assert_eq!(log.keys_since(0).expect("keys"), vec![(21, 5, 20)]);
        assert_eq!(log.chunk_index_from(1, 10).expect("index").len(), 2);
        assert_eq!(log.insert_chunk(vec![ev(5)], vec![], 30).ok(), Some(6));
    }

    #[tokio::test]
    async fn chunks_retention_removed_stay_removed_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            log.insert_chunk(vec![ev(0)], vec![(31, 0)], 10)
                .expect("append");
            log.insert_chunk(vec![ev(1)], vec![], 20).expect("append");
            log.insert_chunk(vec![ev(2)], vec![], 30).expect("append");
            log.sync().await.expect("sync");
            store
                .deliveries
                .apply(&[hookrelay_store::DeliveryWrite::Cursor(3)])
                .expect("cursor");
            let st = store.compact(25, 10, 10).expect("compact");
            assert_eq!(st.chunks, 2);
        }
        // Their frames are still in the (only) segment.
        let store = crate::reopen(dir.path());
        let log = &store.log;
        let left: Vec<Seq> = log
            .read_from(1, 10)
            .expect("read")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, vec![3]);
        assert_eq!(log.first_seq().expect("first"), Some(3));
        assert_eq!(log.chunk_index_from(1, 10).expect("index").len(), 1);
    }

    /// Appends `n` chunks of one 1 MiB event each (appended at `i` ms) the
    /// way ingest does, each durable when it returns: a segment fills after
    /// 16 of them, and the next append rolls it on the blocking pool.
    async fn append_mib_chunks(log: &SledLog, n: usize) {
        for i in 0..n {
            let event = Event {
                data: format!("\"{}\"", "x".repeat(1 << 20)),
                ..ev(i)
            };
            EventLog::append(log, vec![event], vec![], i as i64, 0)
                .await
                .expect("append");
        }
    }

    #[tokio::test]
    async fn a_missing_segment_is_an_error_not_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            append_mib_chunks(&store.log, 17).await;
            assert_eq!(store.log.segments.active_id(), 2);
        }
        std::fs::remove_file(
            dir.path()
                .join(crate::SEGMENTS_DIR)
                .join("000000000001.seg"),
        )
        .expect("remove");
        let store = crate::reopen(dir.path());
        assert!(matches!(
            store.log.read_from(1, 10),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(store.log.read_from(17, 10).expect("read").len(), 1);
    }

    #[tokio::test]
    async fn index_entries_lost_in_a_crash_are_rebuilt_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let log = &store.log;
            log.insert_chunk(vec![ev(0)], vec![], 10).expect("append");
            log.insert_chunk(vec![ev(1), ev(2)], vec![], 20)
                .expect("append");
            log.sync().await.expect("sync");
            // sled kept the chunks' places but not the last index entry.
            log.index.remove(2u64.to_be_bytes()).expect("remove");
            store.db.flush().expect("flush");
        }
        let store = crate::reopen(dir.path());
        let ix = store.log.chunk_index_from(1, 10).expect("index");
        assert_eq!(ix.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ix[1].1.len, 2);
        assert_eq!(store.log.first_seq_at_ms(15).expect("bisect"), Some(2));
    }

    #[tokio::test]
    async fn a_format_1_directory_is_read_and_upgraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // What a build before segment files left: chunks inline.
            let db = sled::open(dir.path()).expect("sled");
            db.open_tree("meta")
                .expect("meta")
                .insert(crate::keys::META_FORMAT, &[1u8])
                .expect("insert");
            let events: Vec<Event> = (0..2).map(ev).collect();
            db.open_tree("events")
                .expect("events")
                .insert(
                    1u64.to_be_bytes(),
                    codec::encode(&Chunk {
                        appended_at_ms: 10,
                        events: events.clone(),
                    }),
                )
                .expect("insert");
            db.open_tree(INDEX_TREE)
                .expect("index")
                .insert(
                    1u64.to_be_bytes(),
                    codec::encode(&ChunkIndex::of(&events, 10)),
                )
                .expect("insert");
            db.flush().expect("flush");
        }
        {
            let store = crate::reopen(dir.path());
            let log = &store.log;
            assert_eq!(*log.durable_head(0).borrow(), 2);
            assert_eq!(log.insert_chunk(vec![ev(2)], vec![], 20).ok(), Some(3));
            log.sync().await.expect("sync");
        }
        let store = crate::reopen(dir.path());
        let ids: Vec<String> = store
            .log
            .read_from(1, 10)
            .expect("read")
            .iter()
            .map(|e| e.event.id.clone())
            .collect();
        assert_eq!(ids, ["evt_0", "evt_1", "evt_2"]);
        let meta = store.db.open_tree("meta").expect("meta");
        assert_eq!(
            meta.get(crate::keys::META_FORMAT).expect("get").as_deref(),
            Some(&[crate::DIR_FORMAT][..])
        );
        // Retention takes the inline chunk like any other.
        store
            .deliveries
            .apply(&[hookrelay_store::DeliveryWrite::Cursor(3)])
            .expect("cursor");
        let st = store.compact(15, 10, 10).expect("compact");
        assert_eq!((st.chunks, st.events), (1, 2));
        assert_eq!(store.log.read_from(1, 10).expect("read").len(), 1);
    }

    #[tokio::test]
    async fn retention_deletes_segments_no_chunk_points_into() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let log = &store.log;
        append_mib_chunks(log, 20).await;
        let files = || std::fs::read_dir(log.segments.dir()).expect("dir").count();
        assert_eq!(files(), 2);
        store
            .deliveries
            .apply(&[hookrelay_store::DeliveryWrite::Cursor(20)])
            .expect("cursor");
        // Ten chunks go: segment 1 still holds the rest of its chunks.
        let st = store.compact(10, 100, 10).expect("compact");
        assert_eq!(st.chunks, 10);
        assert_eq!(files(), 2);
        let st = store.compact(19, 100, 10).expect("compact");
        assert_eq!(st.chunks, 9);
        assert_eq!(files(), 1, "segment 1 is gone with its last chunk");
        let left = log.read_from(1, 10).expect("read");
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![20]);
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
