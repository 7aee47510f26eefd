//! Work that comes back from disk: recovery at start, the due-index scan
//! (retries and expired leases), and spilling the window.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What the due scan did with one entry.
enum Scanned {
    /// Its delivery was queued for an attempt.
    Taken,
    /// Its lane is full: it stays due.
    LaneFull,
    /// It holds a delivery already queued or in flight: it stays.
    Held,
    /// Dropped as stale, or its attempt settled as lost.
    Settled,
}

/// Every this many scans of the due index, one reads the full depth
/// whatever the shallow read found (see [`Scheduler::scan_due`]).
const DEEP_SCAN_EVERY: u32 = 8;

impl Scheduler {
    /// After a restart nothing is in flight: every lease is stale, so those
    /// deliveries are due now.
    pub(super) async fn recover(&mut self) -> Result<(), StoreError> {
        let cursor = self.store.cursor(self.partition).await?;
        self.cursor = cursor;
        // A partition's sequences carry its number: reading starts there.
        self.next_read = (cursor + 1).max(hookrelay_core::partition_seq(self.partition, 1));
        // Asked of the log, not read off the head's watch: on a shared log
        // the watch may not have caught up with what other runs appended.
        self.recovery_horizon = self.log.head_bound(self.partition).await?;
        let now = self.clock.unix_ms();
        // The due index's size, and the stale leases that are not due yet
        // (a lease is due at most a timeout and the margin after it was
        // written, so before now plus that; the ones already due are the
        // due scan's like any due entry). Were the clock set back since,
        // a lease past the window is taken when due: later, never lost.
        let longest_lease = lease_ms(None, self.lease_margin_ms);
        let (mut pending, leases) = self
            .store
            .recovery_scan(self.partition, now..=now.saturating_add(longest_lease))
            .await?;
        for lease in &leases {
            self.ledger
                .writes
                .push(DeliveryWrite::Undue(lease.at_ms, lease.key.clone()));
            if let Some(mut rec) = self.store.record(&lease.key).await? {
                rec.next_attempt_ms = now;
                rec.updated_at_ms = now;
                self.ledger
                    .writes
                    .push(DeliveryWrite::Record(lease.key.clone(), rec));
                self.ledger.writes.push(DeliveryWrite::Due(DueEntry {
                    at_ms: now,
                    key: lease.key.clone(),
                    kind: DueKind::Scheduled,
                }));
            } else {
                // A lease without its record is dropped, not re-scheduled.
                pending -= 1;
            }
        }
        self.store.apply(&self.ledger.writes).await?;
        self.ledger.writes.clear();
        // The tenants' shares start from what the index holds per webhook.
        let per_webhook = self.store.due_by_webhook(self.partition).await?;
        self.ledger
            .pending
            .recovered(&*self.config, pending, per_webhook);
        self.ledger.pending.publish();
        info!(
            partition = self.partition,
            cursor,
            head = self.recovery_horizon,
            pending = self.ledger.pending.records(),
            released_leases = leases.len(),
            "scheduler recovered"
        );
        Ok(())
    }

    /// Takes due entries into the lanes; `true` when it stopped at
    /// `scheduler.due_batch` with room left in the lanes (more may be due).
    pub(super) async fn scan_due(&mut self) -> Result<bool, StoreError> {
        if self.lanes.len() >= self.cfg.max_queued {
            return Ok(false);
        }
        let now = self.clock.unix_ms();
        // Scan past the entries of lanes that are already full (they stay
        // due, untouched) so other hosts are not starved, within a bound:
        // two batches first, and eight when those found work behind a full
        // lane or on every `DEEP_SCAN_EVERY`th scan. One host's backlog,
        // whose lane fills from the first batch, then costs about three
        // batches a scan instead of eight, and another host's entries
        // behind it wait at most a few ticks longer. Entries that hold
        // deliveries in flight (see `Scanned::Held`) are read again each
        // scan and skipped.
        self.scans = self.scans.wrapping_add(1);
        let deep = self.scans.is_multiple_of(DEEP_SCAN_EVERY);
        let batch = self.cfg.due_batch;
        // Entries that hold deliveries already queued or in flight come
        // first among those due and are skipped: the depths count past them.
        let held = self
            .ledger
            .active
            .values()
            .filter(|a| a.lease_at.is_some_and(|at| at <= now))
            .count();
        let mut taken = 0;
        let mut depth = held + batch * 2;
        let mut seen = 0;
        loop {
            // Nothing is written between the reads (writes wait in
            // `self.ledger.writes`), so the deeper read starts with what was seen.
            let due = self.store.due(self.partition, now, depth).await?;
            let read = due.len();
            // Whether this read found work behind a full lane: then more
            // may be further on.
            let mut lane_full = false;
            let mut work_behind = false;
            for e in due.into_iter().skip(seen) {
                if self.lanes.len() >= self.cfg.max_queued {
                    return Ok(false);
                }
                if taken >= batch {
                    return Ok(true);
                }
                match self.scan_entry(e, now).await? {
                    Scanned::Taken => {
                        taken += 1;
                        work_behind |= lane_full;
                    }
                    Scanned::LaneFull => lane_full = true,
                    Scanned::Held | Scanned::Settled => {}
                }
            }
            if read < depth || depth >= held + batch * 8 || !(work_behind || deep) {
                return Ok(false);
            }
            seen = read;
            depth = held + batch * 8;
        }
    }

    /// One due entry of [`Self::scan_due`]: dispatched, left for later (its
    /// lane is full), or settled.
    async fn scan_entry(&mut self, e: DueEntry, now: i64) -> Result<Scanned, StoreError> {
        let webhook = self.config.webhook(&e.key.webhook_id);
        let Some(a) = self.ledger.active.get_mut(&e.key) else {
            if let Some(w) = webhook.as_deref() {
                if self.lanes.lane_len(&self.hosts.of(&w.url)) >= self.cfg.lane_queue {
                    return Ok(Scanned::LaneFull);
                }
            }
            // A lease found here outlived the attempt it held (whose record
            // keeps the time it fell due); a scheduled entry must carry its
            // record's time.
            let rec = match self.store.record(&e.key).await? {
                Some(rec)
                    if rec.status == DeliveryStatus::Pending
                        && (rec.next_attempt_ms == e.at_ms || e.kind == DueKind::Lease) =>
                {
                    rec
                }
                // A stale entry (superseded schedule): just drop it.
                _ => {
                    self.ledger
                        .writes
                        .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
                    self.ledger
                        .pending
                        .settled(&*self.config, &e.key.webhook_id, Held::Record);
                    return Ok(Scanned::Settled);
                }
            };
            // A scheduled entry holds its delivery while it is attempted (no
            // write to send it); a stale lease gives way to a fresh one.
            let held = match e.kind {
                DueKind::Scheduled => Some(e.at_ms),
                DueKind::Lease => {
                    self.ledger
                        .writes
                        .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
                    None
                }
            };
            self.dispatch_recorded(e.key, rec, webhook, now, held)
                .await?;
            return Ok(Scanned::Taken);
        };
        if a.lease_at == Some(e.at_ms) {
            // The entry that holds the delivery: a lease is up when it is
            // due, a scheduled entry once the attempt sent from it has had
            // its timeout and the margin.
            let lease = lease_ms(webhook.as_deref(), self.lease_margin_ms);
            let expired = match (e.kind, a.sent_at_ms) {
                (DueKind::Lease, _) => true,
                (DueKind::Scheduled, Some(sent)) => now - sent >= lease,
                (DueKind::Scheduled, None) => false,
            };
            if !expired {
                return Ok(Scanned::Held);
            }
            if let Some(sent) = a.sent_at_ms {
                // Handed to a worker and unanswered past timeout + margin:
                // the attempt is lost (a hung worker); it counts as a
                // timeout and the policy decides what next.
                let report = AttemptReport {
                    key: e.key.clone(),
                    attempt: Attempt {
                        attempt: a.attempt,
                        started_at_ms: sent,
                        duration_ms: u32::try_from(now - sent).unwrap_or(u32::MAX),
                        status_code: None,
                        error: Some(ErrorKind::Timeout),
                        response_body: Some("lease expired without an answer".into()),
                    },
                    result: AttemptResult::Failed {
                        retry_after_ms: None,
                    },
                    elapsed: Duration::from_millis(u64::try_from(now - sent).unwrap_or(0)),
                };
                warn!(delivery = %e.key.id(), attempt = a.attempt, "lease expired in flight; counted as a timeout");
                self.on_report(report);
                return Ok(Scanned::Settled);
            }
            // Still queued here (not yet handed to a worker): the lease is
            // extended.
            let at_ms = now + lease;
            a.lease_at = Some(at_ms);
            self.ledger
                .writes
                .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
            self.ledger.writes.push(DeliveryWrite::Due(DueEntry {
                at_ms,
                key: e.key,
                kind: DueKind::Lease,
            }));
            return Ok(Scanned::Held);
        }
        // Another entry of a delivery held by its own: stale, dropped.
        self.ledger
            .writes
            .push(DeliveryWrite::Undue(e.at_ms, e.key.clone()));
        self.ledger
            .pending
            .settled(&*self.config, &e.key.webhook_id, Held::Record);
        Ok(Scanned::Settled)
    }

    /// Writes records for the oldest event's unsettled deliveries when it has
    /// held the window too long (or the window is full), so the cursor moves on.
    pub(super) fn spill(&mut self) {
        let now = self.clock.unix_ms();
        let stale_before = Instant::now()
            .checked_sub(self.cfg.spill_after)
            .unwrap_or_else(Instant::now);
        // Once full, the window is spilled down to three quarters in one go:
        // settled events queued behind an unsettled front must not hold
        // reading to one event per tick.
        // Only when the window (not the lanes) is what stops reading: with full
        // lanes, spilling would just turn a burst into state records.
        let low_water = self.cfg.window_events - self.cfg.window_events / 4;
        let mut draining = self.ledger.window.len() >= self.cfg.window_events
            && self.lanes.len() < self.cfg.max_queued;
        loop {
            draining &= self.ledger.window.len() > low_water;
            let deadline = if draining {
                Instant::now()
            } else {
                stale_before
            };
            let Some(front) = self.ledger.window.stale_front(deadline) else {
                break;
            };
            let keys = front.unsettled.clone();
            for key in keys {
                let webhook = self.config.webhook(&key.webhook_id);
                let lease = now + lease_ms(webhook.as_deref(), self.lease_margin_ms);
                self.ledger.spill(&key, now, lease);
            }
            match self.ledger.window.pop_settled() {
                Some(seq) => self.spilled_to = Some(seq),
                None => break,
            }
        }
    }
}
