//! sled keeps the configuration: one tree per kind of record, mirrored in
//! memory, each write flushed before it returns (configuration changes are
//! rare and must survive a crash once answered). The rules of a write are
//! checked by [`CheckedConfig`] under its writer lock; this node is the
//! only writer, so a commit is never stale.

use crate::{webhook_record, OrIo};
use hookrelay_core::{DeviceId, OrgId, TokenHash};
use hookrelay_store::{
    codec, App, BoxFuture, CheckedConfig, ConfigChange, ConfigLog, ConfigMirror, ConfigVersion,
    DeviceToken, IngestKey, Org, SharedMirror, StoreError, TokenScope,
};
use std::sync::Arc;

/// The configuration of a sled data directory.
pub(crate) type SledConfig = CheckedConfig<SledConfigLog>;

/// sled's configuration trees and their mirror.
pub struct SledConfigLog {
    db: sled::Db,
    orgs: sled::Tree,
    apps: sled::Tree,
    bound: sled::Tree,
    tokens: sled::Tree,
    device_tokens: sled::Tree,
    ingest_keys: sled::Tree,
    webhooks: sled::Tree,
    mirror: SharedMirror,
    /// Configuration writes are refused inside the free-space reserve.
    health: crate::Health,
}

fn load<V: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    what: &'static str,
) -> Result<Vec<(sled::IVec, V)>, StoreError> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.io()?;
        out.push((k, codec::decode(&v, what)?));
    }
    Ok(out)
}

impl SledConfigLog {
    pub(crate) fn open(db: &sled::Db, health: crate::Health) -> Result<Self, StoreError> {
        let s = Self {
            db: db.clone(),
            orgs: db.open_tree("orgs").io()?,
            apps: db.open_tree("apps").io()?,
            bound: db.open_tree("bound").io()?,
            tokens: db.open_tree("tokens").io()?,
            device_tokens: db.open_tree("device_tokens").io()?,
            ingest_keys: db.open_tree("ingest_keys").io()?,
            webhooks: db.open_tree("webhooks").io()?,
            mirror: SharedMirror::default(),
            health,
        };
        let mut m = ConfigMirror::default();
        for (_, o) in load::<Org>(&s.orgs, "org")? {
            m.apply(ConfigChange::PutOrg(o));
        }
        for (k, org) in load::<OrgId>(&s.bound, "binding")? {
            let id = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt { what: "binding" })?;
            m.apply(ConfigChange::Bind {
                device: DeviceId(id),
                org,
            });
        }
        for (_, a) in load::<App>(&s.apps, "app")? {
            // Apps from before tombstones existed get theirs now.
            if m.organization_of(&a.id).is_none() {
                s.bound
                    .insert(a.id.as_str(), codec::encode(&a.org_id))
                    .io()?;
                m.apply(ConfigChange::Bind {
                    device: a.id.clone(),
                    org: a.org_id.clone(),
                });
            }
            m.apply(ConfigChange::PutApp(a));
        }
        for (k, scope) in load::<TokenScope>(&s.tokens, "token")? {
            let hash = k
                .as_ref()
                .try_into()
                .map(TokenHash)
                .map_err(|_| StoreError::Corrupt { what: "token" })?;
            m.apply(ConfigChange::PutToken { hash, scope });
        }
        for (_, t) in load::<DeviceToken>(&s.device_tokens, "device token")? {
            m.apply(ConfigChange::PutDeviceToken(t));
        }
        for (_, k) in load::<IngestKey>(&s.ingest_keys, "ingest key")? {
            m.apply(ConfigChange::PutIngestKey(k));
        }
        for item in s.webhooks.iter() {
            let (_, v) = item.io()?;
            let (mut w, rewrite) = webhook_record::decode(&v)?;
            if rewrite || w.number == 0 {
                // Records of an earlier layout get their number now, once.
                w.number = s.next_number(0)?;
                s.webhooks
                    .insert(w.id.as_str(), webhook_record::encode(&w))
                    .io()?;
            }
            m.apply(ConfigChange::PutWebhook(Arc::new(w)));
        }
        s.db.flush().io()?;
        s.mirror.update(|current| *current = m);
        Ok(s)
    }

    fn write(&self, change: &ConfigChange) -> Result<(), StoreError> {
        use ConfigChange as C;
        match change {
            C::PutOrg(o) => self.orgs.insert(o.id.as_str(), codec::encode(o)),
            C::Bind { device, org } => self.bound.insert(device.as_str(), codec::encode(org)),
            C::PutApp(a) => self.apps.insert(a.id.as_str(), codec::encode(a)),
            C::DeleteApp(id) => self.apps.remove(id.as_str()),
            C::PutToken { hash, scope } => self.tokens.insert(hash.0, codec::encode(scope)),
            C::DeleteToken(hash) => self.tokens.remove(hash.0),
            C::PutDeviceToken(t) => self.device_tokens.insert(t.id.as_str(), codec::encode(t)),
            C::DeleteDeviceToken(id) => self.device_tokens.remove(id.as_str()),
            C::PutIngestKey(k) => self.ingest_keys.insert(k.hash.0, codec::encode(k)),
            C::DeleteIngestKey(hash) => self.ingest_keys.remove(hash.0),
            C::PutWebhook(w) => self
                .webhooks
                .insert(w.id.as_str(), webhook_record::encode(w)),
            C::DeleteWebhook(id) => self.webhooks.remove(id.as_str()),
        }
        .io()?;
        Ok(())
    }
}

impl ConfigLog for SledConfigLog {
    fn mirror(&self) -> &SharedMirror {
        &self.mirror
    }

    fn sync(&self) -> BoxFuture<'_, Result<ConfigVersion, StoreError>> {
        // The only writer is this node, behind CheckedConfig's lock.
        Box::pin(async { Ok(0) })
    }

    fn next_number(&self, _: ConfigVersion) -> Result<u64, StoreError> {
        Ok(self.db.generate_id().io()?.saturating_add(1))
    }

    fn commit(
        &self,
        _: ConfigVersion,
        changes: Vec<ConfigChange>,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // Inside the free-space reserve, refused before sled could hit
            // a full disk.
            self.health.check_space()?;
            for c in &changes {
                self.write(c)?;
            }
            self.health.note(crate::flush_db(&self.db).await)?;
            self.mirror.apply(changes);
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use hookrelay_core::{hash_token, WebhookId};
    use hookrelay_store::{
        conformance::{app, org, token, webhook},
        ConfigStore, TokenScope,
    };

    #[tokio::test]
    async fn config_survives_reopen() {
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
        let s = crate::reopen(dir.path());
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
            let s = crate::reopen(dir.path());
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
        let s = crate::reopen(dir.path());
        let c = &s.config;
        let old = c.webhook(&WebhookId::from("wh_old")).expect("kept");
        assert_eq!(old.number, number);
        let ids = |s: hookrelay_store::Subscribers, at| {
            s.for_event(at).map(|w| w.id.0.clone()).collect::<Vec<_>>()
        };
        let one = || c.subscribers(&DeviceId::from("dev-1"));
        assert_eq!(ids(one(), 2), vec!["wh_old", "wh_org"]);
        // Appended before the binding (at 2): no webhook of the organization.
        assert!(ids(one(), 1).is_empty());
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
        let s = crate::reopen(dir.path());
        assert!(matches!(
            s.config.create_app(app("dev-1", "org_1"), 10).await,
            Err(StoreError::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn passes_the_config_store_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path()).expect("open");
        hookrelay_store::conformance::check_config(&*s.config).await;
    }
}
