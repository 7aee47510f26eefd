//! Idempotency across restarts, and back-pressure that loses nothing.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn duplicates_are_answered_with_the_original_sequence_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    let server = ServerBuilder::new(&data).start();
    let tenant = bootstrap(&server, "dev-d").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"]}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    let keyed = |id: &str, device: &str| {
        let mut e = event(device, "message.received", "{}");
        e.id = id.to_owned();
        e
    };
    let a = publish(&mut client, keyed("order-1", "dev-d"))
        .await
        .expect("publish");
    assert!(!a.duplicate);
    if on_sled() {
        assert_eq!(a.sequence, 1);
    }
    let again = publish(&mut client, keyed("order-1", "dev-d"))
        .await
        .expect("publish");
    assert_eq!(
        (again.sequence, again.duplicate, again.event_id.as_str()),
        (a.sequence, true, "order-1")
    );
    let batch = publish_batch(&mut client, vec![keyed("x", "dev-d"), keyed("x", "dev-d")])
        .await
        .expect("batch");
    let got: Vec<(u64, bool)> = batch
        .results
        .iter()
        .map(|r| (r.sequence, r.duplicate))
        .collect();
    let x = got.first().map_or(0, |g| g.0);
    assert_eq!(got, vec![(x, false), (x, true)]);
    if on_sled() {
        assert_eq!(x, 2);
    }
    receiver.wait_for(2, 10).await;

    assert!(server.stop().await);
    let server = ServerBuilder::new(&data).start();
    let mut client = grpc(&server).await;
    let after = publish(&mut client, keyed("order-1", "dev-d"))
        .await
        .expect("publish");
    assert_eq!(
        (after.sequence, after.duplicate),
        (a.sequence, true),
        "remembered across the restart"
    );
    let other = publish(&mut client, keyed("order-1", "dev-e"))
        .await
        .expect("publish");
    assert!(!other.duplicate, "keys are per device");
    if on_sled() {
        assert_eq!(other.sequence, 3);
    }
    // HTTP ingest shares the window.
    let resp: serde_json::Value = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"id": "x", "device_id": "dev-d", "event": "message.sent", "data": {}}))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    assert_eq!(resp["results"][0]["duplicate"], true);
    if on_sled() {
        assert_eq!(resp["results"][0]["sequence"], 2);
    }
    eventually(10, "fan-out of everything", || async {
        (metric(&server, "hookrelay_fanout_lag_events").await == Some(0.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.count(),
        2,
        "duplicates were never appended nor delivered"
    );
}

/// `ingest.dedup_window` holds on either backend: within it a producer id
/// is a duplicate of its first sequence, past it the same id is new.
#[tokio::test]
async fn the_dedup_window_is_the_configured_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("ingest", "dedup_window", "\"1s\"")
        .start();
    let mut client = grpc(&server).await;
    let keyed = || {
        let mut e = event("dev-w", "message.received", "{}");
        e.id = "order-w".to_owned();
        e
    };
    let first = publish(&mut client, keyed()).await.expect("publish");
    assert!(!first.duplicate);
    let within = publish(&mut client, keyed()).await.expect("publish");
    assert_eq!((within.sequence, within.duplicate), (first.sequence, true));
    // The window is a second: a little later the id is free again.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let past = publish(&mut client, keyed()).await.expect("publish");
    assert!(!past.duplicate, "past the window the id is new");
    assert!(past.sequence > first.sequence);
    let again = publish(&mut client, keyed()).await.expect("publish");
    assert_eq!((again.sequence, again.duplicate), (past.sequence, true));
}

#[tokio::test]
async fn back_pressure_refuses_new_events_and_loses_none() {
    if on_jetstream("back_pressure_refuses_new_events_and_loses_none (the backlog limit counts events of one partition's log)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("ingest", "max_pending_deliveries", "3")
        .start();
    let receiver = Receiver::start().await;
    receiver.hold();
    let tenant = bootstrap(&server, "dev-p").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"], "timeout": 30}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        match publish(
            &mut client,
            event("dev-p", "message.sent", &format!(r#"{{"i":{i}}}"#)),
        )
        .await
        {
            Ok(ack) => accepted.push(ack.event_id),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("publishing was refused once deliveries piled up");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("pending deliveries"),
        "{}",
        refused.message()
    );
    let resp = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"device_id": "dev-p", "event": "message.sent", "data": {}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // Nothing refused was appended.
    assert_eq!(
        metric(&server, "hookrelay_log_sequence").await,
        Some(accepted.len() as f64)
    );

    receiver.release();
    eventually(20, "every accepted event delivered", || async {
        let got: std::collections::HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        accepted.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    // And publishing works again.
    eventually(10, "back-pressure to lift", || async {
        let mut c = client.clone();
        publish(&mut c, event("dev-p", "message.sent", "{}"))
            .await
            .ok()
    })
    .await;
}

/// A tmpfs mounted for one test, unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// `None` where mounting is not allowed (not root): the test then says so
    /// and does nothing. CI runs as root.
    fn mount(path: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            path: path.to_owned(),
        })
    }

    fn available(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df figure")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_unavailable_loses_nothing_and_recovers() {
    if on_jetstream("a_full_disk_answers_unavailable_loses_nothing_and_recovers (the data directory's free-space reserve)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), "64m") else {
        println!("SKIPPED: cannot mount a tmpfs here (needs root); CI runs it");
        return;
    };
    let receiver = Receiver::start().await;
    let server = ServerBuilder::new(&disk.path.join("data"))
        .set("store", "min_free_bytes", &(16u64 << 20).to_string())
        .start();
    let t = bootstrap(&server, "dev-1").await;
    let (status, _) = configure(
        &server,
        &t.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"]}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    let mut acked = vec![
        publish(&mut client, event("dev-1", "message.sent", "{}"))
            .await
            .expect("publish")
            .event_id,
    ];

    // Fill the disk to 8 MiB free: inside the 16 MiB reserve, far from full.
    let filler = disk.path.join("filler");
    {
        use std::io::Write;
        let target = disk.available().saturating_sub(8 << 20);
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        while written + (1 << 20) <= target {
            f.write_all(&chunk).expect("fill");
            written += 1 << 20;
        }
        f.sync_all().expect("sync");
    }
    let err = publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect_err("disk full");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("disk space"), "{}", err.message());
    let resp = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"device_id": "dev-1", "event": "message.sent", "data": {}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 503);
    assert_eq!(
        reqwest::get(server.url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200,
        "the server keeps running"
    );
    // Not ready while the store cannot take writes; configuration writes
    // are refused too (sled would not recover from a full disk by itself).
    let http = reqwest::Client::new();
    let ready = http
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let reason: Value = ready.json().await.expect("json");
    assert!(
        reason["reason"]
            .as_str()
            .is_some_and(|r| r.contains("disk space")),
        "{reason}"
    );
    let create = |url: String| {
        http.post(server.url("/v1/webhooks"))
            .bearer_auth(&t.token)
            .json(&json!({"url": url, "events": ["*"]}))
            .send()
    };
    let resp = create(receiver.url("/b")).await.expect("create");
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "UNAVAILABLE");

    std::fs::remove_file(&filler).expect("free the space");
    // Back without a restart.
    eventually(10, "ready again", || async {
        let r = http.get(server.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let resp = create(receiver.url("/c")).await.expect("create");
    assert_eq!(resp.status(), 201);
    acked.push(
        publish(&mut client, event("dev-1", "message.sent", "{}"))
            .await
            .expect("recovered")
            .event_id,
    );
    eventually(10, "every acknowledged event delivered", || async {
        let got: std::collections::HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        acked.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    assert!(server.stop().await, "clean stop");
}
