//! Reading a request's body under a deadline, before its handler runs
//! (docs/security.md, "Availability"): a body gets `timeout`, plus a second
//! for each `min_bytes_per_second` it has sent, so a client that trickles
//! its body is answered 408 and disconnected instead of holding a
//! connection and a task for as long as it likes. A body over
//! [`crate::MAX_BODY_BYTES`] is answered 413 as soon as it is. The
//! handler then gets the whole body, already in memory (every REST body
//! is a JSON document the handler buffers anyway).
//!
//! Runs after the credential is checked (`limit`): an unauthenticated
//! request's body is never read.

use crate::error::ApiError;
use axum::{body::Body, extract::Request};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;

/// How fast a body must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyRead {
    /// The time every body gets.
    pub timeout: Duration,
    /// The slowest transfer kept up beyond it, bytes per second.
    pub min_bytes_per_second: u32,
}

impl Default for BodyRead {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            min_bytes_per_second: 16 * 1024,
        }
    }
}

impl BodyRead {
    /// When a body that has sent `received` bytes since `started` must be done.
    fn deadline(&self, started: Instant, received: usize) -> Instant {
        let rate = f64::from(self.min_bytes_per_second.max(1));
        started + self.timeout + Duration::from_secs_f64(received as f64 / rate)
    }
}

/// Whether `req` carries a body (a length above 0, or a chunked one).
pub(crate) fn has_body(req: &Request) -> bool {
    use axum::http::header;
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `req` with its body read into memory, or why not (408, 413, 400).
pub(crate) async fn read(req: Request, rate: BodyRead) -> Result<Request, ApiError> {
    if !has_body(&req) {
        return Ok(req);
    }
    let (parts, mut body) = req.into_parts();
    let started = Instant::now();
    let mut buf = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(rate.deadline(started, buf.len()), body.frame())
            .await
            .map_err(|_| ApiError::RequestTimeout)?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            ApiError::validation(format!("could not read request body: {e}"), vec![])
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > crate::MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Request::from_parts(parts, Body::from(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use std::convert::Infallible;

    fn rate() -> BodyRead {
        BodyRead {
            timeout: Duration::from_secs(2),
            min_bytes_per_second: 100,
        }
    }

    /// A request whose body sends `chunks` bytes, one chunk every `every`.
    fn trickle(chunks: usize, size: usize, every: Duration) -> Request {
        let stream = futures_util::stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, Infallible>(Bytes::from(vec![b'x'; size])), i + 1))
        });
        Request::builder()
            .header("transfer-encoding", "chunked")
            .body(Body::from_stream(stream))
            .expect("request")
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_times_out_at_its_deadline() {
        let started = Instant::now();
        // One byte a second: 2 s, then 10 ms a byte.
        let r = read(trickle(1000, 1, Duration::from_secs(1)), rate()).await;
        assert!(matches!(r, Err(ApiError::RequestTimeout)), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_sent_at_the_minimum_rate_is_read_whole() {
        // 10 KiB at 200 bytes a second: past the first 2 s, each chunk buys
        // more time than it takes.
        let req = read(trickle(50, 200, Duration::from_secs(1)), rate())
            .await
            .expect("read");
        let body = req.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), 10_000);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_without_reading_the_rest() {
        let chunk = crate::MAX_BODY_BYTES / 2 + 1;
        let r = read(trickle(3, chunk, Duration::ZERO), rate()).await;
        assert!(matches!(r, Err(ApiError::PayloadTooLarge)), "{r:?}");
    }
}
