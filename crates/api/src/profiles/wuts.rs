//! The `/webhook` profile (docs/api.md): one primary webhook per device.

#[allow(unused_imports)]
use crate::openapi::*;
use crate::{
    auth,
    body::{json_object, webhook_input},
    error::{ApiError, Profile},
    state::ApiState,
    views::{build_webhook, profile_webhook, Owner},
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::HeaderMap,
    Json,
};
use hookrelay_core::{now_ms, Webhook};
use serde_json::{json, Value};
use std::sync::Arc;

fn primary(state: &ApiState, device: &auth::Device) -> Option<Arc<Webhook>> {
    state
        .config
        .webhooks_of(&device.device_id)
        .into_iter()
        .find(|w| w.primary)
}

fn not_configured() -> ApiError {
    ApiError::NotFound("Webhook not configured".to_owned())
}

/// `POST /webhook`: creates or replaces the device's primary webhook.
#[utoipa::path(post, path = "/webhook", tag = "webhook profile", request_body = ProfileWebhookInput, security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = ProfileConfigured), (status = 400, body = ProfileError), (status = 401, body = ProfileError), (status = 429, body = ProfileError), (status = 413, body = ProfileError), (status = 415, body = ProfileError)))]
pub(crate) async fn configure(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Profile> {
    let device = auth::device(&state, &headers)?;
    let map = json_object(&headers, body)?;
    let input = webhook_input(&map)
        .map_err(|details| ApiError::validation("validation failed", details))?;
    if let Err(problems) = input.validate(&state.catalog, &state.delivery, true) {
        let available =
            (!problems.unknown_events.is_empty()).then(|| state.catalog.names().to_vec());
        let message = if problems.unknown_events.is_empty() {
            "validation failed".to_owned()
        } else {
            format!(
                "unknown event names: {}",
                problems.unknown_events.join(", ")
            )
        };
        return Err(Profile(ApiError::Validation {
            message,
            details: problems.details,
            available_events: available,
        }));
    }
    // Read the current primary, build and write in one atomic step of the
    // store: a concurrent DELETE or auto-disable is never undone by a stale copy.
    let now = now_ms();
    let delivery = state.delivery.clone();
    let owner = Owner {
        org_id: device.org_id.clone(),
        device_id: device.device_id.clone(),
        scope: hookrelay_core::WebhookScope::App,
        primary: true,
        event_names: Default::default(),
    };
    let stored = state
        .config
        .upsert_primary(
            &device.device_id,
            state.max_webhooks_per_app,
            Box::new(move |existing: Option<&Webhook>| {
                Some(build_webhook(
                    existing,
                    input.clone(),
                    owner.clone(),
                    &delivery,
                    now,
                ))
            }),
        )
        .await?
        .ok_or(ApiError::Internal)?;
    Ok(Json(json!({
        "success": true,
        "message": "Webhook configured successfully",
        "webhook": profile_webhook(&stored),
    })))
}

/// `GET /webhook`.
#[utoipa::path(get, path = "/webhook", tag = "webhook profile", security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = ProfileCurrent), (status = 404, body = ProfileError), (status = 401, body = ProfileError), (status = 429, body = ProfileError)))]
pub(crate) async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Profile> {
    let device = auth::device(&state, &headers)?;
    let w = primary(&state, &device).ok_or_else(not_configured)?;
    Ok(Json(
        json!({"success": true, "webhook": profile_webhook(&w)}),
    ))
}

/// `DELETE /webhook`.
#[utoipa::path(delete, path = "/webhook", tag = "webhook profile", security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = ProfileDeleted), (status = 404, body = ProfileError), (status = 401, body = ProfileError), (status = 429, body = ProfileError)))]
pub(crate) async fn delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Profile> {
    let device = auth::device(&state, &headers)?;
    let w = primary(&state, &device).ok_or_else(not_configured)?;
    let deleted = state
        .config
        .delete_webhook(&w.id, Box::new(|w: &Webhook| w.primary))
        .await?;
    if !deleted {
        return Err(not_configured().into());
    }
    Ok(Json(
        json!({"success": true, "message": "Webhook deleted successfully"}),
    ))
}

/// `GET /webhook/events`: every subscribable name.
#[utoipa::path(get, path = "/webhook/events", tag = "webhook profile", security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = ProfileEvents), (status = 401, body = ProfileError), (status = 429, body = ProfileError)))]
pub(crate) async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Profile> {
    auth::device(&state, &headers)?;
    Ok(Json(
        json!({"success": true, "events": state.catalog.names()}),
    ))
}

/// The profile's routes (also served on the main listener).
pub(crate) fn routes() -> axum::Router<ApiState> {
    use axum::routing::{get as get_, post};
    axum::Router::new()
        .route("/webhook", post(configure).get(get).delete(delete))
        .route("/webhook/events", get_(events))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hookrelay: wuts profile",
        description = "The `/webhook` API (docs/profiles.md)."
    ),
    paths(configure, get, delete, events)
)]
pub(super) struct Doc;

/// Errors in this profile's envelope.
pub(super) fn render(e: ApiError) -> axum::response::Response {
    e.into_format(crate::error::Format::Profile)
}
