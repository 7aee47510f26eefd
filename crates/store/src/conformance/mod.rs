//! What every [`EventLog`](crate::EventLog), [`ConfigStore`] and
//! [`DeliveryStore`] must do, as checks a backend's tests run against a
//! fresh store of theirs (`hookrelay-sled`'s on a temporary directory,
//! `hookrelay-jetstream`'s against a real cluster).

mod log;
pub mod model;

pub use log::check_log;

use crate::{App, ConfigStore, DeviceToken, IngestKey, Org, TokenScope};
use crate::{DeliveryStore, DeliveryWrite, DueEntry, DueKind, Recent, StoreError};
use hookrelay_core::{
    hash_token, partition_seq, Attempt, DeliveryKey, DeliveryRecord, DeliveryStatus, DeviceId,
    ErrorKind, Event, OrgId, Partition, RetryPolicy, Webhook, WebhookId, WebhookScope,
};

/// An app webhook of `device` in `org_1`, created at `at`.
pub fn webhook(id: &str, device: &str, at: i64) -> Webhook {
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

/// An organization.
pub fn org(id: &str) -> Org {
    Org {
        id: OrgId::from(id),
        name: "acme".into(),
        created_at_ms: 1,
    }
}

/// An app bound at 2.
pub fn app(id: &str, org: &str) -> App {
    App {
        id: DeviceId::from(id),
        org_id: OrgId::from(org),
        name: "phone".into(),
        created_at_ms: 2,
    }
}

/// A device token whose secret is `secret`.
pub fn token(id: &str, secret: &str, device: &str, org: &str) -> DeviceToken {
    DeviceToken {
        id: id.into(),
        hash: hash_token(secret),
        name: String::new(),
        org_id: OrgId::from(org),
        device_id: DeviceId::from(device),
        created_at_ms: 3,
    }
}

/// Runs every configuration check on `c`, a store with nothing in it.
pub async fn check_config(c: &dyn ConfigStore) {
    deletes_cascade_and_ids_stay_taken(c).await;
    limits_and_ownership_hold(c).await;
    numbers_are_unique_and_organization_wide_webhooks_reach_bound_apps(c).await;
}

async fn deletes_cascade_and_ids_stay_taken(c: &dyn ConfigStore) {
    c.create_org(org("org_1"), hash_token("admin"))
        .await
        .expect("org");
    c.create_org(org("org_2"), hash_token("admin2"))
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
    assert!(matches!(
        c.create_webhook(webhook("wh_a", "dev-1", 4), 20).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        c.token_scope(&hash_token("admin")),
        Some(TokenScope::Admin { .. })
    ));
    assert!(c.token_scope(&hash_token("nope")).is_none());
    let dev = DeviceId::from("dev-1");
    let ids: Vec<_> = c.webhooks_of(&dev).iter().map(|w| w.id.0.clone()).collect();
    assert_eq!(ids, vec!["wh_a", "wh_b"], "oldest first");
    assert_eq!(c.tokens_of(&dev).len(), 1);
    assert!(c
        .delete_webhook(&WebhookId::from("wh_a"), Box::new(|_| true))
        .await
        .expect("del"));
    assert!(!c
        .delete_webhook(&WebhookId::from("wh_a"), Box::new(|_| true))
        .await
        .expect("del"));
    c.delete_app(&dev).await.expect("delete app");
    assert!(c.app(&dev).is_none());
    assert!(c.webhooks_of(&dev).is_empty());
    assert!(c.webhook(&WebhookId::from("wh_b")).is_none());
    assert!(c.token_scope(&hash_token("tok")).is_none());
    assert!(c.tokens_of(&dev).is_empty());
    assert!(c.token_scope(&hash_token("admin")).is_some());
    // A deleted app's id is never bound again, to anyone.
    for o in ["org_1", "org_2"] {
        assert!(matches!(
            c.create_app(app("dev-1", o), 10).await,
            Err(StoreError::Conflict { .. })
        ));
    }
    assert!(matches!(
        c.delete_app(&dev).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn limits_and_ownership_hold(c: &dyn ConfigStore) {
    c.create_org(org("org_3"), hash_token("a3"))
        .await
        .expect("org");
    c.create_app(app("d1", "org_3"), 2).await.expect("app");
    c.create_app(app("d2", "org_3"), 2).await.expect("app");
    assert!(matches!(
        c.create_app(app("d3", "org_3"), 2).await,
        Err(StoreError::Limit { .. })
    ));
    assert!(matches!(
        c.create_app(app("d3", "org_9"), 2).await,
        Err(StoreError::NotFound { .. })
    ));
    // No token for an app that is gone, or that another org owns.
    assert!(matches!(
        c.add_token(token("tok_x", "x", "gone", "org_3"), 10).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        c.add_token(token("tok_x", "x", "d1", "org_2"), 10).await,
        Err(StoreError::NotFound { .. })
    ));
    let mut w1 = webhook("wh_1", "d1", 1);
    w1.org_id = OrgId::from("org_3");
    let created = c.create_webhook(w1, 1).await.expect("wh");
    let mut w2 = webhook("wh_2", "d1", 1);
    w2.org_id = OrgId::from("org_3");
    assert!(matches!(
        c.create_webhook(w2, 1).await,
        Err(StoreError::Limit { .. })
    ));
    // An update changes what it may, never identity or ownership.
    let id = WebhookId::from("wh_1");
    let updated = c
        .update_webhook(
            &id,
            Box::new(|w| {
                w.url = "https://example.com/2".into();
                w.device_id = DeviceId::from("d2");
                w.number = 999_999;
                true
            }),
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.url, "https://example.com/2");
    assert_eq!(updated.device_id, DeviceId::from("d1"));
    assert_eq!(updated.number, created.number);
    assert_eq!(
        c.webhook(&id).map(|w| w.url.clone()).as_deref(),
        Some("https://example.com/2")
    );
    // Updates never resurrect a deleted webhook.
    assert!(!c
        .delete_webhook(&id, Box::new(|_| false))
        .await
        .expect("not owned"));
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
    // Tokens per organization, revocation, ingest keys.
    c.add_token(token("tok_2", "t2", "d1", "org_3"), 2)
        .await
        .expect("tok");
    c.add_token(token("tok_3", "t3", "d2", "org_3"), 2)
        .await
        .expect("tok");
    assert!(matches!(
        c.add_token(token("tok_4", "t4", "d2", "org_3"), 2).await,
        Err(StoreError::Limit { .. })
    ));
    assert!(!c
        .revoke_token(&DeviceId::from("d2"), "tok_2")
        .await
        .expect("revoke"));
    assert!(c
        .revoke_token(&DeviceId::from("d1"), "tok_2")
        .await
        .expect("revoke"));
    assert!(c.token_scope(&hash_token("t2")).is_none());
    assert!(matches!(
        c.token_scope(&hash_token("t3")),
        Some(TokenScope::Device { device_id, .. }) if device_id == DeviceId::from("d2")
    ));
    let key = |id: &str, secret: &str| IngestKey {
        id: id.into(),
        hash: hash_token(secret),
        name: String::new(),
        org_id: OrgId::from("org_3"),
        created_at_ms: 1,
    };
    c.add_ingest_key(key("ikid_1", "ik_1"), 1)
        .await
        .expect("key");
    assert!(matches!(
        c.add_ingest_key(key("ikid_2", "ik_2"), 1).await,
        Err(StoreError::Limit { .. })
    ));
    assert_eq!(
        c.ingest_key_org(&hash_token("ik_1")),
        Some(OrgId::from("org_3"))
    );
    assert_eq!(c.ingest_keys_of(&OrgId::from("org_3")).len(), 1);
    assert!(!c
        .delete_ingest_key(&OrgId::from("org_2"), "ikid_1")
        .await
        .expect("del"));
    assert!(c
        .delete_ingest_key(&OrgId::from("org_3"), "ikid_1")
        .await
        .expect("del"));
    assert!(c.ingest_key_org(&hash_token("ik_1")).is_none());
    // The primary webhook: created once, then changed in place.
    let dev = DeviceId::from("d2");
    let first = c
        .upsert_primary(
            &dev,
            5,
            Box::new(|current| {
                assert!(current.is_none());
                Some(webhook("wh_p", "", 7))
            }),
        )
        .await
        .expect("primary")
        .expect("created");
    assert!(first.primary && first.number > 0);
    assert_eq!(first.org_id, OrgId::from("org_3"));
    let second = c
        .upsert_primary(
            &dev,
            5,
            Box::new(|current| {
                let mut w = current.expect("current").clone();
                w.url = "https://example.com/p".into();
                w.id = WebhookId::from("wh_other");
                Some(w)
            }),
        )
        .await
        .expect("primary")
        .expect("changed");
    assert_eq!((second.id.as_str(), second.number), ("wh_p", first.number));
    assert_eq!(c.webhooks_of(&dev).len(), 1);
    assert_eq!(c.apps_of(&OrgId::from("org_3")).len(), 2);
}

async fn numbers_are_unique_and_organization_wide_webhooks_reach_bound_apps(c: &dyn ConfigStore) {
    c.create_org(org("org_4"), hash_token("a4"))
        .await
        .expect("org");
    c.create_app(app("dev-4", "org_4"), 10).await.expect("app");
    let mut own = webhook("wh_own", "dev-4", 3);
    own.org_id = OrgId::from("org_4");
    let own = c.create_webhook(own, 20).await.expect("own");
    let mut wide = webhook("wh_org", "", 9);
    wide.org_id = OrgId::from("org_4");
    wide.scope = WebhookScope::Organization;
    let wide = c.create_webhook(wide, 20).await.expect("org-wide");
    assert!(own.number > 0 && wide.number > 0 && own.number != wide.number);
    for w in [&own, &wide] {
        assert_eq!(
            c.webhook_by_number(w.number).map(|x| x.id.clone()),
            Some(w.id.clone())
        );
    }
    assert_eq!(c.org_webhooks(&OrgId::from("org_4")).len(), 1);
    let ids =
        |s: crate::Subscribers, at| s.for_event(at).map(|w| w.id.0.clone()).collect::<Vec<_>>();
    let one = || c.subscribers(&DeviceId::from("dev-4"));
    assert_eq!(ids(one(), 2), vec!["wh_own", "wh_org"]);
    // Appended before the binding (at 2): no webhook of the organization,
    // the app's own included (a scheduler behind the log reads it late).
    assert!(ids(one(), 1).is_empty());
    assert!(ids(c.subscribers(&DeviceId::from("d1")), 5).is_empty());
    assert!(ids(c.subscribers(&DeviceId::from("unbound")), 5).is_empty());
    let ev = |device: &str, ty: &str, data: &str| Event {
        id: "e".into(),
        device_id: device.into(),
        event_type: ty.into(),
        occurred_at_ms: 0,
        data: data.into(),
    };
    let msg = |device: &str| ev(device, "message.received", "{}");
    assert!(c.receives(&wide, &msg("dev-4"), 2));
    assert!(!c.receives(&wide, &msg("dev-4"), 1), "before the binding");
    assert!(c.receives(&own, &msg("dev-4"), 2));
    assert!(!c.receives(&own, &msg("dev-4"), 1), "before the binding");
    assert!(!c.receives(&wide, &msg("d1"), 5), "another organization's");
    let test_of = |id: &str| format!(r#"{{"webhook_id":"{id}"}}"#);
    assert!(c.receives(&wide, &ev("", "webhook.test", &test_of("wh_org")), 5));
    assert!(!c.receives(&wide, &ev("", "webhook.test", &test_of("wh_own")), 5));
    assert!(!c.receives(&own, &ev("", "webhook.test", &test_of("wh_org")), 5));
    // Notices about organization-wide webhooks stay in their organization.
    assert!(c.receives(&wide, &ev("", "webhook.disabled", &test_of("wh_org")), 5));
    assert!(!c.receives(&own, &ev("", "webhook.disabled", &test_of("wh_org")), 5));
    // Replacing a webhook as given keeps its number.
    let mut again = (*wide).clone();
    again.number = 0;
    again.name = "renamed".into();
    let again = c.put_webhook(again).await.expect("put");
    assert_eq!(again.number, wide.number);
}

/// A delivery of event `n` of partition `p` to `wh_x`.
pub fn delivery(p: Partition, n: u64) -> DeliveryKey {
    DeliveryKey {
        seq: partition_seq(p, n),
        generation: 0,
        webhook_id: WebhookId::from("wh_x"),
    }
}

/// A pending record after `attempts` attempts.
pub fn record(attempts: u32) -> DeliveryRecord {
    DeliveryRecord {
        status: DeliveryStatus::Pending,
        attempts,
        next_attempt_ms: 50,
        last_status_code: Some(500),
        last_error: Some("http_5xx".into()),
        event_type: "message.received".into(),
        event_id: "evt_1".into(),
        created_at_ms: 1,
        updated_at_ms: 2,
    }
}

/// Attempt `n`, answered 500.
pub fn attempt(n: u32) -> Attempt {
    Attempt {
        attempt: n,
        started_at_ms: 1,
        duration_ms: 2,
        status_code: Some(500),
        error: Some(ErrorKind::Http5xx),
        response_body: Some("no".into()),
    }
}

fn due(at_ms: i64, key: DeliveryKey, kind: DueKind) -> DeliveryWrite {
    DeliveryWrite::Due(DueEntry { at_ms, key, kind })
}

/// Every lease, for [`DeliveryStore::recovery_scan`].
const ALL_TIME: std::ops::RangeInclusive<i64> = i64::MIN..=i64::MAX;

/// Runs every delivery-state check on `d`, empty in partition `p`.
pub async fn check_deliveries(d: &dyn DeliveryStore, p: Partition) {
    let key = |n| delivery(p, n);
    let seqs = |v: Vec<DueEntry>| v.into_iter().map(|e| e.key.seq).collect::<Vec<_>>();
    assert_eq!(d.cursor(p).await.expect("cursor"), 0);
    assert_eq!(
        d.recovery_scan(p, ALL_TIME).await.expect("scan"),
        (0, Vec::new())
    );
    d.apply(&[
        DeliveryWrite::Record(key(1), record(1)),
        due(300, key(1), DueKind::Scheduled),
        DeliveryWrite::Record(key(2), record(1)),
        due(100, key(2), DueKind::Lease),
        DeliveryWrite::Record(key(3), record(1)),
        due(200, key(3), DueKind::Scheduled),
        DeliveryWrite::Attempt(key(1), attempt(1)),
        DeliveryWrite::Attempt(key(1), attempt(2)),
        DeliveryWrite::Cursor(partition_seq(p, 7)),
    ])
    .await
    .expect("apply");
    assert_eq!(
        seqs(d.due(p, 250, 10).await.expect("due")),
        vec![key(2).seq, key(3).seq],
        "earliest first, up to the time asked"
    );
    assert_eq!(d.due(p, 1000, 1).await.expect("due").len(), 1);
    let (count, leases) = d.recovery_scan(p, ALL_TIME).await.expect("scan");
    assert_eq!(count, 3);
    assert_eq!(seqs(leases), vec![key(2).seq]);
    let (count, leases) = d.recovery_scan(p, 100..=100).await.expect("scan");
    assert_eq!((count, seqs(leases)), (3, vec![key(2).seq]));
    let (count, leases) = d.recovery_scan(p, 101..=1000).await.expect("scan");
    assert_eq!(count, 3, "the count is the whole index's");
    assert!(leases.is_empty(), "only leases due in the window");
    assert_eq!(d.record(&key(1)).await.expect("rec"), Some(record(1)));
    assert_eq!(d.record(&key(9)).await.expect("rec"), None);
    assert_eq!(
        d.attempts(&key(1)).await.expect("att"),
        vec![attempt(1), attempt(2)]
    );
    assert!(d.attempts(&key(9)).await.expect("att").is_empty());
    // A retry moves a delivery from its lease to a scheduled time, in one
    // batch with its new record.
    let mut moved = record(2);
    moved.next_attempt_ms = 400;
    d.apply(&[
        DeliveryWrite::Undue(100, key(2)),
        DeliveryWrite::Record(key(2), moved.clone()),
        due(400, key(2), DueKind::Scheduled),
        DeliveryWrite::Attempt(key(2), attempt(1)),
    ])
    .await
    .expect("apply");
    assert_eq!(d.record(&key(2)).await.expect("rec"), Some(moved));
    assert_eq!(
        seqs(d.due(p, 1000, 10).await.expect("due")),
        vec![key(3).seq, key(1).seq, key(2).seq]
    );
    // The tenants' shares start from the index counted per webhook.
    let by_webhook = d.due_by_webhook(p).await.expect("counts");
    assert_eq!(
        by_webhook.into_iter().collect::<Vec<_>>(),
        vec![(key(1).webhook_id, 3)]
    );
    // Every delivery with a record is listed, with or without attempts
    // (replayed and deferred ones have none yet).
    d.apply(&[
        DeliveryWrite::Record(key(4), record(0)),
        due(500, key(4), DueKind::Scheduled),
    ])
    .await
    .expect("apply");
    let wh = key(1).webhook_id;
    let all = d.webhook_deliveries(&wh, None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|k| k.seq).collect::<Vec<_>>(),
        vec![key(1).seq, key(2).seq, key(3).seq, key(4).seq]
    );
    assert_eq!(
        d.webhook_deliveries(&wh, None, 1)
            .await
            .expect("list")
            .len(),
        1
    );
    let next = d
        .webhook_deliveries(&wh, Some((key(1).seq, 0)), 10)
        .await
        .expect("list");
    assert_eq!(
        next.iter().map(|k| k.seq).collect::<Vec<_>>(),
        vec![key(2).seq, key(3).seq, key(4).seq]
    );
    assert!(d
        .webhook_deliveries(&WebhookId::from("wh_"), None, 10)
        .await
        .expect("list")
        .is_empty());
    // Newest first, and before a cursor.
    let newest = |before, max| d.webhook_deliveries_newest(&wh, before, max);
    let seqs_of = |v: Vec<DeliveryKey>| v.into_iter().map(|k| k.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs_of(newest(None, 10).await.expect("newest")),
        vec![key(4).seq, key(3).seq, key(2).seq, key(1).seq]
    );
    assert_eq!(
        seqs_of(newest(None, 1).await.expect("newest")),
        vec![key(4).seq]
    );
    assert_eq!(
        seqs_of(newest(Some((key(3).seq, 0)), 10).await.expect("newest")),
        vec![key(2).seq, key(1).seq],
        "the delivery two attempts were written for is listed once"
    );
    assert!(d
        .webhook_deliveries_newest(&WebhookId::from("wh_"), None, 10)
        .await
        .expect("newest")
        .is_empty());
    assert_eq!(d.cursor(p).await.expect("cursor"), partition_seq(p, 7));
    // Settled: no due entry left, the record stays readable.
    let mut done = record(3);
    done.status = DeliveryStatus::Delivered;
    d.apply(&[
        DeliveryWrite::Undue(300, key(1)),
        DeliveryWrite::Record(key(1), done.clone()),
        DeliveryWrite::Cursor(partition_seq(p, 9)),
    ])
    .await
    .expect("apply");
    assert_eq!(d.record(&key(1)).await.expect("rec"), Some(done));
    let (count, leases) = d.recovery_scan(p, ALL_TIME).await.expect("scan");
    assert_eq!(count, 3);
    assert!(leases.is_empty());
    assert_eq!(d.cursor(p).await.expect("cursor"), partition_seq(p, 9));
    // An entry written again counts once; removing one that is not there
    // changes nothing; a batch that adds and removes one is even.
    d.apply(&[
        due(500, key(4), DueKind::Scheduled),
        DeliveryWrite::Undue(999, key(9)),
        due(600, key(5), DueKind::Lease),
        DeliveryWrite::Undue(600, key(5)),
    ])
    .await
    .expect("apply");
    assert_eq!(d.recovery_scan(p, ALL_TIME).await.expect("scan").0, 3);
    d.apply(&[DeliveryWrite::Undue(200, key(3))])
        .await
        .expect("apply");
    assert_eq!(d.recovery_scan(p, ALL_TIME).await.expect("scan").0, 2);
    check_recent_attempts(d, p).await;
    a_record_written_after_its_due_entry_is_listed(d, p).await;
}

/// A delivery whose due entry came in one batch and its record in a later
/// one is listed like any delivery with a record (the model check found a
/// backend that listed only deliveries whose record came first).
async fn a_record_written_after_its_due_entry_is_listed(d: &dyn DeliveryStore, p: Partition) {
    let key = DeliveryKey {
        seq: partition_seq(p, 40),
        generation: 1,
        webhook_id: WebhookId::from("wh_late_record"),
    };
    d.apply(&[due(700, key.clone(), DueKind::Scheduled)])
        .await
        .expect("apply");
    assert!(d
        .webhook_deliveries(&key.webhook_id, None, 10)
        .await
        .expect("list")
        .is_empty());
    d.apply(&[DeliveryWrite::Record(key.clone(), record(0))])
        .await
        .expect("apply");
    assert_eq!(
        d.webhook_deliveries(&key.webhook_id, None, 10)
            .await
            .expect("list"),
        std::slice::from_ref(&key)
    );
    assert_eq!(
        d.webhook_deliveries_newest(&key.webhook_id, None, 10)
            .await
            .expect("list"),
        std::slice::from_ref(&key)
    );
    // Leaves the due index as the other checks left it.
    d.apply(&[DeliveryWrite::Undue(700, key)])
        .await
        .expect("apply");
}

/// A webhook's recent attempts, for its statistics: those of the window
/// only, and a bound that says it stopped short.
async fn check_recent_attempts(d: &dyn DeliveryStore, p: Partition) {
    let now = hookrelay_core::now_ms();
    let day = 86_400_000;
    let wh = WebhookId::from("wh_recent");
    let key = |n| DeliveryKey {
        seq: partition_seq(p, n),
        generation: 0,
        webhook_id: wh.clone(),
    };
    let at = |n, started_at_ms| Attempt {
        started_at_ms,
        ..attempt(n)
    };
    d.apply(&[
        DeliveryWrite::Attempt(key(1), at(1, now - 2 * day)),
        DeliveryWrite::Attempt(key(1), at(2, now - 1_000)),
        DeliveryWrite::Attempt(key(2), at(1, now - 500)),
    ])
    .await
    .expect("apply");
    let all = d
        .recent_attempts(&wh, now - day, 100)
        .await
        .expect("recent");
    let mut started: Vec<i64> = all.attempts.iter().map(|a| a.started_at_ms).collect();
    started.sort_unstable();
    assert_eq!(started, vec![now - 1_000, now - 500], "the window's only");
    assert!(!all.truncated);
    // Past the bound, the newest: the figures of a busy webhook cover its
    // latest hours.
    let one = d.recent_attempts(&wh, now - day, 1).await.expect("recent");
    assert!(one.truncated, "{one:?}");
    assert_eq!(
        one.attempts
            .iter()
            .map(|a| a.started_at_ms)
            .collect::<Vec<_>>(),
        vec![now - 500],
        "{one:?}"
    );
    assert_eq!(
        d.recent_attempts(&WebhookId::from("wh_none"), now - day, 100)
            .await
            .expect("recent"),
        Recent::default()
    );
}
