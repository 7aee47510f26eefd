//! The partition's pending deliveries: how many there are, by what holds
//! them, and each tenant's share of them. Every change goes through one of
//! the transitions below, named for what happened to a delivery, so the
//! counts (ingest's back-pressure, the `deliveries_pending` gauge) and the
//! shares (the tenants' caps) cannot drift apart.

use super::shares::ShareLedger;
use hookrelay_core::{PendingShares, WebhookId};
use hookrelay_store::ConfigStore;
use std::sync::Arc;

/// What holds a pending delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Held {
    /// The dispatch window alone: a first attempt without a record.
    Window,
    /// Its record and due entries.
    Record,
}

pub(super) struct Pending {
    /// Deliveries with a record (the due index's entries).
    records: i64,
    /// First attempts held only by the window.
    unrecorded: i64,
    shares: ShareLedger,
}

impl Pending {
    /// Nothing pending, counting into the node's `shares`.
    pub(super) fn new(shares: Arc<PendingShares>) -> Self {
        Self {
            records: 0,
            unrecorded: 0,
            shares: ShareLedger::new(shares),
        }
    }

    /// The node's shares.
    pub(super) fn shares(&self) -> &Arc<PendingShares> {
        self.shares.shares()
    }

    /// Every pending delivery of the partition.
    pub(super) fn total(&self) -> u64 {
        (self.records + self.unrecorded).max(0) as u64
    }

    /// Deliveries with a record.
    pub(super) fn records(&self) -> i64 {
        self.records
    }

    /// After a restart: the due index holds `records` entries, per
    /// webhook `per_webhook`; nothing else is pending.
    pub(super) fn recovered(
        &mut self,
        config: &dyn ConfigStore,
        records: usize,
        per_webhook: impl IntoIterator<Item = (WebhookId, u64)>,
    ) {
        self.records = i64::try_from(records).unwrap_or(i64::MAX);
        self.unrecorded = 0;
        for (webhook, n) in per_webhook {
            self.shares
                .count(config, &webhook, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Fan-out made a first attempt of `webhook`'s.
    pub(super) fn created(&mut self, config: &dyn ConfigStore, webhook: &WebhookId) {
        self.unrecorded += 1;
        self.shares.count(config, webhook, 1);
    }

    /// A delivery of `webhook` is scheduled with a record of its own: a
    /// retry after a failure, a replayed or manually retried one.
    pub(super) fn scheduled(&mut self, config: &dyn ConfigStore, webhook: &WebhookId) {
        self.records += 1;
        self.shares.count(config, webhook, 1);
    }

    /// A first attempt held by the window got a record (spilled, deferred):
    /// still pending, held another way.
    pub(super) fn recorded(&mut self) {
        self.unrecorded -= 1;
        self.records += 1;
    }

    /// A delivery of `webhook` held as `held` is no longer pending here
    /// (attempted, settled, cancelled, or a stale due entry dropped).
    pub(super) fn settled(&mut self, config: &dyn ConfigStore, webhook: &WebhookId, held: Held) {
        match held {
            Held::Window => self.unrecorded -= 1,
            Held::Record => self.records -= 1,
        }
        self.shares.count(config, webhook, -1);
    }

    /// Adds the shares' changes since the last call to the node's.
    pub(super) fn publish(&mut self) {
        self.shares.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_keep_counts_and_shares_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = hookrelay_sled::Store::open(dir.path()).expect("open");
        let config = &*store.config;
        let shares = Arc::new(PendingShares::new(Default::default()));
        let mut p = Pending::new(shares.clone());
        let (a, b) = (WebhookId::from("wh_a"), WebhookId::from("wh_b"));
        p.recovered(config, 3, [(a.clone(), 2), (b.clone(), 1)]);
        p.created(config, &a);
        p.created(config, &a);
        assert_eq!((p.total(), p.records()), (5, 3));
        // A first attempt fails and is retried: held by a record now.
        p.settled(config, &a, Held::Window);
        p.scheduled(config, &a);
        // The other spills into a record.
        p.recorded();
        assert_eq!((p.total(), p.records()), (5, 5));
        p.settled(config, &b, Held::Record);
        p.publish();
        assert_eq!(p.total(), 4);
        assert_eq!(shares.webhook(&a), 4);
        assert_eq!(shares.webhook(&b), 0);
        // A scheduler that stops takes its part out of the node's shares.
        drop(p);
        assert_eq!(shares.webhook(&a), 0);
    }
}
