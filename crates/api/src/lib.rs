//! The REST management API of hookrelay (axum).
//!
//! Owns: authentication of device tokens, admin keys and the operator key
//! ([`auth`]), the two error envelopes ([`error`]: the `/webhook` profile's
//! and the native `/v1` one), the `/webhook` profile, tenancy routes
//! (organizations, apps, tokens), health routes, request metrics, and the
//! JSON fallbacks for unknown routes and methods.
//!
//! Must not: deliver, read the log, or know about gRPC.

mod auth;
mod body;
mod body_read;
mod deliveries;
mod error;
mod limit;
mod openapi;
mod profiles;
mod state;
mod stats;
mod tenancy;
mod views;
mod webhooks;

pub use body_read::BodyRead;
pub use limit::{ClientAddr, RateLimit};
pub use profiles::{app as profile_app, names as profile_names};
pub use state::{ApiConfig, ApiDeps, ApiState, TenancyConfig};

use crate::{error::ApiError, openapi::Status};
use axum::{
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use hookrelay_core::metric;
use tracing::Instrument;

/// Largest accepted request body (1 MiB); larger answers 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The REST router: every route of this crate, with JSON fallbacks, the body
/// limit and request metrics. The server merges ingest's `/v1/events` and
/// `/metrics` into it.
pub fn router(state: ApiState) -> Router {
    profiles::wuts::routes()
        .route(
            "/v1/organizations",
            post(tenancy::create_org).get(tenancy::list_orgs),
        )
        .route("/v1/organizations/{org_id}/apps", post(tenancy::bind_app))
        .route(
            "/v1/organization/ingest-keys",
            post(tenancy::create_ingest_key).get(tenancy::list_ingest_keys),
        )
        .route(
            "/v1/organization/ingest-keys/{id}",
            axum::routing::delete(tenancy::delete_ingest_key),
        )
        .route(
            "/v1/organization/apps",
            post(tenancy::create_app).get(tenancy::list_apps),
        )
        .route(
            "/v1/organization/apps/{app_id}",
            get(tenancy::get_app).delete(tenancy::delete_app),
        )
        .route(
            "/v1/organization/apps/{app_id}/tokens",
            post(tenancy::create_token).get(tenancy::list_tokens),
        )
        .route(
            "/v1/organization/apps/{app_id}/tokens/{token_id}",
            axum::routing::delete(tenancy::revoke_token),
        )
        .route(
            "/v1/webhooks",
            get(webhooks::d_list).post(webhooks::d_create),
        )
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::d_get)
                .put(webhooks::d_put)
                .patch(webhooks::d_patch)
                .delete(webhooks::d_delete),
        )
        .route(
            "/v1/organization/apps/{app_id}/webhooks",
            get(webhooks::a_list).post(webhooks::a_create),
        )
        .route(
            "/v1/organization/apps/{app_id}/webhooks/{id}",
            get(webhooks::a_get)
                .put(webhooks::a_put)
                .patch(webhooks::a_patch)
                .delete(webhooks::a_delete),
        )
        .route(
            "/v1/organization/webhooks",
            get(webhooks::o_list).post(webhooks::o_create),
        )
        .route(
            "/v1/organization/webhooks/{id}",
            get(webhooks::o_get)
                .put(webhooks::o_put)
                .patch(webhooks::o_patch)
                .delete(webhooks::o_delete),
        )
        .route(
            "/v1/organization/webhooks/{id}/deliveries",
            get(deliveries::o_list),
        )
        .route(
            "/v1/organization/webhooks/{id}/test",
            post(deliveries::o_test),
        )
        .route(
            "/v1/organization/webhooks/{id}/replay",
            post(deliveries::o_replay),
        )
        .route(
            "/v1/organization/webhooks/{id}/rotate-secret",
            post(deliveries::o_rotate),
        )
        .route("/v1/organization/webhooks/{id}/stats", get(stats::o_get))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries::list))
        .route("/v1/webhooks/{id}/stats", get(stats::get))
        .route("/v1/webhooks/{id}/test", post(deliveries::test))
        .route("/v1/webhooks/{id}/replay", post(deliveries::replay))
        .route("/v1/webhooks/{id}/rotate-secret", post(deliveries::rotate))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/event-types", get(deliveries::event_types))
        .route("/v1/whoami", get(tenancy::whoami))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Finishes a router for serving: JSON 404/405 fallbacks, the body limit,
/// the rate limits of `state` (per credential, per ingest key, and per
/// client address for failed authentications) and request metrics. Call
/// once, after every route is merged.
pub fn finish(router: Router, state: ApiState) -> Router {
    router
        .fallback(error::not_found_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state, limit::limit))
        .layer(middleware::from_fn(observe))
}

/// [`finish`] for a profile's listener: every error in its envelope.
fn finish_with(router: Router, state: ApiState, render: profiles::Render) -> Router {
    router
        .fallback(move || async move { render(ApiError::NotFound("no such route".into())) })
        .method_not_allowed_fallback(move || async move { render(ApiError::MethodNotAllowed) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            (state, render),
            limit::limit_profile,
        ))
        .layer(middleware::from_fn(observe))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Status)))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Status), (status = 503, body = Status)))]
async fn readyz(State(state): State<ApiState>) -> Response {
    match state.readiness() {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// The request id a client sent in `x-request-id`, if it is a sane one.
fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_owned())
}

/// Every request runs in a span carrying its request id (the client's
/// `x-request-id`, or a new one), echoed in the answer; request metrics.
/// Handlers log inside the span, so JSON log lines carry `request_id`, and
/// ingest's lines name the event ids that delivery lines carry too.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = client_request_id(&req).unwrap_or_else(hookrelay_core::new_request_id);
    let span = tracing::info_span!("request", request_id = %request_id, method = %req.method(), route = %route);
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request answered"
        )
    });
    metrics::counter!(
        metric::HTTP_REQUESTS,
        "route" => route,
        "status" => resp.status().as_u16().to_string()
    )
    .increment(1);
    resp
}

/// The request id header.
const REQUEST_ID: &str = "x-request-id";

#[cfg(test)]
mod tests;
