//! Each tenant's share of the pending deliveries (docs/configuration.md,
//! `ingest.max_pending_per_organization` and `max_pending_per_webhook`).
//!
//! The schedulers count the deliveries waiting for an attempt per webhook
//! and per organization, and add what changed here on every turn of their
//! loop; ingest, replay and manual retry read it. An organization over its
//! share has its own ingest refused (and its replays and retries), while
//! every other goes on; the engine-wide `max_pending_deliveries` stays as
//! the last guard. On a cluster each node counts the partitions it drives.

use crate::{OrgId, WebhookId};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        RwLock,
    },
};

/// The caps of one tenant's share (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShareLimits {
    /// Most pending deliveries of one organization's webhooks.
    pub per_organization: u64,
    /// Most pending deliveries of one webhook.
    pub per_webhook: u64,
}

/// What is over its share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverShare {
    /// The organization holds `current` pending deliveries, `limit` allowed.
    Organization {
        /// Pending now.
        current: u64,
        /// Its share.
        limit: u64,
    },
    /// The webhook holds `current` pending deliveries, `limit` allowed.
    Webhook {
        /// Pending now.
        current: u64,
        /// Its share.
        limit: u64,
    },
}

impl std::fmt::Display for OverShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Organization { current, limit } => write!(
                f,
                "the organization has {current} deliveries pending, over its share of {limit}; retry when they have drained"
            ),
            Self::Webhook { current, limit } => write!(
                f,
                "the webhook has {current} deliveries pending, over its share of {limit}; retry when they have drained"
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    orgs: HashMap<OrgId, u64>,
    webhooks: HashMap<WebhookId, u64>,
}

/// The pending deliveries of each organization and webhook on this node.
#[derive(Default)]
pub struct PendingShares {
    limits: ShareLimits,
    counts: RwLock<Counts>,
    /// Organizations over their share now: while 0, ingest checks nothing.
    orgs_over: AtomicUsize,
}

impl PendingShares {
    /// Shares capped at `limits`.
    pub fn new(limits: ShareLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The caps.
    pub fn limits(&self) -> ShareLimits {
        self.limits
    }

    /// Adds `changes` (webhook, its organization if known, delta).
    pub fn add<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a WebhookId, Option<&'a OrgId>, i64)>,
    ) {
        let mut c = self.counts.write().unwrap_or_else(|p| p.into_inner());
        let cap = self.limits.per_organization;
        for (webhook, org, delta) in changes {
            if delta == 0 {
                continue;
            }
            bump(&mut c.webhooks, webhook, delta);
            if let Some(org) = org {
                let before = c.orgs.get(org).copied().unwrap_or(0);
                let after = bump(&mut c.orgs, org, delta);
                if cap > 0 {
                    match (before > cap, after > cap) {
                        (false, true) => {
                            self.orgs_over.fetch_add(1, Ordering::Relaxed);
                        }
                        (true, false) => {
                            self.orgs_over.fetch_sub(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Whether any organization is over its share (one atomic load: the
    /// ingest path asks this first).
    pub fn any_over(&self) -> bool {
        self.orgs_over.load(Ordering::Relaxed) > 0
    }

    /// Pending deliveries of `org`.
    pub fn organization(&self, org: &OrgId) -> u64 {
        let c = self.counts.read().unwrap_or_else(|p| p.into_inner());
        c.orgs.get(org).copied().unwrap_or(0)
    }

    /// Pending deliveries of `webhook`.
    pub fn webhook(&self, webhook: &WebhookId) -> u64 {
        let c = self.counts.read().unwrap_or_else(|p| p.into_inner());
        c.webhooks.get(webhook).copied().unwrap_or(0)
    }

    /// Whether `org` is over its share.
    pub fn check_organization(&self, org: &OrgId) -> Result<(), OverShare> {
        let limit = self.limits.per_organization;
        let current = self.organization(org);
        if limit > 0 && current > limit {
            return Err(OverShare::Organization { current, limit });
        }
        Ok(())
    }

    /// Whether `webhook` or its organization `org` is at or over its share:
    /// a replay or manual retry adds to it only below.
    pub fn check_webhook(&self, webhook: &WebhookId, org: &OrgId) -> Result<(), OverShare> {
        let limits = self.limits;
        let c = self.counts.read().unwrap_or_else(|p| p.into_inner());
        let current = c.webhooks.get(webhook).copied().unwrap_or(0);
        if limits.per_webhook > 0 && current >= limits.per_webhook {
            return Err(OverShare::Webhook {
                current,
                limit: limits.per_webhook,
            });
        }
        let current = c.orgs.get(org).copied().unwrap_or(0);
        if limits.per_organization > 0 && current >= limits.per_organization {
            return Err(OverShare::Organization {
                current,
                limit: limits.per_organization,
            });
        }
        Ok(())
    }
}

impl PendingShares {
    /// How many more deliveries `webhook` of `org` may have pending now
    /// (`u64::MAX` without caps).
    pub fn room(&self, webhook: &WebhookId, org: &OrgId) -> u64 {
        let limits = self.limits;
        let c = self.counts.read().unwrap_or_else(|p| p.into_inner());
        let left = |limit: u64, current: Option<&u64>| {
            if limit == 0 {
                u64::MAX
            } else {
                limit.saturating_sub(current.copied().unwrap_or(0))
            }
        };
        left(limits.per_webhook, c.webhooks.get(webhook))
            .min(left(limits.per_organization, c.orgs.get(org)))
    }
}

/// Adds `delta` to `key`'s count (never below 0), forgetting a zero.
fn bump<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, u64>, key: &K, delta: i64) -> u64 {
    let now = map
        .get(key)
        .copied()
        .unwrap_or(0)
        .saturating_add_signed(delta);
    if now == 0 {
        map.remove(key);
    } else {
        map.insert(key.clone(), now);
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (WebhookId, WebhookId, OrgId, OrgId) {
        (
            WebhookId::from("wh_a"),
            WebhookId::from("wh_b"),
            OrgId::from("org_a"),
            OrgId::from("org_b"),
        )
    }

    #[test]
    fn one_organization_over_its_share_leaves_the_others_alone() {
        let (wa, wb, a, b) = ids();
        let s = PendingShares::new(ShareLimits {
            per_organization: 10,
            per_webhook: 0,
        });
        s.add([(&wb, Some(&b), 11), (&wa, Some(&a), 3)]);
        assert!(s.any_over());
        assert_eq!(
            s.check_organization(&b),
            Err(OverShare::Organization {
                current: 11,
                limit: 10
            })
        );
        assert_eq!(s.check_organization(&a), Ok(()));
        s.add([(&wb, Some(&b), -2)]);
        assert!(!s.any_over(), "back under its share");
        assert_eq!(s.check_organization(&b), Ok(()));
        assert_eq!(s.webhook(&wb), 9);
    }

    #[test]
    fn a_webhook_at_its_share_takes_no_more_replays() {
        let (wa, _, a, _) = ids();
        let s = PendingShares::new(ShareLimits {
            per_organization: 0,
            per_webhook: 5,
        });
        s.add([(&wa, Some(&a), 4)]);
        assert_eq!(s.check_webhook(&wa, &a), Ok(()));
        s.add([(&wa, Some(&a), 1)]);
        assert_eq!(
            s.check_webhook(&wa, &a),
            Err(OverShare::Webhook {
                current: 5,
                limit: 5
            })
        );
    }

    #[test]
    fn counts_never_go_below_zero_and_zeros_are_forgotten() {
        let (wa, _, a, _) = ids();
        let s = PendingShares::new(ShareLimits::default());
        s.add([(&wa, Some(&a), -3)]);
        assert_eq!(s.webhook(&wa), 0);
        s.add([(&wa, None, 2)]);
        assert_eq!((s.webhook(&wa), s.organization(&a)), (2, 0));
        let c = s.counts.read().expect("lock");
        assert!(c.orgs.is_empty());
    }
}
