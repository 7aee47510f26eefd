//! Operations: systemd readiness, check-config, metrics and gauges across a
//! restart, and a SIGTERM in the middle of deliveries.

use crate::support::*;
use serde_json::json;
use std::{collections::HashMap, os::unix::net::UnixDatagram, time::Duration};

#[tokio::test]
async fn systemd_hears_ready_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .env("NOTIFY_SOCKET", sock_path.to_str().expect("utf8"))
        .start();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1"), "{msg}");
    // Ready means serving.
    assert_eq!(
        reqwest::get(server.url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
    let sock = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("STOPPING");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(server.stop().await, "exits 0");
    assert_eq!(sock.await.expect("join").trim_end(), "STOPPING=1");
}

#[test]
fn check_config_accepts_the_example_and_lists_every_problem() {
    let bin = env!("CARGO_BIN_EXE_hookrelay");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/hookrelay.toml");
    let out = std::process::Command::new(bin)
        .args(["check-config", example])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[delivery]\nallow_htp = true\nconcurrency = 0\n[ingest]\nkeys = [\"\"]\n[strage]\npath = \"x\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "delivery.allow_htp (line 2): unknown key",
        "strage (line 6): unknown key",
        "delivery.concurrency (line 3)",
        "ingest.keys[0] (line 5)",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
    // A bad type names its key and line; from the environment, its variable.
    std::fs::write(
        &bad,
        "[http]\nlisten = \"127.0.0.1:0\"\n[delivery]\nallow_http = \"yes\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery.allow_http (line 4): invalid type"),
        "{err}"
    );
    std::fs::write(&bad, "").expect("write");
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&bad)
        .env("HOOKRELAY_DELIVERY__CONCURRENCY", "many")
        .env("HOOKRELAY_DELIVERY__ALOW_HTTP", "true")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery.concurrency (from HOOKRELAY_DELIVERY__CONCURRENCY): invalid type"),
        "{err}"
    );
    assert!(
        err.contains("delivery.alow_http (from HOOKRELAY_DELIVERY__ALOW_HTTP): unknown key"),
        "{err}"
    );
}

async fn scrape(server: &Server) -> HashMap<String, f64> {
    let text = reqwest::get(server.metrics_url())
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_move_with_traffic_and_gauges_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ok = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_default(503);
    let server = ServerBuilder::new(&data).base_delay_ms(60_000).start();
    let t = bootstrap(&server, "dev-1").await;
    let (status, _) = configure(
        &server,
        &t.token,
        json!({"webhook_url": ok.url("/"), "enabled_events": ["message.*"]}),
    )
    .await;
    assert_eq!(status, 200);
    reqwest::Client::new()
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .json(&json!({"url": down.url("/"), "events": ["message.sent"]}))
        .send()
        .await
        .expect("create");
    let mut client = grpc(&server).await;
    for _ in 0..5 {
        publish(&mut client, event("dev-1", "message.sent", "{}"))
            .await
            .expect("publish");
    }
    let _ = publish_with(&mut client, "wrong", event("dev-1", "message.sent", "{}")).await;
    ok.wait_for(5, 10).await;
    down.wait_for(5, 10).await;
    let m = eventually(10, "gauges to settle", || async {
        let m = scrape(&server).await;
        // Both receivers have answered, but an outcome is counted only when
        // the scheduler has applied it: wait for all ten, the failures too.
        (m.get("hookrelay_deliveries_pending") == Some(&5.0)
            && m.get("hookrelay_delivery_attempts_total{outcome=\"success\"}") == Some(&5.0)
            && m.get("hookrelay_delivery_attempts_total{outcome=\"http_5xx\"}") == Some(&5.0)
            && m.get("hookrelay_delivery_attempt_duration_seconds_count") == Some(&10.0))
        .then_some(m)
    })
    .await;
    let expect = [
        ("hookrelay_events_ingested_total{source=\"grpc\"}", 5.0),
        (
            "hookrelay_events_rejected_total{reason=\"unauthenticated\"}",
            1.0,
        ),
        ("hookrelay_log_sequence", 5.0),
        ("hookrelay_fanout_lag_events", 0.0),
        ("hookrelay_deliveries_created_total", 10.0),
        (
            "hookrelay_delivery_attempts_total{outcome=\"success\"}",
            5.0,
        ),
        (
            "hookrelay_delivery_attempts_total{outcome=\"http_5xx\"}",
            5.0,
        ),
        ("hookrelay_delivery_attempt_duration_seconds_count", 10.0),
        ("hookrelay_event_to_delivery_seconds_count", 5.0),
        ("hookrelay_deliveries_pending", 5.0),
    ];
    for (k, v) in expect {
        if k == "hookrelay_log_sequence" && !on_sled() {
            // Sequences count events only on sled.
            assert!(m.get(k).is_some_and(|s| *s > 0.0), "{k}");
            continue;
        }
        assert_eq!(m.get(k), Some(&v), "{k}");
    }
    assert!(
        m.keys()
            .any(|k| k.starts_with("hookrelay_http_requests_total{")),
        "http_requests_total"
    );
    assert!(
        m.keys()
            .any(|k| k
                .starts_with("hookrelay_delivery_attempt_duration_seconds_bucket{le=\"0.001\"}"))
    );

    assert!(server.stop().await);
    let server = ServerBuilder::new(&data).base_delay_ms(60_000).start();
    // Computed from the store at start, not reset to zero.
    let m = eventually(10, "gauges after restart", || async {
        let m = scrape(&server).await;
        (m.contains_key("hookrelay_log_sequence")
            && m.get("hookrelay_deliveries_pending") == Some(&5.0))
        .then_some(m)
    })
    .await;
    if on_sled() {
        assert_eq!(m.get("hookrelay_log_sequence"), Some(&5.0));
    } else {
        assert!(m.get("hookrelay_log_sequence").is_some_and(|s| *s > 0.0));
    }
    assert_eq!(m.get("hookrelay_deliveries_pending"), Some(&5.0));
    assert_eq!(m.get("hookrelay_fanout_lag_events"), Some(&0.0));
    // Measured when scraped, like the log's gauges.
    assert!(
        m.get("hookrelay_store_bytes").is_some_and(|b| *b > 0.0),
        "store_bytes: {:?}",
        m.get("hookrelay_store_bytes")
    );
}

#[tokio::test]
async fn sigterm_during_deliveries_exits_zero_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let slow = Receiver::start().await;
    slow.hold();
    let server = ServerBuilder::new(&data).start();
    let t = bootstrap(&server, "dev-1").await;
    let (status, _) = configure(
        &server,
        &t.token,
        json!({"webhook_url": slow.url("/"), "enabled_events": ["*"], "timeout": 30}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            publish(&mut client, event("dev-1", "message.sent", "{}"))
                .await
                .expect("publish")
                .event_id,
        );
    }
    // Every delivery fanned out and handed to the workers (the receiver holds them).
    eventually(10, "attempts in flight", || async {
        (metric(&server, "hookrelay_deliveries_created_total").await == Some(10.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slow.count(), 0, "nothing answered yet");
    let started = std::time::Instant::now();
    assert!(server.stop().await, "SIGTERM exits 0");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within shutdown.timeout (5 s here)"
    );
    slow.release();
    let server = ServerBuilder::new(&data).start();
    eventually(20, "every event delivered after the restart", || async {
        let got: std::collections::HashSet<String> = slow
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    drop(server);
}
