//! Tenant isolation (invariant 7) and the per-token rate limit.

use crate::support::*;
use reqwest::Method as M;
use serde_json::{json, Value};

async fn call(
    server: &Server,
    m: M,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(m, server.url(path));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_route_lets_another_tenant_or_device_see_or_change_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let a = bootstrap(&server, "dev-a").await;
    // Another device of the same organization.
    let (status, sibling) = bind(&server, &a.org_id, "dev-a2").await;
    assert_eq!(status, 201, "{sibling}");
    let sibling_token = device_token(&server, &a.admin_key, "dev-a2").await;
    let b = bootstrap(&server, "dev-b").await;

    let (status, wa) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        Some(&a.token),
        Some(json!({"url": receiver.url("/"), "events": ["*"]})),
    )
    .await;
    assert_eq!(status, 201);
    let wa_id = wa["id"].as_str().expect("id").to_owned();
    let mut client = grpc(&server).await;
    publish(&mut client, event("dev-a", "message.sent", "{}"))
        .await
        .expect("publish");
    receiver.wait_for(1, 10).await;
    let (_, list) = eventually(10, "the delivery listed", || async {
        let r = call(
            &server,
            M::GET,
            &format!("/v1/webhooks/{wa_id}/deliveries"),
            Some(&a.token),
            None,
        )
        .await;
        r.1["data"][0]["id"].is_string().then_some(r)
    })
    .await;
    let da = list["data"][0]["id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    let (_, before) = call(
        &server,
        M::GET,
        &format!("/v1/webhooks/{wa_id}"),
        Some(&a.token),
        None,
    )
    .await;

    let body = || {
        Some(
            json!({"url": "https://evil.example/", "events": ["*"], "since": "2000-01-01T00:00:00Z", "name": "x"}),
        )
    };
    let device_routes = [
        (M::GET, format!("/v1/webhooks/{wa_id}")),
        (M::PUT, format!("/v1/webhooks/{wa_id}")),
        (M::PATCH, format!("/v1/webhooks/{wa_id}")),
        (M::DELETE, format!("/v1/webhooks/{wa_id}")),
        (M::GET, format!("/v1/webhooks/{wa_id}/deliveries")),
        (M::POST, format!("/v1/webhooks/{wa_id}/test")),
        (M::POST, format!("/v1/webhooks/{wa_id}/replay")),
        (M::POST, format!("/v1/webhooks/{wa_id}/rotate-secret")),
        (M::GET, format!("/v1/deliveries/{da}")),
        (M::POST, format!("/v1/deliveries/{da}/retry")),
    ];
    let admin_routes = [
        (M::GET, "/v1/organization/apps/dev-a".to_owned()),
        (M::DELETE, "/v1/organization/apps/dev-a".to_owned()),
        (M::POST, "/v1/organization/apps/dev-a/tokens".to_owned()),
        (M::GET, "/v1/organization/apps/dev-a/webhooks".to_owned()),
        (M::POST, "/v1/organization/apps/dev-a/webhooks".to_owned()),
        (
            M::GET,
            format!("/v1/organization/apps/dev-a/webhooks/{wa_id}"),
        ),
        (
            M::PUT,
            format!("/v1/organization/apps/dev-a/webhooks/{wa_id}"),
        ),
        (
            M::PATCH,
            format!("/v1/organization/apps/dev-a/webhooks/{wa_id}"),
        ),
        (
            M::DELETE,
            format!("/v1/organization/apps/dev-a/webhooks/{wa_id}"),
        ),
    ];
    let mut checked = 0;
    for (m, path) in &device_routes {
        for key in [&sibling_token, &b.token] {
            let (status, resp) = call(&server, m.clone(), path, Some(key), body()).await;
            assert_eq!(
                status, 404,
                "{m} {path} with another device's token: {resp}"
            );
            checked += 1;
        }
        let (status, _) = call(&server, m.clone(), path, None, body()).await;
        assert_eq!(status, 401, "{m} {path} without a token");
    }
    for (m, path) in &admin_routes {
        let (status, resp) = call(&server, m.clone(), path, Some(&b.admin_key), body()).await;
        assert_eq!(
            status, 404,
            "{m} {path} with another organization's admin key: {resp}"
        );
        checked += 1;
        let (status, _) = call(&server, m.clone(), path, None, body()).await;
        assert_eq!(status, 401, "{m} {path} without a token");
    }
    assert_eq!(checked, 29);

    // Nothing changed.
    let (status, after) = call(
        &server,
        M::GET,
        &format!("/v1/webhooks/{wa_id}"),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let (status, _) = call(
        &server,
        M::GET,
        "/v1/organization/apps/dev-a",
        Some(&a.admin_key),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = call(
        &server,
        M::GET,
        "/v1/organization/apps/dev-a/webhooks",
        Some(&a.admin_key),
        None,
    )
    .await;
    assert_eq!(list["total"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.count(),
        1,
        "no test send or retry reached the receiver"
    );
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("api", "requests_per_second", "1")
        .set("api", "burst", "5")
        .start();
    let a = bootstrap(&server, "dev-a").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            call(&server, M::GET, "/v1/webhooks", Some(&a.token), None)
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
    let resp = reqwest::Client::new()
        .get(server.url("/webhook"))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["error_code"], "RATE_LIMITED",
        "the profile's envelope on /webhook"
    );
    // Other tokens, health and ingest are unaffected.
    let b = bootstrap(&server, "dev-b").await;
    assert_eq!(
        call(&server, M::GET, "/v1/webhooks", Some(&b.token), None)
            .await
            .0,
        200
    );
    assert_eq!(
        reqwest::get(server.url("/healthz"))
            .await
            .expect("healthz")
            .status(),
        200
    );
}

#[tokio::test]
async fn every_profile_validation_rule_is_rejected_with_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("delivery", "allow_http", "false")
        .start();
    let t = bootstrap(&server, "dev-a").await;
    let ok =
        || json!({"webhook_url": "https://example.com/h", "enabled_events": ["message.received"]});
    let with = |k: &str, v: Value| {
        let mut b = ok();
        b[k] = v;
        b
    };
    let many_headers: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"enabled_events": ["message.received"]}),
            "webhook_url",
        ),
        (
            with("webhook_url", json!("http://example.com/h")),
            "webhook_url",
        ),
        (with("webhook_url", json!("/relative")), "webhook_url"),
        (
            with(
                "webhook_url",
                json!(format!("https://example.com/{}", "a".repeat(2048))),
            ),
            "webhook_url",
        ),
        (with("webhook_url", json!(5)), "webhook_url"),
        (
            json!({"webhook_url": "https://example.com/h"}),
            "enabled_events",
        ),
        (with("enabled_events", json!([])), "enabled_events"),
        (
            with("enabled_events", json!(["message.nope"])),
            "enabled_events",
        ),
        (with("timeout", json!(0)), "timeout"),
        (with("timeout", json!(61)), "timeout"),
        (with("retry_attempts", json!(-1)), "retry_attempts"),
        (with("retry_attempts", json!(21)), "retry_attempts"),
        (with("headers", Value::Object(many_headers)), "headers"),
        (
            with("headers", json!({"bad name": "x"})),
            "headers.bad name",
        ),
        (with("headers", json!({"X-Ok": "a\r\nb"})), "headers.X-Ok"),
        (with("headers", json!({"Host": "x"})), "headers.Host"),
        (
            with("headers", json!({"Content-Length": "1"})),
            "headers.Content-Length",
        ),
        (
            with("headers", json!({"Content-Type": "text/plain"})),
            "headers.Content-Type",
        ),
        (
            with("headers", json!({"Transfer-Encoding": "chunked"})),
            "headers.Transfer-Encoding",
        ),
        (
            with("headers", json!({"Connection": "close"})),
            "headers.Connection",
        ),
        (
            with("headers", json!({"Webhook-Signature": "x"})),
            "headers.Webhook-Signature",
        ),
    ];
    for (body, field) in cases {
        let (status, resp) = configure(&server, &t.token, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(resp["error_code"], "VALIDATION_ERROR", "{body}");
        let fields: Vec<&str> = resp["details"]
            .as_array()
            .map(|d| d.iter().filter_map(|x| x["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "{field} not in {fields:?} for {body}"
        );
        if field == "enabled_events" && body["enabled_events"] == json!(["message.nope"]) {
            assert!(resp["available_events"]
                .as_array()
                .is_some_and(|a| a.len() == 70));
        }
    }
    // And nothing was configured by any of them.
    let resp = reqwest::Client::new()
        .get(server.url("/webhook"))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
}
