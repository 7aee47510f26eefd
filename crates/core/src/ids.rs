//! Identifier newtypes and their generators.

use serde::{Deserialize, Serialize};
use std::fmt;

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
