//! The storage seam's error type, the same whatever the backend: a
//! backend's own error (sled's, an I/O error, a NATS client's) travels as
//! the boxed source of [`StoreError::Io`] or [`StoreError::Unavailable`], so
//! nothing above the seam names a backend's types.

/// A backend's own error, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be opened.
    #[error("cannot open data directory {path}")]
    Open {
        /// The directory.
        path: String,
        /// The backend's error.
        #[source]
        source: BoxError,
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
    /// A local I/O failure (disk full, read error); the backend's error is
    /// the source.
    #[error("storage I/O failed: {0}")]
    Io(#[source] BoxError),
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
    #[error("storage backend unavailable: {what}{}", source_text(.source))]
    Unavailable {
        /// What was being done.
        what: String,
        /// The backend's error, when there is one (a remote node's answer
        /// arrives as text only).
        #[source]
        source: Option<BoxError>,
    },
}

/// `": <source>"`, so that a log line shows why a backend was unavailable.
fn source_text(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

impl StoreError {
    /// A local I/O failure, from the backend's own error.
    pub fn io(source: impl Into<BoxError>) -> Self {
        Self::Io(source.into())
    }

    /// An unreachable backend: `what` was being done, `source` is why it
    /// failed.
    pub fn unavailable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An unreachable backend, known only by a message (a remote node's).
    pub fn unavailable_msg(what: impl Into<String>) -> Self {
        Self::Unavailable {
            what: what.into(),
            source: None,
        }
    }

    /// Whether the failure is transient (answer "unavailable", retry later):
    /// I/O, a full disk, an unreachable backend. Everything else is an
    /// answer about the data and the same request fails again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::DiskFull { .. } | Self::Unavailable { .. }
        )
    }
}
