//! Control of delivery state by the API (manual retry, replay), carried out
//! by the scheduler, which alone writes delivery state. It is part of the
//! seam so that the API depends on what it may ask, not on the scheduler that
//! answers.

use crate::{BoxFuture, StoreError};
use hookrelay_core::{DeliveryKey, WebhookId};

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The delivery, webhook or event does not exist (any more).
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state.
    #[error("{0}")]
    Conflict(String),
    /// The webhook or its organization holds its share of the pending
    /// deliveries: try again once they have drained.
    #[error("{0}")]
    OverShare(String),
    /// The scheduler is not running (shutting down).
    #[error("delivery scheduler unavailable")]
    Unavailable,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the API may ask of the delivery scheduler.
pub trait DeliveryControl: Send + Sync + 'static {
    /// Whether the circuit of the host `url` points at is open.
    fn circuit_open(&self, url: &str) -> bool;
    /// Attempts a delivery again now (it must not be pending already).
    fn retry(&self, key: DeliveryKey) -> BoxFuture<'_, Result<(), ControlError>>;
    /// Creates new deliveries to `webhook` for every logged event appended in
    /// `[since_ms, until_ms)` that matches its filter; returns how many.
    fn replay(
        &self,
        webhook: WebhookId,
        since_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<'_, Result<u64, ControlError>>;
}
