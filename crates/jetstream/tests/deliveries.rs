//! Delivery state on JetStream against a real three-node cluster with R3:
//! the same checks as every delivery store, and a second node taking a
//! partition over finds its due index, leases and cursor.

use hookrelay_core::partition_seq;
use hookrelay_jetstream::testkit::Cluster;
use hookrelay_jetstream::{connect, open_deliveries, JetStreamConfig, JsDeliveries};
use hookrelay_store::{conformance, DeliveryStore, DeliveryWrite, DueEntry, DueKind};
use std::time::Duration;

fn config(c: &Cluster, ns: &str) -> JetStreamConfig {
    JetStreamConfig {
        urls: c.urls(),
        replicas: 3,
        partitions: 4,
        takeover: Duration::from_secs(10),
        retention: Duration::from_secs(3600),
        dedup_window: Duration::from_secs(3600),
        election_wait: Duration::from_secs(15),
        namespace: ns.into(),
        node_id: String::new(),
    }
}

async fn node(cfg: &JetStreamConfig) -> JsDeliveries {
    let (_client, js) = connect(cfg).await.expect("connect");
    open_deliveries(js, cfg).await.expect("open deliveries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_state_is_shared_and_taken_over() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "ds1");
    let a = node(&cfg).await;
    conformance::check_deliveries(&a, 2).await;
    // Another partition is untouched by all of it.
    assert_eq!(
        a.recovery_scan(1, i64::MIN..=i64::MAX)
            .await
            .expect("scan")
            .0,
        0
    );
    assert_eq!(a.cursor(1).await.expect("cursor"), 0);

    // A lease in flight on node a when it dies.
    let key = conformance::delivery(2, 20);
    a.apply(&[
        DeliveryWrite::Record(key.clone(), conformance::record(1)),
        DeliveryWrite::Due(DueEntry {
            at_ms: 900,
            key: key.clone(),
            kind: DueKind::Lease,
        }),
        DeliveryWrite::Cursor(partition_seq(2, 21)),
    ])
    .await
    .expect("apply");
    drop(a);

    // Node b takes partition 2 over: the due index, the lease to recover,
    // the records and the cursor are all there.
    let b = node(&cfg).await;
    let (count, leases) = b.recovery_scan(2, i64::MIN..=i64::MAX).await.expect("scan");
    assert_eq!(count, 3, "two entries left by the checks, and the lease");
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].key, key);
    assert_eq!(b.cursor(2).await.expect("cursor"), partition_seq(2, 21));
    assert_eq!(
        b.record(&key).await.expect("record"),
        Some(conformance::record(1))
    );
    let due = b.due(2, 1000, 10).await.expect("due");
    assert_eq!(due.len(), 3);
    assert!(due.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    // The new owner settles the recovered lease; a third node sees that.
    b.apply(&[DeliveryWrite::Undue(900, key.clone())])
        .await
        .expect("apply");
    let c3 = node(&cfg).await;
    assert_eq!(
        c3.recovery_scan(2, i64::MIN..=i64::MAX)
            .await
            .expect("scan")
            .0,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_partition_is_read_from_the_stream_not_from_memory() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "ds2");
    let a = node(&cfg).await;
    // Node a drives partition 2 and leaves a delivery waiting for a retry.
    a.recovery_scan(2, i64::MIN..=i64::MAX).await.expect("scan");
    let pending = conformance::delivery(2, 5);
    let settled = conformance::delivery(2, 6);
    a.apply(&[
        DeliveryWrite::Record(pending.clone(), conformance::record(1)),
        DeliveryWrite::Due(DueEntry {
            at_ms: 500,
            key: pending.clone(),
            kind: DueKind::Scheduled,
        }),
        // A delivery that failed for good: a record, no due entry.
        DeliveryWrite::Record(settled.clone(), conformance::record(3)),
        DeliveryWrite::Cursor(partition_seq(2, 4)),
    ])
    .await
    .expect("apply");

    // The partition moves to node b, which finds both records and settles
    // the pending one.
    a.release(2);
    let b = node(&cfg).await;
    assert_eq!(
        b.recovery_scan(2, i64::MIN..=i64::MAX)
            .await
            .expect("scan")
            .0,
        1
    );
    assert_eq!(
        b.record(&settled).await.expect("record"),
        Some(conformance::record(3))
    );
    let mut done = conformance::record(2);
    done.status = hookrelay_core::DeliveryStatus::Delivered;
    b.apply(&[
        DeliveryWrite::Record(pending.clone(), done.clone()),
        DeliveryWrite::Undue(500, pending.clone()),
    ])
    .await
    .expect("apply");
    // Deliveries that never had a record read as none on the owner.
    assert_eq!(
        b.record(&conformance::delivery(2, 7))
            .await
            .expect("record"),
        None
    );

    // Node a, no longer the owner, answers what the stream holds.
    assert_eq!(a.record(&pending).await.expect("record"), Some(done));
    assert!(a.due(2, 1000, 10).await.expect("due").is_empty());
}

/// The model-based check of every delivery store (random batches of writes
/// against a `BTreeMap` model), one generated run per partition; then a
/// second node, as one taking the partitions over, reads the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_state_behaves_as_the_model_and_a_new_node_reads_it() {
    use conformance::model;
    use proptest::strategy::{Strategy, ValueTree};
    let c = Cluster::start(3).await;
    let cfg = config(&c, "dsm");
    let a = node(&cfg).await;
    let mut runner = proptest::test_runner::TestRunner::default();
    let mut models = Vec::new();
    for p in 0..cfg.partitions {
        let batches = model::ops()
            .new_tree(&mut runner)
            .expect("generate")
            .current();
        eprintln!("partition {p}: {batches:?}");
        models.push(model::check_against_model(&a, p, &batches).await);
    }
    for p in 0..cfg.partitions {
        a.release(p);
    }
    let b = node(&cfg).await;
    for (p, m) in (0..cfg.partitions).zip(&models) {
        model::check_reads(&b, p, m, &format!("partition {p} on another node")).await;
    }
}
