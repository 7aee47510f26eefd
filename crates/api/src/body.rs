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

/// Parses a JSON object body. A missing content type is accepted; any other
/// than JSON answers 415; over the size limit 413; malformed JSON 400 naming
/// the problem.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Value>, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
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
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::validation(
            "request body must be a JSON object",
            vec![],
        )),
        Err(e) => Err(ApiError::validation(format!("malformed JSON: {e}"), vec![])),
    }
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
