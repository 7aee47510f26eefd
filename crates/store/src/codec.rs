//! The one place values are encoded: a format-version byte, then bincode 2
//! (serde mode, standard config). A reader refuses any other version byte, so
//! a future format can be introduced next to this one and dispatched on.

use crate::StoreError;
use serde::{de::DeserializeOwned, Serialize};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes `value` behind the version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(FORMAT_VERSION, value)
}

/// Encodes `value` behind `version`: for record kinds whose layout moved on
/// (their readers dispatch on [`version_of`]).
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, version, value);
    out
}

/// Appends `value` encoded behind `version` to `out` (the bytes
/// [`encode_as`] returns), for a value written inside a larger buffer.
pub fn encode_into<T: Serialize>(out: &mut Vec<u8>, version: u8, value: &T) {
    out.push(version);
    // Encoding our own plain data types into a Vec cannot fail.
    if let Err(e) = bincode::serde::encode_into_std_write(value, out, bincode::config::standard()) {
        unreachable!("bincode encoding into a Vec failed: {e}");
    }
}

/// Decodes a value written by [`encode`]; `what` names the record in errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    decode_as(FORMAT_VERSION, bytes, what)
}

/// The version byte of an encoded value.
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Decodes a value written by [`encode_as`] with `version`.
pub fn decode_as<T: DeserializeOwned>(
    version: u8,
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == version => {
            // A corrupt length prefix must not become a huge allocation: the
            // limit caps what containers may claim, scaled to the input (no
            // record decodes to more than 16× its encoded size).
            macro_rules! with_limit {
                ($n:expr) => {
                    bincode::serde::decode_from_slice(
                        rest,
                        bincode::config::standard().with_limit::<{ $n }>(),
                    )
                };
            }
            let decoded: Result<(T, usize), _> = if rest.len() <= 1 << 16 {
                with_limit!(1 << 20)
            } else if rest.len() <= 1 << 22 {
                with_limit!(1 << 26)
            } else if rest.len() <= 1 << 26 {
                with_limit!(1 << 30)
            } else {
                with_limit!(1 << 34)
            };
            decoded
                .map(|(v, _)| v)
                .map_err(|_| StoreError::Corrupt { what })
        }
        _ => Err(StoreError::Corrupt { what }),
    }
}

/// The start of an encoded [`crate::Chunk`]: its append time and event
/// count, read without decoding the events (bincode writes struct fields in
/// order, and a `Vec` as its length followed by the items).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ChunkHead {
    /// Append time, unix ms.
    pub appended_at_ms: i64,
    /// Number of events.
    pub len: u64,
}

/// Reads the [`ChunkHead`] of an encoded chunk.
pub fn decode_chunk_head(bytes: &[u8]) -> Result<ChunkHead, StoreError> {
    decode(bytes, "event chunk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::Event;

    /// Webhooks written when they kept one rotated-out secret (an `Option`)
    /// read back as a list of zero or one.
    #[test]
    fn an_option_reads_back_as_a_list_of_at_most_one() {
        #[derive(serde::Serialize)]
        struct Before(Option<(String, i64)>, u8);
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct After(Vec<(String, i64)>, u8);
        let some = encode(&Before(Some(("old".into(), 7)), 9));
        assert_eq!(
            decode::<After>(&some, "t").ok(),
            Some(After(vec![("old".into(), 7)], 9))
        );
        let none = encode(&Before(None, 9));
        assert_eq!(decode::<After>(&none, "t").ok(), Some(After(vec![], 9)));
    }

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let e = Event {
            id: "evt_1".into(),
            device_id: "d".into(),
            event_type: "message.received".into(),
            occurred_at_ms: -5,
            data: "{}".into(),
        };
        let bytes = encode(&e);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Event>(&bytes, "event").ok(), Some(e));
        let mut other = bytes.clone();
        other[0] = 99;
        assert!(decode::<Event>(&other, "event").is_err());
        assert!(decode::<Event>(&[], "event").is_err());
        assert!(decode::<Event>(&bytes[..bytes.len() - 1], "event").is_err());
    }

    /// Regression: a length prefix claiming exabytes aborted the process
    /// (found by the property test in tests/fuzz.rs).
    #[test]
    fn a_huge_length_claim_is_corrupt_not_an_abort() {
        let mut bytes = vec![FORMAT_VERSION, 0];
        bytes.extend_from_slice(&[0xfd, 0x3d, 0x51, 0x6a, 0xd1, 0x35, 0xbb, 0x51, 0x51]);
        bytes.extend_from_slice(&[7; 16]);
        assert!(decode::<crate::Chunk>(&bytes, "chunk").is_err());
        let mut claim = vec![FORMAT_VERSION, 0xfd];
        claim.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&claim, "bytes").is_err());
    }

    #[test]
    fn chunk_head_reads_time_and_count_only() {
        let e = Event {
            id: "evt_1".into(),
            device_id: "d".into(),
            event_type: "message.received".into(),
            occurred_at_ms: 3,
            data: "{}".into(),
        };
        let bytes = encode(&crate::Chunk {
            appended_at_ms: 1_781_827_200_123,
            events: vec![e.clone(), e.clone(), e],
        });
        let head = decode_chunk_head(&bytes).expect("head");
        assert_eq!(
            head,
            ChunkHead {
                appended_at_ms: 1_781_827_200_123,
                len: 3
            }
        );
    }
}
