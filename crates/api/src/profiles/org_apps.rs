//! The `org-apps` profile: organization-level webhooks of each app, with
//! camelCase fields and UUID ids (docs/profiles.md).
//!
//! `Authorization: Bearer sk_admin_…`; the app is the path's `{appId}`; a
//! webhook's id here is its own 128 bits written as a UUID. Errors are the
//! `/v1` envelope.

use super::{answer, input, respond, Vocabulary};
use crate::{
    error::{ApiError, Format},
    state::ApiState,
    webhooks::{self, Scope},
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use hookrelay_core::{rfc3339_ms, Webhook, WebhookId};
use serde_json::{json, Value};
use std::sync::Arc;

/// Its four message events.
const VOCABULARY: Vocabulary = Vocabulary {
    names: &[
        ("MESSAGE_CREATED", "message.received"),
        ("MESSAGE_SENT", "message.sent"),
        ("MESSAGE_DELIVERED", "message.delivered"),
        ("MESSAGE_READ", "message.read"),
    ],
    catalog_too: false,
};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/v1/organization/apps/{appId}/webhooks",
            get(list).post(create),
        )
        .route(
            "/v1/organization/apps/{appId}/webhooks/{webhookId}",
            get(read).put(update).delete(delete),
        )
}

/// `{"error":{"code","message"}}`, as `/v1`.
pub(super) fn render(e: ApiError) -> Response {
    e.into_format(Format::Native)
}

fn view(w: &Webhook) -> Value {
    json!({
        "id": w.id.as_uuid().unwrap_or_else(|| w.id.to_string()),
        "appId": w.device_id,
        "url": w.url,
        "events": VOCABULARY.show(&w.events),
        "headers": (!w.headers.is_empty()).then_some(&w.headers),
        "createdAt": rfc3339_ms(w.created_at_ms),
        "updatedAt": rfc3339_ms(w.updated_at_ms),
    })
}

fn scope(s: &ApiState, h: &HeaderMap, app: &str) -> Result<Scope, ApiError> {
    webhooks::app_scope(s, h, app)
}

/// The app's webhook the UUID names, or 404.
fn own(s: &ApiState, scope: &Scope, id: &str) -> Result<Arc<Webhook>, ApiError> {
    let id =
        WebhookId::from_uuid(id).ok_or_else(|| ApiError::NotFound("webhook not found".into()))?;
    webhooks::own_webhook(s, scope, id.as_str())
}

type Body = Result<Bytes, BytesRejection>;

/// `GET …/webhooks`: a bare array.
#[utoipa::path(get, path = "/v1/organization/apps/{appId}/webhooks", params(("appId" = String, Path, description = "App UUID")), responses((status = 200, description = "Array of Webhook"), (status = 401, description = "`{error:{code,message}}`"), (status = 404, description = "`{error:{code,message}}`")))]
async fn list(State(s): State<ApiState>, h: HeaderMap, Path(app): Path<String>) -> Response {
    respond(render, async {
        let scope = scope(&s, &h, &app)?;
        let data: Vec<Value> = webhooks::all_of(&s, &scope)
            .iter()
            .map(|w| view(w))
            .collect();
        Ok(answer(StatusCode::OK, Value::Array(data)))
    })
    .await
}

/// `POST …/webhooks`: 201 the webhook.
#[utoipa::path(post, path = "/v1/organization/apps/{appId}/webhooks", params(("appId" = String, Path, description = "App UUID")), responses((status = 201, description = "Webhook"), (status = 400, description = "`{error:{code,message}}`"), (status = 401, description = "`{error:{code,message}}`"), (status = 404, description = "`{error:{code,message}}`")))]
async fn create(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(app): Path<String>,
    b: Body,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h, &app)?;
        let input = input(&s, &h, b, &VOCABULARY, true, |_| Ok(()))?;
        let w = webhooks::create(&s, scope, input, VOCABULARY.event_names()).await?;
        Ok(answer(StatusCode::CREATED, view(&w)))
    })
    .await
}

/// `GET …/webhooks/{webhookId}`.
#[utoipa::path(get, path = "/v1/organization/apps/{appId}/webhooks/{webhookId}", params(("appId" = String, Path, description = "App UUID"), ("webhookId" = String, Path, description = "Webhook UUID")), responses((status = 200, description = "Webhook"), (status = 401, description = "`{error:{code,message}}`"), (status = 404, description = "`{error:{code,message}}`")))]
async fn read(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h, &app)?;
        let w = own(&s, &scope, &id)?;
        Ok(answer(StatusCode::OK, view(&w)))
    })
    .await
}

/// `PUT …/webhooks/{webhookId}`: the fields sent change, the others stay.
#[utoipa::path(put, path = "/v1/organization/apps/{appId}/webhooks/{webhookId}", params(("appId" = String, Path, description = "App UUID"), ("webhookId" = String, Path, description = "Webhook UUID")), responses((status = 200, description = "Webhook"), (status = 400, description = "`{error:{code,message}}`"), (status = 401, description = "`{error:{code,message}}`"), (status = 404, description = "`{error:{code,message}}`")))]
async fn update(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
    b: Body,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h, &app)?;
        let w = own(&s, &scope, &id)?;
        let input = input(&s, &h, b, &VOCABULARY, false, |_| Ok(()))?;
        let w = webhooks::update(
            &s,
            &scope,
            w.id.as_str(),
            input,
            true,
            VOCABULARY.event_names(),
        )
        .await?;
        Ok(answer(StatusCode::OK, view(&w)))
    })
    .await
}

/// `DELETE …/webhooks/{webhookId}`: `{"success":true}`.
#[utoipa::path(delete, path = "/v1/organization/apps/{appId}/webhooks/{webhookId}", params(("appId" = String, Path, description = "App UUID"), ("webhookId" = String, Path, description = "Webhook UUID")), responses((status = 200, description = "`{success:true}`"), (status = 401, description = "`{error:{code,message}}`"), (status = 404, description = "`{error:{code,message}}`")))]
async fn delete(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    respond(render, async {
        let scope = scope(&s, &h, &app)?;
        let w = own(&s, &scope, &id)?;
        Ok(answer(
            StatusCode::OK,
            webhooks::delete(&s, scope, w.id.as_str()).await?,
        ))
    })
    .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hookrelay: org-apps profile",
        description = "Organization-level webhooks of each app, `Authorization: Bearer sk_admin_…` (docs/profiles.md)."
    ),
    paths(list, create, read, update, delete)
)]
pub(super) struct Doc;
