//! What operators and webhook owners see is true when they look: gauges at
//! scrape time, every delivery in its webhook's list, answer bodies of every
//! attempt, and `Retry-After` as the receiver asked.

use crate::support::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The log sequence gauge is read at scrape time, not on the scheduler's tick.
#[tokio::test]
async fn a_scrape_right_after_publishing_shows_the_new_log_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A slow tick: a gauge refreshed on the tick would lag behind.
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("scheduler", "tick", "\"30s\"")
        .start();
    let mut client = grpc(&server).await;
    let mut last = 0;
    for _ in 0..6 {
        last = publish(&mut client, event("dev-m", "message.received", "{}"))
            .await
            .expect("publish")
            .sequence;
    }
    let seen = metric(&server, "hookrelay_log_sequence").await;
    assert_eq!(seen, Some(last as f64));
}

/// A delivery with no attempt yet (replayed while its endpoint holds every
/// request) is in the list, pending; a success's answer body is in its log.
#[tokio::test]
async fn lists_show_unattempted_deliveries_and_logs_keep_success_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let answering = raw_receiver(|mut s| async move {
        use tokio::io::AsyncWriteExt;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\naccepted")
            .await;
    })
    .await;
    let t = bootstrap(&server, "dev-l").await;
    let mut ids = Vec::new();
    for url in [format!("http://{answering}/"), receiver.url("/")] {
        let (status, w) = call(
            &server,
            M::POST,
            "/v1/webhooks",
            &t.token,
            Some(json!({"url": url, "events": ["*"]})),
        )
        .await;
        assert_eq!(status, 201, "{w}");
        ids.push(w["id"].as_str().expect("id").to_owned());
    }
    let (with_body, wh) = (ids[0].clone(), ids[1].clone());
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-l", "message.received", "{}"))
        .await
        .expect("publish");
    receiver.wait_for(1, 10).await;
    // A success's answer body is kept in its attempt log.
    let first = eventually(10, "the delivered delivery listed", || async {
        let (_, l) = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{with_body}/deliveries"),
            &t.token,
            None,
        )
        .await;
        (l["data"][0]["status"] == "delivered")
            .then(|| l["data"][0]["id"].as_str().map(str::to_owned))?
    })
    .await;
    let (_, d) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{first}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(d["attempt_log"][0]["response_body"], "accepted", "{d}");
    let list_path = format!("/v1/webhooks/{wh}/deliveries");
    eventually(10, "the first delivery listed", || async {
        let (_, l) = call(&server, M::GET, &list_path, &t.token, None).await;
        (l["data"][0]["status"] == "delivered").then_some(())
    })
    .await;

    // Now hold every request and replay: the new delivery has no attempt yet.
    receiver.hold();
    let (status, r) = call(
        &server,
        M::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        &t.token,
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    let listed = eventually(10, "the replayed delivery listed", || async {
        let (_, l) = call(
            &server,
            M::GET,
            &format!("{list_path}?status=pending"),
            &t.token,
            None,
        )
        .await;
        l["data"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[0]["attempts"], 0);
    let (_, all) = call(&server, M::GET, &list_path, &t.token, None).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2), "{all}");
    receiver.release();
}

/// `Retry-After` is honoured as asked, shorter or longer than the backoff.
#[tokio::test]
async fn retry_after_is_honoured_shorter_and_longer_than_the_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Backoff of the first retry: 1.5 s.
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(1500)
        .start();
    let t = bootstrap(&server, "dev-ra").await;
    let mut hooks = Vec::new();
    for retry_after in ["0", "3"] {
        let addr = raw_receiver(move |mut s| async move {
            use tokio::io::AsyncWriteExt;
            let head = format!(
                "HTTP/1.1 503 Busy\r\nretry-after: {retry_after}\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes()).await;
        })
        .await;
        let (status, w) = call(
            &server,
            M::POST,
            "/v1/webhooks",
            &t.token,
            Some(json!({"url": format!("http://{addr}/"), "events": ["*"], "retry_attempts": 1})),
        )
        .await;
        assert_eq!(status, 201, "{w}");
        hooks.push((retry_after, w["id"].as_str().expect("id").to_owned()));
    }
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-ra", "message.received", "{}"))
        .await
        .expect("publish");
    let started = Instant::now();
    for (retry_after, wh) in &hooks {
        let d = failed_delivery(&server, &t.token, wh).await;
        let (_, detail) = call(
            &server,
            M::GET,
            &format!("/v1/deliveries/{}", d["id"].as_str().expect("id")),
            &t.token,
            None,
        )
        .await;
        let log = detail["attempt_log"].as_array().expect("log");
        assert_eq!(log.len(), 2, "{detail}");
        let at = |i: usize| {
            time::OffsetDateTime::parse(
                log[i]["started_at"].as_str().expect("started_at"),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("rfc3339")
        };
        let gap = (at(1) - at(0)).whole_milliseconds();
        match *retry_after {
            "0" => assert!(gap < 1200, "Retry-After 0 waited {gap} ms (backoff 1500)"),
            _ => assert!((2900..6000).contains(&gap), "Retry-After 3 waited {gap} ms"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A request id (the client's `x-request-id`) is echoed, carried by the JSON
/// log lines of the request, which name the event it appended; the delivery's
/// lines carry that event id and the delivery id.
#[tokio::test]
async fn a_request_id_joins_the_request_and_its_delivery_in_json_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .env(
            "RUST_LOG",
            "warn,hookrelay_api=debug,hookrelay_ingest=debug,hookrelay_worker=debug",
        )
        .set("log", "format", "json")
        .logs_to(&log)
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-trace").await;
    let (status, _) = configure(
        &server,
        &t.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"]}),
    )
    .await;
    assert_eq!(status, 200);
    let resp = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .header("x-request-id", "trace-me-42")
        .json(&json!({"id": "evt-traced", "device_id": "dev-trace", "event": "message.received", "data": {}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
    receiver.wait_for(1, 10).await;
    let lines = eventually(10, "the delivery's log line", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines
            .iter()
            .any(|l| l.to_string().contains("evt-traced") && l.to_string().contains("delivery_id"))
            .then_some(lines)
    })
    .await;
    let request: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains("trace-me-42"))
        .collect();
    assert!(
        request.iter().any(|l| l["event_id"] == "evt-traced"),
        "the request's lines name the event: {request:?}"
    );
    let delivery = lines
        .iter()
        .find(|l| l.to_string().contains("delivery_id") && l.to_string().contains("evt-traced"))
        .expect("delivery line");
    assert!(delivery.to_string().contains("dlv_"), "{delivery}");
}

/// A fan-out delivery whose first attempt is still in flight (its endpoint
/// holds the request, so nothing is recorded yet) is in the list, pending,
/// and so is one the scheduler has not dispatched yet.
#[tokio::test]
async fn lists_show_deliveries_whose_first_attempt_is_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    // An endpoint that counts the requests it reads and answers none of
    // them until the gate opens.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (s2, g2) = (seen.clone(), gate.clone());
    let endpoint = raw_receiver(move |mut st| {
        let (seen, gate) = (s2.clone(), g2.clone());
        async move {
            use tokio::io::AsyncWriteExt;
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _permit = gate.acquire().await;
            let _ = st.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    })
    .await;
    let t = bootstrap(&server, "dev-f").await;
    let (status, w) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": format!("http://{endpoint}/"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let wh = w["id"].as_str().expect("id").to_owned();
    let mut client = grpc(&server).await;
    for _ in 0..2 {
        publish(&mut client, event("dev-f", "message.received", "{}"))
            .await
            .expect("publish");
    }
    // The first request reaches the endpoint and is held there.
    eventually(10, "the first attempt in flight", || async {
        (seen.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let list_path = format!("/v1/webhooks/{wh}/deliveries");
    let (status, l) = call(&server, M::GET, &list_path, &t.token, None).await;
    assert_eq!(status, 200, "{l}");
    let data = l["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 2, "{l}");
    for d in &data {
        assert_eq!(d["status"], "pending", "{l}");
        assert_eq!(d["attempts"], 0, "{l}");
        assert_eq!(d["event"], "message.received", "{l}");
    }
    // Pages of one walk both, in log order, and the ids open.
    let (_, p1) = call(
        &server,
        M::GET,
        &format!("{list_path}?limit=1"),
        &t.token,
        None,
    )
    .await;
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, p2) = call(
        &server,
        M::GET,
        &format!("{list_path}?limit=1&cursor={cursor}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(p1["data"][0]["id"], data[0]["id"], "{p1}");
    assert_eq!(p2["data"][0]["id"], data[1]["id"], "{p2}");
    let id = data[0]["id"].as_str().expect("id");
    let (status, one) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{id}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    gate.add_permits(16);
    eventually(10, "both delivered", || async {
        let (_, l) = call(&server, M::GET, &list_path, &t.token, None).await;
        let a = l["data"].as_array()?.clone();
        (a.len() == 2 && a.iter().all(|d| d["status"] == "delivered")).then_some(())
    })
    .await;
}

/// Every id of `path`'s list in `order`, following `next_cursor` two at a
/// time.
async fn walk(server: &Server, token: &str, path: &str, order: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            server,
            M::GET,
            &format!("{path}?limit=2&order={order}&cursor={cursor}"),
            token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        for d in page["data"].as_array().cloned().unwrap_or_default() {
            out.push((
                d["id"].as_str().unwrap_or_default().to_owned(),
                d["status"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
        assert!(out.len() < 100, "the walk does not end: {out:?}");
    }
}

/// `order=newest` lists the same deliveries as the default, backwards: the
/// ones still in flight (nothing written for them yet) first, then replayed
/// and delivered ones, across pages.
#[tokio::test]
async fn lists_newest_first_walk_the_same_deliveries_backwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-n").await;
    let (status, w) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": receiver.url("/"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let wh = w["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/webhooks/{wh}/deliveries");
    let mut client = grpc(&server).await;
    for _ in 0..3 {
        publish(
            &mut client,
            event("dev-n", "message.received", r#"{"n":1}"#),
        )
        .await
        .expect("publish");
    }
    receiver.wait_for(3, 10).await;
    // Replayed: three more deliveries (a later generation of each event).
    let (status, r) = call(
        &server,
        M::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        &t.token,
        Some(json!({"since": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!((status, r["replayed"].as_u64()), (202, Some(3)), "{r}");
    receiver.wait_for(6, 10).await;
    eventually(10, "six delivered", || async {
        let all = walk(&server, &t.token, &path, "oldest").await;
        (all.len() == 6 && all.iter().all(|(_, s)| s == "delivered")).then_some(())
    })
    .await;
    // Two more, held at the receiver: in flight, nothing written for them.
    receiver.hold();
    for _ in 0..2 {
        publish(&mut client, event("dev-n", "message.received", "{}"))
            .await
            .expect("publish");
    }
    eventually(10, "eight listed", || async {
        (walk(&server, &t.token, &path, "oldest").await.len() == 8).then_some(())
    })
    .await;
    let oldest = walk(&server, &t.token, &path, "oldest").await;
    let newest = walk(&server, &t.token, &path, "newest").await;
    assert_eq!(oldest.len(), 8, "{oldest:?}");
    let mut backwards = oldest.clone();
    backwards.reverse();
    assert_eq!(newest, backwards);
    assert_eq!(
        newest[..2]
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>(),
        ["pending", "pending"],
        "the newest are the ones in flight: {newest:?}"
    );
    // A delivery shows what was sent.
    let (_, one) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{}", newest[7].0),
        &t.token,
        None,
    )
    .await;
    assert_eq!(one["data"], json!({"n": 1}), "{one}");
    let (status, e) = call(
        &server,
        M::GET,
        &format!("{path}?order=sideways"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["details"][0]["field"], "order", "{e}");
    receiver.release();
}
