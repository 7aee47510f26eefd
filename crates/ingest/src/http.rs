//! `POST /v1/events`: HTTP ingest for producers without gRPC, sharing the gRPC
//! path's validation, group commit and acknowledgement rule.

use crate::{Incoming, IngestError, IngestGrpc};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use hookrelay_core::{metric, now_ms, validate_event, RawEvent};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

/// The router holding `POST /v1/events`, to merge into the REST API.
pub fn router(svc: IngestGrpc) -> Router {
    Router::new()
        .route("/v1/events", post(publish))
        .with_state(svc)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpEvent<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    event: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

fn error(status: StatusCode, code: &str, message: String, details: serde_json::Value) -> Response {
    let mut body = json!({"error": {"code": code, "message": message}});
    if !details.is_null() {
        body["error"]["details"] = details;
    }
    (status, Json(body)).into_response()
}

fn ingest_error(e: IngestError) -> Response {
    metrics::counter!(metric::EVENTS_REJECTED, "reason" => e.reason()).increment(1);
    let msg = e.to_string();
    match e {
        IngestError::Unauthenticated => {
            error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg, json!(null))
        }
        IngestError::Forbidden => error(StatusCode::FORBIDDEN, "FORBIDDEN", msg, json!(null)),
        IngestError::Invalid { index, mut source } => {
            // Fields as this API names them (gRPC's names differ).
            source.field = match source.field {
                "event_type" => "event",
                "occurred_at" => "timestamp",
                other => other,
            };
            let field = match index {
                Some(i) => format!("[{i}].{}", source.field),
                None => source.field.to_owned(),
            };
            let msg = IngestError::Invalid {
                index,
                source: source.clone(),
            }
            .to_string();
            let details = json!([{"field": field, "message": source.message}]);
            error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", msg, details)
        }
        IngestError::Missing(_) => error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            msg,
            json!(null),
        ),
        IngestError::Overloaded { .. } => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                msg,
                json!(null),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        IngestError::Unavailable(_) | IngestError::ShuttingDown => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            msg,
            json!(null),
        ),
    }
}

/// Largest accepted REST `timestamp` (unix seconds): 10^11 is year 5138, and
/// any larger value is a millisecond time sent by mistake.
const MAX_TIMESTAMP_SECS: u64 = 100_000_000_000;

async fn publish(
    State(svc): State<IngestGrpc>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(publisher) = svc.keys.authenticate(auth) else {
        return ingest_error(IngestError::Unauthenticated);
    };
    // A JSON body, and said so (docs/api.md: 415 otherwise).
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct.to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim().to_owned();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "request body must be application/json".to_owned(),
            json!(null),
        );
    }
    // Every error in the JSON envelope, the body limit's too.
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let msg = "request body is over the size limit".to_owned();
            return error(r.status(), "PAYLOAD_TOO_LARGE", msg, json!(null));
        }
        Err(r) => {
            let msg = format!("could not read the request body: {r}");
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                msg,
                json!(null),
            );
        }
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            let msg = "request body is not UTF-8".to_owned();
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                msg,
                json!(null),
            );
        }
    };
    let is_array = text.trim_start().starts_with('[');
    let parsed: Result<Vec<HttpEvent<'_>>, _> = if is_array {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|e| vec![e])
    };
    let items = match parsed {
        Ok(items) => items,
        Err(e) => {
            let msg = format!("malformed JSON body: {e}");
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                msg,
                json!(null),
            );
        }
    };
    if items.len() > svc.max_request_events {
        let msg = format!("at most {} events per request", svc.max_request_events);
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            msg,
            json!(null),
        );
    }
    let now = now_ms();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let index = is_array.then_some(i);
        let keyed = item.id.as_deref().is_some_and(|id| !id.is_empty());
        let raw = RawEvent {
            id: item.id.unwrap_or_default(),
            device_id: item.device_id.unwrap_or_default(),
            event_type: item.event.unwrap_or_default(),
            occurred_at_ms: match item.timestamp {
                None => None,
                // Unix seconds; a value this large is milliseconds (or junk).
                Some(t) if t.unsigned_abs() > MAX_TIMESTAMP_SECS => {
                    let source = hookrelay_core::EventError {
                        field: "timestamp",
                        message: format!(
                            "must be unix seconds; {t} looks like milliseconds or is out of range"
                        ),
                    };
                    return ingest_error(IngestError::Invalid { index, source });
                }
                Some(t) => Some(t * 1000),
            },
            data: item
                .data
                .map(|d| d.get().as_bytes().to_vec())
                .unwrap_or_default(),
        };
        match validate_event(raw, &svc.catalog, svc.max_event_bytes, now) {
            Ok(event) => events.push(Incoming { event, keyed }),
            Err(source) => return ingest_error(IngestError::Invalid { index, source }),
        }
    }
    let devices = events.iter().map(|e| e.event.device_id.as_str());
    if let Err(e) = svc.keys.check(&publisher, devices) {
        return ingest_error(e);
    }
    let n = events.len() as u64;
    match svc.committer.append(events).await {
        Ok(accepted) => {
            metrics::counter!(metric::EVENTS_INGESTED, "source" => "http").increment(n);
            for a in &accepted {
                tracing::debug!(event_id = %a.event_id, sequence = a.sequence, duplicate = a.duplicate, "event accepted");
            }
            let results: Vec<_> = accepted
                .into_iter()
                .map(|a| json!({"event_id": a.event_id, "sequence": a.sequence, "duplicate": a.duplicate}))
                .collect();
            (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response()
        }
        Err(e) => ingest_error(e),
    }
}
