//! JSON shapes of resources, and building a webhook from client input.

use hookrelay_core::{
    new_webhook_id, rfc3339_ms, DeliveryConfig, DeviceId, OrgId, RetryPolicy, Webhook,
    WebhookInput, WebhookScope,
};
use hookrelay_store::App;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Default per-attempt timeout of a new webhook, seconds (vendor default).
const DEFAULT_TIMEOUT_SECS: u32 = 10;
/// Default retries of a new webhook.
const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// The `/webhook` profile's webhook object (secret never included).
pub(crate) fn profile_webhook(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "webhook_url": w.url,
        "enabled_events": w.events,
        "enabled": w.active,
        "retry_attempts": w.retry_attempts,
        "timeout": w.timeout_secs,
        "headers": w.headers,
        "created_at": rfc3339_ms(w.created_at_ms),
        "updated_at": rfc3339_ms(w.updated_at_ms),
    })
}

/// The `/v1` webhook object (secret never included).
pub(crate) fn webhook(w: &Webhook, circuit_open: bool) -> Value {
    let mut v = json!({
        "id": w.id,
        "name": w.name,
        "url": w.url,
        "events": w.events,
        "active": w.active,
        "retry_attempts": w.retry_attempts,
        "timeout": w.timeout_secs,
        "retry_policy": w.retry_policy,
        "headers": w.headers,
        "rate_limit": w.rate_limit,
        "circuit": if circuit_open { "open" } else { "closed" },
        "failing_since": w.failing_since_ms.map(rfc3339_ms),
        "created_at": rfc3339_ms(w.created_at_ms),
        "updated_at": rfc3339_ms(w.updated_at_ms),
        "scope": w.scope.as_str(),
    });
    if let Some(app) = w.app() {
        v["app_id"] = json!(app);
    }
    v
}

/// PATCH: the existing webhook's fields, overlaid with what `input` carries.
/// The secret stays out (`None` keeps it), unless `input` sets or clears it.
pub(crate) fn merged(w: &Webhook, input: WebhookInput) -> WebhookInput {
    WebhookInput {
        url: input.url.or_else(|| Some(w.url.clone())),
        events: input.events.or_else(|| Some(w.events.clone())),
        active: input.active.or(Some(w.active)),
        retry_attempts: input.retry_attempts.or(Some(i64::from(w.retry_attempts))),
        timeout: input.timeout.or(Some(i64::from(w.timeout_secs))),
        secret: input.secret,
        headers: input.headers.or_else(|| Some(w.headers.clone())),
        name: input.name.or_else(|| Some(w.name.clone())),
        retry_policy: input.retry_policy.or_else(|| Some(w.retry_policy.clone())),
        rate_limit: input.rate_limit.or(w.rate_limit.map(i64::from)),
    }
}

/// An app as the admin routes show it.
pub(crate) fn app(a: &App) -> Value {
    json!({"id": a.id, "name": a.name, "created_at": rfc3339_ms(a.created_at_ms)})
}

/// The filter's entries in their first order, each once.
fn dedup(mut events: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| seen.insert(e.clone()));
    events
}

/// Who owns a webhook being built, and through which API it is written.
#[derive(Clone)]
pub(crate) struct Owner {
    pub(crate) org_id: OrgId,
    /// Empty for an organization-wide webhook.
    pub(crate) device_id: DeviceId,
    pub(crate) scope: WebhookScope,
    pub(crate) primary: bool,
    /// The event names of the API this write came through, by engine type
    /// (empty for the engine's own names).
    pub(crate) event_names: BTreeMap<String, String>,
}

/// Builds the stored webhook from validated input, replacing: omitted fields
/// take their defaults. The id, creation time,
/// ownership and a rotated-out secret are kept from `existing`; `secret`
/// omitted keeps the current one, `""` removes it.
pub(crate) fn build_webhook(
    existing: Option<&Webhook>,
    input: WebhookInput,
    owner: Owner,
    defaults: &DeliveryConfig,
    now: i64,
) -> Webhook {
    // A configuration change gives a failing webhook a fresh start only
    // when it re-enables it.
    let active = input.active.unwrap_or(true);
    let failing_since_ms = match existing {
        Some(w) if w.active || !active => w.failing_since_ms,
        _ => None,
    };
    let secret = match input.secret {
        None => existing.and_then(|w| w.secret.clone()),
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s),
    };
    Webhook {
        id: existing.map_or_else(new_webhook_id, |w| w.id.clone()),
        org_id: owner.org_id,
        device_id: owner.device_id,
        name: input.name.unwrap_or_default(),
        // Validated already: stored in the form the client will dial.
        url: input
            .url
            .map(|u| hookrelay_core::normalize_url(&u).unwrap_or(u))
            .unwrap_or_default(),
        events: dedup(input.events.unwrap_or_default()),
        active,
        primary: owner.primary,
        retry_attempts: input
            .retry_attempts
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(DEFAULT_RETRY_ATTEMPTS),
        timeout_secs: input
            .timeout
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT_SECS),
        retry_policy: input.retry_policy.unwrap_or_else(|| RetryPolicy {
            base_delay_ms: defaults.base_delay_ms.max(1),
            ..RetryPolicy::default()
        }),
        headers: input.headers.unwrap_or_default(),
        secret,
        previous_secrets: existing
            .map(|w| w.previous_secrets.clone())
            .unwrap_or_default(),
        rate_limit: input.rate_limit.and_then(|r| u32::try_from(r).ok()),
        created_at_ms: existing.map_or(now, |w| w.created_at_ms),
        updated_at_ms: now,
        failing_since_ms,
        scope: owner.scope,
        number: existing.map_or(0, |w| w.number),
        event_names: owner.event_names,
    }
}
