//! Hostile and broken receivers (raw TCP), the SSRF guard, and fairness.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

async fn webhook(server: &Server, token: &str, body: Value) -> String {
    let v: Value = reqwest::Client::new()
        .post(server.url("/v1/webhooks"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_targets_by_name_and_by_mapped_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("delivery", "allow_private_targets", "false")
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    let port = receiver.addr.port();
    let by_name = webhook(&server, &t.token, json!({"url": format!("http://localhost:{port}/"), "events": ["message.sent"], "retry_attempts": 0})).await;
    let mapped = webhook(&server, &t.token, json!({"url": format!("http://[::ffff:127.0.0.1]:{port}/"), "events": ["message.sent"], "retry_attempts": 0})).await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");
    for id in [&by_name, &mapped] {
        let d = failed_delivery(&server, &t.token, id).await;
        assert_eq!(d["last_error"], "blocked_address", "{d}");
    }
    assert_eq!(receiver.count(), 0, "nothing reached the internal address");
    assert_eq!(
        metric(
            &server,
            r#"hookrelay_delivery_attempts_total{outcome="blocked_address"}"#
        )
        .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn redirects_resets_and_trickling_bodies_fail_as_they_should() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let target = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    let location = target.url("/elsewhere");
    let redirect = raw_receiver(move |mut s| {
        let location = location.clone();
        async move {
            let resp =
                format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
            let _ = s.write_all(resp.as_bytes()).await;
        }
    })
    .await;
    let reset = raw_receiver(|s| async move {
        // A zero linger turns the close into a TCP RST, which is the point;
        // the drop does not block with a zero timeout.
        #[allow(deprecated)]
        let _ = s.set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let trickle = raw_receiver(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
            .await;
        for _ in 0..100 {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let mk = |addr: std::net::SocketAddr, timeout: u32| json!({"url": format!("http://{addr}/"), "events": ["message.sent"], "retry_attempts": 0, "timeout": timeout});
    let w_redirect = webhook(&server, &t.token, mk(redirect, 10)).await;
    let w_reset = webhook(&server, &t.token, mk(reset, 10)).await;
    let w_trickle = webhook(&server, &t.token, mk(trickle, 1)).await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");

    let d = failed_delivery(&server, &t.token, &w_redirect).await;
    assert_eq!(
        (d["last_status_code"].as_u64(), d["last_error"].as_str()),
        (Some(302), Some("other")),
        "{d}"
    );
    assert_eq!(target.count(), 0, "the redirect was not followed");
    let d = failed_delivery(&server, &t.token, &w_reset).await;
    assert_eq!(d["last_error"], "connect_error", "{d}");
    let d = failed_delivery(&server, &t.token, &w_trickle).await;
    assert_eq!(d["last_error"], "timeout", "{d}");
    let detail: Value = reqwest::Client::new()
        .get(server.url(&format!("/v1/deliveries/{}", d["id"].as_str().expect("id"))))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let ms = detail["attempt_log"][0]["duration_ms"]
        .as_u64()
        .expect("duration");
    assert!(
        (900..3000).contains(&ms),
        "the 1 s timeout bounds the whole response: {ms} ms"
    );
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(50)
        .start();
    let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let (f, tm) = (first.clone(), times.clone());
    let addr = raw_receiver(move |mut s| {
        let (f, tm) = (f.clone(), tm.clone());
        async move {
            tm.lock().expect("lock").push(Instant::now());
            let resp: &[u8] = if f.swap(false, std::sync::atomic::Ordering::SeqCst) {
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
            };
            let _ = s.write_all(resp).await;
        }
    })
    .await;
    let t = bootstrap(&server, "dev-1").await;
    webhook(
        &server,
        &t.token,
        json!({"url": format!("http://{addr}/"), "events": ["*"]}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");
    let got = eventually(15, "two attempts", || async {
        let t = times.lock().expect("lock").clone();
        (t.len() >= 2).then_some(t)
    })
    .await;
    let gap = got[1] - got[0];
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 was honoured over the 50 ms base: {gap:?}"
    );
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_slow_a_healthy_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("delivery", "per_host_concurrency", "4")
        .start();
    let healthy = Receiver::start().await;
    let hang = raw_receiver(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let t = bootstrap(&server, "dev-1").await;
    webhook(
        &server,
        &t.token,
        json!({"url": format!("http://{hang}/"), "events": ["*"], "timeout": 5}),
    )
    .await;
    let other = bootstrap(&server, "dev-2").await;
    webhook(
        &server,
        &other.token,
        json!({"url": healthy.url("/"), "events": ["*"]}),
    )
    .await;
    let mut client = grpc(&server).await;
    const N: usize = 300;
    // Solo: the healthy endpoint alone.
    let start = Instant::now();
    publish_batch(
        &mut client,
        (0..N)
            .map(|_| event("dev-2", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    healthy.wait_for(N, 20).await;
    let solo = N as f64 / start.elapsed().as_secs_f64();
    // Beside a hanging endpoint that first gets far more than its host's slots.
    publish_batch(
        &mut client,
        (0..200)
            .map(|_| event("dev-1", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    let start = Instant::now();
    publish_batch(
        &mut client,
        (0..N)
            .map(|_| event("dev-2", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    healthy.wait_for(2 * N, 20).await;
    let beside = N as f64 / start.elapsed().as_secs_f64();
    println!("healthy rate: {solo:.0}/s alone, {beside:.0}/s beside a hanging endpoint");
    assert!(
        beside >= 0.5 * solo,
        "healthy rate fell from {solo:.0}/s to {beside:.0}/s"
    );
}

#[tokio::test]
async fn deleting_or_deactivating_a_webhook_cancels_its_pending_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(500)
        .start();
    let a_recv = Receiver::start().await;
    a_recv.set_default(500);
    let b_recv = Receiver::start().await;
    b_recv.set_default(500);
    let t = bootstrap(&server, "dev-1").await;
    let a = webhook(
        &server,
        &t.token,
        json!({"url": a_recv.url("/"), "events": ["*"], "retry_attempts": 10}),
    )
    .await;
    let b = webhook(
        &server,
        &t.token,
        json!({"url": b_recv.url("/"), "events": ["*"], "retry_attempts": 10}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");
    a_recv.wait_for(1, 10).await;
    b_recv.wait_for(1, 10).await;
    let http = reqwest::Client::new();
    let resp = http
        .patch(server.url(&format!("/v1/webhooks/{a}")))
        .bearer_auth(&t.token)
        .json(&json!({"active": false}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let resp = http
        .delete(server.url(&format!("/v1/webhooks/{b}")))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let (a_before, b_before) = (a_recv.count(), b_recv.count());
    let cancelled = eventually(10, "the pending delivery cancelled", || async {
        let v: Value = http
            .get(server.url(&format!("/v1/webhooks/{a}/deliveries?status=cancelled")))
            .bearer_auth(&t.token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        (a_recv.count(), b_recv.count()),
        (a_before, b_before),
        "no attempt after the change"
    );
}

async fn get_webhook(server: &Server, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_failing_host_opens_its_circuit_and_closes_it_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(100)
        .set("delivery", "breaker_threshold", "3")
        .start();
    let receiver = Receiver::start().await;
    receiver.set_default(500);
    let t = bootstrap(&server, "dev-1").await;
    let id = webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "retry_attempts": 20}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish_batch(
        &mut client,
        (0..10)
            .map(|_| event("dev-1", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    eventually(10, "the circuit to open", || async {
        (get_webhook(&server, &t.token, &id).await["circuit"] == "open").then_some(())
    })
    .await;
    assert_eq!(metric(&server, "hookrelay_circuits_open").await, Some(1.0));
    receiver.set_default(200);
    eventually(
        15,
        "the circuit to close and everything delivered",
        || async {
            let closed = get_webhook(&server, &t.token, &id).await["circuit"] == "closed";
            let delivered = receiver
                .received()
                .iter()
                .filter(|r| r.status == 200)
                .count();
            (closed && delivered == 10).then_some(())
        },
    )
    .await;
}

/// A busy host's concurrency limit is in `/metrics`, and a host whose
/// attempts time out gets fewer of them at once.
#[tokio::test]
async fn a_busy_hosts_limit_is_shown_and_comes_down_when_it_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(100)
        .set("delivery", "per_host_concurrency", "8")
        .set("delivery", "per_host_concurrency_min", "2")
        .set("delivery", "breaker_threshold", "1000")
        .start();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(3));
    let t = bootstrap(&server, "dev-1").await;
    webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "retry_attempts": 20, "timeout": 1}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish_batch(
        &mut client,
        (0..40)
            .map(|_| event("dev-1", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    let host = receiver.url("");
    let series = format!("hookrelay_host_concurrency_limit{{host=\"{host}\"}}");
    eventually(20, "the limit to come down from 8", || async {
        metric(&server, &series)
            .await
            .filter(|v| (2.0..=4.0).contains(v))
    })
    .await;
}

#[tokio::test]
async fn a_rate_limited_webhook_spaces_its_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "rate_limit": 5}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish_batch(
        &mut client,
        (0..11)
            .map(|_| event("dev-1", "message.sent", "{}"))
            .collect(),
    )
    .await
    .expect("batch");
    let got = receiver.wait_for(11, 15).await;
    let span = got[10].at - got[0].at;
    // 5/s with a burst of one: the 11th arrives about 2 s after the first.
    assert!(span >= Duration::from_millis(1700), "{span:?}");
    assert!(got.iter().all(|r| r.status == 200), "waited, never failed");
}

#[tokio::test]
async fn a_webhook_failing_for_too_long_is_disabled_and_announced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(300)
        .set("delivery", "disable_after", "\"1s\"")
        .start();
    let failing = Receiver::start().await;
    failing.set_default(500);
    let watcher = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    let bad = webhook(
        &server,
        &t.token,
        json!({"url": failing.url("/"), "events": ["message.*"], "retry_attempts": 10}),
    )
    .await;
    webhook(
        &server,
        &t.token,
        json!({"url": watcher.url("/"), "events": ["webhook.disabled"]}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");
    let got = watcher.wait_for(1, 20).await;
    let body = got[0].json();
    assert_eq!(body["event"], "webhook.disabled");
    assert_eq!(body["data"]["webhook_id"], bad);
    let w = get_webhook(&server, &t.token, &bad).await;
    assert_eq!(w["active"], false);
    assert!(w["failing_since"].is_string());
    let attempts = failing.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        failing.count(),
        attempts,
        "no attempts after it was disabled"
    );
}

#[tokio::test]
async fn rotation_signatures_verify_with_the_standardwebhooks_library() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let id = webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "secret": old}),
    )
    .await;
    let rotated: Value = reqwest::Client::new()
        .post(server.url(&format!("/v1/webhooks/{id}/rotate-secret")))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", r#"{"x":"é"}"#))
        .await
        .expect("publish");
    let d = receiver.wait_for(1, 10).await.remove(0);
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
d = json.load(sys.stdin)
for secret in d["secrets"]:
    Webhook(secret).verify(d["body"], d["headers"])
print("verified", len(d["secrets"]))
"#;
    let input = json!({
        "secrets": [new, old],
        "body": String::from_utf8_lossy(&d.body),
        "headers": {
            "webhook-id": d.header("webhook-id"),
            "webhook-timestamp": d.header("webhook-timestamp"),
            "webhook-signature": d.header("webhook-signature"),
        },
    });
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with `pip install standardwebhooks`, as .ci/run does)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "standardwebhooks rejected a signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified 2");
}
