//! Property tests: decoding arbitrary bytes never panics, and encoded
//! records always decode back to themselves.

use hookrelay_core::{Event, Webhook};
use hookrelay_store::{codec, Chunk};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<Chunk>(&bytes, "chunk");
        let _ = codec::decode::<Webhook>(&bytes, "webhook");
        let _ = codec::decode_chunk_head(&bytes);
        // With the right version byte, the rest is still arbitrary.
        let mut versioned = vec![codec::FORMAT_VERSION];
        versioned.extend_from_slice(&bytes);
        let _ = codec::decode::<Chunk>(&versioned, "chunk");
    }

    #[test]
    fn chunks_round_trip(
        events in prop::collection::vec((".{0,20}", ".{0,20}", ".{0,20}", any::<i64>(), ".{0,60}"), 0..20),
        at in any::<i64>(),
    ) {
        let chunk = Chunk {
            appended_at_ms: at,
            events: events.into_iter().map(|(id, device_id, event_type, occurred_at_ms, data)| Event {
                id, device_id, event_type, occurred_at_ms, data,
            }).collect(),
        };
        let bytes = codec::encode(&chunk);
        prop_assert_eq!(codec::decode::<Chunk>(&bytes, "chunk").ok(), Some(chunk.clone()));
        let head = codec::decode_chunk_head(&bytes).expect("head");
        prop_assert_eq!(head.len, chunk.events.len() as u64);
        prop_assert_eq!(head.appended_at_ms, at);
    }
}
