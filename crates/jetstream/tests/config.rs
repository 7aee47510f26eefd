//! Configuration on JetStream against a real three-node cluster with R3:
//! the same checks as every config store, changes seen by every node, and
//! rules that hold when two nodes write at once.

use hookrelay_core::{hash_token, DeviceId, OrgId, WebhookId};
use hookrelay_jetstream::testkit::Cluster;
use hookrelay_jetstream::{connect, open_config, JetStreamConfig, JsConfig};
use hookrelay_store::{
    conformance::{self, app, org, webhook},
    ConfigStore, StoreError,
};
use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

fn config(c: &Cluster, ns: &str, first: usize) -> JetStreamConfig {
    // Each node prefers another server, as nodes spread over a cluster do.
    let mut urls = c.urls();
    let n = urls.len();
    urls.rotate_left(first % n);
    JetStreamConfig {
        urls,
        replicas: 3,
        partitions: 1,
        takeover: Duration::from_secs(10),
        retention: Duration::from_secs(3600),
        dedup_window: Duration::from_secs(3600),
        election_wait: Duration::from_secs(15),
        namespace: ns.into(),
        node_id: String::new(),
    }
}

async fn node(c: &Cluster, ns: &str, i: usize) -> Arc<JsConfig> {
    let cfg = config(c, ns, i);
    let (_client, js) = connect(&cfg).await.expect("connect");
    Arc::new(open_config(js, &cfg).await.expect("open config"))
}

/// Waits until `done` holds on `c`, at most `within`; how long it took.
async fn seen_within(within: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not seen within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_sees_every_change_and_the_rules_hold_across_nodes() {
    let c = Cluster::start(3).await;
    let a = node(&c, "cfg1", 0).await;
    conformance::check_config(&*a).await;

    // A node that starts later loads everything the first one wrote.
    let b = node(&c, "cfg1", 1).await;
    assert_eq!(b.orgs(), a.orgs());
    assert_eq!(
        b.apps_of(&OrgId::from("org_3")),
        a.apps_of(&OrgId::from("org_3"))
    );
    assert!(
        b.app(&DeviceId::from("dev-1")).is_none(),
        "deleted stays deleted"
    );
    assert!(matches!(
        b.create_app(app("dev-1", "org_2"), 10).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        b.token_scope(&hash_token("t3")),
        a.token_scope(&hash_token("t3"))
    );

    // A change on one node reaches the other within a second, both ways.
    let wh = WebhookId::from("wh_org");
    b.update_webhook(
        &wh,
        Box::new(|w| {
            w.active = false;
            true
        }),
    )
    .await
    .expect("update")
    .expect("exists");
    let took = seen_within(Duration::from_secs(1), || {
        a.webhook(&wh).is_some_and(|w| !w.active)
    })
    .await;
    eprintln!("a change on node b reached node a in {took:?}");
    b.add_token(conformance::token("tok_9", "t9", "d1", "org_3"), 100)
        .await
        .expect("token");
    seen_within(Duration::from_secs(1), || {
        a.token_scope(&hash_token("t9")).is_some()
    })
    .await;
    a.revoke_token(&DeviceId::from("d1"), "tok_9")
        .await
        .expect("revoke");
    seen_within(Duration::from_secs(1), || {
        b.token_scope(&hash_token("t9")).is_none()
    })
    .await;

    // Two nodes racing for the last places under a limit: the limit holds,
    // and every webhook gets a number no other has.
    a.create_org(org("org_race"), hash_token("race"))
        .await
        .expect("org");
    seen_within(Duration::from_secs(1), || {
        b.org(&OrgId::from("org_race")).is_some()
    })
    .await;
    let mut tasks = Vec::new();
    for (n, cfg) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut made = 0;
            for i in 0..6 {
                match cfg
                    .create_app(app(&format!("race-{n}-{i}"), "org_race"), 5)
                    .await
                {
                    Ok(()) => made += 1,
                    Err(StoreError::Limit { .. }) => {}
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            made
        }));
    }
    let mut made = 0;
    for t in tasks {
        made += t.await.expect("task");
    }
    assert_eq!(made, 5, "exactly the limit of apps, across both nodes");
    seen_within(Duration::from_secs(1), || {
        a.apps_of(&OrgId::from("org_race")).len() == 5
            && b.apps_of(&OrgId::from("org_race")).len() == 5
    })
    .await;
    let device = a.apps_of(&OrgId::from("org_race"))[0].id.clone();
    let mut tasks = Vec::new();
    for (n, cfg) in [a.clone(), b.clone()].into_iter().enumerate() {
        let device = device.clone();
        tasks.push(tokio::spawn(async move {
            let mut numbers = Vec::new();
            for i in 0..5 {
                let mut w = webhook(&format!("wh_race_{n}_{i}"), device.as_str(), 1);
                w.org_id = OrgId::from("org_race");
                numbers.push(cfg.create_webhook(w, 100).await.expect("webhook").number);
            }
            numbers
        }));
    }
    let mut numbers = HashSet::new();
    for t in tasks {
        for n in t.await.expect("task") {
            assert!(numbers.insert(n), "number {n} handed out twice");
        }
    }
    seen_within(Duration::from_secs(1), || {
        a.webhooks_of(&device).len() == 10 && b.webhooks_of(&device).len() == 10
    })
    .await;
}

/// What configuration writes rely on when they resend after a lost answer:
/// a stream answers a message id it has seen with the first copy's
/// sequence (a duplicate) before it checks the expected last sequence, so
/// a resend cannot be taken for another node's conflicting write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_message_is_a_duplicate_before_its_expected_sequence_is_checked() {
    use async_nats::jetstream::{self, message::PublishMessage};
    let c = Cluster::start(3).await;
    let cfg = config(&c, "cfgdup", 0);
    let (_client, js) = connect(&cfg).await.expect("connect");
    // Opening a store waits for the cluster to take streams.
    let _ready = open_config(js.clone(), &cfg).await.expect("open config");
    js.create_stream(jetstream::stream::Config {
        name: "DUPCHECK".into(),
        subjects: vec!["dupcheck.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .expect("stream");
    let send = |id: &'static str, expected: u64| {
        let js = js.clone();
        async move {
            js.send_publish(
                "dupcheck.a",
                PublishMessage::build()
                    .payload("x".into())
                    .message_id(id)
                    .expected_last_sequence(expected),
            )
            .await
            .expect("sent")
            .await
        }
    };
    // A stream just made may not be heard on every server yet.
    let started = Instant::now();
    let first = loop {
        match send("write-1", 0).await {
            Err(e)
                if e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound
                    && started.elapsed() < Duration::from_secs(5) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => break r.expect("first write"),
        }
    };
    assert_eq!(first.sequence, 1);
    let resent = send("write-1", 0).await.expect("a resend is answered");
    assert!(resent.duplicate);
    assert_eq!(resent.sequence, 1);
    // Another write that expected the same sequence conflicts.
    let other = send("write-2", 0).await.expect_err("a conflict");
    assert_eq!(
        other.kind(),
        async_nats::jetstream::context::PublishErrorKind::WrongLastSequence
    );
}
