//! Metric and header names: the one place they are spelled (docs/receiving.md, docs/api.md).

/// Metric names, all prefixed `hookrelay_`.
pub mod metric {
    /// Counter `{source}`: events durably accepted.
    pub const EVENTS_INGESTED: &str = "hookrelay_events_ingested_total";
    /// Counter `{reason}`: events refused.
    pub const EVENTS_REJECTED: &str = "hookrelay_events_rejected_total";
    /// Gauge: highest durable log sequence.
    pub const LOG_SEQUENCE: &str = "hookrelay_log_sequence";
    /// Gauge: durable events not yet fanned out.
    pub const FANOUT_LAG: &str = "hookrelay_fanout_lag_events";
    /// Counter: deliveries created by fan-out.
    pub const DELIVERIES_CREATED: &str = "hookrelay_deliveries_created_total";
    /// Counter `{outcome}`: attempts made.
    pub const DELIVERY_ATTEMPTS: &str = "hookrelay_delivery_attempts_total";
    /// Counter: deliveries that exhausted their retries.
    pub const DELIVERIES_FAILED: &str = "hookrelay_deliveries_failed_total";
    /// Gauge: deliveries waiting for an attempt.
    pub const DELIVERIES_PENDING: &str = "hookrelay_deliveries_pending";
    /// Histogram: attempt duration, seconds.
    pub const ATTEMPT_DURATION: &str = "hookrelay_delivery_attempt_duration_seconds";
    /// Histogram: occurred-at to first 2xx, seconds.
    pub const EVENT_TO_DELIVERY: &str = "hookrelay_event_to_delivery_seconds";
    /// Counter `{route,status}`: REST requests.
    pub const HTTP_REQUESTS: &str = "hookrelay_http_requests_total";
    /// Gauge: target hosts whose circuit breaker is open.
    pub const CIRCUITS_OPEN: &str = "hookrelay_circuits_open";
    /// Gauge `{host}`: attempts that may be in flight to a target host now
    /// (its adaptive limit), for the ten busiest hosts only.
    pub const HOST_CONCURRENCY_LIMIT: &str = "hookrelay_host_concurrency_limit";
    /// Gauge: data directory size, bytes.
    pub const STORE_BYTES: &str = "hookrelay_store_bytes";
    /// Gauge: log partitions this node drives (all of them on sled; its
    /// leased share on a JetStream cluster).
    pub const PARTITIONS_OWNED: &str = "hookrelay_partitions_owned";
    /// Gauge `{listener}`: client connections open.
    pub const CONNECTIONS_OPEN: &str = "hookrelay_connections_open";
    /// Counter `{listener,reason}`: client connections closed at accept
    /// (`listener_full`, `address_full`).
    pub const CONNECTIONS_REFUSED: &str = "hookrelay_connections_refused_total";
    /// Counter: client connections closed for sending no request in time.
    pub const CONNECTIONS_IDLE_CLOSED: &str = "hookrelay_connections_idle_closed_total";
}

/// Header names of a delivery request.
pub mod header {
    /// The event id, stable across retries and webhooks.
    pub const WEBHOOK_ID: &str = "webhook-id";
    /// Unix seconds of the attempt.
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    /// Standard Webhooks signatures.
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
}
