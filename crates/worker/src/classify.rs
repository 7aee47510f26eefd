//! What an attempt's result means: success, failure kind, `Retry-After`.

use crate::ssrf::BlockedAddress;
use hookrelay_core::{AttemptResult, ErrorKind};
use std::time::{Duration, SystemTime};

/// Classifies an HTTP status: `None` for 2xx, else the failure kind.
pub fn status_error(status: u16) -> Option<ErrorKind> {
    match status {
        200..=299 => None,
        400..=499 => Some(ErrorKind::Http4xx),
        500..=599 => Some(ErrorKind::Http5xx),
        _ => Some(ErrorKind::Other),
    }
}

/// Parses `Retry-After` (delay-seconds or HTTP-date) into milliseconds.
pub fn retry_after_ms(value: &str, now: SystemTime) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .as_millis()
            .min(u128::from(u64::MAX)) as u64,
    )
}

/// The attempt result for a response status and its `Retry-After`, which is
/// honoured on 429 and 503 only.
pub fn result_for(status: u16, retry_after: Option<&str>) -> AttemptResult {
    if (200..300).contains(&status) {
        return AttemptResult::Delivered;
    }
    let retry_after_ms = match status {
        429 | 503 => retry_after.and_then(|v| retry_after_ms(v, SystemTime::now())),
        _ => None,
    };
    AttemptResult::Failed { retry_after_ms }
}

/// The failure kind of a transport error (no usable response).
pub fn transport_error(e: &reqwest::Error) -> ErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<BlockedAddress>() {
            return ErrorKind::BlockedAddress;
        }
        // The connection worked but the answer is not HTTP (a bad status
        // line, headers over hyper's limits, garbage): outcome `other`.
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() {
                return ErrorKind::Other;
            }
        }
        // rustls is not a direct dependency, so its errors are recognised by
        // their text (hyper-rustls wraps them in io::Error).
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return ErrorKind::TlsError;
        }
        source = s.source();
    }
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ErrorKind::ConnectError
    } else {
        ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert_eq!(status_error(204), None);
        assert_eq!(status_error(404), Some(ErrorKind::Http4xx));
        assert_eq!(status_error(502), Some(ErrorKind::Http5xx));
        assert_eq!(status_error(302), Some(ErrorKind::Other));
    }

    #[test]
    fn retry_after_parses_seconds_and_dates_on_429_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after_ms("7", now), Some(7000));
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(10_000)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(0)
        );
        assert_eq!(retry_after_ms("soon", now), None);
        assert_eq!(
            result_for(429, Some("3")),
            AttemptResult::Failed {
                retry_after_ms: Some(3000)
            }
        );
        assert_eq!(
            result_for(500, Some("3")),
            AttemptResult::Failed {
                retry_after_ms: None
            }
        );
        assert_eq!(result_for(201, None), AttemptResult::Delivered);
    }
}
