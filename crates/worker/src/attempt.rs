//! One delivery attempt: build, sign, send, read the capped answer, classify.

use crate::{classify, ssrf, RESPONSE_BODY_CAP};
use hookrelay_core::{
    header, metric, now_ms, signing, Attempt, AttemptReport, AttemptResult, DeliveryTask, ErrorKind,
};
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::{Duration, Instant};
use tracing::{debug, Instrument};

/// Performs one attempt of `task` and reports its outcome. The webhook's
/// timeout bounds connect, send and the whole response together.
pub async fn perform(
    client: &reqwest::Client,
    task: &DeliveryTask,
    allow_private: bool,
) -> AttemptReport {
    let span = tracing::info_span!(
        "attempt",
        event_id = %task.event_id,
        delivery_id = %task.key.id(),
        webhook_id = %task.key.webhook_id,
        attempt = task.attempt,
    );
    async move {
        let started_at_ms = now_ms();
        let start = Instant::now();
        let timeout = Duration::from_secs(u64::from(task.webhook.timeout_secs.max(1)));
        let outcome = tokio::time::timeout(timeout, send(client, task, allow_private, started_at_ms))
            .await
            .unwrap_or(Err((ErrorKind::Timeout, None)));
        let duration = start.elapsed();
        metrics::histogram!(metric::ATTEMPT_DURATION).record(duration.as_secs_f64());
        let (status_code, error, response_body, result) = match outcome {
            // The answer was cut off or reset: failed, whatever the status said.
            Ok(Answer { status, body, cut: Some(kind), .. }) => (
                Some(status),
                Some(kind),
                body,
                AttemptResult::Failed { retry_after_ms: None },
            ),
            Ok(Answer { status, retry_after, body, cut: None }) => {
                let result = classify::result_for(status, retry_after.as_deref());
                let error = classify::status_error(status);
                (Some(status), error, body, result)
            }
            Err((kind, body)) => (None, Some(kind), body, AttemptResult::Failed { retry_after_ms: None }),
        };
        let outcome_label = error.map_or("success", |e| match e {
            ErrorKind::TlsError => "other",
            other => other.as_str(),
        });
        metrics::counter!(metric::DELIVERY_ATTEMPTS, "outcome" => outcome_label).increment(1);
        if result == AttemptResult::Delivered {
            let lag_ms = now_ms().saturating_sub(task.occurred_at_ms).max(0);
            metrics::histogram!(metric::EVENT_TO_DELIVERY).record(lag_ms as f64 / 1000.0);
        }
        debug!(status = ?status_code, error = ?error, ms = duration.as_millis() as u64, "attempt finished");
        AttemptReport {
            key: task.key.clone(),
            attempt: Attempt {
                attempt: task.attempt,
                started_at_ms,
                duration_ms: u32::try_from(duration.as_millis()).unwrap_or(u32::MAX),
                status_code,
                error,
                response_body,
            },
            result,
            elapsed: duration,
        }
    }
    .instrument(span)
    .await
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Option<String>,
    /// Why the answer ended before it was whole, if it did.
    cut: Option<ErrorKind>,
}

type Failure = (ErrorKind, Option<String>);

/// A refused target is recorded as that word only: the internal address it
/// resolved to is not the webhook owner's business (docs/api.md, docs/security.md).
fn blocked() -> Failure {
    (
        ErrorKind::BlockedAddress,
        Some(ErrorKind::BlockedAddress.as_str().to_owned()),
    )
}

fn failure(e: &reqwest::Error) -> Failure {
    match classify::transport_error(e) {
        ErrorKind::BlockedAddress => blocked(),
        kind => (kind, Some(e.to_string())),
    }
}

async fn send(
    client: &reqwest::Client,
    task: &DeliveryTask,
    allow_private: bool,
    now: i64,
) -> Result<Answer, Failure> {
    let w = &task.webhook;
    let url = reqwest::Url::parse(&w.url).map_err(|_| (ErrorKind::Other, None))?;
    if let Some(host) = url.host_str() {
        ssrf::check_literal_host(host, allow_private).map_err(|_| blocked())?;
    }
    let body = signing::signed_body(&task.envelope, w.secret.as_deref());
    let ts = now.div_euclid(1000);
    let mut req = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(header::WEBHOOK_ID, &*task.event_id)
        .header(header::WEBHOOK_TIMESTAMP, ts.to_string());
    let secrets = w.signing_secrets(now);
    if !secrets.is_empty() {
        let sig = signing::signature_header(&secrets, &task.event_id, ts, &body);
        req = req.header(header::WEBHOOK_SIGNATURE, sig);
    }
    for (name, value) in &w.headers {
        // Validated at configuration time; skip rather than fail if not.
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            req = req.header(n, v);
        }
    }
    let mut resp = req.body(body).send().await.map_err(|e| failure(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let success = (200..300).contains(&status);
    // The whole answer is read before anything counts: a 2xx whose body is
    // cut off or reset is a failed attempt (the receiver may not have
    // committed what it answered). Only the first bytes are kept.
    let mut kept: Vec<u8> = Vec::new();
    let mut cut = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                cut = Some(failure(&e).0);
                break;
            }
        }
    }
    // The first bytes of every answer are kept, successes' too (usually a
    // few bytes: the happy path stays cheap).
    let body = (!kept.is_empty() || !success).then(|| String::from_utf8_lossy(&kept).into_owned());
    Ok(Answer {
        status,
        retry_after,
        body,
        cut,
    })
}
