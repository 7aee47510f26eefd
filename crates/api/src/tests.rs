//! Router-level tests: envelopes, limits and auth, without a network.

use crate::{finish, router, ApiConfig, ApiDeps, ApiState};
use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use hookrelay_core::{hash_token, Catalog, DeliveryConfig, DeviceId, OrgId};
use hookrelay_sled::Store;
use hookrelay_store::{
    App, BoxFuture, ConfigStore, ControlError, DeliveryControl, DeviceToken, Org,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const OPERATOR: &str = "operator-key-0123456789";

/// These tests never reach the scheduler.
struct NoScheduler;

impl DeliveryControl for NoScheduler {
    fn circuit_open(&self, _: &str) -> bool {
        false
    }

    fn retry(&self, _: hookrelay_core::DeliveryKey) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async { Err(ControlError::Unavailable) })
    }

    fn replay(
        &self,
        _: hookrelay_core::WebhookId,
        _: i64,
        _: i64,
    ) -> BoxFuture<'_, Result<u64, ControlError>> {
        Box::pin(async { Err(ControlError::Unavailable) })
    }
}

async fn app() -> (Router, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let org = Org {
        id: OrgId::from("org_a"),
        name: "a".into(),
        created_at_ms: 0,
    };
    store
        .config
        .create_org(org, hash_token("sk_admin_a"))
        .await
        .expect("org");
    let app = App {
        id: DeviceId::from("dev-a"),
        org_id: OrgId::from("org_a"),
        name: "a".into(),
        created_at_ms: 0,
    };
    store.config.create_app(app, 10).await.expect("app");
    let token = DeviceToken {
        id: "tok_a".into(),
        hash: hash_token("tok-a"),
        name: String::new(),
        org_id: OrgId::from("org_a"),
        device_id: DeviceId::from("dev-a"),
        created_at_ms: 0,
    };
    store.config.add_token(token, 10).await.expect("token");
    let deps = ApiDeps {
        config: store.config.clone(),
        log: store.log.clone(),
        deliveries: store.deliveries.clone(),
        control: Arc::new(NoScheduler),
        catalog: Arc::new(Catalog::builtin()),
        health: Some(store.health()),
    };
    let state = ApiState::new(
        deps,
        ApiConfig {
            operator_key: Some(OPERATOR.into()),
            delivery: DeliveryConfig::default(),
            max_webhooks_per_app: 3,
            rate_limit: crate::RateLimit {
                per_second: 1000,
                burst: 1000,
            },
            ..ApiConfig::default()
        },
    );
    (finish(router(state.clone()), state), store, dir)
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, token: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body.into())
        .expect("request")
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (app, _s, _d) = app().await;
    let (status, body) = call(
        &app,
        Request::get("/nope").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, body) = call(
        &app,
        Request::put("/webhook").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn bodies_are_checked_for_type_size_and_syntax() {
    let (app, _s, _d) = app().await;
    let (status, body) = call(&app, post("/webhook", "tok-a", "text/plain", "{}")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error_code"], "UNSUPPORTED_MEDIA_TYPE");
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(crate::MAX_BODY_BYTES));
    let (status, _) = call(&app, post("/webhook", "tok-a", "application/json", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = call(
        &app,
        post("/webhook", "tok-a", "application/json", "{\"a\":"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], "VALIDATION_ERROR");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed JSON")),
        "{body}"
    );
    let wrong_type = json!({"webhook_url": 5, "enabled_events": "message.sent"}).to_string();
    let (status, body) = call(
        &app,
        post("/webhook", "tok-a", "application/json", wrong_type),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"].as_array().map(Vec::len), Some(2), "{body}");
}

#[tokio::test]
async fn tokens_are_scoped_and_other_tenants_get_404() {
    let (app, store, _d) = app().await;
    // An admin key is not a device token.
    let (status, _) = call(
        &app,
        Request::get("/webhook")
            .header("authorization", "Bearer sk_admin_a")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Another organization's admin sees no trace of org_a's app.
    let other = Org {
        id: OrgId::from("org_b"),
        name: "b".into(),
        created_at_ms: 0,
    };
    store
        .config
        .create_org(other, hash_token("sk_admin_b"))
        .await
        .expect("org");
    for req in [
        Request::get("/v1/organization/apps/dev-a"),
        Request::delete("/v1/organization/apps/dev-a"),
        Request::post("/v1/organization/apps/dev-a/tokens"),
    ] {
        let req = req
            .header("x-api-key", "sk_admin_b")
            .body(Body::empty())
            .expect("req");
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    assert!(store.config.app(&DeviceId::from("dev-a")).is_some());
    // The operator route takes only the operator key.
    let (status, _) = call(
        &app,
        post(
            "/v1/organizations",
            "sk_admin_a",
            "application/json",
            r#"{"name":"x"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &app,
        post(
            "/v1/organizations",
            OPERATOR,
            "application/json",
            r#"{"name":""}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["details"][0]["field"], "name");
}

#[tokio::test]
async fn reconfiguring_keeps_id_and_secret_unless_told() {
    let (app, store, _d) = app().await;
    let first = json!({"webhook_url": "https://a.example/h", "enabled_events": ["*"], "secret": "s1", "timeout": 5});
    let (status, body) = call(
        &app,
        post("/webhook", "tok-a", "application/json", first.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = body["webhook"]["id"].clone();
    let second = json!({"webhook_url": "https://b.example/h", "enabled_events": ["call.*"]});
    let (_, body) = call(
        &app,
        post("/webhook", "tok-a", "application/json", second.to_string()),
    )
    .await;
    assert_eq!(body["webhook"]["id"], id);
    assert_eq!(
        body["webhook"]["timeout"], 10,
        "omitted fields take their defaults"
    );
    let w = store.config.webhooks_of(&DeviceId::from("dev-a"));
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].secret.as_deref(), Some("s1"), "omitted secret is kept");
    let third =
        json!({"webhook_url": "https://b.example/h", "enabled_events": ["call.*"], "secret": ""});
    call(
        &app,
        post("/webhook", "tok-a", "application/json", third.to_string()),
    )
    .await;
    assert_eq!(
        store.config.webhooks_of(&DeviceId::from("dev-a"))[0].secret,
        None
    );
}

#[tokio::test]
async fn every_documented_operation_exists_on_the_router() {
    let (app, _s, _d) = app().await;
    let (status, doc) = call(
        &app,
        Request::get("/openapi.json")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{app_id}", "dev-a").replace("{id}", "x");
        for method in item.as_object().expect("item").keys() {
            if path == "/v1/events" {
                continue; // served by the ingest crate, merged in run.rs
            }
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, body) = call(&app, req).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let unknown_route =
                status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such route";
            assert!(
                !unknown_route,
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 31, "documented operations: {operations}");
    // Security schemes and error schemas are part of the document.
    for scheme in [
        "device_token",
        "admin_key",
        "operator_key",
        "ingest_key",
        "api_key",
    ] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    assert!(doc["components"]["schemas"]["NativeError"].is_object());
    assert!(doc["components"]["schemas"]["ProfileError"].is_object());
}

fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn stats_count_the_webhooks_own_attempts_and_hide_other_tenants() {
    use hookrelay_core::{now_ms, Attempt, DeliveryKey, ErrorKind, WebhookId};
    use hookrelay_store::DeliveryWrite;
    let (app, store, _d) = app().await;
    let body = json!({"url": "https://example.com/a", "events": ["*"]}).to_string();
    let (status, w) = call(
        &app,
        post("/v1/webhooks", "tok-a", "application/json", body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let id = w["id"].as_str().expect("id").to_owned();
    let now = now_ms();
    let attempt = |n: u64, ok: bool| {
        DeliveryWrite::Attempt(
            DeliveryKey {
                webhook_id: WebhookId::from(id.as_str()),
                seq: n,
                generation: 0,
            },
            Attempt {
                attempt: 1,
                started_at_ms: now - 1_000,
                duration_ms: if ok { 20 } else { 40 },
                status_code: Some(if ok { 200 } else { 503 }),
                error: (!ok).then_some(ErrorKind::Http5xx),
                response_body: None,
            },
        )
    };
    store
        .deliveries
        .apply(&[attempt(1, true), attempt(2, true), attempt(3, false)])
        .expect("attempts");
    let (status, s) = call(&app, get(&format!("/v1/webhooks/{id}/stats"), "tok-a")).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["total"]["attempts"], 3, "{s}");
    assert_eq!(s["total"]["succeeded"], 2);
    assert_eq!(s["total"]["latency_ms"]["p50"], 20);
    assert_eq!(s["total"]["latency_ms"]["max"], 40);
    assert_eq!(s["buckets"][23]["attempts"], 3, "flattened per hour: {s}");
    // An admin key reaches organization-wide webhooks here, not an app's;
    // an unknown id is the same 404.
    let (status, e) = call(
        &app,
        get(
            &format!("/v1/organization/webhooks/{id}/stats"),
            "sk_admin_a",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    let (status, _) = call(&app, get("/v1/webhooks/wh_nope/stats", "tok-a")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn whoami_names_the_kind_of_credential() {
    let (app, _s, _d) = app().await;
    let (status, me) = call(&app, get("/v1/whoami", "tok-a")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({"kind": "device", "org_id": "org_a", "app_id": "dev-a"})
    );
    let (_, me) = call(&app, get("/v1/whoami", "sk_admin_a")).await;
    assert_eq!(
        me,
        json!({"kind": "admin", "org_id": "org_a", "app_id": null})
    );
    let (status, e) = call(&app, get("/v1/whoami", "nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn console_files_do_not_spend_the_failed_authentication_budget() {
    let (app, _s, _d) = app().await;
    let bare = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    // Five page loads of a dozen files each, with no credential.
    for _ in 0..60 {
        let (status, _) = call(&app, bare("/console/assets/main.js")).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    // Requests without a credential elsewhere still do.
    let mut limited = false;
    for _ in 0..60 {
        let (status, _) = call(&app, bare("/v1/webhooks")).await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "60 unauthenticated API calls were never limited");
}
