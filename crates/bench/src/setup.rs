//! What every scenario shares: tenants and webhooks set up through the API,
//! producers, waiting for the sink, and the summary of a run.

use crate::{
    producer,
    progress::Counters,
    report::{self, cpu_seconds, latency, peak_rss_mib, Outcome},
    server::Server,
    sink,
};
use anyhow::Context;
use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

/// What a load run sends: `events` events of `size` bytes over `streams`
/// gRPC streams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) events: u64,
    pub(crate) streams: u64,
    pub(crate) size: usize,
}

/// `devices` apps `dev-0…`, each with a webhook to the sink, spread over the
/// sink's hosts; returns the sink's counters.
pub(crate) async fn devices_to_sink(
    server: &Server,
    devices: u64,
) -> anyhow::Result<Arc<sink::SinkStats>> {
    let (addrs, stats) = sink::start(sink::hosts()).await?;
    let admin = server.organization().await?;
    for d in 0..devices {
        let token = server.device(&admin, &format!("dev-{d}")).await?;
        let addr = addrs[d as usize % addrs.len()];
        server
            .webhook(&token, &format!("http://{addr}/d{d}"), 10)
            .await?;
    }
    Ok(stats)
}

/// Publishes `load` to the devices `device_of(i)` names, at most
/// `rate_per_stream` events/s per stream when given; counts acknowledgements
/// in `counters.sent`. Returns how many were acknowledged.
pub(crate) async fn publish(
    server: &Server,
    load: Load,
    device_of: impl Fn(u64) -> String + Send + Sync + 'static,
    rate_per_stream: Option<f64>,
    counters: &Counters,
) -> anyhow::Result<u64> {
    let Load {
        events,
        streams,
        size,
    } = load;
    let device_of = Arc::new(device_of);
    let mut handles = Vec::new();
    for s in 0..streams {
        let n = events / streams + u64::from(s < events % streams);
        let d = device_of.clone();
        let grpc = server.grpc;
        let sent = counters.sent.clone();
        handles.push(tokio::spawn(async move {
            producer::stream(
                grpc,
                n,
                size,
                move |i| d(i * streams + s),
                rate_per_stream,
                sent,
            )
            .await
        }));
    }
    let mut acked = 0;
    for h in handles {
        acked += h.await.context("producer task")??;
    }
    Ok(acked)
}

/// Waits for `expected` deliveries at the sink, then measures from
/// `start_us` (first publish) to the last arrival.
pub(crate) async fn sink_outcome(
    scenario: &str,
    params: serde_json::Value,
    stats: &sink::SinkStats,
    expected: u64,
    start_us: u64,
    server: &Server,
) -> Outcome {
    wait_for(stats, expected, Duration::from_secs(300)).await;
    let last = stats.last_arrival_us.load(Ordering::Relaxed);
    let secs = last.saturating_sub(start_us) as f64 / 1e6;
    let count = stats.count.load(Ordering::Relaxed);
    let lat = take_latency(stats);
    finish(
        scenario,
        params,
        Measured {
            count,
            secs,
            unit: "deliveries",
            latency: Some(lat),
        },
        server,
    )
}

/// Waits until the sink has `n` deliveries or `limit` has passed.
pub(crate) async fn wait_for(stats: &sink::SinkStats, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while stats.count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if stats.count.load(Ordering::Relaxed) < n {
        eprintln!(
            "warning: only {} of {n} deliveries arrived within {limit:?}",
            stats.count.load(Ordering::Relaxed)
        );
    }
}

/// The sink's latencies so far (and empties them).
pub(crate) fn take_latency(stats: &sink::SinkStats) -> report::Latency {
    let v = stats
        .latencies
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    latency(v)
}

/// What a run counted: `count` `unit` in `secs`.
pub(crate) struct Measured {
    pub(crate) count: u64,
    pub(crate) secs: f64,
    pub(crate) unit: &'static str,
    pub(crate) latency: Option<report::Latency>,
}

/// The summary of a run, with the server's peak RSS and CPU time.
pub(crate) fn finish(
    scenario: &str,
    params: serde_json::Value,
    m: Measured,
    server: &Server,
) -> Outcome {
    let pid = server.pid();
    let cpu = cpu_seconds(pid);
    Outcome {
        scenario: scenario.to_owned(),
        params,
        rate_per_s: m.count as f64 / m.secs.max(1e-9),
        rate_unit: m.unit.to_owned(),
        count: m.count,
        seconds: m.secs,
        latency: m.latency,
        server_peak_rss_mib: peak_rss_mib(pid),
        server_cpu_s: cpu,
        server_cpu_us_per_unit: cpu * 1e6 / (m.count.max(1) as f64),
        extra: serde_json::Value::Null,
    }
}

/// Bytes under `path`, recursively.
pub(crate) fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
