//! Abusive REST clients: slowloris, deep nesting, invalid UTF-8, huge header
//! maps. None of them gets a 5xx or takes the server down.

use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_slowloris_client_is_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("http", "header_read_timeout", "\"1s\"")
        .start();
    let mut slow = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    // Trickle a header byte by byte, never finishing the head.
    let trickle = async {
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    // Meanwhile everyone else is served.
    assert_eq!(
        reqwest::get(server.url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was not disconnected");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn hostile_bodies_and_headers_get_clean_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-a").await;
    let http = reqwest::Client::new();
    let deep = format!("{{\"url\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    let resp = http
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("deep");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    let resp = http
        .post(server.url("/webhook"))
        .bearer_auth(&t.token)
        .header("content-type", "application/json")
        .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'])
        .send()
        .await
        .expect("utf8");
    assert_eq!(resp.status(), 400);
    let mut req = http.get(server.url("/v1/webhooks")).bearer_auth(&t.token);
    for i in 0..300 {
        req = req.header(format!("x-junk-{i}"), "v");
    }
    let resp = req.send().await.expect("headers");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .header("content-type", "application/json")
        .body(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)))
        .send()
        .await
        .expect("deep ingest");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        reqwest::get(server.url("/healthz"))
            .await
            .expect("alive")
            .status(),
        200
    );
}
