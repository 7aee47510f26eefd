//! Key encodings. Integers are big-endian so sled's byte order is numeric order.

use hookrelay_core::{DeliveryKey, Seq, WebhookId};

pub(crate) const META_FORMAT: &[u8] = b"format_version";
pub(crate) const META_CURSOR: &[u8] = b"dispatch_cursor";
/// Highest sequence retention removed from the log (u64).
pub(crate) const META_LOG_HORIZON: &[u8] = b"log_horizon";

/// `seq ++ generation ++ webhook id`: orders deliveries by log position.
pub(crate) fn delivery(k: &DeliveryKey) -> Vec<u8> {
    let wh = k.webhook_id.as_str().as_bytes();
    let mut out = Vec::with_capacity(12 + wh.len());
    out.extend_from_slice(&k.seq.to_be_bytes());
    out.extend_from_slice(&k.generation.to_be_bytes());
    out.extend_from_slice(wh);
    out
}

pub(crate) fn parse_delivery(b: &[u8]) -> Option<DeliveryKey> {
    if b.len() < 12 {
        return None;
    }
    let seq = Seq::from_be_bytes(b[..8].try_into().ok()?);
    let generation = u32::from_be_bytes(b[8..12].try_into().ok()?);
    let wh = std::str::from_utf8(&b[12..]).ok()?;
    Some(DeliveryKey {
        seq,
        generation,
        webhook_id: WebhookId::from(wh),
    })
}

/// `due ms ++ delivery key`.
pub(crate) fn due(at_ms: i64, k: &DeliveryKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    out.extend_from_slice(&delivery(k));
    out
}

pub(crate) fn parse_due(b: &[u8]) -> Option<(i64, DeliveryKey)> {
    let at = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    Some((i64::try_from(at).ok()?, parse_delivery(&b[8..])?))
}

/// `webhook id ++ 0 ++ seq ++ generation ++ attempt`: a webhook's attempts in
/// log order.
pub(crate) fn attempt(k: &DeliveryKey, attempt: u32) -> Vec<u8> {
    let mut out = attempt_prefix(&k.webhook_id);
    out.extend_from_slice(&k.seq.to_be_bytes());
    out.extend_from_slice(&k.generation.to_be_bytes());
    out.extend_from_slice(&attempt.to_be_bytes());
    out
}

/// The event sequence of an attempt key (the 8 bytes after the webhook id
/// and its NUL terminator; webhook ids contain no NUL).
pub(crate) fn attempt_seq(k: &[u8]) -> Option<u64> {
    let nul = k.iter().position(|b| *b == 0)?;
    let seq = k.get(nul + 1..nul + 9)?;
    Some(u64::from_be_bytes(seq.try_into().ok()?))
}

pub(crate) fn attempt_prefix(wh: &WebhookId) -> Vec<u8> {
    let mut out = Vec::with_capacity(wh.as_str().len() + 17);
    out.extend_from_slice(wh.as_str().as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order_numerically() {
        let k = DeliveryKey {
            seq: 300,
            generation: 1,
            webhook_id: WebhookId::from("wh_a"),
        };
        assert_eq!(parse_delivery(&delivery(&k)), Some(k.clone()));
        assert_eq!(parse_due(&due(5, &k)), Some((5, k.clone())));
        assert!(due(255, &k) < due(256, &k));
        let k2 = DeliveryKey {
            seq: 2,
            ..k.clone()
        };
        assert!(delivery(&k2) < delivery(&k));
    }
}
