//! What every [`EventLog`] must do: append, read, heads, the chunk index,
//! finding by time, and idempotency within and past the window.

use crate::{Appended, EventLog, IdemKey};
use hookrelay_core::{now_ms, partition_of, seq_partition, Event, Seq};

const HOUR_MS: i64 = 3_600_000;

fn ev(device: &str, id: &str, ty: &str) -> Event {
    Event {
        id: id.into(),
        device_id: device.into(),
        event_type: ty.into(),
        occurred_at_ms: 1,
        data: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn new_seq(a: &Appended) -> Seq {
    match a {
        Appended::New(seq) => *seq,
        Appended::Duplicate(seq) => panic!("a new event was answered as a duplicate of {seq}"),
    }
}

/// Runs every check on `log`, fresh and empty. Append times are the wall
/// clock's: a shared backend stamps its idempotency keys with its own.
pub async fn check_log(log: &dyn EventLog) {
    let parts = log.partitions();
    assert!(parts >= 1);
    for p in 0..parts {
        assert_eq!(*log.durable_head(p).borrow(), 0, "a fresh log is empty");
        assert!(log.read(p, 0, 10).await.expect("read").is_empty());
    }
    appends_are_durable_partitioned_and_read_back(log).await;
    a_key_within_the_window_is_a_duplicate_and_past_it_is_new(log).await;
    // Last: its appends are dated ahead (append times never go back).
    the_chunk_index_and_append_times_find_chunks(log).await;
}

/// Appends, then reads every event back, by sequence and by partition.
async fn appends_are_durable_partitioned_and_read_back(log: &dyn EventLog) {
    let parts = log.partitions();
    let devices = ["dev-a", "dev-b", "dev-c", "dev-d"];
    let events: Vec<Event> = (0..12)
        .map(|i| ev(devices[i % 4], &format!("evt_{i}"), "message.received"))
        .collect();
    let now = now_ms();
    let taken = log
        .append(events.clone(), vec![], now, now - HOUR_MS)
        .await
        .expect("append");
    assert_eq!(taken.len(), events.len(), "one answer per event");
    for (e, a) in events.iter().zip(&taken) {
        let seq = new_seq(a);
        assert_eq!(seq_partition(seq), partition_of(&e.device_id, parts));
        let back = log.event(seq).await.expect("event").expect("present");
        assert_eq!((back.seq, &*back.event), (seq, e));
        assert_eq!(back.appended_at_ms, now);
    }
    assert!(log.event(u64::MAX >> 1).await.expect("event").is_none());
    let mut total = 0;
    for p in 0..parts {
        let want: Vec<&Event> = events
            .iter()
            .filter(|e| partition_of(&e.device_id, parts) == p)
            .collect();
        let read = log.read(p, 0, 100).await.expect("read");
        assert_eq!(read.len(), want.len(), "partition {p}");
        assert!(read.iter().zip(&want).all(|(r, w)| *r.event == **w));
        assert!(read.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
        if let Some(last) = read.last() {
            assert_eq!(*log.durable_head(p).borrow(), last.seq, "durable on answer");
            assert!(log.head_bound(p).await.expect("bound") >= last.seq);
            // A read from the middle resumes there, and `max` bounds it.
            let mid = &read[read.len() / 2];
            let rest = log.read(p, mid.seq, 100).await.expect("read");
            assert_eq!(rest.first().map(|e| e.seq), Some(mid.seq));
            assert_eq!(log.read(p, 0, 1).await.expect("read").len(), 1);
        }
        total += read.len();
    }
    assert_eq!(total, events.len());
}

/// The chunk index describes each chunk's devices and types; append times
/// find the first chunk at or after a time.
async fn the_chunk_index_and_append_times_find_chunks(log: &dyn EventLog) {
    let parts = log.partitions();
    let device = "dev-index";
    let p = partition_of(device, parts);
    // After every other check's appends.
    let at = now_ms() + 10 * HOUR_MS;
    let first = log
        .append(
            vec![
                ev(device, "ix_1", "message.received"),
                ev(device, "ix_2", "message.received"),
                ev(device, "ix_3", "call.offer"),
            ],
            vec![],
            at,
            at - HOUR_MS,
        )
        .await
        .expect("append");
    let first = new_seq(&first[0]);
    let later = log
        .append(vec![ev(device, "ix_4", "chat.pin")], vec![], at + 5_000, at)
        .await
        .expect("append");
    let later = new_seq(&later[0]);
    let index = log.chunk_index(p, first, 10).await.expect("index");
    let (seq, ix) = index.first().expect("the chunk is indexed");
    assert_eq!((*seq, ix.appended_at_ms, ix.len), (first, at, 3));
    let mut types = ix.types_of(device).to_vec();
    types.sort();
    assert_eq!(
        types,
        [
            ("call.offer".to_owned(), 1),
            ("message.received".to_owned(), 2)
        ]
    );
    assert!(ix.types_of("dev-other").is_empty());
    assert_eq!(index.last().map(|(s, _)| *s), Some(later));
    assert_eq!(log.chunk_index(p, later + 1, 10).await.expect("index"), []);
    assert_eq!(log.first_seq_at(p, at).await.expect("at"), Some(first));
    assert_eq!(log.first_seq_at(p, at + 1).await.expect("at"), Some(later));
    assert_eq!(log.first_seq_at(p, at + 5_001).await.expect("at"), None);
}

/// A key appended within the window is a duplicate of its first sequence
/// (nothing appended for it); past the window it is new again, and its new
/// sequence is the one later duplicates name.
async fn a_key_within_the_window_is_a_duplicate_and_past_it_is_new(log: &dyn EventLog) {
    let parts = log.partitions();
    let device = "dev-idem";
    let p = partition_of(device, parts);
    let before = log.read(p, 0, 1000).await.expect("read").len();
    let within = |now| now - HOUR_MS;
    let first = append_keyed(log, device, &[("k_1", 0xA1)], within).await;
    let seq = new_seq(&first[0]);
    let again = append_keyed(
        log,
        device,
        &[("k_2", 0xA2), ("k_1", 0xA1), ("k_3", 0xA3)],
        within,
    )
    .await;
    assert_eq!(again.len(), 3);
    assert_eq!(again[1], Appended::Duplicate(seq), "within the window");
    let (two, three) = (new_seq(&again[0]), new_seq(&again[2]));
    assert!(seq < two && two < three);
    let read = log.read(p, 0, 1000).await.expect("read");
    assert_eq!(read.len(), before + 3, "nothing appended for the duplicate");
    assert_eq!(
        log.event(three)
            .await
            .expect("event")
            .map(|e| e.event.id.clone()),
        Some("k_3".to_owned()),
        "the events after a duplicate keep their own sequences"
    );
    // Past the window every key is free again.
    let late = append_keyed(log, device, &[("k_1", 0xA1)], |now| now + 60_000).await;
    let renewed = new_seq(&late[0]);
    assert!(renewed > three, "appended anew");
    let dup = append_keyed(log, device, &[("k_1", 0xA1)], within).await;
    assert_eq!(dup, [Appended::Duplicate(renewed)], "the renewed key holds");
}

/// Appends `device`'s events `(id, key)` now, each keyed, with the window
/// starting at `window_start(now)`.
async fn append_keyed(
    log: &dyn EventLog,
    device: &str,
    events: &[(&str, IdemKey)],
    window_start: impl Fn(i64) -> i64,
) -> Vec<Appended> {
    let now = now_ms();
    let keys = events.iter().zip(0u32..).map(|((_, k), i)| (*k, i));
    log.append(
        events
            .iter()
            .map(|(id, _)| ev(device, id, "message.received"))
            .collect(),
        keys.collect(),
        now,
        window_start(now),
    )
    .await
    .expect("append")
}
