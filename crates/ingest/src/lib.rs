//! Ingest for hookrelay: the gRPC `IngestService` of `proto/` and the HTTP
//! `POST /v1/events` handler, both in front of one group committer.
//!
//! Owns: request validation (through `hookrelay_core::validate_event`),
//! ingest-key authentication, group commit ([`Committer`]): concurrent appends
//! are gathered into one log chunk and one flush, and every producer is
//! answered only after that flush (invariant 1).
//!
//! Must not: fan out, deliver, or touch delivery state.

mod auth;
mod codec;
mod committer;
mod config;
mod error;
mod http;
mod service;

/// Generated protobuf and tonic code for `hookrelay.ingest.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("hookrelay.ingest.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ingest_descriptor");
}

pub use auth::{AuthFailures, IngestKeys, Publisher};
pub use committer::{idempotency_key, Accepted, Committer, CommitterHandle, Incoming};
pub use config::IngestConfig;
pub use error::IngestError;
pub use http::router as http_router;
pub use service::IngestGrpc;
