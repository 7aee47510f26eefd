//! The webhook model and the validation rules of docs/api.md.

use crate::{
    catalog::Catalog,
    config::DeliveryConfig,
    ids::{DeviceId, OrgId, WebhookId},
    retry::RetryPolicy,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2048;
/// Most custom headers a webhook may carry.
pub const MAX_HEADERS: usize = 20;
/// Largest `timeout`, seconds.
pub const MAX_TIMEOUT_SECS: u32 = 60;
/// Largest `retry_attempts`.
pub const MAX_RETRY_ATTEMPTS: u32 = 20;
/// Longest header value.
const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Longest `name`.
const MAX_NAME_LEN: usize = 200;

/// Most rotated-out secrets a webhook keeps signing with at once.
pub const MAX_PREVIOUS_SECRETS: usize = 10;

/// Most entries of an event filter (`events` / `enabled_events`).
pub(crate) const MAX_EVENT_FILTERS: usize = 100;

/// Header names a webhook may not set, compared case-insensitively (besides
/// every `webhook-*` and `proxy-*`, docs/api.md): hop-by-hop headers and
/// those the engine sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "te",
    "upgrade",
    "keep-alive",
    "expect",
];
const RESERVED_PREFIXES: &[&str] = &["webhook-", "proxy-"];

/// A webhook: where to deliver which events, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// `wh_...`
    pub id: WebhookId,
    /// Owning organization.
    pub org_id: OrgId,
    /// Owning app/device.
    pub device_id: DeviceId,
    /// Free-form label.
    pub name: String,
    /// Target URL.
    pub url: String,
    /// Event filter: names and patterns.
    pub events: Vec<String>,
    /// Deliveries happen only while active.
    pub active: bool,
    /// The device's primary webhook (the one `/webhook` manages).
    pub primary: bool,
    /// Retries after the first attempt (0..=20).
    pub retry_attempts: u32,
    /// Per-attempt timeout, seconds (1..=60).
    pub timeout_secs: u32,
    /// Backoff schedule.
    pub retry_policy: RetryPolicy,
    /// Custom headers sent on every attempt.
    pub headers: BTreeMap<String, String>,
    /// Signing secret; never returned by the API.
    pub secret: Option<String>,
    /// Rotated-out secrets, each with the end of its own grace (unix ms),
    /// oldest first. (Encoded like the former `Option` of one secret, so
    /// records written before hold zero or one entry.)
    pub previous_secrets: Vec<(String, i64)>,
    /// Deliveries per second, if limited.
    pub rate_limit: Option<u32>,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
    /// Since when every attempt has failed (unix ms); `None` after a success.
    /// Past `delivery.disable_after` the webhook is deactivated.
    pub failing_since_ms: Option<i64>,
    /// One app's, or the whole organization's (then `device_id` is empty).
    pub scope: WebhookScope,
    /// A positive integer unique in the engine and stable for the webhook's
    /// life, for APIs whose ids are integers (0 until the store assigns it).
    pub number: u64,
    /// Names deliveries give event types, by engine type: those of the API
    /// the webhook was last configured through (empty: engine names).
    pub event_names: BTreeMap<String, String>,
}

/// Whose events a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookScope {
    /// Its app's (device's) events.
    #[default]
    App,
    /// The events of every app of its organization, present and future.
    Organization,
}

impl WebhookScope {
    /// The name the API shows (`"app"`, `"organization"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Organization => "organization",
        }
    }
}

impl Webhook {
    /// The app whose events this webhook receives; `None` for an
    /// organization-wide webhook.
    pub fn app(&self) -> Option<&DeviceId> {
        (self.scope == WebhookScope::App).then_some(&self.device_id)
    }

    /// The name a delivery gives `event_type`.
    pub fn event_name<'a>(&'a self, event_type: &'a str) -> &'a str {
        self.event_names
            .get(event_type)
            .map_or(event_type, String::as_str)
    }

    /// The secrets that sign an attempt at `now_ms`: the current one first,
    /// then every rotated-out one still inside its own grace, newest first.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut out = Vec::with_capacity(1 + self.previous_secrets.len());
        if let Some(s) = self.secret.as_deref().filter(|s| !s.is_empty()) {
            out.push(s);
        }
        for (old, until) in self.previous_secrets.iter().rev() {
            if *until > now_ms && !old.is_empty() && !out.contains(&old.as_str()) {
                out.push(old.as_str());
            }
        }
        out
    }

    /// Replaces the secret with `next`: the current one keeps signing until
    /// `now_ms + grace_ms`, every earlier one until its own grace ends;
    /// secrets past their grace are dropped, and at most
    /// [`MAX_PREVIOUS_SECRETS`] are kept (the oldest go first).
    pub fn rotate_secret(&mut self, next: String, now_ms: i64, grace_ms: i64) {
        self.previous_secrets
            .retain(|(s, until)| *until > now_ms && !s.is_empty());
        if let Some(old) = self.secret.take().filter(|s| !s.is_empty()) {
            self.previous_secrets
                .push((old, now_ms.saturating_add(grace_ms)));
        }
        let excess = self
            .previous_secrets
            .len()
            .saturating_sub(MAX_PREVIOUS_SECRETS);
        self.previous_secrets.drain(..excess);
        self.secret = Some(next);
    }
}

/// Webhook fields as a client sent them (every field optional); the API layer
/// fills it from JSON, [`WebhookInput::validate`] checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookInput {
    /// Target URL.
    pub url: Option<String>,
    /// Event filter.
    pub events: Option<Vec<String>>,
    /// Active flag.
    pub active: Option<bool>,
    /// Retries after the first attempt.
    pub retry_attempts: Option<i64>,
    /// Timeout in seconds.
    pub timeout: Option<i64>,
    /// Secret: `Some("")` removes it.
    pub secret: Option<String>,
    /// Custom headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// Label.
    pub name: Option<String>,
    /// Retry schedule.
    pub retry_policy: Option<RetryPolicy>,
    /// Deliveries per second.
    pub rate_limit: Option<i64>,
}

/// One validation problem, named by field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field path, e.g. `headers.Host`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one input, reported together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookProblems {
    /// Field problems.
    pub details: Vec<FieldError>,
    /// Event names that are neither catalog names nor valid patterns.
    pub unknown_events: Vec<String>,
}

impl WebhookProblems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.details.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.details.is_empty() && self.unknown_events.is_empty()
    }
}

impl WebhookInput {
    /// Checks every present field; `require` demands `url` and `events`
    /// (create and replace), otherwise only present fields are checked (merge).
    pub fn validate(
        &self,
        catalog: &Catalog,
        delivery: &DeliveryConfig,
        require: bool,
    ) -> Result<(), WebhookProblems> {
        let mut p = WebhookProblems::default();
        match &self.url {
            Some(url) => check_url(url, delivery.allow_http, &mut p),
            None if require => p.push("webhook_url", "is required"),
            None => {}
        }
        match &self.events {
            Some(events) if events.is_empty() => {
                p.push("enabled_events", "must list at least one event")
            }
            Some(events) if events.len() > MAX_EVENT_FILTERS => p.push(
                "enabled_events",
                format!("at most {MAX_EVENT_FILTERS} entries are allowed"),
            ),
            Some(events) => {
                for e in events {
                    if !catalog.is_valid_filter(e) && !p.unknown_events.contains(e) {
                        p.unknown_events.push(e.clone());
                    }
                }
                if !p.unknown_events.is_empty() {
                    p.push(
                        "enabled_events",
                        format!("unknown event names: {}", p.unknown_events.join(", ")),
                    );
                }
            }
            None if require => p.push("enabled_events", "is required"),
            None => {}
        }
        if let Some(t) = self.timeout {
            if !(1..=i64::from(MAX_TIMEOUT_SECS)).contains(&t) {
                p.push(
                    "timeout",
                    format!("must be between 1 and {MAX_TIMEOUT_SECS} seconds"),
                );
            }
        }
        if let Some(r) = self.retry_attempts {
            if !(0..=i64::from(MAX_RETRY_ATTEMPTS)).contains(&r) {
                p.push(
                    "retry_attempts",
                    format!("must be between 0 and {MAX_RETRY_ATTEMPTS}"),
                );
            }
        }
        if let Some(h) = &self.headers {
            check_headers(h, &mut p);
        }
        if let Some(s) = &self.secret {
            if s.len() > 1024 {
                p.push("secret", "must be at most 1024 bytes");
            }
        }
        if let Some(n) = &self.name {
            if n.len() > MAX_NAME_LEN {
                p.push("name", format!("must be at most {MAX_NAME_LEN} bytes"));
            }
        }
        if let Some(rp) = &self.retry_policy {
            if rp.base_delay_ms == 0 || rp.base_delay_ms > rp.max_delay_ms {
                p.push(
                    "retry_policy.base_delay_ms",
                    "must be at least 1 and at most max_delay_ms",
                );
            }
            if rp.max_delay_ms > RetryPolicy::MAX_DELAY_LIMIT_MS {
                p.push(
                    "retry_policy.max_delay_ms",
                    "must be at most 7 days (604800000)",
                );
            }
        }
        if let Some(r) = self.rate_limit {
            if !(1..=100_000).contains(&r) {
                p.push(
                    "rate_limit",
                    "must be between 1 and 100000 deliveries per second",
                );
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }
}

/// Parses a webhook URL once, with the WHATWG parser the HTTP client uses.
/// `Err` names the problem. A URL the parser had to *repair* (tabs or
/// newlines dropped, a missing `//`, backslashes, characters it had to
/// escape) is refused rather than stored as sent and delivered as repaired;
/// harmless normalisation (host case, an empty path, a default port) is
/// accepted, and [`normalize_url`] gives the form to store.
fn parse_url(url: &str) -> Result<url::Url, String> {
    use std::cell::RefCell;
    if url.chars().count() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let violation = RefCell::new(None);
    let record = |v: url::SyntaxViolation| {
        violation.borrow_mut().get_or_insert(v);
    };
    let parsed = url::Url::options()
        .syntax_violation_callback(Some(&record))
        .parse(url)
        .map_err(|e| format!("must be an absolute URL ({e})"))?;
    if let Some(v) = violation.into_inner() {
        return Err(format!(
            "is malformed ({}); send it in its normal form",
            v.description()
        ));
    }
    Ok(parsed)
}

/// The form a valid webhook URL is stored and delivered in.
pub fn normalize_url(url: &str) -> Option<String> {
    parse_url(url).ok().map(String::from)
}

/// Longest DNS name and label (RFC 1035).
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

fn check_url(url: &str, allow_http: bool, p: &mut WebhookProblems) {
    const FIELD: &str = "webhook_url";
    let parsed = match parse_url(url) {
        Ok(u) => u,
        Err(e) => return p.push(FIELD, e),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return p.push(FIELD, "must use https (plain http is disabled)"),
        other => return p.push(FIELD, format!("scheme {other:?} is not allowed; use https")),
    }
    match parsed.host() {
        None => p.push(FIELD, "must name a host"),
        Some(url::Host::Domain("")) => p.push(FIELD, "must name a host"),
        Some(url::Host::Domain(d))
            if d.len() > MAX_HOST_LEN || d.split('.').any(|l| l.len() > MAX_LABEL_LEN) =>
        {
            p.push(
                FIELD,
                format!(
                    "host names are at most {MAX_HOST_LEN} characters, {MAX_LABEL_LEN} per label"
                ),
            )
        }
        Some(_) => {}
    }
    if parsed.port() == Some(0) {
        p.push(FIELD, "port 0 is not a port");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        p.push(
            FIELD,
            "must not carry credentials; use custom headers instead",
        );
    }
    if parsed.fragment().is_some() {
        p.push(FIELD, "must not have a #fragment");
    }
}

/// RFC 9110 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_headers(headers: &BTreeMap<String, String>, p: &mut WebhookProblems) {
    if headers.len() > MAX_HEADERS {
        p.push(
            "headers",
            format!("at most {MAX_HEADERS} headers are allowed"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_char) {
            p.push(field, "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || RESERVED_PREFIXES.iter().any(|pre| lower.starts_with(pre))
        {
            p.push(field, "is set by hookrelay and cannot be overridden");
        } else if !seen.insert(lower) {
            p.push(
                field,
                "repeats another header name (names are case-insensitive)",
            );
        } else if value.len() > MAX_HEADER_VALUE_LEN
            || !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            p.push(
                field,
                format!("value must be printable ASCII, at most {MAX_HEADER_VALUE_LEN} bytes"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_input() -> WebhookInput {
        WebhookInput {
            url: Some("https://example.com/hook".into()),
            events: Some(vec!["message.received".into(), "call.*".into()]),
            ..Default::default()
        }
    }

    fn fields(i: WebhookInput) -> Vec<String> {
        match i.validate(&Catalog::builtin(), &DeliveryConfig::default(), true) {
            Ok(()) => vec![],
            Err(p) => p.details.into_iter().map(|d| d.field).collect(),
        }
    }

    #[test]
    fn valid_input_passes() {
        assert!(fields(ok_input()).is_empty());
    }

    /// docs/api.md (tenancy and trust): filter size, reserved names in any case, names equal but for case.
    #[test]
    fn tenancy_input_limits_hold() {
        let many = WebhookInput {
            events: Some(vec!["message.received".into(); MAX_EVENT_FILTERS + 1]),
            ..ok_input()
        };
        assert_eq!(fields(many), vec!["enabled_events"]);
        for reserved in [
            "User-Agent",
            "TE",
            "Upgrade",
            "keep-alive",
            "Expect",
            "Proxy-Authorization",
            "WEBHOOK-ID",
        ] {
            let i = WebhookInput {
                headers: Some(BTreeMap::from([(reserved.to_owned(), "x".to_owned())])),
                ..ok_input()
            };
            assert_eq!(fields(i), vec![format!("headers.{reserved}")], "{reserved}");
        }
        let twins = WebhookInput {
            headers: Some(BTreeMap::from([
                ("X-Tenant".to_owned(), "a".to_owned()),
                ("x-tenant".to_owned(), "b".to_owned()),
            ])),
            ..ok_input()
        };
        assert_eq!(fields(twins).len(), 1);
    }

    /// URLs are parsed once: what the parser had to repair is refused, what
    /// it only normalises is stored normalised.
    #[test]
    fn urls_are_refused_when_repaired_and_stored_normalised() {
        let url_ok = |u: &str| {
            let i = WebhookInput {
                url: Some(u.to_owned()),
                ..ok_input()
            };
            i.validate(
                &Catalog::builtin(),
                &DeliveryConfig {
                    allow_http: true,
                    ..DeliveryConfig::default()
                },
                true,
            )
            .is_ok()
        };
        for bad in [
            "http://127.0.0.1:91\r\n16/crlf/a\tb",
            "https:///path",
            "http:127.0.0.1:9116/x",
            "https://example.com:0/x",
            "https://example.com\\@evil.example/",
            "https://ex ample.com/",
            &format!("https://{}.com/", "a".repeat(300)),
            &format!("https://{}.com/", vec!["a".repeat(60); 5].join(".")),
            &format!("https://a.example/{}", "é".repeat(2040)),
        ] {
            assert!(!url_ok(bad), "{bad:?} must be refused");
        }
        // The limit counts characters: 1,040 é are 2,080 bytes but 1,058 characters.
        assert!(url_ok(&format!("https://a.example/{}", "é".repeat(1040))));
        for good in [
            "https://example.com",
            "https://Example.COM:443/a?b=c",
            "http://127.0.0.1:9116/x",
            "https://[::1]:8443/hook",
        ] {
            assert!(url_ok(good), "{good:?} must be accepted");
        }
        assert_eq!(
            normalize_url("https://Example.COM:443").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:9116/x").as_deref(),
            Some("http://127.0.0.1:9116/x")
        );
    }

    #[test]
    fn every_rule_is_reported_with_its_field() {
        let bad = WebhookInput {
            url: Some("http://example.com".into()),
            events: Some(vec![]),
            timeout: Some(61),
            retry_attempts: Some(21),
            headers: Some(BTreeMap::from([
                ("Host".into(), "x".into()),
                ("webhook-id".into(), "x".into()),
                ("bad name".into(), "x".into()),
                ("X-Ok".into(), "line\r\nbreak".into()),
            ])),
            ..Default::default()
        };
        let got = fields(bad);
        for f in [
            "webhook_url",
            "enabled_events",
            "timeout",
            "retry_attempts",
            "headers.Host",
            "headers.webhook-id",
            "headers.bad name",
            "headers.X-Ok",
        ] {
            assert!(got.contains(&f.to_string()), "{f} missing from {got:?}");
        }
        assert_eq!(
            fields(WebhookInput::default()),
            vec!["webhook_url", "enabled_events"]
        );
    }

    #[test]
    fn urls_are_checked() {
        for (url, ok) in [
            ("https://a.example/x?y=1", true),
            ("ftp://a.example", false),
            ("https://user:pw@a.example", false),
            ("not a url", false),
            ("/relative", false),
        ] {
            let got = fields(WebhookInput {
                url: Some(url.into()),
                ..ok_input()
            });
            assert_eq!(got.is_empty(), ok, "{url}: {got:?}");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_URL_LEN));
        assert_eq!(
            fields(WebhookInput {
                url: Some(long),
                ..ok_input()
            }),
            vec!["webhook_url"]
        );
        let http = WebhookInput {
            url: Some("http://127.0.0.1:9/x".into()),
            ..ok_input()
        };
        let cfg = DeliveryConfig {
            allow_http: true,
            ..Default::default()
        };
        assert!(http.validate(&Catalog::builtin(), &cfg, true).is_ok());
    }

    #[test]
    fn unknown_events_are_listed() {
        let i = WebhookInput {
            events: Some(vec!["nope".into(), "message.*".into(), "x.*".into()]),
            ..ok_input()
        };
        let p = i
            .validate(&Catalog::builtin(), &DeliveryConfig::default(), true)
            .expect_err("invalid");
        assert_eq!(p.unknown_events, vec!["nope", "x.*"]);
    }

    #[test]
    fn rotated_secret_signs_only_during_grace() {
        let mut w = Webhook {
            id: WebhookId::from("wh_1"),
            org_id: OrgId::from("org_1"),
            device_id: DeviceId::from("d"),
            name: String::new(),
            url: "https://x".into(),
            events: vec!["*".into()],
            active: true,
            primary: false,
            retry_attempts: 3,
            timeout_secs: 10,
            retry_policy: RetryPolicy::default(),
            headers: BTreeMap::new(),
            secret: Some("new".into()),
            previous_secrets: vec![("old".into(), 100)],
            rate_limit: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            failing_since_ms: None,
            scope: Default::default(),
            number: 0,
            event_names: Default::default(),
        };
        assert_eq!(w.signing_secrets(99), vec!["new", "old"]);
        assert_eq!(w.signing_secrets(100), vec!["new"]);
        // Two rotations within the grace: every earlier secret keeps its own.
        w.rotate_secret("newer".into(), 50, 1000);
        w.rotate_secret("newest".into(), 60, 1000);
        assert_eq!(w.signing_secrets(70), vec!["newest", "newer", "new", "old"]);
        assert_eq!(w.signing_secrets(100), vec!["newest", "newer", "new"]);
        assert_eq!(w.signing_secrets(1055), vec!["newest", "newer"]);
        assert_eq!(w.signing_secrets(1060), vec!["newest"]);
        for i in 0..3 * MAX_PREVIOUS_SECRETS {
            w.rotate_secret(format!("s{i}"), 2000, 1000);
        }
        assert_eq!(w.previous_secrets.len(), MAX_PREVIOUS_SECRETS);
        w.secret = None;
        w.previous_secrets.clear();
        assert!(w.signing_secrets(100).is_empty());
    }
}
