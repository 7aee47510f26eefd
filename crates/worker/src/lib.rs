//! Signed HTTP delivery for hookrelay.
//!
//! Owns: the one shared reqwest client (rustls, no redirects, keep-alive), the
//! SSRF guard ([`ssrf`]), building and signing each request, classifying the
//! outcome ([`classify`]), and running attempts with bounded concurrency
//! ([`WorkerPool`]). Each attempt is reported back as an
//! [`hookrelay_core::AttemptReport`]; the worker never writes delivery state.
//!
//! Must not: read the log, decide retry schedules or touch the store.

mod attempt;
pub mod classify;
mod client;
mod pool;
pub mod ssrf;

pub use attempt::perform;
pub use client::{build_client, ClientError};
pub use pool::WorkerPool;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("hookrelay/", env!("CARGO_PKG_VERSION"));
/// Most response-body bytes kept in the attempt log.
pub const RESPONSE_BODY_CAP: usize = 4096;
