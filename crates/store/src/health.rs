//! Whether a backend can take writes, as readiness and the engine's
//! supervision see it: a check the backend supplies (free space below its
//! reserve, servers out of reach) and a sticky failure it notes (sled refuses
//! every write after an I/O error until it is reopened, so the process must
//! stop and a restart reopen it).

use crate::StoreError;
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// Why a backend cannot take writes now, if it cannot.
pub type Reachability = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Shared by a backend's parts and read by readiness.
#[derive(Clone)]
pub struct StoreHealth {
    failed: Arc<AtomicBool>,
    check: Option<Reachability>,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("failed", &self.failed)
            .field("check", &self.check.is_some())
            .finish()
    }
}

impl StoreHealth {
    /// The health of a backend whose `check` tells why it cannot take writes
    /// now (a full disk, unreachable servers), if it cannot.
    pub fn new(check: Reachability) -> Self {
        Self {
            failed: Arc::default(),
            check: Some(check),
        }
    }

    /// The health of a backend on servers: `check` tells why they cannot
    /// take writes now (unreachable), if they cannot.
    pub fn remote(check: Reachability) -> Self {
        Self::new(check)
    }

    /// A backend that is always able to take writes (tests).
    pub fn always() -> Self {
        Self {
            failed: Arc::default(),
            check: None,
        }
    }

    /// Notes the outcome of a write: an I/O failure is sticky (readiness
    /// reports it until a restart).
    pub fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(_)) = &r {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Why the backend cannot take writes now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.failed.load(Ordering::Acquire) {
            return Some("store write failed (I/O); a restart reopens it".to_owned());
        }
        self.check.as_ref().and_then(|check| check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_failure_is_sticky_and_the_check_is_asked_each_time() {
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        let h = StoreHealth::new(Arc::new(move || {
            d.load(Ordering::Relaxed).then(|| "servers down".to_owned())
        }));
        assert_eq!(h.problem(), None);
        down.store(true, Ordering::Relaxed);
        assert_eq!(h.problem().as_deref(), Some("servers down"));
        down.store(false, Ordering::Relaxed);
        let _ = h.note::<()>(Err(StoreError::NotFound { what: "app" }));
        assert_eq!(h.problem(), None, "only I/O failures stick");
        let _ = h.note::<()>(Err(StoreError::io(std::io::Error::other("disk"))));
        assert!(h.problem().is_some_and(|p| p.contains("restart")));
    }
}
