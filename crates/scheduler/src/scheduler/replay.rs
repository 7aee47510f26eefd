//! Replay, off the scheduler loop (docs/api.md (tenancy and trust): a replay over any window
//! answers within 2 s and never stalls other deliveries).
//!
//! [`plan`] finds the first chunk appended in the window by bisection over
//! the log's chunk index, then walks the index (never the chunks) to count
//! the device's matching events and to list the chunks that hold any. The
//! API answers with that count at once. A tracked [`Feeder`] task then reads
//! only those chunks, in bounded steps, and hands ready-made pending
//! records to the scheduler loop, which writes them like any others.

use super::command::Command;
use hookrelay_core::{
    seq_partition, Catalog, DeliveryKey, DeliveryRecord, Partition, Seq, Webhook, WEBHOOK_TEST,
};
use hookrelay_store::ControlError;
use hookrelay_store::EventLog;
use std::{collections::HashMap, sync::Arc};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Index entries read per step of planning.
const INDEX_STEP: usize = 4096;
/// Records handed to the scheduler per command.
const FEED_STEP: usize = 1024;

/// The chunks a replay reads and how many deliveries it makes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// `(first sequence, length)` of each chunk holding matching events.
    pub(crate) chunks: Vec<(Seq, u32)>,
    /// Matching events, i.e. deliveries the replay creates.
    pub(crate) count: u64,
}

/// The devices whose events a replay re-delivers, each from its own start
/// (unix ms of append time): one for an app's webhook, every app of the
/// organization for an organization-wide one.
pub(crate) type Sources = HashMap<String, i64>;

/// Plans a replay of the sources' events of the types `filter` selects,
/// appended before `until_ms` and at or after their source's start, in one
/// partition of the log (the one the sources' devices are in).
pub(crate) async fn plan(
    log: &dyn EventLog,
    partition: Partition,
    catalog: &Catalog,
    sources: &Sources,
    filter: &[String],
    until_ms: i64,
) -> Result<Plan, ControlError> {
    let mut plan = Plan::default();
    let Some(since_ms) = sources.values().min().copied() else {
        return Ok(plan);
    };
    let Some(mut from) = log.first_seq_at(partition, since_ms).await? else {
        return Ok(plan);
    };
    loop {
        let step = log.chunk_index(partition, from, INDEX_STEP).await?;
        // A long window is walked in steps that let other tasks run.
        tokio::task::yield_now().await;
        let Some((last, ix)) = step.last() else {
            break;
        };
        from = last + u64::from(ix.len.max(1));
        for (first, ix) in &step {
            if ix.appended_at_ms >= until_ms {
                return Ok(plan);
            }
            let n: u64 = sources
                .iter()
                .filter(|(_, since)| ix.appended_at_ms >= **since)
                .flat_map(|(device, _)| ix.types_of(device))
                .filter(|(t, _)| t != WEBHOOK_TEST && catalog.matches_any(filter, t))
                .map(|(_, n)| u64::from(*n))
                .sum();
            if n > 0 {
                plan.count += n;
                plan.chunks.push((*first, ix.len));
            }
        }
    }
    Ok(plan)
}

/// Reads the planned chunks and feeds their deliveries to the scheduler.
pub(crate) struct Feeder {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) webhook: Arc<Webhook>,
    pub(crate) sources: Sources,
    pub(crate) generation: u32,
    /// The node's pending shares: each step waits while the webhook or its
    /// organization is at its share, so a replay queues within it.
    pub(crate) shares: Arc<hookrelay_core::PendingShares>,
    /// Where the new records' times come from.
    pub(crate) clock: hookrelay_core::Clock,
}

/// How often a replay waiting for its tenant's share looks again.
const SHARE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl Feeder {
    /// Waits while the webhook or its organization is at its share, then
    /// says how many deliveries the next step may hand in (at most
    /// [`FEED_STEP`], at most the room left); `None` when the scheduler
    /// went away meanwhile.
    async fn wait_for_share(&self) -> Option<usize> {
        loop {
            let room = self.shares.room(&self.webhook.id, &self.webhook.org_id);
            if room > 0 {
                return Some(usize::try_from(room).unwrap_or(usize::MAX).min(FEED_STEP));
            }
            if self.tx.is_closed() {
                return None;
            }
            tokio::time::sleep(SHARE_WAIT).await;
        }
    }

    pub(crate) async fn run(self, plan: Plan) {
        let mut fed = 0u64;
        // What the first step may hand in.
        let mut step_size = self
            .shares
            .room(&self.webhook.id, &self.webhook.org_id)
            .clamp(1, FEED_STEP as u64) as usize;
        let mut batch = Vec::with_capacity(FEED_STEP);
        for (first, len) in plan.chunks {
            let events = match self
                .log
                .read(seq_partition(first), first, len as usize)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    warn!(webhook_id = %self.webhook.id, error = %e, fed, "replay stopped: reading the log failed");
                    return;
                }
            };
            for e in events {
                let ev = &e.event;
                let from_source = self
                    .sources
                    .get(&ev.device_id)
                    .is_some_and(|since| e.appended_at_ms >= *since);
                if !from_source
                    || ev.event_type == WEBHOOK_TEST
                    || !self
                        .catalog
                        .matches_any(&self.webhook.events, &ev.event_type)
                {
                    continue;
                }
                let key = DeliveryKey {
                    seq: e.seq,
                    generation: self.generation,
                    webhook_id: self.webhook.id.clone(),
                };
                let rec = DeliveryRecord::pending(&ev.event_type, &ev.id, self.clock.unix_ms());
                batch.push((key, rec));
                if batch.len() >= step_size {
                    fed += batch.len() as u64;
                    let step = std::mem::replace(&mut batch, Vec::with_capacity(FEED_STEP));
                    // Bounded channel: the feeder waits while the loop is busy.
                    if self.tx.send(Command::Replayed(step)).await.is_err() {
                        warn!(webhook_id = %self.webhook.id, fed, "replay stopped: the scheduler is gone");
                        return;
                    }
                    // Near the share, let the loop count the step into the
                    // shares (on its next turn) before reading them.
                    let near = (2 * FEED_STEP) as u64;
                    if self.shares.room(&self.webhook.id, &self.webhook.org_id) <= near {
                        tokio::time::sleep(SHARE_WAIT).await;
                    }
                    match self.wait_for_share().await {
                        Some(n) => step_size = n,
                        None => {
                            warn!(webhook_id = %self.webhook.id, fed, "replay stopped: the scheduler is gone");
                            return;
                        }
                    }
                }
            }
        }
        fed += batch.len() as u64;
        if !batch.is_empty() && self.tx.send(Command::Replayed(batch)).await.is_err() {
            warn!(webhook_id = %self.webhook.id, fed, "replay stopped: the scheduler is gone");
            return;
        }
        info!(webhook_id = %self.webhook.id, deliveries = fed, "replay handed to the scheduler");
    }
}
