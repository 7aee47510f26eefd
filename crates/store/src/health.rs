//! Whether the store can take writes: the free-space reserve and sled's
//! sticky I/O failure.
//!
//! sled, once a write or flush fails with an I/O error (a full disk), refuses
//! every later write until it is reopened. So the store keeps a reserve: below
//! `store.min_free_bytes` free, appends and configuration writes are refused
//! with [`StoreError::DiskFull`] *before* sled could hit the full disk, and
//! they work again as soon as space returns, without a restart. Delivery
//! state (attempt outcomes, small) may still use the reserve. Should sled
//! fail anyway (another process filled the disk past the reserve), the
//! failure is remembered here: readiness reports it, and the engine's
//! supervision stops the process so that a restart reopens the store.

use crate::StoreError;
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

/// Why a remote backend cannot take writes now, if it cannot.
pub type Reachability = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Shared by the store's parts.
#[derive(Clone)]
pub struct StoreHealth {
    path: PathBuf,
    reserve: u64,
    failed: Arc<AtomicBool>,
    /// For a backend on servers: whether they can be reached.
    remote: Option<Reachability>,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("path", &self.path)
            .field("reserve", &self.reserve)
            .field("failed", &self.failed)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

impl StoreHealth {
    pub(crate) fn new(path: PathBuf, reserve: u64) -> Self {
        Self {
            path,
            reserve,
            failed: Arc::default(),
            remote: None,
        }
    }

    /// The health of a backend on servers: `check` tells why they cannot
    /// take writes now (unreachable), if they cannot.
    pub fn remote(check: Reachability) -> Self {
        Self {
            path: PathBuf::new(),
            reserve: 0,
            failed: Arc::default(),
            remote: Some(check),
        }
    }

    /// `Err(DiskFull)` while free space is below the reserve. An unreadable
    /// figure is not a refusal.
    pub(crate) fn check_space(&self) -> Result<(), StoreError> {
        if self.reserve == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.path) {
            Ok(available) if available < self.reserve => Err(StoreError::DiskFull {
                available,
                reserve: self.reserve,
            }),
            _ => Ok(()),
        }
    }

    /// Notes the outcome of a write: an I/O failure is sticky in sled.
    pub(crate) fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(_)) = &r {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Why the store cannot take writes now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = self.remote.as_ref().and_then(|check| check()) {
            return Some(problem);
        }
        if self.failed.load(Ordering::Acquire) {
            return Some("store write failed (I/O); a restart reopens it".to_owned());
        }
        self.check_space().err().map(|e| e.to_string())
    }
}
