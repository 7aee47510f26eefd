//! Per-token request rate limit for the management API: a token bucket per
//! caller (SHA-256 of the presented token, or the peer when it has none).
//! Over the limit: 429 `RATE_LIMITED` with `Retry-After`, in the envelope of
//! the route's profile.

use crate::error::{ApiError, Format};
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};
use hookrelay_core::hash_token;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Buckets kept before idle ones are dropped.
const MAX_TRACKED: usize = 50_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Shared limiter state.
#[derive(Clone)]
pub(crate) struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<[u8; 32], Bucket>>>,
}

impl Limiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Arc::default(),
        }
    }

    /// Takes one request's token; `Err(seconds)` until the next one.
    fn take(&self, key: [u8; 32]) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            // Drop callers whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.last).as_secs_f64() * self.per_second).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

fn caller(req: &Request) -> [u8; 32] {
    let h = req.headers();
    let token = h
        .get(header::AUTHORIZATION)
        .or_else(|| h.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    hash_token(token).0
}

/// The middleware: health, metrics and ingest are not limited here
/// (ingest has its own back-pressure).
pub(crate) async fn limit(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let exempt = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/v1/events");
    if !exempt {
        let profile = path == "/webhook" || path.starts_with("/webhook/");
        if let Err(retry_after) = limiter.take(caller(&req)) {
            let format = if profile {
                Format::Profile
            } else {
                Format::Native
            };
            let mut resp = ApiError::RateLimited.into_format(format);
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_when() {
        let l = super::Limiter::new(10, 3);
        let k = [1u8; 32];
        assert!((0..3).all(|_| l.take(k).is_ok()));
        assert_eq!(l.take(k), Err(1));
        assert!(
            l.take([2u8; 32]).is_ok(),
            "another caller has its own bucket"
        );
    }
}
