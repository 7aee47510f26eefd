//! Following a stream for as long as the node runs: the event log's tail
//! and the configuration stream.
//!
//! A follower reads through an ephemeral pull consumer that must show life:
//! the servers send an idle heartbeat every [`HEARTBEAT`], and a missed one,
//! a gap in the consumer's sequence or any other error ends the read, which
//! [`follow_forever`] starts again from the follower's own position.
//! async-nats's ordered consumer recovers by itself, but only after two
//! missed 15 s heartbeats; after a NATS server was killed, its pull request
//! was seen to stay silent for over a minute, and a partition's new events
//! waited that long on every node that followed it through that server.
//!
//! Setting a read up again needs the cluster's JetStream API, which has no
//! leader for some seconds after its leader died: each try is given
//! [`SETUP`], not the client's longer request timeout, so that the first
//! try after the election is not minutes away.

use async_nats::jetstream::{
    self,
    consumer::pull::{self, OrderedConfig},
};
use futures_util::{Stream, StreamExt};
use std::time::Duration;

/// How often an idle consumer shows it is alive; two missed end the read.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long one pull request waits for messages before the next is sent.
const EXPIRES: Duration = Duration::from_secs(10);

/// How long setting a read up may take before it is tried again.
const SETUP: Duration = Duration::from_secs(2);

/// `setup` within [`SETUP`].
pub(crate) async fn setup<T>(
    setup: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(SETUP, setup)
        .await
        .unwrap_or_else(|_| Err(format!("JetStream did not answer within {SETUP:?}")))
}

/// Runs `follow` again and again with backoff (50 ms doubling to 1.6 s)
/// while it fails, and at once when it ends cleanly: the followers of the
/// log and the configuration stream end only when their owner is dropped.
/// A read that ran for [`EXPIRES`] or longer before it failed starts the
/// backoff over: a heartbeat missed now and then is not a failing cluster.
pub(crate) async fn follow_forever<F, Fut>(what: String, mut follow: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut failures = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        match follow().await {
            Ok(()) => failures = 0,
            Err(e) => {
                if started.elapsed() >= EXPIRES {
                    failures = 0;
                }
                failures += 1;
                tracing::warn!(error = %e, failures, "following the {what} failed; retrying");
            }
        }
        tokio::time::sleep(Duration::from_millis(50 << failures.min(5))).await;
    }
}

/// The messages of `stream` that `config` selects, in order. An error means
/// the read can no longer be trusted to go on: the caller stops there and
/// reads again from its own position.
pub(crate) async fn tail(
    stream: &jetstream::stream::Stream,
    config: OrderedConfig,
) -> Result<impl Stream<Item = Result<jetstream::Message, String>>, String> {
    let messages = setup(async {
        let consumer = stream
            .create_consumer(pull::Config::from(config))
            .await
            .map_err(|e| e.to_string())?;
        consumer
            .stream()
            .heartbeat(HEARTBEAT)
            .expires(EXPIRES)
            .messages()
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let mut expected = 1u64;
    Ok(messages.map(move |m| {
        let m = m.map_err(|e| e.to_string())?;
        let got = m.info().map_err(|e| e.to_string())?.consumer_sequence;
        if got != expected {
            return Err(format!(
                "consumer message {expected} missing (got {got}): reading again"
            ));
        }
        expected += 1;
        Ok(m)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_read_that_ran_a_while_is_tried_again_without_the_backoff_of_earlier_failures() {
        // When each read started; the 7th runs for EXPIRES, then fails.
        let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let seen = starts.clone();
        let task = tokio::spawn(follow_forever("test stream".into(), move || {
            let starts = seen.clone();
            async move {
                let n = {
                    let mut s = starts.lock().expect("lock");
                    s.push(Instant::now());
                    s.len()
                };
                match n {
                    1..=6 => Err("refused".to_owned()),
                    7 => {
                        tokio::time::sleep(EXPIRES).await;
                        Err("missed idle heartbeat".to_owned())
                    }
                    _ => std::future::pending().await,
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(60)).await;
        task.abort();
        let s = starts.lock().expect("lock");
        assert_eq!(s.len(), 8);
        // Six quick failures backed off to 1.6 s ...
        assert_eq!(s[6] - s[5], Duration::from_millis(1600));
        // ... and the long read that failed is tried again after 100 ms.
        assert_eq!(s[7] - (s[6] + EXPIRES), Duration::from_millis(100));
    }
}
