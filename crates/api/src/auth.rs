//! Who is calling: device token, admin key or operator key.
//!
//! Tokens arrive as `Authorization: Bearer <token>` or `x-api-key: <token>`;
//! only their SHA-256 is ever looked up or compared.

use crate::{error::ApiError, state::ApiState};
use axum::http::{header, HeaderMap};
use hookrelay_core::{constant_time_eq, hash_token, DeviceId, OrgId};
use hookrelay_store::TokenScope;

/// An authenticated device token.
pub(crate) struct Device {
    pub(crate) org_id: OrgId,
    pub(crate) device_id: DeviceId,
}

/// The credential a request carries, whatever header form carried it.
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A bare `Authorization: <token>` (no scheme), which some vendor APIs
/// take; `/v1` does not.
pub(crate) fn bare(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    (!v.is_empty() && !v.contains(' ')).then_some(v)
}

/// The token scope of a credential, or 401.
pub(crate) fn scope_of(state: &ApiState, token: Option<&str>) -> Result<TokenScope, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized("missing API token"))?;
    state
        .config
        .token_scope(&hash_token(token))
        .ok_or(ApiError::Unauthorized("invalid API token"))
}

/// Whoever a device token or admin key is.
pub(crate) fn caller(state: &ApiState, headers: &HeaderMap) -> Result<TokenScope, ApiError> {
    scope(state, headers)
}

fn scope(state: &ApiState, headers: &HeaderMap) -> Result<TokenScope, ApiError> {
    scope_of(state, presented(headers))
}

/// Any valid device token or admin key.
pub(crate) fn any(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    scope(state, headers).map(|_| ())
}

/// A device token, for the device's own webhooks.
pub(crate) fn device(state: &ApiState, headers: &HeaderMap) -> Result<Device, ApiError> {
    match scope(state, headers)? {
        TokenScope::Device { org_id, device_id } => Ok(Device { org_id, device_id }),
        TokenScope::Admin { .. } => Err(ApiError::Unauthorized(
            "this route takes a device token; admin keys use /v1/organization/apps/{app_id}/...",
        )),
    }
}

/// An admin key: returns its organization.
pub(crate) fn admin(state: &ApiState, headers: &HeaderMap) -> Result<OrgId, ApiError> {
    match scope(state, headers)? {
        TokenScope::Admin { org_id } => Ok(org_id),
        TokenScope::Device { .. } => Err(ApiError::Unauthorized(
            "this route takes an admin key (sk_admin_...)",
        )),
    }
}

/// The operator key (creates organizations). Compared in constant time.
pub(crate) fn operator(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.operator_key else {
        return Err(ApiError::Unauthorized(
            "operator routes are disabled (auth.operator_key is not set)",
        ));
    };
    let token = presented(headers).ok_or(ApiError::Unauthorized("missing operator key"))?;
    if constant_time_eq(&hash_token(token).0, &expected.0) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid operator key"))
    }
}
