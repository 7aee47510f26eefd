//! The first signed delivery, end to end, and the contract's error answers.

use crate::support::*;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

#[tokio::test]
async fn signed_delivery_arrives_with_both_signatures_and_custom_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let tenant = bootstrap(&server, "device-1").await;

    // Before configuration, the profile answers 404 in its envelope.
    let resp = reqwest::Client::new()
        .get(server.url("/webhook"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("GET /webhook");
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "Webhook not configured");
    assert_eq!(body["error_code"], "NOT_FOUND");
    assert!(body["timestamp"].is_string());

    let (status, body) = configure(
        &server,
        &tenant.token,
        json!({
            "webhook_url": receiver.url("/hook"),
            "enabled_events": ["message.*"],
            "secret": SECRET,
            "headers": {"X-Tenant-Id": "acme-corp"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Webhook configured successfully");
    let wh = &body["webhook"];
    assert!(wh["id"].as_str().is_some_and(|s| s.starts_with("wh_")));
    assert_eq!(wh["retry_attempts"], 3);
    assert_eq!(wh["timeout"], 10);
    assert_eq!(wh["enabled"], true);
    assert!(wh.get("secret").is_none(), "the secret is never echoed");

    let mut client = grpc(&server).await;
    let mut e = event(
        "device-1",
        "message.received",
        r#"{ "content": "Hi there!", "n": 1.50 }"#,
    );
    e.id = "evt-3f2b9c1a".into();
    e.occurred_at = Some(prost_types::Timestamp {
        seconds: 1_781_827_200,
        nanos: 999_000_000,
    });
    let ack = publish(&mut client, e).await.expect("publish");
    assert_eq!(ack.event_id, "evt-3f2b9c1a");
    if on_sled() {
        assert_eq!(ack.sequence, 1);
    }
    assert!(ack.sequence > 0 && !ack.duplicate);
    // A type nobody subscribed to is logged but delivered to no one.
    publish(&mut client, event("device-1", "call.offer", "{}"))
        .await
        .expect("publish");

    let got = receiver.wait_for(1, 10).await;
    let d = &got[0];
    let body = std::str::from_utf8(&d.body).expect("utf8");
    // `data` in the JSON.stringify form: 1.50 is delivered as 1.5.
    let unsigned = r#"{"id":"evt-3f2b9c1a","event":"message.received","timestamp":1781827200,"device_id":"device-1","data":{"content":"Hi there!","n":1.5}}"#;
    let expected_sig = format!(
        "sha256={}",
        hex::encode(hmac(SECRET.as_bytes(), unsigned.as_bytes()))
    );
    assert_eq!(
        body,
        format!(
            "{},\"signature\":\"{expected_sig}\"}}",
            &unsigned[..unsigned.len() - 1]
        )
    );
    assert_eq!(d.header("content-type"), "application/json");
    assert!(d.header("user-agent").starts_with("hookrelay/"));
    assert_eq!(d.header("webhook-id"), "evt-3f2b9c1a");
    assert_eq!(d.header("x-tenant-id"), "acme-corp");
    let ts = d.header("webhook-timestamp");
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("b64");
    let msg = format!("evt-3f2b9c1a.{ts}.{body}");
    let sw = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac(&key, msg.as_bytes()))
    );
    assert_eq!(d.header("webhook-signature"), sw);

    eventually(10, "fan-out of both events", || async {
        fanned_out(&server, 2).await.then_some(())
    })
    .await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        metric(&server, "hookrelay_deliveries_created_total").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn failing_receiver_gets_exactly_three_attempts_with_incremental_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(300)
        .start();
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500]);
    let tenant = bootstrap(&server, "device-1").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"]}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    publish(&mut client, event("device-1", "message.sent", r#"{"a":1}"#))
        .await
        .expect("publish");

    let got = receiver.wait_for(3, 15).await;
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    // Incremental backoff: 1 × base, then 2 × base (base 300 ms here).
    assert!(
        gap1 >= Duration::from_millis(280) && gap1 < Duration::from_millis(900),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(580) && gap2 < Duration::from_millis(1300),
        "{gap2:?}"
    );
    // Same webhook-id on every attempt; no signature without a secret.
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == got[0].header("webhook-id")));
    assert!(got.iter().all(|r| r.header("webhook-signature").is_empty()));
    assert!(got.iter().all(|r| r.json().get("signature").is_none()));
    // Delivered: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 3);
    assert_eq!(
        metric(
            &server,
            r#"hookrelay_delivery_attempts_total{outcome="http_5xx"}"#
        )
        .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn exhausted_retries_stop_at_retry_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .base_delay_ms(50)
        .start();
    let receiver = Receiver::start().await;
    receiver.set_default(503);
    let tenant = bootstrap(&server, "device-1").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["message.sent"], "retry_attempts": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    publish(&mut client, event("device-1", "message.sent", "{}"))
        .await
        .expect("publish");
    receiver.wait_for(3, 10).await;
    eventually(10, "the delivery to fail", || async {
        (metric(&server, "hookrelay_deliveries_failed_total").await == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 3, "1 attempt + retry_attempts (2)");
}

#[tokio::test]
async fn profile_validation_and_ingest_errors_follow_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let tenant = bootstrap(&server, "device-1").await;

    let (status, body) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": "https://example.com/h", "enabled_events": ["message.received", "message.bogus"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], false);
    assert_eq!(body["error_code"], "VALIDATION_ERROR");
    let available = body["available_events"]
        .as_array()
        .expect("available_events");
    assert!(available.iter().any(|e| e == "message.received"));
    assert!(available.iter().any(|e| e == "app_state.sync_complete"));

    let (status, body) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": "ftp://x", "enabled_events": [], "timeout": 0, "retry_attempts": 99,
               "headers": {"Content-Type": "text/plain"}}),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    for f in [
        "webhook_url",
        "enabled_events",
        "timeout",
        "retry_attempts",
        "headers.Content-Type",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }

    // No token, wrong token.
    let resp = reqwest::get(server.url("/webhook")).await.expect("GET");
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error_code"], "UNAUTHORIZED");

    let events: serde_json::Value = reqwest::Client::new()
        .get(server.url("/webhook/events"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("events")
        .json()
        .await
        .expect("json");
    assert_eq!(events["success"], true);
    assert_eq!(events["events"].as_array().map(Vec::len), Some(70));

    let mut client = grpc(&server).await;
    let err = publish_with(
        &mut client,
        "wrong-key",
        event("device-1", "message.sent", "{}"),
    )
    .await
    .expect_err("bad key");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = publish(&mut client, event("device-1", "message.sent", "[1,2]"))
        .await
        .expect_err("array data");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("data"), "{}", err.message());
    let err = publish(&mut client, event("", "message.sent", "{}"))
        .await
        .expect_err("no device");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("device_id"), "{}", err.message());
    let err = publish(&mut client, event("d", "nope.nope", "{}"))
        .await
        .expect_err("unknown type");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("event_type"), "{}", err.message());
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(300 * 1024));
    let err = publish(&mut client, event("d", "message.sent", &big))
        .await
        .expect_err("too big");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Nothing of the refused events was appended.
    assert_eq!(
        metric(&server, "hookrelay_log_sequence")
            .await
            .unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn batches_are_all_or_nothing_and_streams_ack_up_to_the_bad_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let mut client = grpc(&server).await;

    let err = publish_batch(
        &mut client,
        vec![
            event("d", "message.sent", "{}"),
            event("d", "message.sent", "nope"),
        ],
    )
    .await
    .expect_err("bad batch");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("events[1]"), "{}", err.message());

    let ok = publish_batch(
        &mut client,
        (0..5).map(|_| event("d", "message.sent", "{}")).collect(),
    )
    .await
    .expect("batch");
    let seqs: Vec<u64> = ok.results.iter().map(|r| r.sequence).collect();
    if on_sled() {
        assert_eq!(seqs, vec![1, 2, 3, 4, 5], "the bad batch appended nothing");
    }

    let mut events: Vec<_> = (0..3).map(|_| event("d", "message.read", "{}")).collect();
    events.push(event("d", "message.read", "not json"));
    events.push(event("d", "message.read", "{}"));
    let (acks, status) = publish_stream(&mut client, events).await;
    assert_eq!(acks.len(), 3, "acknowledged up to the bad item");
    if on_sled() {
        assert_eq!(
            acks.iter().map(|a| a.sequence).collect::<Vec<_>>(),
            vec![6, 7, 8]
        );
    }
    let status = status.expect("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("events[3]"),
        "{}",
        status.message()
    );
    // The item after the bad one was not appended.
    let next = publish(&mut client, event("d", "message.read", "{}"))
        .await
        .expect("publish");
    if on_sled() {
        assert_eq!(next.sequence, 9);
    }
}

#[tokio::test]
async fn deleting_the_webhook_stops_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let tenant = bootstrap(&server, "device-1").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["message.received"]}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    publish(&mut client, event("device-1", "message.received", "{}"))
        .await
        .expect("publish");
    receiver.wait_for(1, 10).await;

    let http = reqwest::Client::new();
    let resp = http
        .delete(server.url("/webhook"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"success": true, "message": "Webhook deleted successfully"})
    );
    let resp = http
        .get(server.url("/webhook"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 404);
    let resp = http
        .delete(server.url("/webhook"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .expect("DELETE again");
    assert_eq!(resp.status(), 404);

    publish(&mut client, event("device-1", "message.received", "{}"))
        .await
        .expect("publish");
    eventually(10, "fan-out of the second event", || async {
        fanned_out(&server, 2).await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1, "no delivery after DELETE /webhook");
}

#[tokio::test]
async fn http_ingest_shares_validation_and_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let http = reqwest::Client::new();
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!([
            {"device_id": "d", "event": "message.sent", "data": {"b": 1, "a": 2}},
            {"id": "mine", "device_id": "d", "event": "call.offer", "timestamp": 1781827200, "data": {}}
        ]))
        .send()
        .await
        .expect("POST /v1/events");
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["results"][1]["event_id"], "mine");
    if on_sled() {
        assert_eq!(body["results"][1]["sequence"], 2);
    }
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({"device_id": "d", "event": "message.sent", "data": [1]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    let resp = http
        .post(server.url("/v1/events"))
        .bearer_auth("nope")
        .json(&json!({"device_id": "d", "event": "message.sent", "data": {}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn grpc_health_and_reflection_are_served() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let url = format!("http://{}", server.grpc_addr);
    let channel = tonic::transport::Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let resp = health
        .check(HealthCheckRequest {
            service: "hookrelay.ingest.v1.IngestService".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let msg = stream
        .message()
        .await
        .expect("message")
        .expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"hookrelay.ingest.v1.IngestService".to_string()),
        "{names:?}"
    );
}
