//! The engine behind the listeners: the committer (ingest → log), the
//! schedulers of the partitions this node drives, the partition leases on a
//! shared backend, and the worker pool; each a supervised task.

use crate::{shutdown::Shutdown, supervise::Supervisor};
use anyhow::Context;
use hookrelay_api::{ApiConfig, ApiDeps, ApiState};
use hookrelay_core::{Catalog, PendingShares, Progress};
use hookrelay_ingest::{Committer, CommitterHandle};
use hookrelay_scheduler::{FanoutLag, LocalHandles, Partitions};
use hookrelay_store::{Backend, PartitionSet};
use hookrelay_worker::WorkerPool;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::task::TaskTracker;

/// The running engine, as the listeners and the shutdown need it.
pub(crate) struct Engine {
    /// The backend it runs on.
    pub(crate) store: Backend,
    pub(crate) catalog: Arc<Catalog>,
    /// The REST API's state (readiness included).
    pub(crate) api: ApiState,
    /// Fails the engine when a task fails.
    pub(crate) sup: Supervisor,
    /// Every task of the process.
    pub(crate) tasks: TaskTracker,
    /// Appends to the log, for gRPC and HTTP ingest.
    pub(crate) committer: CommitterHandle,
    /// Each tenant's share of the pending deliveries.
    pub(crate) shares: Arc<PendingShares>,
    pub(crate) pool: Arc<WorkerPool>,
    /// What `/metrics` reads when scraped.
    pub(crate) lag: FanoutLag,
    pub(crate) handles: LocalHandles,
    pub(crate) tasks_of: EngineTasks,
}

/// The engine's tasks, stopped one by one by the shutdown.
pub(crate) struct EngineTasks {
    pub(crate) committer: JoinHandle<()>,
    pub(crate) workers: JoinHandle<()>,
    pub(crate) scheduler: JoinHandle<()>,
    pub(crate) leases: Option<JoinHandle<()>>,
    /// The fixed partition set of a backend one process owns, kept alive
    /// while the schedulers watch it.
    pub(crate) owned_fixed: watch::Sender<PartitionSet>,
}

/// Starts the engine on `store`; `api_config` is the REST API's part of the
/// configuration (the API's state carries readiness from the start).
pub(crate) async fn start_engine(
    config: &crate::config::Config,
    store: Backend,
    api_config: ApiConfig,
    shutdown: &Shutdown,
) -> anyhow::Result<Engine> {
    let catalog = Arc::new(Catalog::with_extra(&config.catalog.extra));
    let tasks = TaskTracker::new();

    // Ingest → log; scheduler progress → ingest (back-pressure).
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let (committer, committer_handle) =
        Committer::new(store.log.clone(), &config.ingest, progress_rx);

    // Scheduler ⇄ workers.
    let (task_tx, task_rx) = mpsc::channel(config.scheduler.task_channel);
    let (report_tx, report_rx) = mpsc::channel(config.scheduler.report_channel);
    let mut scheduler_cfg = config.scheduler.clone();
    if store.coordination.is_some() {
        // A shared backend's server dying stalls writes while its streams
        // elect new leaders: ride it out rather than take every node down
        // at once.
        scheduler_cfg.storage_give_up = scheduler_cfg.storage_give_up.max(Duration::from_secs(60));
    }
    // Each tenant's share of the pending deliveries: counted by the
    // schedulers, enforced by ingest, replay and manual retry.
    let shares = Arc::new(PendingShares::new(config.ingest.share_limits()));
    let mut partitions = Partitions::new(
        store.log.clone(),
        store.config.clone(),
        store.deliveries.clone(),
        catalog.clone(),
        scheduler_cfg,
        &config.delivery,
    )
    .sharing(shares.clone());
    // Which partitions this node drives: the one of the embedded store for
    // ever, or its share of those of a backend other nodes share.
    let mut membership = None;
    let (owned_fixed, mut owned) = watch::channel(PartitionSet::from([0]));
    if let Some(coordination) = &store.coordination {
        let joined = coordination
            .join(partitions.running())
            .await
            .context("cannot join the other nodes")?;
        owned = joined.owned.clone();
        membership = Some(joined);
        partitions = partitions.serving_commands(coordination.clone());
    }
    let lag = partitions.fanout_lag();
    let handles = partitions.handles();
    let control = hookrelay_scheduler::Router::new(
        store.log.partitions(),
        partitions.handles(),
        store.coordination.clone(),
        store.config.clone(),
    );

    // REST state first: the supervisor reports failure through `/readyz`.
    let api = ApiState::new(
        ApiDeps {
            config: store.config.clone(),
            log: store.log.clone(),
            deliveries: store.deliveries.clone(),
            control: Arc::new(control),
            catalog: catalog.clone(),
            health: Some(store.health.clone()),
        },
        api_config,
    );
    let sup = Supervisor::new(api.clone());
    let stop = shutdown.ingest.clone();
    let committer_task = tasks.spawn(sup.watch("committer", shutdown.begun.clone(), async move {
        committer.run(stop).await;
        Ok::<(), Infallible>(())
    }));
    // A node that stopped renewing its leases would drive partitions others
    // take over: their task ending before the shutdown fails the engine.
    let leases_task = membership.map(|m| {
        let keep = (m.keep)(shutdown.leases.clone());
        tasks.spawn(
            sup.watch("partition leases", shutdown.begun.clone(), async move {
                keep.await;
                Ok::<(), Infallible>(())
            }),
        )
    });
    let scheduler_task = tasks.spawn(sup.watch(
        "scheduler",
        shutdown.begun.clone(),
        partitions.run(
            owned,
            task_tx,
            report_rx,
            progress_tx,
            shutdown.scheduler.clone(),
        ),
    ));
    let client = hookrelay_worker::build_client(
        config.delivery.allow_private_targets,
        config.delivery.most_per_host(),
    )
    .context("cannot build the HTTP client")?;
    let pool = Arc::new(WorkerPool::new(
        client,
        config.delivery.concurrency,
        config.delivery.allow_private_targets,
    ));
    let pool_run = pool.clone();
    let stop = shutdown.workers.clone();
    let workers_task = tasks.spawn(sup.watch("workers", shutdown.begun.clone(), async move {
        pool_run.run(task_rx, report_tx, stop).await;
        Ok::<(), Infallible>(())
    }));
    Ok(Engine {
        store,
        catalog,
        api,
        sup,
        tasks,
        committer: committer_handle,
        shares,
        pool,
        lag,
        handles,
        tasks_of: EngineTasks {
            committer: committer_task,
            workers: workers_task,
            scheduler: scheduler_task,
            leases: leases_task,
            owned_fixed,
        },
    })
}
