//! Configuration: organizations, device-id bindings, credentials (device
//! tokens, admin keys, organization ingest keys, all kept as SHA-256 hashes)
//! and webhooks.
//!
//! Every write is checked and applied under one writer lock, so a rule that
//! spans records (a per-app limit, "no token for a deleted app", "a deleted
//! webhook stays deleted") holds under any interleaving of requests. The
//! The rules live in [`CheckedConfig`], once for every backend; a backend
//! only keeps the records ([`ConfigLog`]).

mod checked;
mod mirror;
mod records;

pub use checked::{CheckedConfig, ConfigLog, ConfigVersion};
pub use mirror::{ConfigChange, ConfigMirror, SharedMirror};
pub use records::{AppRecord, ConfigOwner, OrgRecord};

use crate::{BoxFuture, StoreError};
use hookrelay_core::{
    named_webhook, DeviceId, Event, OrgId, TokenHash, Webhook, WebhookId, WEBHOOK_DISABLED,
    WEBHOOK_TEST,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// `org_...`
    pub id: OrgId,
    /// Display name.
    pub name: String,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
}

/// An app: one producer of events; its id is the events' `device_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// The device id.
    pub id: DeviceId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// When the device id was bound to the organization, unix ms. Replay never
    /// reaches events appended before it.
    pub created_at_ms: i64,
}

/// What a REST credential may manage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenScope {
    /// An admin key: the whole organization.
    Admin {
        /// The organization.
        org_id: OrgId,
    },
    /// A device token: one app's webhooks.
    Device {
        /// The organization.
        org_id: OrgId,
        /// The app.
        device_id: DeviceId,
    },
}

/// A device token's listable record (the token itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceToken {
    /// `tok_...`
    pub id: String,
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// Display name (may be empty).
    pub name: String,
    /// The organization.
    pub org_id: OrgId,
    /// The app it manages.
    pub device_id: DeviceId,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
}

/// An organization ingest key: publishes only for the organization's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestKey {
    /// `ikid_...`
    pub id: String,
    /// SHA-256 of the key.
    pub hash: TokenHash,
    /// Display name (may be empty).
    pub name: String,
    /// The organization.
    pub org_id: OrgId,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
}

/// The webhooks that receive one device's events.
#[derive(Clone, Debug, Default)]
pub struct Subscribers {
    /// The device's own webhooks.
    pub own: Vec<Arc<Webhook>>,
    /// Its organization's organization-wide webhooks (empty while the
    /// device is bound to no organization).
    pub org_wide: Vec<Arc<Webhook>>,
    /// When the device was bound (unix ms; `i64::MIN` while unbound): its
    /// organization's webhooks, its app's own among them, get only events
    /// appended from then on. Whatever was logged for the device id before
    /// belongs to no one, however late the scheduler reads it.
    pub bound_at_ms: i64,
}

impl Subscribers {
    /// The webhooks that get an event appended at `appended_at_ms`.
    pub fn for_event(self, appended_at_ms: i64) -> impl Iterator<Item = Arc<Webhook>> {
        let (own, org_wide) = if appended_at_ms >= self.bound_at_ms {
            (self.own, self.org_wide)
        } else {
            (Vec::new(), Vec::new())
        };
        own.into_iter().chain(org_wide)
    }
}

/// Changes a webhook in place; `false` when it changed nothing. It may run
/// more than once (when another node wrote first); the last run counts.
pub type WebhookChange<'a> = Box<dyn FnMut(&mut Webhook) -> bool + Send + 'a>;

/// Builds the primary webhook of a device from the current one (if any);
/// `None` leaves everything as it is. It may run more than once, as
/// [`WebhookChange`].
pub type PrimaryChange<'a> = Box<dyn FnMut(Option<&Webhook>) -> Option<Webhook> + Send + 'a>;

/// Configuration storage. Reads come from memory; writes are durable when
/// they return.
pub trait ConfigStore: Send + Sync + 'static {
    /// Creates an organization with its first admin key hash.
    fn create_org(&self, org: Org, admin_key: TokenHash) -> BoxFuture<'_, Result<(), StoreError>>;
    /// An organization by id.
    fn org(&self, id: &OrgId) -> Option<Org>;
    /// Every organization, oldest first.
    fn orgs(&self) -> Vec<Org>;

    /// Binds a device id to an organization. [`StoreError::Conflict`] when
    /// the id is or ever was bound (deleted apps leave a tombstone);
    /// [`StoreError::Limit`] when the organization has `max_per_org` apps.
    fn create_app(&self, app: App, max_per_org: usize) -> BoxFuture<'_, Result<(), StoreError>>;
    /// An app by id.
    fn app(&self, id: &DeviceId) -> Option<App>;
    /// An organization's apps, oldest first.
    fn apps_of(&self, org: &OrgId) -> Vec<App>;
    /// Deletes an app with its tokens and webhooks; its id stays taken.
    fn delete_app(&self, id: &DeviceId) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Stores a device token. [`StoreError::NotFound`] when its app is gone
    /// (or belongs to another organization); [`StoreError::Limit`] past
    /// `max_per_org` tokens in the organization.
    fn add_token(
        &self,
        token: DeviceToken,
        max_per_org: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// A device's tokens, oldest first.
    fn tokens_of(&self, device: &DeviceId) -> Vec<DeviceToken>;
    /// Revokes a token of `device`; `false` when it has no such token.
    fn revoke_token<'a>(
        &'a self,
        device: &'a DeviceId,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The scope of a presented token's hash.
    fn token_scope(&self, hash: &TokenHash) -> Option<TokenScope>;

    /// Stores an organization ingest key; [`StoreError::Limit`] past
    /// `max_per_org` keys.
    fn add_ingest_key(
        &self,
        key: IngestKey,
        max_per_org: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// An organization's ingest keys, oldest first.
    fn ingest_keys_of(&self, org: &OrgId) -> Vec<IngestKey>;
    /// Deletes an ingest key of `org`; `false` when it has no such key.
    fn delete_ingest_key<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The organization of a presented ingest key's hash.
    fn ingest_key_org(&self, hash: &TokenHash) -> Option<OrgId>;

    /// Creates a webhook of an existing app. [`StoreError::NotFound`] when
    /// the app is gone; [`StoreError::Limit`] when it has `max_per_app`.
    fn create_webhook(
        &self,
        webhook: Webhook,
        max_per_app: usize,
    ) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>>;
    /// Creates or replaces a webhook as given (setup and tests; the API
    /// goes through the checked writes above and below).
    fn put_webhook(&self, webhook: Webhook) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>>;
    /// Changes a webhook atomically (read, `change`, write under the writer
    /// lock, so a concurrent change is never lost and a deleted webhook is
    /// never brought back). `change` returns whether it changed anything;
    /// the result is the stored webhook, `None` when it does not exist.
    fn update_webhook<'a>(
        &'a self,
        id: &WebhookId,
        change: WebhookChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>>;
    /// Creates or changes a device's primary webhook atomically; counts
    /// against `max_per_app` when it creates one.
    fn upsert_primary<'a>(
        &'a self,
        device: &'a DeviceId,
        max_per_app: usize,
        change: PrimaryChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>>;
    /// Deletes a webhook if `owned` accepts it; `false` if it did not exist
    /// or was not accepted.
    fn delete_webhook<'a>(
        &'a self,
        id: &'a WebhookId,
        owned: Box<dyn Fn(&Webhook) -> bool + Send + 'a>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// A webhook by id.
    fn webhook(&self, id: &WebhookId) -> Option<Arc<Webhook>>;
    /// A device's webhooks, oldest first.
    fn webhooks_of(&self, device: &DeviceId) -> Vec<Arc<Webhook>>;
    /// Whether `w` gets the event `e` appended at `appended_at_ms` (before
    /// its filter): the one rule of fan-out, retries and the delivery lookup.
    /// - A test send reaches only the webhook it names.
    /// - An app's webhook gets its app's events, from the binding on.
    /// - An organization-wide webhook gets the events of every app bound to
    ///   its organization, from the binding on, and the engine's notices
    ///   about its organization's organization-wide webhooks (from device
    ///   id `""`, which producers cannot use).
    fn receives(&self, w: &Webhook, e: &Event, appended_at_ms: i64) -> bool {
        if e.event_type == WEBHOOK_TEST {
            return e.device_id == w.device_id.as_str()
                && named_webhook(&e.data).is_some_and(|id| id == w.id);
        }
        match w.app() {
            Some(device) => {
                e.device_id == device.as_str()
                    && self
                        .app(device)
                        .is_none_or(|a| appended_at_ms >= a.created_at_ms)
            }
            None if e.device_id.is_empty() => {
                e.event_type == WEBHOOK_DISABLED
                    && named_webhook(&e.data)
                        .and_then(|id| self.webhook(&id))
                        .is_some_and(|n| n.app().is_none() && n.org_id == w.org_id)
            }
            None => self
                .app(&DeviceId::from(e.device_id.as_str()))
                .is_some_and(|a| a.org_id == w.org_id && appended_at_ms >= a.created_at_ms),
        }
    }
    /// An organization's organization-wide webhooks, oldest first.
    fn org_webhooks(&self, org: &OrgId) -> Vec<Arc<Webhook>>;
    /// Every webhook that receives `device`'s events (before filters).
    fn subscribers(&self, device: &DeviceId) -> Subscribers;
    /// The webhook with this number (see [`Webhook::number`]).
    fn webhook_by_number(&self, number: u64) -> Option<Arc<Webhook>>;
}
