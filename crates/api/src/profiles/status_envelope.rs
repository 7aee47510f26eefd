//! The `status-envelope` profile: the webhooks API answering in
//! `{status, code, message, data}` with integer ids (docs/profiles.md).
//!
//! `Authorization` carries an admin key (the organization-wide webhooks) or
//! a device token (its device's), with or without `Bearer `. A webhook's id
//! here is its engine-wide number.

use super::{answer, credential, input, respond, Vocabulary};
use crate::{auth, error::ApiError, state::ApiState, webhooks};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use hookrelay_core::{rfc3339_ms, Webhook};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The engine catalog, plus its two connection names.
const VOCABULARY: Vocabulary = Vocabulary {
    names: &[
        ("connection.connected", "device.connected"),
        ("connection.disconnected", "device.disconnected"),
    ],
    catalog_too: true,
};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(read).put(update).delete(delete))
}

/// `{"status":false,"code","message","error"}`: the message names the
/// status, the error says what went wrong.
pub(super) fn render(e: ApiError) -> Response {
    let (status, _, detail) = e.parts();
    let message = match status {
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Payload too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable",
        _ => "Internal server error",
    };
    let error = if status == StatusCode::UNAUTHORIZED {
        "Invalid or missing authentication".to_owned()
    } else {
        detail
    };
    answer(
        status,
        json!({"status": false, "code": status.as_u16(), "message": message, "error": error}),
    )
}

fn success(status: StatusCode, message: &str, data: Value) -> Response {
    answer(
        status,
        json!({"status": true, "code": status.as_u16(), "message": message, "data": data}),
    )
}

fn view(w: &Webhook) -> Value {
    json!({
        "id": w.number,
        "url": w.url,
        "events": VOCABULARY.show(&w.events),
        "active": w.active,
        "created_at": rfc3339_ms(w.created_at_ms),
    })
}

fn scope(s: &ApiState, h: &HeaderMap) -> Result<webhooks::Scope, ApiError> {
    auth::scope_of(s, credential(h)).map(webhooks::Scope::of_credential)
}

/// The caller's webhook with this number, or 404.
fn own(s: &ApiState, scope: &webhooks::Scope, id: &str) -> Result<Arc<Webhook>, ApiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| s.config.webhook_by_number(n))
        .filter(|w| webhooks::owned_by(w, scope))
        .ok_or_else(|| ApiError::NotFound("Webhook not found".into()))
}

/// `url` must be HTTPS (unless the operator allows plain HTTP).
fn https_only(s: &ApiState) -> impl FnOnce(&Map<String, Value>) -> Result<(), ApiError> + '_ {
    move |map| match map.get("url").and_then(Value::as_str) {
        Some(u) if !s.delivery.allow_http && !u.to_ascii_lowercase().starts_with("https://") => {
            Err(ApiError::validation("URL must be HTTPS", Vec::new()))
        }
        _ => Ok(()),
    }
}

type Body = Result<Bytes, BytesRejection>;

/// `POST /webhooks`: 201.
#[utoipa::path(post, path = "/webhooks", responses((status = 201, description = "`{status:true, code:201, message:\"Webhook created successfully\", data}`"), (status = 400, description = "`{status:false, code, message, error}`"), (status = 401, description = "`{status:false, code, message, error}`")))]
async fn create(State(s): State<ApiState>, h: HeaderMap, b: Body) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let input = input(&s, &h, b, &VOCABULARY, true, https_only(&s))?;
        let w = webhooks::create(&s, scope, input, VOCABULARY.event_names()).await?;
        Ok(success(
            StatusCode::CREATED,
            "Webhook created successfully",
            view(&w),
        ))
    })
    .await
}

/// `GET /webhooks`: every webhook of the caller.
#[utoipa::path(get, path = "/webhooks", responses((status = 200, description = "`{status:true, code:200, message:\"Webhooks retrieved successfully\", data:[…]}`"), (status = 401, description = "`{status:false, code, message, error}`")))]
async fn list(State(s): State<ApiState>, h: HeaderMap) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let data: Vec<Value> = webhooks::all_of(&s, &scope)
            .iter()
            .map(|w| view(w))
            .collect();
        Ok(success(
            StatusCode::OK,
            "Webhooks retrieved successfully",
            Value::Array(data),
        ))
    })
    .await
}

/// `GET /webhooks/{id}`.
#[utoipa::path(get, path = "/webhooks/{id}", params(("id" = u64, Path, description = "webhook id")), responses((status = 200, description = "`{status:true, code:200, message:\"Webhook retrieved successfully\", data}`"), (status = 401, description = "`{status:false, code, message, error}`"), (status = 404, description = "`{status:false, code, message, error}`")))]
async fn read(State(s): State<ApiState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let w = own(&s, &scope, &id)?;
        Ok(success(
            StatusCode::OK,
            "Webhook retrieved successfully",
            view(&w),
        ))
    })
    .await
}

/// `PUT /webhooks/{id}`: the fields sent change, the others stay.
#[utoipa::path(put, path = "/webhooks/{id}", params(("id" = u64, Path, description = "webhook id")), responses((status = 200, description = "`{status:true, code:200, message:\"Webhook updated successfully\", data}`"), (status = 400, description = "`{status:false, code, message, error}`"), (status = 401, description = "`{status:false, code, message, error}`"), (status = 404, description = "`{status:false, code, message, error}`")))]
async fn update(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let w = own(&s, &scope, &id)?;
        let input = input(&s, &h, b, &VOCABULARY, false, https_only(&s))?;
        let w = webhooks::update(
            &s,
            &scope,
            w.id.as_str(),
            input,
            true,
            VOCABULARY.event_names(),
        )
        .await?;
        Ok(success(
            StatusCode::OK,
            "Webhook updated successfully",
            view(&w),
        ))
    })
    .await
}

/// `DELETE /webhooks/{id}`: `data` null.
#[utoipa::path(delete, path = "/webhooks/{id}", params(("id" = u64, Path, description = "webhook id")), responses((status = 200, description = "`{status:true, code:200, message:\"Webhook deleted successfully\", data:null}`"), (status = 401, description = "`{status:false, code, message, error}`"), (status = 404, description = "`{status:false, code, message, error}`")))]
async fn delete(State(s): State<ApiState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    respond(render, async {
        let scope = scope(&s, &h)?;
        let w = own(&s, &scope, &id)?;
        webhooks::delete(&s, scope, w.id.as_str()).await?;
        Ok(success(
            StatusCode::OK,
            "Webhook deleted successfully",
            Value::Null,
        ))
    })
    .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hookrelay: status-envelope profile",
        description = "The webhooks API with `{status, code, message, data}` answers and integer ids (docs/profiles.md)."
    ),
    paths(create, list, read, update, delete)
)]
pub(super) struct Doc;
