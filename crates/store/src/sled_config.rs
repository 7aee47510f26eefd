//! sled implementation of [`ConfigStore`].
//!
//! Everything is mirrored in memory and written through to sled, then
//! flushed before the write returns: configuration changes are rare and must
//! survive a crash once answered. Readers always see the mirror, so a change
//! is visible to the very next fan-out and attempt (invariant 5). One async
//! writer lock orders every write: checks (limits, tombstones, ownership) and
//! the write they guard happen under it, so no interleaving breaks them.

use crate::{
    codec,
    config::{
        App, ConfigStore, DeviceToken, IngestKey, Org, PrimaryChange, Subscribers, TokenScope,
        WebhookChange,
    },
    webhook_record, BoxFuture, StoreError,
};
use hookrelay_core::{DeviceId, OrgId, TokenHash, Webhook, WebhookId};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

#[derive(Default)]
struct Mirror {
    orgs: HashMap<OrgId, Org>,
    apps: HashMap<DeviceId, App>,
    /// Every device id ever bound, with its organization (tombstones too).
    bound: HashMap<DeviceId, OrgId>,
    tokens: HashMap<TokenHash, TokenScope>,
    device_tokens: HashMap<String, DeviceToken>,
    ingest_keys: HashMap<TokenHash, IngestKey>,
    webhooks: HashMap<WebhookId, Arc<Webhook>>,
    /// App webhooks by device, oldest first.
    by_device: HashMap<DeviceId, Vec<Arc<Webhook>>>,
    /// Organization-wide webhooks by organization, oldest first.
    by_org: HashMap<OrgId, Vec<Arc<Webhook>>>,
    by_number: HashMap<u64, WebhookId>,
}

impl Mirror {
    /// The list `w` is indexed in.
    fn owner_list(&mut self, w: &Webhook) -> &mut Vec<Arc<Webhook>> {
        match w.app() {
            Some(device) => self.by_device.entry(device.clone()).or_default(),
            None => self.by_org.entry(w.org_id.clone()).or_default(),
        }
    }

    fn index_webhook(&mut self, w: Arc<Webhook>) {
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
    fn webhook_count(&self, w: &Webhook) -> usize {
        match w.app() {
            Some(device) => self.by_device.get(device).map_or(0, Vec::len),
            None => self.by_org.get(&w.org_id).map_or(0, Vec::len),
        }
    }
}

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

/// sled implementation of [`ConfigStore`].
pub struct SledConfig {
    db: sled::Db,
    orgs: sled::Tree,
    apps: sled::Tree,
    bound: sled::Tree,
    tokens: sled::Tree,
    device_tokens: sled::Tree,
    ingest_keys: sled::Tree,
    webhooks: sled::Tree,
    mirror: RwLock<Mirror>,
    /// Serialises writers so checks, sled and the mirror change in one order.
    write: tokio::sync::Mutex<()>,
    /// Configuration writes are refused inside the free-space reserve.
    health: crate::StoreHealth,
}

fn load<V: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    what: &'static str,
) -> Result<Vec<(sled::IVec, V)>, StoreError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        out.push((k, codec::decode(&v, what)?));
    }
    Ok(out)
}

impl SledConfig {
    pub(crate) fn open(db: &sled::Db, health: crate::StoreHealth) -> Result<Self, StoreError> {
        let s = Self {
            db: db.clone(),
            orgs: db.open_tree("orgs")?,
            apps: db.open_tree("apps")?,
            bound: db.open_tree("bound")?,
            tokens: db.open_tree("tokens")?,
            device_tokens: db.open_tree("device_tokens")?,
            ingest_keys: db.open_tree("ingest_keys")?,
            webhooks: db.open_tree("webhooks")?,
            mirror: RwLock::new(Mirror::default()),
            write: tokio::sync::Mutex::new(()),
            health,
        };
        let mut m = Mirror::default();
        for (_, o) in load::<Org>(&s.orgs, "org")? {
            m.orgs.insert(o.id.clone(), o);
        }
        for (k, org) in load::<OrgId>(&s.bound, "binding")? {
            let id = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt { what: "binding" })?;
            m.bound.insert(DeviceId(id), org);
        }
        for (_, a) in load::<App>(&s.apps, "app")? {
            // Apps from before tombstones existed get theirs now.
            if !m.bound.contains_key(&a.id) {
                s.bound.insert(a.id.as_str(), codec::encode(&a.org_id))?;
                m.bound.insert(a.id.clone(), a.org_id.clone());
            }
            m.apps.insert(a.id.clone(), a);
        }
        for (k, scope) in load::<TokenScope>(&s.tokens, "token")? {
            let hash = k
                .as_ref()
                .try_into()
                .map(TokenHash)
                .map_err(|_| StoreError::Corrupt { what: "token" })?;
            m.tokens.insert(hash, scope);
        }
        for (_, t) in load::<DeviceToken>(&s.device_tokens, "device token")? {
            m.device_tokens.insert(t.id.clone(), t);
        }
        for (_, k) in load::<IngestKey>(&s.ingest_keys, "ingest key")? {
            m.ingest_keys.insert(k.hash, k);
        }
        for item in s.webhooks.iter() {
            let (_, v) = item?;
            let (mut w, rewrite) = webhook_record::decode(&v)?;
            if rewrite || w.number == 0 {
                // Records of an earlier layout get their number now, once.
                w.number = s.next_number()?;
                s.webhooks
                    .insert(w.id.as_str(), webhook_record::encode(&w))?;
            }
            m.index_webhook(Arc::new(w));
        }
        s.db.flush()?;
        *s.mirror.write().unwrap_or_else(|p| p.into_inner()) = m;
        Ok(s)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mirror> {
        self.mirror.read().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Mirror)) {
        f(&mut self.mirror.write().unwrap_or_else(|p| p.into_inner()));
    }

    async fn durable(&self) -> Result<(), StoreError> {
        self.health
            .note(self.db.flush_async().await.map_err(StoreError::from))?;
        Ok(())
    }

    /// Every write starts here, under the writer lock: inside the free-space
    /// reserve it is refused before sled could hit a full disk.
    async fn writer(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, StoreError> {
        let guard = self.write.lock().await;
        self.health.check_space()?;
        Ok(guard)
    }

    /// A fresh webhook number: positive, never handed out twice.
    fn next_number(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?.saturating_add(1))
    }

    async fn store_webhook(&self, mut w: Webhook) -> Result<Arc<Webhook>, StoreError> {
        if w.number == 0 {
            w.number = self.next_number()?;
        }
        self.webhooks
            .insert(w.id.as_str(), webhook_record::encode(&w))?;
        self.durable().await?;
        let w = Arc::new(w);
        self.update(|m| m.index_webhook(w.clone()));
        Ok(w)
    }
}

impl ConfigStore for SledConfig {
    fn create_org(&self, org: Org, admin_key: TokenHash) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            let scope = TokenScope::Admin {
                org_id: org.id.clone(),
            };
            self.orgs.insert(org.id.as_str(), codec::encode(&org))?;
            self.tokens.insert(admin_key.0, codec::encode(&scope))?;
            self.durable().await?;
            self.update(|m| {
                m.tokens.insert(admin_key, scope);
                m.orgs.insert(org.id.clone(), org);
            });
            Ok(())
        })
    }

    fn org(&self, id: &OrgId) -> Option<Org> {
        self.read().orgs.get(id).cloned()
    }

    fn orgs(&self) -> Vec<Org> {
        let orgs = self.read().orgs.values().cloned().collect();
        oldest_first(orgs, |o: &Org| (o.created_at_ms, o.id.0.clone()))
    }

    fn create_app(&self, app: App, max_per_org: usize) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            {
                let m = self.read();
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
            }
            self.bound
                .insert(app.id.as_str(), codec::encode(&app.org_id))?;
            self.apps.insert(app.id.as_str(), codec::encode(&app))?;
            self.durable().await?;
            self.update(|m| {
                m.bound.insert(app.id.clone(), app.org_id.clone());
                m.apps.insert(app.id.clone(), app);
            });
            Ok(())
        })
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
        Box::pin(async move {
            let _w = self.writer().await?;
            let (webhooks, tokens, token_ids) = {
                let m = self.read();
                if !m.apps.contains_key(&id) {
                    return Err(StoreError::NotFound { what: "app" });
                }
                let webhooks: Vec<WebhookId> = m
                    .by_device
                    .get(&id)
                    .map(|l| l.iter().map(|w| w.id.clone()).collect())
                    .unwrap_or_default();
                let tokens: Vec<TokenHash> = m
                    .tokens
                    .iter()
                    .filter(|(_, s)| matches!(s, TokenScope::Device { device_id, .. } if device_id == &id))
                    .map(|(h, _)| *h)
                    .collect();
                let token_ids: Vec<String> = m
                    .device_tokens
                    .values()
                    .filter(|t| t.device_id == id)
                    .map(|t| t.id.clone())
                    .collect();
                (webhooks, tokens, token_ids)
            };
            for w in &webhooks {
                self.webhooks.remove(w.as_str())?;
            }
            for t in &tokens {
                self.tokens.remove(t.0)?;
            }
            for t in &token_ids {
                self.device_tokens.remove(t.as_str())?;
            }
            // The binding stays: a device id is never bound to another
            // organization once it was bound (docs/api.md, docs/security.md).
            self.apps.remove(id.as_str())?;
            self.durable().await?;
            self.update(|m| {
                for w in &webhooks {
                    m.unindex_webhook(w);
                }
                for t in &tokens {
                    m.tokens.remove(t);
                }
                for t in &token_ids {
                    m.device_tokens.remove(t);
                }
                m.by_device.remove(&id);
                m.apps.remove(&id);
            });
            Ok(())
        })
    }

    fn add_token(
        &self,
        token: DeviceToken,
        max_per_org: usize,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            {
                let m = self.read();
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
            }
            let scope = TokenScope::Device {
                org_id: token.org_id.clone(),
                device_id: token.device_id.clone(),
            };
            self.tokens.insert(token.hash.0, codec::encode(&scope))?;
            self.device_tokens
                .insert(token.id.as_str(), codec::encode(&token))?;
            self.durable().await?;
            self.update(|m| {
                m.tokens.insert(token.hash, scope);
                m.device_tokens.insert(token.id.clone(), token);
            });
            Ok(())
        })
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
        Box::pin(async move {
            let _w = self.writer().await?;
            let Some(t) = self
                .read()
                .device_tokens
                .get(id)
                .filter(|t| &t.device_id == device)
                .cloned()
            else {
                return Ok(false);
            };
            self.tokens.remove(t.hash.0)?;
            self.device_tokens.remove(t.id.as_str())?;
            self.durable().await?;
            self.update(|m| {
                m.tokens.remove(&t.hash);
                m.device_tokens.remove(&t.id);
            });
            Ok(true)
        })
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
        Box::pin(async move {
            let _w = self.writer().await?;
            {
                let m = self.read();
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
            }
            self.ingest_keys.insert(key.hash.0, codec::encode(&key))?;
            self.durable().await?;
            self.update(|m| {
                m.ingest_keys.insert(key.hash, key);
            });
            Ok(())
        })
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
        Box::pin(async move {
            let _w = self.writer().await?;
            let Some(hash) = self
                .read()
                .ingest_keys
                .values()
                .find(|k| k.id == id && &k.org_id == org)
                .map(|k| k.hash)
            else {
                return Ok(false);
            };
            self.ingest_keys.remove(hash.0)?;
            self.durable().await?;
            self.update(|m| {
                m.ingest_keys.remove(&hash);
            });
            Ok(true)
        })
    }

    fn ingest_key_org(&self, hash: &TokenHash) -> Option<OrgId> {
        self.read().ingest_keys.get(hash).map(|k| k.org_id.clone())
    }

    fn create_webhook(
        &self,
        webhook: Webhook,
        max_per_app: usize,
    ) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            {
                let m = self.read();
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
            }
            self.store_webhook(webhook).await
        })
    }

    fn put_webhook(&self, webhook: Webhook) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            self.store_webhook(webhook).await
        })
    }

    fn update_webhook<'a>(
        &'a self,
        id: &WebhookId,
        change: WebhookChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let _w = self.writer().await?;
            let Some(current) = self.read().webhooks.get(&id).cloned() else {
                return Ok(None);
            };
            let mut next = (*current).clone();
            if !change(&mut next) {
                return Ok(Some(current));
            }
            // Identity and ownership never change through an update.
            next.id = current.id.clone();
            next.org_id = current.org_id.clone();
            next.device_id = current.device_id.clone();
            next.scope = current.scope;
            next.number = current.number;
            self.store_webhook(next).await.map(Some)
        })
    }

    fn upsert_primary<'a>(
        &'a self,
        device: &'a DeviceId,
        max_per_app: usize,
        change: PrimaryChange<'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            let (current, count, app) = {
                let m = self.read();
                let list = m.by_device.get(device);
                let current = list.and_then(|l| l.iter().find(|w| w.primary).cloned());
                (
                    current,
                    list.map_or(0, Vec::len),
                    m.apps.get(device).cloned(),
                )
            };
            let Some(app) = app else {
                return Err(StoreError::NotFound { what: "app" });
            };
            if current.is_none() {
                room(count, max_per_app, "webhooks per app")?;
            }
            let Some(mut next) = change(current.as_deref()) else {
                return Ok(current);
            };
            next.primary = true;
            next.device_id = app.id;
            next.org_id = app.org_id;
            next.scope = hookrelay_core::WebhookScope::App;
            if let Some(c) = &current {
                next.id = c.id.clone();
                next.number = c.number;
            }
            self.store_webhook(next).await.map(Some)
        })
    }

    fn delete_webhook<'a>(
        &'a self,
        id: &'a WebhookId,
        owned: Box<dyn FnOnce(&Webhook) -> bool + Send + 'a>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let _w = self.writer().await?;
            let Some(current) = self.read().webhooks.get(id).cloned() else {
                return Ok(false);
            };
            if !owned(&current) {
                return Ok(false);
            }
            self.webhooks.remove(id.as_str())?;
            self.durable().await?;
            self.update(|m| {
                m.unindex_webhook(id);
            });
            Ok(true)
        })
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
        // Organization-wide webhooks reach a device while it is bound to
        // their organization, from its binding on.
        let (org_wide, bound_at_ms) = match m.apps.get(device) {
            Some(app) => (
                m.by_org.get(&app.org_id).cloned().unwrap_or_default(),
                app.created_at_ms,
            ),
            None => (Vec::new(), i64::MAX),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use hookrelay_core::{hash_token, RetryPolicy};

    fn webhook(id: &str, device: &str, at: i64) -> Webhook {
        Webhook {
            id: WebhookId::from(id),
            org_id: OrgId::from("org_1"),
            device_id: DeviceId::from(device),
            name: String::new(),
            url: "https://example.com".into(),
            events: vec!["*".into()],
            active: true,
            primary: false,
            retry_attempts: 3,
            timeout_secs: 10,
            retry_policy: RetryPolicy::default(),
            headers: Default::default(),
            secret: Some("s".into()),
            previous_secrets: Vec::new(),
            rate_limit: None,
            created_at_ms: at,
            updated_at_ms: at,
            failing_since_ms: None,
            scope: Default::default(),
            number: 0,
            event_names: Default::default(),
        }
    }

    fn org(id: &str) -> Org {
        Org {
            id: OrgId::from(id),
            name: "acme".into(),
            created_at_ms: 1,
        }
    }

    fn app(id: &str, org: &str) -> App {
        App {
            id: DeviceId::from(id),
            org_id: OrgId::from(org),
            name: "phone".into(),
            created_at_ms: 2,
        }
    }

    fn token(id: &str, secret: &str, device: &str, org: &str) -> DeviceToken {
        DeviceToken {
            id: id.into(),
            hash: hash_token(secret),
            name: String::new(),
            org_id: OrgId::from(org),
            device_id: DeviceId::from(device),
            created_at_ms: 3,
        }
    }

    #[tokio::test]
    async fn config_survives_reopen_and_deletes_cascade() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let c = &s.config;
            c.create_org(org("org_1"), hash_token("admin"))
                .await
                .expect("org");
            c.create_app(app("dev-1", "org_1"), 10).await.expect("app");
            assert!(matches!(
                c.create_app(app("dev-1", "org_1"), 10).await,
                Err(StoreError::Conflict { .. })
            ));
            c.add_token(token("tok_1", "tok", "dev-1", "org_1"), 10)
                .await
                .expect("token");
            c.create_webhook(webhook("wh_b", "dev-1", 5), 20)
                .await
                .expect("wh");
            c.create_webhook(webhook("wh_a", "dev-1", 4), 20)
                .await
                .expect("wh");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let c = &s.config;
        assert_eq!(c.org(&OrgId::from("org_1")), Some(org("org_1")));
        assert!(matches!(
            c.token_scope(&hash_token("admin")),
            Some(TokenScope::Admin { .. })
        ));
        assert!(c.token_scope(&hash_token("nope")).is_none());
        let dev = DeviceId::from("dev-1");
        let ids: Vec<_> = c.webhooks_of(&dev).iter().map(|w| w.id.0.clone()).collect();
        assert_eq!(ids, vec!["wh_a", "wh_b"]);
        assert_eq!(c.tokens_of(&dev).len(), 1);
        let any = || Box::new(|_: &Webhook| true);
        assert!(c
            .delete_webhook(&WebhookId::from("wh_a"), any())
            .await
            .expect("del"));
        assert!(!c
            .delete_webhook(&WebhookId::from("wh_a"), any())
            .await
            .expect("del"));
        c.delete_app(&dev).await.expect("delete app");
        assert!(c.webhooks_of(&dev).is_empty());
        assert!(c.webhook(&WebhookId::from("wh_b")).is_none());
        assert!(c.token_scope(&hash_token("tok")).is_none());
        assert!(c.tokens_of(&dev).is_empty());
        assert!(c.token_scope(&hash_token("admin")).is_some());
    }

    /// Webhooks of the earlier layout get a number once, kept across
    /// restarts; numbers are unique; organization-wide webhooks reach the
    /// organization's apps from their binding on, and no other app.
    #[tokio::test]
    async fn numbers_last_and_organization_wide_webhooks_reach_bound_apps() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let c = &s.config;
            c.create_org(org("org_1"), hash_token("a1"))
                .await
                .expect("org");
            c.create_org(org("org_2"), hash_token("a2"))
                .await
                .expect("org");
            c.create_app(app("dev-1", "org_1"), 10).await.expect("app");
            c.create_app(app("dev-2", "org_2"), 10).await.expect("app");
            s.db.open_tree("webhooks")
                .expect("tree")
                .insert(
                    "wh_old",
                    crate::webhook_record::tests::layout_1("wh_old", "org_1", "dev-1"),
                )
                .expect("insert");
        }
        let number = {
            let s = Store::open(dir.path()).expect("reopen");
            let old = s
                .config
                .webhook(&WebhookId::from("wh_old"))
                .expect("migrated");
            assert!(old.number > 0);
            assert_eq!(old.rate_limit, Some(5));
            let mut wide = webhook("wh_org", "", 9);
            wide.scope = hookrelay_core::WebhookScope::Organization;
            let wide = s.config.create_webhook(wide, 20).await.expect("org-wide");
            assert!(wide.number > 0 && wide.number != old.number);
            assert_eq!(
                s.config
                    .webhook_by_number(wide.number)
                    .map(|w| w.id.clone()),
                Some(wide.id.clone())
            );
            old.number
        };
        let s = Store::open(dir.path()).expect("reopen");
        let c = &s.config;
        let old = c.webhook(&WebhookId::from("wh_old")).expect("kept");
        assert_eq!(old.number, number);
        let ids =
            |s: crate::Subscribers, at| s.for_event(at).map(|w| w.id.0.clone()).collect::<Vec<_>>();
        let one = || c.subscribers(&DeviceId::from("dev-1"));
        assert_eq!(ids(one(), 2), vec!["wh_old", "wh_org"]);
        // Appended before the binding (at 2): the app's own webhook only.
        assert_eq!(ids(one(), 1), vec!["wh_old"]);
        assert!(ids(c.subscribers(&DeviceId::from("dev-2")), 5).is_empty());
        assert!(ids(c.subscribers(&DeviceId::from("unbound")), 5).is_empty());
        let wide = c.webhook(&WebhookId::from("wh_org")).expect("wide");
        let ev = |device: &str, ty: &str, data: &str| hookrelay_core::Event {
            id: "e".into(),
            device_id: device.into(),
            event_type: ty.into(),
            occurred_at_ms: 0,
            data: data.into(),
        };
        let msg = |device: &str| ev(device, "message.received", "{}");
        assert!(c.receives(&wide, &msg("dev-1"), 2));
        assert!(!c.receives(&wide, &msg("dev-1"), 1), "before the binding");
        assert!(
            !c.receives(&wide, &msg("dev-2"), 5),
            "another organization's"
        );
        let test_of = |id: &str| format!(r#"{{"webhook_id":"{id}"}}"#);
        assert!(c.receives(&wide, &ev("", "webhook.test", &test_of("wh_org")), 5));
        assert!(!c.receives(&wide, &ev("", "webhook.test", &test_of("wh_old")), 5));
        let old = c.webhook(&WebhookId::from("wh_old")).expect("old");
        assert!(!c.receives(&old, &ev("", "webhook.test", &test_of("wh_org")), 5));
        // Notices about organization-wide webhooks stay in their organization.
        assert!(c.receives(&wide, &ev("", "webhook.disabled", &test_of("wh_org")), 5));
        assert!(!c.receives(&wide, &ev("", "webhook.disabled", &test_of("wh_old")), 5));
        assert!(!c.receives(&old, &ev("", "webhook.disabled", &test_of("wh_org")), 5));
    }

    /// A deleted app's id is never bound again, to anyone, even after a restart.
    #[tokio::test]
    async fn a_deleted_apps_id_stays_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let c = &s.config;
            c.create_org(org("org_1"), hash_token("a1"))
                .await
                .expect("org");
            c.create_org(org("org_2"), hash_token("a2"))
                .await
                .expect("org");
            c.create_app(app("dev-1", "org_1"), 10).await.expect("app");
            c.delete_app(&DeviceId::from("dev-1")).await.expect("del");
            assert!(matches!(
                c.create_app(app("dev-1", "org_2"), 10).await,
                Err(StoreError::Conflict { .. })
            ));
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert!(matches!(
            s.config.create_app(app("dev-1", "org_1"), 10).await,
            Err(StoreError::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn limits_and_ownership_hold_in_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        let c = &s.config;
        c.create_org(org("org_1"), hash_token("a1"))
            .await
            .expect("org");
        c.create_app(app("d1", "org_1"), 2).await.expect("app");
        c.create_app(app("d2", "org_1"), 2).await.expect("app");
        assert!(matches!(
            c.create_app(app("d3", "org_1"), 2).await,
            Err(StoreError::Limit { .. })
        ));
        // No token for an app that is gone, or that another org owns.
        assert!(matches!(
            c.add_token(token("tok_x", "x", "gone", "org_1"), 10).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            c.add_token(token("tok_x", "x", "d1", "org_2"), 10).await,
            Err(StoreError::NotFound { .. })
        ));
        c.create_webhook(webhook("wh_1", "d1", 1), 1)
            .await
            .expect("wh");
        assert!(matches!(
            c.create_webhook(webhook("wh_2", "d1", 1), 1).await,
            Err(StoreError::Limit { .. })
        ));
        // Updates never resurrect a deleted webhook.
        let id = WebhookId::from("wh_1");
        assert!(c
            .delete_webhook(&id, Box::new(|_| true))
            .await
            .expect("del"));
        let after = c
            .update_webhook(
                &id,
                Box::new(|w| {
                    w.active = false;
                    true
                }),
            )
            .await
            .expect("update");
        assert!(after.is_none());
        assert!(c.webhook(&id).is_none());
        // Revocation and ingest keys.
        c.add_token(token("tok_1", "t1", "d1", "org_1"), 10)
            .await
            .expect("tok");
        assert!(!c
            .revoke_token(&DeviceId::from("d2"), "tok_1")
            .await
            .expect("revoke"));
        assert!(c
            .revoke_token(&DeviceId::from("d1"), "tok_1")
            .await
            .expect("revoke"));
        assert!(c.token_scope(&hash_token("t1")).is_none());
        let key = IngestKey {
            id: "ikid_1".into(),
            hash: hash_token("ik_1"),
            name: String::new(),
            org_id: OrgId::from("org_1"),
            created_at_ms: 1,
        };
        c.add_ingest_key(key, 5).await.expect("key");
        assert_eq!(
            c.ingest_key_org(&hash_token("ik_1")),
            Some(OrgId::from("org_1"))
        );
        assert!(!c
            .delete_ingest_key(&OrgId::from("org_2"), "ikid_1")
            .await
            .expect("del"));
        assert!(c
            .delete_ingest_key(&OrgId::from("org_1"), "ikid_1")
            .await
            .expect("del"));
        assert!(c.ingest_key_org(&hash_token("ik_1")).is_none());
    }
}
