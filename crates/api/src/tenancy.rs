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
    generate_admin_key, generate_ingest_key, hash_token, new_device_id, new_ingest_key_id,
    new_org_id, new_token_id, now_ms, rfc3339_ms, DeviceId, FieldError, OrgId,
};
use hookrelay_store::{App, DeviceToken, IngestKey, Org};
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

/// An optional `name` (tokens, ingest keys): empty when absent.
fn optional_name(f: &mut Fields<'_>) -> String {
    match f.string(&["name"]) {
        Some(n) if n.len() > MAX_NAME_LEN => {
            f.errors.push(FieldError {
                field: "name".into(),
                message: format!("must be at most {MAX_NAME_LEN} characters"),
            });
            String::new()
        }
        n => n.unwrap_or_default(),
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

fn check_app_id(f: &mut Fields<'_>, id: Option<&String>) {
    if id.is_some_and(|id| !valid_app_id(id)) {
        f.errors.push(FieldError {
            field: "id".into(),
            message: format!(
                "must be 1 to {MAX_APP_ID_LEN} characters of letters, digits, '-', '_', '.', ':'"
            ),
        });
    }
}

/// Binds `id` (or a fresh UUID) to `org_id`: 201, or 409 when the id is or
/// ever was bound.
async fn bind(
    state: &ApiState,
    org_id: OrgId,
    id: Option<String>,
    name: String,
) -> Result<(StatusCode, Json<Value>), Native> {
    let app = App {
        id: id.map_or_else(new_device_id, DeviceId),
        org_id,
        name,
        created_at_ms: now_ms(),
    };
    state
        .config
        .create_app(app.clone(), state.tenancy.max_apps_per_org)
        .await?;
    Ok((StatusCode::CREATED, Json(views::app(&app))))
}

/// `GET /v1/organizations` (operator key).
#[utoipa::path(get, path = "/v1/organizations", tag = "tenancy", security(("operator_key" = [])), responses((status = 200, body = OrgList), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list_orgs(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Native> {
    auth::operator(&state, &headers)?;
    let orgs: Vec<Value> = state
        .config
        .orgs()
        .iter()
        .map(|o| named(o.id.as_str(), &o.name, o.created_at_ms))
        .collect();
    Ok(Json(json!({ "data": orgs })))
}

/// `POST /v1/organizations/{org_id}/apps` (operator key): binds a device id
/// chosen by the operator's gateway to an organization.
#[utoipa::path(post, path = "/v1/organizations/{org_id}/apps", tag = "tenancy", params(("org_id" = String, Path, description = "organization id (org_…)")), request_body = BindInput, security(("operator_key" = [])), responses((status = 201, body = AppDoc), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn bind_app(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    auth::operator(&state, &headers)?;
    let org = state
        .config
        .org(&OrgId::from(org_id.as_str()))
        .ok_or_else(|| ApiError::NotFound("organization not found".into()))?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let id = f.string(&["id"]);
    check_app_id(&mut f, id.as_ref());
    let name = required_name(&mut f);
    let name = finish(f, name)?;
    bind(&state, org.id, id, name).await
}

/// `POST /v1/organization/apps` (admin key): 201 `{id, name, created_at}`
/// with a server-assigned UUID v4 (docs/api.md, docs/security.md); an `id` in the body is a
/// 400 unless `tenancy.admin_device_ids` is on.
#[utoipa::path(post, path = "/v1/organization/apps", tag = "tenancy", request_body = AppInput, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = AppDoc), (status = 400, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_app(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let org_id = auth::admin(&state, &headers)?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let id = if state.tenancy.admin_device_ids {
        let id = f.string(&["id"]);
        check_app_id(&mut f, id.as_ref());
        id
    } else {
        if map.contains_key("id") {
            // The same answer whatever the id is: nothing about other
            // tenants' devices can be learned from it.
            f.errors.push(FieldError {
                field: "id".into(),
                message: "device ids are assigned by the server; the operator binds chosen ids"
                    .into(),
            });
        }
        None
    };
    let name = required_name(&mut f);
    let name = finish(f, name)?;
    bind(&state, org_id, id, name).await
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

/// `DELETE /v1/organization/apps/{app_id}`: with its tokens and webhooks; the
/// device id stays bound (a tombstone).
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

/// `{id, name, created_at}`: how organizations, tokens and keys are listed.
fn named(id: &str, name: &str, at: i64) -> Value {
    json!({"id": id, "name": name, "created_at": rfc3339_ms(at)})
}

/// A credential just made: the listed fields with the secret (shown once)
/// before `created_at`.
fn created(id: &str, name: &str, secret: (&str, &str), at: i64) -> Json<Value> {
    let mut v = json!({"id": id, "name": name});
    v[secret.0] = json!(secret.1);
    v["created_at"] = json!(rfc3339_ms(at));
    Json(v)
}

/// `POST /v1/organization/apps/{app_id}/tokens` `{"name"?}`: 201
/// `{id, name, token, created_at}`; the token is shown once.
#[utoipa::path(post, path = "/v1/organization/apps/{app_id}/tokens", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id")), request_body = NamedInput, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = TokenCreated), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let org_id = auth::admin(&state, &headers)?;
    let app = own_app(&state, &org_id, &app_id)?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let name = optional_name(&mut f);
    let name = finish(f, Some(name))?;
    let token = hookrelay_core::new_device_token();
    let record = DeviceToken {
        id: new_token_id(),
        hash: hash_token(&token),
        name,
        org_id,
        device_id: app.id,
        created_at_ms: now_ms(),
    };
    state
        .config
        .add_token(record.clone(), state.tenancy.max_tokens_per_org)
        .await?;
    let body = created(
        &record.id,
        &record.name,
        ("token", &token),
        record.created_at_ms,
    );
    Ok((StatusCode::CREATED, body))
}

/// `GET /v1/organization/apps/{app_id}/tokens`: ids and names, never tokens.
#[utoipa::path(get, path = "/v1/organization/apps/{app_id}/tokens", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = CredentialList), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list_tokens(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    let app = own_app(&state, &org_id, &app_id)?;
    let data: Vec<Value> = state
        .config
        .tokens_of(&app.id)
        .iter()
        .map(|t| named(t.id.as_str(), &t.name, t.created_at_ms))
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `DELETE /v1/organization/apps/{app_id}/tokens/{token_id}`: the token
/// answers 401 from its next request on.
#[utoipa::path(delete, path = "/v1/organization/apps/{app_id}/tokens/{token_id}", tag = "tenancy", params(("app_id" = String, Path, description = "app (device) id"), ("token_id" = String, Path, description = "token id (tok_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn revoke_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((app_id, token_id)): Path<(String, String)>,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    let app = own_app(&state, &org_id, &app_id)?;
    if !state.config.revoke_token(&app.id, &token_id).await? {
        return Err(ApiError::NotFound("token not found".into()).into());
    }
    Ok(Json(json!({"success": true})))
}

/// `POST /v1/organization/ingest-keys` `{"name"?}`: 201 `{id, name, key,
/// created_at}`; the key is shown once and publishes only for the
/// organization's devices.
#[utoipa::path(post, path = "/v1/organization/ingest-keys", tag = "tenancy", request_body = NamedInput, security(("admin_key" = []), ("api_key" = [])), responses((status = 201, body = IngestKeyCreated), (status = 400, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn create_ingest_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let org_id = auth::admin(&state, &headers)?;
    let map = json_object(&headers, body)?;
    let mut f = Fields::new(&map);
    let name = optional_name(&mut f);
    let name = finish(f, Some(name))?;
    let key = generate_ingest_key();
    let record = IngestKey {
        id: new_ingest_key_id(),
        hash: hash_token(&key),
        name,
        org_id,
        created_at_ms: now_ms(),
    };
    state
        .config
        .add_ingest_key(record.clone(), state.tenancy.max_ingest_keys_per_org)
        .await?;
    let body = created(
        &record.id,
        &record.name,
        ("key", &key),
        record.created_at_ms,
    );
    Ok((StatusCode::CREATED, body))
}

/// `GET /v1/organization/ingest-keys`: ids and names, never keys.
#[utoipa::path(get, path = "/v1/organization/ingest-keys", tag = "tenancy", security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = CredentialList), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list_ingest_keys(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    let data: Vec<Value> = state
        .config
        .ingest_keys_of(&org_id)
        .iter()
        .map(|k| named(k.id.as_str(), &k.name, k.created_at_ms))
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// `DELETE /v1/organization/ingest-keys/{id}`: refused from the next publish on.
#[utoipa::path(delete, path = "/v1/organization/ingest-keys/{id}", tag = "tenancy", params(("id" = String, Path, description = "ingest key id (ikid_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = Success), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn delete_ingest_key(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let org_id = auth::admin(&state, &headers)?;
    if !state.config.delete_ingest_key(&org_id, &id).await? {
        return Err(ApiError::NotFound("ingest key not found".into()).into());
    }
    Ok(Json(json!({"success": true})))
}

/// `GET /v1/whoami`: what the presented credential is (a device token or an
/// admin key) and what it reaches. The console signs in with it.
#[utoipa::path(get, path = "/v1/whoami", tag = "tenancy", security(("device_token" = []), ("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WhoAmI), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn whoami(State(s): State<ApiState>, h: HeaderMap) -> Result<Json<Value>, Native> {
    Ok(Json(match auth::caller(&s, &h)? {
        hookrelay_store::TokenScope::Device { org_id, device_id } => {
            json!({"kind": "device", "org_id": org_id, "app_id": device_id})
        }
        hookrelay_store::TokenScope::Admin { org_id } => {
            json!({"kind": "admin", "org_id": org_id, "app_id": null})
        }
    }))
}
