//! Soak: steady load for a long time; RSS and open file descriptors stay
//! flat, and disk stays bounded by retention. Ignored by default:
//!
//! ```sh
//! HOOKRELAY_SOAK_SECONDS=600 cargo test -p hookrelay --test e2e -- --ignored soak --nocapture
//! ```
//!
//! CI runs it for 20 s.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long-running; see the module docs"]
async fn soak_keeps_memory_descriptors_and_disk_flat() {
    let seconds: u64 = std::env::var("HOOKRELAY_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("store", "retention", "\"3s\"")
        .set("store", "compact_interval", "\"1s\"")
        .start();
    let pid = server.pid();
    let ok = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.script(&[500; 1_000_000]);
    let t = bootstrap(&server, "soak").await;
    configure(
        &server,
        &t.token,
        json!({"webhook_url": ok.url("/"), "enabled_events": ["*"]}),
    )
    .await;
    reqwest::Client::new()
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .json(
            &json!({"url": flaky.url("/"), "events": ["message.*"], "retry_attempts": 2,
                      "retry_policy": {"base_delay_ms": 50, "max_delay_ms": 1000}}),
        )
        .send()
        .await
        .expect("webhook");
    let mut client = grpc(&server).await;
    let start = Instant::now();
    let mut samples: Vec<(u64, usize, f64)> = Vec::new();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        // ~500 events/s in batches of 50.
        let batch = (0..50)
            .map(|i| {
                event(
                    "soak",
                    "message.received",
                    &format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(200)),
                )
            })
            .collect();
        publish_batch(&mut client, batch).await.expect("publish");
        sent += 50;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sent.is_multiple_of(500) {
            let bytes = metric(&server, "hookrelay_store_bytes")
                .await
                .unwrap_or(0.0);
            samples.push((rss_kib(pid), open_fds(pid), bytes));
        }
    }
    let third = (samples.len() / 3).max(1);
    let avg = |s: &[(u64, usize, f64)], f: &dyn Fn(&(u64, usize, f64)) -> f64| {
        s.iter().map(f).sum::<f64>() / s.len().max(1) as f64
    };
    // The middle third (after warm-up) against the last third.
    let (early, late) = (
        &samples[third..2 * third],
        &samples[samples.len() - third..],
    );
    let rss = (avg(early, &|s| s.0 as f64), avg(late, &|s| s.0 as f64));
    let fds = (avg(early, &|s| s.1 as f64), avg(late, &|s| s.1 as f64));
    let disk = (avg(early, &|s| s.2), avg(late, &|s| s.2));
    println!(
        "soak: {sent} events in {seconds} s; RSS {:.0} → {:.0} KiB, fds {:.0} → {:.0}, store {:.0} → {:.0} bytes; delivered {}",
        rss.0, rss.1, fds.0, fds.1, disk.0, disk.1, ok.count()
    );
    assert!(rss.1 <= rss.0 * 1.5 + 16_384.0, "RSS grew: {rss:?}");
    assert!(fds.1 <= fds.0 + 32.0, "file descriptors grew: {fds:?}");
    assert!(
        disk.1 <= disk.0 * 3.0 + 64.0 * 1024.0 * 1024.0,
        "disk not bounded by retention: {disk:?}"
    );
    assert!(
        ok.count() as u64 >= sent * 9 / 10,
        "the healthy webhook kept up"
    );
}
