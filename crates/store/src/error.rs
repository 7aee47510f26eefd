//! The store's error type.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened.
    #[error("cannot open data directory {path}")]
    Open {
        /// The directory.
        path: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The data directory was written by an unknown (newer) format.
    #[error(
        "data directory has store format version {found}, this build supports {supported}; \
         use a hookrelay release that knows format {found}"
    )]
    UnsupportedFormat {
        /// Version found on disk.
        found: u8,
        /// Version this build writes.
        supported: u8,
    },
    /// Free space is below the reserve (`store.min_free_bytes`): appends are
    /// refused until space returns, so the store never hits a full disk.
    #[error(
        "disk space low: {available} bytes free, {reserve} bytes kept in reserve; free some space"
    )]
    DiskFull {
        /// Bytes free on the data directory's filesystem.
        available: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// An I/O or sled failure (disk full, read error).
    #[error("storage I/O failed")]
    Io(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt {what} record")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
    },
    /// A uniqueness rule was violated (e.g. an app id already taken).
    #[error("{what} already exists")]
    Conflict {
        /// What exists.
        what: &'static str,
    },
    /// A configured count limit would be exceeded.
    #[error("at most {max} {what}")]
    Limit {
        /// What is counted.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The thing to change does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What is missing.
        what: &'static str,
    },
    /// A blocking storage task ended without an answer (it panicked).
    #[error("storage task failed: {0}")]
    Task(String),
    /// A networked backend could not be reached or did not answer in time
    /// (transient: retried by the engine, answered "unavailable").
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the failure is transient I/O (answer "unavailable", retry later).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::DiskFull { .. } | Self::Unavailable(_)
        )
    }
}

/// The error an injected store fault returns (tests with `failpoints`).
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn injected() -> StoreError {
    StoreError::Io(sled::Error::Io(std::io::Error::other(
        "injected store fault",
    )))
}

/// Reads fail-point configuration from `FAILPOINTS` (builds with the
/// `failpoints` feature only; elsewhere a no-op). Malformed configuration is
/// an error, never a panic.
pub fn failpoints_from_env() -> Result<(), String> {
    #[cfg(feature = "failpoints")]
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, actions) = item
                .split_once('=')
                .ok_or_else(|| format!("FAILPOINTS: {item:?} is not name=actions"))?;
            fail::cfg(name, actions)?;
        }
    }
    Ok(())
}
