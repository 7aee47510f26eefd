//! Deliveries (one event for one webhook), attempts and their outcomes, and
//! the messages the scheduler and workers exchange.

use crate::{ids::Seq, webhook::Webhook, WebhookId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Identity of a delivery: the event's log position, the webhook, and a
/// generation (0 for fan-out; replays and manual test sends use fresh ones).
/// Deterministic, so a crash re-creates the same ids (invariant 2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryKey {
    /// Log sequence of the event.
    pub seq: Seq,
    /// Generation: 0 for fan-out.
    pub generation: u32,
    /// Target webhook.
    pub webhook_id: WebhookId,
}

impl DeliveryKey {
    /// The public id: `dlv_` + 16 hex digits of seq + 8 of generation + the
    /// webhook id without its `wh_` prefix.
    pub fn id(&self) -> String {
        let wh = self.webhook_id.as_str();
        format!(
            "dlv_{:016x}{:08x}{}",
            self.seq,
            self.generation,
            wh.strip_prefix("wh_").unwrap_or(wh)
        )
    }

    /// Parses a public delivery id back into its key.
    pub fn parse(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("dlv_")?;
        if rest.len() <= 24 || !rest.is_char_boundary(24) {
            return None;
        }
        let (nums, wh) = rest.split_at(24);
        let seq = u64::from_str_radix(nums.get(..16)?, 16).ok()?;
        let generation = u32::from_str_radix(nums.get(16..)?, 16).ok()?;
        Some(Self {
            seq,
            generation,
            webhook_id: WebhookId(format!("wh_{wh}")),
        })
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Retries exhausted (dead-lettered); retryable by hand.
    Failed,
    /// Its webhook was deleted or deactivated.
    Cancelled,
}

impl DeliveryStatus {
    /// Lower-case name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the delivery will not be attempted again by itself.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// The persisted state of a delivery that could not be settled by its first
/// attempt (failed, or still in flight when the dispatch window moved on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Current status.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (unix ms); meaningful while pending.
    /// While an attempt is in flight, when that attempt fell due (the
    /// record is not rewritten to send it; its lease is in the due index).
    pub next_attempt_ms: i64,
    /// HTTP status of the last attempt, if it got one.
    pub last_status_code: Option<u16>,
    /// Error kind of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Event type (for listings without reading the log).
    pub event_type: String,
    /// Event id.
    pub event_id: String,
    /// When the delivery was created (unix ms).
    pub created_at_ms: i64,
    /// When this record last changed (unix ms).
    pub updated_at_ms: i64,
}

impl DeliveryRecord {
    /// A delivery of `event_id` due at `now_ms`, no attempt made yet.
    pub fn pending(event_type: &str, event_id: &str, now_ms: i64) -> Self {
        Self {
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_status_code: None,
            last_error: None,
            event_type: event_type.to_owned(),
            event_id: event_id.to_owned(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// This delivery pending again, due at `now_ms` (a manual retry): its
    /// attempts, last outcome and creation time kept.
    pub fn pending_again(&self, now_ms: i64) -> Self {
        Self {
            status: DeliveryStatus::Pending,
            next_attempt_ms: now_ms,
            updated_at_ms: now_ms,
            ..self.clone()
        }
    }
}

/// How an attempt failed (docs/receiving.md, attempt log and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No full response within the webhook's timeout.
    Timeout,
    /// Could not connect, or the connection was reset.
    ConnectError,
    /// TLS handshake or certificate failure.
    TlsError,
    /// The SSRF guard refused the target address.
    BlockedAddress,
    /// A 4xx answer.
    Http4xx,
    /// A 5xx answer.
    Http5xx,
    /// Anything else (3xx, malformed response, …).
    Other,
}

impl ErrorKind {
    /// The snake_case name used in the API and as the metric outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::TlsError => "tls_error",
            Self::BlockedAddress => "blocked_address",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::Other => "other",
        }
    }
}

/// One HTTP request of a delivery, as the attempt log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start time, unix ms.
    pub started_at_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: u32,
    /// HTTP status, when a response head arrived.
    pub status_code: Option<u16>,
    /// Failure kind; `None` on success.
    pub error: Option<ErrorKind>,
    /// First 4 KiB of the response body, kept for failures only.
    pub response_body: Option<String>,
}

/// What the worker concluded from one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx arrived.
    Delivered,
    /// The attempt failed; `retry_after_ms` is the receiver's `Retry-After`.
    Failed {
        /// Receiver-requested delay, from a 429/503 `Retry-After`.
        retry_after_ms: Option<u64>,
    },
}

/// One attempt to perform: sent by the scheduler to the workers.
#[derive(Clone, Debug)]
pub struct DeliveryTask {
    /// Which delivery.
    pub key: DeliveryKey,
    /// 1-based number of this attempt.
    pub attempt: u32,
    /// Event id (the `webhook-id` header).
    pub event_id: Arc<str>,
    /// The unsigned envelope, shared by every webhook of the event.
    pub envelope: Arc<[u8]>,
    /// The webhook's configuration as of dispatch.
    pub webhook: Arc<Webhook>,
    /// Event occurred-at time (unix ms), for the event-to-delivery histogram.
    pub occurred_at_ms: i64,
}

/// The outcome of one attempt: sent by a worker back to the scheduler.
#[derive(Clone, Debug)]
pub struct AttemptReport {
    /// Which delivery.
    pub key: DeliveryKey,
    /// The attempt log entry.
    pub attempt: Attempt,
    /// Success or failure (with `Retry-After`).
    pub result: AttemptResult,
    /// How long the attempt took, finer than the log's milliseconds (the
    /// host's adaptive concurrency limit reads it).
    pub elapsed: std::time::Duration,
}

/// How far delivery has come, published by the scheduler for ingest's
/// back-pressure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The dispatch cursor: every event up to it is settled or recorded.
    pub cursor: Seq,
    /// Deliveries waiting for an attempt (recorded or in the window).
    pub pending: u64,
    /// The last event the scheduler has read (fanned out).
    pub read: Seq,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_round_trip() {
        let k = DeliveryKey {
            seq: 42,
            generation: 3,
            webhook_id: WebhookId::from("wh_0123456789abcdef0123456789abcdef"),
        };
        let id = k.id();
        assert_eq!(
            id,
            "dlv_000000000000002a000000030123456789abcdef0123456789abcdef"
        );
        assert_eq!(DeliveryKey::parse(&id), Some(k));
        assert_eq!(DeliveryKey::parse("dlv_zz"), None);
        assert_eq!(DeliveryKey::parse("wh_1"), None);
        assert_eq!(DeliveryKey::parse("dlv_0000000000000g2a00000003abc"), None);
        assert_eq!(DeliveryKey::parse("dlv_ééééééééééééééééééééééééé"), None);
    }
}
