//! Organization-wide webhooks: one webhook for every device of an
//! organization, present and future, managed with the admin key only.

use crate::support::*;
use reqwest::Method as M;
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Device ids of the deliveries the receiver got, in arrival order.
fn devices(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|d| d.json()["device_id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn an_organization_wide_webhook_gets_every_device_and_only_its_organizations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let (org, admin) = organization(&server, "acme").await;
    let (_other_org, other_admin) = organization(&server, "globex").await;
    for d in ["ow-1", "ow-2"] {
        assert_eq!(bind(&server, &org, d).await.0, 201);
    }
    assert_eq!(bind(&server, &_other_org, "ow-b").await.0, 201);
    let (status, w) = call(
        &server,
        M::POST,
        "/v1/organization/webhooks",
        &admin,
        Some(json!({"url": receiver.url("/org"), "events": ["message.*"], "secret": SECRET})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    assert_eq!(w["scope"], "organization", "{w}");
    assert!(w.get("app_id").is_none(), "{w}");
    assert!(w.get("secret").is_none(), "{w}");
    let id = w["id"].as_str().expect("id").to_owned();

    // Two devices of the organization, one of another, one unbound.
    let mut client = grpc(&server).await;
    for d in ["ow-1", "ow-2", "ow-b", "ow-unbound"] {
        publish(&mut client, event(d, "message.received", "{\"n\":1}"))
            .await
            .expect("publish");
    }
    let got = receiver.wait_for(2, 10).await;
    let mut seen = devices(&got);
    seen.sort();
    assert_eq!(seen, ["ow-1", "ow-2"]);
    for d in &got {
        assert_signed(d, SECRET);
        assert_eq!(d.json()["event"], "message.received");
    }

    // A device bound after the webhook was made is covered from its binding on;
    // what it logged before is not.
    publish(
        &mut client,
        event("ow-3", "message.received", "{\"before\":true}"),
    )
    .await
    .expect("publish");
    // Binding times are milliseconds: the earlier event must be in an earlier one.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(bind(&server, &org, "ow-3").await.0, 201);
    publish(
        &mut client,
        event("ow-3", "message.received", "{\"after\":true}"),
    )
    .await
    .expect("publish");
    let got = receiver.wait_for(3, 10).await;
    assert_eq!(got[2].json()["device_id"], "ow-3");
    assert_eq!(got[2].json()["data"], json!({"after": true}));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 3, "{:?}", devices(&receiver.received()));

    // Device tokens never see or change it; another organization gets 404.
    let token = device_token(&server, &admin, "ow-1").await;
    for (key, path) in [
        (&token, format!("/v1/webhooks/{id}")),
        (&other_admin, format!("/v1/organization/webhooks/{id}")),
        (
            &other_admin,
            format!("/v1/organization/webhooks/{id}/deliveries"),
        ),
    ] {
        let (status, body) = call(&server, M::GET, &path, key, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = call(
        &server,
        M::DELETE,
        &format!("/v1/webhooks/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, mine) = call(&server, M::GET, "/v1/webhooks", &token, None).await;
    assert_eq!(mine["total"], 0, "{mine}");
    let (status, _) = call(&server, M::GET, "/v1/organization/webhooks", &token, None).await;
    assert_eq!(status, 401);
    let (_, theirs) = call(
        &server,
        M::GET,
        "/v1/organization/webhooks",
        &other_admin,
        None,
    )
    .await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let (_, ours) = call(&server, M::GET, "/v1/organization/webhooks", &admin, None).await;
    assert_eq!(ours["total"], 1, "{ours}");
    assert_eq!(ours["data"][0]["id"], id.as_str());

    // Its deliveries: listed for the admin key, each readable by id, not by
    // another organization.
    let list_path = format!("/v1/organization/webhooks/{id}/deliveries");
    let listed = eventually(10, "three delivered", || async {
        let (_, l) = call(&server, M::GET, &list_path, &admin, None).await;
        let a = l["data"].as_array()?.clone();
        (a.len() == 3 && a.iter().all(|d| d["status"] == "delivered")).then_some(a)
    })
    .await;
    let dlv = listed[0]["id"].as_str().expect("id").to_owned();
    let (status, one) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{dlv}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["attempt_log"][0]["status_code"], 200, "{one}");
    for key in [&other_admin, &token] {
        let (status, _) = call(&server, M::GET, &format!("/v1/deliveries/{dlv}"), key, None).await;
        assert_eq!(status, 404);
    }

    // Replay: every device's events from its own binding on (not ow-3's
    // earlier event, not other organizations').
    let (status, r) = call(
        &server,
        M::POST,
        &format!("/v1/organization/webhooks/{id}/replay"),
        &admin,
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["replayed"], 3, "{r}");
    let got = receiver.wait_for(6, 10).await;
    assert!(got[3..]
        .iter()
        .all(|d| d.json()["data"] != json!({"before": true})));

    // A test send goes as from device id "".
    let (status, t) = call(
        &server,
        M::POST,
        &format!("/v1/organization/webhooks/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 202, "{t}");
    let got = receiver.wait_for(7, 10).await;
    assert_eq!(got[6].json()["event"], "webhook.test");
    assert_eq!(got[6].json()["device_id"], "");
    assert_signed(&got[6], SECRET);

    // Rotation: the new secret signs from now on, the old one still does.
    let (status, rotated) = call(
        &server,
        M::POST,
        &format!("/v1/organization/webhooks/{id}/rotate-secret"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let fresh = rotated["secret"].as_str().expect("secret").to_owned();
    publish(&mut client, event("ow-2", "message.sent", "{}"))
        .await
        .expect("publish");
    let got = receiver.wait_for(8, 10).await;
    assert_signed(&got[7], &fresh);

    // PATCH keeps it organization-wide; DELETE ends it.
    let (status, p) = call(
        &server,
        M::PATCH,
        &format!("/v1/organization/webhooks/{id}"),
        &admin,
        Some(json!({"name": "all phones"})),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["scope"], "organization");
    assert_eq!(p["name"], "all phones");
    let (status, _) = call(
        &server,
        M::DELETE,
        &format!("/v1/organization/webhooks/{id}"),
        &other_admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        M::DELETE,
        &format!("/v1/organization/webhooks/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    publish(&mut client, event("ow-1", "message.received", "{}"))
        .await
        .expect("publish");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 8);
}

/// A failed delivery of an organization-wide webhook is retried with the
/// admin key; device webhooks carry `scope` and `app_id`.
#[tokio::test]
async fn organization_wide_deliveries_retry_and_app_webhooks_name_their_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "or-1").await;
    let (status, app_hook) = call(
        &server,
        M::POST,
        "/v1/webhooks",
        &t.token,
        Some(json!({"url": receiver.url("/app"), "events": ["device.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{app_hook}");
    assert_eq!(app_hook["scope"], "app");
    assert_eq!(app_hook["app_id"], "or-1");

    receiver.script(&[500]);
    let (status, w) = call(
        &server,
        M::POST,
        "/v1/organization/webhooks",
        &t.admin_key,
        Some(json!({"url": receiver.url("/org"), "events": ["message.received"], "retry_attempts": 0})),
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let id = w["id"].as_str().expect("id").to_owned();
    let mut client = grpc(&server).await;
    publish(&mut client, event("or-1", "message.received", "{}"))
        .await
        .expect("publish");
    let failed: Value = eventually(10, "a failed delivery", || async {
        let (_, l) = call(
            &server,
            M::GET,
            &format!("/v1/organization/webhooks/{id}/deliveries?status=failed"),
            &t.admin_key,
            None,
        )
        .await;
        l["data"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    let dlv = failed["id"].as_str().expect("id");
    let (status, r) = call(
        &server,
        M::POST,
        &format!("/v1/deliveries/{dlv}/retry"),
        &t.token,
        None,
    )
    .await;
    assert_eq!(status, 404, "a device token cannot retry it: {r}");
    let (status, r) = call(
        &server,
        M::POST,
        &format!("/v1/deliveries/{dlv}/retry"),
        &t.admin_key,
        None,
    )
    .await;
    assert_eq!(status, 202, "{r}");
    let got = receiver.wait_for(2, 10).await;
    assert_eq!(got[1].status, 200);
    // The organization-wide limit holds and says so (one exists already).
    for i in 1..20 {
        let (status, w) = call(
            &server,
            M::POST,
            "/v1/organization/webhooks",
            &t.admin_key,
            Some(json!({"url": receiver.url(&format!("/more/{i}")), "events": ["call.*"]})),
        )
        .await;
        assert_eq!(status, 201, "{i}: {w}");
    }
    let (status, e) = call(
        &server,
        M::POST,
        "/v1/organization/webhooks",
        &t.admin_key,
        Some(json!({"url": receiver.url("/over"), "events": ["call.*"]})),
    )
    .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "CONFLICT");
    assert_eq!(
        e["error"]["message"],
        "the organization (organization-wide) already has 20 webhooks, the most allowed"
    );
    eventually(10, "the retried delivery delivered", || async {
        let (_, d) = call(
            &server,
            M::GET,
            &format!("/v1/deliveries/{dlv}"),
            &t.admin_key,
            None,
        )
        .await;
        (d["status"] == "delivered").then_some(())
    })
    .await;
}

/// An organization-wide webhook disabled after failing too long is announced
/// to its organization's other organization-wide webhooks, and to no other
/// organization: not delivered there, and not readable there by id.
#[tokio::test]
async fn a_disabled_organization_wide_webhook_is_announced_only_to_its_organization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(300)
        .set("delivery", "disable_after", "\"1s\"")
        .start();
    let failing = Receiver::start().await;
    failing.set_default(500);
    let watcher = Receiver::start().await;
    let other = Receiver::start().await;
    let (org, admin) = organization(&server, "acme").await;
    let (_, other_admin) = organization(&server, "globex").await;
    assert_eq!(bind(&server, &org, "od-1").await.0, 201);
    let mut ids = Vec::new();
    for (key, url, events) in [
        (&admin, failing.url("/"), json!(["message.*"])),
        (&admin, watcher.url("/"), json!(["webhook.disabled"])),
        (&other_admin, other.url("/"), json!(["*"])),
    ] {
        let (status, w) = call(
            &server,
            M::POST,
            "/v1/organization/webhooks",
            key,
            Some(json!({"url": url, "events": events, "retry_attempts": 10})),
        )
        .await;
        assert_eq!(status, 201, "{w}");
        ids.push(w["id"].as_str().expect("id").to_owned());
    }
    let mut client = grpc(&server).await;
    publish(&mut client, event("od-1", "message.sent", "{}"))
        .await
        .expect("publish");
    let got = watcher.wait_for(1, 20).await;
    assert_eq!(got[0].json()["event"], "webhook.disabled");
    assert_eq!(got[0].json()["data"]["webhook_id"], ids[0].as_str());
    let (_, bad) = call(
        &server,
        M::GET,
        &format!("/v1/organization/webhooks/{}", ids[0]),
        &admin,
        None,
    )
    .await;
    assert_eq!(bad["active"], false);

    // The notice's delivery id, aimed at the other organization's webhook.
    let (_, l) = call(
        &server,
        M::GET,
        &format!("/v1/organization/webhooks/{}/deliveries", ids[1]),
        &admin,
        None,
    )
    .await;
    let notice = l["data"][0]["id"]
        .as_str()
        .expect("the notice's delivery")
        .to_owned();
    let forged = format!("dlv_{}{}", &notice[4..28], ids[2].trim_start_matches("wh_"));
    let (status, body) = call(
        &server,
        M::GET,
        &format!("/v1/deliveries/{forged}"),
        &other_admin,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(other.count(), 0);
}
