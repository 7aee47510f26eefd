//! Micro-benchmarks of the store's hot pieces: the codec, appending a chunk,
//! and scanning the due index. `cargo bench -p hookrelay-store`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hookrelay_core::{DeliveryKey, Event, WebhookId};
use hookrelay_sled::Store;
use hookrelay_store::{codec, Chunk, DeliveryWrite, DueEntry, DueKind};
use std::hint::black_box;

fn event(i: u64) -> Event {
    Event {
        id: format!("evt_{i:032x}"),
        device_id: "device-uuid".into(),
        event_type: "message.received".into(),
        occurred_at_ms: 1_781_827_200_000,
        data: format!(r#"{{"n":{i},"content":"{}"}}"#, "x".repeat(440)),
    }
}

fn bench(c: &mut Criterion) {
    let chunk = Chunk {
        appended_at_ms: 1,
        events: (0..1024).map(event).collect(),
    };
    let bytes = codec::encode(&chunk);
    c.bench_function("codec encode, 1024-event chunk", |b| {
        b.iter(|| codec::encode(black_box(&chunk)))
    });
    c.bench_function("codec decode, 1024-event chunk", |b| {
        b.iter(|| codec::decode::<Chunk>(black_box(&bytes), "chunk"))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    c.bench_function("log append, 1024-event chunk (no flush)", |b| {
        b.iter_batched(
            || (0..1024).map(event).collect::<Vec<_>>(),
            |events| store.log.insert_chunk(events, vec![], 1),
            BatchSize::SmallInput,
        )
    });
    let wh = WebhookId::from("wh_0123456789abcdef0123456789abcdef");
    let writes: Vec<DeliveryWrite> = (0..100_000u64)
        .map(|i| {
            DeliveryWrite::Due(DueEntry {
                at_ms: i as i64,
                key: DeliveryKey {
                    seq: i,
                    generation: 0,
                    webhook_id: wh.clone(),
                },
                kind: DueKind::Scheduled,
            })
        })
        .collect();
    store.deliveries.apply(&writes).expect("apply");
    c.bench_function("due scan, 1024 of 100k entries", |b| {
        b.iter(|| store.deliveries.due(black_box(50_000), 1024))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
