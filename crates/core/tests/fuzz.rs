//! Property tests ("fuzzing" on the stable toolchain): arbitrary input never
//! panics validation, the JSON minifier or signing, and what they produce
//! round-trips through an independent check.

use hookrelay_core::{canonical_json_object, signing, validate_event, Catalog, RawEvent};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        // Integers a double holds exactly (others are refused by design).
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn as_doubles(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as V;
    match v {
        V::Number(n) => serde_json::json!(n.as_f64()),
        V::Array(a) => V::Array(a.into_iter().map(as_doubles).collect()),
        V::Object(o) => V::Object(o.into_iter().map(|(k, v)| (k, as_doubles(v))).collect()),
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validation_never_panics(
        id in ".{0,40}", device in ".{0,40}", ty in ".{0,30}",
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let raw = RawEvent { id, device_id: device, event_type: ty, occurred_at_ms: None, data };
        let _ = validate_event(raw, &Catalog::builtin(), 1024, 1);
    }

    #[test]
    fn the_minifier_never_panics_on_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = canonical_json_object(&data);
    }

    #[test]
    fn minified_objects_keep_their_value(
        obj in prop::collection::btree_map(".{0,8}", json_value(), 0..6),
        pretty in any::<bool>(),
    ) {
        let v = serde_json::Value::Object(obj.into_iter().collect());
        let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }
            .expect("serialize");
        let min = canonical_json_object(text.as_bytes()).expect("a JSON object");
        let back: serde_json::Value = serde_json::from_str(&min).expect("still JSON");
        // Compared through the same parser: the minifier keeps number text as
        // written, and serde_json's float parsing is not exact for subnormals.
        let original: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        // JSON numbers are doubles to JavaScript: `0.0` and `0` are one value.
        prop_assert_eq!(as_doubles(back), as_doubles(original));
        prop_assert!(!min.contains("\n"));
        // The canonical form is a fixed point.
        let again = canonical_json_object(min.as_bytes());
        prop_assert_eq!(again, Ok(min.clone()));
    }

    #[test]
    fn envelopes_are_json_and_both_signatures_verify(
        id in ".{0,30}", ty in "[a-z]{1,8}\\.[a-z_]{1,10}", device in ".{0,30}",
        ts in any::<i32>(), secret in ".{1,40}",
        obj in prop::collection::btree_map("[a-z]{0,6}", json_value(), 0..4),
    ) {
        let data = serde_json::to_string(&serde_json::Value::Object(obj.into_iter().collect()))
            .expect("data");
        let unsigned = signing::envelope(&id, &ty, i64::from(ts), &device, &data);
        let body = signing::signed_body(&unsigned, Some(&secret));
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("the signed body is JSON");
        prop_assert_eq!(parsed["id"].as_str(), Some(id.as_str()));
        prop_assert_eq!(parsed["device_id"].as_str(), Some(device.as_str()));
        // The in-body signature covers exactly the body without it.
        let mut without = parsed.clone();
        let sig = without.as_object_mut().and_then(|o| o.remove("signature"));
let expected = signing::body_signature(&secret, &unsigned);
        prop_assert_eq!(sig.as_ref().and_then(|s| s.as_str()), Some(expected.as_str()));
        let reparsed: serde_json::Value = serde_json::from_slice(&unsigned).expect("unsigned is JSON");
        prop_assert_eq!(without, reparsed);
        // The Standard Webhooks signature is deterministic and secret-specific.
        let a = signing::standard_signature(&secret, &id, 7, &body);
        prop_assert!(a.starts_with("v1,"));
        prop_assert_eq!(a.clone(), signing::standard_signature(&secret, &id, 7, &body));
        prop_assert_ne!(a, signing::standard_signature(&format!("{secret}x"), &id, 7, &body));
    }
}
