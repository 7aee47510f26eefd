//! gRPC producers: streams of events with a send timestamp in their data.

use crate::server::INGEST_KEY;
use hookrelay_ingest::proto::{ingest_service_client::IngestServiceClient, Event, PublishRequest};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio_stream::wrappers::ReceiverStream;

/// Data of `size` bytes carrying the send time: `{"t":<µs>,"pad":"xxx…"}`.
pub(crate) fn data(size: usize) -> Vec<u8> {
    let t = crate::sink::now_us();
    let head = format!(r#"{{"t":{t},"pad":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    out
}

/// Publishes `n` events over one stream, to devices picked by `device_of(i)`,
/// at most `rate` per second when given. Returns the number acknowledged,
/// and counts each acknowledgement in `sent` as it comes.
pub(crate) async fn stream(
    grpc: SocketAddr,
    n: u64,
    size: usize,
    device_of: impl Fn(u64) -> String + Send + 'static,
    rate: Option<f64>,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<u64> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let mut client = IngestServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<PublishRequest>(1024);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {INGEST_KEY}").parse()?);
    let sender = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for i in 0..n {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due).await;
            }
            let e = Event {
                id: String::new(),
                device_id: device_of(i),
                event_type: "message.received".into(),
                occurred_at: None,
                data: data(size),
            };
            if tx.send(PublishRequest { event: Some(e) }).await.is_err() {
                break;
            }
        }
    });
    let mut inbound = client.publish_stream(req).await?.into_inner();
    let mut acked = 0;
    while let Some(_r) = inbound.message().await? {
        acked += 1;
        sent.fetch_add(1, Ordering::Relaxed);
        if acked == n {
            break;
        }
    }
    sender.abort();
    Ok(acked)
}
