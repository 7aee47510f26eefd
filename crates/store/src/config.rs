//! Configuration: organizations, apps, hashed tokens and webhooks.
//!
//! Everything is mirrored in memory and written through to sled, then
//! flushed before the write returns: configuration changes are rare and must
//! survive a crash once answered. Readers always see the mirror, so a change is
//! visible to the very next fan-out and attempt (invariant 5).

use crate::{codec, BoxFuture, StoreError};
use hookrelay_core::{DeviceId, OrgId, TokenHash, Webhook, WebhookId};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

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
    /// Creation time, unix ms.
    pub created_at_ms: i64,
}

/// What a token may manage.
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

/// Configuration storage.
pub trait ConfigStore: Send + Sync + 'static {
    /// Creates an organization with its first admin key hash.
    fn create_org(&self, org: Org, admin_key: TokenHash) -> BoxFuture<'_, Result<(), StoreError>>;
    /// An organization by id.
    fn org(&self, id: &OrgId) -> Option<Org>;
    /// Creates an app; [`StoreError::Conflict`] if the id is taken.
    fn create_app(&self, app: App) -> BoxFuture<'_, Result<(), StoreError>>;
    /// An app by id.
    fn app(&self, id: &DeviceId) -> Option<App>;
    /// An organization's apps, oldest first.
    fn apps_of(&self, org: &OrgId) -> Vec<App>;
    /// Deletes an app with its tokens and webhooks.
    fn delete_app(&self, id: &DeviceId) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Stores a token hash with its scope.
    fn add_token(
        &self,
        hash: TokenHash,
        scope: TokenScope,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The scope of a presented token's hash.
    fn token_scope(&self, hash: &TokenHash) -> Option<TokenScope>;
    /// Creates or replaces a webhook.
    fn put_webhook(&self, webhook: Webhook) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>>;
    /// Changes a webhook atomically (read, `change`, write under the writer
    /// lock, so a concurrent change is never lost). `change` returns whether
    /// it changed anything; the result is the stored webhook, if any.
    fn update_webhook<'a>(
        &'a self,
        id: &WebhookId,
        change: Box<dyn FnOnce(&mut Webhook) -> bool + Send + 'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>>;
    /// Deletes a webhook; `false` if it did not exist.
    fn delete_webhook(&self, id: &WebhookId) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// A webhook by id.
    fn webhook(&self, id: &WebhookId) -> Option<Arc<Webhook>>;
    /// A device's webhooks, oldest first.
    fn webhooks_of(&self, device: &DeviceId) -> Vec<Arc<Webhook>>;
}

#[derive(Default)]
struct Mirror {
    orgs: HashMap<OrgId, Org>,
    apps: HashMap<DeviceId, App>,
    tokens: HashMap<TokenHash, TokenScope>,
    webhooks: HashMap<WebhookId, Arc<Webhook>>,
    by_device: HashMap<DeviceId, Vec<Arc<Webhook>>>,
}

impl Mirror {
    fn index_webhook(&mut self, w: Arc<Webhook>) {
        let list = self.by_device.entry(w.device_id.clone()).or_default();
        list.retain(|x| x.id != w.id);
        list.push(w.clone());
        list.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        self.webhooks.insert(w.id.clone(), w);
    }

    fn unindex_webhook(&mut self, id: &WebhookId) -> Option<Arc<Webhook>> {
        let w = self.webhooks.remove(id)?;
        if let Some(list) = self.by_device.get_mut(&w.device_id) {
            list.retain(|x| &x.id != id);
        }
        Some(w)
    }
}

/// sled implementation of [`ConfigStore`].
pub struct SledConfig {
    db: sled::Db,
    orgs: sled::Tree,
    apps: sled::Tree,
    tokens: sled::Tree,
    webhooks: sled::Tree,
    mirror: RwLock<Mirror>,
    /// Serialises writers so sled and the mirror change in the same order.
    write: tokio::sync::Mutex<()>,
}

fn load<K, V>(
    tree: &sled::Tree,
    what: &'static str,
    key: impl Fn(&[u8], &V) -> Option<K>,
) -> Result<Vec<(K, V)>, StoreError>
where
    V: serde::de::DeserializeOwned,
{
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        let v: V = codec::decode(&v, what)?;
        let k = key(&k, &v).ok_or(StoreError::Corrupt { what })?;
        out.push((k, v));
    }
    Ok(out)
}

impl SledConfig {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let s = Self {
            db: db.clone(),
            orgs: db.open_tree("orgs")?,
            apps: db.open_tree("apps")?,
            tokens: db.open_tree("tokens")?,
            webhooks: db.open_tree("webhooks")?,
            mirror: RwLock::new(Mirror::default()),
            write: tokio::sync::Mutex::new(()),
        };
        let mut m = Mirror::default();
        for (k, v) in load(&s.orgs, "org", |_, o: &Org| Some(o.id.clone()))? {
            m.orgs.insert(k, v);
        }
        for (k, v) in load(&s.apps, "app", |_, a: &App| Some(a.id.clone()))? {
            m.apps.insert(k, v);
        }
        let token_key = |k: &[u8], _: &TokenScope| k.try_into().ok().map(TokenHash);
        for (k, v) in load(&s.tokens, "token", token_key)? {
            m.tokens.insert(k, v);
        }
        for (_, w) in load(&s.webhooks, "webhook", |_, w: &Webhook| Some(w.id.clone()))? {
            m.index_webhook(Arc::new(w));
        }
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
        self.db.flush_async().await?;
        Ok(())
    }
}

impl ConfigStore for SledConfig {
    fn create_org(&self, org: Org, admin_key: TokenHash) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.write.lock().await;
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

    fn create_app(&self, app: App) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.write.lock().await;
            if self.read().apps.contains_key(&app.id) {
                return Err(StoreError::Conflict { what: "app" });
            }
            self.apps.insert(app.id.as_str(), codec::encode(&app))?;
            self.durable().await?;
            self.update(|m| {
                m.apps.insert(app.id.clone(), app);
            });
            Ok(())
        })
    }

    fn app(&self, id: &DeviceId) -> Option<App> {
        self.read().apps.get(id).cloned()
    }

    fn apps_of(&self, org: &OrgId) -> Vec<App> {
        let mut apps: Vec<App> = self
            .read()
            .apps
            .values()
            .filter(|a| &a.org_id == org)
            .cloned()
            .collect();
        apps.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        apps
    }

    fn delete_app(&self, id: &DeviceId) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let _w = self.write.lock().await;
            let (webhooks, tokens): (Vec<WebhookId>, Vec<TokenHash>) = {
                let m = self.read();
                if !m.apps.contains_key(&id) {
                    return Err(StoreError::NotFound { what: "app" });
                }
                let webhooks = m
                    .by_device
                    .get(&id)
                    .map(|l| l.iter().map(|w| w.id.clone()).collect())
                    .unwrap_or_default();
                let tokens = m
                    .tokens
                    .iter()
                    .filter(|(_, s)| matches!(s, TokenScope::Device { device_id, .. } if device_id == &id))
                    .map(|(h, _)| *h)
                    .collect();
                (webhooks, tokens)
            };
            for w in &webhooks {
                self.webhooks.remove(w.as_str())?;
            }
            for t in &tokens {
                self.tokens.remove(t.0)?;
            }
            self.apps.remove(id.as_str())?;
            self.durable().await?;
            self.update(|m| {
                for w in &webhooks {
                    m.unindex_webhook(w);
                }
                for t in &tokens {
                    m.tokens.remove(t);
                }
                m.by_device.remove(&id);
                m.apps.remove(&id);
            });
            Ok(())
        })
    }

    fn add_token(
        &self,
        hash: TokenHash,
        scope: TokenScope,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let _w = self.write.lock().await;
            self.tokens.insert(hash.0, codec::encode(&scope))?;
            self.durable().await?;
            self.update(|m| {
                m.tokens.insert(hash, scope);
            });
            Ok(())
        })
    }

    fn token_scope(&self, hash: &TokenHash) -> Option<TokenScope> {
        // The map is keyed by SHA-256 of the token: equality on the hash leaks
        // nothing usable about the token itself.
        self.read().tokens.get(hash).cloned()
    }

    fn put_webhook(&self, webhook: Webhook) -> BoxFuture<'_, Result<Arc<Webhook>, StoreError>> {
        Box::pin(async move {
            let _w = self.write.lock().await;
            self.webhooks
                .insert(webhook.id.as_str(), codec::encode(&webhook))?;
            self.durable().await?;
            let w = Arc::new(webhook);
            self.update(|m| m.index_webhook(w.clone()));
            Ok(w)
        })
    }

    fn update_webhook<'a>(
        &'a self,
        id: &WebhookId,
        change: Box<dyn FnOnce(&mut Webhook) -> bool + Send + 'a>,
    ) -> BoxFuture<'a, Result<Option<Arc<Webhook>>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let _w = self.write.lock().await;
            let Some(current) = self.read().webhooks.get(&id).cloned() else {
                return Ok(None);
            };
            let mut next = (*current).clone();
            if !change(&mut next) {
                return Ok(Some(current));
            }
            self.webhooks
                .insert(next.id.as_str(), codec::encode(&next))?;
            self.durable().await?;
            let w = Arc::new(next);
            self.update(|m| m.index_webhook(w.clone()));
            Ok(Some(w))
        })
    }

    fn delete_webhook(&self, id: &WebhookId) -> BoxFuture<'_, Result<bool, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let _w = self.write.lock().await;
            let existed = self.webhooks.remove(id.as_str())?.is_some();
            if existed {
                self.durable().await?;
                self.update(|m| {
                    m.unindex_webhook(&id);
                });
            }
            Ok(existed)
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
            previous_secret: None,
            rate_limit: None,
            created_at_ms: at,
            updated_at_ms: at,
            failing_since_ms: None,
        }
    }

    #[tokio::test]
    async fn config_survives_reopen_and_deletes_cascade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let org = Org {
            id: OrgId::from("org_1"),
            name: "acme".into(),
            created_at_ms: 1,
        };
        let app = App {
            id: DeviceId::from("dev-1"),
            org_id: org.id.clone(),
            name: "phone".into(),
            created_at_ms: 2,
        };
        {
            let s = Store::open(dir.path()).expect("open");
            let c = &s.config;
            c.create_org(org.clone(), hash_token("admin"))
                .await
                .expect("org");
            c.create_app(app.clone()).await.expect("app");
            assert!(matches!(
                c.create_app(app.clone()).await,
                Err(StoreError::Conflict { .. })
            ));
            let scope = TokenScope::Device {
                org_id: org.id.clone(),
                device_id: app.id.clone(),
            };
            c.add_token(hash_token("tok"), scope).await.expect("token");
            c.put_webhook(webhook("wh_b", "dev-1", 5))
                .await
                .expect("wh");
            c.put_webhook(webhook("wh_a", "dev-1", 4))
                .await
                .expect("wh");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let c = &s.config;
        assert_eq!(c.org(&org.id), Some(org.clone()));
        assert!(matches!(
            c.token_scope(&hash_token("admin")),
            Some(TokenScope::Admin { .. })
        ));
        assert!(c.token_scope(&hash_token("nope")).is_none());
        let ids: Vec<_> = c
            .webhooks_of(&app.id)
            .iter()
            .map(|w| w.id.0.clone())
            .collect();
        assert_eq!(ids, vec!["wh_a", "wh_b"]);
        assert_eq!(c.apps_of(&org.id), vec![app.clone()]);
        assert!(c
            .delete_webhook(&WebhookId::from("wh_a"))
            .await
            .expect("del"));
        assert!(!c
            .delete_webhook(&WebhookId::from("wh_a"))
            .await
            .expect("del"));
        c.delete_app(&app.id).await.expect("delete app");
        assert!(c.webhooks_of(&app.id).is_empty());
        assert!(c.webhook(&WebhookId::from("wh_b")).is_none());
        assert!(c.token_scope(&hash_token("tok")).is_none());
        assert!(c.token_scope(&hash_token("admin")).is_some());
    }
}
