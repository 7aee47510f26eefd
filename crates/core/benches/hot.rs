//! Micro-benchmarks of the per-delivery hot path: envelope, both signatures,
//! filter matching, event validation. `cargo bench -p hookrelay-core`.

use criterion::{criterion_group, criterion_main, Criterion};
use hookrelay_core::{signing, validate_event, Catalog, RawEvent};
use std::hint::black_box;

fn data() -> String {
    format!(
        r#"{{"message_id":"3EB0F8A1B2C3D4E5F6","from":"5511999999999@s.whatsapp.net","content":"{}"}}"#,
        "x".repeat(400)
    )
}

fn bench(c: &mut Criterion) {
    let d = data();
    let unsigned = signing::envelope(
        "evt_3f2b9c1a",
        "message.received",
        1_781_827_200,
        "device-uuid",
        &d,
    );
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    c.bench_function("envelope (512 B data)", |b| {
        b.iter(|| {
            signing::envelope(
                black_box("evt_3f2b9c1a"),
                "message.received",
                1_781_827_200,
                "device-uuid",
                black_box(&d),
            )
        })
    });
    c.bench_function("in-body signature", |b| {
        b.iter(|| signing::signed_body(black_box(&unsigned), Some(secret)))
    });
    let body = signing::signed_body(&unsigned, Some(secret));
    c.bench_function("standard-webhooks signature", |b| {
        b.iter(|| {
            signing::signature_header(&[secret], "evt_3f2b9c1a", 1_781_827_300, black_box(&body))
        })
    });
    let catalog = Catalog::builtin();
    let filter: Vec<String> = ["call.*", "group.info", "message.*"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    c.bench_function("filter match (3 entries)", |b| {
        b.iter(|| catalog.matches_any(black_box(&filter), black_box("message.received")))
    });
    c.bench_function("validate event (512 B data)", |b| {
        b.iter(|| {
            let raw = RawEvent {
                id: String::new(),
                device_id: "device-uuid".into(),
                event_type: "message.received".into(),
                occurred_at_ms: None,
                data: d.as_bytes().to_vec(),
            };
            validate_event(raw, &catalog, 262_144, 1)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
