//! Vendor profiles, end to end: each document's own requests against its
//! listener, answers compared key by key, the same webhooks seen through
//! `/v1` and the other profiles, and deliveries named in each vocabulary.

use crate::support::*;
use reqwest::Method as M;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A request with the given headers; status and JSON answer.
async fn req(m: M, url: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(m, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The object's keys, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn whautochat_works_as_documented_for_admin_keys_and_device_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["whautochat", "status-envelope"])
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "wac-1").await;
    let url = |p: &str| server.profile_url("whautochat", p);
    let admin = [("x-api-key", t.admin_key.as_str())];

    // The document's create request, with the admin key: organization-wide.
    let (status, w) = req(
        M::POST,
        &url("/v1/webhooks"),
        &admin,
        Some(
            json!({"name": "CRM", "serverUrl": receiver.url("/wac"), "active": true,
            "events": ["incoming_whatsapp_message", "contact_created"], "secret": SECRET}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(
        keys(&w),
        sorted(&[
            "id",
            "name",
            "serverUrl",
            "active",
            "events",
            "createdAt",
            "updatedAt"
        ])
    );
    assert_eq!(w["name"], "CRM");
    assert_eq!(w["serverUrl"], receiver.url("/wac"));
    assert_eq!(w["active"], true);
    assert_eq!(
        w["events"],
        json!(["incoming_whatsapp_message", "contact_created"])
    );
    assert!(is_time(&w["createdAt"]) && is_time(&w["updatedAt"]), "{w}");
    let id = w["id"].as_str().expect("string id").to_owned();

    // List: a bare array, with limit and page.
    let (status, l) = req(M::GET, &url("/v1/webhooks"), &admin, None).await;
    assert_eq!(status, 200, "{l}");
    assert_eq!(l, json!([w]));
    let (_, empty) = req(M::GET, &url("/v1/webhooks?limit=1&page=2"), &admin, None).await;
    assert_eq!(empty, json!([]));
    let (status, bad) = req(M::GET, &url("/v1/webhooks?limit=0"), &admin, None).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(keys(&bad), sorted(&["success", "error"]));
    assert_eq!(bad["success"], false);

    // Read, update (the fields sent), and the device token's own webhooks.
    let (status, one) = req(M::GET, &url(&format!("/v1/webhooks/{id}")), &admin, None).await;
    assert_eq!((status, &one), (200, &w));
    let (status, up) = req(
        M::PUT,
        &url(&format!("/v1/webhooks/{id}")),
        &admin,
        Some(json!({"name": "CRM 2", "events": ["incoming_whatsapp_message", "outgoing_whatsapp_message", "contact_created"]})),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["name"], "CRM 2");
    assert_eq!(up["serverUrl"], receiver.url("/wac"));
    assert_eq!(up["events"][1], "outgoing_whatsapp_message");
    let device = [("x-api-key", t.token.as_str())];
    let (_, mine) = req(M::GET, &url("/v1/webhooks"), &device, None).await;
    assert_eq!(
        mine,
        json!([]),
        "a device token does not see organization-wide webhooks"
    );
    let (status, _) = req(M::GET, &url(&format!("/v1/webhooks/{id}")), &device, None).await;
    assert_eq!(status, 404);

    // Errors: {"success":false,"error"} with 400, 401 and 404.
    for (headers, body, want) in [
        (
            &admin[..],
            json!({"serverUrl": receiver.url("/x"), "events": ["message.received"]}),
            400,
        ),
        (
            &[][..],
            json!({"serverUrl": receiver.url("/x"), "events": ["contact_created"]}),
            401,
        ),
        (
            &[("x-api-key", "nope")][..],
            json!({"serverUrl": receiver.url("/x"), "events": ["contact_created"]}),
            401,
        ),
    ] {
        let (status, e) = req(M::POST, &url("/v1/webhooks"), headers, Some(body)).await;
        assert_eq!(status, want, "{e}");
        assert_eq!(keys(&e), sorted(&["success", "error"]), "{e}");
        assert_eq!(e["success"], false);
    }
    let (_, e) = req(
        M::POST,
        &url("/v1/webhooks"),
        &admin,
        Some(json!({"serverUrl": receiver.url("/x"), "events": ["message.received"]})),
    )
    .await;
    assert_eq!(e["error"], "unknown event names: message.received");
    let (status, e) = req(M::GET, &url("/v1/webhooks/wh_nope"), &admin, None).await;
    assert_eq!((status, keys(&e)), (404, sorted(&["success", "error"])));

    // Deliveries name events in WhautoChat's words, signed both ways.
    let mut client = grpc(&server).await;
    publish(
        &mut client,
        event("wac-1", "message.received", "{\"text\":\"hi\"}"),
    )
    .await
    .expect("publish");
    publish(
        &mut client,
        event("wac-1", "contact_created", "{\"contact\":\"c1\"}"),
    )
    .await
    .expect("publish");
    let got = receiver.wait_for(2, 10).await;
    // Two attempts in flight at once may arrive in either order (deliveries
    // are not ordered, docs/receiving.md): compare the names as a set.
    let mut names: Vec<String> = got
        .iter()
        .map(|d| d.json()["event"].as_str().unwrap_or("").to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["contact_created", "incoming_whatsapp_message"]);
    for d in &got {
        assert_signed(d, SECRET);
        assert_eq!(d.json()["device_id"], "wac-1");
    }

    // The same webhook in /v1 (engine names) and in the status-envelope
    // profile (an integer id); deleted there, gone here.
    let (_, v1) = call(
        &server,
        M::GET,
        &format!("/v1/organization/webhooks/{id}"),
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(v1["scope"], "organization", "{v1}");
    assert_eq!(
        v1["events"],
        json!(["message.received", "message.sent", "contact_created"])
    );
    let env = server.profile_url("status-envelope", "/webhooks");
    let (status, listed) = req(
        M::GET,
        &env,
        &[("Authorization", t.admin_key.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let number = listed["data"][0]["id"].as_u64().expect("an integer id");
    assert_eq!(listed["data"][0]["url"], receiver.url("/wac"));
    let (status, gone) = req(
        M::DELETE,
        &format!("{env}/{number}"),
        &[("Authorization", &format!("Bearer {}", t.admin_key))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{gone}");
    let (status, _) = req(M::GET, &url(&format!("/v1/webhooks/{id}")), &admin, None).await;
    assert_eq!(status, 404);

    // A device token manages its device's webhooks here; DELETE answers success.
    let (status, dw) = req(
        M::POST,
        &url("/v1/webhooks"),
        &device,
        Some(json!({"name": "mine", "serverUrl": receiver.url("/dev"), "active": true, "events": ["outgoing_whatsapp_message"]})),
    )
    .await;
    assert_eq!(status, 200, "{dw}");
    let (_, v1) = call(&server, M::GET, "/v1/webhooks", &t.token, None).await;
    assert_eq!(v1["data"][0]["id"], dw["id"]);
    assert_eq!(v1["data"][0]["app_id"], "wac-1");
    let (status, d) = req(
        M::DELETE,
        &url(&format!("/v1/webhooks/{}", dw["id"].as_str().unwrap_or(""))),
        &device,
        None,
    )
    .await;
    assert_eq!((status, d), (200, json!({"success": true})));
}

#[tokio::test]
async fn status_envelope_works_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["status-envelope"])
        .start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "se-1").await;
    let base = server.profile_url("status-envelope", "/webhooks");
    let auth = [("Authorization", t.token.as_str())];

    // The document's request, word for word.
    let (status, c) = req(
        M::POST,
        &base,
        &auth,
        Some(json!({"url": "https://your-server.com/webhook", "secret": "string", "events": ["message.received", "connection.connected"]})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(keys(&c), sorted(&["status", "code", "message", "data"]));
    assert_eq!(
        (&c["status"], &c["code"], &c["message"]),
        (
            &json!(true),
            &json!(201),
            &json!("Webhook created successfully")
        )
    );
    assert_eq!(
        keys(&c["data"]),
        sorted(&["id", "url", "events", "active", "created_at"])
    );
    assert_eq!(c["data"]["url"], "https://your-server.com/webhook");
    assert_eq!(
        c["data"]["events"],
        json!(["message.received", "connection.connected"])
    );
    assert_eq!(c["data"]["active"], true);
    assert!(is_time(&c["data"]["created_at"]));
    let id = c["data"]["id"].as_u64().expect("integer id");
    assert!(id > 0);

    let (status, l) = req(M::GET, &base, &auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        l,
        json!({"status": true, "code": 200, "message": "Webhooks retrieved successfully", "data": [c["data"]]})
    );
    let bearer = format!("Bearer {}", t.token);
    let (status, g) = req(
        M::GET,
        &format!("{base}/{id}"),
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        g,
        json!({"status": true, "code": 200, "message": "Webhook retrieved successfully", "data": c["data"]})
    );

    // Update: delivered to the local receiver, under the profile's name.
    let (status, u) = req(
        M::PUT,
        &format!("{base}/{id}"),
        &auth,
        Some(json!({"url": receiver.url("/se"), "secret": SECRET, "events": ["connection.connected"]})),
    )
    .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["message"], "Webhook updated successfully");
    assert_eq!(u["data"]["id"], id);
    assert_eq!(u["data"]["events"], json!(["connection.connected"]));
    let mut client = grpc(&server).await;
    publish(&mut client, event("se-1", "device.connected", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(1, 10).await;
    assert_eq!(got[0].json()["event"], "connection.connected");
    assert_signed(&got[0], SECRET);
    // The same webhook in /v1: engine names, the same id behind the number.
    let (_, v1) = call(&server, M::GET, "/v1/webhooks", &t.token, None).await;
    assert_eq!(v1["data"][0]["events"], json!(["device.connected"]), "{v1}");

    // Errors in the envelope.
    for (headers, want, message, error) in [
        (
            &[][..],
            401,
            "Unauthorized",
            "Invalid or missing authentication",
        ),
        (
            &[("Authorization", "nope")][..],
            401,
            "Unauthorized",
            "Invalid or missing authentication",
        ),
    ] {
        let (status, e) = req(
            M::POST,
            &base,
            headers,
            Some(json!({"url": "https://a.example/x"})),
        )
        .await;
        assert_eq!(status, want);
        assert_eq!(
            e,
            json!({"status": false, "code": want, "message": message, "error": error})
        );
    }
    let (status, e) = req(
        M::POST,
        &base,
        &auth,
        Some(json!({"url": "https://a.example/x", "events": ["nope.x"]})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        (&e["message"], &e["error"]),
        (&json!("Bad request"), &json!("unknown event names: nope.x"))
    );
    let (status, e) = req(M::GET, &format!("{base}/999999"), &auth, None).await;
    assert_eq!(status, 404);
    assert_eq!(keys(&e), sorted(&["status", "code", "message", "error"]));
    assert_eq!(e["message"], "Not found");

    let (status, d) = req(M::DELETE, &format!("{base}/{id}"), &auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        d,
        json!({"status": true, "code": 200, "message": "Webhook deleted successfully", "data": null})
    );

    // Health and the profile's own OpenAPI document.
    let (status, h) = req(
        M::GET,
        &server.profile_url("status-envelope", "/healthz"),
        &[],
        None,
    )
    .await;
    assert_eq!((status, h), (200, json!({"status": "ok"})));
    let (status, doc) = req(
        M::GET,
        &server.profile_url("status-envelope", "/openapi.json"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/webhooks/{id}"].is_object(), "{doc}");
}

/// Without `delivery.allow_http`, a plain-HTTP URL is the document's 400.
#[tokio::test]
async fn status_envelope_refuses_plain_http_as_the_document_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["status-envelope"])
        .set("delivery", "allow_http", "false")
        .start();
    let t = bootstrap(&server, "se-2").await;
    let (status, e) = req(
        M::POST,
        &server.profile_url("status-envelope", "/webhooks"),
        &[("Authorization", t.admin_key.as_str())],
        Some(json!({"url": "http://your-server.com/webhook", "events": ["message.received"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        e,
        json!({"status": false, "code": 400, "message": "Bad request", "error": "URL must be HTTPS"})
    );
}

#[tokio::test]
async fn org_apps_works_as_documented_and_names_follow_the_last_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["org-apps"])
        .start();
    let receiver = Receiver::start().await;
    let (_, admin) = organization(&server, "acme").await;
    let (status, app) = call(
        &server,
        M::POST,
        "/v1/organization/apps",
        &admin,
        Some(json!({"name": "support line"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().expect("app id").to_owned();
    let bearer = format!("Bearer {admin}");
    let auth = [("Authorization", bearer.as_str())];
    let base = server.profile_url(
        "org-apps",
        &format!("/v1/organization/apps/{app_id}/webhooks"),
    );

    let (status, c) = req(
        M::POST,
        &base,
        &auth,
        Some(json!({"url": receiver.url("/oa"), "events": ["MESSAGE_CREATED", "MESSAGE_SENT"], "secret": SECRET})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(
        keys(&c),
        sorted(&[
            "id",
            "appId",
            "url",
            "events",
            "headers",
            "createdAt",
            "updatedAt"
        ])
    );
    assert_eq!(c["appId"], app_id.as_str());
    assert_eq!(c["headers"], Value::Null);
    let id = c["id"].as_str().expect("id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    // The document's PUT, word for word.
    let (status, u) = req(
        M::PUT,
        &format!("{base}/{id}"),
        &auth,
        Some(json!({"url": receiver.url("/oa"), "events": ["MESSAGE_CREATED", "MESSAGE_DELIVERED"], "headers": {"X-Custom-Header": "new-value"}})),
    )
    .await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(keys(&u), keys(&c));
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["events"], json!(["MESSAGE_CREATED", "MESSAGE_DELIVERED"]));
    assert_eq!(u["headers"], json!({"X-Custom-Header": "new-value"}));
    assert!(is_time(&u["createdAt"]) && is_time(&u["updatedAt"]));
    let (status, l) = req(M::GET, &base, &auth, None).await;
    assert_eq!((status, l), (200, json!([u])));
    let (status, g) = req(
        M::GET,
        &format!("{base}/{}", id.to_uppercase()),
        &auth,
        None,
    )
    .await;
    assert_eq!((status, &g), (200, &u));

    // Errors: the /v1 envelope.
    let (status, e) = req(
        M::POST,
        &base,
        &auth,
        Some(json!({"url": receiver.url("/x"), "events": ["message.received"]})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "VALIDATION_ERROR");
    let t = device_token(&server, &admin, &app_id).await;
    for h in [vec![], vec![("Authorization", format!("Bearer {t}"))]] {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, e) = req(M::GET, &base, &h, None).await;
        assert_eq!(status, 401);
        assert_eq!(e["error"]["code"], "UNAUTHORIZED");
    }
    let (status, _) = req(
        M::GET,
        &format!("{base}/a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        &auth,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Delivered as MESSAGE_CREATED, with the custom header and both signatures.
    let mut client = grpc(&server).await;
    publish(&mut client, event(&app_id, "message.received", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(1, 10).await;
    assert_eq!(got[0].json()["event"], "MESSAGE_CREATED");
    assert_eq!(got[0].header("x-custom-header"), "new-value");
    assert_signed(&got[0], SECRET);

    // Configured last through /v1: engine names from then on.
    let wh = format!("wh_{}", id.replace('-', ""));
    let (status, v1) = call(
        &server,
        M::PATCH,
        &format!("/v1/webhooks/{wh}"),
        &t,
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(
        v1["events"],
        json!(["message.received", "message.delivered"])
    );
    publish(&mut client, event(&app_id, "message.received", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(2, 10).await;
    assert_eq!(got[1].json()["event"], "message.received");

    let (status, d) = req(M::DELETE, &format!("{base}/{id}"), &auth, None).await;
    assert_eq!((status, d), (200, json!({"success": true})));
    let (status, _) = call(&server, M::GET, &format!("/v1/webhooks/{wh}"), &t, None).await;
    assert_eq!(status, 404);
}

/// `wuts` on its own listener is the `/webhook` API; each listener answers
/// unknown routes, refused methods and bad bodies in its own envelope.
#[tokio::test]
async fn each_listener_answers_in_its_own_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["wuts", "whautochat", "status-envelope", "org-apps"])
        .start();
    let t = bootstrap(&server, "env-1").await;
    let bearer = format!("Bearer {}", t.token);
    let (status, w) = req(
        M::GET,
        &server.profile_url("wuts", "/webhook"),
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        (&w["success"], &w["error"]),
        (&json!(false), &json!("Webhook not configured"))
    );
    let (status, w) = req(
        M::POST,
        &server.profile_url("wuts", "/webhook"),
        &[("Authorization", &bearer)],
        Some(json!({"webhook_url": "https://a.example/x", "enabled_events": ["message.received"]})),
    )
    .await;
    assert_eq!(status, 200, "{w}");
    let (_, same) = call(&server, M::GET, "/webhook", &t.token, None).await;
    assert_eq!(same["webhook"]["id"], w["webhook"]["id"]);

    let (status, e) = req(
        M::GET,
        &server.profile_url("whautochat", "/nope"),
        &[],
        None,
    )
    .await;
    assert_eq!((status, keys(&e)), (404, sorted(&["success", "error"])));
    let (status, e) = req(
        M::PATCH,
        &server.profile_url("status-envelope", "/webhooks"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(e["message"], "Method not allowed");
    let (status, e) = req(M::GET, &server.profile_url("org-apps", "/nope"), &[], None).await;
    assert_eq!((status, &e["error"]["code"]), (404, &json!("NOT_FOUND")));
    let resp = reqwest::Client::new()
        .post(server.profile_url("whautochat", "/v1/webhooks"))
        .header("x-api-key", &t.admin_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.expect("json");
    assert_eq!(keys(&e), sorted(&["success", "error"]));
    for p in ["wuts", "whautochat", "status-envelope", "org-apps"] {
        let (status, h) = req(M::GET, &server.profile_url(p, "/healthz"), &[], None).await;
        assert_eq!((status, h), (200, json!({"status": "ok"})), "{p}");
        let (status, doc) = req(M::GET, &server.profile_url(p, "/openapi.json"), &[], None).await;
        assert_eq!(status, 200, "{p}");
        assert!(
            doc["paths"].as_object().is_some_and(|o| !o.is_empty()),
            "{p}: {doc}"
        );
    }
}
