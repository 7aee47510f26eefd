//! Runs attempts with bounded concurrency and reports each outcome.

use crate::perform;
use hookrelay_core::{AttemptReport, DeliveryTask};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

/// The delivery workers: take tasks, attempt them, report back.
pub struct WorkerPool {
    client: reqwest::Client,
    concurrency: Arc<Semaphore>,
    allow_private: bool,
    tasks: TaskTracker,
}

impl WorkerPool {
    /// A pool running at most `concurrency` attempts at once on `client`.
    pub fn new(client: reqwest::Client, concurrency: usize, allow_private: bool) -> Self {
        Self {
            client,
            concurrency: Arc::new(Semaphore::new(concurrency.max(1))),
            allow_private,
            tasks: TaskTracker::new(),
        }
    }

    /// Takes tasks until `shutdown` or until the scheduler hangs up. A permit
    /// is taken *before* a task is received, so tasks wait in the scheduler,
    /// not here. On return no new attempt starts; [`WorkerPool::drain`] waits
    /// for the ones in flight.
    pub async fn run(
        &self,
        mut tasks: mpsc::Receiver<DeliveryTask>,
        reports: mpsc::Sender<AttemptReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let permit = tokio::select! {
                p = self.concurrency.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let task = tokio::select! {
                t = tasks.recv() => match t {
                    Some(t) => t,
                    None => break,
                },
                () = shutdown.cancelled() => break,
            };
            let client = self.client.clone();
            let reports = reports.clone();
            let allow_private = self.allow_private;
            let stopping = shutdown.clone();
            self.tasks.spawn(async move {
                // Handed over just before the stop but not yet started: no
                // attempt starts after the stop begins. Unanswered, the
                // delivery comes back after the restart (cursor or lease).
                if stopping.is_cancelled() {
                    return;
                }
                let report = perform(&client, &task, allow_private).await;
                drop(permit);
                // The scheduler stopped: the delivery's lease or the cursor
                // brings it back after restart.
                let _ = reports.send(report).await;
            });
        }
        info!("delivery workers stopped taking tasks");
    }

    /// Waits for in-flight attempts to finish.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
