//! Attacks on tenancy and trust (docs/api.md, docs/security.md), each against the real
//! binary: forged delivery ids, squatted device ids, replay across a
//! binding, organization ingest keys, revoked credentials, racing writes,
//! proxies around the SSRF guard, oversized unauthenticated gRPC, rate-limit
//! header forms, a storage fault, and a replay of a large log.

use crate::support::*;
use hookrelay_ingest::proto::ingest_service_client::IngestServiceClient;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn webhook(server: &Server, token: &str, url: &str, events: Value) -> String {
    let (status, w) = call(
        server,
        M::POST,
        "/v1/webhooks",
        token,
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    w["id"].as_str().expect("id").to_owned()
}

fn dlv(seq: u64, generation: u32, webhook_id: &str) -> String {
    let wh = webhook_id.strip_prefix("wh_").unwrap_or(webhook_id);
    format!("dlv_{seq:016x}{generation:08x}{wh}")
}

/// Finding 1: a delivery id is parsed, not trusted.
#[tokio::test]
async fn forged_delivery_ids_never_reach_another_tenants_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let (ra, rb) = (Receiver::start().await, Receiver::start().await);
    let a = bootstrap(&server, "dev-a").await;
    let b = bootstrap(&server, "dev-b").await;
    let wa = webhook(&server, &a.token, &ra.url("/"), json!(["*"])).await;
    webhook(&server, &b.token, &rb.url("/"), json!(["*"])).await;
    let mut client = grpc(&server).await;
    let mut b_seqs = Vec::new();
    for i in 0..5 {
        let data = format!(r#"{{"secret":"b-secret-{i}"}}"#);
        let r = publish(&mut client, event("dev-b", "message.received", &data))
            .await
            .expect("publish");
        b_seqs.push(r.sequence);
    }
    rb.wait_for(5, 10).await;
    let own = publish(&mut client, event("dev-a", "message.received", "{}"))
        .await
        .expect("publish")
        .sequence;
    ra.wait_for(1, 10).await;
    let now_gen = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("u32");
    // B's events, the first sequences, and those right after A's own.
    let mut forged: Vec<u64> = b_seqs.clone();
    forged.extend([1, 2, 3, own - 1, own + 1, own + 2, own + 3]);
    forged.sort_unstable();
    forged.dedup();
    for seq in forged.into_iter().filter(|s| *s != own && *s > 0) {
        for generation in [0, 1, 7, now_gen] {
            let id = dlv(seq, generation, &wa);
            let (get, got) = call(
                &server,
                M::GET,
                &format!("/v1/deliveries/{id}"),
                &a.token,
                None,
            )
            .await;
            assert_eq!(get, 404, "GET {id} (seq {seq}): {got}");
            let (retry, body) = call(
                &server,
                M::POST,
                &format!("/v1/deliveries/{id}/retry"),
                &a.token,
                None,
            )
            .await;
            assert_eq!(retry, 404, "retry {id} (seq {seq}): {body}");
        }
    }
    // A's own delivery is still there, and its receiver never saw B's data.
    let (status, _) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{}", dlv(own, 0, &wa)),
        &a.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leaked = ra
        .received()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("b-secret"))
        .count();
    assert_eq!(leaked, 0, "another tenant's events reached A's endpoint");
    assert_eq!(ra.count(), 1);
    assert!(b_seqs.iter().all(|s| *s != own));
}

/// Finding 2: device ids belong to the operator.
#[tokio::test]
async fn device_ids_cannot_be_squatted_and_bindings_are_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let a = bootstrap(&server, "dev-taken").await;
    let (org_b, admin_b) = organization(&server, "b").await;
    // Taken or fresh, an admin-chosen id gets the same 400 on field `id`.
    let mut answers = Vec::new();
    for id in ["dev-taken", "dev-fresh-5511987"] {
        let (status, body) = call(
            &server,
            M::POST,
            "/v1/organization/apps",
            &admin_b,
            Some(json!({"id": id, "name": "x"})),
        )
        .await;
        assert_eq!(status, 400, "{id}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], "id", "{body}");
        answers.push(body["error"].clone());
    }
    assert_eq!(
        answers[0], answers[1],
        "the answer tells nothing about the id"
    );
    let (_, apps) = call(&server, M::GET, "/v1/organization/apps", &admin_b, None).await;
    assert_eq!(apps["data"], json!([]));
    // Without an id: a server-assigned UUID v4.
    let (status, app) = call(
        &server,
        M::POST,
        "/v1/organization/apps",
        &admin_b,
        Some(json!({"name": "phone"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let uuid = uuid::Uuid::parse_str(app["id"].as_str().expect("id")).expect("uuid");
    assert_eq!(uuid.get_version_num(), 4);
    // The operator binds chosen ids; taken ones answer 409, also after delete.
    let (status, _) = bind(&server, &org_b, "dev-taken").await;
    assert_eq!(status, 409);
    let (status, _) = bind(&server, &org_b, "dev-new").await;
    assert_eq!(status, 201);
    let (status, _) = bind(&server, &org_b, "dev-new").await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &server,
        M::DELETE,
        "/v1/organization/apps/dev-new",
        &admin_b,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = bind(&server, &a.org_id, "dev-new").await;
    assert_eq!(status, 409, "a deleted app's id is never bound again");
    let (status, _) = bind(&server, "org_nope", "dev-x").await;
    assert_eq!(status, 404);
    let (status, orgs) = call(&server, M::GET, "/v1/organizations", OPERATOR_KEY, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = orgs["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert!(ids.contains(&a.org_id.as_str()) && ids.contains(&org_b.as_str()));
    let (status, _) = call(&server, M::GET, "/v1/organizations", &admin_b, None).await;
    assert_eq!(status, 401, "only the operator lists organizations");
}

/// Finding 2, replay side: events logged for a device id before its binding
/// are never delivered to the organization that bound it later.
#[tokio::test]
async fn replay_never_reaches_events_from_before_the_binding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let mut client = grpc(&server).await;
    for i in 0..3 {
        publish(
            &mut client,
            event(
                "dev-late",
                "message.received",
                &format!(r#"{{"before":{i}}}"#),
            ),
        )
        .await
        .expect("publish");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = bootstrap(&server, "dev-late").await;
    let wh = webhook(&server, &t.token, &receiver.url("/"), json!(["*"])).await;
    for i in 0..2 {
        publish(
            &mut client,
            event(
                "dev-late",
                "message.received",
                &format!(r#"{{"after":{i}}}"#),
            ),
        )
        .await
        .expect("publish");
    }
    receiver.wait_for(2, 10).await;
    let (status, body) = call(
        &server,
        M::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        &t.token,
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replayed"], 2, "{body}");
    receiver.wait_for(4, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = receiver
        .received()
        .iter()
        .filter(|r| r.json()["data"].get("before").is_some())
        .count();
    assert_eq!(before, 0);
    assert_eq!(receiver.count(), 4);
}

/// Finding 3: an organization's ingest key publishes for its own devices only.
#[tokio::test]
async fn organization_ingest_keys_publish_only_for_their_devices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let (ra, rb) = (Receiver::start().await, Receiver::start().await);
    let a = bootstrap(&server, "dev-a").await;
    let b = bootstrap(&server, "dev-b").await;
    webhook(&server, &a.token, &ra.url("/"), json!(["*"])).await;
    webhook(&server, &b.token, &rb.url("/"), json!(["*"])).await;
    let (status, created) = call(
        &server,
        M::POST,
        "/v1/organization/ingest-keys",
        &a.admin_key,
        Some(json!({"name": "gateway"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let key_id = created["id"].as_str().expect("id").to_owned();
    assert!(key.starts_with("ik_") && key_id.starts_with("ikid_"));
    let (_, list) = call(
        &server,
        M::GET,
        "/v1/organization/ingest-keys",
        &a.admin_key,
        None,
    )
    .await;
    assert_eq!(list["data"][0]["id"], key_id.as_str());
    assert!(list["data"][0].get("key").is_none(), "{list}");
    let (_, other) = call(
        &server,
        M::GET,
        "/v1/organization/ingest-keys",
        &b.admin_key,
        None,
    )
    .await;
    assert_eq!(other["data"], json!([]));

    let mut client = grpc(&server).await;
    publish_with(&mut client, &key, event("dev-a", "message.received", "{}"))
        .await
        .expect("own device");
    let foreign = publish_with(&mut client, &key, event("dev-b", "message.received", "{}"))
        .await
        .expect_err("foreign device");
    let unbound = publish_with(
        &mut client,
        &key,
        event("dev-none", "message.received", "{}"),
    )
    .await
    .expect_err("unbound device");
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);
    assert_eq!(unbound.code(), tonic::Code::PermissionDenied);
    assert_eq!(foreign.message(), unbound.message(), "one answer for both");
    let batch = publish_batch_with(
        &mut client,
        &key,
        vec![
            event("dev-a", "message.received", r#"{"batch":1}"#),
            event("dev-b", "message.received", r#"{"batch":1}"#),
        ],
    )
    .await
    .expect_err("batch with a foreign device");
    assert_eq!(batch.code(), tonic::Code::PermissionDenied);
    let (acks, end) = publish_stream_with(
        &mut client,
        &key,
        vec![
            event("dev-a", "message.received", r#"{"stream":1}"#),
            event("dev-b", "message.received", r#"{"stream":2}"#),
            event("dev-a", "message.received", r#"{"stream":3}"#),
        ],
    )
    .await;
    assert_eq!(acks.len(), 1, "only what came before the foreign event");
    assert_eq!(end.map(|s| s.code()), Some(tonic::Code::PermissionDenied));
    let http = reqwest::Client::new();
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(&key)
        .json(&json!({"device_id": "dev-b", "event": "message.received", "data": {}}))
        .send()
        .await
        .expect("http ingest");
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(&key)
        .json(&json!({"device_id": "dev-a", "event": "message.received", "data": {"http": 1}}))
        .send()
        .await
        .expect("http ingest");
    assert_eq!(resp.status(), 202);
    // The operator's key still publishes for anyone.
    publish(
        &mut client,
        event("dev-b", "message.received", r#"{"op":1}"#),
    )
    .await
    .expect("operator key");
    ra.wait_for(3, 10).await;
    rb.wait_for(1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ra.count(), 3, "own unary, own stream, own HTTP");
    assert_eq!(rb.count(), 1, "nothing of the organization key reached B");
    assert!(ra
        .received()
        .iter()
        .all(|r| r.json()["data"].get("batch").is_none()));
    // Revoked: refused from the next publish on.
    let (status, _) = call(
        &server,
        M::DELETE,
        &format!("/v1/organization/ingest-keys/{key_id}"),
        &b.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 404, "another organization cannot delete it");
    let (status, _) = call(
        &server,
        M::DELETE,
        &format!("/v1/organization/ingest-keys/{key_id}"),
        &a.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let gone = publish_with(&mut client, &key, event("dev-a", "message.received", "{}"))
        .await
        .expect_err("revoked");
    assert_eq!(gone.code(), tonic::Code::Unauthenticated);
}

/// Tokens have ids; a revoked token answers 401 at once.
#[tokio::test]
async fn revoked_tokens_answer_401_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-t").await;
    let other = bootstrap(&server, "dev-o").await;
    let (status, created) = call(
        &server,
        M::POST,
        "/v1/organization/apps/dev-t/tokens",
        &t.admin_key,
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    for k in ["id", "name", "token", "created_at"] {
        assert!(created.get(k).is_some(), "{k} missing: {created}");
    }
    let (id, token) = (
        created["id"].as_str().expect("id").to_owned(),
        created["token"].as_str().expect("token").to_owned(),
    );
    let (_, list) = call(
        &server,
        M::GET,
        "/v1/organization/apps/dev-t/tokens",
        &t.admin_key,
        None,
    )
    .await;
    let listed = list["data"].as_array().expect("data");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|x| x.get("token").is_none()), "{list}");
    let (status, _) = call(&server, M::GET, "/v1/webhooks", &token, None).await;
    assert_eq!(status, 200);
    let path = format!("/v1/organization/apps/dev-t/tokens/{id}");
    let (status, _) = call(&server, M::DELETE, &path, &other.admin_key, None).await;
    assert_eq!(status, 404, "another organization's admin");
    let (status, _) = call(&server, M::DELETE, &path, &t.admin_key, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, M::GET, "/v1/webhooks", &token, None).await;
    assert_eq!(status, 401);
    let (status, _) = call(&server, M::GET, "/v1/webhooks", &t.token, None).await;
    assert_eq!(status, 200, "the other token still works");
    let (status, _) = call(&server, M::DELETE, &path, &t.admin_key, None).await;
    assert_eq!(status, 404);
}

/// Finding 4: no interleaving loses a write, resurrects a deleted webhook or
/// exceeds the per-app limit.
#[tokio::test]
async fn racing_writes_never_resurrect_a_webhook_or_pass_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("api", "max_webhooks_per_app", "20")
        .set("api", "requests_per_second", "100000")
        .set("api", "burst", "100000")
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-race").await;
    let url = receiver.url("/");
    // Thirty creates at once against a limit of twenty.
    let creates = (0..30).map(|_| {
        let (server_url, token, url) = (server.url("/v1/webhooks"), t.token.clone(), url.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(server_url)
                .bearer_auth(token)
                .json(&json!({"url": url, "events": ["*"]}))
                .send()
                .await
                .expect("create")
                .status()
                .as_u16()
        })
    });
    let mut made = 0;
    for c in creates {
        if c.await.expect("task") == 201 {
            made += 1;
        }
    }
    assert_eq!(made, 20, "the per-app limit holds under concurrency");
    let (_, list) = call(&server, M::GET, "/v1/webhooks?limit=100", &t.token, None).await;
    assert_eq!(list["total"], 20);
    // PUT, PATCH, rotate and DELETE of each webhook, all at once.
    let ids: Vec<String> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_owned())
        .collect();
    let mut deleted = Vec::new();
    for round in 0..3 {
        let mut tasks = Vec::new();
        for id in &ids {
            for (m, suffix, body) in [
                (
                    M::PUT,
                    "",
                    Some(
                        json!({"url": url, "events": ["message.*"], "name": format!("put{round}")}),
                    ),
                ),
                (M::PATCH, "", Some(json!({"active": false}))),
                (M::POST, "/rotate-secret", None),
                (M::DELETE, "", None),
            ] {
                let (u, token, id) = (
                    server.url(&format!("/v1/webhooks/{id}{suffix}")),
                    t.token.clone(),
                    id.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut req = reqwest::Client::new()
                        .request(m.clone(), u)
                        .bearer_auth(token);
                    if let Some(b) = body {
                        req = req.json(&b);
                    }
                    let status = req.send().await.expect("send").status().as_u16();
                    (m, id, status)
                }));
            }
        }
        for task in tasks {
            let (m, id, status) = task.await.expect("task");
            if m == M::DELETE && status == 200 {
                deleted.push(id);
            }
        }
        if round == 0 {
            assert!(!deleted.is_empty());
        }
    }
    for id in &deleted {
        let (status, body) = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{id}"),
            &t.token,
            None,
        )
        .await;
        assert_eq!(status, 404, "{id} was deleted (200) and came back: {body}");
    }
    let (_, list) = call(&server, M::GET, "/v1/webhooks?limit=100", &t.token, None).await;
    assert_eq!(list["total"], 0, "{list}");
}

/// Finding 5: proxy variables never carry a delivery past the SSRF guard.
#[tokio::test]
async fn proxy_variables_never_carry_deliveries_past_the_guard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Receiver::start().await;
    let target = Receiver::start().await;
    let proxy_url = proxy.url("");
    let mut builder = ServerBuilder::new(&dir.path().join("data")).set(
        "delivery",
        "allow_private_targets",
        "false",
    );
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        builder = builder.env(var, &proxy_url);
    }
    let server = builder.env("NO_PROXY", "").env("no_proxy", "").start();
    let t = bootstrap(&server, "dev-p").await;
    let url = format!("http://localhost:{}/hook", target.addr.port());
    let wh = webhook(&server, &t.token, &url, json!(["*"])).await;
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-p", "message.received", "{}"))
        .await
        .expect("publish");
    let delivery = eventually(10, "a recorded attempt", || async {
        let (_, list) = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{wh}/deliveries"),
            &t.token,
            None,
        )
        .await;
        list["data"][0]["last_error"]
            .as_str()
            .map(str::to_owned)
            .map(|_| list["data"][0].clone())
    })
    .await;
    assert_eq!(delivery["last_error"], "blocked_address", "{delivery}");
    let id = delivery["id"].as_str().expect("id");
    let (_, detail) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{id}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(
        detail["attempt_log"][0]["response_body"], "blocked_address",
        "{detail}"
    );
    assert!(
        !detail.to_string().contains("127.0.0.1"),
        "the internal address leaked: {detail}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.count(), 0, "a delivery went through the proxy");
    assert_eq!(target.count(), 0);
}

/// Finding 6: an unauthenticated message costs no more than its headers.
#[tokio::test]
async fn unauthenticated_oversized_grpc_costs_no_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let client = IngestServiceClient::new(channel)
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    // Warm up the connection and the server's allocator.
    let _ = client
        .clone()
        .publish(hookrelay_ingest::proto::PublishRequest {
            event: Some(event("dev", "message.received", "{}")),
        })
        .await;
    let before = server.rss_bytes();
    let data = format!(r#"{{"x":"{}"}}"#, "a".repeat(24 << 20));
    let calls = (0..12).map(|_| {
        let mut c = client.clone();
        let e = event("dev", "message.received", &data);
        tokio::spawn(async move {
            c.publish(hookrelay_ingest::proto::PublishRequest { event: Some(e) })
                .await
                .map(|_| ())
        })
    });
    let mut peak = before;
    for c in calls {
        let status = c.await.expect("task").expect_err("unauthenticated");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        peak = peak.max(server.rss_bytes());
    }
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 48 << 20,
        "12 unauthenticated 24 MiB publishes grew the server by {} MiB",
        grew >> 20
    );
    // An authenticated message over the derived limit is refused before it is decoded.
    let small = ServerBuilder::new(&dir.path().join("small"))
        .set("ingest", "max_event_bytes", "1024")
        .set("ingest", "max_request_events", "2")
        .start();
    let mut c = grpc(&small).await;
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(100_000));
    let err = publish(&mut c, event("dev", "message.received", &big))
        .await
        .expect_err("over the message limit");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );
}

/// Finding 7: one credential, one bucket, whatever header form carries it;
/// failed authentications are limited too.
#[tokio::test]
async fn rate_limits_hold_whatever_the_header_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("api", "requests_per_second", "5")
        .set("api", "burst", "5")
        .start();
    let t = bootstrap(&server, "dev-rl").await;
    let http = reqwest::Client::new();
    let mut passed = 0;
    let start = Instant::now();
    for i in 0..48 {
        let req = http.get(server.url("/v1/webhooks"));
        let req = match i % 4 {
            0 => req.header("authorization", format!("Bearer {}", t.token)),
            1 => req.header("authorization", format!("bearer {}", t.token)),
            2 => req.header("authorization", format!("BEARER {}", t.token)),
            _ => req.header("x-api-key", &t.token),
        };
        if req.send().await.expect("send").status() == 200 {
            passed += 1;
        }
    }
    let allowed = 5 + (start.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        passed <= allowed,
        "{passed} of 48 passed; at most {allowed} may"
    );
    let mut limited = 0;
    for i in 0..40 {
        let resp = http
            .get(server.url("/v1/webhooks"))
            .bearer_auth(format!("wrong-token-{i}"))
            .send()
            .await
            .expect("send");
        match resp.status().as_u16() {
            401 => {}
            429 => {
                assert!(resp.headers().contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        limited >= 15,
        "only {limited} of 40 failed authentications were limited"
    );
}

/// Finding 8: a storage fault that does not heal fails readiness and the process.
#[tokio::test]
async fn a_storage_fault_fails_readiness_and_exits_non_zero() {
    if on_jetstream("a_storage_fault_fails_readiness_and_exits_non_zero (sled's fail points)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .env("FAILPOINTS", "store::due=100*off->return")
        .start();
    let http = reqwest::Client::new();
    let ready = || async {
        match http.get(server.url("/readyz")).send().await {
            Ok(r) => Some(r.status().as_u16()),
            Err(_) => None,
        }
    };
    assert_eq!(ready().await, Some(200));
    eventually(20, "/readyz 503", || async {
        (ready().await == Some(503)).then_some(())
    })
    .await;
    let status = server
        .exit_within(30)
        .await
        .expect("the server exits by itself");
    assert!(!status.success(), "exit status {status:?} must be non-zero");
}

/// Finding 9: a replay over a large log answers at once, and other devices'
/// deliveries keep arriving within a second while it runs.
#[tokio::test]
async fn replaying_a_large_log_never_stalls_other_deliveries() {
    const EVENTS: usize = 300_000;
    const BATCH: usize = 500;
    const LIVE: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let (rbig, rlive) = (Receiver::start().await, Receiver::start().await);
    // The replayed deliveries wait at their endpoint: what is measured is
    // the scheduler, not the receiver.
    rbig.hold();
    let big = bootstrap(&server, "dev-big").await;
    let live = bootstrap(&server, "dev-live").await;
    webhook(&server, &live.token, &rlive.url("/"), json!(["*"])).await;
    let mut client = grpc(&server).await;
    for b in 0..EVENTS / BATCH {
        let events = (0..BATCH)
            .map(|_| event("dev-big", "message.received", &format!(r#"{{"b":{b}}}"#)))
            .collect();
        publish_batch(&mut client, events).await.expect("batch");
    }
    let wh = webhook(&server, &big.token, &rbig.url("/"), json!(["*"])).await;
    // Another device publishes every 100 ms around the replay.
    let mut live_client = client.clone();
    let publisher = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..LIVE {
            sent.push(Instant::now());
            publish(
                &mut live_client,
                event("dev-live", "message.received", &format!(r#"{{"i":{i}}}"#)),
            )
            .await
            .expect("publish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body) = call(
        &server,
        M::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        &big.token,
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
    )
    .await;
    let answered = started.elapsed();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replayed"], EVENTS);
    assert!(
        answered < Duration::from_secs(2),
        "replay answered after {answered:?}"
    );
    let sent = publisher.await.expect("publisher");
    let got = rlive.wait_for(LIVE, 10).await;
    for r in &got {
        let i = r.json()["data"]["i"].as_u64().expect("i") as usize;
        let latency = r.at.saturating_duration_since(sent[i]);
        assert!(
            latency < Duration::from_secs(1),
            "live event {i} took {latency:?} to arrive while the replay ran"
        );
    }
    // The replay really runs: its deliveries reach their endpoint.
    rbig.release();
    rbig.wait_for(1, 10).await;
}

/// docs/api.md webhook input limits.
#[tokio::test]
async fn webhook_input_limits_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let t = bootstrap(&server, "dev-in").await;
    let url = "http://127.0.0.1:9/hook";
    let many: Vec<String> = (0..101).map(|_| "message.received".to_owned()).collect();
    for (body, field) in [
        (json!({"url": url, "events": many}), "enabled_events"),
        (
            json!({"url": url, "events": ["*"], "headers": {"User-Agent": "x"}}),
            "headers.User-Agent",
        ),
        (
            json!({"url": url, "events": ["*"], "headers": {"Proxy-Authorization": "x"}}),
            "headers.Proxy-Authorization",
        ),
        (
            json!({"url": url, "events": ["*"], "headers": {"X-Tenant": "a", "x-tenant": "b"}}),
            "headers.",
        ),
    ] {
        let (status, resp) = call(&server, M::POST, "/v1/webhooks", &t.token, Some(body)).await;
        assert_eq!(status, 400, "{resp}");
        let fields: Vec<String> = resp["error"]["details"]
            .as_array()
            .expect("details")
            .iter()
            .filter_map(|d| d["field"].as_str().map(str::to_owned))
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{field}: {resp}"
        );
    }
    let (status, w) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": url, "events": ["message.*", "call.offer", "message.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    assert_eq!(
        w["events"],
        json!(["message.*", "call.offer"]),
        "duplicates removed"
    );
}
