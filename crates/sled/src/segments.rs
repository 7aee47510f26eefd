//! Segment files: where the event log's chunks live, outside sled.
//!
//! sled keeps every value written through it in memory long after its
//! flush, whatever `cache_capacity` says (docs/benchmarks.md: at a 300,000
//! delivery backlog, 44 % of the heap was event chunks sled still held). The
//! log's payloads are written once, read back rarely, and dropped from the
//! front, which is what a plain append-only file does best: the chunks go
//! into numbered segment files, the kernel's page cache (not the process)
//! holds what is hot, and sled keeps only a small [`Loc`] per chunk.
//!
//! # Layout
//! `<data dir>/segments/<id>.seg`, ids counting up from 1. A segment is a
//! run of frames, one per chunk: a header (magic, first sequence, append
//! time, event count, lengths, the chunk's CRC-32 and the frame's), the
//! encoded chunk, then its encoded idempotency keys. Each chunk's [`Loc`]
//! in sled says where its bytes are.
//!
//! # Durability
//! - A chunk is durable once its segment is fsynced: the frame carries
//!   everything sled keeps about it, so sled need not be flushed for an
//!   append to be acknowledged.
//! - When a segment is full it is fsynced, sled is flushed (every place in
//!   it is then durable in sled), and only then is the next one created.
//! - So after a crash only the newest segment can differ from sled: at open
//!   its frames are read back, sled's entries for them are rewritten from
//!   the frames, and everything from the first torn or mismatched frame on
//!   (never acknowledged) is dropped, in sled and in the file.

use hookrelay_store::StoreError;
use serde::{Deserialize, Serialize};
use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// A segment is closed once it holds this many bytes (a chunk is never
/// split, so a segment may end up longer by one chunk). Small enough that
/// checking the newest segment at open is quick, large enough that a
/// million-event backlog is a few dozen files.
pub(crate) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Open segment files kept for reading. Reads are mostly of the newest
/// segments (dispatch) or sequential (replay, a backlog's drain).
const OPEN_READERS: usize = 8;

/// Bytes before a chunk in its frame: magic, first sequence, append time,
/// event count, chunk length, keys length, the chunk's CRC, the frame's CRC.
const FRAME_HEADER: usize = 4 + 8 + 8 + 8 + 4 + 4 + 4 + 4;

/// The first bytes of every frame.
const FRAME_MAGIC: [u8; 4] = *b"HRC1";

/// A chunk's frame being built, in the one buffer that is written: room
/// for the header ([`Segments::append`] fills it in), the encoded chunk,
/// then its encoded idempotency keys. The chunk is encoded in place, not
/// copied in.
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    /// Where the chunk ends and the keys begin.
    chunk_end: usize,
}

impl FrameBuf {
    /// A frame of what `chunk` and then `keys` append to the buffer.
    pub(crate) fn new(chunk: impl FnOnce(&mut Vec<u8>), keys: impl FnOnce(&mut Vec<u8>)) -> Self {
        let mut buf = vec![0; FRAME_HEADER];
        chunk(&mut buf);
        let chunk_end = buf.len();
        keys(&mut buf);
        Self { buf, chunk_end }
    }
}

/// A chunk's frame read back from a segment.
pub(crate) struct Frame {
    /// Where the frame starts in its segment.
    pub(crate) start: u64,
    /// Sequence of the chunk's first event.
    pub(crate) first_seq: u64,
    /// Where the chunk's bytes are.
    pub(crate) loc: Loc,
    /// The chunk's encoded idempotency keys (empty: none).
    pub(crate) keys: Vec<u8>,
}

/// The frame at the start of `bytes` (which begin at `offset` in segment
/// `id`), if it is whole and its checksums match.
fn parse_frame(bytes: &[u8], id: u64, offset: u64) -> Option<Frame> {
    let header = bytes.get(..FRAME_HEADER)?;
    if header[..4] != FRAME_MAGIC {
        return None;
    }
    let u64_at = |i: usize| header[i..i + 8].try_into().ok().map(u64::from_le_bytes);
    let u32_at = |i: usize| header[i..i + 4].try_into().ok().map(u32::from_le_bytes);
    let first_seq = u64_at(4)?;
    let appended_at_ms = i64::from_le_bytes(header[12..20].try_into().ok()?);
    let events = u64_at(20)?;
    let size = u32_at(28)?;
    let keys_size = u32_at(32)?;
    let crc = u32_at(36)?;
    let whole = u32_at(40)?;
    let chunk_end = FRAME_HEADER.checked_add(size as usize)?;
    let chunk = bytes.get(FRAME_HEADER..chunk_end)?;
    let keys = bytes.get(chunk_end..chunk_end.checked_add(keys_size as usize)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..40]);
    hasher.update(keys);
    if hasher.finalize() != whole || crc32fast::hash(chunk) != crc {
        return None;
    }
    Some(Frame {
        start: offset,
        first_seq,
        loc: Loc {
            appended_at_ms,
            len: events,
            segment: id,
            offset: offset + FRAME_HEADER as u64,
            bytes: size,
            crc,
        },
        keys: keys.to_vec(),
    })
}

/// Where a chunk's bytes are, as its value in sled.
///
/// The first two fields are the chunk's append time and event count in the
/// same order and encoding as an inline [`hookrelay_store::Chunk`]'s, so retention can
/// read either without the chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Loc {
    /// When the chunk was appended (unix ms).
    pub appended_at_ms: i64,
    /// Events in the chunk.
    pub len: u64,
    /// The segment holding it.
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length of the encoded chunk, bytes.
    pub bytes: u32,
    /// CRC-32 (IEEE) of the encoded chunk.
    pub crc: u32,
}

/// The segment being appended to.
struct Active {
    id: u64,
    file: Arc<File>,
    /// Where the next chunk goes.
    len: u64,
}

/// The directory of segment files.
pub(crate) struct Segments {
    dir: PathBuf,
    active: Mutex<Active>,
    /// Recently read segments, most recent last.
    readers: Mutex<Vec<(u64, Arc<File>)>>,
}

fn io_err(e: io::Error) -> StoreError {
    StoreError::io(e)
}

fn segment_name(id: u64) -> String {
    format!("{id:012}.seg")
}

impl Segments {
    /// Opens the directory `dir` (created if missing), appending to its
    /// newest segment. The caller checks that segment's chunks and sets its
    /// length with [`Segments::truncate_active`] before appending.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io_err)?;
        let newest = Self::ids(dir)?.into_iter().max();
        let (id, file) = match newest {
            Some(id) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.join(segment_name(id)))
                    .map_err(io_err)?;
                (id, file)
            }
            None => (1, Self::create(dir, 1)?),
        };
        let len = file.metadata().map_err(io_err)?.len();
        Ok(Self {
            dir: dir.to_owned(),
            active: Mutex::new(Active {
                id,
                file: Arc::new(file),
                len,
            }),
            readers: Mutex::new(Vec::with_capacity(OPEN_READERS)),
        })
    }

    /// The directory.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id of the segment appends go to.
    pub(crate) fn active_id(&self) -> u64 {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).id
    }

    /// Cuts the active segment to `len` bytes (durably): what lies past its
    /// last chunk still listed in sled was never acknowledged, and the next
    /// chunk goes there.
    pub(crate) fn truncate_active(&self, len: u64) -> Result<(), StoreError> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.len != len {
            active.file.set_len(len).map_err(io_err)?;
            active.file.sync_all().map_err(io_err)?;
            active.len = len;
        }
        Ok(())
    }

    /// Ids of the segment files in `dir`, unordered.
    fn ids(dir: &Path) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err)? {
            let name = entry.map_err(io_err)?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Creates segment `id` and makes its directory entry durable.
    fn create(dir: &Path, id: u64) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(segment_name(id)))
            .map_err(io_err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        Ok(file)
    }

    /// Whether the active segment is full: the next append closes it first
    /// (see [`Segments::roll`]).
    pub(crate) fn full(&self) -> bool {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).len >= SEGMENT_BYTES
    }

    /// Closes the active segment if it is full: fsyncs it, runs
    /// `before_next` (the caller makes the old segment's places in sled
    /// durable), then creates the next one. Blocking (an fsync, sled's
    /// flush, a directory fsync): callers on an async runtime run it on the
    /// blocking pool before appending, so an append does not roll.
    pub(crate) fn roll(
        &self,
        before_next: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.len >= SEGMENT_BYTES {
            self.roll_locked(&mut active, before_next)?;
        }
        Ok(())
    }

    fn roll_locked(
        &self,
        active: &mut Active,
        before_next: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        active.file.sync_data().map_err(io_err)?;
        before_next()?;
        let id = active.id + 1;
        let file = Self::create(&self.dir, id)?;
        *active = Active {
            id,
            file: Arc::new(file),
            len: 0,
        };
        Ok(())
    }

    /// Writes one chunk's frame (not yet durable) and says where its bytes
    /// are: [`FrameBuf`] holds the chunk and its encoded idempotency keys,
    /// kept in the frame so that sled's entries for the newest segment can
    /// be rebuilt from it; the header is filled in here. A full segment is
    /// closed first: fsynced, then `before_next` runs (the caller makes the
    /// old segment's places in sled durable), then the next one is created.
    /// Callers serialise appends.
    pub(crate) fn append(
        &self,
        first_seq: u64,
        frame: FrameBuf,
        appended_at_ms: i64,
        events: u64,
        before_next: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Loc, StoreError> {
        let FrameBuf { mut buf, chunk_end } = frame;
        let too_big = |_| StoreError::Limit {
            what: "bytes in one chunk",
            max: u32::MAX as usize,
        };
        let size = u32::try_from(chunk_end - FRAME_HEADER).map_err(too_big)?;
        let keys_size = u32::try_from(buf.len() - chunk_end).map_err(too_big)?;
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.len >= SEGMENT_BYTES {
            self.roll_locked(&mut active, before_next)?;
        }
        let crc = crc32fast::hash(&buf[FRAME_HEADER..chunk_end]);
        let mut header = Vec::with_capacity(FRAME_HEADER);
        header.extend_from_slice(&FRAME_MAGIC);
        header.extend_from_slice(&first_seq.to_le_bytes());
        header.extend_from_slice(&appended_at_ms.to_le_bytes());
        header.extend_from_slice(&events.to_le_bytes());
        header.extend_from_slice(&size.to_le_bytes());
        header.extend_from_slice(&keys_size.to_le_bytes());
        header.extend_from_slice(&crc.to_le_bytes());
        let mut whole = crc32fast::Hasher::new();
        whole.update(&header);
        whole.update(&buf[chunk_end..]);
        header.extend_from_slice(&whole.finalize().to_le_bytes());
        buf[..FRAME_HEADER].copy_from_slice(&header);
        // At an explicit offset: a write that fails half-way leaves bytes
        // past `len` that the next chunk overwrites.
        active.file.write_all_at(&buf, active.len).map_err(io_err)?;
        let loc = Loc {
            appended_at_ms,
            len: events,
            segment: active.id,
            offset: active.len + FRAME_HEADER as u64,
            bytes: size,
            crc,
        };
        active.len += buf.len() as u64;
        Ok(loc)
    }

    /// The whole frames of the active segment, in order, up to the first
    /// that is torn or does not check out (nothing after it was
    /// acknowledged); and where the good ones end.
    pub(crate) fn active_frames(&self) -> Result<(Vec<Frame>, u64), StoreError> {
        let (id, file) = {
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            (active.id, active.file.clone())
        };
        let len = file.metadata().map_err(io_err)?.len();
        let mut bytes = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut bytes, 0).map_err(io_err)?;
        let mut frames = Vec::new();
        let mut at = 0usize;
        while let Some(frame) = parse_frame(&bytes[at..], id, at as u64) {
            at += FRAME_HEADER + frame.loc.bytes as usize + frame.keys.len();
            frames.push(frame);
        }
        Ok((frames, at as u64))
    }

    /// The segment appends go to now: fsync it to make every chunk appended
    /// before this call durable (earlier segments were fsynced when they
    /// filled).
    pub(crate) fn active_file(&self) -> Arc<File> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .clone()
    }

    /// The bytes at `loc`, checked against its CRC. `Ok(None)` when the
    /// segment file is gone (retention removed it).
    pub(crate) fn read(&self, loc: &Loc) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = self.reader(loc.segment)? else {
            return Ok(None);
        };
        let mut buf = vec![0; loc.bytes as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt {
                    what: "event segment (shorter than its index)",
                }
            } else {
                io_err(e)
            }
        })?;
        if crc32fast::hash(&buf) != loc.crc {
            return Err(StoreError::Corrupt {
                what: "event chunk (checksum)",
            });
        }
        Ok(Some(buf))
    }

    /// Whether the bytes at `loc` are there and match its CRC; `Err` only
    /// when the disk could not be read.
    #[cfg(test)]
    pub(crate) fn holds(&self, loc: &Loc) -> Result<bool, StoreError> {
        match self.read(loc) {
            Ok(found) => Ok(found.is_some()),
            Err(StoreError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn reader(&self, id: u64) -> Result<Option<Arc<File>>, StoreError> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = readers.iter().position(|(r, _)| *r == id) {
            let hit = readers.remove(i);
            let file = hit.1.clone();
            readers.push(hit);
            return Ok(Some(file));
        }
        let file = match File::open(self.dir.join(segment_name(id))) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        if readers.len() >= OPEN_READERS {
            readers.remove(0);
        }
        readers.push((id, file.clone()));
        Ok(Some(file))
    }

    /// Deletes every segment older than `id` (never the active one).
    /// Returns how many went.
    pub(crate) fn remove_before(&self, id: u64) -> Result<usize, StoreError> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner()).id;
        let id = id.min(active);
        let mut removed = 0;
        for old in Self::ids(&self.dir)?.into_iter().filter(|s| *s < id) {
            match fs::remove_file(self.dir.join(segment_name(old))) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        if removed > 0 {
            self.readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(r, _)| *r >= id);
        }
        Ok(removed)
    }

    /// Bytes in segment files.
    pub(crate) fn size_on_disk(&self) -> u64 {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunk: &[u8], keys: &[u8]) -> FrameBuf {
        FrameBuf::new(
            |b| b.extend_from_slice(chunk),
            |b| b.extend_from_slice(keys),
        )
    }

    /// Appends `chunk` as the chunk at `seq` with no keys.
    fn put(segs: &Segments, seq: u64, chunk: &[u8]) -> Loc {
        segs.append(seq, frame(chunk, b""), seq as i64, 1, || Ok(()))
            .expect("append")
    }

    #[test]
    fn appends_read_back_and_roll_over_into_new_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segs = Segments::open(dir.path()).expect("open");
        let big = vec![7u8; (SEGMENT_BYTES / 2 + 1) as usize];
        let a = put(&segs, 1, &big);
        let b = put(&segs, 2, b"second");
        let c = put(&segs, 3, b"third");
        assert_eq!((a.segment, a.offset), (1, FRAME_HEADER as u64));
        assert_eq!(b.offset, a.offset + big.len() as u64 + FRAME_HEADER as u64);
        assert_eq!(c.segment, 1);
        let d = put(&segs, 4, &big);
        // Segment 1 is full now: the next chunk starts segment 2, once the
        // caller's hook has run.
        let mut hooked = false;
        let e = segs
            .append(5, frame(b"fifth", b""), 5, 1, || {
                hooked = true;
                Ok(())
            })
            .expect("append");
        assert!(hooked);
        assert_eq!(
            (d.segment, e.segment, e.offset),
            (1, 2, FRAME_HEADER as u64)
        );
        assert_eq!(
            segs.read(&b).expect("read").as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(segs.read(&e).expect("read").as_deref(), Some(&b"fifth"[..]));
        assert!(segs.holds(&a).expect("read") && segs.holds(&d).expect("read"));

        // A chunk whose bytes changed is corrupt, not silently wrong.
        let bad = Loc {
            crc: b.crc ^ 1,
            ..b
        };
        assert!(matches!(segs.read(&bad), Err(StoreError::Corrupt { .. })));
        assert!(!segs.holds(&bad).expect("read"));
        // Past the end of what was written: short.
        let past = Loc {
            offset: e.offset + 100,
            ..e
        };
        assert!(!segs.holds(&past).expect("read"));

        assert_eq!(segs.remove_before(2).expect("remove"), 1);
        assert_eq!(segs.read(&b).expect("read"), None, "its segment is gone");
        assert_eq!(segs.read(&e).expect("read").as_deref(), Some(&b"fifth"[..]));
        // The active segment is never removed.
        assert_eq!(segs.remove_before(99).expect("remove"), 0);
        assert!(segs.size_on_disk() > e.offset);
    }

    #[test]
    fn frames_read_back_up_to_the_first_torn_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = {
            let segs = Segments::open(dir.path()).expect("open");
            let a = segs
                .append(7, frame(b"kept", b"keys"), 70, 3, || Ok(()))
                .expect("append");
            let b = put(&segs, 10, b"torn");
            segs.active_file().sync_data().expect("sync");
            (a, b)
        };
        let segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(segs.active_id(), 1);
        let (frames, end) = segs.active_frames().expect("frames");
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].first_seq, frames[0].loc), (7, a));
        assert_eq!(frames[0].keys, b"keys");
        assert_eq!((frames[1].first_seq, frames[1].loc), (10, b));
        assert_eq!(end, b.offset + 4);

        // The second frame loses its last byte: it is not a frame.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join(segment_name(1)))
            .expect("open");
        file.set_len(end - 1).expect("truncate");
        let (frames, good_end) = segs.active_frames().expect("frames");
        assert_eq!(frames.len(), 1);
        assert_eq!(good_end, a.offset + 4 + 4);
        // A flipped byte in the first frame's keys: nothing checks out.
        file.write_all_at(b"K", a.offset + 4).expect("scribble");
        assert_eq!(segs.active_frames().expect("frames").0.len(), 0);

        segs.truncate_active(0).expect("truncate");
        let c = put(&segs, 1, b"next");
        assert_eq!((c.segment, c.offset), (1, FRAME_HEADER as u64));
        assert_eq!(segs.read(&c).expect("read").as_deref(), Some(&b"next"[..]));
    }
}
