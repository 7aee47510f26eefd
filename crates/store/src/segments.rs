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
//! `<data dir>/segments/<id>.seg`, ids counting up from 1. A segment is the
//! chunks' encoded bytes back to back, with no framing: each chunk's
//! [`Loc`] in sled says where it is, how long, and its CRC-32.
//!
//! # Durability
//! - A chunk is durable once its segment has been fsynced *and* sled holds
//!   its [`Loc`]: [`Segments::sync`] and sled's flush both run before the
//!   log's durable head moves.
//! - When a segment is full it is fsynced before the next one is created
//!   (and the directory after it), so every segment but the newest that has
//!   chunks is complete on disk.
//! - sled flushes on its own timer too, so after a crash it may hold the
//!   [`Loc`] of a chunk whose bytes never reached the disk. Such a chunk was
//!   never acknowledged; [`Segments::open`]'s caller checks the newest
//!   segment's chunks against their CRCs and drops the first bad one and
//!   every chunk after it, keeping the log a prefix of what was appended.

use crate::StoreError;
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

/// Where a chunk's bytes are, as its value in sled.
///
/// The first two fields are the chunk's append time and event count in the
/// same order and encoding as an inline [`crate::Chunk`]'s, so retention can
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

impl Loc {
    /// The offset just past the chunk.
    pub(crate) fn end(&self) -> u64 {
        self.offset + u64::from(self.bytes)
    }
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
    StoreError::Io(sled::Error::Io(e))
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

    /// Writes `bytes` (not yet durable) and says where they are. A full
    /// segment is fsynced and closed first. Callers serialise appends.
    pub(crate) fn append(
        &self,
        bytes: &[u8],
        appended_at_ms: i64,
        events: u64,
    ) -> Result<Loc, StoreError> {
        let size = u32::try_from(bytes.len()).map_err(|_| StoreError::Limit {
            what: "bytes in one chunk",
            max: u32::MAX as usize,
        })?;
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if active.len >= SEGMENT_BYTES {
            active.file.sync_data().map_err(io_err)?;
            let id = active.id + 1;
            let file = Self::create(&self.dir, id)?;
            *active = Active {
                id,
                file: Arc::new(file),
                len: 0,
            };
        }
        // At an explicit offset: a write that fails half-way leaves bytes
        // past `len` that the next chunk overwrites.
        active
            .file
            .write_all_at(bytes, active.len)
            .map_err(io_err)?;
        let loc = Loc {
            appended_at_ms,
            len: events,
            segment: active.id,
            offset: active.len,
            bytes: size,
            crc: crc32fast::hash(bytes),
        };
        active.len = loc.end();
        Ok(loc)
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

    #[test]
    fn appends_read_back_and_roll_over_into_new_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segs = Segments::open(dir.path()).expect("open");
        let big = vec![7u8; (SEGMENT_BYTES / 2 + 1) as usize];
        let a = segs.append(&big, 1, 1).expect("append");
        let b = segs.append(b"second", 2, 1).expect("append");
        let c = segs.append(b"third", 3, 2).expect("append");
        assert_eq!((a.segment, a.offset), (1, 0));
        assert_eq!((b.segment, b.offset), (1, big.len() as u64));
        assert_eq!((c.segment, c.offset, c.len), (1, b.end(), 2));
        let d = segs.append(&big, 4, 1).expect("append");
        // Segment 1 is full now: the next chunk starts segment 2.
        let e = segs.append(b"fifth", 5, 1).expect("append");
        assert_eq!((d.segment, e.segment, e.offset), (1, 2, 0));
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
        // One past the end of what was written: short.
        let past = Loc {
            offset: e.end(),
            ..e
        };
        assert!(!segs.holds(&past).expect("read"));

        assert_eq!(segs.remove_before(2).expect("remove"), 1);
        assert_eq!(segs.read(&b).expect("read"), None, "its segment is gone");
        assert_eq!(segs.read(&e).expect("read").as_deref(), Some(&b"fifth"[..]));
        // The active segment is never removed.
        assert_eq!(segs.remove_before(99).expect("remove"), 0);
        assert!(segs.size_on_disk() >= e.end());
    }

    #[test]
    fn reopening_appends_where_the_kept_chunks_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = {
            let segs = Segments::open(dir.path()).expect("open");
            let a = segs.append(b"kept", 1, 1).expect("append");
            let b = segs.append(b"not acknowledged", 2, 1).expect("append");
            segs.active_file().sync_data().expect("sync");
            (a, b)
        };
        let segs = Segments::open(dir.path()).expect("reopen");
        assert_eq!(segs.active_id(), 1);
        assert!(segs.holds(&a).expect("read") && segs.holds(&b).expect("read"));
        segs.truncate_active(a.end()).expect("truncate");
        assert!(segs.holds(&a).expect("read"));
        assert!(!segs.holds(&b).expect("read"));
        // The next chunk goes where the dropped one was.
        let c = segs.append(b"next", 3, 1).expect("append");
        assert_eq!((c.segment, c.offset), (1, a.end()));
        assert_eq!(segs.read(&c).expect("read").as_deref(), Some(&b"next"[..]));
    }
}
