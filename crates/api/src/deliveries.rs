//! Delivery visibility and control: listings with attempt logs, manual
//! retry, test sends, replay from the log, secret rotation, and the event
//! catalog.
//!
//! A delivery's view is derived: its record when it has one (failed, retried,
//! replayed, or outlived the dispatch window), otherwise its attempt log (the
//! happy path writes nothing else), with event details read from the log.

#[allow(unused_imports)]
use crate::openapi::*;
use crate::{
    error::{ApiError, Native},
    state::ApiState,
    webhooks::{device_scope, own_webhook},
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use hookrelay_core::{
    generate_secret, new_event_id, now_ms, rfc3339_ms, Attempt, DeliveryKey, DeliveryStatus, Event,
    FieldError, Seq, WEBHOOK_TEST,
};
use hookrelay_store::{ControlError, LoggedEvent};
use serde_json::{json, Value};
use std::collections::HashMap;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(m) => Self::NotFound(m),
            ControlError::Conflict(m) => Self::Conflict(m),
            ControlError::Unavailable => Self::Unavailable("delivery scheduler unavailable".into()),
            ControlError::Store(e) => e.into(),
        }
    }
}

/// Events looked up while building one response (chunks are read once).
struct Events<'a> {
    state: &'a ApiState,
    cache: HashMap<Seq, LoggedEvent>,
}

impl<'a> Events<'a> {
    fn new(state: &'a ApiState) -> Self {
        Self {
            state,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, seq: Seq) -> Result<Option<&LoggedEvent>, ApiError> {
        if !self.cache.contains_key(&seq) {
            for e in self.state.log.read(seq, 256)? {
                self.cache.insert(e.seq, e);
            }
        }
        Ok(self.cache.get(&seq))
    }
}

/// One delivery as the API shows it.
fn view(
    key: &DeliveryKey,
    events: &mut Events<'_>,
    with_log: bool,
) -> Result<Option<Value>, ApiError> {
    let state = events.state;
    let record = state.deliveries.record(key)?;
    let attempts: Vec<Attempt> = state.deliveries.attempts(key)?;
    if record.is_none() && attempts.is_empty() {
        return Ok(None);
    }
    let last = attempts.last();
    let (event_id, event_type, created_at) = match &record {
        Some(r) => (r.event_id.clone(), r.event_type.clone(), r.created_at_ms),
        None => match events.get(key.seq)? {
            Some(e) => (
                e.event.id.clone(),
                e.event.event_type.clone(),
                e.appended_at_ms,
            ),
            None => (
                String::new(),
                String::new(),
                last.map_or(0, |a| a.started_at_ms),
            ),
        },
    };
    let status = match &record {
        Some(r) => r.status,
        None if last.is_some_and(|a| a.error.is_none()) => DeliveryStatus::Delivered,
        None => DeliveryStatus::Pending,
    };
    let updated_at = match (&record, last) {
        (Some(r), _) => r.updated_at_ms,
        (None, Some(a)) => a.started_at_ms + i64::from(a.duration_ms),
        (None, None) => created_at,
    };
    let next_attempt_at = record
        .as_ref()
        .filter(|r| r.status == DeliveryStatus::Pending)
        .map(|r| rfc3339_ms(r.next_attempt_ms));
    let mut v = json!({
        "id": key.id(),
        "event_id": event_id,
        "event": event_type,
        "status": status.as_str(),
        "attempts": record.as_ref().map_or(attempts.len() as u32, |r| r.attempts.max(attempts.len() as u32)),
        "next_attempt_at": next_attempt_at,
        "last_status_code": last.and_then(|a| a.status_code).or(record.as_ref().and_then(|r| r.last_status_code)),
        "last_error": last.and_then(|a| a.error).map(|e| e.as_str().to_owned()).or(record.as_ref().and_then(|r| r.last_error.clone())),
        "created_at": rfc3339_ms(created_at),
        "updated_at": rfc3339_ms(updated_at),
    });
    if with_log {
        v["webhook_id"] = json!(key.webhook_id);
        v["attempt_log"] = attempts
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "started_at": rfc3339_ms(a.started_at_ms),
                    "duration_ms": a.duration_ms,
                    "status_code": a.status_code,
                    "error": a.error.map(|e| e.as_str()),
                    "response_body": a.response_body,
                })
            })
            .collect();
    }
    Ok(Some(v))
}

fn bad(field: &str, message: &str) -> ApiError {
    ApiError::validation(
        format!("{field}: {message}"),
        vec![FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        }],
    )
}

/// `GET /v1/webhooks/{id}/deliveries?status=&limit=&cursor=`
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)"), ("status" = Option<String>, Query, description = "pending, delivered, failed or cancelled"), ("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = DeliveryList), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    let w = own_webhook(&s, &scope, &id)?;
    let limit = match q.get("limit") {
        None => 20,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| bad("limit", "must be an integer between 1 and 100"))?,
    };
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(v @ ("pending" | "delivered" | "failed" | "cancelled")) => Some(v.to_owned()),
        Some(_) => {
            return Err(bad("status", "must be pending, delivered, failed or cancelled").into())
        }
    };
    let mut after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            parse_cursor(c).ok_or_else(|| bad("cursor", "is not a cursor this API returned"))?,
        ),
    };
    let mut events = Events::new(&s);
    let mut data = Vec::new();
    let mut next_cursor = None;
    // With a status filter, scan on (bounded) until the page is full.
    'pages: for _ in 0..50 {
        let keys = s.deliveries.webhook_deliveries(&w.id, after, limit)?;
        let exhausted = keys.len() < limit;
        for key in keys {
            after = Some((key.seq, key.generation));
            let Some(v) = view(&key, &mut events, false)? else {
                continue;
            };
            if status.as_deref().is_some_and(|st| v["status"] != st) {
                continue;
            }
            data.push(v);
            if data.len() == limit {
                next_cursor = after.map(|(s, g)| format!("{s:016x}{g:08x}"));
                break 'pages;
            }
        }
        if exhausted {
            break;
        }
        next_cursor = after.map(|(s, g)| format!("{s:016x}{g:08x}"));
    }
    Ok(Json(json!({"data": data, "next_cursor": next_cursor})))
}

fn parse_cursor(c: &str) -> Option<(Seq, u32)> {
    if c.len() != 24 || !c.is_ascii() {
        return None;
    }
    Some((
        u64::from_str_radix(&c[..16], 16).ok()?,
        u32::from_str_radix(&c[16..], 16).ok()?,
    ))
}

/// A delivery of the caller's device, or 404.
fn own_delivery(s: &ApiState, h: &HeaderMap, id: &str) -> Result<DeliveryKey, ApiError> {
    let scope = device_scope(s, h)?;
    let key =
        DeliveryKey::parse(id).ok_or_else(|| ApiError::NotFound("delivery not found".into()))?;
    own_webhook(s, &scope, key.webhook_id.as_str())
        .map_err(|_| ApiError::NotFound("delivery not found".into()))?;
    Ok(key)
}

/// `GET /v1/deliveries/{id}`: with its attempt log.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path, description = "delivery id (dlv_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = DeliveryDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let key = own_delivery(&s, &h, &id)?;
    let mut events = Events::new(&s);
    let v = view(&key, &mut events, true)?
        .ok_or_else(|| ApiError::NotFound("delivery not found".into()))?;
    Ok(Json(v))
}

/// `POST /v1/deliveries/{id}/retry`: 202, attempted again now.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path, description = "delivery id (dlv_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 202, body = RetryAccepted), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn retry(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let key = own_delivery(&s, &h, &id)?;
    s.control.retry(key.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": key.id(), "status": "pending"})),
    ))
}

/// `POST /v1/webhooks/{id}/test`: 202; a `webhook.test` event to this webhook only.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 202, body = TestAccepted), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn test(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = device_scope(&s, &h)?;
    let w = own_webhook(&s, &scope, &id)?;
    let now = now_ms();
    let event = Event {
        id: new_event_id(),
        device_id: w.device_id.to_string(),
        event_type: WEBHOOK_TEST.to_owned(),
        occurred_at_ms: now,
        data: json!({"webhook_id": w.id, "message": "Test event sent by hookrelay"}).to_string(),
    };
    let event_id = event.id.clone();
    let seq = s.log.append(vec![event], vec![], now)?;
    s.log.sync().await?;
    let key = DeliveryKey {
        seq,
        generation: 0,
        webhook_id: w.id.clone(),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": event_id, "delivery_id": key.id()})),
    ))
}

fn parse_time(field: &str, v: Option<&Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => OffsetDateTime::parse(t, &Rfc3339)
            .map(|d| Some((d.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|_| bad(field, "must be an RFC 3339 time, e.g. 2026-06-15T12:00:00Z")),
        Some(_) => Err(bad(field, "must be an RFC 3339 time string")),
    }
}

/// `POST /v1/webhooks/{id}/replay {since, until?}`: 202 `{"replayed": N}`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = ReplayRequest, security(("device_token" = []), ("api_key" = [])), responses((status = 202, body = ReplayAccepted), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn replay(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = device_scope(&s, &h)?;
    let w = own_webhook(&s, &scope, &id)?;
    let map = crate::body::json_object(&h, body)?;
    let since =
        parse_time("since", map.get("since"))?.ok_or_else(|| bad("since", "is required"))?;
    let until = parse_time("until", map.get("until"))?.unwrap_or(i64::MAX);
    if until <= since {
        return Err(bad("until", "must be after since").into());
    }
    let n = s.control.replay(w.id.clone(), since, until).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": n}))))
}

/// `POST /v1/webhooks/{id}/rotate-secret`: a new engine-made secret; the old
/// one keeps signing for `delivery.rotation_grace`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = RotatedSecret), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn rotate(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    let w = own_webhook(&s, &scope, &id)?;
    let now = now_ms();
    let grace = i64::try_from(s.delivery.rotation_grace.as_millis()).unwrap_or(i64::MAX / 2);
    let secret = generate_secret();
    let mut next = (*w).clone();
    next.previous_secret = w
        .secret
        .clone()
        .filter(|old| !old.is_empty())
        .map(|old| (old, now + grace));
    next.secret = Some(secret.clone());
    next.updated_at_ms = now;
    s.config.put_webhook(next).await?;
    Ok(Json(json!({ "secret": secret })))
}

/// `GET /v1/event-types`: the catalog, for any valid token.
#[utoipa::path(get, path = "/v1/event-types", tag = "catalog", security(("device_token" = []), ("admin_key" = []), ("api_key" = [])), responses((status = 200, body = EventTypes), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn event_types(
    State(s): State<ApiState>,
    h: HeaderMap,
) -> Result<Json<Value>, Native> {
    crate::auth::any(&s, &h)?;
    Ok(Json(json!({ "data": s.catalog.describe() })))
}
