//! Crash safety: producers publish continuously over several gRPC streams
//! while the server is killed with SIGKILL at random moments and restarted on
//! the same data directory. Every acknowledged event must reach every
//! matching webhook at least once (invariants 1–4).
//!
//! `HOOKRELAY_CRASH_KILLS` (default 5) and `HOOKRELAY_CRASH_STREAMS`
//! (default 4) scale it up; see the README for the long run.

use crate::support::*;
use hookrelay_ingest::proto::{Event, PublishRequest};
use serde_json::json;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio_stream::wrappers::ReceiverStream;

const DEVICES: usize = 3;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic generator (xorshift), seeded from the clock and printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// One producer: keeps a stream open, reconnecting after each crash, and
/// records the ids the server acknowledged.
async fn produce(
    id: usize,
    grpc_addr: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, usize)>>>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(channel) = tonic::transport::Channel::from_shared(grpc_addr.clone())
            .expect("url")
            .connect()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut client =
            hookrelay_ingest::proto::ingest_service_client::IngestServiceClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel::<PublishRequest>(64);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {INGEST_KEY}").parse().expect("meta"),
        );
        let Ok(resp) = client.publish_stream(req).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut inbound = resp.into_inner();
        let in_flight: Arc<Mutex<std::collections::VecDeque<(String, usize)>>> = Arc::default();
        let sender_queue = in_flight.clone();
        let sender_stop = stop.clone();
        let sender = tokio::spawn(async move {
            while !sender_stop.load(Ordering::Relaxed) {
                let device = n % DEVICES;
                let event_id = format!("p{id}-{n}");
                n += 1;
                let e = Event {
                    id: event_id.clone(),
                    device_id: format!("crash-{device}"),
                    event_type: "message.received".into(),
                    occurred_at: None,
                    data: format!(r#"{{"n":{n}}}"#).into_bytes(),
                };
                sender_queue
                    .lock()
                    .expect("lock")
                    .push_back((event_id, device));
                if tx.send(PublishRequest { event: Some(e) }).await.is_err() {
                    break;
                }
                // Continuous but paced (≈ 2,000 events/s per stream), so the
                // suite's other tests keep some of the machine's two cores.
                if n.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            n
        });
        // Responses come in request order.
        while let Ok(Some(r)) = inbound.message().await {
            let sent = in_flight.lock().expect("lock").pop_front();
            if let Some((event_id, device)) = sent {
                assert_eq!(r.event_id, event_id, "responses are in order");
                acked.lock().expect("lock").push((event_id, device));
            }
        }
        sender.abort();
        n = sender.await.unwrap_or(n + 10_000);
        // Ids never repeat across reconnects: unacknowledged ones are simply dropped.
        n += 10_000;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_repeated_sigkill() {
    let kills = env_or("HOOKRELAY_CRASH_KILLS", 5);
    let streams = env_or("HOOKRELAY_CRASH_STREAMS", 4);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42)
        | 1;
    println!("crash test: seed {seed}, {kills} kills, {streams} streams");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (http_port, grpc_port) = (free_port(), free_port());
    let builder = || {
        ServerBuilder::new(&data)
            .ports(http_port, grpc_port)
            .base_delay_ms(100)
    };
    let receiver = Receiver::start().await;
    let mut server = builder().start();
    for d in 0..DEVICES {
        let tenant = bootstrap(&server, &format!("crash-{d}")).await;
        let (status, _) = configure(
            &server,
            &tenant.token,
            json!({"webhook_url": receiver.url(&format!("/d{d}")), "enabled_events": ["message.*"], "retry_attempts": 20}),
        )
        .await;
        assert_eq!(status, 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let producers: Vec<_> = (0..streams)
        .map(|i| {
            tokio::spawn(produce(
                i,
                format!("http://127.0.0.1:{grpc_port}"),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();

    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(300 + rng.next(900))).await;
        let before = acked.lock().expect("lock").len();
        server.kill().await;
        println!("kill {}: {before} events acknowledged so far", k + 1);
        server = builder().start();
    }
    let last_start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "the producers got through: {}",
        acked.len()
    );

    // Every acknowledged event at least once at its device's webhook. A
    // starved machine delivers slowly: wait while deliveries make progress,
    // fail when they stall for 20 s (or after 5 minutes in all).
    let cap = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut fewest = usize::MAX;
    let missing = loop {
        let got: HashSet<(String, String)> = receiver
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| {
                let path = r.json()["device_id"].as_str().unwrap_or("").to_owned();
                (r.header("webhook-id").to_owned(), path)
            })
            .collect();
        let missing: Vec<&(String, usize)> = acked
            .iter()
            .filter(|(id, d)| !got.contains(&(id.clone(), format!("crash-{d}"))))
            .collect();
        let now = tokio::time::Instant::now();
        if missing.len() < fewest {
            fewest = missing.len();
            deadline = now + Duration::from_secs(20);
        }
        if missing.is_empty() || now > deadline || now > cap {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = receiver.received();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in received.iter().filter(|r| r.status == 200) {
        *per_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|c| c - 1).sum();
    println!(
        "crash test: {} acknowledged, {} delivered requests, {} duplicates, {} missing; \
         caught up {:.1} s after the last restart",
        acked.len(),
        received.len(),
        duplicates,
        missing,
        last_start.elapsed().as_secs_f64()
    );
    assert_eq!(
        missing, 0,
        "acknowledged events never delivered (seed {seed})"
    );
    drop(server);
}
