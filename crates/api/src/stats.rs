//! A webhook's delivery statistics over the last 24 hours, computed from
//! its attempt log: success rate and latency percentiles, in total and per
//! hour (the console draws them).

use crate::{
    error::{ApiError, Native},
    openapi::NativeError,
    state::ApiState,
    webhooks::{device_scope, org_scope, own_webhook, Scope},
};
use axum::{
    extract::{Path, State},
    http::HeaderMap,
    Json,
};
use hookrelay_core::{now_ms, rfc3339_ms, Attempt};
use serde::Serialize;
use utoipa::ToSchema;

/// One bucket's width: an hour, in milliseconds.
const BUCKET_MS: i64 = 3_600_000;
/// The window: 24 buckets.
const BUCKETS: usize = 24;
/// Most attempts one answer reads; past it the answer says `truncated`.
const MAX_ATTEMPTS: usize = 20_000;

/// `GET /v1/webhooks/{id}/stats`.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct WebhookStats {
    webhook_id: String,
    /// Start of the window (RFC 3339): the start of the hour 23 hours
    /// before the current one.
    from: String,
    /// End of the window (RFC 3339): the end of the current hour.
    until: String,
    /// Width of each bucket, seconds (3,600).
    bucket_seconds: u32,
    /// Every attempt of the window.
    total: Summary,
    /// One per hour, oldest first; the last is the current hour.
    buckets: Vec<Bucket>,
    /// The window holds more than 20,000 attempts: the figures cover the
    /// most recent 20,000.
    truncated: bool,
}

/// Attempts of one stretch of time.
#[derive(Debug, Default, PartialEq, Serialize, ToSchema)]
pub(crate) struct Summary {
    /// HTTP requests made.
    attempts: u64,
    /// Answered 2xx.
    succeeded: u64,
    /// Anything else: an error status, a timeout, a refused connection.
    failed: u64,
    /// `succeeded / attempts`; null without attempts.
    success_rate: Option<f64>,
    /// Over the attempts that got an HTTP answer (timeouts and connection
    /// errors have no latency); null without any.
    latency_ms: Option<Percentiles>,
}

/// Nearest-rank percentiles of attempt durations, milliseconds.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Percentiles {
    p50: u32,
    p90: u32,
    p99: u32,
    max: u32,
}

/// One hour of the window.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct Bucket {
    /// RFC 3339.
    start: String,
    #[serde(flatten)]
    summary: Summary,
}

impl Summary {
    fn of<'a>(attempts: impl Iterator<Item = &'a Attempt>) -> Self {
        let mut s = Self::default();
        let mut answered: Vec<u32> = Vec::new();
        for a in attempts {
            s.attempts += 1;
            if a.error.is_none() {
                s.succeeded += 1;
            } else {
                s.failed += 1;
            }
            if a.status_code.is_some() {
                answered.push(a.duration_ms);
            }
        }
        s.success_rate = (s.attempts > 0).then(|| s.succeeded as f64 / s.attempts as f64);
        s.latency_ms = Percentiles::of(answered);
        s
    }
}

impl Percentiles {
    fn of(mut v: Vec<u32>) -> Option<Self> {
        v.sort_unstable();
        let max = *v.last()?;
        // Nearest rank: the smallest value with at least p % at or below it.
        let rank = |p: usize| v[(p * v.len()).div_ceil(100).max(1) - 1];
        Some(Self {
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max,
        })
    }
}

/// The window that ends with the hour holding `now_ms`: its start and end.
fn window(now_ms: i64) -> (i64, i64) {
    let until = now_ms.div_euclid(BUCKET_MS) * BUCKET_MS + BUCKET_MS;
    (until - BUCKETS as i64 * BUCKET_MS, until)
}

/// The statistics of `attempts` (any order; those outside the window are
/// ignored) for the window holding `now_ms`.
fn compute(webhook_id: &str, attempts: &[Attempt], now_ms: i64, truncated: bool) -> WebhookStats {
    let (from, until) = window(now_ms);
    let inside = |a: &&Attempt| (from..until).contains(&a.started_at_ms);
    let buckets = (0..BUCKETS as i64)
        .map(|i| {
            let start = from + i * BUCKET_MS;
            Bucket {
                start: rfc3339_ms(start),
                summary: Summary::of(
                    attempts
                        .iter()
                        .filter(|a| (start..start + BUCKET_MS).contains(&a.started_at_ms)),
                ),
            }
        })
        .collect();
    WebhookStats {
        webhook_id: webhook_id.to_owned(),
        from: rfc3339_ms(from),
        until: rfc3339_ms(until),
        bucket_seconds: (BUCKET_MS / 1000) as u32,
        total: Summary::of(attempts.iter().filter(inside)),
        buckets,
        truncated,
    }
}

async fn stats_of(s: &ApiState, scope: &Scope, id: &str) -> Result<WebhookStats, ApiError> {
    let w = own_webhook(s, scope, id)?;
    let now = now_ms();
    let (from, _) = window(now);
    let recent = s
        .deliveries
        .recent_attempts(&w.id, from, MAX_ATTEMPTS)
        .await?;
    Ok(compute(
        w.id.as_str(),
        &recent.attempts,
        now,
        recent.truncated,
    ))
}

/// `GET /v1/webhooks/{id}/stats`: the last 24 hours of a device's webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}/stats", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("device_token" = []), ("api_key" = [])), responses((status = 200, body = WebhookStats), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WebhookStats>, Native> {
    let scope = device_scope(&s, &h)?;
    Ok(Json(stats_of(&s, &scope, &id).await?))
}

/// `GET /v1/organization/webhooks/{id}/stats`: the same for an
/// organization-wide webhook.
#[utoipa::path(get, path = "/v1/organization/webhooks/{id}/stats", tag = "deliveries", params(("id" = String, Path, description = "webhook id (wh_…)")), security(("admin_key" = []), ("api_key" = [])), responses((status = 200, body = WebhookStats), (status = 404, body = NativeError), (status = 401, body = NativeError), (status = 429, body = NativeError)))]
pub(crate) async fn o_get(
    State(s): State<ApiState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<WebhookStats>, Native> {
    let scope = org_scope(&s, &h)?;
    Ok(Json(stats_of(&s, &scope, &id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::ErrorKind;

    /// 2026-06-15T12:30:00Z.
    const NOW: i64 = 1_781_526_600_000;
    const HOUR: i64 = BUCKET_MS;

    fn ok(started_at_ms: i64, duration_ms: u32) -> Attempt {
        Attempt {
            attempt: 1,
            started_at_ms,
            duration_ms,
            status_code: Some(200),
            error: None,
            response_body: None,
        }
    }

    fn failed(started_at_ms: i64, status_code: Option<u16>, error: ErrorKind) -> Attempt {
        Attempt {
            status_code,
            error: Some(error),
            duration_ms: 10_000,
            ..ok(started_at_ms, 0)
        }
    }

    #[test]
    fn the_window_is_the_current_hour_and_the_23_before_it() {
        let s = compute("wh_a", &[], NOW, false);
        assert_eq!(s.from, "2026-06-14T13:00:00Z");
        assert_eq!(s.until, "2026-06-15T13:00:00Z");
        assert_eq!(s.buckets.len(), 24);
        assert_eq!(s.buckets[0].start, "2026-06-14T13:00:00Z");
        assert_eq!(s.buckets[23].start, "2026-06-15T12:00:00Z");
        assert_eq!(
            s.total,
            Summary::default(),
            "no attempts: no rate, no latency"
        );
    }

    #[test]
    fn rates_and_percentiles_count_what_happened_in_each_hour() {
        // This hour: durations 1..=100 ms, all 2xx; one 500 and one timeout.
        let mut attempts: Vec<Attempt> = (1..=100).map(|d| ok(NOW - 60_000, d)).collect();
        attempts.push(failed(NOW - 1_000, Some(500), ErrorKind::Http5xx));
        attempts.push(failed(NOW - 1_000, None, ErrorKind::Timeout));
        // Three hours back: one success of 7 ms.
        attempts.push(ok(NOW - 3 * HOUR, 7));
        // Outside the window: ignored.
        attempts.push(ok(NOW - 25 * HOUR, 1));
        attempts.push(failed(NOW + HOUR, None, ErrorKind::ConnectError));
        let s = compute("wh_a", &attempts, NOW, true);
        assert!(s.truncated);
        let now = &s.buckets[23].summary;
        assert_eq!((now.attempts, now.succeeded, now.failed), (102, 100, 2));
        assert_eq!(now.success_rate, Some(100.0 / 102.0));
        // The 500 answered (in 10 s), the timeout did not: 101 latencies.
        assert_eq!(
            now.latency_ms,
            Some(Percentiles {
                p50: 51,
                p90: 91,
                p99: 100,
                max: 10_000
            })
        );
        let back = &s.buckets[20].summary;
        assert_eq!((back.attempts, back.succeeded, back.failed), (1, 1, 0));
        assert_eq!(back.success_rate, Some(1.0));
        assert_eq!(
            back.latency_ms,
            Some(Percentiles {
                p50: 7,
                p90: 7,
                p99: 7,
                max: 7
            })
        );
        assert!(s.buckets[..20].iter().all(|b| b.summary.attempts == 0));
        assert_eq!(
            (s.total.attempts, s.total.succeeded, s.total.failed),
            (103, 101, 2)
        );
    }

    #[test]
    fn only_failures_give_a_zero_rate_and_no_latency_without_an_answer() {
        let s = compute(
            "wh_a",
            &[failed(NOW, None, ErrorKind::ConnectError)],
            NOW,
            false,
        );
        assert_eq!(s.total.success_rate, Some(0.0));
        assert_eq!(s.total.latency_ms, None);
    }
}
