//! Getting work to the workers: fan-out from the log, per-host lanes,
//! handing tasks over with the current webhook configuration, deferral.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Scheduler {
    pub(super) fn has_room(&self) -> bool {
        self.ledger.window.len() < self.cfg.window_events && self.lanes.len() < self.cfg.max_queued
    }

    /// The next queued task with its webhook's configuration as of now
    /// (invariant 5: every attempt uses the current URL, headers, secret and
    /// timeout). Tasks whose webhook was deleted or deactivated are cancelled
    /// here instead of sent.
    pub(super) fn next_sendable(&mut self) -> Option<(Arc<str>, DeliveryTask)> {
        while let Some((host, mut task)) = self.lanes.pop() {
            match self.config.webhook(&task.key.webhook_id) {
                Some(w) if w.active => {
                    task.webhook = w;
                    return Some((host, task));
                }
                _ => {
                    self.lanes.done(&host, Duration::ZERO, None);
                    self.cancel(&task.key);
                }
            }
        }
        None
    }

    /// Queues a task in its host's lane.
    pub(super) fn enqueue(&mut self, task: DeliveryTask) {
        let host = self.hosts.of(&task.webhook.url);
        if let Some(a) = self.ledger.active.get_mut(&task.key) {
            a.host = host.clone();
        }
        self.lanes.push(host, task);
    }

    /// When memory is full (reading the log is blocked), moves what waits
    /// beyond a lane's queue cap to disk (a pending record due when the lane
    /// would reach it), without spending an attempt: a slow lane then stops
    /// blocking the others. A burst to healthy lanes just waits in the log.
    pub(super) fn defer_overflow(&mut self) {
        if self.lanes.len() < self.cfg.max_queued {
            return;
        }
        for (task, wait_ms) in self.lanes.overflow(self.cfg.lane_queue, Instant::now()) {
            self.defer(&task.key, wait_ms.clamp(1000, 60_000));
        }
    }

    pub(super) fn defer(&mut self, key: &DeliveryKey, delay_ms: i64) {
        let now = self.clock.unix_ms();
        self.ledger.defer(key, now, delay_ms);
    }

    /// Ends a queued delivery whose webhook is gone or inactive.
    pub(super) fn cancel(&mut self, key: &DeliveryKey) {
        let now = self.clock.unix_ms();
        self.ledger.cancel(&*self.config, key, now);
    }

    pub(super) fn mark_sent(&mut self, key: &DeliveryKey) {
        if let Some(a) = self.ledger.active.get_mut(key) {
            a.sent_at_ms = Some(self.clock.unix_ms());
        }
    }

    /// Sends queued tasks while the channel has room; `false` if the workers
    /// are gone.
    pub(super) fn send_ready(&mut self, tx: &mpsc::Sender<DeliveryTask>) -> bool {
        while let Some((host, task)) = self.next_sendable() {
            let key = task.key.clone();
            match tx.try_send(task) {
                Ok(()) => self.mark_sent(&key),
                Err(TrySendError::Full(task)) => {
                    self.lanes.unpop(host, task);
                    return true;
                }
                // The workers stopped (shutdown): the task stays queued here
                // and, unanswered, comes back after a restart.
                Err(TrySendError::Closed(task)) => {
                    self.lanes.unpop(host, task);
                    return false;
                }
            }
        }
        true
    }

    pub(super) async fn fill_from_log(&mut self) -> Result<(), StoreError> {
        let head = *self.head.borrow_and_update();
        while self.next_read <= head && self.has_room() {
            let room = (self.cfg.window_events - self.ledger.window.len()).clamp(1, 1024);
            let events = self.log.read(self.partition, self.next_read, room).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for e in events {
                self.fan_out(e).await?;
            }
            self.next_read = last + 1;
        }
        Ok(())
    }

    pub(super) async fn fan_out(&mut self, e: LoggedEvent) -> Result<(), StoreError> {
        let ev = &e.event;
        let device = DeviceId::from(ev.device_id.as_str());
        let matching: Vec<Arc<Webhook>> = if ev.event_type == WEBHOOK_TEST {
            // A test event goes to the one webhook named in it, whatever its filter.
            named_webhook(&ev.data)
                .and_then(|id| self.config.webhook(&id))
                .filter(|w| w.active && self.config.receives(w, ev, e.appended_at_ms))
                .into_iter()
                .collect()
        } else if ev.device_id.is_empty() {
            // The engine's notice about an organization-wide webhook: to its
            // organization's organization-wide webhooks that select it.
            named_webhook(&ev.data)
                .and_then(|id| self.config.webhook(&id))
                .map(|named| self.config.org_webhooks(&named.org_id))
                .unwrap_or_default()
                .into_iter()
                .filter(|w| {
                    w.active
                        && self.config.receives(w, ev, e.appended_at_ms)
                        && self.catalog.matches_any(&w.events, &ev.event_type)
                })
                .collect()
        } else {
            self.config
                .subscribers(&device)
                .for_event(e.appended_at_ms)
                .filter(|w| w.active && self.catalog.matches_any(&w.events, &ev.event_type))
                .collect()
        };
        let mut unsettled = Vec::with_capacity(matching.len());
        if !matching.is_empty() {
            let envelope: Arc<[u8]> = signing::envelope(
                &ev.id,
                &ev.event_type,
                ev.occurred_at_ms.div_euclid(1000),
                &ev.device_id,
                &ev.data,
            )
            .into();
            let event_id: Arc<str> = ev.id.as_str().into();
            let event_type: Arc<str> = ev.event_type.as_str().into();
            for webhook in matching {
                // A webhook configured through an API with names of its own
                // gets the event under that name.
                let envelope = match webhook.event_names.get(&ev.event_type) {
                    Some(name) => signing::envelope(
                        &ev.id,
                        name,
                        ev.occurred_at_ms.div_euclid(1000),
                        &ev.device_id,
                        &ev.data,
                    )
                    .into(),
                    None => envelope.clone(),
                };
                let key = DeliveryKey {
                    seq: e.seq,
                    generation: 0,
                    webhook_id: webhook.id.clone(),
                };
                if self.ledger.active.contains_key(&key) {
                    continue;
                }
                // Re-read after a crash: a delivery with a record is the due
                // index's, not the window's.
                if e.seq <= self.recovery_horizon && self.store.record(&key).await?.is_some() {
                    continue;
                }
                self.ledger.active.insert(
                    key.clone(),
                    Active {
                        attempt: 1,
                        lease_at: None,
                        sent_at_ms: None,
                        host: Arc::from(""),
                        event_id: event_id.clone(),
                        event_type: event_type.clone(),
                        created_at_ms: e.appended_at_ms,
                    },
                );
                self.enqueue(DeliveryTask {
                    key: key.clone(),
                    attempt: 1,
                    event_id: event_id.clone(),
                    envelope,
                    webhook,
                    occurred_at_ms: ev.occurred_at_ms,
                });
                unsettled.push(key);
            }
            metrics::counter!(metric::DELIVERIES_CREATED).increment(unsettled.len() as u64);
            for key in &unsettled {
                self.ledger.pending.created(&*self.config, &key.webhook_id);
            }
        }
        self.ledger.window.push(WindowEvent {
            seq: e.seq,
            unsettled,
            entered: Instant::now(),
        });
        Ok(())
    }

    /// Queues the next attempt of a delivery that has a record. It is held
    /// while attempted by the due entry at `held` (the scheduled one it
    /// fell due by), or else by a new lease.
    pub(super) async fn dispatch_recorded(
        &mut self,
        key: DeliveryKey,
        mut rec: DeliveryRecord,
        webhook: Option<Arc<Webhook>>,
        now: i64,
        held: Option<i64>,
    ) -> Result<(), StoreError> {
        let Some(webhook) = webhook.filter(|w| w.active) else {
            if let Some(at) = held {
                self.ledger
                    .writes
                    .push(DeliveryWrite::Undue(at, key.clone()));
            }
            rec.status = DeliveryStatus::Cancelled;
            rec.updated_at_ms = now;
            self.ledger
                .pending
                .settled(&*self.config, &key.webhook_id, Held::Record);
            self.ledger.writes.push(DeliveryWrite::Record(key, rec));
            return Ok(());
        };
        let Some(event) = self.log.event(key.seq).await? else {
            if let Some(at) = held {
                self.ledger
                    .writes
                    .push(DeliveryWrite::Undue(at, key.clone()));
            }
            error!(delivery = %key.id(), "event no longer in the log; delivery failed");
            rec.status = DeliveryStatus::Failed;
            rec.last_error = Some("event_missing".into());
            rec.updated_at_ms = now;
            self.ledger
                .pending
                .settled(&*self.config, &key.webhook_id, Held::Record);
            self.ledger.writes.push(DeliveryWrite::Record(key, rec));
            return Ok(());
        };
        // Neither the record nor the due index is rewritten to send a
        // delivery that fell due (no write per retry or drained delivery):
        // its entry holds it while it is attempted, and the outcome writes
        // the record.
        let lease = match held {
            Some(at) => at,
            None => {
                let lease = now + lease_ms(Some(&webhook), self.lease_margin_ms);
                self.ledger.writes.push(DeliveryWrite::Due(DueEntry {
                    at_ms: lease,
                    key: key.clone(),
                    kind: DueKind::Lease,
                }));
                lease
            }
        };
        let ev = &event.event;
        let event_id: Arc<str> = ev.id.as_str().into();
        self.ledger.active.insert(
            key.clone(),
            Active {
                attempt: rec.attempts + 1,
                lease_at: Some(lease),
                sent_at_ms: None,
                host: Arc::from(""),
                event_id: event_id.clone(),
                event_type: ev.event_type.as_str().into(),
                created_at_ms: rec.created_at_ms,
            },
        );
        self.enqueue(DeliveryTask {
            key: key.clone(),
            attempt: rec.attempts + 1,
            event_id,
            envelope: signing::envelope(
                &ev.id,
                webhook.event_name(&ev.event_type),
                ev.occurred_at_ms.div_euclid(1000),
                &ev.device_id,
                &ev.data,
            )
            .into(),
            webhook,
            occurred_at_ms: ev.occurred_at_ms,
        });
        Ok(())
    }
}
