//! The receiving side: a hyper server on 127.0.0.1 that answers 200, counts,
//! and measures event-to-arrival latency from the `"t":<unix µs>` the
//! producers put in each event's data. A "dead" sink accepts connections and
//! never answers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use tokio::net::TcpListener;

/// Counts and latencies of one sink.
#[derive(Default)]
pub(crate) struct SinkStats {
    pub(crate) count: AtomicU64,
    /// Event-to-arrival latencies, µs.
    pub(crate) latencies: Mutex<Vec<u64>>,
    /// Arrival time of the last delivery, µs since the epoch.
    pub(crate) last_arrival_us: AtomicU64,
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Reads `"t":<digits>` out of a delivery body without parsing the JSON.
fn sent_at(body: &[u8]) -> Option<u64> {
    let pos = body.windows(4).position(|w| w == b"\"t\":")?;
    let digits = &body[pos + 4..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// What every sink answers with (empty unless [`answer_with`] set it).
static ANSWER: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();

/// Makes every sink answer `n` bytes (for the cost of keeping answer
/// bodies); call before starting sinks.
pub(crate) fn answer_with(n: usize) {
    let _ = ANSWER.set(Bytes::from(vec![b'x'; n]));
}

/// How many loopback hosts the sinks listen on (see [`hosts_with`]).
static HOSTS: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

/// Spreads sinks over `n` loopback hosts (1..=10; default 10): 1 is one
/// customer backend receiving every device's events.
pub(crate) fn hosts_with(n: u8) {
    let _ = HOSTS.set(n.clamp(1, 10));
}

/// The number of sink hosts.
pub(crate) fn hosts() -> u8 {
    HOSTS.get().copied().unwrap_or(10)
}

fn answer() -> Bytes {
    ANSWER.get().cloned().unwrap_or_default()
}

/// Starts a sink answering 200 on `hosts` loopback addresses (127.0.0.1,
/// 127.0.0.2, …: distinct hosts, as distinct customers' endpoints are),
/// all counting into one [`SinkStats`].
pub(crate) async fn start(hosts: u8) -> anyhow::Result<(Vec<SocketAddr>, Arc<SinkStats>)> {
    let stats = Arc::new(SinkStats::default());
    let mut addrs = Vec::new();
    for h in 1..=hosts.max(1) {
        addrs.push(start_on(std::net::Ipv4Addr::new(127, 0, 0, h), stats.clone()).await?);
    }
    Ok((addrs, stats))
}

/// Starts a sink on a given address (to come up where a webhook points).
pub(crate) async fn start_at(addr: SocketAddr) -> anyhow::Result<Arc<SinkStats>> {
    let stats = Arc::new(SinkStats::default());
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        anyhow::bail!("IPv4 only");
    };
    start_bound(TcpListener::bind((ip, addr.port())).await?, stats.clone()).await?;
    Ok(stats)
}

async fn start_on(ip: std::net::Ipv4Addr, stats: Arc<SinkStats>) -> anyhow::Result<SocketAddr> {
    start_bound(TcpListener::bind((ip, 0)).await?, stats).await
}

async fn start_bound(listener: TcpListener, stats: Arc<SinkStats>) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let s = stats;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let now = now_us();
                        if let Some(t) = sent_at(&body) {
                            if let Ok(mut l) = s.latencies.lock() {
                                l.push(now.saturating_sub(t));
                            }
                        }
                        s.count.fetch_add(1, Ordering::Relaxed);
                        s.last_arrival_us.fetch_max(now, Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(answer())))
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Starts a sink that accepts connections and never answers.
pub(crate) async fn start_dead() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.200:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_send_time() {
        assert_eq!(
            super::sent_at(br#"{"data":{"t":1234,"pad":"x"}}"#),
            Some(1234)
        );
        assert_eq!(super::sent_at(b"{}"), None);
    }
}
