//! The rules of configuration writes, once for every backend.
//!
//! [`CheckedConfig`] answers reads from the backend's [`ConfigMirror`] and
//! turns each write into [`ConfigChange`]s after checking it against the
//! mirror: limits, tombstones, ownership. A backend shared by several nodes
//! may find that another node wrote first; the check then runs again on
//! the newer mirror, so a rule that spans records (a per-organization limit,
//! "a deleted app's id stays taken") holds across the whole cluster.

use super::{
    mirror::{ConfigChange, ConfigMirror, SharedMirror},
    App, ConfigStore, DeviceToken, IngestKey, Org, PrimaryChange, Subscribers, TokenScope,
    WebhookChange,
};
use crate::{BoxFuture, StoreError};
use hookrelay_core::{DeviceId, OrgId, TokenHash, Webhook, WebhookId};
use std::sync::Arc;

/// A configuration version: what a backend's commits are ordered by.
pub type ConfigVersion = u64;

/// Where a backend keeps the configuration.
pub trait ConfigLog: Send + Sync + 'static {
    /// The mirror, kept current by the backend.
    fn mirror(&self) -> &SharedMirror;
    /// Waits until the mirror shows every write committed (on any node)
    /// before the call, and returns the version it then shows.
    fn sync(&self) -> BoxFuture<'_, Result<ConfigVersion, StoreError>>;
    /// A webhook number never handed out before, for a commit on top of
    /// `version`.
    fn next_number(&self, version: ConfigVersion) -> Result<u64, StoreError>;
    /// Commits `changes` if nothing was committed since `version`:
    /// `Ok(true)` once they are durable and the mirror shows them,
    /// `Ok(false)` when another write came first (nothing was written).
    fn commit(
        &self,
        version: ConfigVersion,
        changes: Vec<ConfigChange>,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
}

/// Writes checked against the mirror before they reach a [`ConfigLog`].
pub struct CheckedConfig<L> {
    log: L,
    /// Serialises this node's writers, so they never race each other.
    write: tokio::sync::Mutex<()>,
}

/// What a write decided: the changes to commit and what to answer.
type Decision<T> = Result<(Vec<ConfigChange>, T), StoreError>;

/// `Err(Limit)` when `n` items already fill a limit of `max`.
fn room(n: usize, max: usize, what: &'static str) -> Result<(), StoreError> {
    if n >= max {
        Err(StoreError::Limit { what, max })
    } else {
        Ok(())
    }
}

fn oldest_first<T>(mut v: Vec<T>, key: impl Fn(&T) -> (i64, String)) -> Vec<T> {
    v.sort_by_key(key);
    v
}

impl<L: ConfigLog> CheckedConfig<L> {
    /// Configuration kept by `log`.
    pub fn new(log: L) -> Self {
        Self {
            log,
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// The backend.
    pub fn log(&self) -> &L {
        &self.log
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ConfigMirror> {
        self.log.mirror().read()
    }

    /// Runs `decide` on a current mirror and commits what it decided; runs
    /// it again when another node's write came first.
    async fn write<T>(
        &self,
        mut decide: impl FnMut(&ConfigMirror, ConfigVersion) -> Decision<T>,
    ) -> Result<T, StoreError> {
        let _w = self.write.lock().await;
        loop {
            let version = self.log.sync().await?;
            let (changes, answer) = decide(&self.read(), version)?;
            if changes.is_empty() || self.log.commit(version, changes).await? {
                return Ok(answer);
            }
        }
    }

    /// Stores `w` (numbering it if it has no number yet).
    fn numbered(&self, mut w: Webhook, version: ConfigVersion) -> Decision<Arc<Webhook>> {
        if w.number == 0 {
            w.number = self.log.next_number(version)?;
        }
        let w = Arc::new(w);
        Ok((vec![ConfigChange::PutWebhook(w.clone())], w))
    }
}

impl<L: ConfigLog> ConfigStore for CheckedConfig<L> {
    fn create_org(&self, org: Org, admin_key: TokenHash) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |_, _| {
            let scope = TokenScope::Admin {
                org_id: org.id.clone(),
            };
            Ok((
                vec![
                    ConfigChange::PutOrg(org.clone()),
                    ConfigChange::PutToken {
                        hash: admin_key,
                        scope,
                    },
                ],
                (),
            ))
        }))
    }

    fn org(&self, id: &OrgId) -> Option<Org> {
        self.read().orgs.get(id).cloned()
    }

    fn orgs(&self) -> Vec<Org> {
        let orgs = self.read().orgs.values().cloned().collect();
        oldest_first(orgs, |o: &Org| (o.created_at_ms, o.id.0.clone()))
    }

    fn create_app(&self, app: App, max_per_org: usize) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |m, _| {
            if m.bound.contains_key(&app.id) {
                return Err(StoreError::Conflict { what: "app" });
            }
            if !m.orgs.contains_key(&app.org_id) {
                return Err(StoreError::NotFound {
                    what: "organization",
                });
            }
            let n = m.apps.values().filter(|a| a.org_id == app.org_id).count();
            room(n, max_per_org, "apps per organization")?;
            Ok((
                vec![
                    ConfigChange::Bind {
                        device: app.id.clone(),
                        org: app.org_id.clone(),
                    },
                    ConfigChange::PutApp(app.clone()),
                ],
                (),
            ))
        }))
    }

    fn app(&self, id: &DeviceId) -> Option<App> {
        self.read().apps.get(id).cloned()
    }

    fn apps_of(&self, org: &OrgId) -> Vec<App> {
        let apps = self
            .read()
            .apps
            .values()
            .filter(|a| &a.org_id == org)
            .cloned()
            .collect();
        oldest_first(apps, |a: &App| (a.created_at_ms, a.id.0.clone()))
    }

    fn delete_app(&self, id: &DeviceId) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(self.write(move |m, _| {
            if !m.apps.contains_key(&id) {
                return Err(StoreError::NotFound { what: "app" });
            }
            let mut changes: Vec<ConfigChange> = m
                .by_device
                .get(&id)
                .into_iter()
                .flatten()
                .map(|w| ConfigChange::DeleteWebhook(w.id.clone()))
                .collect();
            for t in m.device_tokens.values().filter(|t| t.device_id == id) {
                changes.push(ConfigChange::DeleteToken(t.hash));
                changes.push(ConfigChange::DeleteDeviceToken(t.id.clone()));
            }
            // The binding stays: a device id is never bound to another
            // organization once it was bound (docs/api.md, docs/security.md).
            changes.push(ConfigChange::DeleteApp(id.clone()));
            Ok((changes, ()))
        }))
    }

    fn add_token(
        &self,
        token: DeviceToken,
        max_per_org: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |m, _| {
            if m.apps
                .get(&token.device_id)
                .is_none_or(|a| a.org_id != token.org_id)
            {
                return Err(StoreError::NotFound { what: "app" });
            }
            let n = m
                .device_tokens
                .values()
                .filter(|t| t.org_id == token.org_id)
                .count();
            room(n, max_per_org, "tokens per organization")?;
            let scope = TokenScope::Device {
                org_id: token.org_id.clone(),
                device_id: token.device_id.clone(),
            };
            Ok((
                vec![
                    ConfigChange::PutToken {
                        hash: token.hash,
                        scope,
                    },
                    ConfigChange::PutDeviceToken(token.clone()),
                ],
                (),
            ))
        }))
    }

    fn tokens_of(&self, device: &DeviceId) -> Vec<DeviceToken> {
        let tokens = self
            .read()
            .device_tokens
            .values()
            .filter(|t| &t.device_id == device)
            .cloned()
            .collect();
        oldest_first(tokens, |t: &DeviceToken| (t.created_at_ms, t.id.clone()))
    }

    fn revoke_token<'a>(
        &'a self,
        device: &'a DeviceId,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |m, _| {
            let Some(t) = m.device_tokens.get(id).filter(|t| &t.device_id == device) else {
                return Ok((Vec::new(), false));
            };
            Ok((
                vec![
                    ConfigChange::DeleteToken(t.hash),
                    ConfigChange::DeleteDeviceToken(t.id.clone()),
                ],
                true,
            ))
        }))
    }

    fn token_scope(&self, hash: &TokenHash) -> Option<TokenScope> {
        // The map is keyed by SHA-256 of the token: equality on the hash leaks
        // nothing usable about the token itself.
        self.read().tokens.get(hash).cloned()
    }

    fn add_ingest_key(
        &self,
        key: IngestKey,
        max_per_org: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |m, _| {
            if !m.orgs.contains_key(&key.org_id) {
                return Err(StoreError::NotFound {
                    what: "organization",
                });
            }
            let n = m
                .ingest_keys
                .values()
                .filter(|k| k.org_id == key.org_id)
                .count();
            room(n, max_per_org, "ingest keys per organization")?;
            Ok((vec![ConfigChange::PutIngestKey(key.clone())], ()))
        }))
    }

    fn ingest_keys_of(&self, org: &OrgId) -> Vec<IngestKey> {
        let keys = self
            .read()
            .ingest_keys
            .values()
            .filter(|k| &k.org_id == org)
            .cloned()
            .collect();
        oldest_first(keys, |k: &IngestKey| (k.created_at_ms, k.id.clone()))
    }

    fn delete_ingest_key<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |m, _| {
            let Some(hash) = m
                .ingest_keys
                .values()
                .find(|k| k.id == id && &k.org_id == org)
                .map(|k| k.hash)
            else {
                return Ok((Vec::new(), false));
            };
            Ok((vec![ConfigChange::DeleteIngestKey(hash)], true))
        }))
    }

    fn ingest_key_org(&self, hash: &TokenHash) -> Option<OrgId> {
        self.read().ingest_keys.get(hash).map(|k| k.org_id.clone())
    }

    fn create_webhook(
        &self,
        webhook: Webhook,
        max_per_app: usize,
    ) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>> {
        Box::pin(self.write(move |m, version| {
            match webhook.app() {
                Some(device)
                    if m.apps
                        .get(device)
                        .is_none_or(|a| a.org_id != webhook.org_id) =>
                {
                    return Err(StoreError::NotFound { what: "app" });
                }
                None if !m.orgs.contains_key(&webhook.org_id) => {
                    return Err(StoreError::NotFound {
                        what: "organization",
                    })
                }
                _ => {}
            }
            if m.webhooks.contains_key(&webhook.id) {
                return Err(StoreError::Conflict { what: "webhook" });
            }
            let what = match webhook.app() {
                Some(_) => "webhooks per app",
                None => "organization-wide webhooks",
            };
            room(m.webhook_count(&webhook), max_per_app, what)?;
            self.numbered(webhook.clone(), version)
        }))
    }

    fn put_webhook(&self, webhook: Webhook) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>> {
        Box::pin(self.write(move |m, version| {
            let mut w = webhook.clone();
            if w.number == 0 {
                // A replaced webhook keeps its number.
                w.number = m.webhooks.get(&w.id).map_or(0, |c| c.number);
            }
            self.numbered(w, version)
        }))
    }

    fn update_webhook<'a>(
        &'a self,
        id: &WebhookId,
        mut change: WebhookChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>> {
        let id = id.clone();
        Box::pin(self.write(move |m, version| {
            let Some(current) = m.webhooks.get(&id).cloned() else {
                return Ok((Vec::new(), None));
            };
            let mut next = (*current).clone();
            if !change(&mut next) {
                return Ok((Vec::new(), Some(current)));
            }
            // Identity and ownership never change through an update.
            next.id = current.id.clone();
            next.org_id = current.org_id.clone();
            next.device_id = current.device_id.clone();
            next.scope = current.scope;
            next.number = current.number;
            let (changes, w) = self.numbered(next, version)?;
            Ok((changes, Some(w)))
        }))
    }

    fn upsert_primary<'a>(
        &'a self,
        device: &'a DeviceId,
        max_per_app: usize,
        mut change: PrimaryChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>> {
        Box::pin(self.write(move |m, version| {
            let list = m.by_device.get(device);
            let current = list.and_then(|l| l.iter().find(|w| w.primary).cloned());
            let Some(app) = m.apps.get(device) else {
                return Err(StoreError::NotFound { what: "app" });
            };
            if current.is_none() {
                room(list.map_or(0, Vec::len), max_per_app, "webhooks per app")?;
            }
            let Some(mut next) = change(current.as_deref()) else {
                return Ok((Vec::new(), current));
            };
            next.primary = true;
            next.device_id = app.id.clone();
            next.org_id = app.org_id.clone();
            next.scope = hookrelay_core::WebhookScope::App;
            if let Some(c) = &current {
                next.id = c.id.clone();
                next.number = c.number;
            }
            let (changes, w) = self.numbered(next, version)?;
            Ok((changes, Some(w)))
        }))
    }

    fn delete_webhook<'a>(
        &'a self,
        id: &'a WebhookId,
        owned: Box<dyn Fn(&Webhook) -> bool + Send + 'a>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |m, _| match m.webhooks.get(id) {
            Some(current) if owned(current) => {
                Ok((vec![ConfigChange::DeleteWebhook(id.clone())], true))
            }
            _ => Ok((Vec::new(), false)),
        }))
    }

    fn webhook(&self, id: &WebhookId) -> Option<Arc<Webhook>> {
        self.read().webhooks.get(id).cloned()
    }

    fn webhooks_of(&self, device: &DeviceId) -> Vec<Arc<Webhook>> {
        self.read()
            .by_device
            .get(device)
            .cloned()
            .unwrap_or_default()
    }

    fn org_webhooks(&self, org: &OrgId) -> Vec<Arc<Webhook>> {
        self.read().by_org.get(org).cloned().unwrap_or_default()
    }

    fn subscribers(&self, device: &DeviceId) -> Subscribers {
        let m = self.read();
        let own = m.by_device.get(device).cloned().unwrap_or_default();
        // A bound device's events reach its organization (its app's own
        // webhooks and the organization-wide ones) from its binding on.
        let (org_wide, bound_at_ms) = match m.apps.get(device) {
            Some(app) => (
                m.by_org.get(&app.org_id).cloned().unwrap_or_default(),
                app.created_at_ms,
            ),
            None => (Vec::new(), i64::MIN),
        };
        Subscribers {
            own,
            org_wide,
            bound_at_ms,
        }
    }

    fn webhook_by_number(&self, number: u64) -> Option<Arc<Webhook>> {
        let m = self.read();
        m.by_number
            .get(&number)
            .and_then(|id| m.webhooks.get(id))
            .cloned()
    }
}
