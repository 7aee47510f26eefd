//! How a webhook is stored, and how records of earlier layouts are read.
//!
//! Layout 2 (this build) adds the webhook's scope, its integer number and its
//! event names to layout 1. A layout-1 record reads as an app's webhook with
//! engine names and no number yet; the config store numbers it and rewrites
//! it when it opens.

use hookrelay_core::{DeviceId, OrgId, RetryPolicy, Webhook, WebhookId, WebhookScope};
use hookrelay_store::{codec, StoreError};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The version byte of webhook records this build writes.
const LAYOUT: u8 = 2;

/// Encodes a webhook record.
pub(crate) fn encode(w: &Webhook) -> Vec<u8> {
    codec::encode_as(LAYOUT, w)
}

/// Decodes a webhook record of any layout; `true` with one that must be
/// rewritten in the current layout.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Webhook, bool), StoreError> {
    const WHAT: &str = "webhook";
    match codec::version_of(bytes) {
        Some(LAYOUT) => Ok((codec::decode_as(LAYOUT, bytes, WHAT)?, false)),
        Some(codec::FORMAT_VERSION) => {
            let v1: Layout1 = codec::decode(bytes, WHAT)?;
            Ok((v1.into(), true))
        }
        _ => Err(StoreError::Corrupt { what: WHAT }),
    }
}

/// The webhook as layout 1 stored it (field order is the encoding).
#[derive(Deserialize)]
struct Layout1 {
    id: WebhookId,
    org_id: OrgId,
    device_id: DeviceId,
    name: String,
    url: String,
    events: Vec<String>,
    active: bool,
    primary: bool,
    retry_attempts: u32,
    timeout_secs: u32,
    retry_policy: RetryPolicy,
    headers: BTreeMap<String, String>,
    secret: Option<String>,
    previous_secrets: Vec<(String, i64)>,
    rate_limit: Option<u32>,
    created_at_ms: i64,
    updated_at_ms: i64,
    failing_since_ms: Option<i64>,
}

impl From<Layout1> for Webhook {
    fn from(w: Layout1) -> Self {
        Webhook {
            id: w.id,
            org_id: w.org_id,
            device_id: w.device_id,
            name: w.name,
            url: w.url,
            events: w.events,
            active: w.active,
            primary: w.primary,
            retry_attempts: w.retry_attempts,
            timeout_secs: w.timeout_secs,
            retry_policy: w.retry_policy,
            headers: w.headers,
            secret: w.secret,
            previous_secrets: w.previous_secrets,
            rate_limit: w.rate_limit,
            created_at_ms: w.created_at_ms,
            updated_at_ms: w.updated_at_ms,
            failing_since_ms: w.failing_since_ms,
            scope: WebhookScope::App,
            number: 0,
            event_names: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of layout 1, encoded as that build wrote it.
    #[derive(serde::Serialize)]
    struct Written {
        id: &'static str,
        org_id: &'static str,
        device_id: &'static str,
        name: &'static str,
        url: &'static str,
        events: Vec<&'static str>,
        active: bool,
        primary: bool,
        retry_attempts: u32,
        timeout_secs: u32,
        retry_policy: RetryPolicy,
        headers: BTreeMap<String, String>,
        secret: Option<&'static str>,
        previous_secrets: Vec<(String, i64)>,
        rate_limit: Option<u32>,
        created_at_ms: i64,
        updated_at_ms: i64,
        failing_since_ms: Option<i64>,
    }

    /// A layout-1 record of an app's webhook.
    pub(crate) fn layout_1(id: &'static str, org: &'static str, device: &'static str) -> Vec<u8> {
        codec::encode(&Written {
            id,
            org_id: org,
            device_id: device,
            name: "n",
            url: "https://a.example/",
            events: vec!["message.*"],
            active: true,
            primary: false,
            retry_attempts: 3,
            timeout_secs: 10,
            retry_policy: RetryPolicy::default(),
            headers: BTreeMap::new(),
            secret: Some("s"),
            previous_secrets: vec![],
            rate_limit: Some(5),
            created_at_ms: 1,
            updated_at_ms: 2,
            failing_since_ms: None,
        })
    }

    #[test]
    fn layout_1_reads_as_an_apps_webhook_to_rewrite() {
        let old = layout_1("wh_1", "org_1", "dev");
        let (w, rewrite) = decode(&old).expect("decodes");
        assert!(rewrite);
        assert_eq!(w.device_id.as_str(), "dev");
        assert_eq!(w.rate_limit, Some(5));
        assert_eq!(w.scope, WebhookScope::App);
        assert_eq!(w.number, 0);
        // Written back, it reads as itself and needs nothing more.
        let mut w = w;
        w.number = 7;
        w.scope = WebhookScope::Organization;
        let (again, rewrite) = decode(&encode(&w)).expect("decodes");
        assert!(!rewrite);
        assert_eq!(again, w);
        assert!(decode(&[9, 1, 2]).is_err());
    }
}
