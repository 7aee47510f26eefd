//! Writes that wait out a stream's leader election.
//!
//! When the NATS server leading a stream (or bucket) dies, the stream has no
//! leader until the survivors elect one: nats-server's Raft waits 4–9 s
//! before it calls the election. Until then a publish to that stream is
//! answered "no responders" at once, or not at all. Every write of this
//! backend goes through [`Failover::write`], which retries such failures with
//! backoff for up to `jetstream.election_wait`: the death of a NATS server
//! delays ingest and API writes by seconds instead of refusing them.
//!
//! A retry must not write twice, since a write that timed out may have been
//! stored. Log and command messages carry a `Nats-Msg-Id` from [`MsgIds`]
//! (a stream answers a message id it saw within its duplicate window, two
//! minutes, with the first copy's sequence, before it checks an expected
//! last sequence); state messages are last-per-subject, so writing one again
//! changes nothing; idempotency claims carry a value unique to their commit.

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    kv,
};
use std::{
    error::Error as StdError,
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};
use tokio::time::Instant;
use tracing::debug;

/// The first pause between tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between tries.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// How long writes wait for a stream to have a leader again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failover {
    wait: Duration,
}

impl Failover {
    pub(crate) fn new(wait: Duration) -> Self {
        Self { wait }
    }

    /// Runs `op` until it succeeds, fails for good (see [`transient`]), or
    /// `wait` has passed; its last result.
    pub(crate) async fn write<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: StdError + 'static,
    {
        let deadline = Instant::now() + self.wait;
        let mut pause = FIRST_PAUSE;
        loop {
            match op().await {
                Err(e) if transient(&e) && Instant::now() + pause < deadline => {
                    debug!(error = %e, "a JetStream write waits for the stream to have a leader");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                done => return done,
            }
        }
    }
}

/// Whether `e` may clear by itself. No answer (no responders, a timeout, a
/// lost connection) or the server's "temporarily unavailable" may; an
/// answer with a reason (an expected sequence or revision that does not
/// hold, a key that exists, a limit, a bad request) will not change.
pub(crate) fn transient(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(api) = err.downcast_ref::<jetstream::Error>() {
            return api.code() == 503;
        }
        if let Some(p) = err.downcast_ref::<PublishError>() {
            if matches!(
                p.kind(),
                PublishErrorKind::WrongLastSequence
                    | PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::MaxPayloadExceeded
            ) {
                return false;
            }
        }
        if let Some(c) = err.downcast_ref::<kv::CreateError>() {
            if matches!(
                c.kind(),
                kv::CreateErrorKind::AlreadyExists | kv::CreateErrorKind::InvalidKey
            ) {
                return false;
            }
        }
        if let Some(u) = err.downcast_ref::<kv::UpdateError>() {
            if matches!(
                u.kind(),
                kv::UpdateErrorKind::WrongLastRevision | kv::UpdateErrorKind::InvalidKey
            ) {
                return false;
            }
        }
        cur = err.source();
    }
    true
}

/// Message ids unique across nodes and restarts: a random prefix per
/// process and a counter. Cheaper than a UUID per message, and only
/// uniqueness within a stream's duplicate window matters.
#[derive(Debug)]
pub(crate) struct MsgIds {
    prefix: String,
    next: AtomicU64,
}

impl MsgIds {
    pub(crate) fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string(),
            next: AtomicU64::new(0),
        }
    }

    /// A message id not handed out before.
    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn publish_error(kind: PublishErrorKind) -> PublishError {
        PublishError::new(kind)
    }

    #[test]
    fn no_answer_is_transient_and_a_reason_is_final() {
        assert!(transient(&publish_error(PublishErrorKind::StreamNotFound)));
        assert!(transient(&publish_error(PublishErrorKind::TimedOut)));
        assert!(transient(&publish_error(PublishErrorKind::BrokenPipe)));
        assert!(!transient(&publish_error(
            PublishErrorKind::WrongLastSequence
        )));
        assert!(!transient(&publish_error(
            PublishErrorKind::MaxPayloadExceeded
        )));
        // Through the key-value layer, which wraps the publish error.
        let exists = kv::CreateError::new(kv::CreateErrorKind::AlreadyExists);
        assert!(!transient(&exists));
        let timed_out = kv::CreateError::with_source(
            kv::CreateErrorKind::Publish,
            publish_error(PublishErrorKind::TimedOut),
        );
        assert!(transient(&timed_out));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_retried_until_it_succeeds_within_the_wait() {
        let tries = AtomicUsize::new(0);
        let r: Result<u32, PublishError> = Failover::new(Duration::from_secs(5))
            .write(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(publish_error(PublishErrorKind::StreamNotFound))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(tries.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_gives_up_after_the_wait_and_at_once_on_a_final_error() {
        let started = Instant::now();
        let tries = AtomicUsize::new(0);
        let r: Result<(), PublishError> = Failover::new(Duration::from_secs(2))
            .write(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(publish_error(PublishErrorKind::StreamNotFound))
            })
            .await;
        assert!(r.is_err());
        assert!(started.elapsed() <= Duration::from_secs(2));
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert!(tries.load(Ordering::SeqCst) > 3);

        let tries = AtomicUsize::new(0);
        let r: Result<(), PublishError> = Failover::new(Duration::from_secs(2))
            .write(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(publish_error(PublishErrorKind::WrongLastSequence))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn message_ids_do_not_repeat() {
        let a = MsgIds::new();
        let b = MsgIds::new();
        let ids: std::collections::HashSet<String> =
            (0..100).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 200);
    }
}
