//! The `/v1` webhook resource API: both auth paths, shapes, isolation, and
//! configuration changes reaching the very next attempt (invariant 5).

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn call(
    method: reqwest::Method,
    server: &Server,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, server.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn webhooks_through_v1_with_device_token_and_admin_key() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("api", "max_webhooks_per_app", "3")
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;

    // Primary via the profile; two more via /v1 (device token and admin key).
    let (status, _) = configure(
        &server,
        &t.token,
        json!({"webhook_url": receiver.url("/primary"), "enabled_events": ["message.*"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, a) = call(M::POST, &server, "/v1/webhooks", &t.token,
        Some(json!({"name": "crm", "serverUrl": receiver.url("/a"), "enabled_events": ["message.received"], "enabled": true, "secret": "s3cret"}))).await;
    assert_eq!(status, 201, "{a}");
    for k in [
        "id",
        "name",
        "url",
        "events",
        "active",
        "retry_attempts",
        "timeout",
        "retry_policy",
        "headers",
        "created_at",
        "updated_at",
    ] {
        assert!(a.get(k).is_some(), "{k} missing in {a}");
    }
    assert!(a.get("secret").is_none());
    assert_eq!(a["url"], receiver.url("/a"));
    assert_eq!(a["retry_policy"]["backoff"], "incremental");
    let (status, b) = call(M::POST, &server, "/v1/organization/apps/dev-1/webhooks", &t.admin_key,
        Some(json!({"url": receiver.url("/b"), "events": ["*"], "retry_policy": {"backoff": "exponential", "base_delay_ms": 100, "max_delay_ms": 5000}}))).await;
    assert_eq!(status, 201, "{b}");
    // The per-app limit (3 here).
    let (status, err) = call(
        M::POST,
        &server,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": receiver.url("/c"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "CONFLICT");

    let (status, list) = call(
        M::GET,
        &server,
        "/v1/webhooks?limit=2&page=1",
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            list["total"].as_u64(),
            list["page"].as_u64(),
            list["limit"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    let (_, page2) = call(
        M::GET,
        &server,
        "/v1/organization/apps/dev-1/webhooks?limit=2&page=2",
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(1));
    let (status, bad) = call(M::GET, &server, "/v1/webhooks?limit=500", &t.token, None).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["details"][0]["field"], "limit");
    // The primary one is visible through /v1 too, and /v1 ones never become primary.
    let (_, primary) = call(M::GET, &server, "/webhook", &t.token, None).await;
    assert_eq!(primary["webhook"]["webhook_url"], receiver.url("/primary"));

    // One event reaches every matching webhook.
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.received", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(3, 10).await;
    let mut paths: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("").to_owned())
        .collect();
    paths.dedup();
    assert_eq!(paths.len(), 1, "the same event id everywhere");

    // PATCH merges, PUT replaces.
    let a_id = a["id"].as_str().expect("id");
    let (status, patched) = call(
        M::PATCH,
        &server,
        &format!("/v1/webhooks/{a_id}"),
        &t.token,
        Some(json!({"timeout": 5})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["timeout"].as_u64(), patched["name"].as_str()),
        (Some(5), Some("crm"))
    );
    let (status, put) = call(
        M::PUT,
        &server,
        &format!("/v1/webhooks/{a_id}"),
        &t.token,
        Some(json!({"url": receiver.url("/a2"), "events": ["call.*"]})),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        (put["timeout"].as_u64(), put["name"].as_str()),
        (Some(10), Some(""))
    );
    let (status, _) = call(
        M::PATCH,
        &server,
        &format!("/v1/webhooks/{a_id}"),
        &t.token,
        Some(json!({"events": ["nope.x"]})),
    )
    .await;
    assert_eq!(status, 400);

    // Another tenant: 404 for everything, nothing changed.
    let other = bootstrap(&server, "dev-2").await;
    for (m, path, key) in [
        (M::GET, format!("/v1/webhooks/{a_id}"), &other.token),
        (M::PATCH, format!("/v1/webhooks/{a_id}"), &other.token),
        (M::DELETE, format!("/v1/webhooks/{a_id}"), &other.token),
        (
            M::GET,
            format!("/v1/organization/apps/dev-1/webhooks/{a_id}"),
            &other.admin_key,
        ),
        (
            M::DELETE,
            format!("/v1/organization/apps/dev-1/webhooks/{a_id}"),
            &other.admin_key,
        ),
        (
            M::GET,
            "/v1/organization/apps/dev-1/webhooks".to_owned(),
            &other.admin_key,
        ),
    ] {
        let (status, body) =
            call(m.clone(), &server, &path, key, Some(json!({"timeout": 1}))).await;
        assert_eq!(status, 404, "{m} {path}: {body}");
    }
    let (_, still) = call(
        M::GET,
        &server,
        &format!("/v1/webhooks/{a_id}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(still["timeout"], 10);

    let (status, done) = call(
        M::DELETE,
        &server,
        &format!("/v1/organization/apps/dev-1/webhooks/{a_id}"),
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!((status, done), (200, json!({"success": true})));
    let (status, _) = call(
        M::GET,
        &server,
        &format!("/v1/webhooks/{a_id}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_new_url_takes_effect_at_the_next_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(300)
        .start();
    let old = Receiver::start().await;
    old.set_default(500);
    let new = Receiver::start().await;
    let t = bootstrap(&server, "dev-1").await;
    let (status, w) = reqwest::Client::new()
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&t.token)
        .json(&json!({"url": old.url("/"), "events": ["*"], "headers": {"X-V": "1"}}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .expect("create");
    assert_eq!(status, 201);
    let w: Value = w.json().await.expect("json");
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", "{}"))
        .await
        .expect("publish");
    old.wait_for(1, 10).await;
    let id = w["id"].as_str().expect("id");
    let resp = reqwest::Client::new()
        .patch(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&t.token)
        .json(&json!({"url": new.url("/"), "headers": {"X-V": "2"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);
    let got = new.wait_for(1, 10).await;
    assert_eq!(got[0].header("x-v"), "2");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        old.count(),
        1,
        "no attempt went to the old URL after the change"
    );
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    m.update(msg);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

#[tokio::test]
async fn delivery_log_retry_test_replay_and_rotation_through_http() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(50)
        .start();
    let ok = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.set_default(500);
    let t = bootstrap(&server, "dev-1").await;
    let (_, good) = call(M::POST, &server, "/v1/webhooks", &t.token,
        Some(json!({"url": ok.url("/"), "events": ["message.*"], "secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}))).await;
    let (_, bad) = call(
        M::POST,
        &server,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": flaky.url("/"), "events": ["message.sent"], "retry_attempts": 1})),
    )
    .await;
    let good_id = good["id"].as_str().expect("id").to_owned();
    let bad_id = bad["id"].as_str().expect("id").to_owned();
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-1", "message.sent", r#"{"n":1}"#))
        .await
        .expect("publish");
    ok.wait_for(1, 10).await;
    flaky.wait_for(2, 10).await;

    // The failing delivery ends `failed` after 1 + 1 attempts, with its log.
    let failed = eventually(10, "the failed delivery listed", || async {
        let (_, list) = call(
            M::GET,
            &server,
            &format!("/v1/webhooks/{bad_id}/deliveries?status=failed"),
            &t.token,
            None,
        )
        .await;
        list["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["last_status_code"], 500);
    assert_eq!(failed["last_error"], "http_5xx");
    assert_eq!(failed["event"], "message.sent");
    let dlv = failed["id"].as_str().expect("id").to_owned();
    let (status, detail) = call(
        M::GET,
        &server,
        &format!("/v1/deliveries/{dlv}"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let log = detail["attempt_log"].as_array().expect("attempt_log");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["status_code"], 500);
    assert!(log[0]["duration_ms"].is_number() && log[0]["started_at"].is_string());
    // The healthy one is listed as delivered (no record on the happy path).
    let (_, list) = call(
        M::GET,
        &server,
        &format!("/v1/webhooks/{good_id}/deliveries"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(list["data"][0]["status"], "delivered");
    assert_eq!(list["next_cursor"], Value::Null);

    // A manual retry after the receiver recovers.
    flaky.set_default(200);
    let (status, _) = call(
        M::POST,
        &server,
        &format!("/v1/deliveries/{dlv}/retry"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 202);
    eventually(10, "the retried delivery delivered", || async {
        let (_, d) = call(
            M::GET,
            &server,
            &format!("/v1/deliveries/{dlv}"),
            &t.token,
            None,
        )
        .await;
        (d["status"] == "delivered").then_some(())
    })
    .await;
    assert_eq!(flaky.received().last().map(|r| r.status), Some(200));
    // Another tenant cannot see or retry it.
    let other = bootstrap(&server, "dev-2").await;
    for (m, path) in [
        (M::GET, format!("/v1/deliveries/{dlv}")),
        (M::POST, format!("/v1/deliveries/{dlv}/retry")),
        (M::GET, format!("/v1/webhooks/{bad_id}/deliveries")),
    ] {
        let (status, _) = call(m, &server, &path, &other.token, None).await;
        assert_eq!(status, 404, "{path}");
    }

    // A test send reaches only that webhook, whatever its filter.
    let before = flaky.count();
    let (status, sent) = call(
        M::POST,
        &server,
        &format!("/v1/webhooks/{good_id}/test"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let got = ok.wait_for(2, 10).await;
    assert_eq!(got[1].json()["event"], "webhook.test");
    assert_eq!(flaky.count(), before);

    // Replay the past window to the good webhook: the message.sent event again
    // (same event id), not the test event.
    let since = "2000-01-01T00:00:00Z";
    let (status, r) = call(
        M::POST,
        &server,
        &format!("/v1/webhooks/{good_id}/replay"),
        &t.token,
        Some(json!({"since": since})),
    )
    .await;
    assert_eq!((status, r["replayed"].as_u64()), (202, Some(1)), "{r}");
    let got = ok.wait_for(3, 10).await;
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    let (status, _) = call(
        M::POST,
        &server,
        &format!("/v1/webhooks/{good_id}/replay"),
        &t.token,
        Some(json!({"since": "yesterday"})),
    )
    .await;
    assert_eq!(status, 400);

    // Rotation: the new secret is returned once; both sign during the grace period.
    let (status, rot) = call(
        M::POST,
        &server,
        &format!("/v1/webhooks/{good_id}/rotate-secret"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let new_secret = rot["secret"].as_str().expect("secret").to_owned();
    assert!(new_secret.starts_with("whsec_"));
    publish(&mut client, event("dev-1", "message.read", "{}"))
        .await
        .expect("publish");
    let got = ok.wait_for(4, 10).await;
    let d = &got[3];
    let sigs: Vec<&str> = d.header("webhook-signature").split(' ').collect();
    assert_eq!(
        sigs.len(),
        2,
        "new and old signatures during the grace period"
    );
    let msg = format!(
        "{}.{}.{}",
        d.header("webhook-id"),
        d.header("webhook-timestamp"),
        String::from_utf8_lossy(&d.body)
    );
    use base64::Engine;
    let new_key = base64::engine::general_purpose::STANDARD
        .decode(&new_secret[6..])
        .expect("b64");
    let old_key = vec![0u8; 32];
    assert_eq!(
        sigs[0],
        format!("v1,{}", hmac_b64(&new_key, msg.as_bytes()))
    );
    assert_eq!(
        sigs[1],
        format!("v1,{}", hmac_b64(&old_key, msg.as_bytes()))
    );

    let (status, types) = call(M::GET, &server, "/v1/event-types", &t.token, None).await;
    assert_eq!(status, 200);
    let first = &types["data"][0];
    assert_eq!(
        (first["name"].as_str(), first["category"].as_str()),
        (Some("message.received"), Some("Messages"))
    );
}
