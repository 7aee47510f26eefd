//! `[ingest]` configuration.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[ingest]`: who may publish and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Accepted ingest keys (Bearer on gRPC and `POST /v1/events`). Empty: every
    /// publish is refused as unauthenticated.
    pub keys: Vec<String>,
    /// Largest accepted event (id + device_id + event_type + data), bytes
    /// (default 262144 = 256 KiB).
    pub max_event_bytes: usize,
    /// Window in which a repeated `(device_id, id)` is answered as a duplicate
    /// (default 24h).
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Events logged but not yet fanned out above which publishing answers
    /// RESOURCE_EXHAUSTED (default 1,000,000).
    pub max_backlog: u64,
    /// Pending deliveries above which publishing answers RESOURCE_EXHAUSTED
    /// (default 5,000,000).
    pub max_pending_deliveries: u64,
    /// One organization's share of the pending deliveries (its webhooks'
    /// together; default 1,000,000; 0: no share, only the engine-wide
    /// limit). Over it, that organization's publishes answer
    /// RESOURCE_EXHAUSTED / 429 and its replays and manual retries 429,
    /// while every other organization goes on. On a cluster, per node.
    pub max_pending_per_organization: u64,
    /// One webhook's share (default 500,000; 0: none): a replay or manual
    /// retry to a webhook at it answers 429, and a running replay waits
    /// for room.
    pub max_pending_per_webhook: u64,
    /// Most events in one request: a `PublishBatch` or a `POST /v1/events`
    /// array (default 500). With `max_event_bytes` it sets the largest gRPC
    /// message accepted.
    pub max_request_events: usize,
    /// Most events gathered into one group commit (default 4096).
    pub max_batch_events: usize,
    /// Shortest time between the starts of two group commits (default 0:
    /// none). An event that arrives after a quiet spell is committed at
    /// once; under a steady stream, what arrives within this time shares one
    /// flush, so a light load costs fewer flushes (each a disk write and
    /// its wait) for added latency: 1ms saved a fifth of the CPU at a steady
    /// 2,000 events/s and added 2 ms to the median (Tokio's timers tick in
    /// milliseconds), so it is off unless asked for.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Append requests that may wait for the committer (default 4096); when
    /// full, publishers wait (back-pressure on the connection).
    pub queue_capacity: usize,
}

impl IngestConfig {
    /// The caps of one tenant's share of the pending deliveries.
    pub fn share_limits(&self) -> hookrelay_core::ShareLimits {
        hookrelay_core::ShareLimits {
            per_organization: self.max_pending_per_organization,
            per_webhook: self.max_pending_per_webhook,
        }
    }

    /// The largest gRPC message accepted: a full batch of the largest events,
    /// plus their framing.
    pub fn max_message_bytes(&self) -> usize {
        const FRAMING_PER_EVENT: usize = 1024;
        self.max_request_events
            .max(1)
            .saturating_mul(self.max_event_bytes.saturating_add(FRAMING_PER_EVENT))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            max_event_bytes: 256 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            max_backlog: 1_000_000,
            max_pending_deliveries: 5_000_000,
            max_pending_per_organization: 1_000_000,
            max_pending_per_webhook: 500_000,
            max_request_events: 500,
            max_batch_events: 4096,
            commit_interval: Duration::ZERO,
            queue_capacity: 4096,
        }
    }
}
