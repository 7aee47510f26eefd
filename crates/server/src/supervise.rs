//! Engine task supervision: failure is loud.
//!
//! Every engine task (committer, scheduler, workers, retention, listeners)
//! runs under [`Supervisor::watch`]. A task that ends with an error, or ends
//! at all before the shutdown began (its tasks then end in the shutdown's
//! order as their inputs close), fails the process: `/readyz`
//! turns 503 at once, the systemd watchdog stops being fed, one error line
//! names the task, the server shuts down in order and `serve` returns the
//! error, so the process exits non-zero and its supervisor restarts it.
//! Transient errors are retried inside the tasks before they give up.

use hookrelay_api::ApiState;
use std::{
    fmt::Display,
    future::Future,
    sync::{Arc, Mutex},
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{error, warn};

/// Shared by every watched task.
#[derive(Clone)]
pub(crate) struct Supervisor {
    failed: CancellationToken,
    first: Arc<Mutex<Option<String>>>,
    api: ApiState,
}

impl Supervisor {
    /// A supervisor that reports failure through `api`'s readiness.
    pub(crate) fn new(api: ApiState) -> Self {
        Self {
            failed: CancellationToken::new(),
            first: Arc::default(),
            api,
        }
    }

    /// Marks the engine failed (the first failure is kept for the exit).
    pub(crate) fn fail(&self, task: &'static str, why: impl Display) {
        let why = format!("engine task {task} failed: {why}");
        self.api.set_ready(false);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            error!(
                task,
                "{why}; hookrelay stops so that its supervisor restarts it"
            );
            *first = Some(why);
        } else {
            // Other tasks end as a consequence of the first failure.
            warn!(task, "{why}");
        }
        self.failed.cancel();
    }

    /// Resolves once any task failed.
    pub(crate) fn failed(&self) -> WaitForCancellationFuture<'_> {
        self.failed.cancelled()
    }

    /// The first failure, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `task`; an error, or an end before `stopping` (the first token
    /// the shutdown cancels) was cancelled, fails the engine.
    pub(crate) fn watch<F, E>(
        &self,
        name: &'static str,
        stopping: CancellationToken,
        task: F,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let me = self.clone();
        async move {
            match task.await {
                Err(e) => me.fail(name, e),
                Ok(()) if !stopping.is_cancelled() => me.fail(name, "ended unexpectedly"),
                Ok(()) => {}
            }
        }
    }
}
