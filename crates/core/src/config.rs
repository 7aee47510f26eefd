//! Configuration sections read by more than one crate.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[catalog]`: event names beyond the built-in catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Extra subscribable and publishable event names (default none).
    pub extra: Vec<String>,
}

/// `[delivery]`: how webhooks are called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Accept `http://` webhook URLs (default false: https only).
    pub allow_http: bool,
    /// Deliver to loopback/private/link-local targets (default false).
    pub allow_private_targets: bool,
    /// How long a rotated-out secret keeps signing (default 24h).
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
    /// Attempts in flight at once across all webhooks (default 256).
    pub concurrency: usize,
    /// Attempts in flight at once to one target host (`scheme://host:port`)
    /// at first (default 16). With `adaptive_concurrency` each host's limit
    /// then moves between `per_host_concurrency_min` and
    /// `per_host_concurrency_max` with its answers and latency; without, it
    /// stays here. A slow or dead host holds at most its own limit.
    pub per_host_concurrency: usize,
    /// The least a host's adaptive limit goes down to (default 2).
    pub per_host_concurrency_min: usize,
    /// The most a host's adaptive limit goes up to (default 256). While
    /// several hosts have work, each gets at most its share of
    /// `concurrency` beyond `per_host_concurrency_min`.
    pub per_host_concurrency_max: usize,
    /// Moves each host's limit with what it shows (default true): up while
    /// answers are 2xx at near-floor latency, down on timeouts, connection
    /// errors, 429, 503 and rising latency.
    pub adaptive_concurrency: bool,
    /// Consecutive failed attempts to one host after which its circuit opens
    /// and it is probed with one attempt at a time (default 10).
    pub breaker_threshold: u32,
    /// Extra time past a webhook's timeout before an in-flight attempt's lease
    /// expires and the delivery is due again (default 30s).
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// Default first retry delay for new webhooks, in milliseconds (default 1000).
    pub base_delay_ms: u64,
    /// A webhook whose attempts have all failed for this long is deactivated,
    /// and the device's other webhooks get `webhook.disabled` (default 5d).
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
}

impl DeliveryConfig {
    /// The most attempts ever in flight to one host: the adaptive limit's
    /// ceiling, or the fixed limit without adaptation.
    pub fn most_per_host(&self) -> usize {
        if self.adaptive_concurrency {
            self.per_host_concurrency_max
        } else {
            self.per_host_concurrency
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_targets: false,
            rotation_grace: Duration::from_secs(24 * 3600),
            concurrency: 256,
            per_host_concurrency: 16,
            per_host_concurrency_min: 2,
            per_host_concurrency_max: 256,
            adaptive_concurrency: true,
            breaker_threshold: 10,
            lease_margin: Duration::from_secs(30),
            base_delay_ms: 1000,
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}
