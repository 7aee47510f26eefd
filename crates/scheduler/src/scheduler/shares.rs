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
    /// This partition's part per webhook.
    own: HashMap<WebhookId, Part>,
    /// Webhooks whose part changed since the last publish.
    dirty: Vec<WebhookId>,
}

/// One webhook's part.
struct Part {
    /// Its organization (`None` for a webhook deleted before it was first
    /// counted).
    org: Option<OrgId>,
    /// Pending deliveries of it in this partition.
    count: i64,
    /// Of which not yet added to the node's shares.
    unpublished: i64,
}

impl ShareLedger {
    pub(crate) fn new(shares: Arc<PendingShares>) -> Self {
        Self {
            shares,
            own: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    /// The node's shares.
    pub(crate) fn shares(&self) -> &Arc<PendingShares> {
        &self.shares
    }

    /// `delta` pending deliveries of `webhook`: one map lookup (the hot
    /// path's cost), a clone of the id only when it first changes in a turn.
    pub(crate) fn count(&mut self, config: &dyn ConfigStore, webhook: &WebhookId, delta: i64) {
        if delta == 0 {
            return;
        }
        let part = match self.own.get_mut(webhook) {
            Some(part) => part,
            None => self.own.entry(webhook.clone()).or_insert_with(|| Part {
                org: config.webhook(webhook).map(|w| w.org_id.clone()),
                count: 0,
                unpublished: 0,
            }),
        };
        if part.unpublished == 0 {
            self.dirty.push(webhook.clone());
        }
        part.count += delta;
        part.unpublished += delta;
    }

    /// Adds what changed since the last call to the node's shares.
    pub(crate) fn publish(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let own = &mut self.own;
        let mut changes = Vec::with_capacity(self.dirty.len());
        for w in &self.dirty {
            if let Some(part) = own.get_mut(w) {
                changes.push((w, part.org.clone(), part.unpublished));
                part.unpublished = 0;
            }
        }
        self.shares
            .add(changes.iter().map(|(w, o, d)| (*w, o.as_ref(), *d)));
        for w in self.dirty.drain(..) {
            if own
                .get(&w)
                .is_some_and(|p| p.count == 0 && p.unpublished == 0)
            {
                own.remove(&w);
            }
        }
    }
}

impl Drop for ShareLedger {
    fn drop(&mut self) {
        // What this partition added leaves with it: its next owner counts
        // it again from the store.
        self.shares.add(self.own.iter().map(|(w, p)| {
            let added = p.count - p.unpublished;
            (w, p.org.as_ref(), -added)
        }));
    }
}
