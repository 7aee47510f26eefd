//! Wall-clock helpers. All stored times are unix milliseconds (`i64`).

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 (UTC, `Z`) text of a unix-milliseconds time, whole seconds.
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// RFC 3339 text of now.
pub fn rfc3339_now() -> String {
    rfc3339_ms(now_ms())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_seconds() {
        assert_eq!(super::rfc3339_ms(1_781_827_200_999), "2026-06-19T00:00:00Z");
    }
}
