//! Acknowledged events survive a stop or a crash and are delivered after restart.

use crate::support::*;
use serde_json::json;

async fn undelivered_events_survive(crash: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    // The receiver is "down": every attempt fails, and retries are slow
    // enough that none succeeds before the restart.
    receiver.set_default(503);
    let server = ServerBuilder::new(&data).base_delay_ms(400).start();
    let tenant = bootstrap(&server, "device-1").await;
    let (status, _) = configure(
        &server,
        &tenant.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"], "retry_attempts": 20}),
    )
    .await;
    assert_eq!(status, 200);
    let mut client = grpc(&server).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let ack = publish(
            &mut client,
            event("device-1", "message.received", &format!(r#"{{"i":{i}}}"#)),
        )
        .await
        .expect("publish");
        ids.push(ack.event_id);
    }
    if crash {
        server.kill().await;
    } else {
        assert!(server.stop().await, "SIGTERM exits 0");
    }

    receiver.set_default(200);
    let server = ServerBuilder::new(&data).base_delay_ms(400).start();
    eventually(60, "every event delivered after restart", || async {
        let ok: std::collections::HashSet<String> = receiver
            .received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        ids.iter().all(|id| ok.contains(id)).then_some(())
    })
    .await;
    drop(server);
}

#[tokio::test]
async fn acknowledged_events_are_delivered_after_a_clean_restart() {
    undelivered_events_survive(false).await;
}

#[tokio::test]
async fn acknowledged_events_are_delivered_after_sigkill() {
    undelivered_events_survive(true).await;
}
