//! Events: what a producer sends, how it is validated, what the log stores.

use crate::{catalog::Catalog, ids::new_event_id, json::canonical_json_object};
use serde::{Deserialize, Serialize};

/// Longest accepted `id` and `device_id`, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Earliest accepted occurred-at time: 2000-01-01T00:00:00Z, unix ms.
pub(crate) const MIN_OCCURRED_AT_MS: i64 = 946_684_800_000;
/// How far past the server's clock an occurred-at time may be, ms (24 h).
pub(crate) const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// An event as it arrives from a producer (gRPC or HTTP), not yet validated.
#[derive(Clone, Debug, Default)]
pub struct RawEvent {
    /// Producer's idempotency key; empty means "make one".
    pub id: String,
    /// Device (app) id; required.
    pub device_id: String,
    /// Catalog name; required.
    pub event_type: String,
    /// Occurred-at time in unix milliseconds, if the producer gave one.
    pub occurred_at_ms: Option<i64>,
    /// UTF-8 JSON object bytes.
    pub data: Vec<u8>,
}

/// A validated event, as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event id (the producer's, or `evt_...`).
    pub id: String,
    /// Device (app) id.
    pub device_id: String,
    /// Catalog name.
    pub event_type: String,
    /// Occurred-at time, unix milliseconds.
    pub occurred_at_ms: i64,
    /// The data object, compact JSON.
    pub data: String,
}

/// Why an event was refused; `field` names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    /// The offending field (`device_id`, `event_type`, `data`, `id`, `event`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl EventError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Validates a producer event against the catalog and size limit and returns
/// the form the log stores. `now_ms` fills a missing occurred-at time.
pub fn validate_event(
    raw: RawEvent,
    catalog: &Catalog,
    max_event_bytes: usize,
    now_ms: i64,
) -> Result<Event, EventError> {
    // The limit is on `data`; the other fields have their own small limits.
    if raw.data.len() > max_event_bytes {
        return Err(EventError::new(
            "data",
            format!(
                "is {} bytes, over the limit of {max_event_bytes} bytes",
                raw.data.len()
            ),
        ));
    }
    if raw.device_id.trim().is_empty() {
        return Err(EventError::new("device_id", "is required"));
    }
    if raw.device_id.len() > MAX_ID_LEN || raw.device_id.chars().any(char::is_control) {
        return Err(EventError::new(
            "device_id",
            format!("must be at most {MAX_ID_LEN} bytes without control characters"),
        ));
    }
    // Visible ASCII only: the id travels as the `webhook-id` header and is
    // signed there; HTTP stacks trim spaces and re-decode other bytes, which
    // would break the signature and receivers' deduplication.
    if raw.id.len() > MAX_ID_LEN || !raw.id.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(EventError::new(
            "id",
            format!("must be 1 to {MAX_ID_LEN} visible ASCII characters (0x21-0x7E), no spaces"),
        ));
    }
    if let Some(at) = raw.occurred_at_ms {
        if !(MIN_OCCURRED_AT_MS..=now_ms.saturating_add(MAX_FUTURE_MS)).contains(&at) {
            return Err(EventError::new(
                "occurred_at",
                "must be between 2000-01-01T00:00:00Z and 24 hours from now",
            ));
        }
    }
    if raw.event_type.is_empty() {
        return Err(EventError::new("event_type", "is required"));
    }
    if !catalog.is_publishable(&raw.event_type) {
        return Err(EventError::new(
            "event_type",
            format!("unknown event type {:?}", raw.event_type),
        ));
    }
    if raw.data.is_empty() {
        return Err(EventError::new("data", "is required (a JSON object)"));
    }
    let data = canonical_json_object(&raw.data)
        .map_err(|e| EventError::new("data", format!("must be a UTF-8 JSON object: {e}")))?;
    let id = if raw.id.is_empty() {
        new_event_id()
    } else {
        raw.id
    };
    Ok(Event {
        id,
        device_id: raw.device_id,
        event_type: raw.event_type,
        occurred_at_ms: raw.occurred_at_ms.unwrap_or(now_ms),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEvent {
        RawEvent {
            id: String::new(),
            device_id: "dev-1".into(),
            event_type: "message.received".into(),
            occurred_at_ms: None,
            data: br#"{ "a": 1 }"#.to_vec(),
        }
    }

    /// 2026-06-15T12:00:00Z.
    const NOW: i64 = 1_781_524_800_000;

    fn field_of(r: RawEvent) -> &'static str {
        match validate_event(r, &Catalog::builtin(), 1024, NOW) {
            Err(e) => e.field,
            Ok(_) => "ok",
        }
    }

    #[test]
    fn valid_event_gets_id_time_and_compact_data() {
        let e = validate_event(raw(), &Catalog::builtin(), 1024, NOW).expect("valid");
        assert!(e.id.starts_with("evt_"));
        assert_eq!(e.occurred_at_ms, NOW);
        assert_eq!(e.data, r#"{"a":1}"#);
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(
            field_of(RawEvent {
                device_id: String::new(),
                ..raw()
            }),
            "device_id"
        );
        assert_eq!(
            field_of(RawEvent {
                event_type: String::new(),
                ..raw()
            }),
            "event_type"
        );
        assert_eq!(
            field_of(RawEvent {
                event_type: "nope".into(),
                ..raw()
            }),
            "event_type"
        );
        assert_eq!(
            field_of(RawEvent {
                event_type: "webhook.disabled".into(),
                ..raw()
            }),
            "event_type"
        );
        assert_eq!(
            field_of(RawEvent {
                data: b"[1]".to_vec(),
                ..raw()
            }),
            "data"
        );
        assert_eq!(
            field_of(RawEvent {
                data: Vec::new(),
                ..raw()
            }),
            "data"
        );
        assert_eq!(
            field_of(RawEvent {
                data: vec![b' '; 2000],
                ..raw()
            }),
            "data"
        );
        assert_eq!(
            field_of(RawEvent {
                id: "a\nb".into(),
                ..raw()
            }),
            "id"
        );
    }

    /// Ids that HTTP stacks would trim or re-decode in `webhook-id`.
    #[test]
    fn ids_are_visible_ascii() {
        for bad in ["  ", " lead", "trail ", "évt-ü", "a\tb", "a\u{7f}"] {
            assert_eq!(
                field_of(RawEvent {
                    id: bad.into(),
                    ..raw()
                }),
                "id",
                "{bad:?}"
            );
        }
        for good in ["evt_1", "a!~", &"x".repeat(256)] {
            assert_eq!(
                field_of(RawEvent {
                    id: good.to_owned(),
                    ..raw()
                }),
                "ok",
                "{good:?}"
            );
        }
        assert_eq!(
            field_of(RawEvent {
                id: "x".repeat(257),
                ..raw()
            }),
            "id"
        );
    }

    #[test]
    fn occurred_at_is_bounded() {
        for bad in [
            -1,
            0,
            MIN_OCCURRED_AT_MS - 1,
            NOW + MAX_FUTURE_MS + 1,
            i64::MAX,
            i64::MIN,
        ] {
            let r = RawEvent {
                occurred_at_ms: Some(bad),
                ..raw()
            };
            assert_eq!(field_of(r), "occurred_at", "{bad}");
        }
        for good in [MIN_OCCURRED_AT_MS, NOW, NOW + MAX_FUTURE_MS] {
            let r = RawEvent {
                occurred_at_ms: Some(good),
                ..raw()
            };
            assert_eq!(field_of(r), "ok", "{good}");
        }
    }

    /// The limit counts `data` only: exactly the limit passes.
    #[test]
    fn the_size_limit_is_on_data() {
        let pad = 1024 - br#"{"a":""}"#.len();
        let data = format!(r#"{{"a":"{}"}}"#, "x".repeat(pad)).into_bytes();
        assert_eq!(data.len(), 1024);
        let r = RawEvent {
            data,
            id: "i".repeat(200),
            ..raw()
        };
        assert_eq!(field_of(r), "ok");
    }
}
