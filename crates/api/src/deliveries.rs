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
    webhooks::{device_scope, org_scope, own_webhook, Scope},
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use hookrelay_core::{
    generate_secret, new_event_id, now_ms, partition_of, partition_seq, rfc3339_ms, seq_partition,
    Attempt, DeliveryKey, DeliveryRecord, DeliveryStatus, Event, FieldError, Partition, Seq,
    Webhook, WEBHOOK_TEST,
};
use hookrelay_store::{Appended, ControlError, LoggedEvent, TokenScope};
use serde_json::{json, Value};
use std::collections::HashMap;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(m) => Self::NotFound(m),
            ControlError::Conflict(m) => Self::Conflict(m),
            ControlError::OverShare(m) => Self::OverShare(m),
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

    async fn get(&mut self, seq: Seq) -> Result<Option<&LoggedEvent>, ApiError> {
        if !self.cache.contains_key(&seq) {
            let read = self.state.log.read(seq_partition(seq), seq, 256).await?;
            for e in read {
                self.cache.insert(e.seq, e);
            }
        }
        Ok(self.cache.get(&seq))
    }
}

/// A delivery the engine made, with what is known of it.
pub(crate) struct Found {
    key: DeliveryKey,
    record: Option<DeliveryRecord>,
    attempts: Vec<Attempt>,
    /// The event and its append time, when it is still logged.
    event: Option<(std::sync::Arc<Event>, i64)>,
}

impl Found {
    fn status(&self) -> DeliveryStatus {
        match &self.record {
            Some(r) => r.status,
            None if self.attempts.last().is_some_and(|a| a.error.is_none()) => {
                DeliveryStatus::Delivered
            }
            None => DeliveryStatus::Pending,
        }
    }
}

/// The one way a delivery is found (docs/api.md, docs/security.md): through a webhook the
/// caller owns, and only if the engine made that delivery: it has a state
/// record or attempts (fan-out past its first attempt, retry, replay), or it
/// is the first attempt of a logged event of the webhook's own device that
/// the webhook selects (fan-out and test sends, before their attempt is
/// written). Any other id, whatever it encodes, is `None`.
async fn find(
    state: &ApiState,
    webhook: &Webhook,
    key: DeliveryKey,
    events: &mut Events<'_>,
) -> Result<Option<Found>, ApiError> {
    if key.webhook_id != webhook.id {
        return Ok(None);
    }
    let record = state.deliveries.record(&key).await?;
    let attempts = state.deliveries.attempts(&key).await?;
    let logged = events
        .get(key.seq)
        .await?
        .filter(|e| reaches(state, webhook, e));
    let made = record.is_some()
        || !attempts.is_empty()
        || (key.generation == 0 && logged.is_some_and(|e| fans_out_to(state, webhook, e)));
    if !made {
        return Ok(None);
    }
    let event = logged.map(|e| (e.event.clone(), e.appended_at_ms));
    Ok(Some(Found {
        key,
        record,
        attempts,
        event,
    }))
}

/// Whether `e` is from a device whose events `w` receives.
fn reaches(state: &ApiState, w: &Webhook, e: &LoggedEvent) -> bool {
    state.config.receives(w, &e.event, e.appended_at_ms)
}

/// Whether fan-out gives `e` to `w` (a first attempt, generation 0).
fn fans_out_to(state: &ApiState, w: &Webhook, e: &LoggedEvent) -> bool {
    e.appended_at_ms >= w.created_at_ms && reaches(state, w, e) && selects(state, w, e)
}

/// Whether fan-out gives `e` to `w`: its filter selects the type, or it is a
/// test send addressed to `w`.
fn selects(state: &ApiState, w: &Webhook, e: &LoggedEvent) -> bool {
    if e.event.event_type == WEBHOOK_TEST {
        return serde_json::from_str::<Value>(&e.event.data)
            .is_ok_and(|d| d["webhook_id"] == w.id.as_str());
    }
    state.catalog.matches_any(&w.events, &e.event.event_type)
}

/// One delivery as the API shows it.
fn view(d: &Found, with_log: bool) -> Value {
    let (record, attempts, key) = (&d.record, &d.attempts, &d.key);
    let last = attempts.last();
    let (event_id, event_type, created_at) = match (record, &d.event) {
        (Some(r), _) => (r.event_id.clone(), r.event_type.clone(), r.created_at_ms),
        (None, Some((e, at))) => (e.id.clone(), e.event_type.clone(), *at),
        (None, None) => (
            String::new(),
            String::new(),
            last.map_or(0, |a| a.started_at_ms),
        ),
    };
    let status = d.status();
    let updated_at = match (record, last) {
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
        // What was sent: the event's data, while the log still holds it.
        v["data"] = d
            .event
            .as_ref()
            .and_then(|(e, _)| serde_json::from_str::<Value>(&e.data).ok())
            .unwrap_or(Value::Null);
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
    v
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

/// `GET /v1/webhooks/{id}/deliveries?status=&limit=&cursor=&order=`
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)"), ("status" = Option<String>, Query, description = "pending, delivered, failed or cancelled"), ("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("order" = Option<String>, Query, description = "oldest (default) or newest first")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = DeliveryList), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(list_of(&s, &scope, &id, &q).await?))
}

#[utoipa::path(get, path = "/v1/organization/webhooks/{id}/deliveries", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)"), ("status" = Option<String>, Query, description = "pending, delivered, failed or cancelled"), ("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"), ("order" = Option<String>, Query, description = "oldest (default) or newest first")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = DeliveryList), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_list(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(list_of(&s, &scope, &id, &q).await?))
}

/// A page of a webhook's deliveries.
async fn list_of(
    s: &ApiState,
    scope: &Scope,
    id: &str,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let w = own_webhook(s, scope, id)?;
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
            return Err(bad(
                "status",
                "must be pending, delivered, failed or cancelled",
            ))
        }
    };
    let newest = match q.get("order").map(String::as_str) {
        None | Some("" | "oldest") => false,
        Some("newest") => true,
        Some(_) => return Err(bad("order", "must be oldest or newest")),
    };
    let mut after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            parse_cursor(c).ok_or_else(|| bad("cursor", "is not a cursor this API returned"))?,
        ),
    };
    let mut events = Events::new(s);
    let mut data = Vec::new();
    let mut next_cursor = None;
    // With a status filter, scan on (bounded) until the page is full.
    'pages: for _ in 0..50 {
        let Page {
            keys,
            exhausted,
            resume,
        } = if newest {
            page_keys_newest(s, &w, after, limit, &mut events).await?
        } else {
            page_keys(s, &w, after, limit, &mut events).await?
        };
        after = resume.or(after);
        for key in keys {
            after = Some((key.seq, key.generation));
            let Some(found) = find(s, &w, key, &mut events).await? else {
                continue;
            };
            let v = view(&found, false);
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
    Ok(json!({"data": data, "next_cursor": next_cursor}))
}

/// How many logged events past the dispatch cursor one page reads, looking
/// for deliveries nothing is written for yet.
const UNRECORDED_SCAN: usize = 4096;

/// The next keys of `w`'s list after `after`, in log order, and whether
/// there are no more: the deliveries with a record or attempts, merged with
/// the first attempts not written yet (events past the dispatch cursor that
/// fan-out gives `w`: dispatched and in flight, or still waiting in the
/// window). Events at or before the cursor are settled, so everything they
/// made is written.
async fn page_keys(
    s: &ApiState,
    w: &Webhook,
    after: Option<(Seq, u32)>,
    limit: usize,
    events: &mut Events<'_>,
) -> Result<Page, ApiError> {
    let stored = s.deliveries.webhook_deliveries(&w.id, after, limit).await?;
    let stored_done = stored.len() < limit;
    // Past the last stored key of a full page nothing more is needed.
    let until = match stored.last() {
        Some(k) if !stored_done => k.seq,
        _ => Seq::MAX,
    };
    let mut keys: std::collections::BTreeSet<(Seq, u32)> =
        stored.iter().map(|k| (k.seq, k.generation)).collect();
    let (mut scanned, mut found, mut log_done) = (0, 0, true);
    // Where the scan stopped short, in the lowest partition it stopped in.
    let mut stopped: Option<Seq> = None;
    for p in partitions_reaching(s, w) {
        let mut from = s
            .deliveries
            .cursor(p)
            .await?
            .max(after.map_or(0, |(seq, _)| seq))
            .max(partition_seq(p, 0))
            .saturating_add(1);
        while from <= until && found < limit {
            if scanned >= UNRECORDED_SCAN {
                log_done = false;
                stopped.get_or_insert(from.saturating_sub(1));
                break;
            }
            let batch = s.log.read(p, from, 256).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            scanned += batch.len();
            for e in batch.into_iter().filter(|e| e.seq <= until) {
                if fans_out_to(s, w, &e) {
                    found += 1;
                    keys.insert((e.seq, 0));
                    events.cache.insert(e.seq, e);
                }
            }
            from = last.saturating_add(1);
        }
        if found >= limit && from <= until {
            log_done = false;
            stopped.get_or_insert(from.saturating_sub(1));
        }
        if !log_done {
            break;
        }
    }
    let exhausted = keys.len() <= limit && stored_done && log_done;
    // A scan that found nothing still moves the list on past what it read.
    let resume = (keys.is_empty() && !exhausted)
        .then(|| (stopped.unwrap_or(until.min(Seq::MAX - 1)), u32::MAX));
    Ok(Page::of(w, keys.into_iter().take(limit), exhausted, resume))
}

/// [`page_keys`] newest first: the keys before `before`, in descending
/// order. The deliveries nothing is written for yet are the newest (events
/// past the dispatch cursor), so each page reads them first, up to
/// [`UNRECORDED_SCAN`] events past the cursor; a longer backlog shows its
/// newest deliveries once fan-out reaches them.
async fn page_keys_newest(
    s: &ApiState,
    w: &Webhook,
    before: Option<(Seq, u32)>,
    limit: usize,
    events: &mut Events<'_>,
) -> Result<Page, ApiError> {
    let mut keys: std::collections::BTreeSet<(Seq, u32)> = std::collections::BTreeSet::new();
    for p in partitions_reaching(s, w) {
        let cursor = s.deliveries.cursor(p).await?.max(partition_seq(p, 0));
        if before.is_some_and(|(seq, _)| seq <= cursor) {
            // Every event past the cursor is newer than this page.
            continue;
        }
        let mut from = cursor.saturating_add(1);
        let mut scanned = 0;
        while scanned < UNRECORDED_SCAN {
            let batch = s.log.read(p, from, 256).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            scanned += batch.len();
            for e in batch {
                if before.is_none_or(|b| (e.seq, 0) < b) && fans_out_to(s, w, &e) {
                    keys.insert((e.seq, 0));
                    events.cache.insert(e.seq, e);
                }
            }
            from = last.saturating_add(1);
        }
    }
    let stored = s
        .deliveries
        .webhook_deliveries_newest(&w.id, before, limit)
        .await?;
    let exhausted = stored.len() < limit;
    keys.extend(stored.iter().map(|k| (k.seq, k.generation)));
    let exhausted = exhausted && keys.len() <= limit;
    Ok(Page::of(
        w,
        keys.into_iter().rev().take(limit),
        exhausted,
        None,
    ))
}

/// The partitions whose events can reach `w`, in sequence order.
fn partitions_reaching(s: &ApiState, w: &Webhook) -> Vec<Partition> {
    match w.app() {
        Some(device) => vec![partition_of(device.as_str(), s.log.partitions())],
        None => (0..s.log.partitions()).collect(),
    }
}

/// One step of a webhook's list: see [`page_keys`].
struct Page {
    keys: Vec<DeliveryKey>,
    exhausted: bool,
    resume: Option<(Seq, u32)>,
}

impl Page {
    fn of(
        w: &Webhook,
        keys: impl Iterator<Item = (Seq, u32)>,
        exhausted: bool,
        resume: Option<(Seq, u32)>,
    ) -> Self {
        let keys = keys
            .map(|(seq, generation)| DeliveryKey {
                webhook_id: w.id.clone(),
                seq,
                generation,
            })
            .collect();
        Self {
            keys,
            exhausted,
            resume,
        }
    }
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

/// A delivery of the caller's device, or 404: [`find`] through the
/// webhook the id names, which must be the caller's.
async fn own_delivery(s: &ApiState, h: &HeaderMap, id: &str) -> Result<Found, ApiError> {
    let not_found = || ApiError::NotFound("delivery not found".into());
    let caller = crate::auth::caller(s, h)?;
    let key = DeliveryKey::parse(id).ok_or_else(not_found)?;
    // A device token reaches its device's webhooks; an admin key every
    // webhook of its organization.
    let webhook = s
        .config
        .webhook(&key.webhook_id)
        .filter(|w| match &caller {
            TokenScope::Device { org_id, device_id } => {
                w.app() == Some(device_id) && &w.org_id == org_id
            }
            TokenScope::Admin { org_id } => &w.org_id == org_id,
        })
        .ok_or_else(not_found)?;
    find(s, &webhook, key, &mut Events::new(s))
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/deliveries/{id}`: with its attempt log.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path, description = "delivery id (dlv_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = DeliveryDoc), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let found = own_delivery(&s, &h, &id).await?;
    Ok(Json(view(&found, true)))
}

/// `POST /v1/deliveries/{id}/retry`: 202, attempted again now. Only failed
/// and cancelled deliveries; others 409.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path, description = "delivery id (dlv_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 202, body = RetryAccepted), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn retry(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let found = own_delivery(&s, &h, &id).await?;
    let status = found.status();
    if !matches!(status, DeliveryStatus::Failed | DeliveryStatus::Cancelled) {
        return Err(ApiError::Conflict(format!(
            "the delivery is {}; only failed and cancelled deliveries are retried",
            status.as_str()
        ))
        .into());
    }
    s.control.retry(found.key.clone()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": found.key.id(), "status": "pending"})),
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
    Ok((
        StatusCode::ACCEPTED,
        Json(test_send(&s, &scope, &id).await?),
    ))
}

#[utoipa::path(post, path = "/v1/organization/webhooks/{id}/test", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 202, body = TestAccepted), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_test(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = org_scope(&s, &h)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(test_send(&s, &scope, &id).await?),
    ))
}

/// Logs a `webhook.test` event for one webhook of the scope (from its
/// device, or from device id `""` for an organization-wide webhook).
pub(crate) async fn test_send(s: &ApiState, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let w = own_webhook(s, scope, id)?;
    if !w.active {
        return Err(ApiError::Conflict(
            "the webhook is inactive; activate it first".into(),
        ));
    }
    let now = now_ms();
    let event = Event {
        id: new_event_id(),
        device_id: w.device_id.to_string(),
        event_type: WEBHOOK_TEST.to_owned(),
        occurred_at_ms: now,
        data: json!({"webhook_id": w.id, "message": "Test event sent by hookrelay"}).to_string(),
    };
    let event_id = event.id.clone();
    let seq = match s.log.append(vec![event], vec![], now, now).await?.first() {
        Some(Appended::New(seq) | Appended::Duplicate(seq)) => *seq,
        None => return Err(ApiError::Unavailable("the event log took nothing".into())),
    };
    let key = DeliveryKey {
        seq,
        generation: 0,
        webhook_id: w.id.clone(),
    };
    Ok(json!({"event_id": event_id, "delivery_id": key.id()}))
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
    Ok((
        StatusCode::ACCEPTED,
        Json(replay_of(&s, &scope, &id, &h, body).await?),
    ))
}

#[utoipa::path(post, path = "/v1/organization/webhooks/{id}/replay", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), request_body = ReplayRequest, security(("admin_key" = []), ("api_key" = [])), responses((status = 202, body = ReplayAccepted), (status = 400, body = NativeError), (status = 404, body = NativeError), (status = 409, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_replay(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), Native> {
    let scope = org_scope(&s, &h)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(replay_of(&s, &scope, &id, &h, body).await?),
    ))
}

async fn replay_of(
    s: &ApiState,
    scope: &Scope,
    id: &str,
    h: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    let w = own_webhook(s, scope, id)?;
    let map = crate::body::json_object(h, body)?;
    let since =
        parse_time("since", map.get("since"))?.ok_or_else(|| bad("since", "is required"))?;
    let until = parse_time("until", map.get("until"))?.unwrap_or(i64::MAX);
    if until <= since {
        return Err(bad("until", "must be after since"));
    }
    let n = s.control.replay(w.id.clone(), since, until).await?;
    Ok(json!({"replayed": n}))
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
    Ok(Json(rotate_of(&s, &scope, &id).await?))
}

#[utoipa::path(post, path = "/v1/organization/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = RotatedSecret), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_rotate(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(rotate_of(&s, &scope, &id).await?))
}

async fn rotate_of(s: &ApiState, scope: &Scope, id: &str) -> Result<Value, ApiError> {
    let w = own_webhook(s, scope, id)?;
    let now = now_ms();
    let grace = i64::try_from(s.delivery.rotation_grace.as_millis()).unwrap_or(i64::MAX / 2);
    let secret = generate_secret();
    let new_secret = secret.clone();
    let rotated = s
        .config
        .update_webhook(
            &w.id,
            Box::new(move |next: &mut Webhook| {
                next.rotate_secret(new_secret.clone(), now, grace);
                next.updated_at_ms = now;
                true
            }),
        )
        .await?;
    if rotated.is_none() {
        return Err(ApiError::NotFound("webhook not found".into()));
    }
    Ok(json!({ "secret": secret }))
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
