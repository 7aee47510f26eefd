//! The OpenAPI 3.1 description served at `/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` attributes. A test calls every documented
//! operation on the real router, so the document cannot name a route that
//! does not exist.

#![allow(dead_code)] // Schema types exist for the document only.

use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

/// A field that failed validation.
#[derive(Serialize, ToSchema)]
pub(crate) struct FieldErrorDoc {
    field: String,
    message: String,
}

/// Error body of the `/v1` routes.
#[derive(Serialize, ToSchema)]
pub(crate) struct NativeError {
    error: NativeErrorBody,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NativeErrorBody {
    /// `VALIDATION_ERROR`, `UNAUTHORIZED`, `NOT_FOUND`, `CONFLICT`,
    /// `RATE_LIMITED`, `METHOD_NOT_ALLOWED`, `PAYLOAD_TOO_LARGE`,
    /// `UNSUPPORTED_MEDIA_TYPE`, `UNAVAILABLE`, `INTERNAL`.
    code: String,
    message: String,
    details: Option<Vec<FieldErrorDoc>>,
    available_events: Option<Vec<String>>,
}

/// Error body of the `/webhook` profile.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileError {
    success: bool,
    error: String,
    error_code: String,
    /// RFC 3339.
    timestamp: String,
    details: Option<Vec<FieldErrorDoc>>,
    available_events: Option<Vec<String>>,
}

/// Retry schedule of a webhook.
#[derive(Serialize, ToSchema)]
pub(crate) struct RetryPolicyDoc {
    /// `incremental` (n × base) or `exponential` (base × 2^(n-1), ±20 % jitter).
    backoff: String,
    base_delay_ms: u64,
    max_delay_ms: u64,
}

/// `POST /webhook` body.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileWebhookInput {
    /// Absolute https URL (http only with `delivery.allow_http`), ≤ 2048 chars.
    webhook_url: String,
    /// Catalog names or patterns (`*`, `message.*`); at least one.
    enabled_events: Vec<String>,
    enabled: Option<bool>,
    /// 0..=20, default 3.
    retry_attempts: Option<u32>,
    /// Seconds, 1..=60, default 10.
    timeout: Option<u32>,
    /// Omitted keeps the current secret; `""` removes it. Never returned.
    secret: Option<String>,
    /// At most 20; not `host`, `content-length`, `content-type`,
    /// `transfer-encoding`, `connection` or `webhook-*`.
    headers: Option<BTreeMap<String, String>>,
}

/// A device's primary webhook as the profile shows it.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileWebhook {
    id: String,
    webhook_url: String,
    enabled_events: Vec<String>,
    enabled: bool,
    retry_attempts: u32,
    timeout: u32,
    headers: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileConfigured {
    success: bool,
    message: String,
    webhook: ProfileWebhook,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileCurrent {
    success: bool,
    webhook: ProfileWebhook,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileDeleted {
    success: bool,
    message: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileEvents {
    success: bool,
    events: Vec<String>,
}

/// Webhook fields accepted by `/v1` (create, PUT, PATCH). Aliases:
/// `webhook_url`/`serverUrl` for `url`, `enabled_events` for `events`,
/// `enabled` for `active`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookInputDoc {
    url: Option<String>,
    events: Option<Vec<String>>,
    active: Option<bool>,
    name: Option<String>,
    retry_attempts: Option<u32>,
    timeout: Option<u32>,
    retry_policy: Option<RetryPolicyDoc>,
    headers: Option<BTreeMap<String, String>>,
    secret: Option<String>,
    /// Deliveries per second, 1..=100000.
    rate_limit: Option<u32>,
}

/// A webhook as `/v1` shows it (the secret is never returned).
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookDoc {
    id: String,
    name: String,
    url: String,
    events: Vec<String>,
    active: bool,
    retry_attempts: u32,
    timeout: u32,
    retry_policy: RetryPolicyDoc,
    headers: BTreeMap<String, String>,
    rate_limit: Option<u32>,
    /// `open` while the target host's circuit breaker probes one attempt at a time.
    circuit: String,
    failing_since: Option<String>,
    created_at: String,
    updated_at: String,
    /// `app` (one app's events) or `organization` (every app of the organization).
    scope: String,
    /// The app, for `scope` `app` only.
    app_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookList {
    data: Vec<WebhookDoc>,
    page: u64,
    limit: u64,
    total: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Success {
    success: bool,
}

/// One attempt of a delivery.
#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptDoc {
    attempt: u32,
    started_at: String,
    duration_ms: u32,
    status_code: Option<u16>,
    /// `timeout`, `connect_error`, `tls_error`, `blocked_address`, `http_4xx`, `http_5xx`, `other`.
    error: Option<String>,
    /// First 4 KiB of the answer, for failures.
    response_body: Option<String>,
}

/// A delivery: one event for one webhook.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryDoc {
    id: String,
    event_id: String,
    event: String,
    /// `pending`, `delivered`, `failed`, `cancelled`.
    status: String,
    attempts: u32,
    next_attempt_at: Option<String>,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    webhook_id: Option<String>,
    /// `GET /v1/deliveries/{id}` only: the event's `data` object, as
    /// delivered; null once the event has left the log (`store.retention`).
    data: Option<serde_json::Value>,
    attempt_log: Option<Vec<AttemptDoc>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    data: Vec<DeliveryDoc>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RetryAccepted {
    id: String,
    status: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TestAccepted {
    event_id: String,
    delivery_id: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReplayRequest {
    /// RFC 3339; events appended at or after it.
    since: String,
    /// RFC 3339; events appended before it (default: now).
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReplayAccepted {
    replayed: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedSecret {
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventTypeDoc {
    name: String,
    category: String,
    description: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventTypes {
    data: Vec<EventTypeDoc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrgInput {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrgCreated {
    id: String,
    name: String,
    /// Shown once; only its hash is stored.
    admin_key: String,
    created_at: String,
}

/// An admin-created app: the server assigns its device id (a UUID v4);
/// `id` is accepted only with `tenancy.admin_device_ids = true`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppInput {
    name: String,
}

/// An operator binding: the device id the gateway uses (a UUID v4 when omitted).
#[derive(Serialize, ToSchema)]
pub(crate) struct BindInput {
    id: Option<String>,
    name: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrgDoc {
    id: String,
    name: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrgList {
    data: Vec<OrgDoc>,
}

/// A name for a token or an ingest key (optional).
#[derive(Serialize, ToSchema)]
pub(crate) struct NamedInput {
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CredentialDoc {
    id: String,
    name: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CredentialList {
    data: Vec<CredentialDoc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct IngestKeyCreated {
    /// `ikid_…`
    id: String,
    name: String,
    /// `ik_…`, shown once; only its hash is stored.
    key: String,
    created_at: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AppDoc {
    id: String,
    name: String,
    created_at: String,
}

/// `GET /v1/whoami`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// `device` (a device token) or `admin` (an admin key).
    kind: String,
    org_id: String,
    /// The device a device token belongs to; null for an admin key.
    app_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AppList {
    data: Vec<AppDoc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TokenCreated {
    /// `tok_…`
    id: String,
    name: String,
    /// A UUID v4 device token, shown once.
    token: String,
    created_at: String,
}

/// An event for `POST /v1/events` (or an array of them).
#[derive(Serialize, ToSchema)]
pub(crate) struct IngestEventDoc {
    id: Option<String>,
    device_id: String,
    event: String,
    /// Unix seconds.
    timestamp: Option<i64>,
    data: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct IngestResultDoc {
    event_id: String,
    sequence: u64,
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct IngestAccepted {
    results: Vec<IngestResultDoc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    status: String,
}

/// HTTP ingest (served by the ingest crate; documented here).
#[utoipa::path(post, path = "/v1/events", tag = "ingest",
    request_body(content = IngestEventDoc, description = "one event, or an array of them"),
    security(("ingest_key" = [])),
    responses(
        (status = 202, body = IngestAccepted),
        (status = 400, body = NativeError), (status = 401, body = NativeError),
        (status = 413, body = NativeError), (status = 429, body = NativeError),
        (status = 503, body = NativeError),
    ))]
fn ingest_events() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn document() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.clone(),
    )
        .into_response()
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            let mut s = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            s.description = Some(desc.to_owned());
            SecurityScheme::Http(s)
        };
        c.add_security_scheme(
            "device_token",
            bearer("Device token (UUID v4), or the same in `x-api-key`"),
        );
        c.add_security_scheme(
            "admin_key",
            bearer("Admin key `sk_admin_…`, or the same in `x-api-key`"),
        );
        c.add_security_scheme(
            "operator_key",
            bearer("The operator key (`auth.operator_key`)"),
        );
        c.add_security_scheme("ingest_key", bearer("An ingest key (`ingest.keys`)"));
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "hookrelay", description = "REST management API of hookrelay (docs/api.md)."),
    modifiers(&Security),
    paths(
        crate::profiles::wuts::configure, crate::profiles::wuts::get, crate::profiles::wuts::delete, crate::profiles::wuts::events,
        crate::tenancy::create_org, crate::tenancy::create_app, crate::tenancy::list_apps,
        crate::tenancy::get_app, crate::tenancy::delete_app, crate::tenancy::create_token,
        crate::tenancy::list_orgs, crate::tenancy::bind_app, crate::tenancy::list_tokens,
        crate::tenancy::revoke_token, crate::tenancy::create_ingest_key,
        crate::tenancy::list_ingest_keys, crate::tenancy::delete_ingest_key,
        crate::webhooks::d_list, crate::webhooks::d_create, crate::webhooks::d_get,
        crate::webhooks::d_put, crate::webhooks::d_patch, crate::webhooks::d_delete,
        crate::webhooks::a_list, crate::webhooks::a_create, crate::webhooks::a_get,
        crate::webhooks::a_put, crate::webhooks::a_patch, crate::webhooks::a_delete,
        crate::webhooks::o_list, crate::webhooks::o_create, crate::webhooks::o_get,
        crate::webhooks::o_put, crate::webhooks::o_patch, crate::webhooks::o_delete,
        crate::deliveries::o_list, crate::deliveries::o_test, crate::deliveries::o_replay,
        crate::deliveries::o_rotate,
        crate::deliveries::list, crate::deliveries::get, crate::deliveries::retry,
        crate::deliveries::test, crate::deliveries::replay, crate::deliveries::rotate,
        crate::deliveries::event_types, crate::stats::get, crate::stats::o_get,
        crate::tenancy::whoami,
        crate::healthz, crate::readyz, ingest_events, document,
    ),
)]
pub(crate) struct ApiDoc;
