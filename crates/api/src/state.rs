//! Shared state of the handlers.

use crate::limit::{Limits, RateLimit};
use hookrelay_core::{constant_time_eq, hash_token, Catalog, DeliveryConfig, TokenHash};
use hookrelay_store::{ConfigStore, DeliveryControl, DeliveryStore, EventLog, StoreHealth};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

/// What the API needs from configuration.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The operator key (creates organizations, binds device ids); `None`
    /// disables those routes.
    pub operator_key: Option<String>,
    /// The operator's ingest keys (`ingest.keys`), for the rate limiter of
    /// `POST /v1/events`.
    pub operator_ingest_keys: Vec<String>,
    /// Delivery settings (`allow_http` is checked at configuration time).
    pub delivery: DeliveryConfig,
    /// Most webhooks one app may have (default 20).
    pub max_webhooks_per_app: usize,
    /// Limits and rules of tenancy.
    pub tenancy: TenancyConfig,
    /// Per credential, on every authenticated REST route.
    pub rate_limit: RateLimit,
    /// Per ingest key, on `POST /v1/events`.
    pub ingest_rate_limit: RateLimit,
    /// Per client address, for requests with a missing or wrong credential.
    pub auth_failure_limit: RateLimit,
    /// How fast a request body must arrive.
    pub body_read: crate::BodyRead,
}

/// Tenancy rules (`[tenancy]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// Admin keys may choose their apps' device ids (default false; true
    /// only for single-tenant deployments: any admin could then claim a
    /// device id the gateway has not used yet).
    pub admin_device_ids: bool,
    /// Most apps of one organization (default 10000).
    pub max_apps_per_org: usize,
    /// Most device tokens of one organization (default 10000).
    pub max_tokens_per_org: usize,
    /// Most ingest keys of one organization (default 100).
    pub max_ingest_keys_per_org: usize,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            admin_device_ids: false,
            max_apps_per_org: 10_000,
            max_tokens_per_org: 10_000,
            max_ingest_keys_per_org: 100,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            operator_key: None,
            operator_ingest_keys: Vec::new(),
            delivery: DeliveryConfig::default(),
            max_webhooks_per_app: 20,
            tenancy: TenancyConfig::default(),
            rate_limit: RateLimit {
                per_second: 50,
                burst: 200,
            },
            ingest_rate_limit: RateLimit {
                per_second: 5_000,
                burst: 10_000,
            },
            auth_failure_limit: RateLimit {
                per_second: 5,
                burst: 20,
            },
            body_read: crate::BodyRead::default(),
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
    /// Whether the store takes writes, for `/readyz`.
    pub health: Option<StoreHealth>,
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
    operator_ingest_keys: Arc<[TokenHash]>,
    pub(crate) max_webhooks_per_app: usize,
    pub(crate) tenancy: Arc<TenancyConfig>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) body_read: crate::BodyRead,
    health: Option<StoreHealth>,
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
            operator_ingest_keys: api
                .operator_ingest_keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| hash_token(k))
                .collect(),
            max_webhooks_per_app: api.max_webhooks_per_app.max(1),
            tenancy: Arc::new(api.tenancy),
            limits: Limits::new(
                api.rate_limit,
                api.ingest_rate_limit,
                api.auth_failure_limit,
            ),
            body_read: api.body_read,
            health: deps.health,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the server ready (or not: starting, draining, failed) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// `Err(reason)` while the server cannot take work: starting, draining,
    /// failed, or the store cannot take writes (disk space inside the
    /// reserve, a sticky I/O failure).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("not serving (starting, stopping or failed)".to_owned());
        }
        match self.health.as_ref().and_then(StoreHealth::problem) {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Whether `hash` is a valid REST credential of any kind.
    pub(crate) fn is_credential(&self, hash: &TokenHash) -> bool {
        self.config.token_scope(hash).is_some()
            || self
                .operator_key
                .is_some_and(|k| constant_time_eq(&k.0, &hash.0))
    }

    /// Whether `hash` is an ingest key (the operator's or an organization's).
    pub(crate) fn is_ingest_key(&self, hash: &TokenHash) -> bool {
        self.operator_ingest_keys
            .iter()
            .fold(false, |ok, k| constant_time_eq(&k.0, &hash.0) | ok)
            || self.config.ingest_key_org(hash).is_some()
    }
}
