//! The in-memory copy of the configuration that every read is answered
//! from, and the one way it changes: [`ConfigChange`]s applied in commit
//! order. Backends keep it current; [`CheckedConfig`](super::CheckedConfig)
//! decides the changes.

use super::{App, DeviceToken, IngestKey, Org, TokenScope};
use hookrelay_core::{DeviceId, OrgId, TokenHash, Webhook, WebhookId};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard},
};

/// One record-level change of a configuration write.
#[derive(Clone, Debug)]
pub enum ConfigChange {
    /// Creates or replaces an organization.
    PutOrg(Org),
    /// Binds a device id to an organization (kept after the app is deleted).
    Bind {
        /// The device id.
        device: DeviceId,
        /// Its organization.
        org: OrgId,
    },
    /// Creates or replaces an app.
    PutApp(App),
    /// Removes an app (its binding stays).
    DeleteApp(DeviceId),
    /// Stores the scope of a credential's hash.
    PutToken {
        /// SHA-256 of the credential.
        hash: TokenHash,
        /// What it may manage.
        scope: TokenScope,
    },
    /// Forgets a credential's hash.
    DeleteToken(TokenHash),
    /// Stores a device token's listable record.
    PutDeviceToken(DeviceToken),
    /// Removes a device token's listable record, by `tok_…` id.
    DeleteDeviceToken(String),
    /// Stores an organization ingest key.
    PutIngestKey(IngestKey),
    /// Removes an organization ingest key, by hash.
    DeleteIngestKey(TokenHash),
    /// Creates or replaces a webhook (its number already assigned).
    PutWebhook(Arc<Webhook>),
    /// Removes a webhook.
    DeleteWebhook(WebhookId),
}

/// The configuration in memory, indexed for every read path.
#[derive(Default)]
pub struct ConfigMirror {
    pub(crate) orgs: HashMap<OrgId, Org>,
    pub(crate) apps: HashMap<DeviceId, App>,
    /// Every device id ever bound, with its organization (tombstones too).
    pub(crate) bound: HashMap<DeviceId, OrgId>,
    pub(crate) tokens: HashMap<TokenHash, TokenScope>,
    pub(crate) device_tokens: HashMap<String, DeviceToken>,
    pub(crate) ingest_keys: HashMap<TokenHash, IngestKey>,
    pub(crate) webhooks: HashMap<WebhookId, Arc<Webhook>>,
    /// App webhooks by device, oldest first.
    pub(crate) by_device: HashMap<DeviceId, Vec<Arc<Webhook>>>,
    /// Organization-wide webhooks by organization, oldest first.
    pub(crate) by_org: HashMap<OrgId, Vec<Arc<Webhook>>>,
    pub(crate) by_number: HashMap<u64, WebhookId>,
}

impl ConfigMirror {
    /// Applies one change.
    pub fn apply(&mut self, change: ConfigChange) {
        match change {
            ConfigChange::PutOrg(o) => {
                self.orgs.insert(o.id.clone(), o);
            }
            ConfigChange::Bind { device, org } => {
                self.bound.insert(device, org);
            }
            ConfigChange::PutApp(a) => {
                self.apps.insert(a.id.clone(), a);
            }
            ConfigChange::DeleteApp(id) => {
                self.apps.remove(&id);
                if let Some(left) = self.by_device.remove(&id) {
                    for w in left {
                        self.webhooks.remove(&w.id);
                        self.by_number.remove(&w.number);
                    }
                }
            }
            ConfigChange::PutToken { hash, scope } => {
                self.tokens.insert(hash, scope);
            }
            ConfigChange::DeleteToken(hash) => {
                self.tokens.remove(&hash);
            }
            ConfigChange::PutDeviceToken(t) => {
                self.device_tokens.insert(t.id.clone(), t);
            }
            ConfigChange::DeleteDeviceToken(id) => {
                self.device_tokens.remove(&id);
            }
            ConfigChange::PutIngestKey(k) => {
                self.ingest_keys.insert(k.hash, k);
            }
            ConfigChange::DeleteIngestKey(hash) => {
                self.ingest_keys.remove(&hash);
            }
            ConfigChange::PutWebhook(w) => self.index_webhook(w),
            ConfigChange::DeleteWebhook(id) => {
                self.unindex_webhook(&id);
            }
        }
    }

    /// The list `w` is indexed in.
    fn owner_list(&mut self, w: &Webhook) -> &mut Vec<Arc<Webhook>> {
        match w.app() {
            Some(device) => self.by_device.entry(device.clone()).or_default(),
            None => self.by_org.entry(w.org_id.clone()).or_default(),
        }
    }

    fn index_webhook(&mut self, w: Arc<Webhook>) {
        if let Some(old) = self.webhooks.get(&w.id).cloned() {
            if old.number != w.number {
                self.by_number.remove(&old.number);
            }
        }
        let list = self.owner_list(&w);
        list.retain(|x| x.id != w.id);
        list.push(w.clone());
        list.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        self.by_number.insert(w.number, w.id.clone());
        self.webhooks.insert(w.id.clone(), w);
    }

    fn unindex_webhook(&mut self, id: &WebhookId) -> Option<Arc<Webhook>> {
        let w = self.webhooks.remove(id)?;
        self.owner_list(&w).retain(|x| &x.id != id);
        self.by_number.remove(&w.number);
        Some(w)
    }

    /// How many webhooks the owner of `w` (its app, or its organization
    /// for an organization-wide one) has.
    pub(crate) fn webhook_count(&self, w: &Webhook) -> usize {
        match w.app() {
            Some(device) => self.by_device.get(device).map_or(0, Vec::len),
            None => self.by_org.get(&w.org_id).map_or(0, Vec::len),
        }
    }

    /// The organization a device id is bound to (kept after its app is
    /// deleted), if any.
    pub fn organization_of(&self, device: &DeviceId) -> Option<&OrgId> {
        self.bound.get(device)
    }

    /// The largest webhook number in use (0 when there is none).
    pub fn max_number(&self) -> u64 {
        self.by_number.keys().copied().max().unwrap_or(0)
    }
}

/// A mirror shared by its backend (which writes it) and the readers.
#[derive(Default)]
pub struct SharedMirror(RwLock<ConfigMirror>);

impl SharedMirror {
    /// Reads the mirror.
    pub fn read(&self) -> RwLockReadGuard<'_, ConfigMirror> {
        // Changes are plain map operations that do not panic, so a lock
        // poisoned elsewhere still guards consistent maps.
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the mirror.
    pub fn update<T>(&self, f: impl FnOnce(&mut ConfigMirror) -> T) -> T {
        f(&mut self.0.write().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies changes in order, under one write lock.
    pub fn apply(&self, changes: impl IntoIterator<Item = ConfigChange>) {
        self.update(|m| {
            for c in changes {
                m.apply(c);
            }
        });
    }
}
