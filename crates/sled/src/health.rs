//! The free-space reserve, and the sticky failure sled's writes note.
//!
//! sled, once a write or flush fails with an I/O error (a full disk), refuses
//! every later write until it is reopened. So the store keeps a reserve: below
//! `store.min_free_bytes` free, appends and configuration writes are refused
//! with [`StoreError::DiskFull`] *before* sled could hit the full disk, and
//! they work again as soon as space returns, without a restart. Delivery
//! state (attempt outcomes, small) may still use the reserve. Should sled
//! fail anyway (another process filled the disk past the reserve), the
//! failure is noted in the shared [`StoreHealth`]: readiness reports it, and
//! the engine's supervision stops the process so that a restart reopens the
//! store.

use hookrelay_store::{StoreError, StoreHealth};
use std::{path::PathBuf, sync::Arc};

/// The reserve: free bytes the data directory's filesystem keeps.
#[derive(Debug)]
struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// `Err(DiskFull)` while free space is below the reserve. An unreadable
    /// figure is not a refusal.
    fn check(&self) -> Result<(), StoreError> {
        if self.bytes == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.path) {
            Ok(available) if available < self.bytes => Err(StoreError::DiskFull {
                available,
                reserve: self.bytes,
            }),
            _ => Ok(()),
        }
    }
}

/// What the parts of one data directory share.
#[derive(Clone, Debug)]
pub(crate) struct Health {
    reserve: Arc<Reserve>,
    shared: StoreHealth,
}

impl Health {
    pub(crate) fn new(path: PathBuf, reserve: u64) -> Self {
        let reserve = Arc::new(Reserve {
            path,
            bytes: reserve,
        });
        let r = reserve.clone();
        let shared = StoreHealth::new(Arc::new(move || r.check().err().map(|e| e.to_string())));
        Self { reserve, shared }
    }

    /// The health readiness reads.
    pub(crate) fn shared(&self) -> &StoreHealth {
        &self.shared
    }

    /// `Err(DiskFull)` while free space is below the reserve.
    pub(crate) fn check_space(&self) -> Result<(), StoreError> {
        self.reserve.check()
    }

    /// Notes the outcome of a write: an I/O failure is sticky in sled.
    pub(crate) fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        self.shared.note(r)
    }
}

/// sled's errors and the segment files' as the seam's error.
pub(crate) trait OrIo<T> {
    /// The error as [`StoreError::Io`], its source kept.
    fn io(self) -> Result<T, StoreError>;
}

impl<T> OrIo<T> for Result<T, sled::Error> {
    fn io(self) -> Result<T, StoreError> {
        self.map_err(StoreError::io)
    }
}

impl<T> OrIo<T> for Result<T, std::io::Error> {
    fn io(self) -> Result<T, StoreError> {
        self.map_err(StoreError::io)
    }
}
