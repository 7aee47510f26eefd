//! What an attempt's outcome does: the attempt log, state records, retry
//! scheduling, and the webhook failure clock behind auto-disable.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What an attempt's answer says about its host's load.
fn signal_of(r: &AttemptReport) -> Signal {
    if r.result == AttemptResult::Delivered {
        return Signal::Success;
    }
    match (r.attempt.status_code, r.attempt.error) {
        (Some(429 | 503), _) | (_, Some(ErrorKind::Timeout | ErrorKind::ConnectError)) => {
            Signal::Overload
        }
        _ => Signal::Neutral,
    }
}

impl Scheduler {
    /// Notes a transition of a webhook's failure clock (written by
    /// [`Scheduler::apply_health`]).
    pub(super) fn track_health(&mut self, w: &Webhook, ok: bool, now: i64) {
        let change = match (ok, w.failing_since_ms) {
            (true, Some(_)) => Some(Health::Recovered),
            (true, None) => None,
            (false, None) => Some(Health::FailingSince(now)),
            (false, Some(since)) if w.active && now - since >= self.disable_after_ms => {
                Some(Health::Disable)
            }
            (false, Some(_)) => None,
        };
        if let Some(change) = change {
            // Within one batch the first transition wins, except that a
            // success always wins.
            let entry = self.health.entry(w.id.clone()).or_insert(change);
            if change == Health::Recovered {
                *entry = change;
            }
        }
    }

    /// Writes the noted failure-clock transitions; deactivates webhooks that
    /// failed for too long and announces it with a `webhook.disabled` event.
    pub(super) async fn apply_health(&mut self) {
        let now = self.clock.unix_ms();
        for (id, change) in std::mem::take(&mut self.health) {
            // Read-modify-write under the store's lock: an API change made
            // meanwhile (a PATCH deactivating it, say) is never overwritten.
            let mut disabled = false;
            let result = self
                .config
                .update_webhook(
                    &id,
                    Box::new(|next: &mut Webhook| match change {
                        Health::Recovered => next.failing_since_ms.take().is_some(),
                        Health::FailingSince(t) if next.failing_since_ms.is_none() => {
                            next.failing_since_ms = Some(t);
                            true
                        }
                        Health::FailingSince(_) => false,
                        Health::Disable if next.active => {
                            next.active = false;
                            next.updated_at_ms = now;
                            disabled = true;
                            true
                        }
                        Health::Disable => false,
                    }),
                )
                .await;
            let w = match result {
                Ok(Some(w)) => w,
                Ok(None) => continue,
                Err(e) => {
                    error!(webhook_id = %id, error = %e, "updating the webhook's failure clock failed");
                    continue;
                }
            };
            if disabled {
                warn!(webhook_id = %id, since = ?w.failing_since_ms, "webhook disabled after failing for too long");
                let event = hookrelay_core::Event {
                    id: hookrelay_core::new_event_id(),
                    device_id: w.device_id.to_string(),
                    event_type: hookrelay_core::WEBHOOK_DISABLED.to_owned(),
                    occurred_at_ms: now,
                    data: serde_json::json!({
                        "webhook_id": w.id,
                        "url": w.url,
                        "failing_since": w.failing_since_ms.map(hookrelay_core::rfc3339_ms),
                        "disabled_at": hookrelay_core::rfc3339_ms(now),
                    })
                    .to_string(),
                };
                if let Err(e) = self.log.append(vec![event], vec![], now, now).await {
                    error!(webhook_id = %id, error = %e, "appending webhook.disabled failed");
                }
            }
        }
    }

    pub(super) fn record_for(
        &self,
        a: &Active,
        attempts: u32,
        status: DeliveryStatus,
        now: i64,
    ) -> DeliveryRecord {
        DeliveryRecord {
            status,
            attempts,
            next_attempt_ms: 0,
            last_status_code: None,
            last_error: None,
            event_type: a.event_type.to_string(),
            event_id: a.event_id.to_string(),
            created_at_ms: a.created_at_ms,
            updated_at_ms: now,
        }
    }

    pub(super) fn on_report(&mut self, r: AttemptReport) {
        let now = self.clock.unix_ms();
        self.writes
            .push(DeliveryWrite::Attempt(r.key.clone(), r.attempt.clone()));
        if self.active.get(&r.key).map(|a| a.attempt) != Some(r.attempt.attempt) {
            // An attempt whose lease expired (and was counted as a timeout)
            // answered late: its real outcome replaces the log entry; the
            // delivery has moved on.
            warn!(delivery = %r.key.id(), attempt = r.attempt.attempt, "late report of a superseded attempt; attempt logged only");
            return;
        }
        let Some(a) = self.active.remove(&r.key) else {
            return;
        };
        self.lanes.done(&a.host, r.elapsed, Some(signal_of(&r)));
        let held = if let Some(lease) = a.lease_at {
            self.writes.push(DeliveryWrite::Undue(lease, r.key.clone()));
            Held::Record
        } else {
            self.window.settle(&r.key);
            Held::Window
        };
        self.pending.settled(&*self.config, &r.key.webhook_id, held);
        let webhook = self.config.webhook(&r.key.webhook_id);
        if let Some(w) = webhook.as_deref() {
            self.track_health(w, r.result == AttemptResult::Delivered, now);
        }
        let n = a.attempt;
        let mut rec = match r.result {
            AttemptResult::Delivered => {
                if a.lease_at.is_none() {
                    // The happy path: the attempt log entry is the only write.
                    return;
                }
                self.record_for(&a, n, DeliveryStatus::Delivered, now)
            }
            AttemptResult::Failed { retry_after_ms } => match webhook.as_deref() {
                Some(w) if w.active && n <= w.retry_attempts => {
                    let delay = w.retry_policy.next_delay_ms(n, retry_after_ms);
                    let next = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX / 2));
                    let mut rec = self.record_for(&a, n, DeliveryStatus::Pending, now);
                    rec.next_attempt_ms = next;
                    self.writes.push(DeliveryWrite::Due(DueEntry {
                        at_ms: next,
                        key: r.key.clone(),
                        kind: DueKind::Scheduled,
                    }));
                    self.pending.scheduled(&*self.config, &r.key.webhook_id);
                    rec
                }
                Some(w) if w.active => {
                    metrics::counter!(metric::DELIVERIES_FAILED).increment(1);
                    self.record_for(&a, n, DeliveryStatus::Failed, now)
                }
                _ => self.record_for(&a, n, DeliveryStatus::Cancelled, now),
            },
        };
        rec.last_status_code = r.attempt.status_code;
        rec.last_error = r.attempt.error.map(|e| e.as_str().to_owned());
        self.writes.push(DeliveryWrite::Record(r.key, rec));
    }
}
