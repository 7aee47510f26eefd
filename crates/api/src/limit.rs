//! Request rate limits of the REST listener (docs/api.md, docs/security.md): the caller is
//! authenticated first, then limited on the *credential's* identity (SHA-256
//! of the token, whatever header form carried it: `Bearer`, `bearer`,
//! `x-api-key`). Requests whose credential is missing or wrong are limited
//! per client address, so guessing keys costs time. `POST /v1/events` has a
//! bucket of its own per ingest key.
//!
//! Over a limit: 429 `RATE_LIMITED` with `Retry-After`, in the envelope of
//! the route's profile. The buckets are `governor`'s GCRA cells, one per key.

use crate::{
    auth,
    error::{ApiError, Format},
    state::ApiState,
};
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::{
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

/// Keys tracked by one limiter before the idle ones are forgotten.
const MAX_TRACKED: usize = 50_000;

pub use hookrelay_core::ClientAddr;

/// Sustained rate and burst of one kind of bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(rate).allow_burst(burst)
    }
}

/// The three limiters of the listener.
pub(crate) struct Limits {
    credential: DefaultKeyedRateLimiter<[u8; 32]>,
    ingest: DefaultKeyedRateLimiter<[u8; 32]>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    pub(crate) fn new(api: RateLimit, ingest: RateLimit, failures: RateLimit) -> Arc<Self> {
        Arc::new(Self {
            credential: RateLimiter::keyed(api.quota()),
            ingest: RateLimiter::keyed(ingest.quota()),
            failures: RateLimiter::keyed(failures.quota()),
        })
    }
}

/// Takes one cell of `key`'s bucket; `Err(seconds)` until the next one.
fn take<K: Clone + Eq + std::hash::Hash>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), u64> {
    if limiter.len() >= MAX_TRACKED {
        // Forget callers whose bucket has refilled: they lose nothing.
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait: Duration =
            not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        wait.as_secs_f64().ceil().max(1.0) as u64
    })
}

/// Routes anyone may call without a credential: health, the API
/// description, and the web console's static files (a page load is a dozen
/// of them; the console's API calls carry the signed-in credential).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json")
        || path == "/console"
        || path.starts_with("/console/")
}

/// The middleware of the main listener: errors in `/webhook`'s envelope
/// on its routes, in `/v1`'s elsewhere.
pub(crate) async fn limit(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let format = if path == "/webhook" || path.starts_with("/webhook/") {
        Format::Profile
    } else {
        Format::Native
    };
    admit(&state, req, next, |e| e.into_format(format)).await
}

/// The middleware of a profile's listener, answering in its envelope.
pub(crate) async fn limit_profile(
    State((state, render)): State<(ApiState, crate::profiles::Render)>,
    req: Request,
    next: Next,
) -> Response {
    admit(&state, req, next, render).await
}

/// The caller's rate limit, then its credential when the request has a
/// body (the body is never read for an unauthenticated caller), then the
/// body under its deadline; then the handler.
async fn admit(
    state: &ApiState,
    req: Request,
    next: Next,
    render: impl Fn(ApiError) -> Response,
) -> Response {
    match verdict(state, &req) {
        Err(Refusal::Limited(retry_after)) => refused(render(ApiError::RateLimited), retry_after),
        Err(Refusal::Unauthenticated(why)) => render(ApiError::Unauthorized(why)),
        Ok(()) => match crate::body_read::read(req, state.body_read).await {
            Ok(req) => next.run(req).await,
            Err(e) => render(e),
        },
    }
}

fn refused(mut resp: Response, retry_after: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Why a request goes no further than the middleware.
enum Refusal {
    /// Over a rate limit: the seconds to wait.
    Limited(u64),
    /// A request with a body and no valid credential: answered before its
    /// body is read.
    Unauthenticated(&'static str),
}

/// Takes a token from the caller's bucket: the credential's when it is
/// one, otherwise the client address's failure budget.
fn verdict(state: &ApiState, req: &Request) -> Result<(), Refusal> {
    let path = req.uri().path();
    let presented = auth::presented(req.headers()).or_else(|| auth::bare(req.headers()));
    if presented.is_none() && public(path) {
        return Ok(());
    }
    let ingest = path == "/v1/events";
    match presented.map(hookrelay_core::hash_token) {
        Some(hash) if ingest && state.is_ingest_key(&hash) => {
            take(&state.limits.ingest, &hash.0).map_err(Refusal::Limited)
        }
        Some(hash) if !ingest && state.is_credential(&hash) => {
            take(&state.limits.credential, &hash.0).map_err(Refusal::Limited)
        }
        // Missing or wrong: 401, but only as often as the client address's
        // failure budget allows; with a body, here, before it is read (the
        // handler answers a bodyless one, in its own words).
        _ => {
            let addr = req
                .extensions()
                .get::<ClientAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0);
            take(&state.limits.failures, &addr).map_err(Refusal::Limited)?;
            if crate::body_read::has_body(req) && !public(path) {
                return Err(Refusal::Unauthenticated(if presented.is_none() {
                    "missing API token"
                } else {
                    "invalid API token"
                }));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_when() {
        let l: DefaultKeyedRateLimiter<[u8; 32]> = RateLimiter::keyed(
            RateLimit {
                per_second: 10,
                burst: 3,
            }
            .quota(),
        );
        let k = [1u8; 32];
        assert!((0..3).all(|_| take(&l, &k).is_ok()));
        assert_eq!(take(&l, &k), Err(1));
        assert!(
            take(&l, &[2u8; 32]).is_ok(),
            "another caller has its own bucket"
        );
    }
}
