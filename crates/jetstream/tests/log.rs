//! The JetStream event log against a real three-node cluster with R3.

use futures_util::TryStreamExt;
use hookrelay_core::{partition_of, seq_partition, Event};
use hookrelay_jetstream::testkit::Cluster;
use hookrelay_jetstream::{connect, open_log, JetStreamConfig, JsLog};
use hookrelay_store::{Appended, EventLog};
use std::time::Duration;

fn config(c: &Cluster, ns: &str, partitions: u32) -> JetStreamConfig {
    JetStreamConfig {
        urls: c.urls(),
        replicas: 3,
        partitions,
        takeover: Duration::from_secs(10),
        retention: Duration::from_secs(3600),
        dedup_window: Duration::from_secs(3600),
        election_wait: Duration::from_secs(15),
        namespace: ns.into(),
        node_id: String::new(),
    }
}

async fn log_on(cfg: &JetStreamConfig) -> JsLog {
    let (client, js) = connect(cfg).await.expect("connect");
    open_log(&client, js, cfg).await.expect("open log")
}

fn ev(device: &str, i: usize) -> Event {
    Event {
        id: format!("evt_{device}_{i}"),
        device_id: device.into(),
        event_type: "message.received".into(),
        occurred_at_ms: 1,
        data: format!("{{\"n\":{i}}}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_partitioned_durable_and_read_back_in_order() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "t1", 4);
    let log = log_on(&cfg).await;
    assert_eq!(log.partitions(), 4);
    let devices = ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"];
    let events: Vec<Event> = (0..50).map(|i| ev(devices[i % 5], i)).collect();
    let taken = log
        .append(events.clone(), vec![], 1_000, 0)
        .await
        .expect("append");
    assert_eq!(taken.len(), 50);
    for (e, a) in events.iter().zip(&taken) {
        let Appended::New(seq) = a else {
            panic!("no duplicates expected: {a:?}")
        };
        assert_eq!(seq_partition(*seq), partition_of(&e.device_id, 4));
        let back = log.event(*seq).await.expect("event").expect("present");
        assert_eq!(*back.event, *e);
    }
    // Every partition reads back its own events, in append order.
    let mut total = 0;
    for p in 0..4 {
        let head = *log.durable_head(p).borrow();
        let read = log.read(p, 0, 1000).await.expect("read");
        let want: Vec<&Event> = events
            .iter()
            .filter(|e| partition_of(&e.device_id, 4) == p)
            .collect();
        assert_eq!(read.len(), want.len());
        assert!(read.iter().zip(&want).all(|(r, w)| *r.event == **w));
        if let Some(last) = read.last() {
            assert_eq!(head, last.seq, "the head is the last durable event");
            // Reading from past the middle resumes there.
            let mid = &read[read.len() / 2];
            let rest = log.read(p, mid.seq, 1000).await.expect("read");
            assert_eq!(rest.first().map(|e| e.seq), Some(mid.seq));
        }
        total += read.len();
    }
    assert_eq!(total, 50);
    // Appends of later times are found by time.
    let later = log
        .append(vec![ev("dev-a", 100)], vec![], 5_000, 0)
        .await
        .expect("append");
    let Appended::New(later_seq) = later[0] else {
        panic!("new")
    };
    let p = seq_partition(later_seq);
    assert_eq!(
        log.first_seq_at(p, 2_000).await.expect("bisect"),
        Some(later_seq)
    );
    let index = log.chunk_index(p, 0, 10).await.expect("index");
    assert_eq!(index.last().map(|(s, _)| *s), Some(later_seq));
    assert_eq!(index.last().map(|(_, ix)| ix.appended_at_ms), Some(5_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_taken_through_one_node_is_a_duplicate_on_another() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "t2", 2);
    let a = log_on(&cfg).await;
    // The second node talks to another server of the cluster.
    let mut cfg_b = cfg.clone();
    cfg_b.urls.rotate_left(1);
    let b = log_on(&cfg_b).await;
    let first = a
        .append(vec![ev("dev-x", 1)], vec![(42, 0)], 1_000, 0)
        .await
        .expect("append");
    let Appended::New(seq) = first[0] else {
        panic!("new")
    };
    let again = b
        .append(
            vec![ev("dev-x", 1), ev("dev-x", 2)],
            vec![(42, 0), (43, 1)],
            2_000,
            0,
        )
        .await
        .expect("append");
    assert_eq!(again[0], Appended::Duplicate(seq));
    assert!(matches!(again[1], Appended::New(_)));
    // Nothing was appended for the duplicate.
    let p = seq_partition(seq);
    assert_eq!(b.read(p, 0, 10).await.expect("read").len(), 2);
    // Outside the window (keys older than `since`), the key is free again.
    let late = b
        .append(vec![ev("dev-x", 1)], vec![(42, 0)], 3_000, i64::MAX)
        .await
        .expect("append");
    assert!(matches!(late[0], Appended::New(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_follows_appends_made_through_another_node() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "t3", 1);
    let owner = log_on(&cfg).await;
    let mut head = owner.durable_head(0);
    let other = log_on(&cfg).await;
    let taken = other
        .append(vec![ev("dev-y", 1)], vec![], 1_000, 0)
        .await
        .expect("append");
    let Appended::New(seq) = taken[0] else {
        panic!("new")
    };
    tokio::time::timeout(Duration::from_secs(5), head.wait_for(|h| *h >= seq))
        .await
        .expect("the owner's head moves within 5 s")
        .expect("watch");
    assert_eq!(owner.read(0, seq, 1).await.expect("read")[0].seq, seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_count_is_fixed_once_the_streams_exist() {
    let c = Cluster::start(3).await;
    log_on(&config(&c, "t4", 4)).await;
    let cfg = config(&c, "t4", 8);
    let (client, js) = connect(&cfg).await.expect("connect");
    let err = match open_log(&client, js, &cfg).await {
        Ok(_) => panic!("a different partition count must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("fixed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_just_opened_bounds_the_head_before_its_watch_catches_up() {
    let c = Cluster::start(3).await;
    let cfg = config(&c, "t5", 2);
    let writer = log_on(&cfg).await;
    let taken = writer
        .append((0..5).map(|i| ev("dev-z", i)).collect(), vec![], 1_000, 0)
        .await
        .expect("append");
    let Some(Appended::New(last)) = taken.last().cloned() else {
        panic!("new")
    };
    let p = seq_partition(last);
    // A node that has just opened the log, asked before its tail has read
    // anything: every event already durable is within the bound.
    let fresh = log_on(&cfg).await;
    assert!(fresh.head_bound(p).await.expect("head") >= last);
    assert_eq!(fresh.head_bound(1 - p).await.expect("head"), 0);
}

/// The server leading `stream`, by name (`n0`, `n1`, ...).
async fn leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    let mut s = js.get_stream(stream).await.expect("stream");
    let info = s.info().await.expect("stream info");
    info.cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("the stream has a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_out_the_election_after_its_streams_leader_dies() {
    let mut c = Cluster::start(3).await;
    let cfg = config(&c, "t7", 4);
    let (client, js) = connect(&cfg).await.expect("connect");
    let log = open_log(&client, js.clone(), &cfg).await.expect("open log");
    log.append(vec![ev("dev-a", 0)], vec![], 1_000, 0)
        .await
        .expect("append");
    let p = partition_of("dev-a", 4);
    let names = hookrelay_jetstream::names::Names::new("t7");
    let dead = leader(&js, &names.event_stream(p)).await;
    c.kill(dead.trim_start_matches('n').parse().expect("server index"));

    // The stream has no leader until the two survivors elect one (seconds):
    // the append waits for it instead of failing, keyed or not.
    let started = std::time::Instant::now();
    let taken = log
        .append(
            vec![ev("dev-a", 1), ev("dev-a", 2)],
            vec![(0xfeed, 1)],
            2_000,
            0,
        )
        .await
        .expect("an append through a leader election");
    eprintln!("appended {:?} after the leader died", started.elapsed());
    assert!(
        taken.iter().all(|a| matches!(a, Appended::New(_))),
        "{taken:?}"
    );
    assert_ne!(leader(&js, &names.event_stream(p)).await, dead);
    // Written once, readable, and the key is settled.
    let read = log.read(p, 0, 100).await.expect("read");
    let ids: Vec<&str> = read.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["evt_dev-a_0", "evt_dev-a_1", "evt_dev-a_2"]);
    let again = log
        .append(vec![ev("dev-a", 2)], vec![(0xfeed, 0)], 3_000, 0)
        .await
        .expect("append");
    assert_eq!(again, [Appended::Duplicate(read[2].seq)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_moves_on_within_seconds_after_the_server_its_tail_read_from_dies() {
    let mut c = Cluster::start(3).await;
    let cfg = config(&c, "t8", 1);
    let (client, js) = connect(&cfg).await.expect("connect");
    let log = open_log(&client, js.clone(), &cfg).await.expect("open log");
    let mut head = log.durable_head(0);
    // The server holding this log's tail (its consumer, the stream's only
    // one before another node opens the log).
    let names = hookrelay_jetstream::names::Names::new("t8");
    let stream = js.get_stream(names.event_stream(0)).await.expect("stream");
    let mut consumers = Vec::new();
    for _ in 0..100 {
        consumers = stream.consumers().try_collect().await.expect("consumers");
        if !consumers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(consumers.len(), 1, "one tail");
    let host = consumers[0]
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the consumer's server");
    // Appends through another node: this one's head moves only through
    // its own tail.
    let writer = log_on(&cfg).await;
    let first = writer
        .append(vec![ev("dev-t", 0)], vec![], 1_000, 0)
        .await
        .expect("append");
    let Appended::New(seq) = first[0] else {
        panic!("new")
    };
    tokio::time::timeout(Duration::from_secs(5), head.wait_for(|h| *h >= seq))
        .await
        .expect("the head moves")
        .expect("watch");

    // The server holding the tail's consumer dies.
    c.kill(host.trim_start_matches('n').parse().expect("server index"));

    // An event stored after that reaches the head within seconds: 4–7 s
    // here, the JetStream API's election included. (async-nats's ordered
    // consumer waited for two missed 15 s heartbeats, and was seen to wait
    // over a minute.)
    let next = writer
        .append(vec![ev("dev-t", 1)], vec![], 2_000, 0)
        .await
        .expect("an append after a server died");
    let Appended::New(seq) = next[0] else {
        panic!("new")
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), head.wait_for(|h| *h >= seq))
        .await
        .expect("the head moves on within 15 s of the append")
        .expect("watch");
    eprintln!("the head moved {:?} after the append", started.elapsed());
}

/// `ingest.dedup_window` reaches the idempotency bucket, also when a bucket
/// made with another window already exists: its keys live as long as the
/// window says, longer or shorter than before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_window_is_the_configured_one_and_follows_a_change() {
    let c = Cluster::start(3).await;
    let mut cfg = config(&c, "tw", 1);
    let max_age = |cfg: JetStreamConfig| async move {
        let (_client, js) = connect(&cfg).await.expect("connect");
        js.get_stream(format!("KV_{}_idem", cfg.namespace))
            .await
            .expect("the bucket's stream")
            .info()
            .await
            .expect("info")
            .config
            .max_age
    };
    let _log = log_on(&cfg).await;
    assert_eq!(max_age(cfg.clone()).await, Duration::from_secs(3600));
    for window in [Duration::from_secs(48 * 3600), Duration::from_secs(30)] {
        cfg.dedup_window = window;
        let _log = log_on(&cfg).await;
        assert_eq!(max_age(cfg.clone()).await, window);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_event_log_checks() {
    let c = Cluster::start(3).await;
    let log = log_on(&config(&c, "tc", 4)).await;
    hookrelay_store::conformance::check_log(&log).await;
}
