//! Vendor profiles: the webhook APIs of the gateway vendors hookrelay
//! replaces, each drop-in for that vendor's existing clients (docs/profiles.md).
//!
//! A profile is routes, a credential mapping, a field mapping and an event
//! vocabulary, written once in its own module over the engine's one webhook
//! service ([`crate::webhooks`]): the same webhooks, validation, limits and
//! atomic writes as `/v1`. A webhook written through a profile records that
//! profile's event names ([`Vocabulary::event_names`]), so its deliveries name
//! events the way its owner's client expects; nothing outside this module
//! knows a vendor.
//!
//! Each profile is served on a listener of its own (`[[profiles]]`), since
//! their paths clash with `/v1`; [`app`] builds that listener's router, with
//! the profile's `/openapi.json`, `/healthz`, and its error envelope for
//! unknown routes, refused methods, oversized bodies and rate limits.

mod org_apps;
mod status_envelope;
mod whautochat;
pub(crate) mod wuts;

use crate::{
    body::{json_object, webhook_input},
    error::ApiError,
    state::ApiState,
    webhooks,
};
use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use hookrelay_core::WebhookInput;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Writes an [`ApiError`] in a profile's envelope.
pub(crate) type Render = fn(ApiError) -> Response;

/// One vendor profile.
struct Profile {
    /// Its `[[profiles]] name`.
    name: &'static str,
    /// Its routes.
    routes: fn() -> Router<ApiState>,
    /// Its OpenAPI document.
    openapi: fn() -> utoipa::openapi::OpenApi,
    /// Its error envelope.
    render: Render,
}

const PROFILES: &[Profile] = &[
    Profile {
        name: "wuts",
        routes: wuts::routes,
        openapi: <wuts::Doc as utoipa::OpenApi>::openapi,
        render: wuts::render,
    },
    Profile {
        name: "whautochat",
        routes: whautochat::routes,
        openapi: <whautochat::Doc as utoipa::OpenApi>::openapi,
        render: whautochat::render,
    },
    Profile {
        name: "status-envelope",
        routes: status_envelope::routes,
        openapi: <status_envelope::Doc as utoipa::OpenApi>::openapi,
        render: status_envelope::render,
    },
    Profile {
        name: "org-apps",
        routes: org_apps::routes,
        openapi: <org_apps::Doc as utoipa::OpenApi>::openapi,
        render: org_apps::render,
    },
];

/// The names `[[profiles]] name` accepts.
pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// The router of a profile's own listener, ready to serve; `None` for a
/// name that is no profile.
pub fn app(name: &str, state: ApiState) -> Option<Router> {
    let p = PROFILES.iter().find(|p| p.name == name)?;
    let doc = (p.openapi)();
    let render = p.render;
    let routes = (p.routes)()
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .with_state(state.clone());
    Some(crate::finish_with(routes, state, render))
}

/// A profile's event names, each standing for one engine event type.
pub(crate) struct Vocabulary {
    /// `(profile name, engine type)`.
    pub(crate) names: &'static [(&'static str, &'static str)],
    /// Whether the engine catalog's own names and patterns are accepted
    /// beside `names`.
    pub(crate) catalog_too: bool,
}

impl Vocabulary {
    /// The engine filter for profile names; `Err` lists the unknown ones.
    fn to_engine(&self, state: &ApiState, events: &[String]) -> Result<Vec<String>, Vec<String>> {
        let mut out = Vec::with_capacity(events.len());
        let mut unknown = Vec::new();
        for e in events {
            match self.names.iter().find(|(name, _)| name == e) {
                Some((_, engine)) => out.push((*engine).to_owned()),
                None if self.catalog_too && state.catalog.is_valid_filter(e) => out.push(e.clone()),
                None => unknown.push(e.clone()),
            }
        }
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(unknown)
        }
    }

    /// A stored filter in profile names (entries with no profile name, made
    /// through another API, as they are).
    pub(crate) fn show(&self, events: &[String]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                self.names
                    .iter()
                    .find(|(_, engine)| engine == e)
                    .map_or_else(|| e.clone(), |(name, _)| (*name).to_owned())
            })
            .collect()
    }

    /// The names deliveries of a webhook written through this profile give
    /// engine types (where they differ).
    pub(crate) fn event_names(&self) -> BTreeMap<String, String> {
        self.names
            .iter()
            .filter(|(name, engine)| name != engine)
            .map(|(name, engine)| ((*engine).to_owned(), (*name).to_owned()))
            .collect()
    }
}

/// A profile's request body as webhook input: its JSON object, first seen
/// by the profile's own `check`, events translated through `vocab`, then
/// validated (`require`: as a new webhook; otherwise as a partial change,
/// checked whole once merged).
pub(crate) fn input(
    state: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    vocab: &Vocabulary,
    require: bool,
    check: impl FnOnce(&Map<String, Value>) -> Result<(), ApiError>,
) -> Result<WebhookInput, ApiError> {
    let mut map: Map<String, Value> = json_object(headers, body)?;
    check(&map)?;
    if let Some(Value::Array(events)) = map.get("events") {
        let names: Option<Vec<String>> = events
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect();
        if let Some(names) = names {
            match vocab.to_engine(state, &names) {
                Ok(engine) => {
                    map.insert("events".into(), engine.into());
                }
                Err(unknown) => {
                    return Err(ApiError::Validation {
                        message: format!("unknown event names: {}", unknown.join(", ")),
                        details: Vec::new(),
                        available_events: None,
                    })
                }
            }
        }
    }
    let input = webhook_input(&map)
        .map_err(|details| ApiError::validation(first_message(&details), details))?;
    webhooks::validate(state, &input, require).map_err(|e| match e {
        ApiError::Validation { details, .. } => {
            ApiError::validation(first_message(&details), details)
        }
        other => other,
    })?;
    Ok(input)
}

/// "field: message" of the first problem, for envelopes with one string.
fn first_message(details: &[hookrelay_core::FieldError]) -> String {
    details.first().map_or_else(
        || "validation failed".to_owned(),
        |d| format!("{}: {}", d.field, d.message),
    )
}

/// The credential of `Authorization: <token>` or `Authorization: Bearer
/// <token>`, or of `x-api-key`.
pub(crate) fn credential(headers: &HeaderMap) -> Option<&str> {
    crate::auth::presented(headers).or_else(|| crate::auth::bare(headers))
}

/// Runs a handler body, writing its error in the profile's envelope.
pub(crate) async fn respond(
    render: Render,
    body: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    body.await.unwrap_or_else(render)
}

/// A JSON answer with a status.
pub(crate) fn answer(status: axum::http::StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}
