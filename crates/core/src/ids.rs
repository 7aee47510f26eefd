//! Identifier newtypes and their generators.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The address a request came from, in its extensions: the server's
/// listeners put it there for the per-address limits of REST and gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Position of an event in the log. Sequences start at 1 and never repeat.
pub type Seq = u64;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A webhook id, `wh_` followed by 32 hex digits.
    WebhookId
);
string_id!(
    /// An app's id, which is the `device_id` its events carry.
    DeviceId
);
string_id!(
    /// An organization (tenant) id, `org_` followed by 32 hex digits.
    OrgId
);

impl WebhookId {
    /// The id's 128 bits written as a hyphenated UUID (for APIs whose
    /// webhook ids are UUIDs); `None` for an id not made by
    /// [`new_webhook_id`].
    pub fn as_uuid(&self) -> Option<String> {
        let hex = self.0.strip_prefix("wh_")?;
        let u = uuid::Uuid::try_parse(hex).ok()?;
        (u.simple().to_string() == hex).then(|| u.hyphenated().to_string())
    }

    /// The webhook id a UUID (hyphenated or not, any case) writes.
    pub fn from_uuid(s: &str) -> Option<Self> {
        let u = uuid::Uuid::try_parse(s).ok()?;
        Some(Self(format!("wh_{}", u.simple())))
    }
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh webhook id.
pub fn new_webhook_id() -> WebhookId {
    WebhookId(format!("wh_{}", random_hex()))
}

/// A fresh organization id.
pub fn new_org_id() -> OrgId {
    OrgId(format!("org_{}", random_hex()))
}

/// A fresh event id, for events whose producer gave none.
pub fn new_event_id() -> String {
    format!("evt_{}", random_hex())
}

/// A fresh device-token id (`tok_…`; the token itself is a UUID v4).
pub fn new_token_id() -> String {
    format!("tok_{}", random_hex())
}

/// A fresh organization ingest-key id (`ikid_…`; the key is `ik_…`).
pub fn new_ingest_key_id() -> String {
    format!("ikid_{}", random_hex())
}

/// A server-assigned device id: a UUID v4 (docs/api.md, docs/security.md).
pub fn new_device_id() -> DeviceId {
    DeviceId(uuid::Uuid::new_v4().to_string())
}

/// A fresh request id (`req_…`), for requests that bring none.
pub fn new_request_id() -> String {
    format!("req_{}", random_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_round_trip_through_uuids() {
        let id = new_webhook_id();
        let u = id.as_uuid().expect("a uuid");
        assert_eq!(u.len(), 36);
        assert_eq!(WebhookId::from_uuid(&u), Some(id.clone()));
        assert_eq!(WebhookId::from_uuid(&u.to_uppercase()), Some(id));
        assert_eq!(WebhookId::from("wh_1").as_uuid(), None);
        assert_eq!(
            WebhookId::from_uuid("b1ffcd11-1d1c-5fg9-cc7e-7cc0ce491b22"),
            None
        );
    }
}
