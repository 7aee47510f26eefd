//! A mixed population of misbehaving endpoints: each delivery must end in the
//! state its endpoint's behaviour implies, healthy endpoints get everything,
//! nothing stays pending, and attempt counts follow the retry policy.

use crate::support::*;
use serde_json::{json, Value};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{io::AsyncWriteExt, net::TcpListener};

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Healthy,
    Status(u16),
    Slow(u64),
    Hang,
    Reset,
    Garbage,
    CloseMidBody,
    /// Fails the first n requests with 500, then answers 200.
    Flip(usize),
}

/// A raw HTTP endpoint with one behaviour; counts requests.
async fn endpoint(b: Behaviour) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                loop {
                    if !read_request(&mut s).await {
                        return;
                    }
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".as_slice();
                    let fail =
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope"
                            .as_slice();
                    match b {
                        Behaviour::Healthy => {
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                        Behaviour::Status(code) => {
                            let r = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nno");
                            if s.write_all(r.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Behaviour::Slow(ms) => {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                        Behaviour::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        Behaviour::Reset => {
                            #[allow(deprecated)]
                            let _ = s.set_linger(Some(Duration::ZERO));
                            return;
                        }
                        Behaviour::Garbage => {
                            let _ = s.write_all(b"HELLO THERE\r\n\r\n").await;
                            return;
                        }
                        Behaviour::CloseMidBody => {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                                .await;
                            return;
                        }
                        Behaviour::Flip(first) => {
                            let r = if n < first { fail } else { ok };
                            if s.write_all(r).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_ends_as_its_endpoint_implies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(100)
        .start();
    let t = bootstrap(&server, "dev-f").await;
    // (behaviour, expected status, expected attempts per delivery, expected error)
    let population = [
        (Behaviour::Healthy, "delivered", 1, None),
        (Behaviour::Status(500), "failed", 3, Some("http_5xx")),
        (Behaviour::Status(404), "failed", 3, Some("http_4xx")),
        (Behaviour::Slow(300), "delivered", 1, None),
        (Behaviour::Hang, "failed", 3, Some("timeout")),
        (Behaviour::Reset, "failed", 3, Some("connect_error")),
        (Behaviour::Garbage, "failed", 3, None),
        // A 2xx whose body is cut off is no delivery (the whole answer counts).
        (Behaviour::CloseMidBody, "failed", 3, None),
        (Behaviour::Flip(2), "delivered", 0, None),
    ];
    let http = reqwest::Client::new();
    let mut hooks = Vec::new();
    for (b, status, attempts, error) in population {
        let (url, count) = endpoint(b).await;
        let v: Value = http
            .post(server.url("/v1/webhooks"))
            .bearer_auth(&t.token)
            .json(&json!({"url": url, "events": ["*"], "retry_attempts": 2, "timeout": 1}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        hooks.push((
            b,
            v["id"].as_str().expect("id").to_owned(),
            status,
            attempts,
            error,
            count,
        ));
    }
    let mut client = grpc(&server).await;
    const N: usize = 3;
    for i in 0..N {
        publish(
            &mut client,
            event("dev-f", "message.sent", &format!(r#"{{"i":{i}}}"#)),
        )
        .await
        .expect("publish");
    }
    // Everything settles: nothing pending. The gauges are refreshed together
    // each tick, so seeing the whole log fanned out and nothing pending in the
    // same scrape means the deliveries of all N events have ended.
    eventually(60, "every delivery settled", || async {
        let text = reqwest::get(server.metrics_url())
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let g = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        (log_events(&text) == N as f64
            && g("hookrelay_fanout_lag_events") == Some(0.0)
            && g("hookrelay_deliveries_pending") == Some(0.0))
        .then_some(())
    })
    .await;
    for (b, id, status, attempts, error, count) in &hooks {
        let list: Value = http
            .get(server.url(&format!("/v1/webhooks/{id}/deliveries?limit=100")))
            .bearer_auth(&t.token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let data = list["data"].as_array().expect("data");
        assert_eq!(data.len(), N, "{b:?}: {list}");
        for d in data {
            assert_eq!(d["status"], *status, "{b:?}: {d}");
            if *attempts > 0 {
                assert_eq!(d["attempts"], *attempts, "{b:?}: {d}");
            }
            if let Some(e) = error {
                assert_eq!(d["last_error"], *e, "{b:?}: {d}");
            }
        }
        let requests = count.load(Ordering::SeqCst);
        match b {
            Behaviour::Healthy | Behaviour::Slow(_) => assert_eq!(requests, N, "{b:?}"),
            // Two failures, then every delivery succeeds: N + 2 requests.
            Behaviour::Flip(n) => assert_eq!(requests, N + n, "{b:?}"),
            Behaviour::Status(_)
            | Behaviour::Hang
            | Behaviour::Reset
            | Behaviour::Garbage
            | Behaviour::CloseMidBody => {
                assert_eq!(requests, 3 * N, "{b:?}: 1 + retry_attempts each")
            }
        }
    }
}
