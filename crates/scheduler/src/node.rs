//! The schedulers of the partitions this node drives. [`Partitions`]
//! starts a [`Scheduler`] for each partition as it is handed to the node
//! and stops it when it is taken away; the workers are shared, and their
//! reports are routed back to the scheduler of the delivery's partition.
//! With the embedded backend the node drives the one partition for ever.

use crate::{route::LocalHandles, Scheduler, SchedulerChannels, SchedulerConfig, SchedulerHandle};
use hookrelay_core::{
    metric, seq_partition, AttemptReport, Catalog, DeliveryConfig, DeliveryTask, Partition,
    Progress, Seq,
};
use hookrelay_store::{ConfigStore, DeliveryStore, EventLog, StoreError};
use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

/// How often the progress of several schedulers is summed for ingest.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What every scheduler of this node is built from.
pub struct Partitions {
    log: Arc<dyn EventLog>,
    config: Arc<dyn ConfigStore>,
    store: Arc<dyn DeliveryStore>,
    catalog: Arc<Catalog>,
    cfg: SchedulerConfig,
    delivery: DeliveryConfig,
    local: LocalHandles,
    running: watch::Sender<BTreeSet<Partition>>,
    /// Serves each running partition's commands from other nodes.
    commands: Option<Arc<dyn hookrelay_store::Coordination>>,
    /// The command servers of running partitions.
    serving: TaskTracker,
    lag: FanoutLag,
    /// The tenants' pending shares, counted by every scheduler here.
    shares: Arc<hookrelay_core::PendingShares>,
    /// Where the schedulers' now comes from.
    clock: hookrelay_core::Clock,
}

/// A partition's durable head and its scheduler's progress.
type Positions = (watch::Receiver<Seq>, watch::Receiver<Progress>);

/// The heads and read positions of the partitions a node drives.
#[derive(Clone, Default)]
pub struct FanoutLag(Arc<std::sync::Mutex<HashMap<Partition, Positions>>>);

impl FanoutLag {
    /// Σ over the partitions driven here of head − last read: events on
    /// sled; on JetStream 0 when every scheduler is caught up, else a
    /// distance in sequence units.
    pub fn lag(&self) -> u64 {
        self.sum(|head, p| head.saturating_sub(p.read))
    }

    /// Deliveries waiting for an attempt, over the partitions driven here.
    pub fn pending(&self) -> u64 {
        self.sum(|_, p| p.pending)
    }

    fn sum(&self, f: impl Fn(Seq, &Progress) -> u64) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(head, progress)| f(*head.borrow(), &progress.borrow()))
            .sum()
    }

    fn set(&self, p: Partition, v: Option<Positions>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match v {
            Some(v) => m.insert(p, v),
            None => m.remove(&p),
        };
    }
}

/// A scheduler running here.
struct Live {
    stop: CancellationToken,
    reports: mpsc::Sender<AttemptReport>,
    progress: watch::Receiver<Progress>,
    serving: Option<CancellationToken>,
}

impl Partitions {
    /// Schedulers over these stores.
    pub fn new(
        log: Arc<dyn EventLog>,
        config: Arc<dyn ConfigStore>,
        store: Arc<dyn DeliveryStore>,
        catalog: Arc<Catalog>,
        cfg: SchedulerConfig,
        delivery: &DeliveryConfig,
    ) -> Self {
        Self {
            log,
            config,
            store,
            catalog,
            cfg,
            delivery: delivery.clone(),
            local: LocalHandles::default(),
            running: watch::Sender::new(BTreeSet::new()),
            commands: None,
            serving: TaskTracker::new(),
            lag: FanoutLag::default(),
            shares: Arc::default(),
            clock: hookrelay_core::Clock::system(),
        }
    }

    /// Every scheduler here reads the time from `clock` (the system's by
    /// default).
    #[must_use]
    pub fn with_clock(mut self, clock: hookrelay_core::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Counts the pending deliveries of every partition driven here into
    /// `shares` (by default, shares of their own without caps).
    #[must_use]
    pub fn sharing(mut self, shares: Arc<hookrelay_core::PendingShares>) -> Self {
        self.shares = shares;
        self
    }

    /// Serves each running partition's commands from other nodes through
    /// `coordination`.
    #[must_use]
    pub fn serving_commands(
        mut self,
        coordination: Arc<dyn hookrelay_store::Coordination>,
    ) -> Self {
        self.commands = Some(coordination);
        self
    }

    /// The handles of the schedulers running here, for a [`crate::Router`].
    pub fn handles(&self) -> LocalHandles {
        self.local.clone()
    }

    /// The partitions driven here, as they change.
    pub fn running(&self) -> watch::Receiver<BTreeSet<Partition>> {
        self.running.subscribe()
    }

    /// How far this node's schedulers are behind the log, for `/metrics`.
    pub fn fanout_lag(&self) -> FanoutLag {
        self.lag.clone()
    }

    fn set_handle(&self, p: Partition, h: Option<SchedulerHandle>) {
        let mut local = self.local.write().unwrap_or_else(|e| e.into_inner());
        match h {
            Some(h) => local.insert(p, h),
            None => local.remove(&p),
        };
    }

    /// Drives the partitions in `owned` until `stop`: then forwards the
    /// reports still waiting, stops every scheduler and waits for them.
    /// Fails when a scheduler fails (its storage keeps failing).
    pub async fn run(
        self,
        mut owned: watch::Receiver<BTreeSet<Partition>>,
        tasks: mpsc::Sender<DeliveryTask>,
        mut reports: mpsc::Receiver<AttemptReport>,
        progress: watch::Sender<Progress>,
        stop: CancellationToken,
    ) -> Result<(), StoreError> {
        // One partition in all: its scheduler reports progress directly.
        let single = self.log.partitions() == 1;
        let mut live: HashMap<Partition, Live> = HashMap::new();
        let mut ends: JoinSet<(Partition, Result<(), StoreError>)> = JoinSet::new();
        let mut batch = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut want = owned.borrow_and_update().clone();
        loop {
            // Start what is owned and not running; stop what is no longer owned.
            let new: Vec<Partition> = want
                .iter()
                .filter(|p| !live.contains_key(p))
                .copied()
                .collect();
            for p in new {
                let l = self.start(p, &tasks, single.then(|| progress.clone()), &mut ends);
                live.insert(p, l);
            }
            for (p, l) in live.iter().filter(|(p, _)| !want.contains(p)) {
                if !l.stop.is_cancelled() {
                    info!(
                        partition = p,
                        "partition moves away; stopping its scheduler"
                    );
                    l.stop.cancel();
                    if let Some(s) = &l.serving {
                        s.cancel();
                    }
                }
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(end) = ends.join_next() => {
                    let (p, result) = end.map_err(|e| StoreError::Task(e.to_string()))?;
                    let stopped = live.remove(&p).is_some_and(|l| l.stop.is_cancelled());
                    self.store.release(p);
                    self.set_handle(p, None);
                    self.lag.set(p, None);
                    self.running.send_modify(|r| {
                        r.remove(&p);
                        metrics::gauge!(metric::PARTITIONS_OWNED).set(r.len() as f64);
                    });
                    result?;
                    if !stopped {
                        return Err(StoreError::Task(format!(
                            "the scheduler of partition {p} stopped by itself"
                        )));
                    }
                }
                changed = owned.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    want = owned.borrow_and_update().clone();
                }
                n = reports.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    route(&live, batch.drain(..)).await;
                }
                _ = tick.tick(), if !single => sum_progress(&live, &progress),
            }
        }
        // Shutdown: the reports already waiting, then every scheduler.
        while let Ok(r) = reports.try_recv() {
            route(&live, std::iter::once(r)).await;
        }
        for l in live.values() {
            l.stop.cancel();
            if let Some(s) = &l.serving {
                s.cancel();
            }
        }
        let mut failed = None;
        while let Some(end) = ends.join_next().await {
            match end {
                Ok((p, Err(e))) => {
                    warn!(partition = p, error = %e, "scheduler ended with an error");
                    self.store.release(p);
                    failed = Some(e);
                }
                Ok((p, Ok(()))) => self.store.release(p),
                Err(_) => {}
            }
        }
        self.serving.close();
        self.serving.wait().await;
        self.running.send_replace(BTreeSet::new());
        failed.map_or(Ok(()), Err)
    }

    fn start(
        &self,
        p: Partition,
        tasks: &mpsc::Sender<DeliveryTask>,
        progress: Option<watch::Sender<Progress>>,
        ends: &mut JoinSet<(Partition, Result<(), StoreError>)>,
    ) -> Live {
        let scheduler = Scheduler::new(
            self.log.clone(),
            self.config.clone(),
            self.store.clone(),
            self.catalog.clone(),
            self.cfg.clone(),
            &self.delivery,
        )
        .for_partition(p)
        .with_shares(self.shares.clone())
        .with_clock(self.clock.clone());
        let handle = scheduler.handle();
        let (reports_tx, reports_rx) = mpsc::channel(self.cfg.report_channel.max(1));
        let progress = progress.unwrap_or_else(|| watch::Sender::new(Progress::default()));
        let progress_rx = progress.subscribe();
        let stop = CancellationToken::new();
        let channels = SchedulerChannels {
            tasks: tasks.clone(),
            reports: reports_rx,
            progress,
        };
        let run_stop = stop.clone();
        ends.spawn(async move { (p, scheduler.run(channels, run_stop).await) });
        let serving = self.commands.as_ref().map(|c| {
            let token = CancellationToken::new();
            let handler = crate::route::command_handler(handle.clone());
            self.serving.spawn(c.serve(p, handler, token.clone()));
            token
        });
        self.set_handle(p, Some(handle));
        self.lag
            .set(p, Some((self.log.durable_head(p), progress_rx.clone())));
        self.running.send_modify(|r| {
            r.insert(p);
            metrics::gauge!(metric::PARTITIONS_OWNED).set(r.len() as f64);
        });
        info!(partition = p, "scheduler started");
        Live {
            stop,
            reports: reports_tx,
            progress: progress_rx,
            serving,
        }
    }
}

/// Hands each report to the scheduler of its delivery's partition, waiting
/// for room on a full channel (the workers wait meanwhile, as they would
/// for one scheduler). A report for a partition that moved away is dropped:
/// its new owner re-sends what was in flight (a duplicate at worst, never a
/// loss).
async fn route(live: &HashMap<Partition, Live>, reports: impl Iterator<Item = AttemptReport>) {
    for r in reports {
        if let Some(l) = live.get(&seq_partition(r.key.seq)) {
            let _ = l.reports.send(r).await;
        }
    }
}

fn sum_progress(live: &HashMap<Partition, Live>, progress: &watch::Sender<Progress>) {
    let mut sum = Progress::default();
    for l in live.values() {
        let p = *l.progress.borrow();
        sum.pending += p.pending;
        sum.cursor = sum.cursor.max(p.cursor);
        sum.read = sum.read.max(p.read);
    }
    progress.send_if_modified(|old| {
        let changed = *old != sum;
        *old = sum;
        changed
    });
}
