//! Ingest errors and their mapping to gRPC status (the HTTP mapping lives in
//! `http.rs`).

use hookrelay_core::EventError;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Missing or wrong ingest key.
    #[error("missing or invalid ingest key")]
    Unauthenticated,
    /// The key may not publish for a device of the request (an organization
    /// key and a device id not bound to its organization).
    #[error(
        "this ingest key may not publish for a device id of this request; nothing was appended"
    )]
    Forbidden,
    /// An event failed validation; `index` is its position in a batch or stream.
    #[error("{}{source}", index.map(|i| format!("events[{i}]: ")).unwrap_or_default())]
    Invalid {
        /// Position in the batch, when there was one.
        index: Option<usize>,
        /// The problem.
        #[source]
        source: EventError,
    },
    /// The request carried no event at all.
    #[error("{0}: is required")]
    Missing(&'static str),
    /// The fan-out backlog or the pending deliveries are over their limit.
    #[error("{current} {what} are over the limit of {limit}; retry later")]
    Overloaded {
        /// Which limit.
        what: &'static str,
        /// Current value.
        current: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The log could not be written or flushed (disk full, I/O error).
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl IngestError {
    /// Short reason for `events_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Invalid { .. } | Self::Missing(_) => "invalid",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable(_) | Self::ShuttingDown => "unavailable",
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        let msg = e.to_string();
        match e {
            IngestError::Unauthenticated => tonic::Status::unauthenticated(msg),
            IngestError::Forbidden => tonic::Status::permission_denied(msg),
            IngestError::Invalid { .. } | IngestError::Missing(_) => {
                tonic::Status::invalid_argument(msg)
            }
            IngestError::Overloaded { .. } => tonic::Status::resource_exhausted(msg),
            IngestError::Unavailable(_) | IngestError::ShuttingDown => {
                tonic::Status::unavailable(msg)
            }
        }
    }
}
