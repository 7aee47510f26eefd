//! This partition's part of the tenants' pending shares
//! ([`hookrelay_core::PendingShares`]): the deliveries waiting for an
//! attempt, per webhook, with the webhook's organization looked up once.
//! The loop counts each change where the pending total changes and adds
//! what changed to the node's shares once per turn; a scheduler that stops
//! (shutdown, a partition taken away) takes its part back out.

use hookrelay_core::{OrgId, PendingShares, WebhookId};
use hookrelay_store::ConfigStore;
use std::{collections::HashMap, sync::Arc};

pub(crate) struct ShareLedger {
    shares: Arc<PendingShares>,
    /// This partition's count per webhook, and the webhook's organization
    /// (`None` for a webhook deleted before it was first counted).
    own: HashMap<WebhookId, (Option<OrgId>, i64)>,
    /// Changes not yet added to `shares`.
    unpublished: HashMap<WebhookId, i64>,
}

impl ShareLedger {
    pub(crate) fn new(shares: Arc<PendingShares>) -> Self {
        Self {
            shares,
            own: HashMap::new(),
            unpublished: HashMap::new(),
        }
    }

    /// The node's shares.
    pub(crate) fn shares(&self) -> &Arc<PendingShares> {
        &self.shares
    }

    /// `delta` pending deliveries of `webhook`.
    pub(crate) fn count(&mut self, config: &dyn ConfigStore, webhook: &WebhookId, delta: i64) {
        if delta == 0 {
            return;
        }
        match self.own.get_mut(webhook) {
            Some(entry) => entry.1 += delta,
            None => {
                let org = config.webhook(webhook).map(|w| w.org_id.clone());
                self.own.insert(webhook.clone(), (org, delta));
            }
        }
        *self.unpublished.entry(webhook.clone()).or_insert(0) += delta;
    }

    /// Adds what changed since the last call to the node's shares.
    pub(crate) fn publish(&mut self) {
        if self.unpublished.is_empty() {
            return;
        }
        let own = &self.own;
        self.shares.add(
            self.unpublished
                .iter()
                .map(|(w, d)| (w, own.get(w).and_then(|(o, _)| o.as_ref()), *d)),
        );
        self.unpublished.clear();
        self.own.retain(|_, (_, n)| *n != 0);
    }
}

impl Drop for ShareLedger {
    fn drop(&mut self) {
        // What this partition added leaves with it: its next owner counts
        // it again from the store.
        let unpublished = std::mem::take(&mut self.unpublished);
        self.shares.add(self.own.iter().map(|(w, (o, n))| {
            let added = n - unpublished.get(w).copied().unwrap_or(0);
            (w, o.as_ref(), -added)
        }));
    }
}
