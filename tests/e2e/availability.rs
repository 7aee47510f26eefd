//! Availability under attack (docs/security.md, "Availability"): no
//! client, authenticated or not, and no tenant can take the engine away
//! from the others. Each test attacks the real binary the way the finding
//! it guards against was reproduced.

use crate::support::*;
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

/// The client preface of HTTP/2 and an empty SETTINGS frame: all an idle
/// attacker sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A connection to `to` from the loopback address `from` (the whole of
/// 127.0.0.0/8 is this machine's), that sent `hello`; `None` when the
/// connect failed.
async fn open_from(from: Ipv4Addr, to: SocketAddr, hello: &[u8]) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((from, 0))).ok()?;
    let mut stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
        .await
        .ok()?
        .ok()?;
    stream.write_all(hello).await.ok()?;
    Some(stream)
}

/// Whether the server has closed `stream` (end of stream or a reset),
/// reading what it sent meanwhile.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The test process opens more connections than the server may hold.
fn raise_own_descriptor_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

#[tokio::test]
async fn idle_http2_connections_cannot_exhaust_the_descriptors() {
    raise_own_descriptor_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("server.log");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .nofile(1024)
        .logs_to(&logs)
        .start();
    let t = bootstrap(&server, "dev-idle").await;
    let rx = Receiver::start().await;
    let (status, _) = configure(
        &server,
        &t.token,
        serde_json::json!({"url": rx.url("/hook"), "events": ["*"]}),
    )
    .await;
    assert_eq!(status, 200);
    // 1,050 connections that send only the preface, from 21 addresses (50
    // each, under the per-address cap): together past the descriptors.
    let mut attack = Vec::new();
    for i in 0..1050u32 {
        let from = Ipv4Addr::new(127, 0, 1, 2 + (i % 21) as u8);
        if let Some(s) = open_from(from, server.grpc_addr, H2_PREFACE).await {
            attack.push(s);
        }
    }
    // Everyone else is served meanwhile: REST, and gRPC on a new channel.
    let started = Instant::now();
    let health = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("REST answers under the flood");
    assert_eq!(health.status(), 200);
    let mut client = tokio::time::timeout(Duration::from_secs(3), grpc(&server))
        .await
        .expect("a new gRPC channel connects under the flood");
    let published = tokio::time::timeout(
        Duration::from_secs(3),
        publish(
            &mut client,
            event("dev-idle", "message.received", "{\"n\":1}"),
        ),
    )
    .await
    .expect("Publish answers under the flood");
    assert!(published.is_ok(), "{published:?}");
    rx.wait_for(1, 10).await;
    assert!(started.elapsed() < Duration::from_secs(8));
    // The idle ones are all closed within the first-request timeout (5 s).
    let mut still_open = 0;
    for s in &mut attack {
        if !closed_within(s, Duration::from_millis(50)).await {
            still_open += 1;
        }
    }
    // (Those read above had 50 ms each; the last ones may still be young.)
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut lingering = 0;
    for s in &mut attack {
        if !closed_within(s, Duration::from_millis(20)).await {
            lingering += 1;
        }
    }
    assert_eq!(
        lingering, 0,
        "{lingering} preface-only connections still open after the first-request timeout ({still_open} were before)"
    );
    let log = std::fs::read_to_string(&logs).unwrap_or_default();
    assert!(
        !log.contains("Too many open files"),
        "the server ran out of descriptors"
    );
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    raise_own_descriptor_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("grpc", "max_connections_per_address", "20")
        .set("http", "max_connections_per_address", "20")
        .start();
    let from = Ipv4Addr::new(127, 0, 2, 9);
    for (what, addr, hello) in [
        ("gRPC", server.grpc_addr, H2_PREFACE),
        (
            "REST",
            server.http_addr,
            b"GET /healthz HTTP/1.1\r\n".as_slice(),
        ),
    ] {
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(open_from(from, addr, hello).await.expect("connect"));
        }
        // Give the server time to take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = open_from(from, addr, hello).await.expect("connect");
        assert!(
            closed_within(&mut extra, Duration::from_secs(1)).await,
            "{what}: a 21st connection of one address was kept"
        );
        // Another address is not affected.
        let mut other = open_from(Ipv4Addr::new(127, 0, 2, 10), addr, hello)
            .await
            .expect("connect");
        assert!(
            !closed_within(&mut other, Duration::from_millis(300)).await,
            "{what}: another address was refused"
        );
        drop(held);
    }
    let refused = metric(
        &server,
        "hookrelay_connections_refused_total{listener=\"grpc\",reason=\"address_full\"}",
    )
    .await;
    assert_eq!(refused, Some(1.0));
}

/// `POST /v1/webhooks/{id}/replay` of everything since the epoch.
async fn replay(server: &Server, token: &str, webhook_id: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("/v1/webhooks/{webhook_id}/replay")))
        .bearer_auth(token)
        .json(&serde_json::json!({"since": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("replay");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn one_tenants_replays_fill_only_its_own_share_of_pending_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Shares small enough to fill in a test; the engine-wide limit far off.
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("ingest", "max_pending_per_organization", "300")
        .set("ingest", "max_pending_per_webhook", "10000")
        .start();
    let a = bootstrap(&server, "dev-tenant-a").await;
    let b = bootstrap(&server, "dev-tenant-b").await;
    let rx_a = Receiver::start().await;
    // B's endpoint never answers: its deliveries stay pending.
    let rx_b = Receiver::start().await;
    rx_b.hold();
    let (s, _) = configure(
        &server,
        &a.token,
        serde_json::json!({"url": rx_a.url("/a"), "events": ["*"]}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, wb) = call(
        &server,
        reqwest::Method::POST,
        "/v1/webhooks",
        &b.token,
        Some(serde_json::json!({"url": rx_b.url("/b"), "events": ["*"]})),
    )
    .await;
    assert_eq!(s, 201, "{wb}");
    let wb_id = wb["id"].as_str().expect("webhook id").to_owned();
    let mut client = grpc(&server).await;
    let events: Vec<_> = (0..200)
        .map(|i| {
            event(
                "dev-tenant-b",
                "message.received",
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    publish_batch(&mut client, events)
        .await
        .expect("B publishes");
    // Three replays: the first fits B's share, then B is at it.
    let (s, r) = replay(&server, &b.token, &wb_id).await;
    assert_eq!(s, 202, "{r}");
    let mut refused = None;
    for _ in 0..2 {
        let (s, r) = eventually(10, "B's replay to be refused", || async {
            let (s, r) = replay(&server, &b.token, &wb_id).await;
            (s != 202).then_some((s, r))
        })
        .await;
        refused = Some((s, r));
    }
    let (s, r) = refused.expect("refused");
    assert_eq!(s, 429, "{r}");
    assert_eq!(r["error"]["code"], "RATE_LIMITED", "{r}");
    // B's own ingest is refused...
    let b_publish = eventually(10, "B's publish to be refused", || async {
        let mut c = grpc(&server).await;
        publish(&mut c, event("dev-tenant-b", "message.received", "{}"))
            .await
            .err()
    })
    .await;
    assert_eq!(
        b_publish.code(),
        tonic::Code::ResourceExhausted,
        "{b_publish:?}"
    );
    let b_http = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&serde_json::json!({"device_id": "dev-tenant-b", "event": "message.received", "data": {}}))
        .send()
        .await
        .expect("POST /v1/events");
    assert_eq!(b_http.status(), 429);
    assert!(b_http.headers().contains_key("retry-after"));
    // ... while A publishes and is delivered as if B were not there.
    for i in 0..5 {
        publish(
            &mut client,
            event(
                "dev-tenant-a",
                "message.received",
                &format!("{{\"n\":{i}}}"),
            ),
        )
        .await
        .expect("A publishes while B is over its share");
    }
    rx_a.wait_for(5, 10).await;
    let a_http = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&serde_json::json!({"device_id": "dev-tenant-a", "event": "message.received", "data": {}}))
        .send()
        .await
        .expect("POST /v1/events");
    assert!(a_http.status().is_success(), "{}", a_http.status());
    // B's replays queued within its share: it never went far past it.
    let pending = metric(&server, "hookrelay_deliveries_pending")
        .await
        .unwrap_or(0.0);
    assert!(pending <= 300.0 + 6.0 + 1024.0, "pending {pending}");
    let _ = a.org_id;
}

/// Sends a request head announcing a 100-byte JSON body, then trickles the
/// body a byte every 200 ms; returns the answer's status line and how long
/// it took.
async fn trickle_body(addr: SocketAddr, path: &str, auth: Option<&str>) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if s.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer in 30 s"
        );
    }
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or("").to_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_and_an_unauthenticated_one_is_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("http", "body_read_timeout", "\"1s\"")
        .set("http", "min_body_bytes_per_second", "1024")
        .start();
    let t = bootstrap(&server, "dev-slow").await;
    // No credential, and a wrong one: 401 before a byte of the body.
    for auth in [None, Some("not-a-token")] {
        let (status, took) = trickle_body(server.http_addr, "/v1/webhooks", auth).await;
        assert!(status.contains(" 401 "), "{status}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    // A tenant that trickles is answered 408 at the deadline, whatever its
    // pace would allow; others are served meanwhile.
    let slow = tokio::spawn({
        let addr = server.http_addr;
        let token = t.token.clone();
        async move { trickle_body(addr, "/v1/webhooks", Some(&token)).await }
    });
    let other = bootstrap(&server, "dev-quick").await;
    let (s, _) = call(
        &server,
        reqwest::Method::GET,
        "/v1/webhooks",
        &other.token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (status, took) = slow.await.expect("slow client");
    assert!(status.contains(" 408 "), "{status}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn the_ssrf_guard_refuses_ipv4_translated_and_discard_only_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("delivery", "allow_private_targets", "false")
        .start();
    let t = bootstrap(&server, "dev-ssrf").await;
    let mut ids = Vec::new();
    for host in ["[::ffff:0:7f00:1]", "[100::1]"] {
        let (s, w) = call(
            &server,
            reqwest::Method::POST,
            "/v1/webhooks",
            &t.token,
            Some(serde_json::json!({"url": format!("http://{host}:9/"), "events": ["message.sent"], "retry_attempts": 0})),
        )
        .await;
        assert_eq!(s, 201, "{w}");
        ids.push(w["id"].as_str().expect("id").to_owned());
    }
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-ssrf", "message.sent", "{}"))
        .await
        .expect("publish");
    for id in &ids {
        let d = failed_delivery(&server, &t.token, id).await;
        assert_eq!(d["last_error"], "blocked_address", "{d}");
    }
}

#[tokio::test]
async fn failed_grpc_authentications_are_limited_per_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let mut client = grpc(&server).await;
    let mut codes = Vec::new();
    for _ in 0..60 {
        let r = publish_with(
            &mut client,
            "wrong-key-0123456789abcdef0123456789",
            event("dev-x", "message.sent", "{}"),
        )
        .await;
        codes.push(r.expect_err("a wrong key is refused").code());
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == tonic::Code::Unauthenticated)
        .count();
    let limited = codes
        .iter()
        .filter(|c| **c == tonic::Code::ResourceExhausted)
        .count();
    // The burst (20) and what refilled meanwhile, then the limit.
    assert!((20..40).contains(&unauthenticated), "{codes:?}");
    assert_eq!(unauthenticated + limited, 60, "{codes:?}");
    // The budget counts failures only: the right key is not held back.
    let t = bootstrap(&server, "dev-x").await;
    let _ = t;
    publish(&mut client, event("dev-x", "message.sent", "{}"))
        .await
        .expect("the right key publishes");
}

#[tokio::test]
async fn metrics_are_served_to_the_operator_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-metrics").await;
    let rx = Receiver::start().await;
    let (s, _) = configure(
        &server,
        &t.token,
        serde_json::json!({"url": rx.url("/hook"), "events": ["*"]}),
    )
    .await;
    assert_eq!(s, 200);
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-metrics", "message.received", "{}"))
        .await
        .expect("publish");
    rx.wait_for(1, 10).await;
    // The tenant-facing listener has no /metrics, with a credential or without.
    let http = reqwest::Client::new();
    for token in [None, Some(t.token.as_str())] {
        let mut req = http.get(server.url("/metrics"));
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        let resp = req.send().await.expect("GET /metrics");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert!(status == 404 || status == 401, "{status}");
        assert!(!text.contains("hookrelay_"), "{text}");
    }
    // The operator's listener has them, the target hosts' labels included.
    let text = reqwest::get(server.metrics_url())
        .await
        .expect("operator metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("hookrelay_events_ingested_total"), "{text}");
    assert!(server
        .metrics_addr
        .expect("metrics listener")
        .ip()
        .is_loopback());
}

/// Bytes as they are: to send a message no protobuf library would write.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

#[tokio::test]
async fn bad_input_is_answered_as_the_contract_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-strict").await;
    // A Publish whose message is not protobuf: INVALID_ARGUMENT.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let mut req = tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {INGEST_KEY}").parse().expect("metadata"),
    );
    let path = http::uri::PathAndQuery::from_static("/hookrelay.ingest.v1.IngestService/Publish");
    let status = raw
        .unary(req, path, RawCodec)
        .await
        .expect_err("a malformed message is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // POST /v1/events takes JSON only.
    let http = reqwest::Client::new();
    let json = r#"{"device_id":"dev-strict","event":"message.received","data":{}}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = http
            .post(server.url("/v1/events"))
            .bearer_auth(INGEST_KEY)
            .body(json);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("POST /v1/events");
        assert_eq!(resp.status(), 415, "{ct:?}");
    }
    // Management bodies: a content type is required, each key once.
    let resp = http
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .body(r#"{"url":"https://a.example/","events":["*"]}"#)
        .send()
        .await
        .expect("POST /v1/webhooks");
    assert_eq!(resp.status(), 415);
    let resp = http
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .header("content-type", "application/json")
        .body(r#"{"url":"https://a.example/","url":"https://b.example/","events":["*"]}"#)
        .send()
        .await
        .expect("POST /v1/webhooks");
    assert_eq!(resp.status(), 400);
    let e: serde_json::Value = resp.json().await.expect("json");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate key")),
        "{e}"
    );
}
