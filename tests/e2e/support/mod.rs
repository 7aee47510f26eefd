//! Test harness: a server builder that runs the real binary, a recording
//! receiver, tenancy bootstrap and a gRPC publisher.

#![allow(dead_code)]

mod receiver;
mod server;

pub use receiver::{Received, Receiver};
pub use server::{free_port, nats_urls, on_jetstream, Server, ServerBuilder};

/// Whether the suite runs on the embedded store, where sequences count
/// events from 1 (on JetStream they carry their partition and message).
pub fn on_sled() -> bool {
    nats_urls().is_none()
}

/// What a fresh server's log holds, by its gauge: on sled the highest
/// sequence, which counts events; on JetStream, whose sequences do not,
/// the events this node accepted.
pub fn log_events(text: &str) -> f64 {
    if on_sled() {
        return parse_metric(text, "hookrelay_log_sequence").unwrap_or(0.0);
    }
    text.lines()
        .filter(|l| l.starts_with("hookrelay_events_ingested_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether `n` events are in a fresh server's log and fanned out.
pub async fn fanned_out(server: &Server, n: u64) -> bool {
    let Ok(text) = reqwest::get(server.metrics_url()).await else {
        return false;
    };
    let Ok(text) = text.text().await else {
        return false;
    };
    log_events(&text) == n as f64 && parse_metric(&text, "hookrelay_fanout_lag_events") == Some(0.0)
}

use hookrelay_ingest::proto::{
    ingest_service_client::IngestServiceClient, Event, PublishBatchRequest, PublishBatchResponse,
    PublishRequest, PublishResponse,
};
use serde_json::{json, Value};
use std::time::Duration;
use tonic::transport::Channel;

/// The ingest key every test server accepts.
pub const INGEST_KEY: &str = "test-ingest-key-0123456789abcdef";
/// The operator key every test server accepts.
pub const OPERATOR_KEY: &str = "test-operator-key-0123456789";

/// A device's credentials, obtained through the real routes.
pub struct Tenant {
    pub org_id: String,
    pub admin_key: String,
    pub device_id: String,
    pub token: String,
}

/// Binds `device_id` to `org_id` as the operator; returns status and JSON.
pub async fn bind(server: &Server, org_id: &str, device_id: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("/v1/organizations/{org_id}/apps")))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"id": device_id, "name": "phone"}))
        .send()
        .await
        .expect("bind app");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A device token for `device_id`, made with the admin key.
pub async fn device_token(server: &Server, admin_key: &str, device_id: &str) -> String {
    let resp = reqwest::Client::new()
        .post(server.url(&format!("/v1/organization/apps/{device_id}/tokens")))
        .header("x-api-key", admin_key)
        .send()
        .await
        .expect("create token");
    assert_eq!(resp.status(), 201);
    let token: Value = resp.json().await.expect("token json");
    assert!(
        token["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tok_")),
        "{token}"
    );
    let token = token["token"].as_str().expect("token").to_owned();
    assert!(
        uuid::Uuid::parse_str(&token).is_ok(),
        "token is a UUID: {token}"
    );
    token
}

/// Operator → organization → (operator binds) app → device token, through HTTP only.
pub async fn bootstrap(server: &Server, device_id: &str) -> Tenant {
    let http = reqwest::Client::new();
    let org: Value = http
        .post(server.url("/v1/organizations"))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .expect("create org")
        .error_for_status()
        .expect("org 201")
        .json()
        .await
        .expect("org json");
    let admin_key = org["admin_key"].as_str().expect("admin_key").to_owned();
    let org_id = org["id"].as_str().expect("org id").to_owned();
    assert!(admin_key.starts_with("sk_admin_"));
    let (status, app) = bind(server, &org_id, device_id).await;
    assert_eq!(status, 201, "{app}");
    let token = device_token(server, &admin_key, device_id).await;
    Tenant {
        org_id,
        admin_key,
        device_id: device_id.to_owned(),
        token,
    }
}

/// `POST /webhook` with `body`; returns status and JSON.
pub async fn configure(server: &Server, token: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.url("/webhook"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST /webhook");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// A gRPC client of the server's ingest service.
pub async fn grpc(server: &Server) -> IngestServiceClient<Channel> {
    IngestServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .expect("gRPC connect")
}

fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {key}").parse().expect("metadata value");
    req.metadata_mut().insert("authorization", value);
    req
}

/// An event with JSON `data`.
pub fn event(device_id: &str, event_type: &str, data: &str) -> Event {
    Event {
        id: String::new(),
        device_id: device_id.to_owned(),
        event_type: event_type.to_owned(),
        occurred_at: None,
        data: data.as_bytes().to_vec(),
    }
}

/// `Publish` with an ingest key.
pub async fn publish_with(
    client: &mut IngestServiceClient<Channel>,
    key: &str,
    e: Event,
) -> Result<PublishResponse, tonic::Status> {
    client
        .publish(with_key(PublishRequest { event: Some(e) }, key))
        .await
        .map(tonic::Response::into_inner)
}

/// `Publish` with the test ingest key.
pub async fn publish(
    client: &mut IngestServiceClient<Channel>,
    e: Event,
) -> Result<PublishResponse, tonic::Status> {
    publish_with(client, INGEST_KEY, e).await
}

/// `PublishBatch` with the test ingest key.
pub async fn publish_batch(
    client: &mut IngestServiceClient<Channel>,
    events: Vec<Event>,
) -> Result<PublishBatchResponse, tonic::Status> {
    publish_batch_with(client, INGEST_KEY, events).await
}

/// `PublishBatch` with an ingest key.
pub async fn publish_batch_with(
    client: &mut IngestServiceClient<Channel>,
    key: &str,
    events: Vec<Event>,
) -> Result<PublishBatchResponse, tonic::Status> {
    client
        .publish_batch(with_key(PublishBatchRequest { events }, key))
        .await
        .map(tonic::Response::into_inner)
}

/// A new organization: its id and admin key.
pub async fn organization(server: &Server, name: &str) -> (String, String) {
    let org: Value = reqwest::Client::new()
        .post(server.url("/v1/organizations"))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("create org")
        .error_for_status()
        .expect("org 201")
        .json()
        .await
        .expect("org json");
    (
        org["id"].as_str().expect("id").to_owned(),
        org["admin_key"].as_str().expect("admin_key").to_owned(),
    )
}

/// `PublishStream`: sends every event, returns the responses and the final
/// status (if the stream ended with an error).
pub async fn publish_stream(
    client: &mut IngestServiceClient<Channel>,
    events: Vec<Event>,
) -> (Vec<PublishResponse>, Option<tonic::Status>) {
    publish_stream_with(client, INGEST_KEY, events).await
}

/// [`publish_stream`] with an ingest key.
pub async fn publish_stream_with(
    client: &mut IngestServiceClient<Channel>,
    key: &str,
    events: Vec<Event>,
) -> (Vec<PublishResponse>, Option<tonic::Status>) {
    let reqs: Vec<PublishRequest> = events
        .into_iter()
        .map(|e| PublishRequest { event: Some(e) })
        .collect();
    let stream = tokio_stream::iter(reqs);
    let mut inbound = match client.publish_stream(with_key(stream, key)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (vec![], Some(s)),
    };
    let mut out = Vec::new();
    loop {
        match inbound.message().await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (out, None),
            Err(s) => return (out, Some(s)),
        }
    }
}

/// Reads one HTTP/1 request (head and a `content-length` body) from a raw
/// stream; `false` when the peer closed or the read failed first.
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    let mut got = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return true;
            }
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One sample of the Prometheus exposition, by its full series text
/// (e.g. `hookrelay_deliveries_created_total`).
pub async fn metric(server: &Server, series: &str) -> Option<f64> {
    let text = reqwest::get(server.metrics_url())
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    parse_metric(&text, series)
}

/// One sample of a Prometheus exposition text, by its full series text.
pub fn parse_metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A TCP endpoint that reads each request and answers it with `answer`
/// (raw bytes: for answers no HTTP library would write).
pub async fn raw_receiver<F, Fut>(answer: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await {
                    answer(stream).await;
                }
            });
        }
    });
    addr
}

/// The first failed delivery of a webhook, once there is one.
pub async fn failed_delivery(server: &Server, token: &str, webhook_id: &str) -> Value {
    eventually(15, "a failed delivery", || async {
        let v: Value = reqwest::Client::new()
            .get(server.url(&format!(
                "/v1/webhooks/{webhook_id}/deliveries?status=failed"
            )))
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["data"].as_array()?.first().cloned()
    })
    .await
}

/// A REST call with a bearer credential and an optional JSON body: status
/// and JSON answer (`Null` when the answer is not JSON).
pub async fn call(
    server: &Server,
    m: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(m, server.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts both signatures of a delivery made with `secret` (`whsec_…`):
/// the in-body HMAC over the envelope without its `signature`, and the
/// Standard Webhooks header over `id.timestamp.body`.
pub fn assert_signed(d: &Received, secret: &str) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    fn mac(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac key");
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }
    let body = std::str::from_utf8(&d.body).expect("utf8");
    let at = body
        .rfind(",\"signature\":\"")
        .expect("an in-body signature");
    let unsigned = format!("{}}}", &body[..at]);
    let expected = format!(
        "sha256={}",
        hex::encode(mac(secret.as_bytes(), unsigned.as_bytes()))
    );
    assert_eq!(
        d.json()["signature"],
        expected.as_str(),
        "in-body signature of {body}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let msg = format!(
        "{}.{}.{body}",
        d.header("webhook-id"),
        d.header("webhook-timestamp")
    );
    let sw = base64::engine::general_purpose::STANDARD.encode(mac(&key, msg.as_bytes()));
    assert!(
        d.header("webhook-signature")
            .split(' ')
            .any(|s| s == format!("v1,{sw}")),
        "Standard Webhooks signature of {body}"
    );
}
