//! What the leases decide, without the bucket: the leases this node holds,
//! when each must be given up unless renewed, its fair share, which
//! partitions to give back and which to try to take. Times are passed in
//! (`tokio::time::Instant`), so the rules are tested on paused time; the
//! I/O around them is [`crate::leases`].

use hookrelay_core::Partition;
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};
use tokio::time::Instant;

/// A lease this node holds.
pub(crate) struct Held {
    pub(crate) revision: u64,
    /// When the last renewal that succeeded (or the take) was sent.
    pub(crate) renewed: Instant,
    /// Given up: released once the partition stopped.
    pub(crate) releasing: bool,
}

/// This node's leases.
pub(crate) struct Book {
    pub(crate) held: BTreeMap<Partition, Held>,
    /// `jetstream.takeover`.
    takeover: Duration,
}

/// A node's share of `partitions` among the live `nodes` (sorted ids,
/// `me` among them): the first `partitions mod n` get one more, so the
/// shares add up to `partitions`.
pub(crate) fn share_of(partitions: u32, nodes: &[&str], me: &str) -> usize {
    let n = nodes.len().max(1) as u32;
    let rank = nodes.iter().position(|x| *x == me).unwrap_or(0) as u32;
    (partitions / n + u32::from(rank < partitions % n)) as usize
}

impl Book {
    pub(crate) fn new(takeover: Duration) -> Self {
        Self {
            held: BTreeMap::new(),
            takeover,
        }
    }

    /// How long after a renewal was sent this node stops driving its
    /// partition. The lease lapses ¾ of `takeover` after the servers wrote
    /// it, which is after it was sent: the last ¼ is the margin for the
    /// engine to stop, and for timers that run late.
    pub(crate) fn fence_after(&self) -> Duration {
        self.takeover / 2
    }

    /// A lease taken (or taken back) by a write sent at `sent`.
    pub(crate) fn take(&mut self, p: Partition, revision: u64, sent: Instant) {
        self.held.insert(
            p,
            Held {
                revision,
                renewed: sent,
                releasing: false,
            },
        );
    }

    /// When the first held lease must be given up unless renewed first;
    /// with nothing held, a tick may take until the next one is due.
    pub(crate) fn fence_deadline(&self, now: Instant) -> Instant {
        self.held
            .values()
            .map(|h| h.renewed + self.fence_after())
            .min()
            .unwrap_or(now + self.takeover / 4)
    }

    /// Drops, and returns, the leases not renewed within
    /// [`Book::fence_after`] of `now`.
    pub(crate) fn fence(&mut self, now: Instant) -> Vec<Partition> {
        let limit = self.fence_after();
        let lost: Vec<Partition> = self
            .held
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.renewed) >= limit)
            .map(|(p, _)| *p)
            .collect();
        for p in &lost {
            self.held.remove(p);
        }
        lost
    }

    /// The partitions this node may drive: those held and not given up.
    pub(crate) fn owned(&self) -> BTreeSet<Partition> {
        self.held
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The leases to renew, with their revisions: all but those given up
    /// whose partition already stopped (those are released instead).
    pub(crate) fn to_renew(&self, running: &BTreeSet<Partition>) -> Vec<(Partition, u64)> {
        self.held
            .iter()
            .filter(|(p, h)| !h.releasing || running.contains(p))
            .map(|(p, h)| (*p, h.revision))
            .collect()
    }

    /// A renewal sent at `sent` was answered with `revision`.
    pub(crate) fn renewed(&mut self, p: Partition, revision: u64, sent: Instant) {
        if let Some(h) = self.held.get_mut(&p) {
            h.revision = revision;
            h.renewed = sent;
        }
    }

    /// Given-up leases whose partition stopped: to delete now.
    pub(crate) fn to_release(&self, running: &BTreeSet<Partition>) -> Vec<Partition> {
        self.held
            .iter()
            .filter(|(p, h)| h.releasing && !running.contains(p))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Leases kept (held and not given up).
    pub(crate) fn kept(&self) -> usize {
        self.held.values().filter(|h| !h.releasing).count()
    }

    /// Gives up the highest-numbered kept leases above `share` (they are
    /// released once their partitions stop).
    pub(crate) fn give_up_above(&mut self, share: usize) {
        let mut kept = self.kept();
        for h in self.held.values_mut().rev().filter(|h| !h.releasing) {
            if kept <= share {
                break;
            }
            h.releasing = true;
            kept -= 1;
        }
    }

    /// The partitions to try to take, in order, from `start` (where this
    /// node's id hashes to, so nodes spread their picks): those nobody
    /// holds. The caller stops once it holds its share.
    pub(crate) fn candidates(
        &self,
        partitions: u32,
        start: Partition,
        taken: &BTreeSet<Partition>,
    ) -> Vec<Partition> {
        (0..partitions)
            .map(|i| (start + i) % partitions)
            .filter(|p| !taken.contains(p) && !self.held.contains_key(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAKEOVER: Duration = Duration::from_secs(8);

    #[test]
    fn shares_add_up_and_the_first_ids_get_the_remainder() {
        let nodes = ["a", "b", "c"];
        let shares: Vec<usize> = nodes.iter().map(|n| share_of(8, &nodes, n)).collect();
        assert_eq!(shares, [3, 3, 2]);
        assert_eq!(share_of(8, &["a"], "a"), 8);
        assert_eq!(share_of(2, &nodes, "c"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_not_renewed_within_half_the_takeover_is_fenced() {
        let mut b = Book::new(TAKEOVER);
        let t0 = Instant::now();
        b.take(1, 10, t0);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.take(2, 20, Instant::now());
        assert_eq!(b.fence_deadline(Instant::now()), t0 + TAKEOVER / 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Partition 2 is renewed; partition 1 is not.
        b.renewed(2, 21, Instant::now());
        assert!(b.fence(Instant::now()).is_empty(), "3 s < 4 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.fence(Instant::now()), [1], "4 s after its last renewal");
        assert_eq!(b.owned(), BTreeSet::from([2]));
        assert_eq!(b.held[&2].revision, 21);
        assert_eq!(
            b.fence_deadline(Instant::now()),
            b.held[&2].renewed + TAKEOVER / 2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_held_lets_a_tick_run_until_the_next() {
        let b = Book::new(TAKEOVER);
        let now = Instant::now();
        assert_eq!(b.fence_deadline(now), now + TAKEOVER / 4);
    }

    #[tokio::test(start_paused = true)]
    async fn extras_are_given_up_highest_first_and_released_once_stopped() {
        let mut b = Book::new(TAKEOVER);
        let now = Instant::now();
        for p in [0, 3, 5, 6] {
            b.take(p, 1, now);
        }
        b.give_up_above(2);
        assert_eq!(b.kept(), 2);
        assert_eq!(b.owned(), BTreeSet::from([0, 3]));
        // 5 still runs: renewed, not released; 6 stopped: released.
        let running = BTreeSet::from([0, 3, 5]);
        let renew: Vec<Partition> = b.to_renew(&running).into_iter().map(|(p, _)| p).collect();
        assert_eq!(renew, [0, 3, 5]);
        assert_eq!(b.to_release(&running), [6]);
        b.give_up_above(5);
        assert_eq!(b.kept(), 2, "a share above what is kept gives nothing up");
    }

    #[tokio::test(start_paused = true)]
    async fn candidates_start_at_the_nodes_place_and_skip_what_is_held_or_taken() {
        let mut b = Book::new(TAKEOVER);
        b.take(6, 1, Instant::now());
        let taken = BTreeSet::from([0, 1]);
        assert_eq!(b.candidates(8, 5, &taken), [5, 7, 2, 3, 4]);
    }
}
