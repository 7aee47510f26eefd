//! The configuration grouped by owner, for backends that store one value
//! per owner: an organization with its admin keys, ingest keys and
//! organization-wide webhooks; an app (device id) with its binding, tokens
//! and webhooks. Every write of [`ConfigStore`](super::ConfigStore) changes
//! the records of exactly one owner, so such a backend commits each write
//! as one value.

use super::{
    mirror::{ConfigChange, ConfigMirror},
    App, DeviceToken, IngestKey, Org, TokenScope,
};
use hookrelay_core::{DeviceId, OrgId, TokenHash, Webhook};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who a configuration record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigOwner {
    /// An organization.
    Org(OrgId),
    /// A device id (bound to an organization, with or without a live app).
    App(DeviceId),
}

/// An organization's own records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    /// The organization.
    pub org: Org,
    /// Hashes of its admin keys.
    pub admin_keys: Vec<TokenHash>,
    /// Its ingest keys.
    pub ingest_keys: Vec<IngestKey>,
    /// Its organization-wide webhooks.
    pub webhooks: Vec<Webhook>,
}

/// A device id's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The device id.
    pub device: DeviceId,
    /// The organization it is bound to, for ever.
    pub org_id: OrgId,
    /// The app; `None` once deleted (the binding stays).
    pub app: Option<App>,
    /// Its device tokens.
    pub tokens: Vec<DeviceToken>,
    /// Its webhooks.
    pub webhooks: Vec<Webhook>,
}

impl ConfigMirror {
    /// The owner whose records `change` belongs to.
    pub fn owner_of(&self, change: &ConfigChange) -> Option<ConfigOwner> {
        use ConfigChange as C;
        let of_scope = |s: &TokenScope| match s {
            TokenScope::Admin { org_id } => ConfigOwner::Org(org_id.clone()),
            TokenScope::Device { device_id, .. } => ConfigOwner::App(device_id.clone()),
        };
        let of_webhook = |w: &Webhook| match w.app() {
            Some(d) => ConfigOwner::App(d.clone()),
            None => ConfigOwner::Org(w.org_id.clone()),
        };
        Some(match change {
            C::PutOrg(o) => ConfigOwner::Org(o.id.clone()),
            C::Bind { device, .. } | C::DeleteApp(device) => ConfigOwner::App(device.clone()),
            C::PutApp(a) => ConfigOwner::App(a.id.clone()),
            C::PutToken { scope, .. } => of_scope(scope),
            C::DeleteToken(h) => of_scope(self.tokens.get(h)?),
            C::PutDeviceToken(t) => ConfigOwner::App(t.device_id.clone()),
            C::DeleteDeviceToken(id) => {
                ConfigOwner::App(self.device_tokens.get(id)?.device_id.clone())
            }
            C::PutIngestKey(k) => ConfigOwner::Org(k.org_id.clone()),
            C::DeleteIngestKey(h) => ConfigOwner::Org(self.ingest_keys.get(h)?.org_id.clone()),
            C::PutWebhook(w) => of_webhook(w),
            C::DeleteWebhook(id) => of_webhook(self.webhooks.get(id)?),
        })
    }

    /// An organization's records as the mirror holds them.
    pub fn org_record(&self, id: &OrgId) -> Option<OrgRecord> {
        let org = self.orgs.get(id)?.clone();
        let mut admin_keys: Vec<TokenHash> = self
            .tokens
            .iter()
            .filter(|(_, s)| matches!(s, TokenScope::Admin { org_id } if org_id == id))
            .map(|(h, _)| *h)
            .collect();
        admin_keys.sort_by_key(|h| h.0);
        let mut ingest_keys: Vec<IngestKey> = self
            .ingest_keys
            .values()
            .filter(|k| &k.org_id == id)
            .cloned()
            .collect();
        ingest_keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let webhooks = self
            .by_org
            .get(id)
            .map(|l| l.iter().map(|w| (**w).clone()).collect())
            .unwrap_or_default();
        Some(OrgRecord {
            org,
            admin_keys,
            ingest_keys,
            webhooks,
        })
    }

    /// A device id's records as the mirror holds them (`None` if it was
    /// never bound).
    pub fn app_record(&self, device: &DeviceId) -> Option<AppRecord> {
        let org_id = self.bound.get(device)?.clone();
        let mut tokens: Vec<DeviceToken> = self
            .device_tokens
            .values()
            .filter(|t| &t.device_id == device)
            .cloned()
            .collect();
        tokens.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let webhooks = self
            .by_device
            .get(device)
            .map(|l| l.iter().map(|w| (**w).clone()).collect())
            .unwrap_or_default();
        Some(AppRecord {
            device: device.clone(),
            org_id,
            app: self.apps.get(device).cloned(),
            tokens,
            webhooks,
        })
    }

    /// The changes that turn this mirror's records of `new.org` into `new`.
    pub fn org_changes(&self, new: OrgRecord) -> Vec<ConfigChange> {
        use ConfigChange as C;
        let id = new.org.id.clone();
        let old = self.org_record(&id);
        let mut out = Vec::new();
        if let Some(old) = &old {
            for h in old
                .admin_keys
                .iter()
                .filter(|h| !new.admin_keys.contains(h))
            {
                out.push(C::DeleteToken(*h));
            }
            for k in &old.ingest_keys {
                if !new.ingest_keys.iter().any(|n| n.hash == k.hash) {
                    out.push(C::DeleteIngestKey(k.hash));
                }
            }
            webhook_deletes(&old.webhooks, &new.webhooks, &mut out);
        }
        if old.as_ref().is_none_or(|o| o.org != new.org) {
            out.push(C::PutOrg(new.org));
        }
        for h in new.admin_keys {
            if old.as_ref().is_none_or(|o| !o.admin_keys.contains(&h)) {
                out.push(C::PutToken {
                    hash: h,
                    scope: TokenScope::Admin { org_id: id.clone() },
                });
            }
        }
        for k in new.ingest_keys {
            if old.as_ref().is_none_or(|o| !o.ingest_keys.contains(&k)) {
                out.push(C::PutIngestKey(k));
            }
        }
        webhook_puts(old.map(|o| o.webhooks), new.webhooks, &mut out);
        out
    }

    /// The changes that turn this mirror's records of `new.device` into `new`.
    pub fn app_changes(&self, new: AppRecord) -> Vec<ConfigChange> {
        use ConfigChange as C;
        let old = self.app_record(&new.device);
        let mut out = Vec::new();
        if let Some(old) = &old {
            for t in &old.tokens {
                if !new.tokens.iter().any(|n| n.id == t.id) {
                    out.push(C::DeleteToken(t.hash));
                    out.push(C::DeleteDeviceToken(t.id.clone()));
                }
            }
            webhook_deletes(&old.webhooks, &new.webhooks, &mut out);
            if old.app.is_some() && new.app.is_none() {
                out.push(C::DeleteApp(new.device.clone()));
            }
        }
        if old.as_ref().is_none_or(|o| o.org_id != new.org_id) {
            out.push(C::Bind {
                device: new.device.clone(),
                org: new.org_id.clone(),
            });
        }
        if let Some(app) = new.app {
            if old.as_ref().is_none_or(|o| o.app.as_ref() != Some(&app)) {
                out.push(C::PutApp(app));
            }
        }
        for t in new.tokens {
            if old.as_ref().is_none_or(|o| !o.tokens.contains(&t)) {
                out.push(C::PutToken {
                    hash: t.hash,
                    scope: TokenScope::Device {
                        org_id: t.org_id.clone(),
                        device_id: t.device_id.clone(),
                    },
                });
                out.push(C::PutDeviceToken(t));
            }
        }
        webhook_puts(old.map(|o| o.webhooks), new.webhooks, &mut out);
        out
    }
}

fn webhook_deletes(old: &[Webhook], new: &[Webhook], out: &mut Vec<ConfigChange>) {
    for w in old {
        if !new.iter().any(|n| n.id == w.id) {
            out.push(ConfigChange::DeleteWebhook(w.id.clone()));
        }
    }
}

fn webhook_puts(old: Option<Vec<Webhook>>, new: Vec<Webhook>, out: &mut Vec<ConfigChange>) {
    let old = old.unwrap_or_default();
    for w in new {
        if !old.contains(&w) {
            out.push(ConfigChange::PutWebhook(Arc::new(w)));
        }
    }
}

impl OrgRecord {
    /// A new organization with nothing else yet.
    pub fn new(org: Org) -> Self {
        Self {
            org,
            admin_keys: Vec::new(),
            ingest_keys: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// Applies a change of this organization's records.
    pub fn apply(&mut self, change: &ConfigChange) {
        use ConfigChange as C;
        match change {
            C::PutOrg(o) => self.org = o.clone(),
            C::PutToken { hash, .. } if !self.admin_keys.contains(hash) => {
                self.admin_keys.push(*hash)
            }
            C::DeleteToken(h) => self.admin_keys.retain(|k| k != h),
            C::PutIngestKey(k) => {
                self.ingest_keys.retain(|x| x.hash != k.hash);
                self.ingest_keys.push(k.clone());
            }
            C::DeleteIngestKey(h) => self.ingest_keys.retain(|x| &x.hash != h),
            C::PutWebhook(w) => put_webhook(&mut self.webhooks, w),
            C::DeleteWebhook(id) => self.webhooks.retain(|w| &w.id != id),
            _ => {}
        }
    }
}

impl AppRecord {
    /// A device id just bound to `org_id`, with nothing else yet.
    pub fn new(device: DeviceId, org_id: OrgId) -> Self {
        Self {
            device,
            org_id,
            app: None,
            tokens: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// Applies a change of this device id's records.
    pub fn apply(&mut self, change: &ConfigChange) {
        use ConfigChange as C;
        match change {
            C::Bind { org, .. } => self.org_id = org.clone(),
            C::PutApp(a) => self.app = Some(a.clone()),
            C::DeleteApp(_) => {
                self.app = None;
                self.webhooks.clear();
            }
            C::PutDeviceToken(t) => {
                self.tokens.retain(|x| x.id != t.id);
                self.tokens.push(t.clone());
            }
            C::DeleteDeviceToken(id) => self.tokens.retain(|t| &t.id != id),
            C::DeleteToken(h) => self.tokens.retain(|t| &t.hash != h),
            C::PutWebhook(w) => put_webhook(&mut self.webhooks, w),
            C::DeleteWebhook(id) => self.webhooks.retain(|w| &w.id != id),
            _ => {}
        }
    }
}

fn put_webhook(list: &mut Vec<Webhook>, w: &Webhook) {
    list.retain(|x| x.id != w.id);
    list.push(w.clone());
}
