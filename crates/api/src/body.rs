//! Request bodies: content type, size limit and JSON parsing, with errors in
//! the caller's envelope; and typed reading of webhook fields.

use crate::error::ApiError;
use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{header, HeaderMap, StatusCode},
};
use hookrelay_core::{FieldError, RetryPolicy, WebhookInput};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Parses a JSON object body. A body whose content type is missing or not
/// JSON answers 415 (an empty body needs none); over the size limit 413;
/// malformed JSON 400 naming the problem, duplicate keys included (as
/// ingest refuses them: "last one wins" would let two readers of one
/// document see different webhooks).
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    let json = headers.get(header::CONTENT_TYPE).is_some_and(|ct| {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence == "application/json" || essence.ends_with("+json")
    });
    if headers.contains_key(header::CONTENT_TYPE) && !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::validation(format!("could not read request body: {r}"), vec![])
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if let Some(key) = duplicate_key(&bytes) {
        return Err(ApiError::validation(
            format!("malformed JSON: duplicate key {key:?}"),
            vec![],
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::validation(
            "request body must be a JSON object",
            vec![],
        )),
        Err(e) => Err(ApiError::validation(format!("malformed JSON: {e}"), vec![])),
    }
}

/// The first key that appears twice in one object of `bytes`, at any depth
/// (`None` also for malformed JSON: the parser reports that).
fn duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::{cell::RefCell, collections::HashSet};

    /// Walks a value, noting the first repeated key in `found`.
    struct Walk<'a>(&'a RefCell<Option<String>>);

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) && self.0.borrow().is_none() {
                    *self.0.borrow_mut() = Some(key);
                }
                map.next_value_seed(Walk(self.0))?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk(self.0))?.is_some() {}
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk(&found).deserialize(&mut de).ok()?;
    found.into_inner()
}

/// Collects typed fields of a JSON object, reporting every type error.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    pub(crate) errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: Vec::new(),
        }
    }

    /// The first present key of `names` (aliases), and its value.
    fn get(&self, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        names
            .iter()
            .find_map(|n| self.map.get(*n).map(|v| (*n, v)))
            .filter(|(_, v)| !v.is_null())
    }

    fn bad(&mut self, field: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        });
    }

    pub(crate) fn string(&mut self, names: &[&'static str]) -> Option<String> {
        let (name, v) = self.get(names)?;
        match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.bad(name, "must be a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, names: &[&'static str]) -> Option<bool> {
        let (name, v) = self.get(names)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.bad(name, "must be true or false");
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, names: &[&'static str]) -> Option<i64> {
        let (name, v) = self.get(names)?;
        match v.as_i64() {
            Some(i) => Some(i),
            None => {
                self.bad(name, "must be an integer");
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, names: &[&'static str]) -> Option<Vec<String>> {
        let (name, v) = self.get(names)?;
        let list = v.as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        if list.is_none() {
            self.bad(name, "must be an array of strings");
        }
        list
    }

    pub(crate) fn string_map(
        &mut self,
        names: &[&'static str],
    ) -> Option<BTreeMap<String, String>> {
        let (name, v) = self.get(names)?;
        let map = v.as_object().and_then(|o| {
            o.iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect::<Option<BTreeMap<_, _>>>()
        });
        if map.is_none() {
            self.bad(name, "must be an object of string values");
        }
        map
    }

    pub(crate) fn retry_policy(&mut self, names: &[&'static str]) -> Option<RetryPolicy> {
        let (name, v) = self.get(names)?;
        match serde_json::from_value::<RetryPolicy>(v.clone()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.bad(name, &format!("invalid retry policy: {e}"));
                None
            }
        }
    }
}

/// Reads webhook fields (with the `/v1` aliases) from a JSON object.
pub(crate) fn webhook_input(map: &Map<String, Value>) -> Result<WebhookInput, Vec<FieldError>> {
    let mut f = Fields::new(map);
    let input = WebhookInput {
        url: f.string(&["webhook_url", "url", "serverUrl"]),
        events: f.strings(&["enabled_events", "events"]),
        active: f.boolean(&["enabled", "active"]),
        retry_attempts: f.integer(&["retry_attempts"]),
        timeout: f.integer(&["timeout"]),
        secret: match map.get("secret") {
            Some(Value::Null) => Some(String::new()),
            _ => f.string(&["secret"]),
        },
        headers: f.string_map(&["headers"]),
        name: f.string(&["name"]),
        retry_policy: f.retry_policy(&["retry_policy"]),
        rate_limit: f.integer(&["rate_limit"]),
    };
    if f.errors.is_empty() {
        Ok(input)
    } else {
        Err(f.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
        }
        h
    }

    #[test]
    fn a_body_must_say_it_is_json_and_have_each_key_once() {
        let body = || Ok(Bytes::from_static(br#"{"url":"https://a.example"}"#));
        assert!(json_object(&headers(Some("application/json")), body()).is_ok());
        assert!(json_object(&headers(Some("application/merge-patch+json")), body()).is_ok());
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert!(
                matches!(
                    json_object(&headers(ct), body()),
                    Err(ApiError::UnsupportedMediaType)
                ),
                "{ct:?}"
            );
        }
        // An empty body needs no content type.
        assert!(json_object(&headers(None), Ok(Bytes::new())).is_ok());
        for dup in [
            &br#"{"url":"https://a.example","url":"https://b.example"}"#[..],
            br#"{"retry_policy":{"backoff":"fixed","backoff":"linear"}}"#,
            br#"{"headers":[{"a":1,"a":2}]}"#,
        ] {
            let r = json_object(
                &headers(Some("application/json")),
                Ok(Bytes::from_static(dup)),
            );
            assert!(
                matches!(&r, Err(ApiError::Validation { message, .. }) if message.contains("duplicate key")),
                "{r:?}"
            );
        }
    }
}
