//! Domain core of hookrelay: the types every other crate speaks, and the pure
//! logic that must behave identically wherever it runs.
//!
//! Owns: id newtypes ([`WebhookId`], [`DeliveryKey`], ...), the event catalog and
//! subscription patterns ([`Catalog`]), event validation ([`validate_event`]),
//! the delivery envelope and both signature schemes ([`signing`]), retry-policy
//! maths ([`RetryPolicy`]), the webhook model and its validation, the
//! configuration types shared by several crates, and the [`Clock`] the
//! scheduling parts take from their caller.
//!
//! Must not: do I/O, depend on sled or reqwest, use tokio for anything but
//! its clock (`tokio::time::Instant`, which tests pause), or name an HTTP
//! status.
//!
//! ```
//! use hookrelay_core::{Catalog, signing};
//! let catalog = Catalog::builtin();
//! assert!(catalog.matches_any(&["message.*".to_string()], "message.received"));
//! let body = signing::envelope("evt_1", "message.received", 1, "dev", "{}");
//! assert!(body.starts_with(b"{\"id\":\"evt_1\""));
//! ```

mod catalog;
mod clock;
mod config;
mod delivery;
mod event;
mod ids;
mod json;
mod names;
mod partition;
mod retry;
mod shares;
pub mod signing;
mod time;
mod token;
mod webhook;

pub use catalog::{
    named_webhook, Catalog, EventTypeInfo, BUILTIN_CATEGORIES, WEBHOOK_DISABLED, WEBHOOK_TEST,
};
pub use clock::Clock;
pub use config::{CatalogConfig, DeliveryConfig};
pub use delivery::{
    Attempt, AttemptReport, AttemptResult, DeliveryKey, DeliveryRecord, DeliveryStatus,
    DeliveryTask, ErrorKind, Progress,
};
pub use event::{validate_event, Event, EventError, RawEvent};
pub use ids::{
    new_device_id, new_event_id, new_ingest_key_id, new_org_id, new_request_id, new_token_id,
    new_webhook_id, ClientAddr, DeviceId, OrgId, Seq, WebhookId,
};
pub use json::canonical_json_object;
pub use names::{header, metric};
pub use partition::{
    local_seq, partition_of, partition_seq, seq_partition, Partition, MAX_PARTITIONS,
};
pub use retry::{Backoff, RetryPolicy};
pub use shares::{OverShare, PendingShares, ShareLimits};
pub use time::{now_ms, rfc3339_ms, rfc3339_now};
pub use token::{
    constant_time_eq, generate_admin_key, generate_ingest_key, generate_secret, hash_token,
    new_device_token, TokenHash,
};
pub use webhook::{
    normalize_url, FieldError, Webhook, WebhookInput, WebhookProblems, WebhookScope, MAX_HEADERS,
    MAX_PREVIOUS_SECRETS, MAX_RETRY_ATTEMPTS, MAX_TIMEOUT_SECS, MAX_URL_LEN,
};
