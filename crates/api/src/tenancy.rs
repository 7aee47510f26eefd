//! Organizations (operator key), apps and device tokens (admin key).

#[allow(unused_imports)]
use crate::openapi::*;
use crate::{
    auth,
    body::{json_object, Fields},
    error::{ApiError, Native},
    state::ApiState,
    views,
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use hookrelay_core::{
    generate_admin_key, hash_token, new_org_id, now_ms, rfc3339_ms, DeviceId, FieldError, OrgId,
};
use hookrelay_store::{App, Org, TokenScope};
use serde_json::{json, Value};

const MAX_NAME_LEN: usize = 200;
const MAX_APP_ID_LEN: usize = 128;

fn required_name(f: &mut Fields<'_>) -> Option<String> {
    match f.string(&["name"]) {
        Some(n) if !n.trim().is_empty() && n.len() <= MAX_NAME_LEN => Some(n),
        Some(_) => {
            f.errors.push(FieldError {
                field: "name".into(),
                message: format!("must be 1 to {MAX_NAME_LEN} characters"),
            });
            None
        }
        None if f.errors.is_empty() => {
            f.errors.push(FieldError {
                field: "name".into(),
                message: "is required".into(),
            });
            None
        }
        None => None,
    }
}

fn finish<T>(f: Fields<'_>, value: Option<T>) -> Result<T, ApiError> {
    match value {
        Some(v) if f.errors.is_empty() => Ok(v),
        _ => Err(ApiError::validation("validation failed", f.errors)),
    }
}

/// `POST /v1/organizations` (operator key): 201 with the admin key, shown once.
#[utoipa::path(post, path = "/v1/organizations", tag = "tenancy", request_body = OrgInput, security(("operator_key" = [])), responses((status = 201, body = OrgCreated), (status = 400, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_org(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    auth::operator(&state, &headers)?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let name = required_name(&mut f);
    let name = finish(f, name)?;
    let org = Org {
        id: new_org_id(),
        name,
        created_at_ms: now_ms(),
    };
    let admin_key = generate_admin_key();
    state
        .config
        .create_org(org.clone(), hash_token(&admin_key))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": org.id,
            "name": org.name,
            "admin_key": admin_key,
            "created_at": rfc3339_ms(org.created_at_ms),
        })),
    ))
}

fn valid_app_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_APP_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// `POST /v1/organization/apps` (admin key): 201 `{id, name, created_at}`.
#[utoipa::path(post, path = "/v1/organization/apps", tag = "tenancy", request_body = AppInput, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = AppDoc), (status = 400, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_app(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let org_id = auth::admin(&state, &headers)?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let id = f.string(&["id"]);
    let name = required_name(&mut f);
    if let Some(id) = &id {
        if !valid_app_id(id) {
            f.errors.push(FieldError {
                field: "id".into(),
                message: format!(
                    "must be 1 to {MAX_APP_ID_LEN} characters of letters, digits, '-', '_', '.', ':'"
                ),
            });
        }
    }
    let name = finish(f, name)?;
    let app = App {
        id: DeviceId(id.unwrap_or_else(hookrelay_core::new_device_token)),
        org_id,
        name,
        created_at_ms: now_ms(),
    };
    state.config.create_app(app.clone()).await?;
    Ok((StatusCode::CREATED, Json(views::app(&app))))
}

/// An app of the caller's organization, or 404 (never 403).
pub(crate) fn own_app(state: &ApiState, org: &OrgId, app_id: &str) -> Result<App, ApiError> {
    state
        .config
        .app(&DeviceId::from(app_id))
        .filter(|a| &a.org_id == org)
        .ok_or_else(|| ApiError::NotFound("app not found".to_owned()))
}

/// `GET /v1/organization/apps`.
#[utoipa::path(get, path = "/v1/organization/apps", tag = "tenancy", security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = AppList), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list_apps(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    let apps: Vec<Value> = state
        .config
        .apps_of(&org_id)
        .iter()
        .map(views::app)
        .collect();
    Ok(Json(json!({ "data": apps })))
}

/// `GET /v1/organization/apps/{app_id}`.
#[utoipa::path(get, path = "/v1/organization/apps/{app_id}", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = AppDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn get_app(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    Ok(Json(views::app(&own_app(&state, &org_id, &app_id)?)))
}

/// `DELETE /v1/organization/apps/{app_id}`: with its tokens and webhooks.
#[utoipa::path(delete, path = "/v1/organization/apps/{app_id}", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn delete_app(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    let app = own_app(&state, &org_id, &app_id)?;
    state.config.delete_app(&app.id).await?;
    Ok(Json(json!({"success": true})))
}

/// `POST /v1/organization/apps/{app_id}/tokens`: 201 `{"token"}`, shown once.
#[utoipa::path(post, path = "/v1/organization/apps/{app_id}/tokens", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id")), security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = TokenCreated), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let org_id = auth::admin(&state, &headers)?;
    let app = own_app(&state, &org_id, &app_id)?;
    let token = hookrelay_core::new_device_token();
    let scope = TokenScope::Device {
        org_id,
        device_id: app.id,
    };
    state.config.add_token(hash_token(&token), scope).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token }))))
}
