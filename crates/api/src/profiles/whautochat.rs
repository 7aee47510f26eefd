//! The `whautochat` profile: WhautoChat's webhooks API (docs/profiles.md).
//!
//! `x-api-key` carries an admin key (the organization-wide webhooks) or a
//! device token (its device's). Webhooks are
//! `{id, name, serverUrl, active, events, createdAt, updatedAt}`; lists are
//! bare arrays; errors `{"success":false,"error"}`.

use super::{answer, input, respond, Vocabulary};
use crate::{auth, error::ApiError, state::ApiState, webhooks};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use hookrelay_core::{rfc3339_ms, Webhook};
use serde_json::{json, Value};
use std::collections::HashMap;

/// WhautoChat's event names: its WhatsApp ones stand for the engine's
/// message types; the others are engine types of their own.
const VOCABULARY: Vocabulary = Vocabulary {
    names: &[
        ("incoming_whatsapp_message", "message.received"),
        ("outgoing_whatsapp_message", "message.sent"),
        ("incoming_instagram_message", "incoming_instagram_message"),
        ("outgoing_instagram_message", "outgoing_instagram_message"),
        ("incoming_telegram_message", "incoming_telegram_message"),
        ("outgoing_telegram_message", "outgoing_telegram_message"),
        ("incoming_messenger_message", "incoming_messenger_message"),
        ("outgoing_messenger_message", "outgoing_messenger_message"),
        ("incoming_website_message", "incoming_website_message"),
        ("outgoing_website_message", "outgoing_website_message"),
        ("contact_created", "contact_created"),
        ("contact_tag_added", "contact_tag_added"),
        ("contact_tag_removed", "contact_tag_removed"),
    ],
    catalog_too: false,
};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route(
            "/v1/webhooks/{webhookId}",
            get(read).put(update).delete(delete),
        )
}

/// `{"success":false,"error"}` with the error's status.
pub(super) fn render(e: ApiError) -> Response {
    let (status, _, message) = e.parts();
    answer(status, json!({"success": false, "error": message}))
}

fn view(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "serverUrl": w.url,
        "active": w.active,
        "events": VOCABULARY.show(&w.events),
        "createdAt": rfc3339_ms(w.created_at_ms),
        "updatedAt": rfc3339_ms(w.updated_at_ms),
    })
}

fn scope(s: &ApiState, h: &HeaderMap) -> Result<webhooks::Scope, ApiError> {
    auth::scope_of(s, auth::presented(h)).map(webhooks::Scope::of_credential)
}

type Body = Result<Bytes, BytesRejection>;

/// `GET /v1/webhooks?limit=&page=`: a bare array.
#[utoipa::path(get, path = "/v1/webhooks", params(("limit" = Option<String>, Query, description = "1..=100, default 20"), ("page" = Option<String>, Query, description = "≥ 1, default 1")), responses((status = 200, description = "Array of Webhook"), (status = 400, description = "`{success:false,error}`"), (status = 401, description = "`{success:false,error}`")))]
async fn list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let (limit, page) = webhooks::pagination(&q)?;
        let data: Vec<Value> = webhooks::all_of(&s, &scope)
            .iter()
            .skip(((page - 1) * limit) as usize)
            .take(limit as usize)
            .map(|w| view(w))
            .collect();
        Ok(answer(StatusCode::OK, Value::Array(data)))
    })
    .await
}

/// `POST /v1/webhooks`: 200 the webhook.
#[utoipa::path(post, path = "/v1/webhooks", responses((status = 200, description = "Webhook"), (status = 400, description = "`{success:false,error}`"), (status = 401, description = "`{success:false,error}`")))]
async fn create(State(s): State<ApiState>, h: HeaderMap, b: Body) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let input = input(&s, &h, b, &VOCABULARY, true, |_| Ok(()))?;
        let w = webhooks::create(&s, scope, input, VOCABULARY.event_names()).await?;
        Ok(answer(StatusCode::OK, view(&w)))
    })
    .await
}

/// `GET /v1/webhooks/{webhookId}`.
#[utoipa::path(get, path = "/v1/webhooks/{webhookId}", params(("webhookId" = String, Path, description = "Webhook unique ID")), responses((status = 200, description = "Webhook"), (status = 401, description = "`{success:false,error}`"), (status = 404, description = "`{success:false,error}`")))]
async fn read(State(s): State<ApiState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let w = webhooks::own_webhook(&s, &scope, &id)?;
        Ok(answer(StatusCode::OK, view(&w)))
    })
    .await
}

/// `PUT /v1/webhooks/{webhookId}`: the fields sent change, the others stay.
#[utoipa::path(put, path = "/v1/webhooks/{webhookId}", params(("webhookId" = String, Path, description = "Webhook unique ID")), responses((status = 200, description = "Webhook"), (status = 400, description = "`{success:false,error}`"), (status = 401, description = "`{success:false,error}`"), (status = 404, description = "`{success:false,error}`")))]
async fn update(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        webhooks::own_webhook(&s, &scope, &id)?;
        let input = input(&s, &h, b, &VOCABULARY, false, |_| Ok(()))?;
        let w = webhooks::update(&s, &scope, &id, input, true, VOCABULARY.event_names()).await?;
        Ok(answer(StatusCode::OK, view(&w)))
    })
    .await
}

/// `DELETE /v1/webhooks/{webhookId}`: `{"success":true}`.
#[utoipa::path(delete, path = "/v1/webhooks/{webhookId}", params(("webhookId" = String, Path, description = "Webhook unique ID")), responses((status = 200, description = "`{success:true}`"), (status = 401, description = "`{success:false,error}`"), (status = 404, description = "`{success:false,error}`")))]
async fn delete(State(s): State<ApiState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let done = webhooks::delete(&s, scope, &id).await?;
        Ok(answer(StatusCode::OK, done))
    })
    .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hookrelay: whautochat profile",
        description = "WhautoChat's webhooks API, authenticated with `x-api-key` (docs/profiles.md)."
    ),
    paths(list, create, read, update, delete)
)]
pub(super) struct Doc;
