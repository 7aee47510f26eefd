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

    pub(super) fn on_report(&mut self, r: AttemptReport) {
        let now = self.clock.unix_ms();
        let signal = signal_of(&r);
        let (elapsed, delivered) = (r.elapsed, r.result == AttemptResult::Delivered);
        let Some(reported) = self.ledger.report(&*self.config, r, now) else {
            return;
        };
        self.lanes.done(&reported.host, elapsed, Some(signal));
        if let Some(w) = reported.webhook.as_deref() {
            self.track_health(w, delivered, now);
        }
    }
}
