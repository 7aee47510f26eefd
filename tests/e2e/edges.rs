//! Delivery correctness at the edges: cut-off answers, answers that are not
//! HTTP, ids and timestamps producers send, URLs, rotation within the grace,
//! retries and test sends that do not fit the state, and error envelopes.

use crate::support::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn webhook(server: &Server, token: &str, body: Value) -> String {
    let (status, w) = call(server, M::POST, "/v1/webhooks", token, Some(body)).await;
    assert_eq!(status, 201, "{w}");
    w["id"].as_str().expect("id").to_owned()
}

/// Writes `head`, then `body`, then ends the connection with a reset (or a
/// plain close).
async fn answer(
    mut s: tokio::net::TcpStream,
    head: &'static [u8],
    body: &'static [u8],
    reset: bool,
) {
    let _ = s.write_all(head).await;
    let _ = s.write_all(body).await;
    let _ = s.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    if reset {
        // A zero linger turns the close into a TCP RST.
        #[allow(deprecated)]
        let _ = s.set_linger(Some(Duration::ZERO));
    }
    drop(s);
}

/// Finding 2: a 2xx counts only with its whole answer read.
#[tokio::test]
async fn a_2xx_cut_off_or_reset_is_not_a_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-cut").await;
    let short_then_reset = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            b"7 bytes",
            true,
        )
    })
    .await;
    let reset_after_head = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            b"",
            true,
        )
    })
    .await;
    let cut_chunked = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n",
            false,
        )
    })
    .await;
    let short_then_close = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            b"7 bytes",
            false,
        )
    })
    .await;
    let big_declared = raw_receiver(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n")
            .await;
        let _ = s.write_all(&[b'x'; 10 * 1024]).await;
        drop(s);
    })
    .await;
    let whole = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n",
            b"7 bytes",
            false,
        )
    })
    .await;
    let mk = |addr: std::net::SocketAddr| json!({"url": format!("http://{addr}/"), "events": ["*"], "retry_attempts": 0, "timeout": 5});
    let mut cut = Vec::new();
    for addr in [
        short_then_reset,
        reset_after_head,
        cut_chunked,
        short_then_close,
        big_declared,
    ] {
        cut.push(webhook(&server, &t.token, mk(addr)).await);
    }
    let ok = webhook(&server, &t.token, mk(whole)).await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-cut", "message.received", "{}"))
        .await
        .expect("publish");
    for wh in &cut {
        let d = failed_delivery(&server, &t.token, wh).await;
        assert_eq!(d["status"], "failed", "{d}");
        assert!(d["last_error"].is_string(), "{d}");
    }
    eventually(10, "the whole answer delivered", || async {
        let (_, l) = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{ok}/deliveries"),
            &t.token,
            None,
        )
        .await;
        (l["data"][0]["status"] == "delivered").then_some(())
    })
    .await;
}

/// Finding 9: an answer that is not HTTP is outcome `other`, not a
/// connection error.
#[tokio::test]
async fn answers_that_are_not_http_are_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-junk").await;
    let status_000 = raw_receiver(|s| {
        answer(
            s,
            b"HTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n",
            b"",
            false,
        )
    })
    .await;
    let junk = raw_receiver(|s| answer(s, b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"", false)).await;
    let huge_header = raw_receiver(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nx-big: ").await;
        let _ = s.write_all(&vec![b'a'; 2 << 20]).await;
        let _ = s.write_all(b"\r\ncontent-length: 0\r\n\r\n").await;
    })
    .await;
    let many_headers = raw_receiver(|mut s| async move {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"content-length: 0\r\n\r\n");
        let _ = s.write_all(&head).await;
    })
    .await;
    let mk = |addr: std::net::SocketAddr| json!({"url": format!("http://{addr}/"), "events": ["*"], "retry_attempts": 0, "timeout": 5});
    let mut hooks = Vec::new();
    for (name, addr) in [
        ("000", status_000),
        ("junk", junk),
        ("2 MiB header", huge_header),
        ("500 headers", many_headers),
    ] {
        hooks.push((name, webhook(&server, &t.token, mk(addr)).await));
    }
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-junk", "message.received", "{}"))
        .await
        .expect("publish");
    for (name, wh) in &hooks {
        let d = failed_delivery(&server, &t.token, wh).await;
        assert_eq!(d["last_error"], "other", "{name}: {d}");
    }
}

/// Findings 3 and 8: ids HTTP stacks would mangle, and times out of range,
/// are refused naming the field; the REST API names fields as it spells them.
#[tokio::test]
async fn producer_ids_and_times_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("ingest", "max_event_bytes", "1024")
        .start();
    bootstrap(&server, "dev-e").await;
    let mut client = grpc(&server).await;
    for id in ["  ", " lead", "trail ", "évt-ü"] {
        let mut e = event("dev-e", "message.received", "{}");
        e.id = id.to_owned();
        let err = publish(&mut client, e).await.expect_err(id);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{id:?}");
        assert!(
            err.message().starts_with("id:"),
            "{id:?}: {}",
            err.message()
        );
    }
    for seconds in [-1i64, 0, 253_402_300_800, 1_796_116_911_000] {
        let mut e = event("dev-e", "message.received", "{}");
        e.occurred_at = Some(prost_types::Timestamp { seconds, nanos: 0 });
        let err = publish(&mut client, e).await.expect_err("time");
        assert!(
            err.message().starts_with("occurred_at:"),
            "{seconds}: {}",
            err.message()
        );
    }
    let http = reqwest::Client::new();
    for (body, field) in [
        (
            json!({"device_id": "dev-e", "event": "nope", "data": {}}),
            "event",
        ),
        (
            json!({"device_id": "dev-e", "event": "message.received", "timestamp": 1_796_116_911_000i64, "data": {}}),
            "timestamp",
        ),
        (
            json!({"device_id": "dev-e", "event": "message.received", "timestamp": i64::MAX, "data": {}}),
            "timestamp",
        ),
        (
            json!({"device_id": "dev-e", "event": "message.received", "timestamp": -1, "data": {}}),
            "timestamp",
        ),
        (
            json!({"id": " x", "device_id": "dev-e", "event": "message.received", "data": {}}),
            "id",
        ),
    ] {
        let resp = http
            .post(server.url("/v1/events"))
            .bearer_auth(INGEST_KEY)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["details"][0]["field"], field, "{v}");
    }
    // The limit is on `data`: exactly max_event_bytes passes, one more does not.
    let pad = 1024 - r#"{"a":""}"#.len();
    let data = format!(r#"{{"a":"{}"}}"#, "x".repeat(pad));
    publish(&mut client, event("dev-e", "message.received", &data))
        .await
        .expect("data of exactly the limit");
    let over = format!(r#"{{"a":"{}"}}"#, "x".repeat(pad + 1));
    let err = publish(&mut client, event("dev-e", "message.received", &over))
        .await
        .expect_err("over");
    assert!(err.message().starts_with("data:"), "{}", err.message());
    // Over the REST body limit: 413 in the JSON envelope.
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("413 is JSON");
    assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE");
}

/// Finding 7: a URL is parsed once; what the parser had to repair is
/// refused, the rest is stored as the client will dial it.
#[tokio::test]
async fn webhook_urls_are_refused_or_stored_normalised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-u").await;
    for url in [
        "http://127.0.0.1:91\r\n16/crlf/a\tb".to_owned(),
        "https:///path".to_owned(),
        "http:127.0.0.1:9116/x".to_owned(),
        "http://127.0.0.1:0/x".to_owned(),
        format!("https://{}.example/", "a".repeat(300)),
        format!("https://{}/", vec!["b".repeat(60); 31].join(".")),
    ] {
        let (status, v) = call(
            &server,
            M::POST,
            "/v1/webhooks",
            &t.token,
            Some(json!({"url": url, "events": ["*"]})),
        )
        .await;
        assert_eq!(status, 400, "{url:?}: {v}");
    }
    let (status, v) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": format!("https://a.example/{}", "é".repeat(1040)), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "2,048 characters, not bytes: {v}");
    let (_, v) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": "https://Example.COM:443", "events": ["*"]})),
    )
    .await;
    assert_eq!(v["url"], "https://example.com/");
}

/// Finding 6: every rotated-out secret keeps signing until its own grace ends.
#[tokio::test]
async fn two_rotations_within_the_grace_keep_both_old_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-r").await;
    let first = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let wh = webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "secret": first}),
    )
    .await;
    let mut secrets = vec![first.to_owned()];
    for _ in 0..2 {
        let (status, v) = call(
            &server,
            M::POST,
            &format!("/v1/webhooks/{wh}/rotate-secret"),
            &t.token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        secrets.push(v["secret"].as_str().expect("secret").to_owned());
    }
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-r", "message.received", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(1, 10).await;
    let sigs: Vec<&str> = got[0].header("webhook-signature").split(' ').collect();
    assert_eq!(
        sigs.len(),
        3,
        "newest and both rotated-out secrets: {sigs:?}"
    );
    let id = got[0].header("webhook-id");
    let ts: i64 = got[0]
        .header("webhook-timestamp")
        .parse()
        .expect("timestamp");
    for (i, secret) in secrets.iter().rev().enumerate() {
        let expected = hookrelay_core::signing::standard_signature(secret, id, ts, &got[0].body);
        assert_eq!(sigs[i], expected, "secret {i} (newest first)");
    }
}

/// Finding 9: retries and test sends that do not fit the state answer 409;
/// of concurrent retries of one delivery exactly one is taken.
#[tokio::test]
async fn retries_and_test_sends_answer_409_when_they_do_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.set_default(500);
    let t = bootstrap(&server, "dev-409").await;
    let wg = webhook(
        &server,
        &t.token,
        json!({"url": good.url("/"), "events": ["*"]}),
    )
    .await;
    let wb = webhook(
        &server,
        &t.token,
        json!({"url": bad.url("/"), "events": ["*"], "retry_attempts": 0}),
    )
    .await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-409", "message.received", "{}"))
        .await
        .expect("publish");
    good.wait_for(1, 10).await;
    let delivered = eventually(10, "a delivered delivery", || async {
        let (_, l) = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{wg}/deliveries"),
            &t.token,
            None,
        )
        .await;
        l["data"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let (status, _) = call(
        &server,
        M::POST,
        &format!("/v1/deliveries/{delivered}/retry"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 409, "a delivered delivery is not retried");
    let failed = failed_delivery(&server, &t.token, &wb).await;
    let failed = failed["id"].as_str().expect("id").to_owned();
    bad.set_default(200);
    let retries = (0..5).map(|_| {
        let (url, token) = (
            server.url(&format!("/v1/deliveries/{failed}/retry")),
            t.token.clone(),
        );
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("retry")
                .status()
                .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for r in retries {
        statuses.push(r.await.expect("task"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![202, 409, 409, 409, 409]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bad.count(), 2, "the first attempt and one retry");
    let (status, _) = call(
        &server,
        M::PATCH,
        &format!("/v1/webhooks/{wg}"),
        &t.token,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(
        &server,
        M::POST,
        &format!("/v1/webhooks/{wg}/test"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 409, "{v}");
}

/// Finding 1: a clean stop (SIGTERM) under load sends nothing twice: no
/// attempt starts after the stop begins, every attempt that ends before the
/// drain deadline is recorded, and the rest come back after the restart.
#[tokio::test]
async fn a_clean_stop_under_load_sends_nothing_twice() {
    const N: usize = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (http, grpc_port) = (free_port(), free_port());
    let server = ServerBuilder::new(&data).ports(http, grpc_port).start();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(1));
    let t = bootstrap(&server, "dev-stop").await;
    webhook(
        &server,
        &t.token,
        json!({"url": receiver.url("/"), "events": ["*"], "timeout": 10}),
    )
    .await;
    let mut client = grpc(&server).await;
    let events = (0..N)
        .map(|i| event("dev-stop", "message.received", &format!(r#"{{"i":{i}}}"#)))
        .collect();
    publish_batch(&mut client, events).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = receiver.count();
    assert!(
        before > 0 && before < N,
        "some in flight at the stop: {before}"
    );
    assert!(server.stop().await, "a clean stop exits 0");
    let server = ServerBuilder::new(&data).ports(http, grpc_port).start();
    let ids = |r: &Receiver| {
        r.received()
            .iter()
            .map(|x| x.header("webhook-id").to_owned())
            .collect::<std::collections::HashSet<_>>()
    };
    eventually(40, "every event delivered after the restart", || async {
        (ids(&receiver).len() >= N).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ids(&receiver).len(), N);
    assert_eq!(receiver.count(), N, "duplicates after a clean stop");
    drop(server);
}

/// Finding 5: a final flush that fails is a failed stop; the exit status says so.
#[tokio::test]
async fn a_failed_final_flush_exits_non_zero() {
    if on_jetstream("a_failed_final_flush_exits_non_zero (sled's final flush)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .env("FAILPOINTS", "store::flush=return")
        .start();
    assert!(!server.stop().await, "the stop must not report success");
}
