//! The crash matrix: SIGKILL during fan-out, during delivery attempts, during
//! retention compaction and during a graceful shutdown. After each restart,
//! invariants 1 (acknowledged events are delivered), 3 (nothing stays
//! pending) and 4 (at-least-once, same webhook-id) must hold.

use crate::support::*;
use serde_json::json;
use std::{collections::HashSet, time::Duration};

#[derive(Clone, Copy, Debug)]
enum Moment {
    FanOut,
    Attempts,
    Compaction,
    Shutdown,
}

const WEBHOOKS: usize = 4;

async fn run(moment: Moment) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let builder = || {
        let b = ServerBuilder::new(&data).base_delay_ms(100);
        match moment {
            Moment::Compaction => {
                b.set("store", "retention", "\"1s\"")
                    .set("store", "compact_interval", "\"100ms\"")
            }
            _ => b,
        }
    };
    let receivers: Vec<Receiver> = futures_join((0..WEBHOOKS).map(|_| Receiver::start())).await;
    if matches!(moment, Moment::Attempts) {
        for r in &receivers {
            r.hold();
        }
    }
    let server = builder().start();
    let t = bootstrap(&server, "dev-c").await;
    for r in &receivers {
        let resp = reqwest::Client::new()
            .post(server.url("/v1/webhooks"))
            .bearer_auth(&t.token)
            .json(&json!({"url": r.url("/"), "events": ["*"], "retry_attempts": 20}))
            .send()
            .await
            .expect("webhook");
        assert_eq!(resp.status(), 201);
    }
    let mut client = grpc(&server).await;
    let mut acked = Vec::new();
    let batches = if matches!(moment, Moment::Compaction) {
        10
    } else {
        4
    };
    for b in 0..batches {
        let events = (0..250)
            .map(|i| {
                event(
                    "dev-c",
                    "message.received",
                    &format!(r#"{{"b":{b},"i":{i}}}"#),
                )
            })
            .collect();
        let r = publish_batch(&mut client, events).await.expect("publish");
        acked.extend(r.results.into_iter().map(|a| a.event_id));
        if matches!(moment, Moment::Compaction) {
            // Let older batches age past retention while newer ones arrive.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    match moment {
        // Fan-out of 1,000 events × 4 webhooks is under way right after the acks.
        Moment::FanOut => server.kill().await,
        Moment::Attempts => {
            eventually(10, "attempts in flight", || async {
                (metric(&server, "hookrelay_deliveries_created_total")
                    .await
                    .unwrap_or(0.0)
                    > 0.0)
                    .then_some(())
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.kill().await;
            for r in &receivers {
                r.release();
            }
        }
        Moment::Compaction => server.kill().await,
        Moment::Shutdown => {
            let pid = server.pid();
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            tokio::time::sleep(Duration::from_millis(30)).await;
            server.kill().await;
        }
    }
    let server = builder().start();
    eventually(
        60,
        &format!("{moment:?}: every acknowledged event at every webhook"),
        || async {
            receivers
                .iter()
                .all(|r| {
                    let got: HashSet<String> = r
                        .received()
                        .iter()
                        .filter(|x| x.status == 200)
                        .map(|x| x.header("webhook-id").to_owned())
                        .collect();
                    acked.iter().all(|id| got.contains(id))
                })
                .then_some(())
        },
    )
    .await;
    eventually(30, &format!("{moment:?}: nothing pending"), || async {
        (metric(&server, "hookrelay_deliveries_pending").await == Some(0.0)
            && metric(&server, "hookrelay_fanout_lag_events").await == Some(0.0))
        .then_some(())
    })
    .await;
    let duplicates: usize =
        receivers.iter().map(|r| r.count()).sum::<usize>() - WEBHOOKS * acked.len();
    println!(
        "crash matrix {moment:?}: {} events × {WEBHOOKS} webhooks, {duplicates} duplicates",
        acked.len()
    );
}

async fn futures_join<F: std::future::Future<Output = Receiver>>(
    fs: impl Iterator<Item = F>,
) -> Vec<Receiver> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_fan_out() {
    run(Moment::FanOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_delivery_attempts() {
    run(Moment::Attempts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_retention_compaction() {
    if on_jetstream("killed_during_retention_compaction (sled's retention pass)") {
        return;
    }
    run(Moment::Compaction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_graceful_shutdown() {
    run(Moment::Shutdown).await;
}
