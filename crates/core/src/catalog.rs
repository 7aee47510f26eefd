//! The event catalog (docs/api.md) and subscription patterns.
//!
//! A subscription entry is either an exact catalog name, `"*"` (everything
//! subscribable), or `"<prefix>.*"` where `<prefix>` is the first segment of at
//! least one catalog name (`"message.*"`, `"call.*"`).

use serde::Serialize;
use std::collections::BTreeSet;

/// Sent to a device's other webhooks when one of its webhooks is auto-disabled.
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
/// Sent only by `POST /v1/webhooks/{id}/test`, whatever the filter.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// The webhook an engine event is about (`webhook.test`, `webhook.disabled`):
/// its data's `webhook_id`.
pub fn named_webhook(data: &str) -> Option<crate::WebhookId> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v.get("webhook_id")?.as_str().map(crate::WebhookId::from)
}

/// One catalog entry as `GET /v1/event-types` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventTypeInfo {
    /// Event name, e.g. `message.received`.
    pub name: String,
    /// Category of the vendor catalog, or `Custom` for config extras.
    pub category: String,
    /// One-line human description.
    pub description: String,
}

/// The built-in catalog: (category, [(name, description)]), in the order of the
/// vendor documentation.
pub const BUILTIN_CATEGORIES: &[(&str, &[(&str, &str)])] = &[
    (
        "Messages",
        &[
            ("message.received", "A message was received by the device."),
            ("message.sent", "A message was sent from the device."),
            (
                "message.delivered",
                "Outbound messages were delivered to the recipient.",
            ),
            (
                "message.read",
                "Outbound messages were read by the recipient.",
            ),
            (
                "message.undecryptable",
                "A message arrived that could not be decrypted.",
            ),
            (
                "message.delete_for_me",
                "A message was deleted for this device only.",
            ),
            ("mention.sent", "A message mentioning contacts was sent."),
            ("media.retry", "A media download was retried."),
        ],
    ),
    (
        "Connection & session",
        &[
            ("device.connected", "The device connected."),
            ("device.disconnected", "The device disconnected."),
            ("device.logged_out", "The device was logged out."),
            ("connection.pair_error", "Pairing the device failed."),
            (
                "connection.stream_replaced",
                "Another session replaced this connection.",
            ),
            ("connection.failure", "The connection failed."),
            (
                "connection.temporary_ban",
                "The account was temporarily banned.",
            ),
            (
                "connection.manual_reconnect",
                "A manual reconnect was requested.",
            ),
            (
                "connection.keepalive_timeout",
                "Keep-alive pings timed out.",
            ),
            (
                "connection.keepalive_restored",
                "Keep-alive pings were restored.",
            ),
            ("qr.generated", "A pairing QR code was generated."),
            ("pair.success", "The device was paired successfully."),
        ],
    ),
    (
        "Contacts & chats",
        &[
            ("contact.presence", "A contact's presence changed."),
            ("contact.changed", "A contact was changed."),
            ("contact.pushname", "A contact's push name changed."),
            ("contact.about", "A contact's about text changed."),
            ("contact.picture", "A contact's picture changed."),
            (
                "chat.presence",
                "Chat presence (typing, recording) changed.",
            ),
            ("chat.mark_as_read", "A chat was marked as read."),
            ("chat.pin", "A chat was pinned or unpinned."),
            ("chat.mute", "A chat was muted or unmuted."),
            ("chat.archive", "A chat was archived or unarchived."),
            ("chat.delete", "A chat was deleted."),
            ("chat.clear", "A chat was cleared."),
        ],
    ),
    (
        "Groups",
        &[
            ("group.info", "A group's information changed."),
            ("group.joined", "The device joined a group."),
        ],
    ),
    (
        "Calls",
        &[
            ("call.offer", "An incoming call was offered."),
            ("call.accept", "A call was accepted."),
            ("call.pre_accept", "A call was pre-accepted."),
            ("call.reject", "A call was rejected."),
            ("call.terminate", "A call ended."),
            ("call.relay_latency", "Call relay latency was reported."),
            ("call.transport", "Call transport information was reported."),
            ("call.unknown", "An unrecognised call event occurred."),
        ],
    ),
    (
        "Security & privacy",
        &[
            ("identity.change", "A contact's identity key changed."),
            ("privacy.blocklist", "The blocklist changed."),
            ("privacy.settings", "Privacy settings changed."),
        ],
    ),
    (
        "Settings & labels",
        &[
            (
                "settings.unarchive_chats",
                "The unarchive-chats setting changed.",
            ),
            (
                "settings.user_status_mute",
                "A user's status updates were muted or unmuted.",
            ),
            ("label.edit", "A label was created or edited."),
            (
                "label.association_chat",
                "A label was attached to or removed from a chat.",
            ),
            (
                "label.association_message",
                "A label was attached to or removed from a message.",
            ),
        ],
    ),
    (
        "Newsletters",
        &[
            ("newsletter.join", "The device joined a newsletter."),
            ("newsletter.leave", "The device left a newsletter."),
            ("newsletter.live_update", "A newsletter was updated live."),
            (
                "newsletter.mute_change",
                "A newsletter was muted or unmuted.",
            ),
        ],
    ),
    (
        "Sync",
        &[
            ("history.sync", "Message history was synchronised."),
            (
                "offline.sync_preview",
                "A preview of offline sync is available.",
            ),
            ("offline.sync_completed", "Offline sync completed."),
            ("app_state.sync_complete", "App state sync completed."),
        ],
    ),
    (
        "Channels & CRM",
        &[
            (
                "incoming_instagram_message",
                "An Instagram message was received.",
            ),
            (
                "outgoing_instagram_message",
                "An Instagram message was sent.",
            ),
            (
                "incoming_telegram_message",
                "A Telegram message was received.",
            ),
            ("outgoing_telegram_message", "A Telegram message was sent."),
            (
                "incoming_messenger_message",
                "A Messenger message was received.",
            ),
            (
                "outgoing_messenger_message",
                "A Messenger message was sent.",
            ),
            (
                "incoming_website_message",
                "A website chat message was received.",
            ),
            (
                "outgoing_website_message",
                "A website chat message was sent.",
            ),
            ("contact_created", "A contact was created."),
            ("contact_tag_added", "A tag was added to a contact."),
            ("contact_tag_removed", "A tag was removed from a contact."),
        ],
    ),
    (
        "Webhooks",
        &[(
            WEBHOOK_DISABLED,
            "One of the device's webhooks was disabled after failing for too long.",
        )],
    ),
];

/// The set of subscribable event names: the built-ins plus operator extras.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Subscribable names in catalog order.
    names: Vec<String>,
    index: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    extra: Vec<String>,
}

impl Catalog {
    /// The built-in catalog without extras.
    pub fn builtin() -> Self {
        Self::with_extra(&[])
    }

    /// The built-in catalog plus operator-configured names (duplicates ignored).
    pub fn with_extra(extra: &[String]) -> Self {
        let mut names: Vec<String> = BUILTIN_CATEGORIES
            .iter()
            .flat_map(|(_, entries)| entries.iter().map(|(n, _)| (*n).to_owned()))
            .collect();
        let mut index: BTreeSet<String> = names.iter().cloned().collect();
        let mut extras = Vec::new();
        for name in extra {
            if index.insert(name.clone()) {
                names.push(name.clone());
                extras.push(name.clone());
            }
        }
        let prefixes = names
            .iter()
            .filter_map(|n| n.split_once('.').map(|(p, _)| p.to_owned()))
            .collect();
        Self {
            names,
            index,
            prefixes,
            extra: extras,
        }
    }

    /// Every subscribable name, in catalog order (what `GET /webhook/events` lists).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `name` is a subscribable catalog name.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains(name)
    }

    /// Whether producers may publish `name`: catalog names except the
    /// engine's own `webhook.*` events.
    pub fn is_publishable(&self, name: &str) -> bool {
        self.contains(name) && name != WEBHOOK_DISABLED
    }

    /// Whether `entry` is a valid subscription entry: a catalog name, `*`, or
    /// `prefix.*` with a prefix some catalog name has.
    pub fn is_valid_filter(&self, entry: &str) -> bool {
        if entry == "*" || self.contains(entry) {
            return true;
        }
        match entry.strip_suffix(".*") {
            Some(prefix) => self.prefixes.contains(prefix),
            None => false,
        }
    }

    /// Whether `event_type` is selected by `filter` (a list of entries).
    pub fn matches_any(&self, filter: &[String], event_type: &str) -> bool {
        filter.iter().any(|f| pattern_matches(f, event_type))
    }

    /// Every entry of the catalog with category and description.
    pub fn describe(&self) -> Vec<EventTypeInfo> {
        let mut out: Vec<EventTypeInfo> = BUILTIN_CATEGORIES
            .iter()
            .flat_map(|(cat, entries)| {
                entries.iter().map(move |(n, d)| EventTypeInfo {
                    name: (*n).to_owned(),
                    category: (*cat).to_owned(),
                    description: (*d).to_owned(),
                })
            })
            .collect();
        out.extend(self.extra.iter().map(|n| EventTypeInfo {
            name: n.clone(),
            category: "Custom".to_owned(),
            description: "Operator-defined event (catalog.extra).".to_owned(),
        }));
        out
    }
}

/// Whether one subscription entry selects `event_type`.
///
/// `*` selects everything; `p.*` selects names starting with `p.`; anything
/// else must be equal. `webhook.test` is never selected by a filter: it is
/// delivered only to the webhook under test.
fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if event_type == WEBHOOK_TEST {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        return event_type.len() > prefix.len() + 1
            && event_type.starts_with(prefix)
            && event_type.as_bytes()[prefix.len()] == b'.';
    }
    pattern == event_type
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn builtin_catalog_has_every_vendor_name() {
        let c = Catalog::builtin();
        // 8 + 12 + 12 + 2 + 8 + 3 + 5 + 4 + 4 vendor names, 11 of other
        // channels and the CRM, plus webhook.disabled.
        assert_eq!(c.names().len(), 70);
        assert!(c.contains("contact_tag_removed"));
        assert!(c.is_publishable("incoming_telegram_message"));
        assert!(c.contains("app_state.sync_complete"));
        assert!(c.contains(WEBHOOK_DISABLED));
        assert!(!c.contains(WEBHOOK_TEST));
        assert_eq!(c.describe().len(), 70);
    }

    #[test]
    fn patterns_match_exact_prefix_and_star() {
        let c = Catalog::builtin();
        assert!(c.matches_any(&f(&["message.received"]), "message.received"));
        assert!(!c.matches_any(&f(&["message.received"]), "message.sent"));
        assert!(c.matches_any(&f(&["message.*"]), "message.sent"));
        assert!(!c.matches_any(&f(&["message.*"]), "mention.sent"));
        assert!(!c.matches_any(&f(&["message.*"]), "messages.sent"));
        assert!(c.matches_any(&f(&["*"]), "call.offer"));
        assert!(!c.matches_any(&f(&["*"]), WEBHOOK_TEST));
        assert!(!c.matches_any(&f(&[]), "call.offer"));
    }

    #[test]
    fn filters_are_validated_against_the_catalog() {
        let c = Catalog::with_extra(&f(&["billing.paid"]));
        assert!(c.is_valid_filter("*"));
        assert!(c.is_valid_filter("message.*"));
        assert!(c.is_valid_filter("billing.*"));
        assert!(c.is_valid_filter("billing.paid"));
        assert!(!c.is_valid_filter("nope.*"));
        assert!(!c.is_valid_filter("message.nope"));
        assert!(!c.is_valid_filter("message*"));
        assert!(!c.is_valid_filter(""));
        assert_eq!(
            c.describe().last().map(|e| e.category.as_str()),
            Some("Custom")
        );
        assert!(!c.is_publishable(WEBHOOK_DISABLED));
        assert!(c.is_publishable("billing.paid"));
    }
}
