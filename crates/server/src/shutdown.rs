//! One shutdown, in its phases (SIGINT/SIGTERM, or an engine failure):
//!
//! 1. `/readyz` turns 503, and `begun` is cancelled: from now on an engine
//!    task that ends is stopping, not failing.
//! 2. The workers stop taking tasks (no attempt starts after the stop
//!    begins) and the listeners close; they finish the requests they hold
//!    within a quarter of `shutdown.timeout` (an idle client connection
//!    must not eat the whole deadline).
//! 3. The committer finishes the batches it holds.
//! 4. Attempts in flight finish until the drain deadline (the timeout less
//!    a moment to record their outcomes) while the scheduler keeps
//!    recording them.
//! 5. The schedulers write what they hold and stop; then the leases are
//!    released (other nodes take the partitions at once).
//! 6. The backend is flushed (a failed flush exits non-zero).
//!
//! Whatever is still unanswered comes back after a restart; nothing
//! answered is sent again.

use crate::{engine::Engine, listen::Listeners};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The tokens of the phases, and the deadline they share.
pub(crate) struct Shutdown {
    /// Cancelled first: after it, engine tasks may end (in this order)
    /// without that being a failure.
    pub(crate) begun: CancellationToken,
    pub(crate) listeners: CancellationToken,
    pub(crate) ingest: CancellationToken,
    pub(crate) workers: CancellationToken,
    /// The schedulers, and the upkeep tasks (retention, watchdog, reloads).
    pub(crate) scheduler: CancellationToken,
    pub(crate) leases: CancellationToken,
    /// `shutdown.timeout`: how long the whole shutdown may take.
    pub(crate) timeout: Duration,
}

impl Shutdown {
    /// The tokens of a shutdown that takes at most `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            begun: CancellationToken::new(),
            listeners: CancellationToken::new(),
            ingest: CancellationToken::new(),
            workers: CancellationToken::new(),
            scheduler: CancellationToken::new(),
            leases: CancellationToken::new(),
            timeout,
        }
    }

    /// How long a listener may take to finish the requests it holds.
    pub(crate) fn listener_drain(&self) -> Duration {
        self.timeout / 4
    }

    /// Stops `engine` and `listeners` in the module's order; fails if a
    /// task failed before or the final flush does.
    pub(crate) async fn run(self, engine: Engine, listeners: Listeners) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        info!(timeout = ?self.timeout, "shutting down");
        engine.api.set_ready(false);
        self.begun.cancel();
        self.workers.cancel();
        self.listeners.cancel();
        let listeners_deadline = Instant::now() + self.listener_drain();
        let _ = timeout_at(listeners_deadline, listeners.join()).await;
        self.ingest.cancel();
        let tasks = engine.tasks_of;
        let _ = timeout_at(deadline, tasks.committer).await;
        let _ = tasks.workers.await;
        let drain_deadline = deadline - Duration::from_millis(500).min(self.timeout / 4);
        if timeout_at(drain_deadline, engine.pool.drain())
            .await
            .is_err()
        {
            warn!(
                "shutdown deadline reached with attempts in flight; they will be retried after restart"
            );
        }
        self.scheduler.cancel();
        let _ = timeout_at(deadline, tasks.scheduler).await;
        self.leases.cancel();
        if let Some(t) = tasks.leases {
            let _ = timeout_at(deadline + Duration::from_secs(1), t).await;
        }
        drop(tasks.owned_fixed);
        engine.tasks.close();
        if let Err(e) = engine.store.housekeeping.flush().await {
            engine.sup.fail("final flush", e);
        }
        if let Some(failure) = engine.sup.failure() {
            error!("hookrelay stopped after a failure");
            anyhow::bail!(failure);
        }
        info!("hookrelay stopped");
        Ok(())
    }
}
