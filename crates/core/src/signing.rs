//! The delivery envelope (docs/receiving.md) and both signature schemes.
//!
//! The unsigned envelope is built once per event; each webhook's body adds the
//! in-body `signature` member, and each attempt signs that body with the
//! Standard Webhooks scheme.

use base64::{
    alphabet,
    engine::{general_purpose::STANDARD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lenient standard-alphabet decoder: padding optional, trailing bits allowed
/// (what common Standard Webhooks libraries accept).
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping matches JSON.stringify for ordinary text.
    match serde_json::to_writer(&mut *out, s) {
        Ok(()) => {}
        Err(_) => unreachable!("writing a str to a Vec cannot fail"),
    }
}

/// The envelope without signature:
/// `{"id":..,"event":..,"timestamp":..,"device_id":..,"data":..}`.
/// `data` must already be compact JSON.
pub fn envelope(id: &str, event: &str, timestamp_s: i64, device_id: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + id.len() + event.len() + device_id.len() + data.len());
    out.extend_from_slice(b"{\"id\":");
    push_json_str(&mut out, id);
    out.extend_from_slice(b",\"event\":");
    push_json_str(&mut out, event);
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(timestamp_s.to_string().as_bytes());
    out.extend_from_slice(b",\"device_id\":");
    push_json_str(&mut out, device_id);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    out
}

/// `"sha256=" + hex(HMAC-SHA256(secret bytes, unsigned))`: the in-body signature.
pub fn body_signature(secret: &str, unsigned: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac(secret.as_bytes(), &[unsigned]))
    )
}

/// The body a webhook receives: the unsigned envelope, plus the in-body
/// `signature` member when the webhook has a secret.
pub fn signed_body(unsigned: &[u8], secret: Option<&str>) -> Vec<u8> {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return unsigned.to_vec();
    };
    let sig = body_signature(secret, unsigned);
    let mut out = Vec::with_capacity(unsigned.len() + sig.len() + 16);
    // The envelope always ends with `}`: drop it, append the member, close.
    out.extend_from_slice(&unsigned[..unsigned.len().saturating_sub(1)]);
    out.extend_from_slice(b",\"signature\":\"");
    out.extend_from_slice(sig.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// The Standard Webhooks key of a secret: the part after an optional `whsec_`
/// decoded as base64 when it is made only of the standard alphabet and
/// decodes; otherwise the raw bytes of the whole secret.
pub fn standard_key(secret: &str) -> Vec<u8> {
    let rest = secret.strip_prefix("whsec_").unwrap_or(secret);
    let alphabet_only = !rest.is_empty()
        && rest
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if alphabet_only {
        if let Ok(key) = LENIENT_B64.decode(rest) {
            return key;
        }
    }
    secret.as_bytes().to_vec()
}

/// One `v1,<base64>` Standard Webhooks signature.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let key = standard_key(secret);
    let ts = timestamp_s.to_string();
    let mac = hmac(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `webhook-signature` header value: one signature per secret,
/// space-separated (several during a rotation's grace period).
pub fn signature_header(secrets: &[&str], msg_id: &str, timestamp_s: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| standard_signature(s, msg_id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed with Python's hmac/hashlib/base64 (see the commit that
    // added them); they pin both schemes to an independent implementation.
    const UNSIGNED: &str = r#"{"id":"evt_1","event":"message.received","timestamp":1781827200,"device_id":"dev-1","data":{"a":1}}"#;
    const SECRET: &str = "whsec_9f3c1a2b7d4e5f60";

    #[test]
    fn envelope_has_contract_key_order() {
        let got = envelope(
            "evt_1",
            "message.received",
            1_781_827_200,
            "dev-1",
            r#"{"a":1}"#,
        );
        assert_eq!(String::from_utf8_lossy(&got), UNSIGNED);
    }

    #[test]
    fn in_body_signature_matches_python_vector() {
        let body = signed_body(UNSIGNED.as_bytes(), Some(SECRET));
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"id":"evt_1","event":"message.received","timestamp":1781827200,"device_id":"dev-1","data":{"a":1},"signature":"sha256=c8f230ba370a4f768547e5d616485c80b9876cc5a69b907f8673bf5b7757a4cb"}"#
        );
        assert_eq!(signed_body(UNSIGNED.as_bytes(), None), UNSIGNED.as_bytes());
        assert_eq!(
            signed_body(UNSIGNED.as_bytes(), Some("")),
            UNSIGNED.as_bytes()
        );
    }

    #[test]
    fn standard_signature_matches_python_vector_base64_key() {
        let body = signed_body(UNSIGNED.as_bytes(), Some(SECRET));
        assert_eq!(
            standard_signature(SECRET, "evt_1", 1_781_827_300, &body),
            "v1,3qHANlJS6zYF3EHm7xIX+zwylB8paczx9qYNvRfQrWo="
        );
    }

    #[test]
    fn standard_signature_matches_python_vector_raw_key() {
        let secret = "a-long-random-string!";
        let body = signed_body(UNSIGNED.as_bytes(), Some(secret));
        assert_eq!(
            standard_signature(secret, "evt_1", 1_781_827_300, &body),
            "v1,3c9YgcBNmzb/Ws9vfbHbkEjspSSUH2rqSHkBmf+wmts="
        );
    }

    #[test]
    fn key_derivation_rules() {
        assert_eq!(standard_key("whsec_AAAA"), vec![0, 0, 0]);
        assert_eq!(standard_key("whsec_AAA"), vec![0, 0]);
        assert_eq!(standard_key("AAAA"), vec![0, 0, 0]);
        assert_eq!(standard_key("whsec_a-b"), b"whsec_a-b".to_vec());
        assert_eq!(standard_key("whsec_"), b"whsec_".to_vec());
        assert_eq!(standard_key("whsec_A"), b"whsec_A".to_vec());
    }

    #[test]
    fn rotation_header_joins_signatures() {
        let h = signature_header(&["whsec_AAAA", "whsec_BBBB"], "m", 1, b"{}");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
