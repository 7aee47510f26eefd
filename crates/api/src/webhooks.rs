//! The webhook service every API shares (create, update, delete, list,
//! validation, ownership), and the `/v1` webhook resource over it: for a
//! device token (`/v1/webhooks…`), for an admin key on one app
//! (`/v1/organization/apps/{app_id}/webhooks…`) and organization-wide
//! (`/v1/organization/webhooks…`). Each resolves to a [`Scope`]; everything
//! else is shared.

#[allow(unused_imports)]
use crate::openapi::*;
use crate::{
    auth,
    body::{json_object, webhook_input},
    error::{ApiError, Native},
    state::ApiState,
    views::{self, build_webhook, Owner},
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use hookrelay_core::{
    now_ms, DeviceId, FieldError, OrgId, Webhook, WebhookId, WebhookInput, WebhookScope,
};
use hookrelay_store::StoreError;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// Whose webhooks a request manages: one app's, or the organization-wide
/// ones of an organization (then `device_id` is empty).
#[derive(Clone)]
pub(crate) struct Scope {
    pub(crate) org_id: OrgId,
    pub(crate) device_id: DeviceId,
    pub(crate) kind: WebhookScope,
}

impl Scope {
    pub(crate) fn app(org_id: OrgId, device_id: DeviceId) -> Self {
        Self {
            org_id,
            device_id,
            kind: WebhookScope::App,
        }
    }

    pub(crate) fn organization(org_id: OrgId) -> Self {
        Self {
            org_id,
            device_id: DeviceId::from(""),
            kind: WebhookScope::Organization,
        }
    }

    /// The webhooks a credential manages without naming an app: a device
    /// token its device's, an admin key the organization-wide ones.
    pub(crate) fn of_credential(scope: hookrelay_store::TokenScope) -> Self {
        match scope {
            hookrelay_store::TokenScope::Device { org_id, device_id } => {
                Self::app(org_id, device_id)
            }
            hookrelay_store::TokenScope::Admin { org_id } => Self::organization(org_id),
        }
    }
}

/// A device token's own device.
pub(crate) fn device_scope(state: &ApiState, headers: &HeaderMap) -> Result<Scope, ApiError> {
    let d = auth::device(state, headers)?;
    Ok(Scope::app(d.org_id, d.device_id))
}

/// An admin key's organization-wide webhooks.
pub(crate) fn org_scope(state: &ApiState, headers: &HeaderMap) -> Result<Scope, ApiError> {
    Ok(Scope::organization(auth::admin(state, headers)?))
}

/// An admin key's app, by path; 404 when the app is not the organization's.
pub(crate) fn app_scope(
    state: &ApiState,
    headers: &HeaderMap,
    app_id: &str,
) -> Result<Scope, ApiError> {
    let org_id = auth::admin(state, headers)?;
    let app = crate::tenancy::own_app(state, &org_id, app_id)?;
    Ok(Scope::app(org_id, app.id))
}

fn not_found() -> ApiError {
    ApiError::NotFound("webhook not found".to_owned())
}

/// Whether `w` belongs to the scope.
pub(crate) fn owned_by(w: &Webhook, scope: &Scope) -> bool {
    w.scope == scope.kind && w.device_id == scope.device_id && w.org_id == scope.org_id
}

/// Every webhook of the scope, oldest first.
pub(crate) fn all_of(state: &ApiState, scope: &Scope) -> Vec<Arc<Webhook>> {
    match scope.kind {
        WebhookScope::App => state.config.webhooks_of(&scope.device_id),
        WebhookScope::Organization => state.config.org_webhooks(&scope.org_id),
    }
}

/// A webhook of the scope's device, or 404 (never 403).
pub(crate) fn own_webhook(
    state: &ApiState,
    scope: &Scope,
    id: &str,
) -> Result<Arc<Webhook>, ApiError> {
    state
        .config
        .webhook(&WebhookId::from(id))
        .filter(|w| owned_by(w, scope))
        .ok_or_else(not_found)
}

fn page_param(
    q: &HashMap<String, String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, FieldError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| FieldError {
                field: name.to_owned(),
                message: format!(
                    "must be an integer between {} and {}",
                    range.start(),
                    range.end()
                ),
            }),
    }
}

pub(crate) fn validate(
    state: &ApiState,
    input: &WebhookInput,
    require: bool,
) -> Result<(), ApiError> {
    input
        .validate(&state.catalog, &state.delivery, require)
        .map_err(|p| {
            let available = (!p.unknown_events.is_empty()).then(|| state.catalog.names().to_vec());
            ApiError::Validation {
                message: "validation failed".to_owned(),
                details: p.details,
                available_events: available,
            }
        })
}

fn parse_input(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<WebhookInput, ApiError> {
    let map = json_object(headers, body)?;
    webhook_input(&map).map_err(|details| ApiError::validation("validation failed", details))
}

async fn list(
    state: &ApiState,
    scope: &Scope,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let (limit, page) = pagination(q)?;
    let all = all_of(state, scope);
    let data: Vec<Value> = all
        .iter()
        .skip(((page - 1) * limit) as usize)
        .take(limit as usize)
        .map(|w| views::webhook(w, state.control.circuit_open(&w.url)))
        .collect();
    Ok(json!({"data": data, "page": page, "limit": limit, "total": all.len()}))
}

/// `limit` (1..=100, default 20) and `page` (≥ 1, default 1).
pub(crate) fn pagination(q: &HashMap<String, String>) -> Result<(u64, u64), ApiError> {
    let limit = page_param(q, "limit", 20, 1..=100);
    let page = page_param(q, "page", 1, 1..=1_000_000);
    let (limit, page) = match (limit, page) {
        (Ok(l), Ok(p)) => (l, p),
        (l, p) => {
            let details = [l.err(), p.err()].into_iter().flatten().collect();
            return Err(ApiError::validation("invalid pagination", details));
        }
    };
    Ok((limit, page))
}

async fn create_json(
    state: &ApiState,
    scope: Scope,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let input = parse_input(headers, body)?;
    validate(state, &input, true)?;
    let stored = create(state, scope, input, BTreeMap::new()).await?;
    Ok(webhook_view(state, &stored))
}

/// Creates a webhook from validated input; `event_names` are those of the
/// API it came through (empty: engine names).
pub(crate) async fn create(
    state: &ApiState,
    scope: Scope,
    input: WebhookInput,
    event_names: BTreeMap<String, String>,
) -> Result<Arc<Webhook>, ApiError> {
    let owner = Owner {
        org_id: scope.org_id,
        device_id: scope.device_id,
        scope: scope.kind,
        primary: false,
        event_names,
    };
    let w = build_webhook(None, input, owner, &state.delivery, now_ms());
    // The limit is checked by the store under its writer lock, so concurrent
    // creates never exceed it.
    let stored = match state
        .config
        .create_webhook(w, state.max_webhooks_per_app)
        .await
    {
        Err(StoreError::Limit { max, .. }) => {
            let owner = match scope.kind {
                WebhookScope::App => "app",
                WebhookScope::Organization => "organization (organization-wide)",
            };
            // A limit reached is the state's, not the input's (docs/api.md).
            return Err(ApiError::Conflict(format!(
                "the {owner} already has {max} webhooks, the most allowed"
            )));
        }
        other => other?,
    };
    Ok(stored)
}

/// `PUT` (replace: omitted fields take their defaults) or `PATCH` (merge:
/// omitted fields keep their values). The merge and the write happen in one
/// atomic update of the store: a concurrent change (an auto-disable, another
/// PATCH) is merged with, never overwritten, and a deleted webhook stays
/// deleted.
async fn update_json(
    state: &ApiState,
    scope: Scope,
    id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    merge: bool,
) -> Result<Value, ApiError> {
    own_webhook(state, &scope, id)?;
    let input = parse_input(headers, body)?;
    validate(state, &input, !merge)?;
    let stored = update(state, &scope, id, input, merge, BTreeMap::new()).await?;
    Ok(webhook_view(state, &stored))
}

/// Replaces (`merge` false) or merges into a webhook of the scope, in one
/// atomic step of the store; `event_names` as in [`create`].
pub(crate) async fn update(
    state: &ApiState,
    scope: &Scope,
    id: &str,
    input: WebhookInput,
    merge: bool,
    event_names: BTreeMap<String, String>,
) -> Result<Arc<Webhook>, ApiError> {
    let mut problem = None;
    let now = now_ms();
    let stored = state
        .config
        .update_webhook(
            &WebhookId::from(id),
            Box::new(|current: &mut Webhook| {
                // Runs again when another node changed the configuration
                // first: each run starts from the stored webhook.
                problem = None;
                if !owned_by(current, scope) {
                    problem = Some(not_found());
                    return false;
                }
                let input = if merge {
                    views::merged(current, input.clone())
                } else {
                    input.clone()
                };
                if let Err(e) = validate(state, &input, true) {
                    problem = Some(e);
                    return false;
                }
                let owner = Owner {
                    org_id: current.org_id.clone(),
                    device_id: current.device_id.clone(),
                    scope: current.scope,
                    primary: current.primary,
                    event_names: event_names.clone(),
                };
                *current = build_webhook(Some(current), input, owner, &state.delivery, now);
                true
            }),
        )
        .await?;
    if let Some(e) = problem {
        return Err(e);
    }
    stored.ok_or_else(not_found)
}

/// Deletes a webhook of the scope, or 404.
pub(crate) async fn delete(state: &ApiState, scope: Scope, id: &str) -> Result<Value, ApiError> {
    let id = WebhookId::from(id);
    let deleted = state
        .config
        .delete_webhook(&id, Box::new(|w: &Webhook| owned_by(w, &scope)))
        .await?;
    if !deleted {
        return Err(not_found());
    }
    Ok(json!({"success": true}))
}

type Body = Result<Bytes, BytesRejection>;
type Q = Query<HashMap<String, String>>;

// Device-token routes.

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("page" = Option<u32>, Query, description = "≥ 1, default 1")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = WebhookList), (status = 400, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Query(q): Q,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(list(&s, &scope, &q).await?))
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookInputDoc, security(("device_token" = []), ("api_key" = [])), responses((status = 201, body = WebhookDoc), (status = 400, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_create(
    State(s): State<ApiState>,
    h: HeaderMap,
    b: Body,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = device_scope(&s, &h)?;
    Ok((
        StatusCode::CREATED,
        Json(create_json(&s, scope, &h, b).await?),
    ))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(webhook_view(
        &s,
        own_webhook(&s, &scope, &id)?.as_ref(),
    )))
}

#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_put(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, false).await?))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_patch(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, true).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn d_delete(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(delete(&s, scope, &id).await?))
}

// Admin-key routes.

#[utoipa::path(get, path = "/v1/organization/apps/{app_id}/webhooks", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id"), ("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("page" = Option<u32>, Query, description = "≥ 1, default 1")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookList), (status = 400, body = NativeError),
        (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(app): Path<String>,
    Query(q): Q,
) -> Result<Json<Value>, Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok(Json(list(&s, &scope, &q).await?))
}

#[utoipa::path(post, path = "/v1/organization/apps/{app_id}/webhooks", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id")), request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = WebhookDoc), (status = 400, body = NativeError),
        (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_create(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(app): Path<String>,
    b: Body,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok((
        StatusCode::CREATED,
        Json(create_json(&s, scope, &h, b).await?),
    ))
}

#[utoipa::path(get, path = "/v1/organization/apps/{app_id}/webhooks/{id}", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id"), ("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok(Json(webhook_view(
        &s,
        own_webhook(&s, &scope, &id)?.as_ref(),
    )))
}

#[utoipa::path(put, path = "/v1/organization/apps/{app_id}/webhooks/{id}", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id"), ("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_put(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, false).await?))
}

#[utoipa::path(patch, path = "/v1/organization/apps/{app_id}/webhooks/{id}", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id"), ("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_patch(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, true).await?))
}

#[utoipa::path(delete, path = "/v1/organization/apps/{app_id}/webhooks/{id}", tag = "webhooks", params(("app_id" = String, Path, description = "app (device) id"), ("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn a_delete(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<Value>, Native> {
    let scope = app_scope(&s, &h, &app)?;
    Ok(Json(delete(&s, scope, &id).await?))
}

pub(crate) fn webhook_view(s: &ApiState, w: &Webhook) -> Value {
    views::webhook(w, s.control.circuit_open(&w.url))
}

// Organization-wide routes (admin key).

#[utoipa::path(get, path = "/v1/organization/webhooks", tag = "webhooks", params(("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("page" = Option<u32>, Query, description = "≥ 1, default 1")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookList), (status = 400, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Query(q): Q,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(list(&s, &scope, &q).await?))
}

#[utoipa::path(post, path = "/v1/organization/webhooks", tag = "webhooks", request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = WebhookDoc), (status = 400, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_create(
    State(s): State<ApiState>,
    h: HeaderMap,
    b: Body,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = org_scope(&s, &h)?;
    Ok((
        StatusCode::CREATED,
        Json(create_json(&s, scope, &h, b).await?),
    ))
}

#[utoipa::path(get, path = "/v1/organization/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(webhook_view(
        &s,
        own_webhook(&s, &scope, &id)?.as_ref(),
    )))
}

#[utoipa::path(put, path = "/v1/organization/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_put(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, false).await?))
}

#[utoipa::path(patch, path = "/v1/organization/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = WebhookInputDoc, security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_patch(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    b: Body,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(update_json(&s, scope, &id, &h, b, true).await?))
}

#[utoipa::path(delete, path = "/v1/organization/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_delete(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(delete(&s, scope, &id).await?))
}
