//! Partition leases against a real three-node cluster: nodes share the
//! partitions out, a node joining later takes its share, a node that dies
//! loses its partitions to the others within the takeover time, a node cut
//! off from JetStream stops its partitions before anyone may take them, and
//! no partition is ever driven by two nodes at once.

use hookrelay_core::Partition;
use hookrelay_jetstream::testkit::Cluster;
use hookrelay_jetstream::{connect, open_leases, JetStreamConfig};
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp, TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

const P: u32 = 6;
const TAKEOVER: Duration = Duration::from_secs(2);

struct Node {
    owned: watch::Receiver<BTreeSet<Partition>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    engine: JoinHandle<()>,
}

async fn node(c: &Cluster, id: &str) -> Node {
    node_via(c.urls(), id).await
}

async fn node_via(urls: Vec<String>, id: &str) -> Node {
    let cfg = JetStreamConfig {
        urls,
        replicas: 3,
        partitions: P,
        takeover: TAKEOVER,
        retention: Duration::from_secs(3600),
        dedup_window: Duration::from_secs(3600),
        election_wait: Duration::from_secs(15),
        namespace: "lease1".into(),
        node_id: String::new(),
    };
    let (_client, js) = connect(&cfg).await.expect("connect");
    // The engine: drives exactly what it owns, at once.
    let (running_tx, running) = watch::channel(BTreeSet::new());
    let leases = open_leases(&js, &cfg, id.into(), running)
        .await
        .expect("leases");
    let owned = leases.owned();
    let mut follow = leases.owned();
    let engine = tokio::spawn(async move {
        while follow.changed().await.is_ok() {
            let now = follow.borrow_and_update().clone();
            running_tx.send_replace(now);
        }
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(leases.run(stop.clone()));
    Node {
        owned,
        stop,
        task,
        engine,
    }
}

/// Waits until the nodes own these many partitions each (in some order),
/// checking all the while that no partition has two owners.
async fn settle(nodes: &[&Node], mut want: Vec<usize>, within: Duration) -> Duration {
    want.sort_unstable();
    let start = Instant::now();
    loop {
        let sets: Vec<BTreeSet<Partition>> =
            nodes.iter().map(|n| n.owned.borrow().clone()).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<Partition> = sets.iter().flatten().copied().collect();
        assert_eq!(union.len(), total, "a partition with two owners: {sets:?}");
        let mut have: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        have.sort_unstable();
        if have == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "owned {sets:?}, want counts {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_shared_taken_over_and_never_doubled() {
    let c = Cluster::start(3).await;
    let a = node(&c, "node-a").await;
    settle(&[&a], vec![6], TAKEOVER * 2).await;
    let b = node(&c, "node-b").await;
    settle(&[&a, &b], vec![3, 3], TAKEOVER * 4).await;
    let late = node(&c, "node-c").await;
    settle(&[&a, &b, &late], vec![2, 2, 2], TAKEOVER * 4).await;

    // node-c dies: nothing released, its leases simply stop being renewed.
    late.task.abort();
    late.engine.abort();
    let took = settle(&[&a, &b], vec![3, 3], TAKEOVER * 3).await;
    eprintln!("a dead node's partitions were taken over in {took:?}");
    // By design within `takeover` (a lease's max_age is ¾ of it, a tick ¼).
    // Timers run late on a loaded two-core CI machine: 3.03 s against a
    // 3 s allowance failed a local CI run once. Twice the design bound
    // still fails a takeover that waits for anything but the lease.
    assert!(took <= TAKEOVER * 2, "takeover took {took:?}");

    // node-b stops cleanly: it releases, node-a takes everything.
    b.stop.cancel();
    b.task.await.expect("leases task");
    settle(&[&a], vec![6], TAKEOVER * 2).await;
    a.stop.cancel();
    a.task.await.expect("leases task");
    assert!(a.owned.borrow().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_jetstream_stops_before_its_leases_lapse() {
    let c = Cluster::start(3).await;
    let a = node(&c, "node-a").await;
    settle(&[&a], vec![6], TAKEOVER * 2).await;
    // node-b reaches the cluster through a link that can stall: its
    // requests then wait for answers that do not come (a partition, a
    // server frozen), the longest JetStream lets a request wait.
    let link = Link::to(&c.urls()[0]).await;
    let b = node_via(vec![link.url()], "node-b").await;
    settle(&[&a, &b], vec![3, 3], TAKEOVER * 4).await;
    link.stall();
    // node-b must have stopped its partitions before node-a can take them:
    // `settle` fails the moment a partition has two owners.
    let took = settle(&[&a, &b], vec![0, 6], TAKEOVER * 3).await;
    eprintln!("a stalled node's partitions were taken over in {took:?}");
    assert!(b.owned.borrow().is_empty());
}

/// A TCP link to a NATS server that can be stalled: once stalled, bytes
/// are held in both directions and the connection stays open.
struct Link {
    port: u16,
    stalled: watch::Sender<bool>,
}

impl Link {
    async fn to(url: &str) -> Self {
        let upstream = url.trim_start_matches("nats://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stalled = watch::Sender::new(false);
        let gate = stalled.subscribe();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, gate.clone()));
                tokio::spawn(pipe(sr, cw, gate.clone()));
            }
        });
        Self { port, stalled }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stall(&self) {
        self.stalled.send_replace(true);
    }
}

async fn pipe(
    mut from: tcp::OwnedReadHalf,
    mut to: tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_whose_answer_was_lost_does_not_cost_the_lease() {
    let c = Cluster::start(3).await;
    let a = node(&c, "node-a").await;
    settle(&[&a], vec![6], TAKEOVER * 2).await;
    // A renewal the servers applied but whose answer node-a never saw (its
    // tick cut short): the lease moves to a revision node-a does not know,
    // still holding its id.
    let client = async_nats::connect(c.urls()[0].as_str())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let bucket = js
        .get_key_value(hookrelay_jetstream::names::Names::new("lease1").lease_bucket())
        .await
        .expect("lease bucket");
    bucket
        .put("part.0", "node-a".into())
        .await
        .expect("renew behind node-a's back");
    // node-a keeps every partition through its next renewals.
    let until = Instant::now() + TAKEOVER * 2;
    while Instant::now() < until {
        assert_eq!(a.owned.borrow().len(), 6, "node-a let a partition go");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.stop.cancel();
    a.task.await.expect("leases task");
}
