//! Shared state of the handlers.

use hookrelay_core::{hash_token, Catalog, DeliveryConfig, TokenHash};
use hookrelay_store::{ConfigStore, DeliveryControl, DeliveryStore, EventLog};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// What the API needs from configuration.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The operator key (creates organizations); `None` disables those routes.
    pub operator_key: Option<String>,
    /// Delivery settings (`allow_http` is checked at configuration time).
    pub delivery: DeliveryConfig,
    /// Most webhooks one app may have (default 20).
    pub max_webhooks_per_app: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            operator_key: None,
            delivery: DeliveryConfig::default(),
            max_webhooks_per_app: 20,
        }
    }
}

/// The stores and services the handlers use.
pub struct ApiDeps {
    /// Configuration (tenants, tokens, webhooks).
    pub config: Arc<dyn ConfigStore>,
    /// The event log (test sends, event details).
    pub log: Arc<dyn EventLog>,
    /// Delivery state (listings, attempt logs).
    pub deliveries: Arc<dyn DeliveryStore>,
    /// The scheduler (retry, replay).
    pub control: Arc<dyn DeliveryControl>,
    /// The event catalog.
    pub catalog: Arc<Catalog>,
}

/// Handler state: cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) config: Arc<dyn ConfigStore>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) deliveries: Arc<dyn DeliveryStore>,
    pub(crate) control: Arc<dyn DeliveryControl>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) delivery: Arc<DeliveryConfig>,
    pub(crate) operator_key: Option<TokenHash>,
    pub(crate) max_webhooks_per_app: usize,
    ready: Arc<AtomicBool>,
}

impl ApiState {
    /// State over the stores and services of `deps`.
    pub fn new(deps: ApiDeps, api: ApiConfig) -> Self {
        Self {
            config: deps.config,
            log: deps.log,
            deliveries: deps.deliveries,
            control: deps.control,
            catalog: deps.catalog,
            delivery: Arc::new(api.delivery),
            operator_key: api
                .operator_key
                .filter(|k| !k.is_empty())
                .map(|k| hash_token(&k)),
            max_webhooks_per_app: api.max_webhooks_per_app.max(1),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the server ready (or not: starting, draining) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
